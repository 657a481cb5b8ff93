/* collector.CollectiveDispatcher: Serve and Dispatch (dispatch.c). */
#ifndef SERVICES_DISPATCH_H
#define SERVICES_DISPATCH_H
#include "h2/method.h"
#include "services/svc.h"

/* How many nodes, or nested runs on one node, a call has gone through: every call the
 * dispatcher makes carries one more than the call it serves, and a call that arrives with
 * DISPATCH_HOP_LIMIT is refused, so that no chain of forwards goes round for ever. */
#define DISPATCH_HOPS_HEADER "x-collector-hops"
#define DISPATCH_HOP_LIMIT 8

/* Adds Serve and Dispatch; env (its methods, node_id and endpoint included) must outlive
 * the table. */
int dispatch_register(method_table *t, const svc_env *env);

#endif
