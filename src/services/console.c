/* collector.CollectorConsole. Display: a view of the node as a google.protobuf.Struct,
 * built as JSON text and transcoded through the type pool, with a line a person reads.
 * A view of a part that is not running shows as empty with a note, never as an error. Runs on
 * the pool: the catalog and the registry are read there. Stop and Reset are admin
 * operations, refused unless the node runs with --admin (until authentication exists). */
#include "services/console.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/buf.h"
#include "base/clock.h"
#include "base/jsonstr.h"
#include "base/mem.h"
#include "collector/console.pb-c.h"
#include "collector/registry.pb-c.h"
#include "services/mesh.h"
#include "services/regindex.h"
#include "services/registry_priv.h"
#include "services/wf_engine.h"
#include "services/wf_view.h"
#include "store/json.h"

#define CONSOLE "/collector.CollectorConsole/"
/* Rows listed at most per view: a console shows, it does not export. */
#define LIST_MAX 1000

static void key(buf *b, const char *k)
{
	buf_putc(b, '"');
	buf_puts(b, k);
	buf_puts(b, "\":");
}

static void str(buf *b, const char *s)
{
	jsonstr_put(b, s ? s : "", s ? strlen(s) : 0); /* quotes included */
}

static void num(buf *b, long long v)
{
	char n[24];
	snprintf(n, sizeof(n), "%lld", v);
	buf_puts(b, n);
}

/* ---- the views ---- */

typedef struct coll_rows {
	buf *b;
	size_t n;
} coll_rows;

static int coll_row(void *ctx, const store_collection *c)
{
	coll_rows *r = ctx;
	if (r->n++)
		buf_putc(r->b, ',');
	buf_putc(r->b, '{');
	key(r->b, "namespace");
	str(r->b, c->ns);
	buf_putc(r->b, ',');
	key(r->b, "name");
	str(r->b, c->name);
	buf_putc(r->b, ',');
	key(r->b, "message_type");
	str(r->b, c->type_name);
	buf_putc(r->b, ',');
	key(r->b, "created_at");
	num(r->b, c->created_at / 1000000);
	buf_putc(r->b, '}');
	return 0;
}

/* The user collections of ns (NULL: every namespace): "collections" and "more". */
static int collections(const svc_env *env, const char *ns, buf *b, size_t *n)
{
	coll_rows r = {b, 0};
	bool more = false;
	store_list_filter f = {.ns = ns, .users_only = true, .limit = LIST_MAX};
	key(b, "collections");
	buf_putc(b, '[');
	int rc = store_collection_list(env->store, &f, coll_row, &r, &more);
	buf_puts(b, "],");
	key(b, "more");
	buf_puts(b, more ? "true" : "false");
	*n = r.n;
	return rc;
}

typedef struct svc_rows {
	buf *b;
	size_t n;
	const char *ns;
} svc_rows;

static int svc_row(void *ctx, const char *ns, const char *name, const uint8_t *rec, size_t len)
{
	svc_rows *r = ctx;
	if (r->n >= LIST_MAX)
		return 0;
	Collector__RegisteredService *s =
		svc_decode(&collector__registered_service__descriptor, rec, len);
	if (r->n++)
		buf_putc(r->b, ',');
	buf_putc(r->b, '{');
	key(r->b, "namespace");
	str(r->b, ns);
	buf_putc(r->b, ',');
	key(r->b, "name");
	str(r->b, name);
	buf_putc(r->b, ',');
	key(r->b, "methods");
	buf_putc(r->b, '[');
	const Google__Protobuf__ServiceDescriptorProto *sd = s ? s->service_descriptor : NULL;
	for (size_t i = 0; sd && i < sd->n_method; i++) {
		if (i)
			buf_putc(r->b, ',');
		str(r->b, sd->method[i]->name);
	}
	buf_puts(r->b, "],");
	key(r->b, "handler_endpoint");
	str(r->b, s ? s->handler_endpoint : "");
	buf_putc(r->b, '}');
	if (s)
		collector__registered_service__free_unpacked(s, NULL);
	return 0;
}

static size_t services(const svc_env *env, const char *ns, buf *b)
{
	svc_rows r = {b, 0, ns};
	key(b, "services");
	buf_putc(b, '[');
	if (env->registry)
		regindex_each_service(env->registry->ix, ns, svc_row, &r);
	buf_putc(b, ']');
	return r.n;
}

