#include "services/mesh.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/clock.h"
#include "base/jsonstr.h"
#include "base/mem.h"
#include "base/utf8.h"
#include "base/uuid.h"
#include "services/strmap.h"
#include "services/strvec.h"
#include "services/svc.h"

/* What one peer may advertise: more is ignored, so that a peer cannot grow the table
 * without bound (the message size limit bounds the bytes, this the entries). */
#define ADVERTISED_MAX 1024

typedef struct peer {
	char id[MESH_ID_MAX]; /* "" until an outbound peer first answers */
	char address[MESH_ADDR_MAX];
	char conn_id[UUID_STR_LEN];
	enum mesh_origin origin;
	strvec offered; /* outbound: the namespaces its link offers; none: the node's */
	strvec shared, services, peers, peer_services;
	bool up, beating, inbound_seen;
	int64_t last_seen, next_beat; /* monotonic */
	unsigned failures;	      /* heartbeats failed in a row */
	size_t outstanding;
	uint64_t last_pick;
	char last_error[160];
} peer;

/* One dispatch kept for ListDispatches. Its strings live in the entry itself (cut to fit,
 * whole UTF-8 sequences only): logging a call allocates nothing. */
#define LOG_TEXT 480
typedef struct log_entry {
	uint64_t seq; /* 0: empty; its id is "<node id>-<seq>" */
	int code;
	int64_t at_us;
	uint16_t at[6]; /* offsets in text: ns, service, method, source, handled_by, message */
	char text[LOG_TEXT];
} log_entry;

typedef struct counter {
	int64_t calls, failures;
} counter;

struct mesh {
	pthread_mutex_t mu;
	char self[MESH_ID_MAX];
	char advertise[MESH_ADDR_MAX];
	strvec ns; /* offered; none: every namespace */
	size_t max_outstanding;
	peer *p[MESH_PEERS_MAX];
	size_t n;
	mesh_services_fn services_fn;
	mesh_services_gen_fn services_gen;
	void *services_ctx;
	strvec services; /* what services_fn listed, at services_at */
	uint64_t services_at;
	bool services_made;
	uint64_t picks;
	uint64_t log_seq;
	unsigned seed;
	log_entry log[MESH_LOG_MAX];
	size_t log_next, log_n;
	strmap counts; /* "node\0/pkg.Service/Method" -> counter */
};

static char *dup_s(const char *s) { return mem_strdup(s ? s : ""); }

/* Copies s into dst (cap bytes, NUL-terminated), whole UTF-8 sequences only, each byte
 * that starts no valid sequence made '?': whatever a peer sent (a status message may be
 * any bytes), the lists packed from it decode. Returns the length. */
static size_t put_utf8(char *dst, size_t cap, const char *s)
{
	size_t n = s ? strlen(s) : 0, k = 0;
	for (size_t i = 0; i < n;) {
		size_t q = utf8_seq_len((const unsigned char *)s + i, n - i);
		if (k + (q ? q : 1) >= cap)
			break;
		if (!q) {
			dst[k++] = '?';
			i++;
			continue;
		}
		memcpy(dst + k, s + i, q);
		k += q;
		i += q;
	}
	dst[k] = 0;
	return k;
}

static void copy_strings(strvec *dst, char *const *v, size_t n)
{
	strvec_free(dst);
	*dst = (strvec){0};
	for (size_t i = 0; i < n && i < ADVERTISED_MAX; i++)
		strvec_push(dst, dup_s(v[i]));
}

mesh *mesh_new(const mesh_opts *o)
{
	mesh *m = mem_calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	pthread_mutex_init(&m->mu, NULL);
	snprintf(m->self, sizeof(m->self), "%s", o->self_id);
	snprintf(m->advertise, sizeof(m->advertise), "%s", o->advertise);
	for (size_t i = 0; i < o->nns; i++)
		strvec_push(&m->ns, dup_s(o->namespaces[i]));
	m->max_outstanding = o->max_outstanding ? o->max_outstanding : 1024;
	m->seed = (unsigned)clock_now_ns();
	if (m->ns.failed) {
		mesh_free(m);
		return NULL;
	}
	return m;
}

