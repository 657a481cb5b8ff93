#include "services/health.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "base/list.h"
#include "base/mem.h"
#include "grpc/health/v1/health.pb-c.h"
#include "h2/call.h"

typedef Grpc__Health__V1__HealthCheckResponse__ServingStatus serving_status;
#define STATUS_SERVING GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
#define STATUS_NOT_SERVING GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING
#define STATUS_SERVICE_UNKNOWN                                                                     \
	GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN

static atomic_bool serving = true;

/* Set at registration, before any reactor runs; the table is read-only from then on. */
static const method_table *methods;

typedef struct watcher watcher;

/* One per reactor that ever had a Watch call. Lists are only pushed, never removed, so a
 * reader walks them without a lock; each list's watchers belong to its reactor's thread
 * alone, which is what keeps the hot path free of locks. */
typedef struct watch_list watch_list;
struct watch_list {
	reactor *r;
	list_node watchers;
	watch_list *next;
};

static _Atomic(watch_list *) lists;

struct watcher {
	call *c;
	list_node link; /* in its reactor's watch_list */
	/* Whether the name was found at the start: the table cannot change afterwards. */
	bool known;
	serving_status sent;
};

typedef struct name_query {
	const char *name;
	size_t len;
	bool found;
} name_query;

static void match_service(const char *service, size_t len, void *arg)
{
	name_query *q = arg;
	if (len == q->len && !memcmp(service, q->name, len))
		q->found = true;
}

static bool service_known(const char *name)
{
	if (!*name)
		return true;
	name_query q = {.name = name, .len = strlen(name)};
	method_table_each_service(methods, match_service, &q);
	return q.found;
}

bool health_serving(void) { return atomic_load_explicit(&serving, memory_order_acquire); }

static serving_status server_status(void)
{
	return atomic_load_explicit(&serving, memory_order_acquire) ? STATUS_SERVING
								    : STATUS_NOT_SERVING;
}

static void health_check(call *c, const ProtobufCMessage *msg)
{
	const Grpc__Health__V1__HealthCheckRequest *req = (const void *)msg;
	if (!service_known(req->service)) {
		call_finishf(c, GRPC_NOT_FOUND, "unknown service '%.200s'", req->service);
		return;
	}
	Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
	resp.status = server_status();
	call_reply(c, &resp.base);
}

static watch_list *watch_list_find(reactor *r)
{
	for (watch_list *l = atomic_load_explicit(&lists, memory_order_acquire); l; l = l->next)
		if (l->r == r)
			return l;
	return NULL;
}

/* Only r's own thread creates r's list, so finding none means none can appear meanwhile;
 * the compare-and-swap only orders pushes from different reactors. */
static watch_list *watch_list_get(reactor *r)
{
	watch_list *l = watch_list_find(r);
	if (l)
		return l;
	l = mem_calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	l->r = r;
	list_init(&l->watchers);
	l->next = atomic_load_explicit(&lists, memory_order_relaxed);
	while (!atomic_compare_exchange_weak_explicit(&lists, &l->next, l, memory_order_release,
						      memory_order_relaxed))
		;
	return l;
}

static serving_status watcher_status(const watcher *w)
{
	return w->known ? server_status() : STATUS_SERVICE_UNKNOWN;
}

static int watcher_send(watcher *w, serving_status st)
{
	Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
	resp.status = st;
	int rc = call_send(w->c, &resp.base);
	if (!rc)
		w->sent = st;
	return rc;
}

/* Ends a watch from our side. The caller has unlinked it; the reference goes last since
 * w lives in the call's arena. */
static void watcher_end(watcher *w, int code, const char *message)
{
	call *c = w->c;
	call_set_user(c, NULL);
	call_finish(c, code, message);
	call_unref(c);
}

static void health_watch(call *c, const ProtobufCMessage *msg)
{
	const Grpc__Health__V1__HealthCheckRequest *req = (const void *)msg;
	watch_list *l = watch_list_get(call_reactor(c));
	watcher *w = call_alloc(c, sizeof(*w));
	if (!l || !w) {
		call_finish(c, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	*w = (watcher){.c = c, .known = service_known(req->service)};
	if (watcher_send(w, watcher_status(w))) {
		call_finish(c, GRPC_INTERNAL, "could not queue the health status");
		return;
	}
	if (!atomic_load_explicit(&serving, memory_order_acquire)) {
		/* The node is going down: nothing more will change for this watch. */
		call_finish(c, GRPC_OK, NULL);
		return;
	}
	call_ref(c);
	call_set_user(c, w);
	list_push_front(&l->watchers, &w->link);
}

static void health_watch_cancel(call *c)
{
	watcher *w = call_user(c);
	if (!w)
		return;
	list_remove(&w->link);
	call_set_user(c, NULL);
	call_unref(c);
}

void health_notify(reactor *r)
{
	watch_list *l = watch_list_find(r);
	if (!l)
		return;
	bool ending = !atomic_load_explicit(&serving, memory_order_acquire);
	list_each_safe (it, &l->watchers) {
		watcher *w = container_of(it, watcher, link);
		serving_status st = watcher_status(w);
		int rc = st == w->sent ? 0 : watcher_send(w, st);
		if (rc || ending) {
			list_remove(&w->link);
			if (rc)
				watcher_end(w, GRPC_INTERNAL, "could not queue the health status");
			else
				watcher_end(w, GRPC_OK, NULL);
		}
	}
}

void health_set_serving(bool on) { atomic_store_explicit(&serving, on, memory_order_release); }

int health_register(method_table *t)
{
	const ProtobufCServiceDescriptor *sd = &grpc__health__v1__health__descriptor;
	static const struct {
		const char *path;
		method_kind kind;
		void (*on_request)(call *c, const ProtobufCMessage *req);
		void (*on_cancel)(call *c);
	} defs[] = {
		{"/grpc.health.v1.Health/Check", METHOD_UNARY, health_check, NULL},
		{"/grpc.health.v1.Health/Watch", METHOD_SERVER_STREAM, health_watch,
		 health_watch_cancel},
	};
	methods = t;
	for (size_t i = 0; i < sizeof(defs) / sizeof(defs[0]); i++) {
		const char *name = strrchr(defs[i].path, '/') + 1;
		const ProtobufCMethodDescriptor *md =
			protobuf_c_service_descriptor_get_method_by_name(sd, name);
		if (!md)
			return -EINVAL;
		method m = {
			.path = defs[i].path,
			.kind = defs[i].kind,
			.input = md->input,
			.output = md->output,
			.h = {.on_request = defs[i].on_request, .on_cancel = defs[i].on_cancel},
		};
		int rc = method_table_add(t, &m);
		if (rc)
			return rc;
	}
	return 0;
}
