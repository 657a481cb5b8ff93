#include "services/route.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "collector/dispatcher.pb-c.h"
#include "services/auth.h"
#include "services/handler.h"
#include "services/mesh.h"
#include "services/proxy.h"

#define DISPATCH_PATH "/collector.CollectiveDispatcher/Dispatch"
#define VISITED_MAX 1024 /* bytes of the visited header: 8 hops of long ids fit */

struct route {
	call *c;     /* the call served; NULL for the worker's calls */
	reactor *rx; /* the reactor the route runs on */
	int64_t deadline_ns;
	const svc_env *env;
	route_done_fn done;
	void *user;
	proxy_call *p;
	const method *m;  /* run here: the node's own method */
	handler_route *h; /* or run by the handler of a service registered here */
	char *ns, *service, *method, *target;
	bool round_robin, everywhere;
	uint8_t *fwd; /* the DispatchRequest sent to peers (kept for the one retry) */
	size_t fwd_len;
	char hops[12];
	char visited[VISITED_MAX]; /* the header the route's calls carry */
	char source[MESH_ID_MAX];  /* the node the call came from */
	mesh_choice choice;
	bool retried, unprocessed;
	char failed_on[MESH_ID_MAX];
	/* a workflow task's execution, passed on to whoever runs it (empty: none) */
	char exec_id[ROUTE_EXEC_ID_MAX], attempt[12];
};

static const char *self_id(const svc_env *env) { return env->node_id ? env->node_id : ""; }