static void peer_free(peer *p)
{
	strvec_free(&p->offered);
	strvec_free(&p->shared);
	strvec_free(&p->services);
	strvec_free(&p->peers);
	strvec_free(&p->peer_services);
	mem_free(p);
}

static void free_counter(void *ctx, const char *key, size_t len, void *value)
{
	(void)ctx;
	(void)key;
	(void)len;
	mem_free(value);
}

void mesh_free(mesh *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->n; i++)
		peer_free(m->p[i]);
	strmap_each(&m->counts, free_counter, NULL);
	strmap_free(&m->counts);
	strvec_free(&m->services);
	strvec_free(&m->ns);
	pthread_mutex_destroy(&m->mu);
	mem_free(m);
}

const char *mesh_self_id(const mesh *m) { return m->self; }
const char *mesh_advertise(const mesh *m) { return m->advertise; }

void mesh_set_services(mesh *m, mesh_services_fn fn, mesh_services_gen_fn gen, void *ctx)
{
	pthread_mutex_lock(&m->mu);
	m->services_fn = fn;
	m->services_gen = gen;
	m->services_ctx = ctx;
	m->services_made = false;
	pthread_mutex_unlock(&m->mu);
}

void mesh_strings_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		mem_free(v[i]);
	mem_free(v);
}

/* ---- the table ---- */

static peer *by_address(mesh *m, const char *address)
{
	for (size_t i = 0; i < m->n; i++)
		if (!strcmp(m->p[i]->address, address))
			return m->p[i];
	return NULL;
}

static peer *by_id(mesh *m, const char *id)
{
	for (size_t i = 0; i < m->n && *id; i++)
		if (!strcmp(m->p[i]->id, id))
			return m->p[i];
	return NULL;
}

static void drop(mesh *m, peer *p)
{
	for (size_t i = 0; i < m->n; i++)
		if (m->p[i] == p) {
			m->p[i] = m->p[--m->n];
			peer_free(p);
			return;
		}
}

static peer *peer_new(mesh *m, const char *address, enum mesh_origin origin)
{
	if (m->n >= MESH_PEERS_MAX)
		return NULL;
	peer *p = mem_calloc(1, sizeof(*p));
	if (!p || uuid7_make(p->conn_id)) {
		mem_free(p);
		return NULL;
	}
	snprintf(p->address, sizeof(p->address), "%s", address);
	p->origin = origin;
	m->p[m->n++] = p;
	return p;
}

static bool outbound(const peer *p) { return p->origin != MESH_INBOUND; }

int mesh_add_outbound(mesh *m, const char *address, const char *const *namespaces, size_t nns,
		      enum mesh_origin origin)
{
	if (strlen(address) >= MESH_ADDR_MAX)
		return -EINVAL;
	pthread_mutex_lock(&m->mu);
	peer *p = by_address(m, address);
	int rc = 0;
	if (!p && !(p = peer_new(m, address, origin)))
		rc = m->n >= MESH_PEERS_MAX ? -ENOSPC : -ENOMEM;
	if (p) {
		/* A stored link outranks a configured or discovered one: it is kept. */
		if (!outbound(p) || origin == MESH_STORED)
			p->origin = origin;
		strvec_free(&p->offered);
		p->offered = (strvec){0};
		for (size_t i = 0; i < nns; i++)
			strvec_push(&p->offered, dup_s(namespaces[i]));
		p->next_beat = 0; /* now */
		rc = p->offered.failed ? -ENOMEM : 0;
	}
	pthread_mutex_unlock(&m->mu);
	return rc;
}

bool mesh_remove(mesh *m, const char *address_or_id, bool *was_stored, char *addr_out, size_t cap)
{
	pthread_mutex_lock(&m->mu);
	peer *p = by_address(m, address_or_id);
	if (!p)
		p = by_id(m, address_or_id);
	if (p) {
		*was_stored = p->origin == MESH_STORED;
		snprintf(addr_out, cap, "%s", p->address);
		drop(m, p);
	}
	pthread_mutex_unlock(&m->mu);
	return p != NULL;
}

void mesh_prune_discovered(mesh *m, const char *const *addresses, size_t n)
{
	pthread_mutex_lock(&m->mu);
	for (size_t i = m->n; i-- > 0;) {
		peer *p = m->p[i];
		bool named = false;
		for (size_t k = 0; k < n && !named; k++)
			named = !strcmp(p->address, addresses[k]);
		if (p->origin == MESH_DISCOVERED && !named)
			drop(m, p);
	}
	pthread_mutex_unlock(&m->mu);
}

