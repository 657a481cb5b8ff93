/* The blocking pool: jobs run, a full queue is refused at once, pool_free drains what was
 * queued, and done callbacks come back on the submitting reactor's thread. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "base/clock.h"
#include "io/pool.h"
#include "io/reactor.h"

typedef struct job {
	pool_job j; /* first: the pool hands back this pointer */
	atomic_int worked, done;
	pthread_t work_thread, done_thread;
	atomic_bool done_after_work;
} job;

static pthread_t main_thread;

static void work_count(pool_job *pj)
{
	job *j = (job *)pj;
	j->work_thread = pthread_self();
	atomic_fetch_add(&j->worked, 1);
}

static void done_count(pool_job *pj)
{
	job *j = (job *)pj;
	j->done_thread = pthread_self();
	atomic_store(&j->done_after_work, atomic_load(&j->worked) == 1);
	atomic_fetch_add(&j->done, 1);
}

/* A gate that holds a pool worker until the test opens it. */
static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool entered, open;
} gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false};

static void gate_reset(void)
{
	pthread_mutex_lock(&gate.mu);
	gate.entered = gate.open = false;
	pthread_mutex_unlock(&gate.mu);
}

static void work_blocked(pool_job *pj)
{
	pthread_mutex_lock(&gate.mu);
	gate.entered = true;
	pthread_cond_broadcast(&gate.cv);
	while (!gate.open)
		pthread_cond_wait(&gate.cv, &gate.mu);
	pthread_mutex_unlock(&gate.mu);
	work_count(pj);
}

static void gate_wait_entered(void)
{
	pthread_mutex_lock(&gate.mu);
	while (!gate.entered)
		pthread_cond_wait(&gate.cv, &gate.mu);
	pthread_mutex_unlock(&gate.mu);
}

static void gate_open(void)
{
	pthread_mutex_lock(&gate.mu);
	gate.open = true;
	pthread_cond_broadcast(&gate.cv);
	pthread_mutex_unlock(&gate.mu);
}

static job *jobs_new(size_t n, void (*work)(pool_job *), void (*done)(pool_job *))
{
	job *v = calloc(n, sizeof(*v));
	assert_non_null(v);
	for (size_t i = 0; i < n; i++) {
		v[i].j.work = work;
		v[i].j.done = done;
	}
	return v;
}

static void test_jobs_run(void **state)
{
	(void)state;
	enum { N = 200 };
	pool *p = pool_new(4, N);
	assert_non_null(p);
	job *v = jobs_new(N, work_count, done_count);
	for (size_t i = 0; i < N; i++)
		assert_int_equal(pool_submit(p, NULL, &v[i].j), 0);
	pool_free(p);
	for (size_t i = 0; i < N; i++) {
		assert_int_equal(atomic_load(&v[i].worked), 1);
		assert_int_equal(atomic_load(&v[i].done), 1);
		assert_true(atomic_load(&v[i].done_after_work));
		/* Without a home reactor, done runs on the pool thread right after work. */
		assert_false(pthread_equal(v[i].work_thread, main_thread));
		assert_true(pthread_equal(v[i].done_thread, v[i].work_thread));
	}
	free(v);
}

static void test_no_done_callback(void **state)
{
	(void)state;
	pool *p = pool_new(2, 8);
	assert_non_null(p);
	job *v = jobs_new(8, work_count, NULL);
	for (size_t i = 0; i < 8; i++)
		assert_int_equal(pool_submit(p, NULL, &v[i].j), 0);
	pool_free(p);
	for (size_t i = 0; i < 8; i++)
		assert_int_equal(atomic_load(&v[i].worked), 1);
	free(v);
}

static void test_queue_full(void **state)
{
	(void)state;
	gate_reset();
	pool *p = pool_new(1, 2);
	assert_non_null(p);
	job *blocker = jobs_new(1, work_blocked, done_count);
	job *v = jobs_new(3, work_count, done_count);
	assert_int_equal(pool_submit(p, NULL, &blocker->j), 0);
	/* Once the only worker holds the blocker, the queue itself is empty again. */
	gate_wait_entered();
	assert_int_equal(pool_queued(p), 0);
	assert_int_equal(pool_submit(p, NULL, &v[0].j), 0);
	assert_int_equal(pool_submit(p, NULL, &v[1].j), 0);
	assert_int_equal(pool_queued(p), 2);
	assert_int_equal(pool_submit(p, NULL, &v[2].j), -EAGAIN);
	assert_int_equal(pool_queued(p), 2);
	gate_open();
	pool_free(p);
	assert_int_equal(atomic_load(&blocker->done), 1);
	assert_int_equal(atomic_load(&v[0].done), 1);
	assert_int_equal(atomic_load(&v[1].done), 1);
	assert_int_equal(atomic_load(&v[2].worked), 0);
	assert_int_equal(atomic_load(&v[2].done), 0);
	free(blocker);
	free(v);
}

/* A job cancelled while queued skips its work, yet its done still runs (to free what the
 * caller holds) and can see the cancellation; a job already running is not interrupted. */
