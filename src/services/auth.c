/* Who may do what: tokens, the one check on the call path, the audit log (auth.h).
 *
 * Where the check sits: the h2 server calls auth_check when a call's headers are in and,
 * for methods whose request names the namespace they act in, once more with the first
 * decoded request message, before the handler sees it (h2_server_set_auth). Every way
 * into a method (HTTP/2 gRPC, and any other framing that starts calls through the same
 * call path) passes there, and no handler checks anything itself. What a method needs is
 * declared in the method table (method_access, filled by collector_api.c), so the check
 * reads the namespace generically: a declared path of string fields into the decoded
 * request, read through protobuf-c's descriptors, else the x-collector-namespace header,
 * else the node's default namespace — exactly what svc_namespace gives the handler, so the
 * namespace checked is the namespace acted in. The credential is judged at the headers,
 * before any request byte is decoded, so an unknown caller costs one hash.
 *
 * The token table is read by every reactor at once and written only by the token RPCs (on
 * the pool, after the write to system/tokens is durable): a reader-writer lock, held for a
 * lookup and a copy of the caller's grants into the call's arena. */
#include "services/auth.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/hex.h"
#include "base/log.h"
#include "base/mem.h"
#include "collector/auth.pb-c.h"
#include "h2/status.h"
#include "services/strmap.h"
#include "services/syscoll.h"

#define TOKENS "tokens"
#define AUDIT "audit"
#define TOKEN_PREFIX "col_"
/* Audit rows kept: the oldest go as new ones come. */
#define AUDIT_CAP 10000
/* Audit rows written per second at most: a flood of refused calls must not turn into a
 * flood of writes; what goes over is counted and logged. */
#define AUDIT_PER_SEC 200
#define AUDIT_LIST_DEFAULT 100
#define AUDIT_LIST_MAX 1000
#define NS_MAX 64
#define NAME_MAX_LEN 64
#define WHO_MAX (AUTH_ID_HEX + NAME_MAX_LEN + 4)
#define MAX_TOKENS 100000
#define SUBJECT_MAX 256

typedef struct grant {
	char ns[NS_MAX]; /* a namespace, or "*" */
	unsigned scopes;
} grant;

/* Who a call comes from, copied into its arena at the headers. */
typedef struct principal {
	char who[WHO_MAX];
	char id[AUTH_ID_HEX + 1];
	size_t ngrants;
	grant grants[];
} principal;

typedef struct token {
	char id[AUTH_ID_HEX + 1];
	char name[NAME_MAX_LEN];
	uint8_t hash[SHA256_DIGEST_LENGTH];
	bool node; /* the mesh credential (not stored; from --mesh-token-file) */
	/* The local credential (made at start, never stored nor shown): read and write in
	 * the namespace the call's metadata names, nothing else. */
	bool local;
	char subject[SUBJECT_MAX]; /* a client certificate's that stands for it; "": none */
	size_t ngrants;
	grant grants[AUTH_MAX_GRANTS];
} token;

struct auth {
	const svc_env *env;
	bool on;
	pthread_rwlock_t lock;
	strmap tokens;	 /* id -> token */
	strmap subjects; /* certificate subject -> the same token */
	char node_credential[7 + AUTH_TOKEN_LEN + 1];
	char local_credential[7 + AUTH_TOKEN_LEN + 1];
	_Atomic uint64_t gen;	   /* bumped by every change of the tables (memos) */
	_Atomic int64_t audit_seq; /* the last one written */
	_Atomic int64_t audit_sec, audit_in_sec, audit_dropped;
};

/* ---- parsing (peer bytes) ---- */

int auth_parse_bearer(const uint8_t *v, size_t n, const uint8_t **tok, size_t *len)
{
	static const char scheme[] = "bearer";
	size_t k = sizeof(scheme) - 1, i = k;
	if (n <= k || strncasecmp((const char *)v, scheme, k) || (v[k] != ' ' && v[k] != '\t'))
		return -EINVAL;
	while (i < n && (v[i] == ' ' || v[i] == '\t'))
		i++;
	size_t end = n;
	while (end > i && (v[end - 1] == ' ' || v[end - 1] == '\t'))
		end--;
	if (end == i)
		return -EINVAL;
	*tok = v + i;
	*len = end - i;
	return 0;
}

