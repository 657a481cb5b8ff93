/* The node: reactor threads, the blocking pool, the services, and orderly shutdown. */
#ifndef NODE_H
#define NODE_H
#include "config.h"

/* Runs until SIGTERM or SIGINT, then shuts down gracefully. Returns the exit code. */
int node_run(const node_config *cfg);

#endif
