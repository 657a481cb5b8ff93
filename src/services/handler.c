/* Routes of calls to registered services with a handler endpoint. The registration is read
 * from the registry's index (a copy of its record, decoded per lookup: registrations are
 * small and change while calls run, so nothing is cached that could go stale). */
#include "services/handler.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/mem.h"
#include "collector/registry.pb-c.h"
#include "io/sock.h"
#include "services/mesh.h"
#include "services/proxy.h"
#include "services/regindex.h"
#include "services/registry_priv.h"

bool handler_endpoint_valid(const char *s, char *why, size_t cap)
{
	size_t n = strlen(s);
	const char *colon = strrchr(s, ':');
	struct sockaddr_storage ss;
	socklen_t len;
	if (n > HANDLER_ENDPOINT_MAX) {
		snprintf(why, cap, "longer than %d bytes", HANDLER_ENDPOINT_MAX);
		return false;
	}
	if (!colon || colon == s) {
		snprintf(why, cap, "not host:port");
		return false;
	}
	const char *p = colon + 1;
	long port = 0;
	for (; *p >= '0' && *p <= '9' && port <= 65535; p++)
		port = port * 10 + (*p - '0');
	if (*p || p == colon + 1 || port < 1 || port > 65535) {
		snprintf(why, cap, "the port must be 1 to 65535");
		return false;
	}
	size_t hlen = (size_t)(colon - s);
	/* A wildcard is where a server listens, not an address to dial. */
	if ((hlen == 7 && !memcmp(s, "0.0.0.0", 7)) || (hlen == 1 && s[0] == '*') ||
	    (hlen == 4 && !memcmp(s, "[::]", 4))) {
		snprintf(why, cap, "a wildcard host cannot be dialled");
		return false;
	}
	if (sock_parse_addr(s, &ss, &len)) {
		snprintf(why, cap,
			 "the host must be a numeric address ([v6] in brackets) or "
			 "localhost");
		return false;
	}
	return true;
}

static void copy_str(char *dst, size_t cap, const char *s) { snprintf(dst, cap, "%s", s ? s : ""); }

/* A method type's full name, resolved in the service's namespace from its package. */
static bool type_name(registry *r, const char *ns, const char *pkg, const char *type, char *out,
		      size_t cap)
{
	if (!type || !*type) {
		out[0] = 0;
		return true;
	}
	const tp_message *m = registry_resolve_type(r, ns, pkg, type);
	if (!m)
		return false;
	copy_str(out, cap, tp_message_get(m)->full_name);
	return true;
}

/* Fills out from the record of service `full` of ns. */
static int route_from_record(registry *r, const char *ns, const char *full, const char *method,
			     handler_route *out)
{
	size_t len;
	uint8_t *bytes = regindex_get_service(r->ix, ns, full, &len);
	if (!bytes)
		return len ? -ENOMEM : -ENOENT;
	Collector__RegisteredService *s =
		svc_decode(&collector__registered_service__descriptor, bytes, len);
	mem_free(bytes);
	if (!s)
		return -ENOENT;
	int rc = -ENOENT;
	const Google__Protobuf__MethodDescriptorProto *m = NULL;
	const service_proto *sd = s->service_descriptor;
	for (size_t i = 0; sd && i < sd->n_method && !m; i++)
		if (sd->method[i]->name && !strcmp(sd->method[i]->name, method))
			m = sd->method[i];
	bool named = false; /* in method_names: registered by name only, no descriptor */
	for (size_t i = 0; !m && i < s->n_method_names && !named; i++)
		named = !strcmp(s->method_names[i], method);
	if (m || named) {
		const char *dot = strrchr(full, '.');
		char pkg[HANDLER_NAME_MAX];
		snprintf(pkg, sizeof(pkg), "%.*s", dot ? (int)(dot - full) : 0, full);
		out->kind = !m						 ? METHOD_UNARY
			    : m->client_streaming && m->server_streaming ? METHOD_BIDI
			    : m->client_streaming			 ? METHOD_CLIENT_STREAM
			    : m->server_streaming			 ? METHOD_SERVER_STREAM
									 : METHOD_UNARY;
		snprintf(out->path, sizeof(out->path), "/%s/%s", full, method);
		bool typed = !m || (type_name(r, ns, pkg, m->input_type, out->input_type,
					      sizeof(out->input_type)) &&
				    type_name(r, ns, pkg, m->output_type, out->output_type,
					      sizeof(out->output_type)));
		if (!m)
			out->input_type[0] = out->output_type[0] = 0;
		if (!typed)
			rc = -ENOENT; /* a type gone since: the method cannot be described */
		else if (!s->handler_endpoint || !*s->handler_endpoint)
			rc = -ENODATA;
		else if (strlen(s->handler_endpoint) >= sizeof(out->endpoint))
			rc = -ENOENT;
		else {
			copy_str(out->endpoint, sizeof(out->endpoint), s->handler_endpoint);
			rc = 0;
		}
	}
	collector__registered_service__free_unpacked(s, NULL);
	return rc;
}

