/* A call's blocking work (SQLite, files, transcoding) run on the pool, its answer sent back
 * on the call's reactor. The work may also hand off to another thread (a collection's
 * writer) and the answer then waits for that thread's svc_job_resume.
 *
 * Cancellation: a call that ends first (client reset, deadline, shutdown) takes a job still
 * queued out of the queue (pool_job_cancel): svc_job_on_cancel is the on_cancel handler
 * to use. The answer of a job whose call ended is dropped, never written to a dead stream;
 * the job is released either way. */
#ifndef SERVICES_SVC_JOB_H
#define SERVICES_SVC_JOB_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "h2/call.h"
#include "io/pool.h"

typedef struct svc_job svc_job;
struct svc_job {
	pool_job pj; /* internal */
	call *c;
	/* Pool thread. Fails with svc_job_fail, or leaves the answer in the job. */
	void (*work)(svc_job *j);
	/* Reactor thread, when the call is alive and work did not fail: sends the answer.
	 * NULL: sends `out` (svc_job_answer) and finishes with OK. */
	void (*reply)(svc_job *j);
	/* Reactor thread, always, last: frees the job. */
	void (*release)(svc_job *j);
	int code; /* GRPC_OK unless svc_job_fail */
	char msg[320];
	uint8_t *out; /* the packed response (svc_job_answer); freed by the job */
	size_t out_len;

	/* internal: the hand-off */
	reactor_task resume_task;
	bool deferred, work_returned, resumed, holds_reactor;
};

/* Starts j for c (on c's reactor). On a full pool the call gets RESOURCE_EXHAUSTED, j is
 * released and -EAGAIN returned; j is released in every case, the caller must not touch
 * it after the call. */
int svc_job_run(pool *p, call *c, svc_job *j);
/* Work side: packs msg as the call's response (sent by the default reply). -ENOMEM. */
int svc_job_answer(svc_job *j, const ProtobufCMessage *msg);
/* Work side: the call's answer is this status. */
void svc_job_fail(svc_job *j, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Work side, before handing j to another thread: the answer waits for svc_job_resume. */
void svc_job_defer(svc_job *j);
/* Any thread, once, after svc_job_defer: the other thread is done with j. */
void svc_job_resume(svc_job *j);
/* on_cancel handler for methods whose calls run jobs. */
void svc_job_on_cancel(call *c);

#endif
