/* Connect's JSON (h2/connect.c) through the type pool: a method's request and response
 * types are found by the descriptors of the method table, or, for a registered service
 * served elsewhere, by the service's registered descriptor; Any values resolve in the
 * call's namespace, which is the request's own "namespace" field when it has one (as the
 * services read it, svc_namespace), else the x-collector-namespace header, else the
 * node's default. store_err_msg is per thread, so a pool thread may transcode. */
#include "services/web_json.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "h2/status.h"
#include "services/health.h"
#include "store/jdoc.h"
#include "store/json.h"

/* What a call's transcoding needs, taken from the call on its reactor so that the
 * transcoding itself may run on the pool. The namespace is the header's (or the default)
 * until the request's own "namespace" field is read, which the request's transcoding does
 * before the response's (which is sequenced after it through the pool's completion). */
typedef struct web_state {
	const svc_env *env;
	const char *input, *output; /* full names from the method table, NULL: by path */
	char *service, *method;	    /* a registered service's names from the path */
	char ns[256];
} web_state;

/* The top-level "namespace" string of a JSON request into ns; false when it has none. */
static bool json_namespace(const uint8_t *json, size_t len, char *ns, size_t cap)
{
	jdoc d = {0};
	bool found = false;
	if (jdoc_parse(&d, (const char *)json, len, JSON_MAX_DEPTH) ||
	    d.nodes[0].type != JDOC_OBJECT) {
		jdoc_free(&d);
		return false;
	}
	for (uint32_t i = 1; i < d.n && i < d.nodes[0].end;) {
		const jdoc_node *k = &d.nodes[i], *v = &d.nodes[i + 1];
		if (jdoc_string_eq(&d, k, "namespace", 9)) {
			if (v->type == JDOC_STRING && v->ulen && v->ulen < cap) {
				jdoc_unescape(&d, v, ns);
				ns[v->ulen] = 0;
				found = true;
			}
			break;
		}
		i = v->end;
	}
	jdoc_free(&d);
	return found;
}

static void *prepare(void *ctx, call *c, const uint8_t *json, size_t len, int *code, char *err,
		     size_t cap)
{
	(void)json;
	(void)len;
	const svc_env *env = ctx;
	web_state *st = call_alloc(c, sizeof(*st));
	if (!st) {
		*code = GRPC_RESOURCE_EXHAUSTED;
		snprintf(err, cap, "out of memory");
		return NULL;
	}
	*st = (web_state){.env = env};
	snprintf(st->ns, sizeof(st->ns), "%s", svc_namespace(c, env, NULL));
	const method *m = call_method(c);
	if (m && m->input && m->output) {
		st->input = m->input->name;
		st->output = m->output->name;
		return st;
	}
	/* A registered service: "/pkg.Service/Method". */
	size_t plen;
	const char *path = call_path(c, &plen);
	const char *slash = plen > 1 && path[0] == '/' ? memchr(path + 1, '/', plen - 1) : NULL;
	size_t sl = slash ? (size_t)(slash - path - 1) : 0;
	st->service = slash ? call_alloc(c, sl + 1) : NULL;
	st->method = slash ? call_alloc(c, plen - sl - 1) : NULL;
	if (!st->service || !st->method) {
		*code = GRPC_UNIMPLEMENTED;
		snprintf(err, cap, "no descriptor of this method for JSON");
		return NULL;
	}
	memcpy(st->service, path + 1, sl);
	st->service[sl] = 0;
	memcpy(st->method, slash + 1, plen - sl - 2);
	st->method[plen - sl - 2] = 0;
	return st;
}

/* The request or response type of the call's method as the pool sees it from ns. */
static const tp_message *method_type(const web_state *st, bool response)
{
	tp_pool *tp = st->env->types;
	const char *name = response ? st->output : st->input;
	if (name)
		return tp_find_message(tp, st->ns, name);
	const tp_service *s = tp_find_service(tp, st->ns, st->service);
	const tp_service_info *si = s ? tp_service_get(s) : NULL;
	for (size_t i = 0; si && i < si->n_methods; i++)
		if (!strcmp(si->methods[i].name, st->method))
			return response ? si->methods[i].output : si->methods[i].input;
	return NULL;
}

static int transcode(void *ctx, void *state, bool response, const uint8_t *in, size_t len, buf *out,
		     char *err, size_t cap)
{
	(void)ctx;
	web_state *st = state;
	/* The request's own namespace field wins, as in the services (svc_namespace). */
	if (!response)
		json_namespace(in, len, st->ns, sizeof(st->ns));
	const tp_message *m = method_type(st, response);
	if (!m) {
		snprintf(err, cap, "no descriptor of this method's %s in namespace '%s' for JSON",
			 response ? "response" : "request", st->ns);
		return GRPC_UNIMPLEMENTED;
	}
	tp_pool *tp = st->env->types;
	int rc = response ? json_from_proto(tp, st->ns, m, in, len, 0, out)
			  : json_to_proto(tp, st->ns, m, (const char *)in, len, out);
	if (rc) {
		snprintf(err, cap, "%s: %s", response ? "response to JSON" : "JSON request",
			 store_err_msg());
		/* A request the client wrote is its error; a response we cannot show is ours. */
		return rc == -ENOMEM ? GRPC_RESOURCE_EXHAUSTED
		       : response    ? GRPC_INTERNAL
				     : GRPC_INVALID_ARGUMENT;
	}
	return GRPC_OK;
}

static bool serving(void *ctx)
{
	(void)ctx;
	return health_serving();
}

void web_json_hooks(svc_env *env, h2_web_hooks *hooks)
{
	*hooks = (h2_web_hooks){.serving = serving,
				.json_prepare = prepare,
				.json_transcode = transcode,
				.ctx = env};
}
