/* The mesh: the nodes this one is linked to, what each shares and serves, their health,
 * and the choice of a node for a call (routing and load balancing). One table per node,
 * read and written from every reactor under one lock held only for table work.
 *
 * A link has a direction: the node that made it (Link, --peer, DNS) is its initiator and
 * keeps it alive with a Connect every MESH_BEAT_NS (mesh_link.c); the target learns of
 * the link from those Connects and holds it as inbound. Either side routes over it. An
 * outbound peer is down from its first failed heartbeat and retried with exponential
 * backoff; an inbound one is down when its heartbeats stop for MESH_DOWN_NS, and forgotten
 * after MESH_FORGET_NS.
 *
 * Peers advertise at every heartbeat what they serve (their registered services with a
 * handler, "ns/pkg.Service"), their up peers' ids and those peers' services: routes reach
 * two hops by advertisement, and every forwarded call carries the ids it has passed
 * (MESH_VISITED_HEADER) so that a route through stale advertisements cannot loop. */
#ifndef SERVICES_MESH_H
#define SERVICES_MESH_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "collector/dispatcher.pb-c.h"

#define MESH_VISITED_HEADER "x-collector-visited"
#define MESH_ID_MAX 64
#define MESH_ADDR_MAX 128
#define MESH_BEAT_NS (1000LL * 1000 * 1000)
#define MESH_DOWN_NS (3LL * MESH_BEAT_NS)
#define MESH_FORGET_NS (60LL * MESH_BEAT_NS)
#define MESH_BACKOFF_MIN_NS (200LL * 1000 * 1000)
#define MESH_BACKOFF_MAX_NS (30LL * MESH_BEAT_NS)
#define MESH_LOG_MAX 1000
#define MESH_COUNTS_MAX 4096 /* (node, method) pairs counted */
#define MESH_PEERS_MAX 256

typedef struct mesh mesh;

typedef struct mesh_opts {
	const char *self_id;
	const char *advertise; /* host:port peers reach this node at */
	/* Namespaces this node shares; none: every namespace ("*"). */
	const char *const *namespaces;
	size_t nns;
	size_t max_outstanding; /* forwarded calls in flight per peer; 0: 1024 */
} mesh_opts;

mesh *mesh_new(const mesh_opts *o);
void mesh_free(mesh *m);
const char *mesh_self_id(const mesh *m);
const char *mesh_advertise(const mesh *m);

/* How a peer came to be: stored links (Link) are made again at every start; configured
 * (--peer) and discovered (DNS) ones come from the settings and DNS each time. */
enum mesh_origin { MESH_INBOUND, MESH_STORED, MESH_CONFIGURED, MESH_DISCOVERED };

/* Adds an outbound peer by address (its id comes with the first heartbeat's answer), or
 * gives an existing one this origin. -ENOSPC beyond MESH_PEERS_MAX. */
int mesh_add_outbound(mesh *m, const char *address, const char *const *namespaces, size_t nns,
		      enum mesh_origin origin);
/* Removes the peer with this address or id; false when there is none. *was_stored tells
 * whether it was a stored link (to delete from system/links). */
bool mesh_remove(mesh *m, const char *address_or_id, bool *was_stored, char *addr_out, size_t cap);
/* Removes the discovered peers whose address is not among these (a DNS answer). */
void mesh_prune_discovered(mesh *m, const char *const *addresses, size_t n);

/* ---- Connect, both sides ---- */

/* What this node says of itself in a Connect (request and response alike): its services
 * (services_fn, may be NULL), its up peers and theirs. Free with mesh_info_free. */
typedef struct mesh_info {
	char **services, **peers, **peer_services;
	size_t nservices, npeers, npeer_services;
} mesh_info;
/* Sets the advertisement of a ConnectRequest or ConnectResponse (their fields of the same
 * names) from a mesh_info. */
#define MESH_INFO_SET(msg, info)                                                                   \
	((msg).services = (info).services, (msg).n_services = (info).nservices,                    \
	 (msg).peers = (info).peers, (msg).n_peers = (info).npeers,                                \
	 (msg).peer_services = (info).peer_services,                                               \
	 (msg).n_peer_services = (info).npeer_services)
