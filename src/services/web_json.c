/* Connect's JSON (h2/connect.c) through the type pool: a method's request and response
 * types are found by the descriptors of the method table, or, for a registered service
 * served elsewhere, by the service's registered descriptor; Any values resolve in the
 * call's namespace, which is the request's own "namespace" field when it has one (as the
 * services read it, svc_namespace), else the x-collector-namespace header, else the
 * node's default. */
#include "services/web_json.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "h2/status.h"
#include "services/health.h"
#include "store/jdoc.h"
#include "store/json.h"

/* The namespace of one call, chosen when its request is read. */
typedef struct web_state {
	const char *ns;
} web_state;

/* The top-level "namespace" string of a JSON request, NULL when it has none. */
static const char *json_namespace(call *c, const uint8_t *json, size_t len)
{
	jdoc d = {0};
	const char *ns = NULL;
	if (jdoc_parse(&d, (const char *)json, len, JSON_MAX_DEPTH) ||
	    d.nodes[0].type != JDOC_OBJECT) {
		jdoc_free(&d);
		return NULL;
	}
	for (uint32_t i = 1; i < d.n && i < d.nodes[0].end;) {
		const jdoc_node *k = &d.nodes[i], *v = &d.nodes[i + 1];
		if (jdoc_string_eq(&d, k, "namespace", 9) && v->type == JDOC_STRING && v->ulen) {
			char *s = call_alloc(c, v->ulen + 1);
			if (s) {
				jdoc_unescape(&d, v, s);
				s[v->ulen] = 0;
				ns = s;
			}
			break;
		}
		i = v->end;
	}
	jdoc_free(&d);
	return ns;
}

/* The request or response type of c's method as the pool sees it from ns. */
static const tp_message *method_type(const svc_env *env, call *c, const char *ns, bool response)
{
	const method *m = call_method(c);
	const ProtobufCMessageDescriptor *d = m ? (response ? m->output : m->input) : NULL;
	if (d)
		return tp_find_message(env->types, ns, d->name);
	/* A registered service: "/pkg.Service/Method". */
	size_t len;
	const char *path = call_path(c, &len);
	const char *slash = len > 1 ? memchr(path + 1, '/', len - 1) : NULL;
	if (!slash || path[0] != '/')
		return NULL;
	char svc[256], meth[256];
	size_t sl = (size_t)(slash - path - 1), ml = len - (size_t)(slash - path) - 1;
	if (sl >= sizeof(svc) || ml >= sizeof(meth))
		return NULL;
	memcpy(svc, path + 1, sl);
	svc[sl] = 0;
	memcpy(meth, slash + 1, ml);
	meth[ml] = 0;
	const tp_service *s = tp_find_service(env->types, ns, svc);
	const tp_service_info *si = s ? tp_service_get(s) : NULL;
	for (size_t i = 0; si && i < si->n_methods; i++)
		if (!strcmp(si->methods[i].name, meth))
			return response ? si->methods[i].output : si->methods[i].input;
	return NULL;
}

static int transcode(void *ctx, call *c, void **state, bool response, bool to_json,
		     const uint8_t *in, size_t len, buf *out, char *err, size_t cap)
{
	const svc_env *env = ctx;
	web_state *st = *state;
	if (!st) {
		if (!(st = call_alloc(c, sizeof(*st)))) {
			snprintf(err, cap, "out of memory");
			return GRPC_RESOURCE_EXHAUSTED;
		}
		const char *body_ns = !response && !to_json ? json_namespace(c, in, len) : NULL;
		st->ns = svc_namespace(c, env, body_ns);
		*state = st;
	}
	const tp_message *m = method_type(env, c, st->ns, response);
	if (!m) {
		snprintf(err, cap, "no descriptor of this method's %s in namespace '%s' for JSON",
			 response ? "response" : "request", st->ns);
		return GRPC_UNIMPLEMENTED;
	}
	int rc = to_json ? json_from_proto(env->types, st->ns, m, in, len, 0, out)
			 : json_to_proto(env->types, st->ns, m, (const char *)in, len, out);
	if (rc) {
		snprintf(err, cap, "%s: %s", to_json ? "response to JSON" : "JSON request",
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
	*hooks = (h2_web_hooks){.serving = serving, .transcode = transcode, .ctx = env};
}