/* ---- Connect ---- */

static void add_to(void *acc, const char *s)
{
	strvec *v = acc;
	if (v->n < ADVERTISED_MAX && !strvec_has(v, s))
		strvec_push(v, dup_s(s));
}

int mesh_info_self(mesh *m, mesh_info *out)
{
	strvec services = {0}, peers = {0}, peer_services = {0};
	pthread_mutex_lock(&m->mu);
	uint64_t at = m->services_gen ? m->services_gen(m->services_ctx) : 0;
	if (m->services_fn && (!m->services_made || at != m->services_at || m->services.failed)) {
		strvec_free(&m->services);
		m->services = (strvec){0};
		m->services_fn(m->services_ctx, add_to, &m->services);
		m->services_at = at;
		m->services_made = true;
	}
	for (size_t i = 0; i < m->services.n; i++)
		add_to(&services, m->services.v[i]);
	for (size_t i = 0; i < m->n; i++) {
		peer *p = m->p[i];
		if (!p->up || !*p->id)
			continue;
		add_to(&peers, p->id);
		for (size_t k = 0; k < p->services.n; k++)
			add_to(&peer_services, p->services.v[k]);
	}
	pthread_mutex_unlock(&m->mu);
	*out = (mesh_info){services.v, peers.v, peer_services.v,
			   services.n, peers.n, peer_services.n};
	if (services.failed || peers.failed || peer_services.failed) {
		mesh_info_free(out);
		return -ENOMEM;
	}
	return 0;
}

void mesh_info_free(mesh_info *i)
{
	mesh_strings_free(i->services, i->nservices);
	mesh_strings_free(i->peers, i->npeers);
	mesh_strings_free(i->peer_services, i->npeer_services);
	*i = (mesh_info){0};
}

/* The namespaces two sides share: "*" (every one) on a side takes the other's list. */
static int intersect(const strvec *ours, char *const *theirs, size_t n, char ***out, size_t *nout)
{
	strvec r = {0};
	bool all_ours = !ours->n || strvec_has(ours, "*");
	bool all_theirs = !n;
	for (size_t i = 0; i < n; i++)
		all_theirs = all_theirs || !strcmp(theirs[i], "*");
	if (all_ours && all_theirs)
		strvec_push(&r, dup_s("*"));
	else if (all_ours)
		for (size_t i = 0; i < n && i < ADVERTISED_MAX; i++)
			add_to(&r, theirs[i]);
	else
		for (size_t i = 0; i < ours->n; i++) {
			bool shared = all_theirs;
			for (size_t k = 0; k < n && !shared; k++)
				shared = !strcmp(ours->v[i], theirs[k]);
			if (shared)
				add_to(&r, ours->v[i]);
		}
	*out = r.v;
	*nout = r.n;
	if (r.failed) {
		mesh_strings_free(r.v, r.n);
		return -ENOMEM;
	}
	return 0;
}

static void take_advert(peer *p, char *const *services, size_t ns, char *const *peers, size_t np,
			char *const *peer_services, size_t nps)
{
	copy_strings(&p->services, services, ns);
	copy_strings(&p->peers, peers, np);
	copy_strings(&p->peer_services, peer_services, nps);
}

static bool id_valid(const char *id)
{
	size_t n = strlen(id);
	if (!n || n >= MESH_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)id[i] <= ' ' || id[i] == ',' || id[i] == 0x7f)
			return false;
	return true;
}