static bool lower_hex(const uint8_t *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

bool auth_parse_token(const uint8_t *tok, size_t len, char id[AUTH_ID_HEX + 1])
{
	const size_t pre = sizeof(TOKEN_PREFIX) - 1;
	if (len != AUTH_TOKEN_LEN || memcmp(tok, TOKEN_PREFIX, pre) ||
	    !lower_hex(tok + pre, AUTH_ID_HEX) || tok[pre + AUTH_ID_HEX] != '_' ||
	    !lower_hex(tok + pre + AUTH_ID_HEX + 1, AUTH_SECRET_HEX))
		return false;
	memcpy(id, tok + pre, AUTH_ID_HEX);
	id[AUTH_ID_HEX] = 0;
	return true;
}

static const char *const scope_names[] = {"read", "write", "register", "admin"};

unsigned auth_scope_bit(const char *name)
{
	for (unsigned i = 0; i < sizeof(scope_names) / sizeof(scope_names[0]); i++)
		if (!strcmp(name, scope_names[i]))
			return 1u << i;
	return 0;
}

/* What a grant's scopes allow: write reads too, admin does everything in its namespace. */
static unsigned implied(unsigned s)
{
	if (s & AUTH_ADMIN)
		s |= AUTH_READ | AUTH_WRITE | AUTH_REGISTER;
	if (s & AUTH_WRITE)
		s |= AUTH_READ;
	return s;
}

/* ---- the request's namespace, read through the descriptors ---- */

/* The string at a dotted path of singular fields (messages on the way), or NULL when the
 * path reaches nothing (an unset message or oneof on the way). With check, m is not read:
 * only whether the path fits descriptor d (the table's declarations are checked at
 * start-up, so that a typo cannot quietly fall back to the header). */
static const char *field_at(const ProtobufCMessageDescriptor *d, const ProtobufCMessage *m,
			    const char *path, size_t plen, bool check)
{
	while (d) {
		const char *dot = memchr(path, '.', plen);
		size_t n = dot ? (size_t)(dot - path) : plen;
		char seg[64];
		if (!n || n >= sizeof(seg))
			return NULL;
		memcpy(seg, path, n);
		seg[n] = 0;
		const ProtobufCFieldDescriptor *f =
			protobuf_c_message_descriptor_get_field_by_name(d, seg);
		if (!f || f->label == PROTOBUF_C_LABEL_REPEATED)
			return NULL;
		if (!check && (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
		    *(const uint32_t *)((const char *)m + f->quantifier_offset) != f->id)
			return NULL;
		if (!dot) {
			if (f->type != PROTOBUF_C_TYPE_STRING)
				return NULL;
			return check ? "" : *(char *const *)((const char *)m + f->offset);
		}
		if (f->type != PROTOBUF_C_TYPE_MESSAGE)
			return NULL;
		d = f->descriptor;
		if (!check && !(m = *(ProtobufCMessage *const *)((const char *)m + f->offset)))
			return NULL;
		path = dot + 1;
		plen -= n + 1;
	}
	return NULL;
}

bool auth_field_valid(const ProtobufCMessageDescriptor *d, const char *spec)
{
	/* Alternatives separated by '|', the first one set wins. */
	while (spec && *spec) {
		const char *bar = strchr(spec, '|');
		size_t n = bar ? (size_t)(bar - spec) : strlen(spec);
		if (!d || !field_at(d, NULL, spec, n, true))
			return false;
		spec = bar ? bar + 1 : NULL;
	}
	return true;
}

static const char *field_value(const ProtobufCMessage *m, const char *spec)
{
	while (spec && *spec) {
		const char *bar = strchr(spec, '|');
		size_t n = bar ? (size_t)(bar - spec) : strlen(spec);
		const char *v = field_at(m->descriptor, m, spec, n, false);
		if (v && *v)
			return v;
		spec = bar ? bar + 1 : NULL;
	}
	return NULL;
}

/* ---- the token table ---- */

static void sha256(const uint8_t *in, size_t n, uint8_t out[SHA256_DIGEST_LENGTH])
{
	SHA256(in, n, out);
}

/* Adds or replaces t (copied); under the write lock. */
static int table_put(auth *a, const token *t)
{
	token *copy = mem_alloc(sizeof(*copy));
	if (!copy)
		return -ENOMEM;
	*copy = *t;
	token *old = NULL;
	size_t sl = strlen(copy->subject);
	pthread_rwlock_wrlock(&a->lock);
	int rc = a->tokens.used >= MAX_TOKENS ? -ENOSPC : 0;
	if (!rc && sl && strmap_get(&a->subjects, copy->subject, sl))
		rc = -EEXIST; /* one certificate subject stands for one token */
	if (!rc && sl)
		rc = strmap_put(&a->subjects, copy->subject, sl, copy, NULL);
	if (!rc && (rc = strmap_put(&a->tokens, copy->id, strlen(copy->id), copy, (void **)&old)) &&
	    sl)
		strmap_del(&a->subjects, copy->subject, sl);
	if (!rc && old && old->subject[0] && strcmp(old->subject, copy->subject))
		strmap_del(&a->subjects, old->subject, strlen(old->subject));
	if (!rc)
		a->gen++;
	pthread_rwlock_unlock(&a->lock);
	mem_free(rc ? copy : old);
	return rc;
}

static bool table_del(auth *a, const char *id)
{
	pthread_rwlock_wrlock(&a->lock);
	token *t = strmap_get(&a->tokens, id, strlen(id));
	if (t && (t->node || t->local))
		t = NULL; /* the operator's file, or the node's own: not stored tokens */
	else
		t = strmap_del(&a->tokens, id, strlen(id));
	if (t && t->subject[0])
		strmap_del(&a->subjects, t->subject, strlen(t->subject));
	if (t)
		a->gen++;
	pthread_rwlock_unlock(&a->lock);
	mem_free(t);
	return t != NULL;
}

/* t as the principal of c, in c's arena (under the lock). */
static principal *principal_of(const auth *a, call *c, const token *t)
{
	size_t n = t->local ? 1 : t->ngrants;
	principal *p = call_alloc(c, sizeof(*p) + n * sizeof(grant));
	if (!p)
		return NULL;
	if (t->node || t->local)
		snprintf(p->who, sizeof(p->who), "%s", t->node ? "node" : "local");
	else
		snprintf(p->who, sizeof(p->who), "%s (%s)", t->id, t->name);
	memcpy(p->id, t->id, sizeof(p->id));
	p->ngrants = n;
	if (t->local) {
		/* Where the route that made the call runs, which its caller (or the starter
		 * of its workflow) was allowed to write to; a request naming another
		 * namespace is refused. */
		snprintf(p->grants[0].ns, NS_MAX, "%s", svc_namespace(c, a->env, NULL));
		p->grants[0].scopes = AUTH_READ | AUTH_WRITE;
	} else {
		memcpy(p->grants, t->grants, n * sizeof(grant));
	}
	return p;
}

/* What a connection's last bearer token stood for (call_set_conn_memo): the next call
 * there with the same token is judged by a comparison in constant time, not by a digest
 * and a lookup under the lock; any change of the tables (a token revoked or replaced)
 * makes every memo stale. Not for the local credential, whose grant depends on the call. */
typedef struct memo {
	uint64_t gen;
	uint8_t tok[AUTH_TOKEN_LEN];
	size_t size;  /* of *p */
	principal *p; /* right after the memo, in its allocation */
} memo;

static void memo_free(void *m)
{
	if (m)
		OPENSSL_cleanse(m, sizeof(memo));
	mem_free(m);
}

static principal *principal_copy(call *c, const principal *from, size_t size)
{
	principal *p = call_alloc(c, size);
	if (p)
		memcpy(p, from, size);
	return p;
}

static void remember(call *c, const uint8_t *tok, uint64_t gen, const principal *p)
{
	size_t size = sizeof(*p) + p->ngrants * sizeof(grant);
	memo *m = mem_alloc(sizeof(*m) + size);
	if (!m)
		return; /* the next call looks it up again */
	m->gen = gen;
	memcpy(m->tok, tok, AUTH_TOKEN_LEN);
	m->size = size;
	m->p = (principal *)(m + 1);
	memcpy(m->p, p, size);
	call_set_conn_memo(c, m, memo_free);
}

/* The principal the token tok stands for, in c's arena; NULL when it stands for none. */
static principal *lookup(auth *a, call *c, const uint8_t *tok, size_t len)
{
	char id[AUTH_ID_HEX + 1];
	if (!auth_parse_token(tok, len, id))
		return NULL;
	const memo *m = call_conn_memo(c);
	uint64_t gen = atomic_load(&a->gen);
	if (m && m->gen == gen && !CRYPTO_memcmp(m->tok, tok, AUTH_TOKEN_LEN))
		return principal_copy(c, m->p, m->size);
	uint8_t h[SHA256_DIGEST_LENGTH];
	sha256(tok, len, h);
	principal *p = NULL;
	bool local = false;
	pthread_rwlock_rdlock(&a->lock);
	/* The generation the entry is read at: a change after it makes the memo stale. */
	gen = atomic_load(&a->gen);
	/* The id picks the entry (it is no secret); the secret is judged by its digest,
	 * compared in constant time. */
	const token *t = strmap_get(&a->tokens, id, strlen(id));
	if (t && !CRYPTO_memcmp(h, t->hash, sizeof(h))) {
		p = principal_of(a, c, t);
		local = t->local;
	}
	pthread_rwlock_unlock(&a->lock);
	if (p && !local)
		remember(c, tok, gen, p);
	return p;
}

/* The principal a verified client certificate stands for (its subject mapped to a
 * token); NULL for none. The handshake verified the chain against --tls-client-ca: the
 * subject is not a secret to compare, only a name to find. */
static principal *lookup_subject(auth *a, call *c)
{
	const char *subject = call_peer_subject(c);
	size_t n = subject ? strlen(subject) : 0;
	if (!n)
		return NULL;
	principal *p = NULL;
	pthread_rwlock_rdlock(&a->lock);
	const token *t = strmap_get(&a->subjects, subject, n);
	if (t)
		p = principal_of(a, c, t);
	pthread_rwlock_unlock(&a->lock);
	return p;
}

/* ---- the audit log ---- */

typedef struct audit_job {
	pool_job pj;
	auth *a;
	int64_t time_ms;
	int code;
	char who[WHO_MAX], method[160], ns[NS_MAX], peer[64];
} audit_job;

static void audit_work(pool_job *pj)
{
	audit_job *j = (audit_job *)pj;
	auth *a = j->a;
	Collector__AuditEntry e = COLLECTOR__AUDIT_ENTRY__INIT;
	e.seq = atomic_fetch_add(&a->audit_seq, 1) + 1;
	e.time = j->time_ms;
	e.who = j->who;
	e.method = j->method;
	e.namespace_ = j->ns;
	e.peer = j->peer;
	e.code = j->code;
	store_coll *c;
	if (syscoll_open(a->env, AUDIT, "collector.AuditEntry", &c))
		return;
	char id[24], old[24];
	snprintf(id, sizeof(id), "%020lld", (long long)e.seq);
	snprintf(old, sizeof(old), "%020lld", (long long)(e.seq - AUDIT_CAP));
	syscoll_row row;
	if (!syscoll_row_make(a->env->types, &e.base, &row)) {
		store_op op = {.kind = STORE_OP_INSERT,
			       .id = id,
			       .row = {row.data, row.len, row.json.text, NULL}};
		if (!syscoll_write_wait(c, &op, 1) && e.seq > AUDIT_CAP) {
			op = (store_op){.kind = STORE_OP_DELETE, .id = old};
			syscoll_write_wait(c, &op, 1); /* -ENOENT: gone already */
		}
	}
	syscoll_row_free(&row);
	store_coll_release(c);
}

static void audit_done(pool_job *pj) { mem_free(pj); }

/* Records a decision (reactor thread): written on the pool, never waited for. */
static void audit(auth *a, call *c, const principal *p, const char *ns, int code)
{
	int64_t now = clock_wall_ns();
	int64_t sec = now / 1000000000;
	if (atomic_exchange(&a->audit_sec, sec) != sec)
		atomic_store(&a->audit_in_sec, 0);
	if (atomic_fetch_add(&a->audit_in_sec, 1) >= AUDIT_PER_SEC) {
		if (atomic_fetch_add(&a->audit_dropped, 1) % 10000 == 0)
			log_warn("auth: audit entries over %d per second are dropped",
				 AUDIT_PER_SEC);
		return;
	}
	audit_job *j = mem_calloc(1, sizeof(*j));
	if (!j)
		return;
	j->a = a;
	j->time_ms = now / 1000000;
	j->code = code;
	const method *m = call_method(c);
	snprintf(j->who, sizeof(j->who), "%s", p ? p->who : "");
	snprintf(j->method, sizeof(j->method), "%s", m ? m->path : "");
	snprintf(j->ns, sizeof(j->ns), "%s", ns ? ns : "");
	snprintf(j->peer, sizeof(j->peer), "%s", call_peer(c) ? call_peer(c) : "");
	j->pj.work = audit_work;
	j->pj.done = audit_done;
	if (!a->env->pool || pool_submit(a->env->pool, NULL, &j->pj))
		mem_free(j);
}

/* ---- the check ---- */

static bool granted(const principal *p, const char *ns, bool every, unsigned need)
{
	for (size_t i = 0; i < p->ngrants; i++) {
		const grant *g = &p->grants[i];
		bool star = g->ns[0] == '*' && !g->ns[1];
		if (!star && (every || strcmp(g->ns, ns)))
			continue;
		if (implied(g->scopes) & need)
			return true;
	}
	return false;
}

/* One scope requirement of m: the namespace it acts in, from the request's field (spec)
 * or as svc_namespace has it. */
static bool allowed(auth *a, call *c, const principal *p, const method_access *ac, unsigned scopes,
		    const char *spec, const ProtobufCMessage *req, const char **ns_out)
{
	const char *v = spec && req ? field_value(req, spec) : NULL;
	const char *ns = svc_namespace(c, a->env, v);
	bool every = ac->node_wide || (ac->empty_all && !v) ||
		     (ac->unnamed_all && svc_ns_unnamed(a->env, ns));
	*ns_out = every ? "*" : ns;
	/* Undeclared: the node's full admins only (deny by default). */
	if (!scopes)
		return granted(p, ns, true, AUTH_ADMIN);
	return granted(p, ns, every, scopes);
}

int auth_check(void *ctx, call *c, const method *m, const ProtobufCMessage *req, bool *need_request,
	       char *msg, size_t cap)
{
	auth *a = ctx;
	if (!a->on || (m && m->access.open))
		return GRPC_OK;
	principal *p = call_auth(c);
	if (!p) {
		const call_md *md = call_md_get(c, "authorization");
		const uint8_t *tok;
		size_t len;
		/* A bearer token, when there is one, is what the caller means; else the
		 * client certificate may stand for a token. */
		if (md && !auth_parse_bearer(md->value, md->value_len, &tok, &len))
			p = lookup(a, c, tok, len);
		else if (!md)
			p = lookup_subject(a, c);
		if (!p) {
			audit(a, c, NULL, NULL, GRPC_UNAUTHENTICATED);
			snprintf(msg, cap, "a valid bearer token is required");
			return GRPC_UNAUTHENTICATED;
		}
		call_set_auth(c, p);
	}
	/* No method yet: the fallback may still supply one (then this runs again); else the
	 * call is UNIMPLEMENTED, which only a caller with a valid token gets to see. */
	if (!m)
		return GRPC_OK;
	const method_access *ac = &m->access;
	if ((ac->ns_field || ac->ns_field2) && m->input && !req) {
		*need_request = true;
		return GRPC_OK;
	}
	const char *ns = NULL, *ns2 = NULL;
	bool ok = ac->any_token ||
		  (allowed(a, c, p, ac, ac->scopes, ac->ns_field, req, &ns) &&
		   (!ac->scopes2 || allowed(a, c, p, ac, ac->scopes2, ac->ns_field2, req, &ns2)));
	if (!ok) {
		audit(a, c, p, ns2 ? ns2 : ns, GRPC_PERMISSION_DENIED);
		/* The same words whatever exists or not in that namespace. */
		snprintf(msg, cap, "the token does not allow this call");
		return GRPC_PERMISSION_DENIED;
	}
	/* Admin actions are recorded (undeclared methods are admin-only), not the heartbeats
	 * of linked nodes nor the reading of the log itself. */
	bool admin_only = (ac->scopes & AUTH_ADMIN) || (!ac->scopes && !ac->any_token);
	if (admin_only && strcmp(p->who, "node") && !ac->not_audited)
		audit(a, c, p, ns, GRPC_OK);
	return GRPC_OK;
}

const char *auth_local_credential(const auth *a)
{
	return a && a->local_credential[0] ? a->local_credential : NULL;
}

const char *auth_node_credential(const auth *a)
{
	return a && a->node_credential[0] ? a->node_credential : NULL;
}

/* ---- tokens kept ---- */

static bool grants_from(token *t, Collector__AuthGrant *const *g, size_t n, char *err, size_t cap)
{
	if (!n || n > AUTH_MAX_GRANTS) {
		snprintf(err, cap, "a token needs 1 to %d grants", AUTH_MAX_GRANTS);
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		const char *ns = g[i]->namespace_ ? g[i]->namespace_ : "";
		if (strcmp(ns, "*") && !store_name_valid(ns)) {
			snprintf(err, cap, "grant %zu: namespace must be a namespace name or '*'",
				 i);
			return false;
		}
		unsigned s = 0;
		for (size_t k = 0; k < g[i]->n_scopes; k++) {
			unsigned b = auth_scope_bit(g[i]->scopes[k]);
			if (!b) {
				snprintf(err, cap,
					 "grant %zu: unknown scope '%.40s' (read, write, register, "
					 "admin)",
					 i, g[i]->scopes[k]);
				return false;
			}
			s |= b;
		}
		if (!s) {
			snprintf(err, cap, "grant %zu has no scope", i);
			return false;
		}
		snprintf(t->grants[i].ns, NS_MAX, "%s", ns);
		t->grants[i].scopes = s;
	}
	t->ngrants = n;
	return true;
}

static int load_one(void *ctx, const store_record *rec)
{
	auth *a = ctx;
	Collector__AuthToken *m =
		svc_decode(&collector__auth_token__descriptor, rec->data, rec->data_len);
	token t = {0};
	char err[160];
	if (m && m->id && strlen(m->id) == AUTH_ID_HEX && m->secret_hash.len == sizeof(t.hash) &&
	    grants_from(&t, m->grants, m->n_grants, err, sizeof(err))) {
		memcpy(t.id, m->id, sizeof(t.id));
		snprintf(t.name, sizeof(t.name), "%s", m->name ? m->name : "");
		memcpy(t.hash, m->secret_hash.data, sizeof(t.hash));
		snprintf(t.subject, sizeof(t.subject), "%s",
			 m->cert_subject ? m->cert_subject : "");
		if (table_put(a, &t))
			log_warn("auth: token %s not loaded", m->id);
	} else {
		log_warn("auth: a damaged row of system/%s is ignored", TOKENS);
	}
	if (m)
		protobuf_c_message_free_unpacked(&m->base, NULL);
	return 0;
}

/* Writes t (its grants, the digest) to system/tokens; durable when it returns 0. */
static int token_store(const svc_env *env, const token *t, const char *by, int64_t created_ms)
{
	Collector__AuthGrant g[AUTH_MAX_GRANTS], *gp[AUTH_MAX_GRANTS];
	char *scopes[AUTH_MAX_GRANTS][4];
	for (size_t i = 0; i < t->ngrants; i++) {
		collector__auth_grant__init(&g[i]);
		g[i].namespace_ = (char *)t->grants[i].ns;
		g[i].scopes = scopes[i];
		for (unsigned b = 0; b < 4; b++)
			if (t->grants[i].scopes & (1u << b))
				scopes[i][g[i].n_scopes++] = (char *)scope_names[b];
		gp[i] = &g[i];
	}
	Collector__AuthToken m = COLLECTOR__AUTH_TOKEN__INIT;
	m.id = (char *)t->id;
	m.name = (char *)t->name;
	m.grants = gp;
	m.n_grants = t->ngrants;
	m.created_at = created_ms;
	m.created_by = (char *)by;
	m.secret_hash.data = (uint8_t *)t->hash;
	m.secret_hash.len = sizeof(t->hash);
	m.cert_subject = (char *)t->subject;
	store_coll *c;
	int rc = syscoll_open(env, TOKENS, "collector.AuthToken", &c);
	if (rc)
		return rc;
	syscoll_row row;
	rc = syscoll_row_make(env->types, &m.base, &row);
	store_op op = {.kind = STORE_OP_INSERT,
		       .id = t->id,
		       .row = {row.data, row.len, row.json.text, NULL}};
	if (!rc)
		rc = syscoll_write_wait(c, &op, 1);
	syscoll_row_free(&row);
	store_coll_release(c);
	return rc;
}

/* A new token's text (AUTH_TOKEN_LEN + NUL) and its entry. */
static int token_new(token *t, char text[AUTH_TOKEN_LEN + 1])
{
	uint8_t id[AUTH_ID_HEX / 2], secret[AUTH_SECRET_HEX / 2];
	if (RAND_bytes(id, sizeof(id)) != 1 || RAND_bytes(secret, sizeof(secret)) != 1)
		return -EIO;
	memcpy(text, TOKEN_PREFIX, 4);
	hex_encode(text + 4, id, sizeof(id));
	text[4 + AUTH_ID_HEX] = '_';
	hex_encode(text + 5 + AUTH_ID_HEX, secret, sizeof(secret));
	memcpy(t->id, text + 4, AUTH_ID_HEX);
	t->id[AUTH_ID_HEX] = 0;
	sha256((const uint8_t *)text, AUTH_TOKEN_LEN, t->hash);
	OPENSSL_cleanse(secret, sizeof(secret));
	return 0;
}

/* A token from a file the operator keeps (trailing space and newlines allowed):
 * 0, -ENOENT when there is no file, -EINVAL when it holds no token of the node's form. */
static int token_read_file(const char *path, char text[AUTH_TOKEN_LEN + 1])
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -errno;
	char buf[AUTH_TOKEN_LEN + 64];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
		n--;
	char id[AUTH_ID_HEX + 1];
	if (!auth_parse_token((const uint8_t *)buf, n, id))
		return -EINVAL;
	memcpy(text, buf, AUTH_TOKEN_LEN);
	text[AUTH_TOKEN_LEN] = 0;
	return 0;
}

/* Writes a new secret file, readable by its owner only; an existing file is kept. */
static int token_write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	size_t n = strlen(text);
	bool ok = write(fd, text, n) == (ssize_t)n && write(fd, "\n", 1) == 1 && !fsync(fd);
	close(fd);
	return ok ? 0 : -EIO;
}

