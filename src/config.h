/* The collector program's flags, each also settable in a config file: they fill the
 * library's collector_config (collector.h), one flag per field. */
#ifndef CONFIG_H
#define CONFIG_H

#include "collector.h"

/* Parses argv (and the file named by --config, whose values the flags override) into c,
 * which holds the defaults (collector_config_defaults) or earlier settings.
 * Returns 0 to run, 1 when --help was printed, -1 on an error (already reported). */
int config_parse(collector_config *c, int argc, char **argv);

#endif
