#include "services/wf_call.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "base/mem.h"
#include "services/route.h"
#include "services/strmap.h"

typedef struct cancel_req {
	struct cancel_req *next;
	char exec_id[UUID_STR_LEN];
} cancel_req;

struct wf_calls {
	const svc_env *env;
	wf_calls_done_fn done;
	void *ctx;
	atomic_bool claimed;
	reactor *r;
	/* handed over by other threads, under mu */
	pthread_mutex_t mu;
	wf_call *incoming;
	cancel_req *cancels;
	bool posted;
	reactor_task task;
	/* the reactor's: calls in flight by execution id */
	strmap inflight;
	bool draining;
};

static char *copy(const char *s) { return mem_strdup(s ? s : ""); }

wf_call *wf_call_new(const char *ns, const char *service, const char *method, const char *type_url,
		     const uint8_t *input, size_t len)
{
	wf_call *c = mem_calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->ns = copy(ns);
	c->service = copy(service);
	c->method = copy(method);
	c->type_url = copy(type_url);
	c->input = mem_alloc(len ? len : 1);
	if (!c->ns || !c->service || !c->method || !c->type_url || !c->input) {
		wf_call_free(c);
		return NULL;
	}
	if (len)
		memcpy(c->input, input, len);
	c->input_len = len;
	return c;
}

void wf_call_free(wf_call *c)
{
	if (!c)
		return;
	mem_free(c->ns);
	mem_free(c->service);
	mem_free(c->method);
	mem_free(c->type_url);
	mem_free(c->input);
	mem_free(c->out_url);
	mem_free(c->out);
	mem_free(c);
}

wf_calls *wf_calls_new(const svc_env *env, wf_calls_done_fn done, void *ctx)
{
	wf_calls *w = mem_calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->env = env;
	w->done = done;
	w->ctx = ctx;
	pthread_mutex_init(&w->mu, NULL);
	return w;
}

bool wf_calls_claim(wf_calls *w, reactor *r)
{
	if (!w || atomic_exchange(&w->claimed, true))
		return false;
	w->r = r;
	return true;
}

/* ---- on the reactor ---- */

static void finish(wf_calls *w, wf_call *c, int code, const char *msg)
{
	c->code = code;
	snprintf(c->msg, sizeof(c->msg), "%s", msg ? msg : "");
	w->done(w->ctx, c);
}

static void route_done(void *user, int code, const char *message, const char *type_url,
		       const uint8_t *out, size_t len, const char *handled_by)
{
	wf_call *c = user;
	wf_calls *w = c->owner;
	c->route = NULL;
	if (code == GRPC_OK) {
		c->out_url = copy(type_url);
		c->out = mem_alloc(len ? len : 1);
		if (!c->out_url || !c->out) {
			code = GRPC_RESOURCE_EXHAUSTED;
			message = "out of memory for the task's output";
		} else {
			if (len)
				memcpy(c->out, out, len);
			c->out_len = len;
		}
		snprintf(c->handled_by, sizeof(c->handled_by), "%s", handled_by ? handled_by : "");
	}
	strmap_del(&w->inflight, c->exec_id, strlen(c->exec_id));
	finish(w, c, code, message);
}

static void start_one(wf_calls *w, wf_call *c)
{
	if (w->draining) {
		finish(w, c, GRPC_UNAVAILABLE, "the node is stopping");
		return;
	}
	route_req q = {.rx = w->r,
		       .deadline_ns = reactor_now(w->r) + c->timeout_ns,
		       .env = w->env,
		       .ns = c->ns,
		       .service = c->service,
		       .method = c->method,
		       .type_url = c->type_url,
		       .input = c->input,
		       .input_len = c->input_len,
		       .exec_id = c->exec_id,
		       .attempt = c->attempt,
		       .done = route_done,
		       .user = c};
	if (strmap_put(&w->inflight, c->exec_id, strlen(c->exec_id), c, NULL)) {
		finish(w, c, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	c->owner = w;
	c->route = route_start(&q);
	if (!c->route) {
		strmap_del(&w->inflight, c->exec_id, strlen(c->exec_id));
		finish(w, c, q.fail_code, q.fail_msg);
	}
}

static void run_posted(reactor_task *t)
{
	wf_calls *w = (wf_calls *)((char *)t - offsetof(wf_calls, task));
	pthread_mutex_lock(&w->mu);
	wf_call *calls = w->incoming;
	cancel_req *cancels = w->cancels;
	w->incoming = NULL;
	w->cancels = NULL;
	w->posted = false;
	pthread_mutex_unlock(&w->mu);
	while (cancels) {
		cancel_req *k = cancels;
		cancels = k->next;
		wf_call *c = strmap_get(&w->inflight, k->exec_id, strlen(k->exec_id));
		if (c && c->route)
			route_cancel(c->route); /* route_done follows at once */
		mem_free(k);
	}
	while (calls) {
		wf_call *c = calls;
		calls = c->next;
		c->next = NULL;
		start_one(w, c);
	}
}

/* Under mu: makes sure the reactor looks at what was handed over. */
static void kick_locked(wf_calls *w)
{
	if (!w->posted && w->r) {
		w->posted = true;
		w->task.fn = run_posted;
		reactor_post(w->r, &w->task);
	}
}

void wf_calls_post(wf_calls *w, wf_call *list)
{
	if (!list)
		return;
	pthread_mutex_lock(&w->mu);
	wf_call *last = list;
	while (last->next)
		last = last->next;
	last->next = w->incoming;
	w->incoming = list;
	kick_locked(w);
	pthread_mutex_unlock(&w->mu);
}

void wf_calls_cancel(wf_calls *w, const char *exec_id)
{
	cancel_req *k = mem_calloc(1, sizeof(*k));
	if (!k)
		return; /* the call then runs to its end; its outcome is ignored */
	snprintf(k->exec_id, sizeof(k->exec_id), "%s", exec_id);
	pthread_mutex_lock(&w->mu);
	k->next = w->cancels;
	w->cancels = k;
	kick_locked(w);
	pthread_mutex_unlock(&w->mu);
}

static void cancel_each(void *ctx, const char *key, size_t len, void *value)
{
	(void)ctx;
	(void)key;
	(void)len;
	wf_call *c = value;
	if (c->route)
		route_cancel(c->route);
}

void wf_calls_drain(wf_calls *w, reactor *r)
{
	if (!w || w->r != r)
		return;
	w->draining = true;
	run_posted(&w->task); /* what was handed over ends now */
	/* route_cancel ends a call at once, which removes it from the map: cancel from a
	 * snapshot of the map's calls. */
	size_t n = w->inflight.used;
	wf_call **all = n ? mem_calloc(n, sizeof(*all)) : NULL;
	size_t k = 0;
	for (size_t i = 0; all && i < w->inflight.cap; i++)
		if (w->inflight.slots[i].key && k < n)
			all[k++] = w->inflight.slots[i].value;
	for (size_t i = 0; i < k; i++)
		cancel_each(NULL, NULL, 0, all[i]);
	mem_free(all);
}

void wf_calls_free(wf_calls *w)
{
	if (!w)
		return;
	while (w->incoming) {
		wf_call *c = w->incoming;
		w->incoming = c->next;
		wf_call_free(c);
	}
	while (w->cancels) {
		cancel_req *k = w->cancels;
		w->cancels = k->next;
		mem_free(k);
	}
	strmap_free(&w->inflight);
	pthread_mutex_destroy(&w->mu);
	mem_free(w);
}
