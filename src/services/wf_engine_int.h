/* The workflow engine's insides (wf_engine.c), shared with the requests it applies
 * (wf_requests.c): everything here is the engine thread's alone. */
#ifndef SERVICES_WF_ENGINE_INT_H
#define SERVICES_WF_ENGINE_INT_H
#include <pthread.h>

#include "base/uuid.h"
#include "services/strmap.h"
#include "services/wf_call.h"
#include "services/wf_engine.h"

typedef struct def_entry {
	char kind; /* 'w' or 'c' */
	char *ns;
	uint8_t *body;
	size_t len;
	Collector__WorkflowDefinition *wf;
	Collector__Continuation *cont;
} def_entry;

typedef struct task_state {
	int state, attempt, iteration;
	char exec_id[UUID_STR_LEN];
	Google__Protobuf__Any *output; /* the last output (owned) */
	int64_t next_at_us;	       /* RETRYING: due then (wall clock) */
	wf_call *call;		       /* in flight: read here, freed when it comes back */
} task_state;

typedef struct wf {
	char id[UUID_STR_LEN];
	char *ns;
	Collector__WorkflowDefinition *def; /* as started (owned) */
	Google__Protobuf__Any *input;	    /* owned */
	task_state *tasks;
	size_t running; /* tasks RUNNING */
	int64_t nexec;	/* executions recorded */
	bool dirty, blocked;
	bool paused; /* PAUSED: no new call starts; those in flight end as usual */
	struct wf *next_dirty;
} wf;

struct wf_engine {
	const svc_env *env;
	wf_limits lim;
	wfstore *st;
	wf_calls *calls;
	pthread_t thread;
	bool thread_started;
	/* handed over, under mu */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stopping;
	wf_req *reqs, *reqs_tail;
	wf_call *results;
	/* the engine thread's */
	strmap defs; /* "<kind>:<ns>/<key>" -> def_entry */
	size_t ndefs;
	strmap active; /* id -> wf */
	wf *dirty;
	size_t running;	     /* calls handed over and not back */
	int64_t next_due_us; /* the earliest retry due */
	bool any_blocked;
	int64_t next_sweep_us; /* when ended workflows past their retention are deleted next */
	/* what the step acts on once committed */
	wf_call *to_post;
	char (*to_cancel)[UUID_STR_LEN];
	size_t ncancel, cancel_cap;
};

int64_t eng_wall_us(void);
/* The definition of kind ('w' a workflow, 'c' a continuation) in ns by key; NULL. */
def_entry *eng_def_find(wf_engine *e, char kind, const char *ns, const char *key);
/* Keeps body (copied) as that definition, replacing the one before. */
int eng_def_keep(wf_engine *e, char kind, const char *ns, const char *key, const uint8_t *body,
		 size_t len);
/* wf_cont_fn over the engine's continuations (ctx the engine). */
const Collector__Continuation *eng_cont_of(void *ctx, const char *ns, const char *id);
/* A workflow from its stored parts; NULL when they do not decode or memory runs out. */
wf *eng_wf_make(const char *id, const char *ns, const uint8_t *def, size_t def_len,
		const uint8_t *input, size_t input_len);
void eng_wf_free(wf *w);
/* w is looked at again before the step commits. */
void eng_mark_dirty(wf_engine *e, wf *w);
/* w leaves the engine (freed); its calls in flight are not cancelled. */
void eng_forget(wf_engine *e, wf *w);
/* The call of this execution is cancelled once the step commits. */
void eng_cancel_later(wf_engine *e, const char *exec_id);
/* Ends w in state (FAILED or CANCELLED) for why: calls in flight are cancelled and
 * recorded so; w is gone after it. */
int eng_end_workflow(wf_engine *e, wf *w, int state, const char *why);
/* a packed (NULL: an empty message); NULL when out of memory. */
uint8_t *eng_pack_any(const Google__Protobuf__Any *a, size_t *len);

/* Applies request r in the step's transaction: 0, or the store's failure (r is then
 * refused as the whole step). A refusal of r itself is wf_req_fail's. */
int eng_handle_req(wf_engine *e, wf_req *r, int64_t now);
/* The request is refused with code (its answer, once the step is over). */
void wf_req_fail(wf_req *r, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The step is over: r's caller gets its answer. */
void wf_req_finish(wf_req *r);

#endif
