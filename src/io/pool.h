/* The bounded blocking pool: a fixed set of threads and a bounded queue for work that may
 * block (SQLite, files). A job's work runs on a pool thread; its done callback runs back on
 * the reactor that submitted it. A full queue is refused at once (-EAGAIN) so that callers
 * answer RESOURCE_EXHAUSTED instead of queueing without limit. The threads run under
 * SCHED_BATCH: a woken one waits for an idle core or the end of the running thread's
 * slice instead of preempting it (the reactor). */
#ifndef IO_POOL_H
#define IO_POOL_H
#include <stdbool.h>
#include <stddef.h>

#include "base/list.h"
#include "io/reactor.h"

typedef struct pool pool;
typedef struct pool_job pool_job;

struct pool_job {
	reactor_task task;     /* internal: carries the completion to the home reactor */
	list_node link;	       /* internal: the queue */
	pool *pool;	       /* internal */
	bool queued;	       /* internal, under the pool's lock */
	_Atomic int cancelled; /* internal: see pool_job_cancel */
	reactor *home;	       /* NULL: done runs on the pool thread right after work */
	void (*work)(pool_job *j);
	void (*done)(pool_job *j);
};

pool *pool_new(size_t threads, size_t queue_max);
/* Stops taking jobs, lets queued ones run, joins the threads. Done callbacks already
 * posted to reactors still arrive there. */
void pool_free(pool *p);
/* Queues j (caller keeps ownership of j until done runs). With a home reactor, call it
 * on that reactor's thread. 0, -EAGAIN when the queue is full, -ESHUTDOWN when the pool
 * is stopping. */
int pool_submit(pool *p, reactor *home, pool_job *j);
size_t pool_queued(pool *p);
/* Thread-safe, for a submitted job whose done has not run yet. A job still queued leaves
 * the queue at once and skips its work; its done still runs (later, as always: on the
 * home reactor, or here when it has none), where pool_job_cancelled tells it. A running
 * job only gets the flag, which long work may poll. So calls abandoned by their clients
 * free the queue instead of holding places in it. */
void pool_job_cancel(pool_job *j);
bool pool_job_cancelled(const pool_job *j);
/* Jobs taken out of the queue by pool_job_cancel so far. */
size_t pool_skipped(pool *p);

#endif
