/* Where a call to a registered service goes: the service's handler endpoint (the gRPC
 * server that registration named), the method's full path, its kind and types. Every
 * decision of that kind is made in handler_route_find, so that the mesh (a peer that serves
 * the service) can be added there without its callers changing. */
#ifndef SERVICES_HANDLER_H
#define SERVICES_HANDLER_H
#include <stdbool.h>
#include <stddef.h>

#include "h2/method.h"
#include "services/svc.h"

/* host:port of a handler: the node's client dials it (client_channel_new) and the proxy's
 * channel cache keys on it, so it is short. */
#define HANDLER_ENDPOINT_MAX 100
#define HANDLER_NAME_MAX 513 /* a full name (REGISTRY_NAME_MAX) and its NUL */

typedef struct handler_route {
	char endpoint[HANDLER_ENDPOINT_MAX + 1]; /* host:port */
	char path[2 * HANDLER_NAME_MAX + 2];	 /* /pkg.Service/Method */
	method_kind kind;
	/* Full message names; "" for a method registered by name only (opaque bytes). */
	char input_type[HANDLER_NAME_MAX], output_type[HANDLER_NAME_MAX];
} handler_route;

/* Whether s is a handler endpoint the node's client can dial: host:port with a numeric
 * host (IPv4, or IPv6 in brackets) or localhost, not a wildcard, port 1 to 65535. When
 * not, why[0..cap) says what is wrong. */
bool handler_endpoint_valid(const char *s, char *why, size_t cap);

/* The route of a call of `method` of `service` (its full name, or a bare one resolved as
 * the registry's lookups resolve it) registered in namespace ns. 0 with *out filled;
 * -ENOENT when ns has no such service or method (or the name is ambiguous); -ENODATA when
 * the service is registered without a handler endpoint; -ENOMEM. Any thread: it reads the
 * registry's index under its own lock. */
int handler_route_find(const svc_env *env, const char *ns, const char *service, const char *method,
		       handler_route *out);

/* The h2 server's fallback (h2_server_set_fallback; ctx the node's svc_env): a call whose
 * path the method table does not serve, registered in the call's namespace with a handler
 * endpoint, is forwarded there (proxy_forward_method); registered here without one, it goes
 * to a linked node that says it has one (mesh.h). NULL otherwise: the registry's gate then
 * answers as for any call it does not admit. */
const method *handler_fallback(void *ctx, call *c, const char *path, size_t path_len);

/* The mesh's services callback (mesh_services_fn; ctx the node's svc_env): "ns/name" of
 * every registered service with a handler endpoint, in every namespace. */
void handler_each_served(void *env, void (*add)(void *acc, const char *ns_service), void *acc);
/* Changes whenever what handler_each_served lists may have (mesh_services_gen_fn). */
uint64_t handler_served_generation(void *env);

/* The route of a call path "/pkg.Service/Method" (path_len bytes); as above. */
int handler_route_of_path(const svc_env *env, const char *ns, const char *path, size_t path_len,
			  handler_route *out);

#endif