/* A token from path, made and written there (0600) when the file does not exist. */
static int token_file(const char *path, char text[AUTH_TOKEN_LEN + 1], token *t, bool *made)
{
	*made = false;
	int rc = token_read_file(path, text);
	if (rc == -ENOENT) {
		if ((rc = token_new(t, text)) || (rc = token_write_file(path, text)))
			return rc;
		*made = true;
	} else if (rc) {
		return rc;
	}
	char id[AUTH_ID_HEX + 1];
	auth_parse_token((const uint8_t *)text, AUTH_TOKEN_LEN, id);
	memcpy(t->id, id, sizeof(t->id));
	sha256((const uint8_t *)text, AUTH_TOKEN_LEN, t->hash);
	return 0;
}

static int bootstrap_admin(auth *a, const auth_opts *o, char *err, size_t cap)
{
	char path[1024];
	const char *file = o->admin_token_file;
	if (!file) {
		/* Without a file named, only a node that keeps no token yet makes one. */
		if (a->tokens.used)
			return 0;
		snprintf(path, sizeof(path), "%s/system/admin-token", o->data_dir);
		file = path;
	}
	char text[AUTH_TOKEN_LEN + 1];
	token t = {.ngrants = 1, .grants = {{"*", AUTH_ADMIN}}};
	snprintf(t.name, sizeof(t.name), "admin");
	bool made;
	int rc = token_file(file, text, &t, &made);
	if (rc) {
		snprintf(err, cap, "%s: %s", file,
			 rc == -EINVAL ? "holds no token of the form col_<16 hex>_<64 hex>"
				       : strerror(-rc));
		return rc;
	}
	pthread_rwlock_rdlock(&a->lock);
	bool known = strmap_get(&a->tokens, t.id, strlen(t.id)) != NULL;
	pthread_rwlock_unlock(&a->lock);
	if (known)
		return 0;
	if ((rc = token_store(a->env, &t, "", clock_wall_ns() / 1000000)) ||
	    (rc = table_put(a, &t))) {
		snprintf(err, cap, "cannot keep the admin token: %s", strerror(-rc));
		return rc;
	}
	if (made)
		fprintf(stderr,
			"auth: the first admin token (shown once; also in %s, mode 0600):\n%s\n",
			file, text);
	else
		log_info("auth: the admin token of %s is installed (id %s)", file, t.id);
	OPENSSL_cleanse(text, sizeof(text));
	return 0;
}

