/* The reactor, on each backend (io_uring, then epoll: the same tests, the same
 * expectations). Its end: reactor_run returns once it was stopped and holds no connection
 * and no pool job, whatever came first; reactor_abort_all ends connections at once. Its
 * connections: bytes both ways, partial writes against a peer that reads slowly, output
 * delivered before a graceful close, EOF and resets from the peer with output pending,
 * closes from inside callbacks, outbound connects that succeed and fail, posted tasks. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/clock.h"
#include "base/container_of.h"
#include "io/pool.h"
#include "io/reactor.h"
#include "io/sock.h"

/* The backend of the group running: main runs every test on each. */
static reactor_io backend;

static reactor *reactor_or_fail(void)
{
	int err = 0;
	reactor *r = reactor_new_io(backend, &err);
	/* Each backend is asked for by name: where io_uring is forbidden, this fails loudly
	 * rather than testing epoll twice. */
	if (!r)
		fail_msg("reactor_new_io(%s) failed (%d)", reactor_io_name(backend), err);
	assert_int_equal(reactor_io_of(r), backend);
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

/* Runs turns until *done or the deadline (a failure). */
static void run_until(reactor *r, const bool *done, int64_t timeout_ns)
{
	int64_t end = clock_now_ns() + timeout_ns;
	while (!*done) {
		assert_true(clock_now_ns() < end);
		assert_int_equal(reactor_run_once(r, 10 * NS_PER_MS), 0);
	}
}

static void set_nonblock(int fd) { assert_int_equal(fcntl(fd, F_SETFL, O_NONBLOCK), 0); }

/* What the peer (a plain socket, this thread) read so far; with drain false it reads
 * nothing. */
typedef struct peer {
	int fd;
	uint8_t *got;
	size_t len, cap;
	bool eof;
} peer;

static void peer_read(peer *p)
{
	for (;;) {
		if (p->len == p->cap) {
			p->cap = p->cap ? 2 * p->cap : 1 << 16;
			p->got = realloc(p->got, p->cap);
			assert_non_null(p->got);
		}
		ssize_t n = read(p->fd, p->got + p->len, p->cap - p->len);
		if (n > 0) {
			p->len += (size_t)n;
			continue;
		}
		if (n == 0)
			p->eof = true;
		return;
	}
}

/* A connection's owner in these tests. */
typedef struct owner {
	reactor *r;
	reactor_conn *c;
	uint8_t *in;
	size_t in_len;
	bool closed, connected;
	int close_err, connect_err;
	/* What on_recv does: echo back; close or abort (returning <0) at the first byte;
	 * close then write; produce up to `produce_total` bytes in `chunk` pieces. */
	bool echo, close_in_recv, abort_in_recv, write_after_close;
	size_t produce_total, produced, chunk, produce_calls;
} owner;

static int owner_recv(reactor_conn *c, const uint8_t *data, size_t len)
{
	owner *o = reactor_conn_user(c);
	o->in = realloc(o->in, o->in_len + len);
	assert_non_null(o->in);
	memcpy(o->in + o->in_len, data, len);
	o->in_len += len;
	if (o->echo)
		assert_int_equal(reactor_conn_write(c, data, len), 0);
	if (o->close_in_recv) {
		reactor_conn_close(c);
		if (o->write_after_close)
			assert_int_equal(reactor_conn_write(c, "late", 4), 0);
	}
	if (o->abort_in_recv) {
		reactor_conn_abort(c, -EPROTO);
		return -EPROTO;
	}
	return 0;
}

static void owner_produce(reactor_conn *c)
{
	owner *o = reactor_conn_user(c);
	o->produce_calls++;
	static uint8_t block[64 * 1024];
	/* Like the h2 layer: fill up to a high-water mark, ask again when it drains. */
	while (o->produced < o->produce_total && reactor_conn_out_pending(c) < 256 * 1024) {
		size_t n = o->produce_total - o->produced;
		n = n < o->chunk ? n : o->chunk;
		for (size_t i = 0; i < n; i++)
			block[i] = (uint8_t)(o->produced + i);
		assert_int_equal(reactor_conn_write(c, block, n), 0);
		o->produced += n;
	}
	if (o->produced < o->produce_total)
		reactor_conn_want_send(c);
}

static void owner_connect(reactor_conn *c, int err)
{
	owner *o = reactor_conn_user(c);
	o->connected = err == 0;
	o->connect_err = err;
}

static void owner_close(reactor_conn *c, int err)
{
	owner *o = reactor_conn_user(c);
	o->closed = true;
	o->close_err = err;
}

static const reactor_conn_ops owner_ops = {.on_recv = owner_recv,
					   .produce = owner_produce,
					   .on_connect = owner_connect,
					   .on_close = owner_close};

/* A reactor connection on one end of a TCP pair over the loopback, the peer on the other
 * (TCP, not a socketpair: resets and the kernel's buffers as the node sees them). */
static void tcp_pair(int *ours, int *theirs)
{
	struct sockaddr_storage ss;
	socklen_t len;
	assert_int_equal(sock_parse_addr("127.0.0.1:0", &ss, &len), 0);
	int l = sock_listen((struct sockaddr *)&ss, len, 4);
	assert_true(l >= 0);
	((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)sock_local_port(l));
	int a = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(connect(a, (struct sockaddr *)&ss, len), 0);
	int b = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	assert_true(b >= 0);
	close(l);
	*ours = b;
	*theirs = a;
}

static void free_owner(owner *o) { free(o->in); }

static void test_echo_both_ways(void **state)
{
	(void)state;
	reactor *r = reactor_or_fail();
	int fd, pfd;
	tcp_pair(&fd, &pfd);
	owner o = {.r = r, .echo = true};
	o.c = reactor_conn_new(r, fd, &owner_ops, &o);
	assert_non_null(o.c);
	peer p = {.fd = pfd};
	set_nonblock(pfd);
	/* Many small messages, each answered before the next goes. */
	for (int i = 0; i < 200; i++) {
		char msg[32];
		int n = snprintf(msg, sizeof(msg), "message %d;", i);
		assert_int_equal(write(pfd, msg, (size_t)n), n);
		size_t want = p.len + (size_t)n;
		int64_t end = clock_now_ns() + 5 * NS_PER_SEC;
		while (p.len < want) {
			assert_true(clock_now_ns() < end);
			assert_int_equal(reactor_run_once(r, NS_PER_MS), 0);
			peer_read(&p);
		}
	}
	assert_int_equal(o.in_len, p.len);
	assert_memory_equal(o.in, p.got, p.len);
	assert_int_equal(reactor_conn_bytes_sent(o.c), p.len);
	/* The peer's EOF ends the connection, reported as a clean end. */
	close(pfd);
	run_until(r, &o.closed, 5 * NS_PER_SEC);
	assert_int_equal(o.close_err, 0);
	assert_int_equal(reactor_run_once(r, 0), 0);
	assert_int_equal(reactor_count_conns(r), 0);
	free(p.got);
	free_owner(&o);
	reactor_free(r);
}

/* More output than the kernel's buffers hold, against a peer that reads in bursts with
 * pauses: partial writes and EAGAIN on the way, produce() asked for more as output drains,
 * every byte delivered once and in order, then a graceful close after the last one. */
static void test_slow_reader_gets_every_byte_then_eof(void **state)
{
	(void)state;
	reactor *r = reactor_or_fail();
	int fd, pfd;
	tcp_pair(&fd, &pfd);
	/* A small receive window: the sender meets a full socket again and again. */
	int small = 16384;
	setsockopt(pfd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	owner o = {.r = r, .produce_total = 4 << 20, .chunk = 3000};
	o.c = reactor_conn_new(r, fd, &owner_ops, &o);
	reactor_conn_want_send(o.c);
	peer p = {.fd = pfd};
	set_nonblock(pfd);
	int64_t end = clock_now_ns() + 20 * NS_PER_SEC;
	bool close_asked = false;
	for (unsigned turn = 0; !p.eof; turn++) {
		assert_true(clock_now_ns() < end);
		assert_int_equal(reactor_run_once(r, 100 * 1000), 0);
		/* Read every third turn only: the reactor's output backs up meanwhile. */
		if (turn % 3 == 0)
			peer_read(&p);
		if (!close_asked && o.produced == o.produce_total) {
			reactor_conn_close(o.c);
			close_asked = true;
		}
		if (o.closed)
			peer_read(&p);
	}
	assert_int_equal(p.len, o.produce_total);
	for (size_t i = 0; i < p.len; i++)
		if (p.got[i] != (uint8_t)i)
			fail_msg("byte %zu is %u", i, p.got[i]);
	assert_true(o.produce_calls > 1);
	run_until(r, &o.closed, 5 * NS_PER_SEC);
	assert_int_equal(o.close_err, 0);
	close(pfd);
	free(p.got);
	free_owner(&o);
	reactor_free(r);
}

/* Asks c's owner to produce, and runs r until the kernel's buffers are full and output
 * waits in c (within 5 s). */
static void fill_until_output_waits(reactor *r, reactor_conn *c)
{
	reactor_conn_want_send(c);
	int64_t end = clock_now_ns() + 5 * NS_PER_SEC;
	while (reactor_conn_out_pending(c) < 128 * 1024) {
		assert_true(clock_now_ns() < end);
		assert_int_equal(reactor_run_once(r, NS_PER_MS), 0);
	}
}

/* The peer stops reading and sends EOF while output is pending: the connection ends
 * (EOF aborts it: nobody reads what is left), unsent output dropped. */
static void test_eof_with_output_pending_ends_the_conn(void **state)
{
	(void)state;
	reactor *r = reactor_or_fail();
	int fd, pfd;
	tcp_pair(&fd, &pfd);
	owner o = {.r = r, .produce_total = 64 << 20, .chunk = 65536};
	o.c = reactor_conn_new(r, fd, &owner_ops, &o);
	fill_until_output_waits(r, o.c);
	shutdown(pfd, SHUT_WR);
	run_until(r, &o.closed, 5 * NS_PER_SEC);
	assert_int_equal(o.close_err, 0);
	assert_true(o.produced < o.produce_total);
	assert_int_equal(reactor_run_once(r, 0), 0);
	assert_int_equal(reactor_count_conns(r), 0);
	close(pfd);
	free_owner(&o);
	reactor_free(r);
}

/* A reset from the peer (SO_LINGER 0) while our output is pending: an error, not a hang. */
static void test_peer_reset_with_output_pending(void **state)
{
	(void)state;
	reactor *r = reactor_or_fail();
	int fd, pfd;
	tcp_pair(&fd, &pfd);
	owner o = {.r = r, .produce_total = 64 << 20, .chunk = 65536};
	o.c = reactor_conn_new(r, fd, &owner_ops, &o);
	fill_until_output_waits(r, o.c);
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	setsockopt(pfd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(pfd);
	run_until(r, &o.closed, 5 * NS_PER_SEC);
	assert_true(o.close_err == -ECONNRESET || o.close_err == -EPIPE);
	assert_int_equal(reactor_run_once(r, 0), 0);
	assert_int_equal(reactor_count_conns(r), 0);
	free_owner(&o);
	reactor_free(r);
}

/* Closes and aborts from inside on_recv: the reactor frees the connection after the
 * callback, never under it; a close still sends what was written before it, and nothing
 * written after it is lost either (the close sends what is buffered). */
static void close_in_recv(bool abort, bool write_after)
{
	reactor *r = reactor_or_fail();
	int fd, pfd;
	tcp_pair(&fd, &pfd);
	owner o = {.r = r,
		   .echo = true,
		   .close_in_recv = !abort,
		   .abort_in_recv = abort,
		   .write_after_close = write_after};
	o.c = reactor_conn_new(r, fd, &owner_ops, &o);
	assert_int_equal(write(pfd, "hello", 5), 5);
	run_until(r, &o.closed, 5 * NS_PER_SEC);
	assert_int_equal(o.close_err, abort ? -EPROTO : 0);
	peer p = {.fd = pfd};
	set_nonblock(pfd);
	int64_t end = clock_now_ns() + 5 * NS_PER_SEC;
	while (!p.eof) {
		assert_true(clock_now_ns() < end);
		assert_int_equal(reactor_run_once(r, NS_PER_MS), 0);
		peer_read(&p);
	}
	if (abort) {
		assert_int_equal(p.len, 0);
	} else {
		const char *want = write_after ? "hellolate" : "hello";
		assert_int_equal(p.len, strlen(want));
		assert_memory_equal(p.got, want, p.len);
	}
	assert_int_equal(reactor_count_conns(r), 0);
	close(pfd);
	free(p.got);
	free_owner(&o);
	reactor_free(r);
}

static void test_close_in_recv(void **state)
{
	(void)state;
	close_in_recv(false, false);
	close_in_recv(false, true);
}

static void test_abort_in_recv(void **state)
{
	(void)state;
	close_in_recv(true, false);
}

typedef struct accepted {
	reactor *r;
	owner o;
	bool have;
} accepted;

static void on_accept(reactor *r, int fd, void *user)
{
	accepted *a = user;
	assert_false(a->have);
	a->have = true;
	a->o = (owner){.r = r, .echo = true};
	a->o.c = reactor_conn_new(r, fd, &owner_ops, &a->o);
	assert_non_null(a->o.c);
}

static const reactor_listener_ops accept_ops = {.on_accept = on_accept};

/* A listener and an outbound connection on the same reactor talk to each other; a connect
 * to a port nobody listens on fails through on_connect, then on_close. */
static void test_listen_connect_and_refused(void **state)
{
	(void)state;
	reactor *r = reactor_or_fail();
	struct sockaddr_storage ss;
	socklen_t len;
	assert_int_equal(sock_parse_addr("127.0.0.1:0", &ss, &len), 0);
	int l = sock_listen((struct sockaddr *)&ss, len, 16);
	assert_true(l >= 0);
	((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)sock_local_port(l));
	accepted a = {.r = r};
	assert_int_equal(reactor_listen(r, l, &accept_ops, &a), 0);

	owner out = {.r = r};
	out.c = reactor_conn_connect(r, (struct sockaddr *)&ss, len, &owner_ops, &out);
	assert_non_null(out.c);
	/* Written before the connect finished: sent once it has. */
	assert_int_equal(reactor_conn_write(out.c, "ping", 4), 0);
	int64_t end = clock_now_ns() + 5 * NS_PER_SEC;
	while (out.in_len < 4) {
		assert_true(clock_now_ns() < end);
		assert_int_equal(reactor_run_once(r, 10 * NS_PER_MS), 0);
	}
	assert_true(out.connected);
	assert_true(a.have);
	assert_memory_equal(out.in, "ping", 4);
	reactor_conn_close(out.c);
	run_until(r, &a.o.closed, 5 * NS_PER_SEC);
	run_until(r, &out.closed, 5 * NS_PER_SEC);

	/* Nobody listens there any more once the listeners are closed. */
	reactor_close_listeners(r);
	for (int i = 0; i < 5; i++)
		assert_int_equal(reactor_run_once(r, NS_PER_MS), 0);
	owner refused = {.r = r};
	refused.c = reactor_conn_connect(r, (struct sockaddr *)&ss, len, &owner_ops, &refused);
	assert_non_null(refused.c);
	run_until(r, &refused.closed, 5 * NS_PER_SEC);
	assert_false(refused.connected);
	assert_int_equal(refused.connect_err, -ECONNREFUSED);
	assert_int_equal(refused.close_err, -ECONNREFUSED);
	assert_int_equal(reactor_run_once(r, 0), 0);
	assert_int_equal(reactor_count_conns(r), 0);
	free_owner(&out);
	free_owner(&a.o);
	free_owner(&refused);
	reactor_free(r);
}

typedef struct posted {
	reactor_task t;
	reactor *r;
	int ran;
	bool done;
} posted;

static void on_posted(reactor_task *t)
{
	posted *p = container_of(t, posted, t);
	p->ran++;
	p->done = true;
}

static void *post_later(void *arg)
{
	posted *p = arg;
	struct timespec ts = {0, 50 * 1000 * 1000};
	nanosleep(&ts, NULL);
	reactor_post(p->r, &p->t);
	return NULL;
}

/* A task posted from another thread wakes a reactor that waits with no timer armed. */
static void test_post_wakes_the_loop(void **state)
{
	(void)state;
	reactor *r = reactor_or_fail();
	posted p = {.t = {.fn = on_posted}, .r = r};
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, post_later, &p), 0);
	int64_t start = clock_now_ns();
	while (!p.done) {
		assert_true(clock_now_ns() - start < 5 * NS_PER_SEC);
		assert_int_equal(reactor_run_once(r, 10 * NS_PER_SEC), 0);
	}
	/* Woken, not timed out. */
	assert_true(clock_now_ns() - start < 5 * NS_PER_SEC);
	assert_int_equal(p.ran, 1);
	pthread_join(th, NULL);
	reactor_free(r);
}

typedef struct fire_timer {
	timer t;
	bool fired;
} fire_timer;

static void timer_fired(timer *t) { container_of(t, fire_timer, t)->fired = true; }

/* A timer ends the wait on time, not later than the loop's timeout. */
static void test_timer_ends_the_wait(void **state)
{
	(void)state;
	reactor *r = reactor_or_fail();
	fire_timer tt = {0};
	int64_t start = clock_now_ns();
	assert_int_equal(reactor_timer_arm(r, &tt.t, reactor_now(r) + 30 * NS_PER_MS, timer_fired),
			 0);
	while (!tt.fired) {
		assert_true(clock_now_ns() - start < 5 * NS_PER_SEC);
		assert_int_equal(reactor_run_once(r, 10 * NS_PER_SEC), 0);
	}
	int64_t took = clock_now_ns() - start;
	assert_true(took >= 29 * NS_PER_MS);
	assert_true(took < 2 * NS_PER_SEC);
	reactor_free(r);
}

static void test_io_names(void **state)
{
	(void)state;
	reactor_io io;
	assert_int_equal(reactor_io_parse("epoll", &io), 0);
	assert_int_equal(io, REACTOR_IO_EPOLL);
	assert_int_equal(reactor_io_parse("uring", &io), 0);
	assert_int_equal(io, REACTOR_IO_URING);
	assert_int_equal(reactor_io_parse("auto", &io), 0);
	assert_int_equal(io, REACTOR_IO_AUTO);
	assert_int_equal(reactor_io_parse("kqueue", &io), -EINVAL);
	assert_int_equal(reactor_io_parse("", &io), -EINVAL);
}

/* Run under tests/tools/no_uring: the kernel refuses io_uring as a container would. */
static void test_auto_falls_back_where_uring_is_refused(void **state)
{
	(void)state;
	int err = 0;
	reactor *r = reactor_new_io(REACTOR_IO_URING, &err);
	assert_null(r);
	assert_int_equal(err, -EPERM);
	assert_true(reactor_io_refused(err));
	for (int i = 0; i < 2; i++) {
		/* The second time from the remembered refusal, without asking the kernel. */
		r = reactor_new_io(REACTOR_IO_AUTO, &err);
		assert_non_null(r);
		assert_int_equal(reactor_io_of(r), REACTOR_IO_EPOLL);
		reactor_free(r);
	}
	r = reactor_new(&err);
	assert_non_null(r);
	assert_int_equal(reactor_io_of(r), REACTOR_IO_EPOLL);
	reactor_free(r);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stop_when_idle_returns_at_once),
		cmocka_unit_test(test_run_waits_for_pool_jobs),
		cmocka_unit_test(test_run_waits_for_a_closing_connection),
		cmocka_unit_test(test_abort_all_ends_the_wait),
		cmocka_unit_test(test_echo_both_ways),
		cmocka_unit_test(test_slow_reader_gets_every_byte_then_eof),
		cmocka_unit_test(test_eof_with_output_pending_ends_the_conn),
		cmocka_unit_test(test_peer_reset_with_output_pending),
		cmocka_unit_test(test_close_in_recv),
		cmocka_unit_test(test_abort_in_recv),
		cmocka_unit_test(test_listen_connect_and_refused),
		cmocka_unit_test(test_post_wakes_the_loop),
		cmocka_unit_test(test_timer_ends_the_wait),
		cmocka_unit_test(test_io_names),
	};
	if (argc > 1 && !strcmp(argv[1], "--uring-refused")) {
		const struct CMUnitTest refused[] = {
			cmocka_unit_test(test_auto_falls_back_where_uring_is_refused),
		};
		backend = REACTOR_IO_EPOLL;
		return cmocka_run_group_tests_name("io_uring refused", refused, NULL, NULL) +
		       cmocka_run_group_tests_name("epoll", tests, NULL, NULL);
	}
	backend = REACTOR_IO_URING;
	int failed = cmocka_run_group_tests_name("io_uring", tests, NULL, NULL);
	backend = REACTOR_IO_EPOLL;
	failed += cmocka_run_group_tests_name("epoll", tests, NULL, NULL);
	return failed;
}
