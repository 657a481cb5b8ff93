/* Routes every method of the Collector API (proto/collector) through the method table.
 * Each answers UNIMPLEMENTED until its service module lands and registers it first. */
#ifndef SERVICES_COLLECTOR_API_H
#define SERVICES_COLLECTOR_API_H
#include "h2/method.h"

int collector_api_register(method_table *t);

#endif
