/* The collector's settings: flags, each also settable in a config file. */
#ifndef CONFIG_H
#define CONFIG_H
#include <stddef.h>

#include "h2/server.h"
#include "services/regquota.h"

typedef struct node_config {
	char listen[128];
	char data[512];
	int threads;	   /* reactors; 0: one per core */
	int pool_threads;  /* 0: 2 per core */
	int pool_queue;
	int store_group_max; /* write requests per transaction; 0: unlimited */
	size_t max_message_bytes;
	char ns[128];	   /* default namespace */
	int no_validation; /* calls are not checked against the registry */
	char id[64];	   /* empty: made once, kept in the data directory */
	int log_level;
	int grace_seconds;
	h2_server_opts wire; /* limits and timeouts (README, Security) */
	regquota_limits registry; /* the registry's quotas (README, Registry) */
} node_config;

void config_defaults(node_config *c);
/* Parses argv (and the file named by --config, whose values the flags override).
 * Returns 0 to run, 1 when --help was printed, -1 on an error (already reported). */
int config_parse(node_config *c, int argc, char **argv);
void config_usage(const char *prog);

#endif