static int audit_last(void *ctx, const store_record *rec)
{
	int64_t *last = ctx, v = strtoll(rec->id, NULL, 10);
	if (v > *last)
		*last = v;
	return 0;
}

int auth_open(const svc_env *env, const auth_opts *o, auth **out, char *err, size_t cap)
{
	*out = NULL;
	auth *a = mem_calloc(1, sizeof(*a));
	if (!a) {
		snprintf(err, cap, "out of memory");
		return -ENOMEM;
	}
	a->env = env;
	a->on = o->on;
	pthread_rwlock_init(&a->lock, NULL);
	/* With auth off nothing is checked, so nothing is loaded (the collections open when
	 * the token RPCs first use them). */
	store_coll *c;
	int rc = o->on ? syscoll_open(env, TOKENS, "collector.AuthToken", &c) : 0;
	if (!rc && o->on) {
		rc = syscoll_each(c, load_one, a);
		store_coll_release(c);
	}
	if (!rc && o->on && !(rc = syscoll_open(env, AUDIT, "collector.AuditEntry", &c))) {
		/* The newest row's seq, to go on from: ids are its zero-padded seq. */
		int64_t last = 0;
		rc = syscoll_each(c, audit_last, &last);
		atomic_store(&a->audit_seq, last);
		store_coll_release(c);
	}
	if (rc) {
		snprintf(err, cap, "cannot load system/%s: %s", TOKENS, store_err_msg());
		auth_free(a);
		return rc;
	}
	if (o->on && (rc = bootstrap_admin(a, o, err, cap))) {
		auth_free(a);
		return rc;
	}
	{
		char text[AUTH_TOKEN_LEN + 1];
		token t = {.local = true};
		snprintf(t.name, sizeof(t.name), "local");
		if ((rc = token_new(&t, text)) || (rc = table_put(a, &t))) {
			snprintf(err, cap, "cannot make the local credential: %s", strerror(-rc));
			auth_free(a);
			return rc;
		}
		snprintf(a->local_credential, sizeof(a->local_credential), "Bearer %s", text);
		OPENSSL_cleanse(text, sizeof(text));
	}
	if (o->mesh_token_file) {
		char text[AUTH_TOKEN_LEN + 1];
		token t = {.node = true,
			   .ngrants = 1,
			   .grants = {{"*", AUTH_READ | AUTH_WRITE | AUTH_REGISTER | AUTH_NODE}}};
		snprintf(t.name, sizeof(t.name), "node");
		bool made;
		if ((rc = token_file(o->mesh_token_file, text, &t, &made)) ||
		    (rc = table_put(a, &t))) {
			snprintf(err, cap, "--mesh-token-file %s: %s", o->mesh_token_file,
				 rc == -EINVAL ? "holds no token of the form col_<16 hex>_<64 hex>"
					       : strerror(-rc));
			auth_free(a);
			return rc;
		}
		if (made)
			log_info("auth: made the mesh token in %s: give the same file to every "
				 "node of the mesh",
				 o->mesh_token_file);
		snprintf(a->node_credential, sizeof(a->node_credential), "Bearer %s", text);
		OPENSSL_cleanse(text, sizeof(text));
	}
	if (!o->on)
		log_warn("auth: OFF (--auth off): ANY client may read, write, register, reset and "
			 "stop this node; use it for local development only");
	*out = a;
	return 0;
}

