/* collector.CollectiveDispatcher: Serve and Dispatch run a unary method of this node's own
 * services by name, its input and output carried in Anys. The method runs as a call of its
 * own to this node over loopback (proxy.c), as upstream does: the registry's validation in
 * the namespace, the limits and the deadline apply to it as to any call, and forwarding to
 * a peer will take the same path once links exist (Connect stays UNIMPLEMENTED until then,
 * and Dispatch has no other node to route to). */
#include "services/dispatch.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "collector/dispatcher.pb-c.h"
#include "services/proxy.h"

#define DISPATCHER "/collector.CollectiveDispatcher/"
#define TYPE_URL_PREFIX "type.googleapis.com/"

static Collector__Status status_ok = COLLECTOR__STATUS__INIT;

/* One Serve or Dispatch in flight. */
typedef struct run {
	call *c;
	const svc_env *env;
	proxy_call *p;
	const method *m;
	bool dispatch; /* answers a DispatchResponse */
} run;

static const char *node_id(const svc_env *env) { return env->node_id ? env->node_id : ""; }

/* ---- the method a request names ---- */

typedef struct bare_find {
	const char *name;
	char found[256];
	int n;
} bare_find;

static void match_last(const char *service, size_t len, void *arg)
{
	bare_find *b = arg;
	const char *dot = memrchr(service, '.', len);
	const char *last = dot ? dot + 1 : service;
	size_t llen = len - (size_t)(last - service);
	if (llen == strlen(b->name) && !memcmp(last, b->name, llen) && !b->n++)
		snprintf(b->found, sizeof(b->found), "%.*s", (int)len, service);
}

/* The unary method of this node that service/method_name names: service by its full name,
 * or bare when one of the node's services alone ends in it. NULL with the call finished
 * (NOT_FOUND, INVALID_ARGUMENT) when there is none. */
static const method *find_unary(call *c, const svc_env *env, const char *service,
				const char *method_name)
{
	if (!env->methods) {
		call_finish(c, GRPC_UNIMPLEMENTED, "this node has no method table to run from");
		return NULL;
	}
	if (!service || !*service || !method_name || !*method_name) {
		call_finish(c, GRPC_INVALID_ARGUMENT,
			    "service.service_name and method_name are required");
		return NULL;
	}
	char path[600];
	int n = snprintf(path, sizeof(path), "/%s/%s", service, method_name);
	const method *m = n > 0 && (size_t)n < sizeof(path)
				  ? method_table_find(env->methods, path, (size_t)n)
				  : NULL;
	if (!m && !strchr(service, '.') && n > 0 && (size_t)n < sizeof(path)) {
		bare_find b = {.name = service};
		method_table_each_service(env->methods, match_last, &b);
		if (b.n > 1) {
			call_finishf(
				c, GRPC_INVALID_ARGUMENT,
				"service name '%.200s' is ambiguous on this node: give the full name",
				service);
			return NULL;
		}
		n = b.n ? snprintf(path, sizeof(path), "/%s/%s", b.found, method_name) : -1;
		m = n > 0 && (size_t)n < sizeof(path)
			    ? method_table_find(env->methods, path, (size_t)n)
			    : NULL;
	}
	if (!m) {
		call_finishf(c, GRPC_NOT_FOUND, "this node serves no method %.200s.%.100s", service,
			     method_name);
		return NULL;
	}
	if (m->kind != METHOD_UNARY) {
		call_finishf(c, GRPC_INVALID_ARGUMENT,
			     "%s streams: Serve and Dispatch run unary methods", m->path);
		return NULL;
	}
	return m;
}

/* An Any's type, the part of its URL after the last '/', must be the method's input. */
static bool input_matches(call *c, const method *m, const Google__Protobuf__Any *input)
{
	if (!input || !input->type_url || !*input->type_url) {
		call_finishf(c, GRPC_INVALID_ARGUMENT, "input is required: an Any of %s",
			     m->input ? m->input->name : "the method's input");
		return false;
	}
	const char *slash = strrchr(input->type_url, '/');
	const char *type = slash ? slash + 1 : input->type_url;
	if (m->input && strcmp(type, m->input->name)) {
		call_finishf(c, GRPC_INVALID_ARGUMENT, "input is an Any of %.200s; %s takes %s",
			     type, m->path, m->input->name);
		return false;
	}
	return true;
}

/* ---- the call to this node ---- */

/* The address this node's own client dials: the listener's, with a wildcard host made
 * the loopback of its family. */
static void loopback_of(const char *endpoint, char *out, size_t cap)
{
	const char *colon = strrchr(endpoint, ':');
	const char *port = colon ? colon + 1 : "";
	size_t hlen = colon ? (size_t)(colon - endpoint) : 0;
	if ((hlen == 7 && !memcmp(endpoint, "0.0.0.0", 7)) || hlen == 0)
		snprintf(out, cap, "127.0.0.1:%s", port);
	else if ((hlen == 4 && !memcmp(endpoint, "[::]", 4)) ||
		 (hlen == 2 && !memcmp(endpoint, "::", 2)))
		snprintf(out, cap, "[::1]:%s", port);
	else
		snprintf(out, cap, "%s", endpoint);
}

