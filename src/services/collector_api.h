/* Routes every method of the Collector API (proto/collector) through the method table.
 * Each answers UNIMPLEMENTED until its service module lands and registers it first. */
#ifndef SERVICES_COLLECTOR_API_H
#define SERVICES_COLLECTOR_API_H
#include "h2/method.h"
#include "services/svc.h"

/* Every service of the node (registry, collections, files, health, reflection), then the
 * routes of what is not built yet: the node's whole method table. */
int collector_api_register_all(method_table *t, svc_env *env);

#endif