static void free_token(void *ctx, const char *key, size_t len, void *value)
{
	(void)ctx, (void)key, (void)len;
	mem_free(value);
}

void auth_free(auth *a)
{
	if (!a)
		return;
	strmap_each(&a->tokens, free_token, NULL);
	strmap_free(&a->tokens);
	strmap_free(&a->subjects);
	pthread_rwlock_destroy(&a->lock);
	OPENSSL_cleanse(a->node_credential, sizeof(a->node_credential));
	OPENSSL_cleanse(a->local_credential, sizeof(a->local_credential));
	mem_free(a);
}

/* ---- collector.CollectorAuth (admin on every namespace; the pool) ---- */

#define AUTH_SVC "/collector.CollectorAuth/"

static Collector__Status status_ok = COLLECTOR__STATUS__INIT;

static auth *auth_of(svc_job *sj) { return ((svc_req_job *)sj)->env->auth; }

/* The caller's token id ("" with auth off). The principal is written once at the
 * headers, before the job exists, so the pool thread reads it safely. */
static const char *caller_id(svc_job *sj)
{
	const principal *p = call_auth(sj->c);
	return p ? p->id : "";
}

static void create_work(svc_job *sj)
{
	svc_req_job *j = (svc_req_job *)sj;
	const Collector__CreateTokenRequest *req = j->req;
	auth *a = auth_of(sj);
	token t = {0};
	char err[200];
	const char *name = req->name ? req->name : "";
	size_t nlen = strlen(name);
	bool printable = nlen && nlen < NAME_MAX_LEN;
	for (size_t i = 0; printable && i < nlen; i++)
		printable = (unsigned char)name[i] >= 0x20 && name[i] != 0x7f;
	if (!printable) {
		svc_job_fail(sj, GRPC_INVALID_ARGUMENT,
			     "name: 1 to %d bytes without control characters", NAME_MAX_LEN - 1);
		return;
	}
	if (!grants_from(&t, req->grants, req->n_grants, err, sizeof(err))) {
		svc_job_fail(sj, GRPC_INVALID_ARGUMENT, "%s", err);
		return;
	}
	memcpy(t.name, name, nlen + 1);
	const char *subject = req->cert_subject ? req->cert_subject : "";
	size_t slen = strlen(subject);
	bool ok = slen < SUBJECT_MAX;
	for (size_t i = 0; ok && i < slen; i++)
		ok = (unsigned char)subject[i] >= 0x20 && subject[i] != 0x7f;
	if (!ok) {
		svc_job_fail(sj, GRPC_INVALID_ARGUMENT,
			     "cert_subject: at most %d bytes without control characters",
			     SUBJECT_MAX - 1);
		return;
	}
	memcpy(t.subject, subject, slen + 1);
	pthread_rwlock_rdlock(&a->lock);
	bool taken = slen && strmap_get(&a->subjects, subject, slen);
	pthread_rwlock_unlock(&a->lock);
	if (taken) {
		svc_job_fail(sj, GRPC_ALREADY_EXISTS,
			     "another token stands for certificates of that subject");
		return;
	}
	char text[AUTH_TOKEN_LEN + 1];
	int64_t now = clock_wall_ns() / 1000000;
	int rc = token_new(&t, text);
	if (!rc && !(rc = token_store(a->env, &t, caller_id(sj), now)))
		rc = table_put(a, &t);
	if (rc) {
		OPENSSL_cleanse(text, sizeof(text));
		svc_fail_store(sj, rc, "keeping the token");
		return;
	}
	Collector__AuthToken info = COLLECTOR__AUTH_TOKEN__INIT;
	Collector__CreateTokenResponse resp = COLLECTOR__CREATE_TOKEN_RESPONSE__INIT;
	info.id = t.id;
	info.name = t.name;
	info.grants = req->grants;
	info.n_grants = req->n_grants;
	info.created_at = now;
	info.created_by = (char *)caller_id(sj);
	info.cert_subject = t.subject;
	resp.status = &status_ok;
	resp.token = text;
	resp.info = &info;
	svc_job_answer(sj, &resp.base);
	OPENSSL_cleanse(text, sizeof(text));
}

