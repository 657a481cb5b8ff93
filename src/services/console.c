/* collector.CollectorConsole.Display: a view of the node as a google.protobuf.Struct,
 * built as JSON text and transcoded through the type pool, with a line a person reads.
 * Parts not built yet (the worker) show as empty with a note, never as an error. Runs on
 * the pool: the catalog and the registry are read there. Stop and Reset are admin
 * operations of the console issue: they answer UNIMPLEMENTED until then. */
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

static void not_built(buf *b, const char *what)
{
	key(b, what);
	buf_puts(b, "[],");
	key(b, "note");
	str(b, "the worker (CollectiveWorker) is not built yet on this node: nothing to show");
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
		not_built(b, "workflows");
		snprintf(sum, cap, "no workflows: the worker is not built yet");
		break;
	case COLLECTOR__DISPLAY_REQUEST__DISPLAY_TYPE__EXECUTIONS:
		not_built(b, "executions");
		snprintf(sum, cap, "no executions: the worker is not built yet");
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
		not_built(b, "workflows");
		snprintf(sum, cap,
			 "node %s (%s): %zu collection(s), %zu registered service(s), %d/%d linked "
			 "node(s) up; the worker is not built yet",
			 env->node_id ? env->node_id : "", env->version ? env->version : "", n, s,
			 peers_up, peers);
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

int console_register(method_table *t, svc_env *env)
{
	const method m = {CONSOLE "Display",
			  METHOD_UNARY,
			  &collector__display_request__descriptor,
			  &collector__display_response__descriptor,
			  {.on_request = display, .on_cancel = svc_job_on_cancel},
			  env};
	return method_table_add(t, &m);
}
