#include "io/pool.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdlib.h>

#include "base/bufpool.h"
#include "base/mem.h"

struct pool {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	list_node queue;
	size_t queued, queue_max;
	bool stopping;
	size_t skipped;
	size_t nthreads;
	pthread_t *threads;
};

static void complete(reactor_task *t)
{
	pool_job *j = container_of(t, pool_job, task);
	reactor_job_end(j->home);
	if (j->done)
		j->done(j);
}

/* Done goes home to the reactor, or runs right here without one. */
static void finish(pool_job *j)
{
	if (j->home) {
		j->task.fn = complete;
		reactor_post(j->home, &j->task);
	} else if (j->done) {
		j->done(j);
	}
}

static void queue_unlink(pool *p, pool_job *j)
{
	list_remove(&j->link);
	j->queued = false;
	p->queued--;
}

/* What a pool thread keeps of the buffer pool (base/bufpool.h). */
#define POOL_THREAD_CACHE_BYTES ((size_t)1 << 20)

static void *pool_main(void *arg)
{
	pool *p = arg;
	/* Batch threads do not preempt the reactor when woken: it hands over every request
	 * of a read before a pool thread runs, and the pool then works through them in one
	 * go. Without it each submit could switch threads twice, the larger part of a short
	 * read's cost when reactor and pool share a core. */
	struct sched_param sp = {0};
	pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);
	/* Buffers a reactor made and a job freed would sit in this thread's cache unused. */
	bufpool_thread_limit(POOL_THREAD_CACHE_BYTES);
	for (;;) {
		pthread_mutex_lock(&p->mu);
		while (list_empty(&p->queue) && !p->stopping)
			pthread_cond_wait(&p->cv, &p->mu);
		if (list_empty(&p->queue)) {
			pthread_mutex_unlock(&p->mu);
			return NULL;
		}
		pool_job *j = container_of(p->queue.next, pool_job, link);
		queue_unlink(p, j);
		pthread_mutex_unlock(&p->mu);

		j->work(j);
		finish(j);
	}
}

pool *pool_new(size_t threads, size_t queue_max)
{
	pool *p = mem_calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	list_init(&p->queue);
	p->queue_max = queue_max ? queue_max : 1;
	p->threads = mem_calloc(threads ? threads : 1, sizeof(pthread_t));
	if (!p->threads) {
		mem_free(p);
		return NULL;
	}
	for (size_t i = 0; i < (threads ? threads : 1); i++) {
		if (pthread_create(&p->threads[i], NULL, pool_main, p) != 0)
			break;
		p->nthreads++;
	}
	if (!p->nthreads) {
		pool_free(p);
		return NULL;
	}
	return p;
}

void pool_free(pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stopping = true;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	for (size_t i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
	mem_free(p->threads);
	mem_free(p);
}

int pool_submit(pool *p, reactor *home, pool_job *j)
{
	j->home = home;
	j->pool = p;
	j->cancelled = 0;
	pthread_mutex_lock(&p->mu);
	int rc = 0;
	if (p->stopping)
		rc = -ESHUTDOWN;
	else if (p->queued >= p->queue_max)
		rc = -EAGAIN;
	if (rc == 0) {
		if (home)
			reactor_job_begin(home);
		list_push_back(&p->queue, &j->link);
		j->queued = true;
		p->queued++;
		pthread_cond_signal(&p->cv);
	}
	pthread_mutex_unlock(&p->mu);
	return rc;
}

size_t pool_queued(pool *p)
{
	pthread_mutex_lock(&p->mu);
	size_t n = p->queued;
	pthread_mutex_unlock(&p->mu);
	return n;
}

void pool_job_cancel(pool_job *j)
{
	pool *p = j->pool;
	j->cancelled = 1;
	pthread_mutex_lock(&p->mu);
	bool was_queued = j->queued;
	if (was_queued) {
		queue_unlink(p, j);
		p->skipped++;
	}
	pthread_mutex_unlock(&p->mu);
	if (was_queued)
		finish(j);
}
bool pool_job_cancelled(const pool_job *j) { return j->cancelled != 0; }

size_t pool_skipped(pool *p)
{
	pthread_mutex_lock(&p->mu);
	size_t n = p->skipped;
	pthread_mutex_unlock(&p->mu);
	return n;
}
