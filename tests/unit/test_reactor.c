/* The reactor's end: reactor_run returns once it was stopped and holds no connection and
 * no pool job, whatever came first; reactor_abort_all ends connections at once. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/clock.h"
#include "base/container_of.h"
#include "io/pool.h"
#include "io/reactor.h"

static reactor *reactor_or_fail(void)
{
	int err = 0;
	reactor *r = reactor_new(&err);
	/* The node cannot run without io_uring either: where it is forbidden, fail loudly. */
	if (!r)
		fail_msg("reactor_new failed (%d): io_uring unavailable", err);
	return r;
}

static void test_stop_when_idle_returns_at_once(void **state)
{
	(void)state;
	reactor *r = reactor_or_fail();
	reactor_stop(r);
	assert_int_equal(reactor_run(r), 0);
	reactor_free(r);
}

typedef struct slow_job {
	pool_job j; /* first: the pool hands back this pointer */
	bool done;
} slow_job;

static void slow_work(pool_job *pj)
{
	(void)pj;
	struct timespec ts = {0, 200 * 1000 * 1000};
	nanosleep(&ts, NULL);
}

static void slow_done(pool_job *pj) { ((slow_job *)pj)->done = true; }

static void test_run_waits_for_pool_jobs(void **state)
{
	(void)state;
	reactor *r = reactor_or_fail();
	pool *p = pool_new(1, 4);
	assert_non_null(p);
	slow_job j = {.j = {.work = slow_work, .done = slow_done}};
	assert_int_equal(pool_submit(p, r, &j.j), 0);
	reactor_stop(r);
	assert_int_equal(reactor_run(r), 0);
	/* Returning earlier would have left the completion to land on a freed reactor. */
	assert_true(j.done);
	assert_int_equal(reactor_jobs_pending(r), 0);
	pool_free(p);
	reactor_free(r);
}

typedef struct conn_state {
	reactor *r;
	reactor_conn *c;
	timer t;
	bool closed;
	bool abort; /* the timer aborts every connection instead of closing this one */
} conn_state;

static int ignore_recv(reactor_conn *c, const uint8_t *data, size_t len)
{
	(void)c;
	(void)data;
	(void)len;
	return 0;
}

static void note_close(reactor_conn *c, int err)
{
	(void)err;
	conn_state *s = reactor_conn_user(c);
	s->closed = true;
}

static const reactor_conn_ops conn_ops = {.on_recv = ignore_recv, .on_close = note_close};

static void end_conn(timer *t)
{
	conn_state *s = container_of(t, conn_state, t);
	if (s->abort)
		reactor_abort_all(s->r, -ECANCELED);
	else
		reactor_conn_close(s->c);
}

/* A stopped reactor with a connection runs on until the connection is gone. */
static void run_until_conn_ends(bool abort)
{
	reactor *r = reactor_or_fail();
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	conn_state s = {.r = r, .abort = abort};
	s.c = reactor_conn_new(r, sv[0], &conn_ops, &s);
	assert_non_null(s.c);
	reactor_timer_arm(r, &s.t, reactor_now(r) + 100 * NS_PER_MS, end_conn);
	reactor_stop(r);
	assert_int_equal(reactor_run(r), 0);
	assert_true(s.closed);
	assert_int_equal(reactor_count_conns(r), 0);
	close(sv[1]);
	reactor_free(r);
}

static void test_run_waits_for_a_closing_connection(void **state)
{
	(void)state;
	run_until_conn_ends(false);
}

static void test_abort_all_ends_the_wait(void **state)
{
	(void)state;
	run_until_conn_ends(true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stop_when_idle_returns_at_once),
		cmocka_unit_test(test_run_waits_for_pool_jobs),
		cmocka_unit_test(test_run_waits_for_a_closing_connection),
		cmocka_unit_test(test_abort_all_ends_the_wait),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