int handler_route_find(const svc_env *env, const char *ns, const char *service, const char *method,
		       handler_route *out)
{
	registry *r = env->registry;
	if (!r || !ns || !service || !method || !*method)
		return -ENOENT;
	char full[HANDLER_NAME_MAX], other[HANDLER_NAME_MAX];
	if (regindex_resolve_service(r->ix, ns, service, full, sizeof(full), other,
				     sizeof(other)) != REGINDEX_FOUND)
		return -ENOENT;
	return route_from_record(r, ns, full, method, out);
}

int handler_route_of_path(const svc_env *env, const char *ns, const char *path, size_t path_len,
			  handler_route *out)
{
	const char *slash =
		path_len > 1 && path[0] == '/' ? memchr(path + 1, '/', path_len - 1) : NULL;
	size_t slen = slash ? (size_t)(slash - path - 1) : 0;
	size_t mlen = slash ? path_len - slen - 2 : 0;
	if (!slen || slen >= HANDLER_NAME_MAX || !mlen || mlen >= HANDLER_NAME_MAX ||
	    memchr(slash + 1, '/', mlen))
		return -ENOENT;
	char service[HANDLER_NAME_MAX], method[HANDLER_NAME_MAX];
	memcpy(service, path + 1, slen);
	service[slen] = 0;
	memcpy(method, slash + 1, mlen);
	method[mlen] = 0;
	int rc = handler_route_find(env, ns, service, method, out);
	/* The handler serves the name the client called, which for a service registered
	 * bare ("Name") is the full one the call carries. */
	if (rc != -ENOENT)
		snprintf(out->path, sizeof(out->path), "%.*s", (int)path_len, path);
	return rc;
}

/* A service registered here without a handler, whose handler a linked node has: the call
 * goes to that node, whose own fallback takes it to the handler. */
static const method *to_peer(const svc_env *env, call *c, const char *ns, const handler_route *rt)
{
	const char *slash = strrchr(rt->path, '/');
	char service[HANDLER_NAME_MAX];
	snprintf(service, sizeof(service), "%.*s", (int)(slash - rt->path - 1), rt->path + 1);
	mesh_want w = {.ns = ns, .service = service, .uncounted = true};
	mesh_choice ch;
	if (mesh_choose(env->mesh, &w, &ch))
		return NULL;
	return proxy_forward_method(c, rt->kind, ch.address, rt->path, ns, env->max_message_bytes,
				    true);
}

const method *handler_fallback(void *ctx, call *c, const char *path, size_t path_len)
{
	const svc_env *env = ctx;
	handler_route *rt = mem_alloc(sizeof(*rt));
	if (!rt)
		return NULL;
	const method *m = NULL;
	const char *ns = svc_namespace(c, env, NULL);
	int rc = handler_route_of_path(env, ns, path, path_len, rt);
	if (!rc)
		m = proxy_forward_method(c, rt->kind, rt->endpoint, rt->path, ns,
					 env->max_message_bytes, false);
	else if (rc == -ENODATA && env->mesh)
		m = to_peer(env, c, ns, rt);
	mem_free(rt);
	return m;
}

typedef struct served {
	void (*add)(void *acc, const char *ns_service);
	void *acc;
} served;

static int add_served(void *ctx, const char *ns, const char *name, const uint8_t *rec, size_t len)
{
	served *sv = ctx;
	Collector__RegisteredService *s =
		svc_decode(&collector__registered_service__descriptor, rec, len);
	if (s && s->handler_endpoint && *s->handler_endpoint) {
		char key[2 * HANDLER_NAME_MAX + 2];
		snprintf(key, sizeof(key), "%s/%s", ns, name);
		sv->add(sv->acc, key);
	}
	if (s)
		collector__registered_service__free_unpacked(s, NULL);
	return 0;
}

void handler_each_served(void *env, void (*add)(void *acc, const char *ns_service), void *acc)
{
	const svc_env *e = env;
	served sv = {add, acc};
	if (e->registry)
		regindex_each_service(e->registry->ix, NULL, add_served, &sv);
}

uint64_t handler_served_generation(void *env)
{
	const svc_env *e = env;
	return e->registry ? regindex_generation(e->registry->ix) : 0;
}