typedef void (*mesh_services_fn)(void *ctx, void (*add)(void *acc, const char *ns_service),
				 void *acc);
/* What changes whenever the services fn lists may have: the list is made again only then
 * (it may decode every registration). */
typedef uint64_t (*mesh_services_gen_fn)(void *ctx);
void mesh_set_services(mesh *m, mesh_services_fn fn, mesh_services_gen_fn gen, void *ctx);
int mesh_info_self(mesh *m, mesh_info *out);
void mesh_info_free(mesh_info *i);

/* The target's side: an initiator's Connect (a first one, or a heartbeat). Fills the
 * shared namespaces (a copy of the request's array or of the node's; free with
 * mesh_strings_free) and the connection id (of cap bytes). 0; -EINVAL, -ELOOP (the
 * caller is this node), -ENOSPC, -ENOMEM with why. */
int mesh_accept(mesh *m, const char *id, const Collector__ConnectRequest *req, int64_t now,
		char ***shared, size_t *nshared, char *conn_id, size_t cap, const char **why);
void mesh_strings_free(char **v, size_t n);

/* The initiator's side: a heartbeat to address answered (resp NULL: it failed with why).
 * Returns false when the answer is refused (a link to this node itself). */
bool mesh_beat_result(mesh *m, const char *address, const Collector__ConnectResponse *resp,
		      const char *why, int64_t now);
/* The outbound peers due for a heartbeat at now: up to cap addresses, marked as beating
 * until their mesh_beat_result. */
size_t mesh_due(mesh *m, int64_t now, char (*addrs)[MESH_ADDR_MAX], size_t cap);
/* Marks inbound peers down or forgets them as their heartbeats stop. */
void mesh_age(mesh *m, int64_t now);
/* The namespaces to offer a peer at address (its link's, else the node's). */
int mesh_namespaces_for(mesh *m, const char *address, char ***out, size_t *n);

/* ---- routing ---- */

typedef struct mesh_want {
	const char *ns;
	const char *service;	  /* full name */
	const char *target;	  /* a collector id, or NULL: any node that serves it */
	bool everywhere;	  /* every node serves it (the node's own API) */
	bool round_robin;	  /* lb=round_robin; else least outstanding calls */
	const char *const *avoid; /* ids not to choose: passed already, or failed */
	size_t navoid;
	bool uncounted; /* the call is not counted outstanding (no mesh_release follows) */
} mesh_want;

typedef struct mesh_choice {
	char id[MESH_ID_MAX];
	char address[MESH_ADDR_MAX];
	bool final; /* the chosen node runs the call itself (not a hop towards it) */
} mesh_choice;

/* Chooses an up peer for w and counts a call outstanding on it. 0; -ENOENT when no peer
 * can serve it; -EHOSTDOWN when only peers that are down now could; -EBUSY when every one
 * that can is at its cap. */
int mesh_choose(mesh *m, const mesh_want *w, mesh_choice *out);
/* The call on a chosen peer ended. */
void mesh_release(mesh *m, const char *id);
/* A call to the peer could not reach it (no connection): down until its next heartbeat
 * says otherwise, which comes at once for an outbound peer. */
void mesh_unreachable(mesh *m, const char *id, const char *why);

/* ---- what happened: counts and the last MESH_LOG_MAX dispatches ---- */

typedef struct mesh_record {
	const char *ns, *service, *method;
	const char *source;	/* the caller's node: this one, or a peer's id */
	const char *handled_by; /* the node that ran it ("" when none did) */
	int code;
	const char *message;
} mesh_record;
void mesh_log(mesh *m, const mesh_record *r);

/* The linked nodes as a JSON array into b (the console's view): id, address, state,
 * direction, namespaces, services, outstanding, failures, last_error; *n and *up count
 * them. */
struct buf;
void mesh_json_peers(mesh *m, int64_t now, struct buf *b, int *n, int *up);

/* ListPeers and ListDispatches, packed (mem_free them); NULL when out of memory. */
uint8_t *mesh_pack_peers(mesh *m, int64_t now, size_t *len);
uint8_t *mesh_pack_dispatches(mesh *m, size_t limit, size_t *len);

#endif