int mesh_accept(mesh *m, const char *id, const Collector__ConnectRequest *req, int64_t now,
		char ***shared, size_t *nshared, char *conn_id, size_t cap, const char **why)
{
	*shared = NULL;
	*nshared = 0;
	if (!id_valid(id)) {
		*why = "metadata collector_id must name the calling node (1 to 63 printable "
		       "characters, no comma)";
		return -EINVAL;
	}
	if (!strcmp(id, m->self)) {
		*why = "a node cannot link to itself";
		return -ELOOP;
	}
	const char *address = req->address ? req->address : "";
	if (!*address || strlen(address) >= MESH_ADDR_MAX || !strchr(address, ':')) {
		*why = "address must be the calling node's host:port";
		return -EINVAL;
	}
	pthread_mutex_lock(&m->mu);
	int rc = intersect(&m->ns, req->namespaces, req->n_namespaces, shared, nshared);
	peer *p = by_id(m, id);
	if (!rc && !p) {
		p = peer_new(m, address, MESH_INBOUND);
		if (p)
			snprintf(p->id, sizeof(p->id), "%s", id);
		else
			rc = m->n >= MESH_PEERS_MAX ? -ENOSPC : -ENOMEM;
	}
	if (!rc) {
		if (!outbound(p)) {
			snprintf(p->address, sizeof(p->address), "%s", address);
			p->up = true;
		}
		p->inbound_seen = true;
		p->last_seen = now;
		copy_strings(&p->shared, *shared, *nshared);
		take_advert(p, req->services, req->n_services, req->peers, req->n_peers,
			    req->peer_services, req->n_peer_services);
		snprintf(conn_id, cap, "%s", p->conn_id);
	}
	pthread_mutex_unlock(&m->mu);
	if (rc) {
		*why = rc == -ENOSPC ? "this node has as many links as it keeps" : "out of memory";
		mesh_strings_free(*shared, *nshared);
		*shared = NULL;
		*nshared = 0;
	}
	return rc;
}

static int64_t backoff(mesh *m, unsigned failures)
{
	int64_t d = MESH_BACKOFF_MIN_NS;
	for (unsigned i = 1; i < failures && d < MESH_BACKOFF_MAX_NS; i++)
		d *= 2;
	if (d > MESH_BACKOFF_MAX_NS)
		d = MESH_BACKOFF_MAX_NS;
	/* Jitter of +-20%, so that nodes restarted together do not retry in step. */
	return d * (80 + rand_r(&m->seed) % 41) / 100;
}

bool mesh_beat_result(mesh *m, const char *address, const Collector__ConnectResponse *resp,
		      const char *why, int64_t now)
{
	bool accepted = true;
	pthread_mutex_lock(&m->mu);
	peer *p = by_address(m, address);
	if (p && outbound(p)) {
		const char *id = resp && resp->target_collector_id ? resp->target_collector_id : "";
		if (resp && !id_valid(id)) {
			resp = NULL;
			why = "the answer names no valid collector id: not a Collector node?";
		} else if (resp && !strcmp(id, m->self)) {
			resp = NULL;
			why = "this address is this node itself";
			accepted = false;
		}
		p->beating = false;
		if (resp) {
			/* Its inbound record, if it linked to us first, is this same link. (Two
			 * outbound addresses of one node stay two links.) */
			for (size_t i = 0; i < m->n; i++)
				if (m->p[i] != p && !outbound(m->p[i]) &&
				    !strcmp(m->p[i]->id, id)) {
					drop(m, m->p[i]);
					break;
				}
			snprintf(p->id, sizeof(p->id), "%s", id);
			/* One link, one id: the target's. */
			if (resp->connection_id && *resp->connection_id &&
			    strlen(resp->connection_id) < sizeof(p->conn_id))
				snprintf(p->conn_id, sizeof(p->conn_id), "%s", resp->connection_id);
			copy_strings(&p->shared, resp->shared_namespaces,
				     resp->n_shared_namespaces);
			take_advert(p, resp->services, resp->n_services, resp->peers, resp->n_peers,
				    resp->peer_services, resp->n_peer_services);
			p->up = true;
			p->failures = 0;
			p->last_seen = now;
			p->last_error[0] = 0;
			p->next_beat = now + MESH_BEAT_NS;
		} else {
			p->up = false;
			p->failures++;
			put_utf8(p->last_error, sizeof(p->last_error), why ? why : "failed");
			p->next_beat =
				now + (accepted ? backoff(m, p->failures) : MESH_BACKOFF_MAX_NS);
			/* DNS lists every node, this one too: not a link to keep trying. */
			if (!accepted && p->origin == MESH_DISCOVERED)
				drop(m, p);
		}
	}
	pthread_mutex_unlock(&m->mu);
	return accepted;
}

