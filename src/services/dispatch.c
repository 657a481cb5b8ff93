/* collector.CollectiveDispatcher. Serve runs a unary method of this node, Dispatch one
 * wherever the mesh serves it (route.c), their inputs and outputs carried in Anys, as
 * upstream does. Connect is the target's side of a link (a first one or a heartbeat);
 * Link makes one from here and keeps it in system/links before it is used. */
#include "services/dispatch.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "collector/dispatcher.pb-c.h"
#include "io/sock.h"
#include "services/mesh.h"
#include "services/mesh_link.h"
#include "services/route.h"

#define DISPATCHER "/collector.CollectiveDispatcher/"
/* A Link waits this long for the far side's answer, unless the call's deadline is
 * sooner. */
#define LINK_TIMEOUT_NS (5LL * 1000 * 1000 * 1000)

static Collector__Status status_ok = COLLECTOR__STATUS__INIT;

static const char *node_id(const svc_env *env) { return env->node_id ? env->node_id : ""; }

/* ---- Serve, Dispatch ---- */

typedef struct run {
	call *c;
	route *route;
	bool dispatch; /* answers a DispatchResponse */
} run;

static void run_done(void *user, int code, const char *message, const char *type_url,
		     const uint8_t *out, size_t len, const char *handled_by)
{
	run *r = user;
	if (code != GRPC_OK) {
		call_finish(r->c, code, message);
	} else {
		Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
		any.type_url = (char *)type_url;
		any.value.data = (uint8_t *)out;
		any.value.len = len;
		if (r->dispatch) {
			Collector__DispatchResponse dr = COLLECTOR__DISPATCH_RESPONSE__INIT;
			dr.status = &status_ok;
			dr.output = &any;
			dr.handled_by_collector_id = (char *)handled_by;
			call_reply(r->c, &dr.base);
		} else {
			Collector__ServeResponse sr = COLLECTOR__SERVE_RESPONSE__INIT;
			sr.status = &status_ok;
			sr.output = &any;
			sr.executor_id = (char *)handled_by;
			call_reply(r->c, &sr.base);
		}
	}
	call_set_user(r->c, NULL);
	mem_free(r);
}

static void run_cancel(call *c)
{
	run *r = call_user(c);
	if (r && r->route)
		route_cancel(r->route); /* run_done follows at once */
}