/* A route that cannot start says why in q. */
static void failf(route_req *q, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void failf(route_req *q, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(q->fail_msg, sizeof(q->fail_msg), fmt, ap);
	va_end(ap);
	q->fail_code = code;
}

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

/* The method of this node's table that service/method names: service by its full name,
 * or bare when one of the node's services alone ends in it. NULL when there is none (c
 * finished when the name is ambiguous: *fail). */
static const method *find_local(route_req *q, const char *service, const char *method_name,
				bool *fail)
{
	*fail = false;
	const svc_env *env = q->env;
	if (!env->methods)
		return NULL;
	char path[600];
	int n = snprintf(path, sizeof(path), "/%s/%s", service, method_name);
	if (n < 0 || (size_t)n >= sizeof(path))
		return NULL;
	const method *m = method_table_find(env->methods, path, (size_t)n);
	if (m || strchr(service, '.'))
		return m;
	bare_find b = {.name = service};
	method_table_each_service(env->methods, match_last, &b);
	if (b.n > 1) {
		failf(q, GRPC_INVALID_ARGUMENT,
		      "service name '%.200s' is ambiguous on this node: give the full name",
		      service);
		*fail = true;
		return NULL;
	}
	n = b.n ? snprintf(path, sizeof(path), "/%s/%s", b.found, method_name) : -1;
	return n > 0 && (size_t)n < sizeof(path) ? method_table_find(env->methods, path, (size_t)n)
						 : NULL;
}

/* A local method must be unary and take the input's type (the part of the URL after its
 * last '/'). */
static bool local_fits(route_req *q, const method *m, const char *type_url)
{
	if (m->kind != METHOD_UNARY) {
		failf(q, GRPC_INVALID_ARGUMENT,
		      "%s streams: Serve, Dispatch and Invoke run unary methods", m->path);
		return false;
	}
	const char *slash = strrchr(type_url, '/');
	const char *type = slash ? slash + 1 : type_url;
	if (m->input && strcmp(type, m->input->name)) {
		failf(q, GRPC_INVALID_ARGUMENT, "input is an Any of %.200s; %s takes %s", type,
		      m->path, m->input->name);
		return false;
	}
	return true;
}

/* A service registered here with a handler endpoint (handler.h): its unary method, run by
 * that handler. false without one (*fail: q says why the route cannot start). */
static bool handler_here(route_req *q, handler_route **out, bool *fail)
{
	*fail = false;
	handler_route *h = mem_alloc(sizeof(*h));
	if (!h) {
		failf(q, GRPC_RESOURCE_EXHAUSTED, "%s", "out of memory");
		*fail = true;
		return false;
	}
	if (handler_route_find(q->env, q->ns, q->service, q->method, h)) {
		mem_free(h);
		return false;
	}
	const char *slash = strrchr(q->type_url, '/');
	const char *type = slash ? slash + 1 : q->type_url;
	if (h->kind != METHOD_UNARY) {
		failf(q, GRPC_INVALID_ARGUMENT,
		      "%s streams: Serve, Dispatch and Invoke run unary methods", h->path);
		*fail = true;
	} else if (h->input_type[0] && strcmp(type, h->input_type)) {
		failf(q, GRPC_INVALID_ARGUMENT, "input is an Any of %.200s; %s takes %s", type,
		      h->path, h->input_type);
		*fail = true;
	}
	if (*fail) {
		mem_free(h);
		return false;
	}
	*out = h;
	return true;
}

/* ---- where the call has been ---- */

long route_hops_of(call *c)
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

/* Whether id is one of the comma-separated ids of list[0..len). */
static bool listed(const uint8_t *list, size_t len, const char *id)
{
	size_t idlen = strlen(id);
	for (size_t i = 0; i < len;) {
		const uint8_t *comma = memchr(list + i, ',', len - i);
		size_t end = comma ? (size_t)(comma - list) : len;
		if (end - i == idlen && !memcmp(list + i, id, idlen))
			return true;
		i = end + 1;
	}
	return false;
}

/* Checks the call's path so far and makes the headers of the route's own calls. */
static bool route_path(route *r, route_req *q)
{
	call *c = r->c;
	long hops = c ? route_hops_of(c) : 0;
	if (hops < 0) {
		failf(q, GRPC_INVALID_ARGUMENT, "%s", DISPATCH_HOPS_HEADER " must be a number");
		return false;
	}
	/* Serve of Serve of ... would go round for ever: every hop counts. */
	if (hops >= DISPATCH_HOP_LIMIT) {
		failf(q, GRPC_FAILED_PRECONDITION,
		      "the call went through %ld nodes or nested runs, the limit", hops);
		return false;
	}
	snprintf(r->hops, sizeof(r->hops), "%ld", hops + 1);
	const char *self = self_id(r->env);
	const call_md *v = c ? call_md_get(c, MESH_VISITED_HEADER) : NULL;
	snprintf(r->source, sizeof(r->source), "%s", self);
	if (!v || !v->value_len) {
		snprintf(r->visited, sizeof(r->visited), "%s", self);
		return true;
	}
	if (listed(v->value, v->value_len, self)) {
		failf(q, GRPC_FAILED_PRECONDITION,
		      "the call came back to node %s, which it passed already: a routing "
		      "loop (passed: %.*s)",
		      self, (int)(v->value_len > 300 ? 300 : v->value_len), v->value);
		return false;
	}
	if (v->value_len + 1 + strlen(self) >= sizeof(r->visited)) {
		failf(q, GRPC_FAILED_PRECONDITION, "%s", "the call passed too many nodes");
		return false;
	}
	const uint8_t *last = memrchr(v->value, ',', v->value_len);
	size_t from = last ? (size_t)(last + 1 - v->value) : 0;
	snprintf(r->source, sizeof(r->source), "%.*s", (int)(v->value_len - from), v->value + from);
	snprintf(r->visited, sizeof(r->visited), "%.*s,%s", (int)v->value_len, v->value, self);
	return true;
}

/* A metadata value of c into out (cap bytes), when it fits. */
static void md_copy(call *c, const char *key, char *out, size_t cap)
{
	const call_md *md = c ? call_md_get(c, key) : NULL;
	if (md && md->value_len < cap) {
		memcpy(out, md->value, md->value_len);
		out[md->value_len] = 0;
	}
}

/* The execution a route runs for: the worker's (q), or the one the call served carries
 * (a task sent on by a peer's Dispatch), so that the handler that runs it sees it. */
static void exec_of(route *r, const route_req *q)
{
	if (q->exec_id && *q->exec_id) {
		snprintf(r->exec_id, sizeof(r->exec_id), "%s", q->exec_id);
		snprintf(r->attempt, sizeof(r->attempt), "%d", q->attempt);
		return;
	}
	md_copy(r->c, ROUTE_EXEC_ID_HEADER, r->exec_id, sizeof(r->exec_id));
	md_copy(r->c, ROUTE_ATTEMPT_HEADER, r->attempt, sizeof(r->attempt));
	if (!r->attempt[0])
		r->exec_id[0] = 0; /* both or neither */
}

/* ---- the end ---- */

static void route_free(route *r)
{
	mem_free(r->h);
	mem_free(r->fwd);
	mem_free(r);
}

static void route_end(route *r, int code, const char *message, const char *type_url,
		      const uint8_t *out, size_t len, const char *handled_by)
{
	if (r->env->mesh) {
		mesh_record rec = {.ns = r->ns,
				   .service = r->service,
				   .method = r->method,
				   .source = r->source,
				   .handled_by = code == GRPC_OK ? handled_by : "",
				   .code = code,
				   .message = code == GRPC_OK ? "" : message};
		mesh_log(r->env->mesh, &rec);
	}
	r->done(r->user, code, message, type_url, out, len, handled_by);
	if (r->c)
		call_unref(r->c);
	route_free(r);
}

/* ---- on this node ---- */

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

static void local_done(void *user, int code, const char *message, const uint8_t *resp, size_t len)
{
	route *r = user;
	r->p = NULL;
	char url[sizeof(SVC_TYPE_URL_PREFIX) + HANDLER_NAME_MAX];
	snprintf(url, sizeof(url), SVC_TYPE_URL_PREFIX "%s",
		 r->h		? r->h->output_type
		 : r->m->output ? r->m->output->name
				: "");
	route_end(r, code, message, url, resp, len, self_id(r->env));
}

/* One call of the route. To this node or a handler: the namespace it runs in and the hops
 * (not the nodes passed: this node's own id there would refuse the call). To a peer's
 * Dispatch: the hops and the nodes passed; no namespace header, since the peer's Dispatch
 * is the node's own method, admitted in its default namespace, and the namespace of the
 * method it runs is in the request. */
static proxy_call *route_call(route *r, const char *target, const char *path,
			      const uint8_t *request, size_t len, bool to_peer, proxy_done_fn done)
{
	call_md md[5];
	size_t n = 0;
	if (!to_peer)
		md[n++] = (call_md){SVC_NAMESPACE_HEADER, strlen(SVC_NAMESPACE_HEADER),
				    (const uint8_t *)r->ns, strlen(r->ns)};
	/* To this node itself: the caller's own token, so that the method run is checked
	 * against the caller's rights in the namespace its request names (not only the
	 * Dispatch's). Without one (the worker's tasks, a caller known by its certificate):
	 * the local credential, good for this route's namespace only (auth.h). A peer's call
	 * carries the node credential (proxy.h). */
	if (!to_peer && !r->h) {
		const call_md *own = r->c ? call_md_get(r->c, "authorization") : NULL;
		const char *local = auth_local_credential(r->env->auth);
		if (own)
			md[n++] = *own;
		else if (local)
			md[n++] = (call_md){"authorization", 13, (const uint8_t *)local,
					    strlen(local)};
	}
	md[n++] = (call_md){DISPATCH_HOPS_HEADER, strlen(DISPATCH_HOPS_HEADER),
			    (const uint8_t *)r->hops, strlen(r->hops)};
	if (to_peer)
		md[n++] = (call_md){MESH_VISITED_HEADER, strlen(MESH_VISITED_HEADER),
				    (const uint8_t *)r->visited, strlen(r->visited)};
	if (r->exec_id[0]) {
		md[n++] = (call_md){ROUTE_EXEC_ID_HEADER, strlen(ROUTE_EXEC_ID_HEADER),
				    (const uint8_t *)r->exec_id, strlen(r->exec_id)};
		md[n++] = (call_md){ROUTE_ATTEMPT_HEADER, strlen(ROUTE_ATTEMPT_HEADER),
				    (const uint8_t *)r->attempt, strlen(r->attempt)};
	}
	proxy_args a = {.target = target,
			.path = path,
			.request = request,
			.request_len = len,
			.deadline_ns = r->deadline_ns,
			.md = md,
			.nmd = n,
			.max_message_bytes = r->env->max_message_bytes,
			.done = done,
			.user = r,
			.unprocessed = to_peer ? &r->unprocessed : NULL,
			/* a node (this one, a peer), or a handler process */
			.node = to_peer || !r->h};
	return proxy_start(r->rx, &a);
}

static bool run_local(route *r, route_req *q)
{
	char target[128];
	if (r->h)
		snprintf(target, sizeof(target), "%s", r->h->endpoint);
	else
		loopback_of(r->env->endpoint ? r->env->endpoint : "", target, sizeof(target));
	r->p = route_call(r, target, r->h ? r->h->path : r->m->path, q->input, q->input_len, false,
			  local_done);
	if (!r->p)
		failf(q, GRPC_UNAVAILABLE, "%s", "this node cannot call itself (shutting down?)");
	return r->p != NULL;
}

/* ---- on a linked node ---- */

static int forward(route *r, char *why, size_t cap);

static void peer_done(void *user, int code, const char *message, const uint8_t *resp, size_t len)
{
	route *r = user;
	r->p = NULL;
	mesh_release(r->env->mesh, r->choice.id);
	if (code != GRPC_OK && r->unprocessed)
		mesh_unreachable(r->env->mesh, r->choice.id, message);
	if (code != GRPC_OK && r->unprocessed && !r->retried) {
		/* It surely did not run there: once more, elsewhere. */
		r->retried = true;
		snprintf(r->failed_on, sizeof(r->failed_on), "%s", r->choice.id);
		char why[600];
		int again = forward(r, why, sizeof(why));
		if (again != GRPC_OK)
			route_end(r, again, why, NULL, NULL, 0, "");
		return;
	}
	if (code != GRPC_OK) {
		route_end(r, code, message, NULL, NULL, 0, "");
		return;
	}
	Collector__DispatchResponse *d =
		svc_decode(&collector__dispatch_response__descriptor, resp, len);
	if (!d || !d->output) {
		route_end(r, GRPC_INTERNAL, "the node's answer is not a DispatchResponse", NULL,
			  NULL, 0, "");
	} else {
		const char *by = d->handled_by_collector_id && *d->handled_by_collector_id
					 ? d->handled_by_collector_id
					 : r->choice.id;
		route_end(r, GRPC_OK, "", d->output->type_url ? d->output->type_url : "",
			  d->output->value.data, d->output->value.len, by);
	}
	if (d)
		collector__dispatch_response__free_unpacked(d, NULL);
}

/* r->fwd with its target_collector_id (field 5) set to id: a string field given twice
 * takes its last value, so appending it is enough. */
static uint8_t *with_target(const route *r, const char *id, size_t *len)
{
	size_t idlen = strlen(id);
	uint8_t *b = mem_alloc(r->fwd_len + 2 + idlen);
	if (!b)
		return NULL;
	memcpy(b, r->fwd, r->fwd_len);
	b[r->fwd_len] = (5 << 3) | 2;	    /* field 5, length-delimited */
	b[r->fwd_len + 1] = (uint8_t)idlen; /* < MESH_ID_MAX: one varint byte */
	memcpy(b + r->fwd_len + 2, id, idlen);
	*len = r->fwd_len + 2 + idlen;
	return b;
}

/* Chooses a node and sends it the DispatchRequest: GRPC_OK, or the code that ends the
 * call with why. */
static int forward(route *r, char *why, size_t cap)
{
	const char *avoid[1] = {r->failed_on};
	mesh_want w = {.ns = r->ns,
		       .service = r->service,
		       .target = r->target,
		       .everywhere = r->everywhere,
		       .round_robin = r->round_robin,
		       .avoid = avoid,
		       .navoid = r->failed_on[0] ? 1 : 0};
	int rc = r->env->mesh ? mesh_choose(r->env->mesh, &w, &r->choice) : -ENOENT;
	if (rc == -EBUSY) {
		snprintf(why, cap,
			 "every node that serves %.200s has as many calls from this node as it "
			 "may",
			 r->service);
		return GRPC_RESOURCE_EXHAUSTED;
	}
	if (rc == -EHOSTDOWN && !r->target) {
		snprintf(why, cap,
			 "every node known to serve %.200s.%.100s in namespace %.100s is down now",
			 r->service, r->method, r->ns);
		return GRPC_UNAVAILABLE;
	}
	if (rc && r->target) {
		snprintf(why, cap,
			 "collector %.100s is not reachable from this node (no link up to it or to "
			 "a node linked to it, in namespace %.100s)",
			 r->target, r->ns);
		return GRPC_UNAVAILABLE;
	}
	if (rc) {
		snprintf(why, cap, "no node %s serves %.200s.%.100s in namespace %.100s",
			 r->failed_on[0] ? "reachable now" : "linked to this one", r->service,
			 r->method, r->ns);
		return r->failed_on[0] ? GRPC_UNAVAILABLE : GRPC_NOT_FOUND;
	}
	/* The peer runs it when it said it serves it; else it routes it on. */
	size_t len = r->fwd_len;
	uint8_t *sent = r->choice.final && !r->target ? with_target(r, r->choice.id, &len) : NULL;
	r->unprocessed = false;
	r->p = route_call(r, r->choice.address, DISPATCH_PATH, sent ? sent : r->fwd, len, true,
			  peer_done);
	mem_free(sent);
	if (!r->p) {
		mesh_release(r->env->mesh, r->choice.id);
		snprintf(why, cap, "this node cannot call out (shutting down?)");
		return GRPC_UNAVAILABLE;
	}
	return GRPC_OK;
}

static uint8_t *pack_forward(const route_req *q, size_t *len)
{
	Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
	any.type_url = (char *)q->type_url;
	any.value.data = (uint8_t *)q->input;
	any.value.len = q->input_len;
	Collector__ServiceTypeRef svc = COLLECTOR__SERVICE_TYPE_REF__INIT;
	svc.namespace_ = (char *)q->ns;
	svc.service_name = (char *)q->service;
	Collector__DispatchRequest d = COLLECTOR__DISPATCH_REQUEST__INIT;
	d.namespace_ = (char *)q->ns;
	d.service = &svc;
	d.method_name = (char *)q->method;
	d.input = &any;
	d.target_collector_id = (char *)(q->target ? q->target : "");
	*len = collector__dispatch_request__get_packed_size(&d);
	uint8_t *b = mem_alloc(*len ? *len : 1);
	if (b)
		collector__dispatch_request__pack(&d, b);
	return b;
}

/* ---- the route ---- */

/* A copy of s[0..n) at *at, which moves past it. */
static char *put(char **at, const char *s, size_t n)
{
	char *d = *at;
	memcpy(d, s, n);
	d[n] = 0;
	*at += n + 1;
	return d;
}

route *route_start(route_req *q)
{
	call *c = q->c;
	if (!q->service || !*q->service || !q->method || !*q->method) {
		failf(q, GRPC_INVALID_ARGUMENT, "%s",
		      "service.service_name and method_name are required");
		return NULL;
	}
	if (!q->type_url || !*q->type_url) {
		failf(q, GRPC_INVALID_ARGUMENT, "%s",
		      "input is required: an Any of the method's input");
		return NULL;
	}
	const char *self = self_id(q->env);
	const char *target = q->target && *q->target && strcmp(q->target, self) ? q->target : NULL;
	bool here_only = q->local_only || (q->target && *q->target && !target);
	bool fail;
	const method *m = find_local(q, q->service, q->method, &fail);
	if (fail || (m && !target && !local_fits(q, m, q->type_url)))
		return NULL;
	handler_route *h = NULL;
	if (!m && !target && !handler_here(q, &h, &fail) && fail)
		return NULL;
	if (!m && !h && here_only) {
		failf(q, GRPC_NOT_FOUND, "this node serves no method %.200s.%.100s", q->service,
		      q->method);
		return NULL;
	}
	/* The route and its strings in one allocation; the service by its full name. */
	const char *svc = m ? m->path + 1 : h ? h->path + 1 : q->service;
	size_t svc_len = m   ? (size_t)(strrchr(m->path, '/') - svc)
			 : h ? (size_t)(strrchr(h->path, '/') - svc)
			     : strlen(q->service);
	size_t ns_len = strlen(q->ns), method_len = strlen(q->method);
	size_t target_len = target ? strlen(target) : 0;
	route *r = mem_calloc(1, sizeof(*r) + ns_len + svc_len + method_len + target_len + 4);
	if (!r) {
		mem_free(h);
		failf(q, GRPC_RESOURCE_EXHAUSTED, "%s", "out of memory");
		return NULL;
	}
	char *at = (char *)(r + 1);
	*r = (route){.c = c,
		     .rx = c ? call_reactor(c) : q->rx,
		     .deadline_ns = c ? call_deadline(c) : q->deadline_ns,
		     .env = q->env,
		     .done = q->done,
		     .user = q->user,
		     .m = m,
		     .h = h,
		     .ns = put(&at, q->ns, ns_len),
		     .service = put(&at, svc, svc_len),
		     .method = put(&at, q->method, method_len),
		     .target = target ? put(&at, target, target_len) : NULL,
		     .round_robin = q->round_robin,
		     .everywhere = m != NULL};
	if (c)
		call_ref(c);
	exec_of(r, q);
	bool started = route_path(r, q);
	bool here = started && (m || h) && !target && (here_only || !q->prefer_remote);
	if (started && here) {
		started = run_local(r, q);
	} else if (started) {
		r->fwd = pack_forward(q, &r->fwd_len);
		if (!r->fwd) {
			failf(q, GRPC_RESOURCE_EXHAUSTED, "%s", "out of memory");
			started = false;
		} else {
			char why[600];
			int code = forward(r, why, sizeof(why));
			/* prefer=remote when no other node serves it: here after all. */
			if (code != GRPC_OK && (m || h) && !target) {
				started = run_local(r, q);
			} else if (code != GRPC_OK) {
				failf(q, code, "%s", why);
				started = false;
			}
		}
	}
	if (!started) {
		if (c)
			call_unref(c);
		route_free(r);
		return NULL;
	}
	return r;
}

void route_cancel(route *r)
{
	if (r->p)
		proxy_cancel(r->p); /* its done follows at once */
}