static void revoke_work(svc_job *sj)
{
	svc_req_job *j = (svc_req_job *)sj;
	const Collector__RevokeTokenRequest *req = j->req;
	auth *a = auth_of(sj);
	const char *id = req->id ? req->id : "";
	if (strlen(id) != AUTH_ID_HEX || !lower_hex((const uint8_t *)id, AUTH_ID_HEX)) {
		svc_job_fail(sj, GRPC_INVALID_ARGUMENT, "id: %d lowercase hex digits", AUTH_ID_HEX);
		return;
	}
	store_coll *c;
	int rc = syscoll_open(a->env, TOKENS, "collector.AuthToken", &c);
	if (!rc) {
		store_op op = {.kind = STORE_OP_DELETE, .id = id};
		rc = syscoll_write_wait(c, &op, 1);
		store_coll_release(c);
	}
	/* Gone from the table only once its row is gone: a revoked token never comes back
	 * at the next start. */
	if (!rc)
		table_del(a, id);
	if (rc == -ENOENT) {
		svc_job_fail(sj, GRPC_NOT_FOUND, "no token %s", id);
		return;
	}
	if (rc) {
		svc_fail_store(sj, rc, "revoking the token");
		return;
	}
	Collector__RevokeTokenResponse resp = COLLECTOR__REVOKE_TOKEN_RESPONSE__INIT;
	resp.status = &status_ok;
	svc_job_answer(sj, &resp.base);
}