static void run_done(void *user, int code, const char *message, const uint8_t *resp, size_t len)
{
	run *r = user;
	r->p = NULL;
	if (code != GRPC_OK) {
		call_finish(r->c, code, message);
	} else {
		const char *out = r->m->output ? r->m->output->name : "";
		char url[sizeof(TYPE_URL_PREFIX) + 256];
		snprintf(url, sizeof(url), TYPE_URL_PREFIX "%s", out);
		Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
		any.type_url = url;
		any.value.data = (uint8_t *)resp;
		any.value.len = len;
		const char *id = node_id(r->env);
		if (r->dispatch) {
			Collector__DispatchResponse dr = COLLECTOR__DISPATCH_RESPONSE__INIT;
			dr.status = &status_ok;
			dr.output = &any;
			dr.handled_by_collector_id = (char *)id;
			call_reply(r->c, &dr.base);
		} else {
			Collector__ServeResponse sr = COLLECTOR__SERVE_RESPONSE__INIT;
			sr.status = &status_ok;
			sr.output = &any;
			sr.executor_id = (char *)id;
			call_reply(r->c, &sr.base);
		}
	}
	call_set_user(r->c, NULL);
	call_unref(r->c);
	mem_free(r);
}

/* The hops a call has made through nodes (DISPATCH_HOPS_HEADER), 0 when it carries none;
 * -1 when the header is not a number. */
static long hops_of(call *c)
{
	const call_md *md = call_md_get(c, DISPATCH_HOPS_HEADER);
	if (!md)
		return 0;
	char s[12];
	if (!md->value_len || md->value_len >= sizeof(s))
		return -1;
	memcpy(s, md->value, md->value_len);
	s[md->value_len] = 0;
	char *end;
	long n = strtol(s, &end, 10);
	return *end || n < 0 ? -1 : n;
}

static void run_method(call *c, const svc_env *env, const char *req_ns, const method *m,
		       const Google__Protobuf__Any *input, bool dispatch)
{
	long hops = hops_of(c);
	if (hops < 0) {
		call_finish(c, GRPC_INVALID_ARGUMENT, DISPATCH_HOPS_HEADER " must be a number");
		return;
	}
	/* Serve of Serve of ... would go round for ever: every hop counts. */
	if (hops >= DISPATCH_HOP_LIMIT) {
		call_finishf(c, GRPC_FAILED_PRECONDITION,
			     "the call went through %ld nodes or nested runs, the limit", hops);
		return;
	}
	const char *ns = svc_namespace(c, env, req_ns);
	char target[96];
	loopback_of(env->endpoint ? env->endpoint : "", target, sizeof(target));
	char next[12];
	snprintf(next, sizeof(next), "%ld", hops + 1);
	call_md md[2] = {
		{SVC_NAMESPACE_HEADER, strlen(SVC_NAMESPACE_HEADER), (const uint8_t *)ns,
		 strlen(ns)},
		{DISPATCH_HOPS_HEADER, strlen(DISPATCH_HOPS_HEADER), (const uint8_t *)next,
		 strlen(next)},
	};
	run *r = mem_calloc(1, sizeof(*r));
	if (!r) {
		call_finish(c, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	*r = (run){.c = c, .env = env, .m = m, .dispatch = dispatch};
	proxy_args a = {.target = target,
			.path = m->path,
			.request = input->value.data,
			.request_len = input->value.len,
			.deadline_ns = call_deadline(c),
			.md = md,
			.nmd = 2,
			.max_message_bytes = env->max_message_bytes,
			.done = run_done,
			.user = r};
	call_ref(c);
	call_set_user(c, r);
	r->p = proxy_start(call_reactor(c), &a);
	if (!r->p) {
		call_set_user(c, NULL);
		call_unref(c);
		mem_free(r);
		call_finish(c, GRPC_UNAVAILABLE, "this node cannot call itself (shutting down?)");
	}
}

static void run_cancel(call *c)
{
	run *r = call_user(c);
	if (r && r->p)
		proxy_cancel(r->p); /* run_done follows at once */
}

/* ---- Serve, Dispatch ---- */

static void serve(call *c, const ProtobufCMessage *msg)
{
	const Collector__ServeRequest *req = (const void *)msg;
	const svc_env *env = call_ctx(c);
	const method *m = find_unary(c, env, req->service ? req->service->service_name : NULL,
				     req->method_name);
	if (m && input_matches(c, m, req->input))
		run_method(c, env, req->namespace_, m, req->input, false);
}

static void dispatch(call *c, const ProtobufCMessage *msg)
{
	const Collector__DispatchRequest *req = (const void *)msg;
	const svc_env *env = call_ctx(c);
	const char *target = req->target_collector_id;
	if (target && *target && strcmp(target, node_id(env))) {
		call_finishf(
			c, GRPC_UNAVAILABLE,
			"collector %.100s is not reachable from this node: it has no links yet",
			target);
		return;
	}
	const method *m = find_unary(c, env, req->service ? req->service->service_name : NULL,
				     req->method_name);
	if (m && input_matches(c, m, req->input))
		run_method(c, env, req->namespace_, m, req->input, true);
}

int dispatch_register(method_table *t, const svc_env *env)
{
	void *ctx = (void *)env; /* read only */
	const method methods[] = {
		{DISPATCHER "Serve",
		 METHOD_UNARY,
		 &collector__serve_request__descriptor,
		 &collector__serve_response__descriptor,
		 {.on_request = serve, .on_cancel = run_cancel},
		 ctx},
		{DISPATCHER "Dispatch",
		 METHOD_UNARY,
		 &collector__dispatch_request__descriptor,
		 &collector__dispatch_response__descriptor,
		 {.on_request = dispatch, .on_cancel = run_cancel},
		 ctx},
	};
	return method_table_add_all(t, methods, sizeof(methods) / sizeof(methods[0]));
}
