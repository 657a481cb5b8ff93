#include <signal.h>

#include "config.h"
#include "io/log.h"
#include "node.h"

int main(int argc, char **argv)
{
	node_config cfg;
	config_defaults(&cfg);
	int rc = config_parse(&cfg, argc, argv);
	if (rc)
		return rc > 0 ? 0 : 2;
	log_set_level((enum log_level)cfg.log_level);
	signal(SIGPIPE, SIG_IGN);
	return node_run(&cfg);
}