size_t mesh_due(mesh *m, int64_t now, char (*addrs)[MESH_ADDR_MAX], size_t cap)
{
	size_t k = 0;
	pthread_mutex_lock(&m->mu);
	for (size_t i = 0; i < m->n && k < cap; i++) {
		peer *p = m->p[i];
		if (outbound(p) && !p->beating && now >= p->next_beat) {
			p->beating = true;
			memcpy(addrs[k++], p->address, MESH_ADDR_MAX);
		}
	}
	pthread_mutex_unlock(&m->mu);
	return k;
}

void mesh_age(mesh *m, int64_t now)
{
	pthread_mutex_lock(&m->mu);
	for (size_t i = m->n; i-- > 0;) {
		peer *p = m->p[i];
		if (outbound(p))
			continue;
		if (now - p->last_seen > MESH_FORGET_NS)
			drop(m, p);
		else if (now - p->last_seen > MESH_DOWN_NS)
			p->up = false;
	}
	pthread_mutex_unlock(&m->mu);
}

int mesh_namespaces_for(mesh *m, const char *address, char ***out, size_t *n)
{
	strvec r = {0};
	pthread_mutex_lock(&m->mu);
	peer *p = by_address(m, address);
	const strvec *src = p && p->offered.n ? &p->offered : &m->ns;
	for (size_t i = 0; i < src->n; i++)
		strvec_push(&r, dup_s(src->v[i]));
	pthread_mutex_unlock(&m->mu);
	*out = r.v;
	*n = r.n;
	if (r.failed) {
		mesh_strings_free(r.v, r.n);
		return -ENOMEM;
	}
	return 0;
}

/* ---- routing ---- */

static bool shares(const peer *p, const char *ns)
{
	return strvec_has(&p->shared, "*") || strvec_has(&p->shared, ns);
}

static bool avoided(const mesh_want *w, const char *id)
{
	for (size_t i = 0; i < w->navoid; i++)
		if (!strcmp(w->avoid[i], id))
			return true;
	return false;
}

/* 0: the peer runs it; 1: it is one hop from a node that does; -1: neither. */
static int rank(const peer *p, const mesh_want *w, const char *key)
{
	if (w->target)
		return !strcmp(p->id, w->target) ? 0 : strvec_has(&p->peers, w->target) ? 1 : -1;
	if (w->everywhere || strvec_has(&p->services, key))
		return 0;
	return strvec_has(&p->peer_services, key) ? 1 : -1;
}

int mesh_choose(mesh *m, const mesh_want *w, mesh_choice *out)
{
	char key[2 * MESH_ADDR_MAX + 256];
	snprintf(key, sizeof(key), "%s/%s", w->ns, w->service);
	pthread_mutex_lock(&m->mu);
	peer *best = NULL;
	int best_rank = 2;
	bool busy = false, down = false;
	for (size_t i = 0; i < m->n; i++) {
		peer *p = m->p[i];
		if (!*p->id || avoided(w, p->id) || !shares(p, w->ns))
			continue;
		int r = rank(p, w, key);
		if (!p->up) {
			down |= r >= 0; /* it would serve it: the call may work later */
			continue;
		}
		if (r < 0 || r > best_rank)
			continue;
		if (p->outstanding >= m->max_outstanding) {
			busy = true;
			continue;
		}
		/* Least outstanding calls, the least recently chosen among equals; or round
		 * robin alone. */
		bool better = !best || r < best_rank ||
			      (!w->round_robin && p->outstanding < best->outstanding) ||
			      ((w->round_robin || p->outstanding == best->outstanding) &&
			       p->last_pick < best->last_pick);
		if (better) {
			best = p;
			best_rank = r;
		}
	}
	if (best) {
		best->outstanding += !w->uncounted;
		best->last_pick = ++m->picks;
		snprintf(out->id, sizeof(out->id), "%s", best->id);
		snprintf(out->address, sizeof(out->address), "%s", best->address);
		out->final = best_rank == 0;
	}
	pthread_mutex_unlock(&m->mu);
	return best ? 0 : busy ? -EBUSY : down ? -EHOSTDOWN : -ENOENT;
}

void mesh_release(mesh *m, const char *id)
{
	pthread_mutex_lock(&m->mu);
	peer *p = by_id(m, id);
	if (p && p->outstanding)
		p->outstanding--;
	pthread_mutex_unlock(&m->mu);
}