static void test_cancel_skips_queued_work(void **state)
{
	(void)state;
	gate_reset();
	pool *p = pool_new(1, 8);
	assert_non_null(p);
	job *blocker = jobs_new(1, work_blocked, done_count);
	job *v = jobs_new(3, work_count, done_count);
	assert_int_equal(pool_submit(p, NULL, &blocker->j), 0);
	gate_wait_entered();
	for (size_t i = 0; i < 3; i++)
		assert_int_equal(pool_submit(p, NULL, &v[i].j), 0);
	pool_job_cancel(&v[0].j);
	pool_job_cancel(&v[2].j);
	pool_job_cancel(&blocker->j); /* running already: finishes normally */
	/* Out of the queue at once: their places are free for others. */
	assert_int_equal(pool_skipped(p), 2);
	assert_int_equal(pool_queued(p), 1);
	assert_int_equal(atomic_load(&v[0].done), 1);
	gate_open();
	pool_free(p);
	assert_int_equal(atomic_load(&blocker->done), 1);
	for (size_t i = 0; i < 3; i++)
		assert_int_equal(atomic_load(&v[i].done), 1);
	assert_int_equal(atomic_load(&v[0].worked), 0);
	assert_int_equal(atomic_load(&v[1].worked), 1);
	assert_int_equal(atomic_load(&v[2].worked), 0);
	assert_true(pool_job_cancelled(&v[0].j));
	assert_false(pool_job_cancelled(&v[1].j));
	free(blocker);
	free(v);
}

static void *free_pool_thread(void *arg)
{
	pool_free(arg);
	return NULL;
}

static void test_free_drains(void **state)
{
	(void)state;
	enum { N = 50, PROBES = 100000 };
	gate_reset();
	pool *p = pool_new(1, N + PROBES);
	assert_non_null(p);
	job *blocker = jobs_new(1, work_blocked, done_count);
	job *v = jobs_new(N, work_count, done_count);
	job *probes = jobs_new(PROBES, work_count, done_count);
	assert_int_equal(pool_submit(p, NULL, &blocker->j), 0);
	gate_wait_entered();
	for (size_t i = 0; i < N; i++)
		assert_int_equal(pool_submit(p, NULL, &v[i].j), 0);
	/* pool_free on another thread: it stops intake, then waits for the blocked worker.
	 * Submissions start failing with -ESHUTDOWN once it has stopped intake, while the
	 * N jobs are still queued behind the blocker. */
	pthread_t freer;
	assert_int_equal(pthread_create(&freer, NULL, free_pool_thread, p), 0);
	size_t accepted = 0;
	int rc;
	while ((rc = pool_submit(p, NULL, &probes[accepted].j)) == 0) {
		accepted++;
		assert_true(accepted < PROBES);
		sched_yield();
	}
	assert_int_equal(rc, -ESHUTDOWN);
	for (size_t i = 0; i < N; i++)
		assert_int_equal(atomic_load(&v[i].worked), 0);
	gate_open();
	pthread_join(freer, NULL);
	for (size_t i = 0; i < N; i++)
		assert_int_equal(atomic_load(&v[i].done), 1);
	for (size_t i = 0; i < accepted; i++)
		assert_int_equal(atomic_load(&probes[i].done), 1);
	assert_int_equal(atomic_load(&probes[accepted].worked), 0);
	free(blocker);
	free(v);
	free(probes);
}

static void test_home_reactor(void **state)
{
	(void)state;
	int err = 0;
	reactor *r = reactor_new(&err);
	/* AUTO: io_uring, or epoll where it is refused (test_pool_epoll); neither is a failure. */
	if (!r)
		fail_msg("reactor_new failed (%d)", err);
	enum { N = 100 };
	pool *p = pool_new(4, N);
	assert_non_null(p);
	job *v = jobs_new(N, work_count, done_count);
	for (size_t i = 0; i < N; i++)
		assert_int_equal(pool_submit(p, r, &v[i].j), 0);
	/* Bounded: 100 turns of at most 100 ms, far more than the jobs need. */
	size_t finished = 0;
	for (int turn = 0; turn < 100 && finished < N; turn++) {
		assert_int_equal(reactor_run_once(r, 100 * NS_PER_MS), 0);
		finished = 0;
		for (size_t i = 0; i < N; i++)
			finished += (size_t)atomic_load(&v[i].done);
	}
	assert_int_equal(finished, N);
	for (size_t i = 0; i < N; i++) {
		assert_int_equal(atomic_load(&v[i].done), 1);
		assert_true(atomic_load(&v[i].done_after_work));
		assert_false(pthread_equal(v[i].work_thread, main_thread));
		assert_true(pthread_equal(v[i].done_thread, main_thread));
	}
	pool_free(p);
	reactor_free(r);
	free(v);
}

int main(void)
{
	main_thread = pthread_self();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_jobs_run),    cmocka_unit_test(test_no_done_callback),
		cmocka_unit_test(test_queue_full),  cmocka_unit_test(test_cancel_skips_queued_work),
		cmocka_unit_test(test_free_drains), cmocka_unit_test(test_home_reactor),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