/* The view's JSON into b and its summary line into sum; a gRPC code. */
static int view(const svc_env *env, int type, const char *ns, buf *b, char *sum, size_t cap)
{
	size_t n = 0;
	int rc = 0;
	int peers_up = 0, peers = 0;
	buf_putc(b, '{');
	switch (type) {
	case COLLECTOR__DISPLAY_REQUEST__DISPLAY_TYPE__REGISTRIES:
		n = services(env, ns, b);
		snprintf(sum, cap, "%zu registered service(s) in %s", n,
			 ns ? ns : "every namespace");
		break;
	case COLLECTOR__DISPLAY_REQUEST__DISPLAY_TYPE__COLLECTIONS:
		rc = collections(env, ns, b, &n);
		snprintf(sum, cap, "%zu collection(s) in %s", n, ns ? ns : "every namespace");
		break;
	case COLLECTOR__DISPLAY_REQUEST__DISPLAY_TYPE__WORKFLOWS:
		rc = wf_view_workflows(env, ns, b, sum, cap);
		break;
	case COLLECTOR__DISPLAY_REQUEST__DISPLAY_TYPE__EXECUTIONS:
		rc = wf_view_executions(env, ns, b, sum, cap);
		break;
	case COLLECTOR__DISPLAY_REQUEST__DISPLAY_TYPE__CONNECTIONS:
		key(b, "peers");
		if (env->mesh)
			mesh_json_peers(env->mesh, clock_now_ns(), b, &peers, &peers_up);
		else
			buf_puts(b, "[]");
		snprintf(sum, cap, "%d linked node(s), %d up", peers, peers_up);
		break;
	default: /* OVERVIEW */
		key(b, "node_id");
		str(b, env->node_id);
		buf_putc(b, ',');
		key(b, "version");
		str(b, env->version);
		buf_putc(b, ',');
		key(b, "address");
		str(b, env->endpoint);
		buf_putc(b, ',');
		key(b, "default_namespace");
		str(b, env->default_ns);
		buf_putc(b, ',');
		key(b, "uptime_seconds");
		num(b, (clock_now_ns() - env->started_ns) / 1000000000LL);
		buf_putc(b, ',');
		rc = collections(env, ns, b, &n);
		buf_putc(b, ',');
		size_t s = services(env, ns, b);
		buf_putc(b, ',');
		key(b, "peers");
		if (env->mesh)
			mesh_json_peers(env->mesh, clock_now_ns(), b, &peers, &peers_up);
		else
			buf_puts(b, "[]");
		buf_putc(b, ',');
		char wsum[300];
		if (!rc)
			rc = wf_view_workflows(env, ns, b, wsum, sizeof(wsum));
		snprintf(sum, cap,
			 "node %s (%s): %zu collection(s), %zu registered service(s), %d/%d linked "
			 "node(s) up; %s",
			 env->node_id ? env->node_id : "", env->version ? env->version : "", n, s,
			 peers_up, peers, rc ? "" : wsum);
	}
	buf_putc(b, '}');
	return rc ? GRPC_INTERNAL : b->failed ? GRPC_RESOURCE_EXHAUSTED : GRPC_OK;
}

static const char *rc_why(int code)
{
	return code == GRPC_RESOURCE_EXHAUSTED ? "out of memory"
	       : code != GRPC_OK	       ? store_err_msg()
					       : "";
}

static void put_len(buf *b, uint8_t tag, const void *data, size_t len)
{
	uint8_t v[11];
	size_t n = 0;
	v[n++] = tag;
	for (size_t x = len;; x >>= 7) {
		v[n++] = (uint8_t)((x & 0x7f) | (x > 0x7f ? 0x80 : 0));
		if (x <= 0x7f)
			break;
	}
	buf_append(b, v, n);
	buf_append(b, data, len);
}

static void display_work(svc_job *j)
{
	svc_req_job *rj = (svc_req_job *)j;
	const Collector__DisplayRequest *req = rj->req;
	const svc_env *env = rj->env;
	/* A namespace named, or given by the header: that one; none: every namespace. */
	const char *ns = svc_ns_unnamed(env, rj->ns) ? NULL : rj->ns;
	buf json = BUF_INIT, st = BUF_INIT, out = BUF_INIT;
	char sum[400];
	int code = view(env, req->display_type, ns, &json, sum, sizeof(sum));
	const char *why = rc_why(code);
	if (code == GRPC_OK) {
		const tp_message *m = tp_find_message(env->types, NULL, "google.protobuf.Struct");
		if (!m || json_to_proto(env->types, NULL, m, json.text, json.len, &st)) {
			code = GRPC_INTERNAL;
			why = store_err_msg();
		}
	}
	if (code == GRPC_OK) {
		/* DisplayResponse { status=1 (OK: empty), display_data=2, summary=3 } */
		put_len(&out, 0x0a, "", 0);
		put_len(&out, 0x12, st.data, st.len);
		put_len(&out, 0x1a, sum, strlen(sum));
		if (out.failed)
			code = GRPC_RESOURCE_EXHAUSTED;
	}
	if (code != GRPC_OK) {
		svc_job_fail(j, code, "the view could not be built: %.250s", why);
		buf_free(&out);
	} else {
		j->out = out.data;
		j->out_len = out.len;
	}
	buf_free(&json);
	buf_free(&st);
}

