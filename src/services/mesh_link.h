/* Making and keeping links (mesh.h): a Connect to an address, once (Link) or as the
 * heartbeat of every outbound peer; the links kept in system/links; and the driver, one
 * per node on one reactor, that beats, ages and retries on a timer. */
#ifndef SERVICES_MESH_LINK_H
#define SERVICES_MESH_LINK_H
#include <stdbool.h>
#include <stddef.h>

#include "collector/dispatcher.pb-c.h"
#include "io/reactor.h"
#include "services/mesh.h"
#include "services/svc.h"

#define MESH_LINKS_COLLECTION "links"
/* The metadata key of ConnectRequest naming the calling node. */
#define MESH_ID_KEY "collector_id"

/* resp (NULL on failure: code and why say it) lives during the call; resp_bytes are its
 * packed form, as the far side sent it. */
typedef void (*mesh_connect_fn)(void *user, const Collector__ConnectResponse *resp,
				const uint8_t *resp_bytes, size_t len, int code, const char *why);

/* Calls Connect at address from reactor r (its thread) with this node's id, address,
 * namespaces (none: those mesh_namespaces_for gives) and advertisement; done runs once,
 * later. -EINVAL for an address the client cannot dial; -ENOMEM; -ESHUTDOWN when r
 * drains. */
int mesh_connect(reactor *r, mesh *m, const svc_env *env, const char *address,
		 char *const *namespaces, size_t nns, int64_t timeout_ns, mesh_connect_fn done,
		 void *user);

/* system/links. Blocking (a pool thread, or start-up). */
int mesh_links_load(mesh *m, const svc_env *env);
int mesh_link_store(const svc_env *env, const char *address, const char *id,
		    char *const *namespaces, size_t nns);
int mesh_link_delete(const svc_env *env, const char *address);

typedef struct mesh_driver mesh_driver;
mesh_driver *mesh_driver_new(mesh *m, const svc_env *env);
/* --peers-dns NAME: resolved every interval_ns on the pool (peer_dns.h); the peers of each
 * answer are linked (as discovered links, not kept), those gone from it dropped. Before
 * the reactors start. */
void mesh_driver_set_dns(mesh_driver *d, const char *name, const char *server, uint16_t own_port,
			 int64_t interval_ns);
/* On every reactor's thread as it starts: the first one takes the driver's timer. */
void mesh_driver_start(mesh_driver *d, reactor *r);
/* The reactor's shutdown began: the driver stops there (its beats end CANCELLED). */
void mesh_driver_drain(mesh_driver *d, reactor *r);
void mesh_driver_free(mesh_driver *d);

#endif
