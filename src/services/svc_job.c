#include "services/svc_job.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/container_of.h"
#include "base/mem.h"

/* Reactor thread: answer (if anyone still listens) and let go. */
static void job_finish(svc_job *j)
{
	call *c = j->c;
	call_set_user(c, NULL);
	if (!call_done(c)) {
		if (j->code != GRPC_OK) {
			call_finish(c, j->code, j->msg);
		} else if (j->reply) {
			j->reply(j);
		} else {
			call_reply_raw(c, j->out, j->out_len);
		}
	}
	call_unref(c);
	mem_free(j->out);
	j->out = NULL;
	j->release(j);
}

static void job_work(pool_job *pj)
{
	svc_job *j = container_of(pj, svc_job, pj);
	j->work(j);
}

/* Both the pool's completion and the resume arrive on the reactor, in either order: the
 * second one finishes. */
static void job_pool_done(pool_job *pj)
{
	svc_job *j = container_of(pj, svc_job, pj);
	j->work_returned = true;
	if (j->deferred && !j->resumed) {
		/* The reactor must not stop while the other thread still holds j. */
		reactor_job_begin(call_reactor(j->c));
		j->holds_reactor = true;
		return;
	}
	job_finish(j); /* a job cancelled in the queue never ran: its call is over anyway */
}

static void job_resumed(reactor_task *t)
{
	svc_job *j = container_of(t, svc_job, resume_task);
	j->resumed = true;
	if (!j->work_returned)
		return;
	if (j->holds_reactor)
		reactor_job_end(call_reactor(j->c));
	job_finish(j);
}

int svc_job_run(pool *p, call *c, svc_job *j)
{
	j->c = c;
	j->code = GRPC_OK;
	j->pj.work = job_work;
	j->pj.done = job_pool_done;
	call_ref(c);
	call_set_user(c, j);
	int rc = pool_submit(p, call_reactor(c), &j->pj);
	if (rc) {
		svc_job_fail(j, GRPC_RESOURCE_EXHAUSTED,
			     "the node is busy: its work queue is full");
		job_finish(j);
		return -EAGAIN;
	}
	return 0;
}

int svc_job_answer(svc_job *j, const ProtobufCMessage *msg)
{
	size_t n = protobuf_c_message_get_packed_size(msg);
	mem_free(j->out);
	j->out = mem_alloc(n ? n : 1);
	if (!j->out) {
		svc_job_fail(j, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return -ENOMEM;
	}
	j->out_len = protobuf_c_message_pack(msg, j->out);
	return 0;
}

void svc_job_fail(svc_job *j, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(j->msg, sizeof(j->msg), fmt, ap);
	va_end(ap);
	j->code = code;
}

void svc_job_defer(svc_job *j) { j->deferred = true; }

void svc_job_resume(svc_job *j)
{
	j->resume_task.fn = job_resumed;
	reactor_post(call_reactor(j->c), &j->resume_task);
}

void svc_job_on_cancel(call *c)
{
	svc_job *j = call_user(c);
	if (j)
		pool_job_cancel(&j->pj);
}