static void display(call *c, const ProtobufCMessage *msg)
{
	const Collector__DisplayRequest *req = (const void *)msg;
	if ((unsigned)req->display_type > COLLECTOR__DISPLAY_REQUEST__DISPLAY_TYPE__CONNECTIONS) {
		call_finishf(c, GRPC_INVALID_ARGUMENT, "display_type %d is not a DisplayType",
			     (int)req->display_type);
		return;
	}
	svc_start(c, req, req->namespace_, display_work);
}

/* ---- Stop, Reset ---- */

/* The one check of the admin operations until tokens and scopes exist. */
static bool admin_allowed(call *c, const svc_env *env, const char *what)
{
	if (!env->admin)
		call_finishf(c, GRPC_PERMISSION_DENIED,
			     "%s is an admin operation: this node was started without --admin",
			     what);
	return env->admin;
}

/* A Stop that is not graceful still gives its own answer this long to leave. */
#define STOP_MIN_GRACE_NS (200LL * 1000 * 1000)

static void stop(call *c, const ProtobufCMessage *msg)
{
	const Collector__StopRequest *req = (const void *)msg;
	const svc_env *env = call_ctx(c);
	if (!admin_allowed(c, env, "Stop"))
		return;
	if (req->target != COLLECTOR__STOP_REQUEST__TARGET__ALL) {
		call_finish(c, GRPC_UNIMPLEMENTED,
			    "stopping one component is not built yet: only target ALL (the node)");
		return;
	}
	if (req->timeout_seconds < 0 || req->timeout_seconds > 3600) {
		call_finish(c, GRPC_INVALID_ARGUMENT, "timeout_seconds must be 0 to 3600");
		return;
	}
	/* graceful: calls in flight get timeout_seconds (0: the node's --grace-seconds);
	 * else they are cancelled at once, the answer to this call aside. */
	int64_t grace = !req->graceful	       ? STOP_MIN_GRACE_NS
			: req->timeout_seconds ? (int64_t)req->timeout_seconds * 1000000000LL
					       : -1;
	char *all = "node";
	Collector__Status ok = COLLECTOR__STATUS__INIT;
	Collector__StopResponse r = COLLECTOR__STOP_RESPONSE__INIT;
	r.status = &ok;
	r.stopped_components = &all;
	r.n_stopped_components = 1;
	call_reply(c, &r.base);
	if (env->stop_node)
		env->stop_node(env->stop_ctx, grace);
}

typedef struct doomed {
	char **ns, **name;
	size_t n, cap;
	bool failed;
} doomed;

static int add_doomed(void *ctx, const store_collection *c)
{
	doomed *d = ctx;
	if (d->n == d->cap) {
		size_t cap = d->cap ? 2 * d->cap : 16;
		char **ns = mem_realloc(d->ns, cap * sizeof(*ns));
		if (ns)
			d->ns = ns;
		char **name = ns ? mem_realloc(d->name, cap * sizeof(*name)) : NULL;
		if (name)
			d->name = name;
		if (!ns || !name) {
			d->failed = true;
			return 1;
		}
		d->cap = cap;
	}
	d->ns[d->n] = mem_strdup(c->ns);
	d->name[d->n] = mem_strdup(c->name);
	if (!d->ns[d->n] || !d->name[d->n]) {
		mem_free(d->ns[d->n]);
		mem_free(d->name[d->n]);
		d->failed = true;
		return 1;
	}
	d->n++;
	return 0;
}

static void doomed_free(doomed *d)
{
	for (size_t i = 0; i < d->n; i++) {
		mem_free(d->ns[i]);
		mem_free(d->name[i]);
	}
	mem_free(d->ns);
	mem_free(d->name);
}

