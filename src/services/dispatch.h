/* collector.CollectiveDispatcher: Serve and Dispatch run methods where they are served
 * (route.h); Connect, Link and Unlink make and end the links of the mesh (mesh.h,
 * mesh_link.h); ListPeers and ListDispatches say what the mesh knows and did. */
#ifndef SERVICES_DISPATCH_H
#define SERVICES_DISPATCH_H
#include "h2/method.h"
#include "services/svc.h"

/* Adds the dispatcher's methods; env (its methods, node_id, endpoint and mesh included)
 * must outlive the table. */
int dispatch_register(method_table *t, const svc_env *env);

#endif