static void start(call *c, route_req *q, bool dispatch)
{
	run *r = mem_calloc(1, sizeof(*r));
	if (!r) {
		call_finish(c, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	r->c = c;
	r->dispatch = dispatch;
	q->c = c;
	q->done = run_done;
	q->user = r;
	call_set_user(c, r);
	r->route = route_start(q);
	if (!r->route) {
		call_set_user(c, NULL);
		mem_free(r);
		call_finish(c, q->fail_code, q->fail_msg);
	}
}

static void input_of(route_req *q, const Google__Protobuf__Any *input)
{
	q->type_url = input ? input->type_url : NULL;
	q->input = input ? input->value.data : NULL;
	q->input_len = input ? input->value.len : 0;
}

static void serve(call *c, const ProtobufCMessage *msg)
{
	const Collector__ServeRequest *req = (const void *)msg;
	const svc_env *env = call_ctx(c);
	route_req q = {.env = env,
		       .ns = svc_namespace(c, env, req->namespace_),
		       .service = req->service ? req->service->service_name : NULL,
		       .method = req->method_name,
		       .local_only = true};
	input_of(&q, req->input);
	start(c, &q, false);
}

/* routing_hints: prefer=local|remote, lb=round_robin|least_loaded; other keys are left
 * for later and ignored, an unknown value of these two refused. */
static bool read_hints(call *c, const Collector__DispatchRequest *req, route_req *q)
{
	for (size_t i = 0; i < req->n_routing_hints; i++) {
		const char *k = req->routing_hints[i]->key, *v = req->routing_hints[i]->value;
		if (!k || !v)
			continue;
		if (!strcmp(k, "prefer") && (!strcmp(v, "local") || !strcmp(v, "remote"))) {
			q->prefer_remote = !strcmp(v, "remote");
		} else if (!strcmp(k, "lb") &&
			   (!strcmp(v, "round_robin") || !strcmp(v, "least_loaded"))) {
			q->round_robin = !strcmp(v, "round_robin");
		} else if (!strcmp(k, "prefer") || !strcmp(k, "lb")) {
			call_finishf(c, GRPC_INVALID_ARGUMENT,
				     "routing_hints %s=%.100s: expected prefer=local|remote or "
				     "lb=round_robin|least_loaded",
				     k, v);
			return false;
		}
	}
	return true;
}

static void dispatch(call *c, const ProtobufCMessage *msg)
{
	const Collector__DispatchRequest *req = (const void *)msg;
	const svc_env *env = call_ctx(c);
	route_req q = {.env = env,
		       .ns = svc_namespace(c, env, req->namespace_),
		       .service = req->service ? req->service->service_name : NULL,
		       .method = req->method_name,
		       .target = req->target_collector_id};
	input_of(&q, req->input);
	if (read_hints(c, req, &q))
		start(c, &q, true);
}

/* The link methods need the node's mesh: a table built without one (a test's, a
 * fuzzer's) answers UNIMPLEMENTED. */
static bool has_mesh(call *c, const svc_env *env)
{
	if (!env->mesh)
		call_finish(c, GRPC_UNIMPLEMENTED, "this node has no mesh");
	return env->mesh != NULL;
}

/* ---- Connect: the target's side ---- */

static void connect_(call *c, const ProtobufCMessage *msg)
{
	const Collector__ConnectRequest *req = (const void *)msg;
	const svc_env *env = call_ctx(c);
	if (!has_mesh(c, env))
		return;
	const char *id = "";
	for (size_t i = 0; i < req->n_metadata; i++)
		if (req->metadata[i]->key && !strcmp(req->metadata[i]->key, MESH_ID_KEY))
			id = req->metadata[i]->value ? req->metadata[i]->value : "";
	char **shared;
	size_t nshared;
	char conn_id[64];
	const char *why = NULL;
	int rc = mesh_accept(env->mesh, id, req, reactor_now(call_reactor(c)), &shared, &nshared,
			     conn_id, sizeof(conn_id), &why);
	if (rc) {
		call_finish(c,
			    rc == -ELOOP    ? GRPC_FAILED_PRECONDITION
			    : rc == -EINVAL ? GRPC_INVALID_ARGUMENT
					    : GRPC_RESOURCE_EXHAUSTED,
			    why);
		return;
	}
	mesh_info info;
	if (mesh_info_self(env->mesh, &info)) {
		mesh_strings_free(shared, nshared);
		call_finish(c, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	Collector__ConnectResponse r = COLLECTOR__CONNECT_RESPONSE__INIT;
	r.status = &status_ok;
	r.connection_id = conn_id;
	r.shared_namespaces = shared;
	r.n_shared_namespaces = nshared;
	r.target_collector_id = (char *)node_id(env);
	MESH_INFO_SET(r, info);
	call_reply(c, &r.base);
	mesh_info_free(&info);
	mesh_strings_free(shared, nshared);
}

/* ---- Link: this node's side ---- */

typedef struct linking {
	svc_job j;
	const svc_env *env;
	char address[MESH_ADDR_MAX];
	char id[MESH_ID_MAX];
	char **ns; /* the namespaces asked for (none: the node's) */
	size_t nns;
	uint8_t *resp; /* the far side's ConnectResponse, answered as it came */
	size_t len;
	bool stored;
} linking;

static void linking_free(linking *l)
{
	mesh_strings_free(l->ns, l->nns);
	mem_free(l->resp);
	mem_free(l);
}

static void link_store(svc_job *j)
{
	linking *l = (linking *)j;
	int rc = mesh_link_store(l->env, l->address, l->id, l->ns, l->nns);
	if (rc)
		svc_job_fail(j, GRPC_INTERNAL, "the link could not be kept: %s", strerror(-rc));
	l->stored = !rc;
}

static void link_reply(svc_job *j)
{
	linking *l = (linking *)j;
	call_reply_raw(j->c, l->resp, l->len);
}

/* After the store (and whether or not the call is still there to answer): a kept link is
 * used at once. */
static void link_release(svc_job *j)
{
	linking *l = (linking *)j;
	if (l->stored && !mesh_add_outbound(l->env->mesh, l->address, (const char *const *)l->ns,
					    l->nns, MESH_STORED)) {
		Collector__ConnectResponse *r =
			svc_decode(&collector__connect_response__descriptor, l->resp, l->len);
		if (r) {
			mesh_beat_result(l->env->mesh, l->address, r, NULL,
					 reactor_now(call_reactor(j->c)));
			collector__connect_response__free_unpacked(r, NULL);
		}
	}
	linking_free(l);
}

static void link_connected(void *user, const Collector__ConnectResponse *resp, const uint8_t *bytes,
			   size_t len, int code, const char *why)
{
	linking *l = user;
	call *c = l->j.c;
	if (call_done(c)) {
		linking_free(l);
	} else if (!resp) {
		call_finishf(c, code == GRPC_FAILED_PRECONDITION ? code : GRPC_UNAVAILABLE,
			     "cannot link to %s: %s", l->address, why ? why : "failed");
		linking_free(l);
	} else if (!resp->target_collector_id || !*resp->target_collector_id ||
		   strlen(resp->target_collector_id) >= MESH_ID_MAX) {
		call_finishf(c, GRPC_FAILED_PRECONDITION,
			     "cannot link to %s: its answer names no collector id", l->address);
		linking_free(l);
	} else if (!strcmp(resp->target_collector_id, node_id(l->env))) {
		call_finishf(c, GRPC_FAILED_PRECONDITION,
			     "%s is this node itself: a node cannot link to itself", l->address);
		linking_free(l);
	} else if (!(l->resp = mem_alloc(len ? len : 1))) {
		call_finish(c, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		linking_free(l);
	} else {
		memcpy(l->resp, bytes, len);
		l->len = len;
		snprintf(l->id, sizeof(l->id), "%s", resp->target_collector_id);
		l->j.work = link_store;
		l->j.reply = link_reply;
		l->j.release = link_release;
		svc_job_run(l->env->pool, c, &l->j);
	}
	call_unref(c);
}

static bool address_valid(call *c, const char *address)
{
	struct sockaddr_storage ss;
	socklen_t len;
	if (!address || !*address || strlen(address) >= MESH_ADDR_MAX ||
	    sock_parse_addr(address, &ss, &len)) {
		call_finishf(c, GRPC_INVALID_ARGUMENT,
			     "address '%.150s' must be host:port with a numeric host or localhost",
			     address ? address : "");
		return false;
	}
	return true;
}

static void link(call *c, const ProtobufCMessage *msg)
{
	const Collector__LinkRequest *req = (const void *)msg;
	const svc_env *env = call_ctx(c);
	if (!has_mesh(c, env) || !address_valid(c, req->address))
		return;
	for (size_t i = 0; i < req->n_namespaces; i++)
		if (!req->namespaces[i] ||
		    (strcmp(req->namespaces[i], "*") && !store_name_valid(req->namespaces[i]))) {
			call_finishf(c, GRPC_INVALID_ARGUMENT,
				     "namespaces[%zu] is not a namespace name", i);
			return;
		}
	linking *l = mem_calloc(1, sizeof(*l));
	if (l && req->n_namespaces) {
		l->ns = mem_calloc(req->n_namespaces, sizeof(*l->ns));
		for (size_t i = 0; l->ns && i < req->n_namespaces; i++, l->nns++)
			if (!(l->ns[i] = mem_strdup(req->namespaces[i])))
				break;
	}
	if (!l || (req->n_namespaces && l->nns != req->n_namespaces)) {
		if (l)
			linking_free(l);
		call_finish(c, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	l->env = env;
	l->j.c = c;
	snprintf(l->address, sizeof(l->address), "%s", req->address);
	int64_t timeout = LINK_TIMEOUT_NS, deadline = call_deadline(c);
	reactor *r = call_reactor(c);
	if (deadline != INT64_MAX && deadline - reactor_now(r) < timeout)
		timeout = deadline - reactor_now(r);
	call_ref(c);
	int rc = mesh_connect(r, env->mesh, env, l->address, l->ns, l->nns, timeout, link_connected,
			      l);
	if (rc) {
		call_unref(c);
		linking_free(l);
		call_finish(c, rc == -ENOMEM ? GRPC_RESOURCE_EXHAUSTED : GRPC_UNAVAILABLE,
			    rc == -ENOMEM ? "out of memory" : "this node cannot call out now");
	}
}

/* ---- Unlink ---- */

typedef struct unlinking {
	svc_job j;
	const svc_env *env;
	char address[MESH_ADDR_MAX];
	bool stored, removed;
} unlinking;

static void unlink_work(svc_job *j)
{
	unlinking *u = (unlinking *)j;
	int rc = u->stored ? mesh_link_delete(u->env, u->address) : 0;
	if (rc) {
		svc_job_fail(j, GRPC_INTERNAL,
			     "the link is removed but its record could not be: it comes back at "
			     "the next start (%s)",
			     strerror(-rc));
		return;
	}
	Collector__UnlinkResponse r = COLLECTOR__UNLINK_RESPONSE__INIT;
	r.status = &status_ok;
	r.removed = u->removed;
	if (svc_job_answer(j, &r.base))
		svc_job_fail(j, GRPC_RESOURCE_EXHAUSTED, "out of memory");
}

static void unlink_release(svc_job *j) { mem_free(j); }

static void unlink_(call *c, const ProtobufCMessage *msg)
{
	const Collector__UnlinkRequest *req = (const void *)msg;
	const svc_env *env = call_ctx(c);
	if (!has_mesh(c, env))
		return;
	const char *which = req->address && *req->address ? req->address : req->collector_id;
	if (!which || !*which) {
		call_finish(c, GRPC_INVALID_ARGUMENT, "address or collector_id is required");
		return;
	}
	unlinking *u = mem_calloc(1, sizeof(*u));
	if (!u) {
		call_finish(c, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	u->env = env;
	/* Out of routing at once; its record goes next (a failure there is reported, and the
	 * link would come back at the next start). */
	u->removed = mesh_remove(env->mesh, which, &u->stored, u->address, sizeof(u->address));
	u->j.work = unlink_work;
	u->j.release = unlink_release;
	svc_job_run(env->pool, c, &u->j);
}

/* ---- what the mesh knows ---- */

static void reply_packed(call *c, uint8_t *bytes, size_t len)
{
	if (!bytes) {
		call_finish(c, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	call_reply_raw(c, bytes, len);
	mem_free(bytes);
}

static void list_peers(call *c, const ProtobufCMessage *msg)
{
	(void)msg;
	const svc_env *env = call_ctx(c);
	if (!has_mesh(c, env))
		return;
	size_t len = 0;
	uint8_t *bytes = mesh_pack_peers(env->mesh, reactor_now(call_reactor(c)), &len);
	reply_packed(c, bytes, len);
}

static void list_dispatches(call *c, const ProtobufCMessage *msg)
{
	const Collector__ListDispatchesRequest *req = (const void *)msg;
	const svc_env *env = call_ctx(c);
	if (!has_mesh(c, env))
		return;
	if (req->limit < 0) {
		call_finish(c, GRPC_INVALID_ARGUMENT, "limit must not be negative");
		return;
	}
	size_t len = 0;
	uint8_t *bytes = mesh_pack_dispatches(env->mesh, (size_t)req->limit, &len);
	reply_packed(c, bytes, len);
}

/* ---- the table ---- */

#define UNARY(name, in, out, fn, cancel)                                                           \
	{                                                                                          \
		DISPATCHER name, METHOD_UNARY, &collector__##in##__descriptor,                     \
			&collector__##out##__descriptor, {.on_request = fn, .on_cancel = cancel},  \
			ctx                                                                        \
	}

int dispatch_register(method_table *t, const svc_env *env)
{
	void *ctx = (void *)env; /* read only */
	const method methods[] = {
		UNARY("Serve", serve_request, serve_response, serve, run_cancel),
		UNARY("Dispatch", dispatch_request, dispatch_response, dispatch, run_cancel),
		UNARY("Connect", connect_request, connect_response, connect_, NULL),
		UNARY("Link", link_request, connect_response, link, svc_job_on_cancel),
		UNARY("Unlink", unlink_request, unlink_response, unlink_, svc_job_on_cancel),
		UNARY("ListPeers", list_peers_request, list_peers_response, list_peers, NULL),
		UNARY("ListDispatches", list_dispatches_request, list_dispatches_response,
		      list_dispatches, NULL),
	};
	return method_table_add_all(t, methods, sizeof(methods) / sizeof(methods[0]));
}
