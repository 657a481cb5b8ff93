#include "services/mesh_link.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/mem.h"
#include "h2/status.h"
#include "io/pool.h"
#include "io/timer.h"
#include "services/peer_dns.h"
#include "services/proxy.h"
#include "services/syscoll.h"

#define CONNECT_PATH "/collector.CollectiveDispatcher/Connect"
/* How often the driver looks at the table: beats fall due every MESH_BEAT_NS, and a
 * down peer's next try comes within this of its backoff. */
#define TICK_NS (100LL * 1000 * 1000)
#define BEATS_PER_TICK 64

/* ---- one Connect ---- */

typedef struct connecting {
	mesh_connect_fn done;
	void *user;
} connecting;

static void connected(void *user, int code, const char *message, const uint8_t *resp, size_t len)
{
	connecting *k = user;
	Collector__ConnectResponse *r = NULL;
	if (code == GRPC_OK) {
		r = svc_decode(&collector__connect_response__descriptor, resp, len);
		if (!r) {
			code = GRPC_FAILED_PRECONDITION;
			message = "the answer to Connect is not a ConnectResponse: not a Collector "
				  "node?";
		}
	} else if (code == GRPC_UNIMPLEMENTED) {
		message = "it serves no collector.CollectiveDispatcher/Connect: not a Collector "
			  "node";
		code = GRPC_FAILED_PRECONDITION;
	}
	k->done(k->user, r, r ? resp : NULL, r ? len : 0, code, message);
	if (r)
		collector__connect_response__free_unpacked(r, NULL);
	mem_free(k);
}

int mesh_connect(reactor *r, mesh *m, const svc_env *env, const char *address,
		 char *const *namespaces, size_t nns, int64_t timeout_ns, mesh_connect_fn done,
		 void *user)
{
	char **own = NULL;
	size_t nown = 0;
	if (!nns && mesh_namespaces_for(m, address, &own, &nown))
		return -ENOMEM;
	mesh_info info;
	if (mesh_info_self(m, &info)) {
		mesh_strings_free(own, nown);
		return -ENOMEM;
	}
	Collector__ConnectRequest__MetadataEntry id =
		COLLECTOR__CONNECT_REQUEST__METADATA_ENTRY__INIT;
	id.key = MESH_ID_KEY;
	id.value = (char *)mesh_self_id(m);
	Collector__ConnectRequest__MetadataEntry *idp = &id;
	Collector__ConnectRequest req = COLLECTOR__CONNECT_REQUEST__INIT;
	req.address = (char *)mesh_advertise(m);
	req.namespaces = nns ? (char **)namespaces : own;
	req.n_namespaces = nns ? nns : nown;
	req.metadata = &idp;
	req.n_metadata = 1;
	MESH_INFO_SET(req, info);
	size_t len = collector__connect_request__get_packed_size(&req);
	uint8_t *bytes = mem_alloc(len ? len : 1);
	connecting *k = mem_calloc(1, sizeof(*k));
	int rc = bytes && k ? 0 : -ENOMEM;
	if (!rc) {
		collector__connect_request__pack(&req, bytes);
		*k = (connecting){done, user};
		proxy_args a = {.target = address,
				.path = CONNECT_PATH,
				.request = bytes,
				.request_len = len,
				.deadline_ns = reactor_now(r) + timeout_ns,
				.max_message_bytes = env->max_message_bytes,
				.done = connected,
				.user = k,
				.node = true};
		if (!proxy_start(r, &a)) {
			rc = strchr(address, ':') ? -ESHUTDOWN : -EINVAL;
			mem_free(k);
		}
	} else {
		mem_free(k);
	}
	mem_free(bytes);
	mesh_info_free(&info);
	mesh_strings_free(own, nown);
	return rc;
}

/* ---- system/links ---- */

typedef struct loading {
	mesh *m;
	size_t n;
} loading;

static int load_one(void *ctx, const store_record *rec)
{
	loading *l = ctx;
	Collector__Connection *c =
		svc_decode(&collector__connection__descriptor, rec->data, rec->data_len);
	if (!c || !c->address || !*c->address) {
		log_error("mesh: an unreadable link %s in system/%s is skipped", rec->id,
			  MESH_LINKS_COLLECTION);
	} else if (!mesh_add_outbound(l->m, c->address, (const char *const *)c->shared_namespaces,
				      c->n_shared_namespaces, MESH_STORED)) {
		l->n++;
	}
	if (c)
		collector__connection__free_unpacked(c, NULL);
	return 0;
}