void mesh_unreachable(mesh *m, const char *id, const char *why)
{
	pthread_mutex_lock(&m->mu);
	peer *p = by_id(m, id);
	if (p) {
		p->up = false;
		p->next_beat = 0;
		put_utf8(p->last_error, sizeof(p->last_error), why ? why : "unreachable");
	}
	pthread_mutex_unlock(&m->mu);
}

/* ---- the log ---- */

void mesh_log(mesh *m, const mesh_record *r)
{
	/* The counts' key: "node\0/service/method", each part UTF-8 and bounded. */
	char key[MESH_ID_MAX + 1 + 2 + 256 + 128];
	size_t klen = put_utf8(key, MESH_ID_MAX, r->handled_by) + 1;
	key[klen++] = '/';
	klen += put_utf8(key + klen, 256, r->service);
	key[klen++] = '/';
	klen += put_utf8(key + klen, 128, r->method);
	pthread_mutex_lock(&m->mu);
	log_entry *e = &m->log[m->log_next];
	e->seq = ++m->log_seq;
	e->code = r->code;
	e->at_us = clock_wall_ns() / 1000;
	const char *parts[6] = {r->ns, r->service, r->method, r->source, r->handled_by, r->message};
	/* Each part gets at most its share (448 bytes for the first five), the message the
	 * rest. */
	static const size_t share[6] = {64, 160, 96, MESH_ID_MAX, MESH_ID_MAX, LOG_TEXT};
	size_t at = 0;
	for (int i = 0; i < 6; i++) {
		size_t room = LOG_TEXT - at;
		e->at[i] = (uint16_t)at;
		at += put_utf8(e->text + at, share[i] < room ? share[i] : room, parts[i]) + 1;
	}
	m->log_next = (m->log_next + 1) % MESH_LOG_MAX;
	if (m->log_n < MESH_LOG_MAX)
		m->log_n++;
	counter *c = strmap_get(&m->counts, key, klen);
	/* Bounded: names come from callers, and a caller could make up any number. */
	if (!c && m->counts.used < MESH_COUNTS_MAX && (c = mem_calloc(1, sizeof(*c))) &&
	    strmap_put(&m->counts, key, klen, c, NULL)) {
		mem_free(c);
		c = NULL;
	}
	if (c) {
		c->calls++;
		c->failures += r->code != 0;
	}
	pthread_mutex_unlock(&m->mu);
}

/* ---- the console's view ---- */

static void json_str(buf *b, const char *k, const char *v)
{
	buf_putc(b, '"');
	buf_puts(b, k);
	buf_puts(b, "\":");
	jsonstr_put(b, v, strlen(v)); /* quotes included */
}

static void json_strings(buf *b, const char *k, const strvec *v)
{
	buf_putc(b, '"');
	buf_puts(b, k);
	buf_puts(b, "\":[");
	for (size_t i = 0; i < v->n; i++) {
		if (i)
			buf_putc(b, ',');
		jsonstr_put(b, v->v[i], strlen(v->v[i]));
	}
	buf_putc(b, ']');
}

void mesh_json_peers(mesh *m, int64_t now, buf *b, int *n, int *up)
{
	(void)now;
	*n = *up = 0;
	pthread_mutex_lock(&m->mu);
	buf_putc(b, '[');
	for (size_t i = 0; i < m->n; i++) {
		const peer *p = m->p[i];
		char nums[80];
		(*n)++;
		*up += p->up;
		buf_puts(b, i ? ",{" : "{");
		json_str(b, "id", p->id);
		buf_putc(b, ',');
		json_str(b, "address", p->address);
		buf_putc(b, ',');
		json_str(b, "state",
			 p->up			       ? "up"
			 : p->last_seen || p->failures ? "down"
						       : "connecting");
		buf_putc(b, ',');
		json_str(b, "direction", outbound(p) ? "outbound" : "inbound");
		buf_putc(b, ',');
		json_strings(b, "namespaces", &p->shared);
		buf_putc(b, ',');
		json_strings(b, "services", &p->services);
		snprintf(nums, sizeof(nums), ",\"outstanding\":%zu,\"failures\":%u,",
			 p->outstanding, p->failures);
		buf_puts(b, nums);
		json_str(b, "last_error", p->last_error);
		buf_putc(b, '}');
	}
	buf_putc(b, ']');
	pthread_mutex_unlock(&m->mu);
}