/* ListTokens: the kept rows, without their digests. */
typedef struct token_list {
	Collector__AuthToken **v;
	size_t n, cap;
	bool nomem;
} token_list;

static int list_one(void *ctx, const store_record *rec)
{
	token_list *l = ctx;
	Collector__AuthToken *m =
		svc_decode(&collector__auth_token__descriptor, rec->data, rec->data_len);
	if (!m)
		return 0;
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16;
		Collector__AuthToken **v = mem_realloc(l->v, cap * sizeof(*v));
		if (!v) {
			protobuf_c_message_free_unpacked(&m->base, NULL);
			l->nomem = true;
			return 1;
		}
		l->v = v;
		l->cap = cap;
	}
	m->secret_hash.len = 0; /* never leaves the node */
	l->v[l->n++] = m;
	return 0;
}

static void list_tokens_work(svc_job *sj)
{
	auth *a = auth_of(sj);
	token_list l = {0};
	store_coll *c;
	int rc = syscoll_open(a->env, TOKENS, "collector.AuthToken", &c);
	if (!rc) {
		rc = syscoll_each(c, list_one, &l);
		store_coll_release(c);
	}
	if (rc || l.nomem) {
		svc_fail_store(sj, rc ? rc : -ENOMEM, "listing the tokens");
	} else {
		Collector__ListTokensResponse resp = COLLECTOR__LIST_TOKENS_RESPONSE__INIT;
		resp.status = &status_ok;
		resp.tokens = l.v;
		resp.n_tokens = l.n;
		svc_job_answer(sj, &resp.base);
	}
	for (size_t i = 0; i < l.n; i++)
		protobuf_c_message_free_unpacked(&l.v[i]->base, NULL);
	mem_free(l.v);
}

