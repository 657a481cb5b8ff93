/* grpc.health.v1.Health: the gRPC health checking protocol for the whole node.
 *
 * Service "" is the server itself; any service in the method table reports the server's
 * status; other names are unknown (Check: NOT_FOUND; Watch: SERVICE_UNKNOWN, and the
 * watch goes on). The status is one process-wide flag. */
#ifndef SERVICES_HEALTH_H
#define SERVICES_HEALTH_H
#include <stdbool.h>

#include "h2/method.h"
#include "io/reactor.h"

/* Adds Check (unary) and Watch (server streaming). t must outlive every call: names are
 * looked up in it at request time, so services added after this one count too. */
int health_register(method_table *t);

/* Thread-safe. false means the node is going down: at the next health_notify on a reactor
 * its Watch calls get NOT_SERVING and then end with OK, so that they do not hold the
 * shutdown grace period open; a Watch started meanwhile does the same at once. */
void health_set_serving(bool serving);
/* Thread-safe: the flag above (/healthz). */
bool health_serving(void);

/* On r's thread, after health_set_serving: sends the new status to r's Watch calls. */
void health_notify(reactor *r);

#endif