/* ---- ListPeers, ListDispatches ---- */

static void timestamp_at(Google__Protobuf__Timestamp *ts, int64_t us)
{
	google__protobuf__timestamp__init(ts);
	ts->seconds = us / 1000000;
	ts->nanos = (int32_t)(us % 1000000) * 1000;
}

static uint8_t *pack(const ProtobufCMessage *msg, size_t *len)
{
	*len = protobuf_c_message_get_packed_size(msg);
	uint8_t *b = mem_alloc(*len ? *len : 1);
	if (b)
		protobuf_c_message_pack(msg, b);
	return b;
}

enum { LABELS = 7 };
static const char *const label_keys[LABELS] = {
	"state", "direction", "outstanding", "failures", "last_error", "connection_id", "via"};

typedef struct peer_view {
	Collector__Collector c;
	Collector__Metadata md;
	Google__Protobuf__Timestamp seen;
	Collector__Metadata__LabelsEntry labels[LABELS], *lp[LABELS];
	char num[2][24];
} peer_view;

static void view_label(peer_view *v, const char *value)
{
	size_t i = v->md.n_labels;
	collector__metadata__labels_entry__init(&v->labels[i]);
	v->labels[i].key = (char *)label_keys[i];
	v->labels[i].value = (char *)value;
	v->lp[i] = &v->labels[i];
	v->md.n_labels++;
}

static void view_peer(peer_view *v, const peer *p, int64_t now, int64_t wall_us)
{
	collector__collector__init(&v->c);
	collector__metadata__init(&v->md);
	v->md.labels = v->lp;
	v->c.id = (char *)p->id;
	v->c.address = (char *)p->address;
	v->c.namespaces = p->shared.v;
	v->c.n_namespaces = p->shared.n;
	v->c.capabilities = p->services.v;
	v->c.n_capabilities = p->services.n;
	v->c.is_direct_peer = true;
	v->c.metadata = &v->md;
	snprintf(v->num[0], sizeof(v->num[0]), "%zu", p->outstanding);
	snprintf(v->num[1], sizeof(v->num[1]), "%u", p->failures);
	view_label(v, p->up ? "up" : p->last_seen || p->failures ? "down" : "connecting");
	view_label(v, outbound(p) ? "outbound" : "inbound");
	view_label(v, v->num[0]);
	view_label(v, v->num[1]);
	view_label(v, p->last_error);
	view_label(v, p->conn_id);
	if (p->last_seen) {
		timestamp_at(&v->seen, wall_us - (now - p->last_seen) / 1000);
		v->c.last_seen = &v->seen;
	}
}

uint8_t *mesh_pack_peers(mesh *m, int64_t now, size_t *len)
{
	int64_t wall_us = clock_wall_ns() / 1000;
	pthread_mutex_lock(&m->mu);
	/* The direct peers, then the nodes they say they reach (is_direct_peer false). */
	size_t cap = m->n;
	for (size_t i = 0; i < m->n; i++)
		cap += m->p[i]->up ? m->p[i]->peers.n : 0;
	peer_view *v = mem_calloc(cap ? cap : 1, sizeof(*v));
	Collector__Collector **cs = mem_calloc(cap ? cap : 1, sizeof(*cs));
	uint8_t *out = NULL;
	if (v && cs) {
		size_t k = 0;
		for (size_t i = 0; i < m->n; i++, k++) {
			view_peer(&v[k], m->p[i], now, wall_us);
			cs[k] = &v[k].c;
		}
		for (size_t i = 0; i < m->n; i++) {
			peer *p = m->p[i];
			for (size_t j = 0; p->up && j < p->peers.n; j++) {
				const char *id = p->peers.v[j];
				bool known = !strcmp(id, m->self);
				for (size_t q = 0; q < k && !known; q++)
					known = !strcmp(cs[q]->id, id);
				if (known)
					continue;
				collector__collector__init(&v[k].c);
				collector__metadata__init(&v[k].md);
				v[k].md.labels = v[k].lp;
				v[k].md.n_labels = 0;
				v[k].c.id = (char *)id;
				v[k].c.address = "";
				v[k].c.metadata = &v[k].md;
				/* Only the "via" label: the last of the keys. */
				collector__metadata__labels_entry__init(&v[k].labels[0]);
				v[k].labels[0].key = (char *)label_keys[LABELS - 1];
				v[k].labels[0].value = p->id;
				v[k].lp[0] = &v[k].labels[0];
				v[k].md.n_labels = 1;
				cs[k] = &v[k].c;
				k++;
			}
		}
		Collector__Status ok = COLLECTOR__STATUS__INIT;
		Collector__ListPeersResponse r = COLLECTOR__LIST_PEERS_RESPONSE__INIT;
		r.status = &ok;
		r.collectors = cs;
		r.n_collectors = k;
		out = pack(&r.base, len);
	}
	pthread_mutex_unlock(&m->mu);
	mem_free(v);
	mem_free(cs);
	return out;
}

