#include <malloc.h>
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
	/* Calls allocate and free their buffers in waves: with glibc's default (and dynamic)
	 * trim threshold every thread's heap shrinks after a wave (madvise) and faults its
	 * pages back in for the next one, a third of the CPU of small calls. The heaps keep up
	 * to this much free memory instead. */
	mallopt(M_TRIM_THRESHOLD, 32 << 20);
	return node_run(&cfg);
}