int mesh_links_load(mesh *m, const svc_env *env)
{
	store_coll *c;
	int rc = syscoll_open(env, MESH_LINKS_COLLECTION, "collector.Connection", &c);
	if (rc)
		return rc;
	loading l = {m, 0};
	rc = syscoll_each(c, load_one, &l);
	store_coll_release(c);
	if (l.n)
		log_info("mesh: %zu stored link(s) to make again", l.n);
	return rc;
}

int mesh_link_store(const svc_env *env, const char *address, const char *id,
		    char *const *namespaces, size_t nns)
{
	Collector__Connection link = COLLECTOR__CONNECTION__INIT;
	link.id = (char *)address;
	link.source_collector_id = (char *)(env->node_id ? env->node_id : "");
	link.target_collector_id = (char *)id;
	link.address = (char *)address;
	link.shared_namespaces = (char **)namespaces;
	link.n_shared_namespaces = nns;
	store_coll *c;
	int rc = syscoll_open(env, MESH_LINKS_COLLECTION, "collector.Connection", &c);
	if (rc)
		return rc;
	syscoll_row row;
	rc = syscoll_row_make(env->types, &link.base, &row);
	store_op op = {.kind = STORE_OP_UPDATE,
		       .id = address,
		       .row = {row.data, row.len, row.json.text, NULL}};
	if (!rc) {
		rc = syscoll_write_wait(c, &op, 1);
		if (rc == -ENOENT) {
			op = (store_op){.kind = STORE_OP_INSERT,
					.id = address,
					.row = {row.data, row.len, row.json.text, NULL}};
			rc = syscoll_write_wait(c, &op, 1);
		}
	}
	syscoll_row_free(&row);
	store_coll_release(c);
	return rc;
}

int mesh_link_delete(const svc_env *env, const char *address)
{
	store_coll *c;
	int rc = syscoll_open(env, MESH_LINKS_COLLECTION, "collector.Connection", &c);
	if (rc)
		return rc;
	store_op op = {.kind = STORE_OP_DELETE, .id = address};
	rc = syscoll_write_wait(c, &op, 1);
	store_coll_release(c);
	return rc == -ENOENT ? 0 : rc;
}

/* ---- the driver ---- */

typedef struct dns_job dns_job;

struct mesh_driver {
	mesh *m;
	const svc_env *env;
	atomic_bool claimed;
	reactor *r; /* the reactor it runs on, once claimed */
	timer tick;
	bool draining;
	/* --peers-dns: resolved on the pool every dns_interval_ns */
	char dns_name[256], dns_server[128];
	uint16_t own_port;
	int64_t dns_interval_ns, next_dns;
	dns_job *dns; /* the resolution out, if any */
};

/* ---- peers found by DNS ---- */

struct dns_job {
	pool_job pj;
	mesh_driver *d;
	int rc;
	peer_dns_list list;
	char err[200];
};

static bool dns_cancelled(void *arg) { return pool_job_cancelled(arg); }

static void dns_work(pool_job *pj)
{
	dns_job *j = (dns_job *)pj;
	mesh_driver *d = j->d;
	j->rc = peer_dns_discover(d->dns_name, d->dns_server, d->own_port, dns_cancelled, pj,
				  &j->list, j->err, sizeof(j->err));
}

/* The answer is the set of discovered peers: new ones are linked, gone ones dropped (an
 * answer that failed changes nothing: a DNS outage does not cut the mesh). */
static void dns_done(pool_job *pj)
{
	dns_job *j = (dns_job *)pj;
	mesh_driver *d = j->d;
	d->dns = NULL;
	if (pool_job_cancelled(pj) || d->draining) {
		mem_free(j);
		return;
	}
	if (j->rc) {
		log_warn("mesh: --peers-dns %s: %s (the links found before are kept)", d->dns_name,
			 j->err);
	} else {
		const char *addrs[PEER_DNS_MAX_PEERS];
		for (size_t i = 0; i < j->list.n; i++)
			addrs[i] = j->list.addr[i];
		mesh_prune_discovered(d->m, addrs, j->list.n);
		for (size_t i = 0; i < j->list.n; i++)
			if (strcmp(addrs[i], mesh_advertise(d->m)))
				mesh_add_outbound(d->m, addrs[i], NULL, 0, MESH_DISCOVERED);
	}
	mem_free(j);
}