typedef struct count_view {
	Collector__DispatchCount *v;
	Collector__DispatchCount **p;
	size_t n;
} count_view;

static void view_count(void *ctx, const char *key, size_t len, void *value)
{
	(void)len;
	count_view *cv = ctx;
	const counter *c = value;
	Collector__DispatchCount *d = &cv->v[cv->n];
	collector__dispatch_count__init(d);
	d->collector_id = (char *)key;
	d->method = (char *)key + strlen(key) + 1;
	d->calls = c->calls;
	d->failures = c->failures;
	cv->p[cv->n++] = d;
}

typedef struct dispatch_view {
	char id[MESH_ID_MAX + 24];
	Collector__Dispatch d;
	Collector__ServiceTypeRef svc;
	Collector__Status st;
	Google__Protobuf__Timestamp at;
} dispatch_view;

uint8_t *mesh_pack_dispatches(mesh *m, size_t limit, size_t *len)
{
	pthread_mutex_lock(&m->mu);
	size_t n = limit && limit < m->log_n ? limit : m->log_n;
	size_t ncounts = m->counts.used;
	dispatch_view *dv = mem_calloc(n ? n : 1, sizeof(*dv));
	Collector__Dispatch **dp = mem_calloc(n ? n : 1, sizeof(*dp));
	count_view cv = {mem_calloc(ncounts ? ncounts : 1, sizeof(*cv.v)),
			 mem_calloc(ncounts ? ncounts : 1, sizeof(*cv.p)), 0};
	uint8_t *out = NULL;
	if (dv && dp && cv.v && cv.p) {
		for (size_t i = 0; i < n; i++) {
			const log_entry *e =
				&m->log[(m->log_next + MESH_LOG_MAX - 1 - i) % MESH_LOG_MAX];
			dispatch_view *v = &dv[i];
			collector__dispatch__init(&v->d);
			collector__service_type_ref__init(&v->svc);
			collector__status__init(&v->st);
			char *t = (char *)e->text;
			snprintf(v->id, sizeof(v->id), "%s-%llu", m->self,
				 (unsigned long long)e->seq);
			v->d.id = v->id;
			v->d.namespace_ = t + e->at[0];
			v->svc.namespace_ = t + e->at[0];
			v->svc.service_name = t + e->at[1];
			v->d.service = &v->svc;
			v->d.method_name = t + e->at[2];
			v->d.source_collector_id = t + e->at[3];
			v->d.target_collector_id = t + e->at[4];
			v->st.code = svc_status_code(e->code);
			v->st.message = t + e->at[5];
			v->d.result_status = &v->st;
			timestamp_at(&v->at, e->at_us);
			v->d.completed_at = &v->at;
			dp[i] = &v->d;
		}
		strmap_each(&m->counts, view_count, &cv);
		Collector__Status ok = COLLECTOR__STATUS__INIT;
		Collector__ListDispatchesResponse r = COLLECTOR__LIST_DISPATCHES_RESPONSE__INIT;
		r.status = &ok;
		r.dispatches = dp;
		r.n_dispatches = n;
		r.counts = cv.p;
		r.n_counts = cv.n;
		out = pack(&r.base, len);
	}
	pthread_mutex_unlock(&m->mu);
	mem_free(dv);
	mem_free(dp);
	mem_free(cv.v);
	mem_free(cv.p);
	return out;
}