static void reset_work(svc_job *j)
{
	svc_req_job *rj = (svc_req_job *)j;
	const Collector__ResetRequest *req = rj->req;
	const svc_env *env = rj->env;
	const char *ns = svc_ns_unnamed(env, rj->ns) ? NULL : rj->ns;
	int64_t deleted = 0, records = 0, files = 0;
	const char *component = "collections";
	if (req->scope == COLLECTOR__RESET_REQUEST__SCOPE__COLLECTIONS) {
		/* The user collections of the namespace (every one when none is named); the
		 * node's own (system, backups...) are never a user's to reset. */
		doomed d = {0};
		store_list_filter f = {.ns = ns, .users_only = true};
		int rc = store_collection_list(env->store, &f, add_doomed, &d, NULL);
		for (size_t i = 0; !rc && !d.failed && i < d.n; i++) {
			int64_t r = 0, fl = 0;
			int drc = store_collection_delete(env->store, d.ns[i], d.name[i], &r, &fl);
			if (drc == -ENOENT) /* gone meanwhile */
				continue;
			if (drc) {
				rc = drc;
				break;
			}
			deleted++;
			records += r;
			files += fl;
		}
		bool failed = d.failed;
		doomed_free(&d);
		if (rc || failed) {
			svc_job_fail(j, failed ? GRPC_RESOURCE_EXHAUSTED : GRPC_INTERNAL,
				     "reset stopped after %lld collection(s): %s",
				     (long long)deleted,
				     failed ? "out of memory" : store_err_msg());
			return;
		}
	} else {
		/* Workflows (those running cancelled) with their history, or the history of
		 * the workflows that ended. */
		bool execs = req->scope == COLLECTOR__RESET_REQUEST__SCOPE__EXECUTIONS;
		component = execs ? "executions" : "workflows";
		char why[320] = "the worker is not running on this node";
		int code = env->worker ? wf_engine_reset(env->worker, ns, execs, &deleted, &records,
							 why, sizeof(why))
				       : GRPC_UNAVAILABLE;
		if (code != GRPC_OK) {
			svc_job_fail(j, code, "reset of %s failed: %s", component, why);
			return;
		}
	}
	bool colls = req->scope == COLLECTOR__RESET_REQUEST__SCOPE__COLLECTIONS;
	Collector__ResetResponse__DeletedCountsEntry e[3], *ep[3];
	const char *keys[3] = {colls ? "collections" : "workflows",
			       colls ? "records" : "executions", "files"};
	int64_t vals[3] = {deleted, records, files};
	size_t ne = colls ? 3 : req->scope == COLLECTOR__RESET_REQUEST__SCOPE__WORKFLOWS ? 2 : 1;
	if (ne == 1) { /* executions alone */
		keys[0] = "executions";
		vals[0] = records;
	}
	for (size_t i = 0; i < ne; i++) {
		collector__reset_response__deleted_counts_entry__init(&e[i]);
		e[i].key = (char *)keys[i];
		e[i].value = vals[i];
		ep[i] = &e[i];
	}
	char *comp = (char *)component;
	Collector__Status ok = COLLECTOR__STATUS__INIT;
	Collector__ResetResponse r = COLLECTOR__RESET_RESPONSE__INIT;
	r.status = &ok;
	r.reset_components = &comp;
	r.n_reset_components = 1;
	r.deleted_counts = ep;
	r.n_deleted_counts = ne;
	svc_job_answer(j, &r.base);
}

static void reset(call *c, const ProtobufCMessage *msg)
{
	const Collector__ResetRequest *req = (const void *)msg;
	const svc_env *env = call_ctx(c);
	if (!admin_allowed(c, env, "Reset"))
		return;
	if (!req->confirm) {
		call_finish(c, GRPC_FAILED_PRECONDITION,
			    "Reset deletes what its scope names: set confirm to true");
		return;
	}
	if (req->scope == COLLECTOR__RESET_REQUEST__SCOPE__EVERYTHING ||
	    req->scope == COLLECTOR__RESET_REQUEST__SCOPE__REGISTRIES) {
		call_finish(
			c, GRPC_UNIMPLEMENTED,
			"resetting the registry is not built yet: scopes COLLECTIONS, WORKFLOWS "
			"and EXECUTIONS are");
		return;
	}
	if ((unsigned)req->scope > COLLECTOR__RESET_REQUEST__SCOPE__EXECUTIONS) {
		call_finishf(c, GRPC_INVALID_ARGUMENT, "scope %d is not a Reset scope",
			     (int)req->scope);
		return;
	}
	svc_start(c, req, req->namespace_, reset_work);
}

int console_register(method_table *t, svc_env *env)
{
	const method methods[] = {
		{CONSOLE "Display",
		 METHOD_UNARY,
		 &collector__display_request__descriptor,
		 &collector__display_response__descriptor,
		 {.on_request = display, .on_cancel = svc_job_on_cancel},
		 env},
		{CONSOLE "Stop",
		 METHOD_UNARY,
		 &collector__stop_request__descriptor,
		 &collector__stop_response__descriptor,
		 {.on_request = stop},
		 env},
		{CONSOLE "Reset",
		 METHOD_UNARY,
		 &collector__reset_request__descriptor,
		 &collector__reset_response__descriptor,
		 {.on_request = reset, .on_cancel = svc_job_on_cancel},
		 env},
	};
	return method_table_add_all(t, methods, sizeof(methods) / sizeof(methods[0]));
}