typedef struct audit_list {
	Collector__AuditEntry **v;
	size_t n, limit;
	int64_t after;
} audit_list;

static int audit_one(void *ctx, const store_record *rec)
{
	audit_list *l = ctx;
	if (strtoll(rec->id, NULL, 10) <= l->after)
		return 0;
	Collector__AuditEntry *e =
		svc_decode(&collector__audit_entry__descriptor, rec->data, rec->data_len);
	if (e)
		l->v[l->n++] = e;
	return l->n == l->limit;
}

static void list_audit_work(svc_job *sj)
{
	svc_req_job *j = (svc_req_job *)sj;
	const Collector__ListAuditRequest *req = j->req;
	if (req->limit < 0 || req->limit > AUDIT_LIST_MAX || req->after_seq < 0) {
		svc_job_fail(sj, GRPC_INVALID_ARGUMENT,
			     "limit: 0 (default %d) to %d; after_seq: 0 or more",
			     AUDIT_LIST_DEFAULT, AUDIT_LIST_MAX);
		return;
	}
	audit_list l = {.limit = req->limit ? (size_t)req->limit : AUDIT_LIST_DEFAULT,
			.after = req->after_seq};
	l.v = mem_calloc(l.limit, sizeof(*l.v));
	store_coll *c;
	int rc = l.v ? syscoll_open(auth_of(sj)->env, AUDIT, "collector.AuditEntry", &c) : -ENOMEM;
	if (!rc) {
		/* Rows are ordered by their zero-padded seq: the scan is oldest first. */
		rc = syscoll_each(c, audit_one, &l);
		store_coll_release(c);
		if (rc > 0)
			rc = 0; /* audit_one stopped it: the page is full */
	}
	if (rc) {
		svc_fail_store(sj, rc, "reading the audit log");
	} else {
		Collector__ListAuditResponse resp = COLLECTOR__LIST_AUDIT_RESPONSE__INIT;
		resp.status = &status_ok;
		resp.entries = l.v;
		resp.n_entries = l.n;
		svc_job_answer(sj, &resp.base);
	}
	for (size_t i = 0; i < l.n; i++)
		protobuf_c_message_free_unpacked(&l.v[i]->base, NULL);
	mem_free(l.v);
}

/* A table built without the node's auth (a fuzz harness's) has the methods, not the
 * tokens. */
static void start(call *c, const ProtobufCMessage *m, void (*work)(svc_job *j))
{
	const svc_env *env = call_ctx(c);
	if (!env->auth)
		call_finish(c, GRPC_UNAVAILABLE, "this node keeps no tokens");
	else
		svc_start(c, m, NULL, work);
}

static void create_token(call *c, const ProtobufCMessage *m) { start(c, m, create_work); }
static void revoke_token(call *c, const ProtobufCMessage *m) { start(c, m, revoke_work); }
static void list_tokens(call *c, const ProtobufCMessage *m) { start(c, m, list_tokens_work); }
static void list_audit(call *c, const ProtobufCMessage *m) { start(c, m, list_audit_work); }

int auth_register(method_table *t, svc_env *env)
{
	const method methods[] = {
		{AUTH_SVC "CreateToken",
		 METHOD_UNARY,
		 &collector__create_token_request__descriptor,
		 &collector__create_token_response__descriptor,
		 {.on_request = create_token, .on_cancel = svc_job_on_cancel},
		 env,
		 {0}},
		{AUTH_SVC "RevokeToken",
		 METHOD_UNARY,
		 &collector__revoke_token_request__descriptor,
		 &collector__revoke_token_response__descriptor,
		 {.on_request = revoke_token, .on_cancel = svc_job_on_cancel},
		 env,
		 {0}},
		{AUTH_SVC "ListTokens",
		 METHOD_UNARY,
		 &collector__list_tokens_request__descriptor,
		 &collector__list_tokens_response__descriptor,
		 {.on_request = list_tokens, .on_cancel = svc_job_on_cancel},
		 env,
		 {0}},
		{AUTH_SVC "ListAudit",
		 METHOD_UNARY,
		 &collector__list_audit_request__descriptor,
		 &collector__list_audit_response__descriptor,
		 {.on_request = list_audit, .on_cancel = svc_job_on_cancel},
		 env,
		 {0}},
	};
	return method_table_add_all(t, methods, sizeof(methods) / sizeof(methods[0]));
}
