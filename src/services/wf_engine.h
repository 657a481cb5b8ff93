/* The workflow engine: runs started workflows to their end, durably.
 *
 * One thread owns the engine's state. It takes what arrived (registrations, starts,
 * cancellations from the RPCs; outcomes of task calls from the reactor; retry timers that
 * fell due), applies all of it in one transaction of the workflow store (store/wfstore.h),
 * commits, and only then acts: answers the RPCs, starts the calls (wf_call.h), cancels
 * calls. So every state change is committed before anything depends on it, and changes
 * that arrive together share a commit.
 *
 * At start it reads back every RUNNING workflow: finished tasks keep their outputs, a call
 * that was in flight when the node stopped is recorded as failed (UNAVAILABLE, "the node
 * stopped") and retried as a new attempt. Task calls are at-least-once; their recorded
 * results, exactly once. */
#ifndef SERVICES_WF_ENGINE_H
#define SERVICES_WF_ENGINE_H
#include <semaphore.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "collector/worker.pb-c.h"
#include "io/reactor.h"
#include "services/svc.h"
#include "services/wf_data.h"
#include "store/wfstore.h"

#define WF_IDEMPOTENCY_KEY "idempotency_key"

typedef struct wf_limits {
	size_t max_active;	 /* workflows running at once on the node */
	size_t max_tasks;	 /* tasks per definition */
	size_t max_history;	 /* executions per workflow */
	size_t max_running;	 /* task calls in flight on the node */
	size_t per_workflow;	 /* task calls in flight per workflow */
	size_t max_defs;	 /* definitions and continuations kept */
	int64_t task_timeout_ns; /* the deadline of each task call */
	int64_t retention_us;	 /* ended workflows are deleted this long after; 0: never */
} wf_limits;

typedef struct wf_engine wf_engine;

/* Opens DATA/system/workflows.db and reads back what was running. err says why not. */
int wf_engine_open(const svc_env *env, const wf_limits *l, bool sync_normal, wf_engine **out,
		   char *err, size_t cap);
/* On every reactor's thread as it starts: the first runs the calls, and the engine starts. */
void wf_engine_start(wf_engine *e, reactor *r);
/* The reactor's shutdown began: the engine stops taking work (its thread ends; what it did
 * not commit, it did not act on) and the calls in flight are cancelled. */
void wf_engine_drain(wf_engine *e, reactor *r);
void wf_engine_free(wf_engine *e);
/* The store, for the RPCs' reads. */
wfstore *wf_engine_store(wf_engine *e);
const wf_limits *wf_engine_limits(wf_engine *e);

typedef enum {
	WF_REQ_REGISTER,
	WF_REQ_CONTINUATION,
	WF_REQ_START,
	WF_REQ_CANCEL,
	WF_REQ_PAUSE,
	WF_REQ_RESUME,
	WF_REQ_RESET
} wf_req_kind;

/* A request of an RPC, answered on its job after the engine committed it. Inputs are
 * borrowed from the call's request (valid while the job holds the call). */
typedef struct wf_req {
	struct wf_req *next;
	wf_req_kind kind;
	svc_job *j;  /* resumed when done (svc_job_fail on refusal); NULL: a waiter below */
	sem_t *done; /* without a job: posted when done, code and msg say how */
	int code;
	char msg[320];
	const char *ns;
	Collector__WorkflowDefinition *def; /* REGISTER: namespace and id are set here */
	Collector__Continuation *cont;	    /* CONTINUATION */
	const Collector__StartWorkflowRequest *start;
	const char *wf_id, *reason; /* CANCEL, PAUSE, RESUME */
	bool executions_only;	    /* RESET: the history of ended workflows only */
	/* out */
	char id[WF_ID_MAX];			       /* the workflow's or definition's id */
	int state;				       /* CANCEL: the workflow's state after it */
	int64_t deleted_workflows, deleted_executions; /* RESET */
} wf_req;

/* Pool thread, from a job's work: j must be deferred (svc_job_defer) first. */
void wf_engine_submit(wf_engine *e, wf_req *r);
/* Pool thread: deletes the workflows of ns (NULL: all; those running are cancelled) with
 * their history, or (executions_only) the history of those that ended; waits for the
 * commit. A gRPC code; err says why when not OK. */
int wf_engine_reset(wf_engine *e, const char *ns, bool executions_only, int64_t *workflows,
		    int64_t *executions, char *err, size_t cap);

#endif