static void dns_start(mesh_driver *d, int64_t now)
{
	dns_job *j = mem_calloc(1, sizeof(*j));
	d->next_dns = now + d->dns_interval_ns;
	if (!j)
		return;
	j->d = d;
	j->pj.work = dns_work;
	j->pj.done = dns_done;
	if (pool_submit(d->env->pool, d->r, &j->pj)) {
		mem_free(j);
		d->next_dns = now + MESH_BEAT_NS; /* the pool is full: soon again */
		return;
	}
	d->dns = j;
}

void mesh_driver_set_dns(mesh_driver *d, const char *name, const char *server, uint16_t own_port,
			 int64_t interval_ns)
{
	snprintf(d->dns_name, sizeof(d->dns_name), "%s", name ? name : "");
	snprintf(d->dns_server, sizeof(d->dns_server), "%s", server ? server : "");
	d->own_port = own_port;
	d->dns_interval_ns = interval_ns;
}

typedef struct beat {
	mesh_driver *d;
	char address[MESH_ADDR_MAX];
} beat;

static void beat_done(void *user, const Collector__ConnectResponse *resp, const uint8_t *bytes,
		      size_t len, int code, const char *why)
{
	(void)bytes;
	(void)len;
	beat *b = user;
	char msg[200];
	if (!resp)
		snprintf(msg, sizeof(msg), "%s (%s)", why ? why : "failed", grpc_code_name(code));
	if (!mesh_beat_result(b->d->m, b->address, resp, resp ? NULL : msg, reactor_now(b->d->r)))
		log_warn("mesh: %s is this node itself: not linked", b->address);
	mem_free(b);
}

static void on_tick(timer *t)
{
	mesh_driver *d = (mesh_driver *)((char *)t - offsetof(mesh_driver, tick));
	if (d->draining)
		return;
	int64_t now = reactor_now(d->r);
	mesh_age(d->m, now);
	if (d->dns_name[0] && !d->dns && now >= d->next_dns)
		dns_start(d, now);
	char addrs[BEATS_PER_TICK][MESH_ADDR_MAX];
	size_t n = mesh_due(d->m, now, addrs, BEATS_PER_TICK);
	for (size_t i = 0; i < n; i++) {
		beat *b = mem_calloc(1, sizeof(*b));
		int rc = b ? 0 : -ENOMEM;
		if (b) {
			b->d = d;
			memcpy(b->address, addrs[i], MESH_ADDR_MAX);
			rc = mesh_connect(d->r, d->m, d->env, b->address, NULL, 0, MESH_BEAT_NS,
					  beat_done, b);
		}
		if (rc) {
			mem_free(b);
			mesh_beat_result(d->m, addrs[i], NULL,
					 rc == -EINVAL ? "the address cannot be dialled"
						       : "the heartbeat could not start",
					 now);
		}
	}
	if (reactor_timer_arm(d->r, &d->tick, now + TICK_NS, on_tick))
		log_error("mesh: the heartbeat timer cannot be armed: links are not kept");
}

mesh_driver *mesh_driver_new(mesh *m, const svc_env *env)
{
	mesh_driver *d = mem_calloc(1, sizeof(*d));
	if (d) {
		d->m = m;
		d->env = env;
	}
	return d;
}

void mesh_driver_start(mesh_driver *d, reactor *r)
{
	if (!d || atomic_exchange(&d->claimed, true))
		return;
	d->r = r;
	if (reactor_timer_arm(r, &d->tick, reactor_now(r), on_tick))
		log_error("mesh: the heartbeat timer cannot be armed: links are not kept");
}

void mesh_driver_drain(mesh_driver *d, reactor *r)
{
	if (!d || d->r != r)
		return;
	d->draining = true;
	reactor_timer_disarm(r, &d->tick);
	if (d->dns)
		pool_job_cancel(&d->dns->pj); /* its done still comes, and frees it */
}

void mesh_driver_free(mesh_driver *d) { mem_free(d); }
