/* The worker's calls: each execution of a task is one unary call run by the route
 * (route.h: this node, a registered service's handler, or a linked node), started on one
 * reactor (the first to start claims it). The engine's thread hands calls over and asks for
 * cancellations; each call handed over comes back exactly once, through done, with its
 * outcome. */
#ifndef SERVICES_WF_CALL_H
#define SERVICES_WF_CALL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/uuid.h"
#include "io/reactor.h"
#include "services/mesh.h"
#include "services/svc.h"

typedef struct wf_call wf_call;
struct wf_call {
	wf_call *next;
	/* in: what to call, for which execution (the engine's) */
	char exec_id[UUID_STR_LEN], wf_id[UUID_STR_LEN];
	size_t task;
	int attempt;
	char *ns, *service, *method, *type_url;
	uint8_t *input;
	size_t input_len;
	int64_t timeout_ns;
	/* out: the outcome (code a grpc-status; on OK out_url and out the output) */
	int code;
	char msg[640];
	char *out_url;
	uint8_t *out;
	size_t out_len;
	char handled_by[MESH_ID_MAX];
	/* the reactor's */
	struct route *route;
	struct wf_calls *owner;
};

/* A call with copies of its strings and input; NULL when out of memory. */
wf_call *wf_call_new(const char *ns, const char *service, const char *method, const char *type_url,
		     const uint8_t *input, size_t len);
void wf_call_free(wf_call *c);

typedef struct wf_calls wf_calls;
/* done runs on the reactor's thread, once per call handed over. */
typedef void (*wf_calls_done_fn)(void *ctx, wf_call *c);

wf_calls *wf_calls_new(const svc_env *env, wf_calls_done_fn done, void *ctx);
/* On each reactor's thread as it starts: true for the first, which runs the calls. */
bool wf_calls_claim(wf_calls *w, reactor *r);
/* Any thread: starts the calls of the list (their outcomes come through done). */
void wf_calls_post(wf_calls *w, wf_call *list);
/* Any thread: cancels the call of this execution if it is in flight (its done follows,
 * CANCELLED). */
void wf_calls_cancel(wf_calls *w, const char *exec_id);
/* On the claiming reactor as it drains: calls in flight are cancelled, new ones end
 * UNAVAILABLE at once. */
void wf_calls_drain(wf_calls *w, reactor *r);
void wf_calls_free(wf_calls *w);

#endif
