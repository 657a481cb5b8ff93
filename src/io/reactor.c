/* The reactor's common part: connections and their output, TLS under them, listeners,
 * timers, posted tasks and the loop turn. The backend (reactor_uring.c, reactor_epoll.c)
 * moves the bytes; every decision on what its reports mean is taken here, once. */
#include "io/reactor.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/mem.h"
#include "io/reactor_impl.h"
#include "io/tls.h"

/* Output buffers come in blocks cached per reactor: a connection holds one only while it
 * has output, so an idle connection costs no buffer memory and a busy one no malloc. */
#define OUT_BLOCK (16 * 1024)
#define OUT_FREE_MAX 256

/* After accept fails for lack of descriptors or memory, wait this long before trying
 * again instead of spinning on the same error. */
#define ACCEPT_RETRY_NS (100 * NS_PER_MS)

static void mark_dirty(reactor_conn *c);
static void pending_take_block(reactor_conn *c);

int reactor_io_parse(const char *s, reactor_io *out)
{
	static const reactor_io all[] = {REACTOR_IO_AUTO, REACTOR_IO_URING, REACTOR_IO_EPOLL};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		if (!strcmp(s, reactor_io_name(all[i]))) {
			*out = all[i];
			return 0;
		}
	return -EINVAL;
}

const char *reactor_io_name(reactor_io io)
{
	switch (io) {
	case REACTOR_IO_URING:
		return "uring";
	case REACTOR_IO_EPOLL:
		return "epoll";
	case REACTOR_IO_AUTO:
		break;
	}
	return "auto";
}

bool reactor_io_refused(int err) { return err == -EPERM || err == -ENOSYS || err == -EACCES; }

static reactor *reactor_make(const reactor_backend *be, int *err)
{
	reactor *r = mem_calloc(1, be->reactor_size);
	if (!r) {
		*err = -ENOMEM;
		return NULL;
	}
	r->be = be;
	list_init(&r->conns);
	timer_heap_init(&r->timers);
	pthread_mutex_init(&r->post_mu, NULL);
	r->now = clock_now_ns();
	r->wake_fd = eventfd(0, EFD_CLOEXEC);
	int rc = r->wake_fd < 0 ? -errno : be->init(r);
	if (rc < 0) {
		*err = rc;
		reactor_free(r);
		return NULL;
	}
	return r;
}

/* Set once io_uring was refused under AUTO: the next reactors go to epoll at once, and the
 * log says it once. */
static atomic_bool uring_refused;

reactor *reactor_new_io(reactor_io io, int *err)
{
	int rc = 0;
	reactor *r = NULL;
	if (io == REACTOR_IO_EPOLL || (io == REACTOR_IO_AUTO && atomic_load(&uring_refused))) {
		r = reactor_make(&reactor_backend_epoll, &rc);
	} else {
		r = reactor_make(&reactor_backend_uring, &rc);
		if (!r && io == REACTOR_IO_AUTO && reactor_io_refused(rc)) {
			if (!atomic_exchange(&uring_refused, true))
				log_warn(
					"io_uring is refused here (%s: a seccomp profile or sysctl "
					"kernel.io_uring_disabled): running on epoll",
					strerror(-rc));
			r = reactor_make(&reactor_backend_epoll, &rc);
		}
	}
	/* *err is left alone on success, as callers that start from 0 expect. */
	if (!r && err)
		*err = rc;
	return r;
}

reactor *reactor_new(int *err) { return reactor_new_io(REACTOR_IO_AUTO, err); }

reactor_io reactor_io_of(const reactor *r) { return r->be->io; }

static void out_release(reactor *r, out_buf *o)
{
	if (o->b.data && o->b.cap == OUT_BLOCK && r->nout_free < OUT_FREE_MAX) {
		*(void **)o->b.data = r->out_free;
		r->out_free = o->b.data;
		r->nout_free++;
	} else {
		buf_free(&o->b);
	}
	*o = (out_buf){.b = BUF_INIT};
}

static void conn_free(reactor_conn *c)
{
	reactor *r = c->r;
	list_remove(&c->link);
	r->nconns--;
	out_release(r, &c->pending);
	out_release(r, &c->inflight);
	tls_conn_free(c->tls);
	buf_free(&c->plain);
	mem_free(c);
}

void reactor_free(reactor *r)
{
	if (!r)
		return;
	while (!list_empty(&r->conns)) {
		reactor_conn *c = container_of(r->conns.next, reactor_conn, link);
		if (c->fd >= 0) {
			r->be->release(c);
			close(c->fd);
		}
		if (!c->dead && c->ops->on_close)
			c->ops->on_close(c, -ECANCELED);
		conn_free(c);
	}
	for (listener *l = r->listeners, *next; l; l = next) {
		next = l->next;
		if (l->fd >= 0)
			close(l->fd);
		mem_free(l);
	}
	while (r->out_free) {
		void *next = *(void **)r->out_free;
		mem_free(r->out_free);
		r->out_free = next;
	}
	r->be->fini(r);
	if (r->wake_fd >= 0)
		close(r->wake_fd);
	timer_heap_free(&r->timers);
	pthread_mutex_destroy(&r->post_mu);
	mem_free(r);
}

static void retry_accept(timer *t)
{
	listener *l = container_of(t, listener, retry);
	if (!l->closed)
		l->r->be->accept(l->r, l);
}

int reactor_listen(reactor *r, int fd, const reactor_listener_ops *ops, void *user)
{
	listener *l = mem_calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->fd = fd;
	l->r = r;
	l->ops = ops;
	l->user = user;
	l->next = r->listeners;
	r->listeners = l;
	r->be->accept(r, l);
	return 0;
}

void reactor_close_listeners(reactor *r)
{
	for (listener *l = r->listeners; l; l = l->next) {
		if (l->closed)
			continue;
		l->closed = true;
		if (timer_armed(&l->retry)) {
			/* Waiting to retry: no accept is armed to cancel. */
			timer_disarm(&r->timers, &l->retry);
			close(l->fd);
			l->fd = -1;
			continue;
		}
		r->be->accept_cancel(r, l);
	}
}

void reactor_on_accept(reactor *r, listener *l, int res, bool more)
{
	if (res >= 0 && l->closed) {
		close(res);
	} else if (res >= 0) {
		int one = 1;
		setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		l->ops->on_accept(r, res, l->user);
	}
	if (more)
		return;
	bool starved = res == -EMFILE || res == -ENFILE || res == -ENOBUFS || res == -ENOMEM;
	if (l->closed) {
		if (l->fd >= 0)
			close(l->fd);
		l->fd = -1;
	} else if (starved) {
		timer_arm(&r->timers, &l->retry, r->now + ACCEPT_RETRY_NS, retry_accept);
	} else {
		r->be->accept(r, l);
	}
}

static reactor_conn *conn_alloc(reactor *r, int fd, const reactor_conn_ops *ops, void *user)
{
	reactor_conn *c = mem_calloc(1, r->be->conn_size);
	if (!c)
		return NULL;
	c->r = r;
	c->fd = fd;
	c->ops = ops;
	c->user = user;
	list_push_front(&r->conns, &c->link);
	r->nconns++;
	return c;
}

reactor_conn *reactor_conn_new(reactor *r, int fd, const reactor_conn_ops *ops, void *user)
{
	reactor_conn *c = conn_alloc(r, fd, ops, user);
	if (c)
		r->be->recv(c);
	return c;
}

reactor_conn *reactor_conn_connect(reactor *r, const struct sockaddr *addr, socklen_t len,
				   const reactor_conn_ops *ops, void *user)
{
	int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return NULL;
	reactor_conn *c = conn_alloc(r, fd, ops, user);
	if (!c) {
		close(fd);
		return NULL;
	}
	if (len > sizeof(c->peer)) {
		conn_free(c);
		close(fd);
		return NULL;
	}
	memcpy(&c->peer, addr, len);
	if (r->be->connect(c, len)) {
		conn_free(c);
		close(fd);
		return NULL;
	}
	return c;
}

int reactor_conn_set_tls(reactor_conn *c, tls_conn *t, bool client)
{
	c->tls = t;
	if (!client)
		return 0;
	pending_take_block(c);
	int rc = tls_conn_start(t, &c->pending.b);
	mark_dirty(c);
	return rc;
}

tls_conn *reactor_conn_tls(const reactor_conn *c) { return c->tls; }

void *reactor_conn_user(reactor_conn *c) { return c->user; }
void reactor_conn_set_user(reactor_conn *c, void *user) { c->user = user; }
uint64_t reactor_conn_bytes_sent(const reactor_conn *c) { return c->bytes_sent; }

size_t reactor_conn_out_pending(reactor_conn *c)
{
	return c->plain.len + (c->pending.b.len - c->pending.off) +
	       (c->inflight.b.len - c->inflight.off);
}

static void mark_dirty(reactor_conn *c)
{
	if (c->on_dirty_list)
		return;
	c->on_dirty_list = true;
	c->dirty_next = c->r->dirty;
	c->r->dirty = c;
}

/* Readies the pending buffer for output: a cached block when it has none. */
static void pending_take_block(reactor_conn *c)
{
	buf *b = &c->pending.b;
	if (!b->data && c->r->out_free) {
		b->data = c->r->out_free;
		c->r->out_free = *(void **)b->data;
		c->r->nout_free--;
		b->cap = OUT_BLOCK;
	}
}

int reactor_conn_write(reactor_conn *c, const void *data, size_t len)
{
	if (c->close_now)
		return 0;
	if (c->tls) {
		/* Encrypted in one go when the output is flushed: fewer, fuller records. */
		int rc = buf_append(&c->plain, data, len);
		if (!rc)
			mark_dirty(c);
		return rc;
	}
	buf *b = &c->pending.b;
	if (len <= OUT_BLOCK)
		pending_take_block(c);
	/* A new buffer is at least a block, which the cache takes back when sent. */
	int rc = buf_reserve(b, !b->cap && len < OUT_BLOCK ? OUT_BLOCK : len);
	if (rc)
		return rc;
	buf_append(b, data, len);
	mark_dirty(c);
	return 0;
}

void reactor_conn_want_send(reactor_conn *c)
{
	c->want_send = true;
	/* With a send in flight, its completion asks for the output: producing now would
	 * only find the buffer full again and spin. */
	if (!c->send_inflight)
		mark_dirty(c);
}

void reactor_conn_close(reactor_conn *c)
{
	c->closing = true;
	mark_dirty(c);
}

void reactor_conn_abort(reactor_conn *c, int err)
{
	if (!c->close_now)
		c->close_err = err;
	c->closing = c->close_now = true;
	mark_dirty(c);
}

void reactor_finish_close(reactor_conn *c)
{
	if (c->recv_armed || c->send_inflight || c->connect_inflight)
		return;
	if (c->dead)
		return;
	c->dead = true;
	c->r->be->release(c);
	close(c->fd);
	c->fd = -1;
	if (c->ops->on_close)
		c->ops->on_close(c, c->close_err);
	/* Freed by flush_dirty, so that no caller up the stack holds a dangling c. */
	mark_dirty(c);
}

static void begin_shutdown(reactor_conn *c)
{
	/* On io_uring, shutdown() ends the armed multishot recv with a 0-byte completion. */
	if (c->fd >= 0) {
		shutdown(c->fd, SHUT_RDWR);
		c->r->be->shutdown(c);
	}
	reactor_finish_close(c);
}

/* Pending output goes to the backend when nothing is in flight: what a backend's send
 * took of pending already (epoll's writev) stays counted in its off. */
static void start_send(reactor_conn *c)
{
	if (c->pending.off == c->pending.b.len) {
		buf_reset(&c->pending.b);
		c->pending.off = 0;
		return;
	}
	out_buf tmp = c->inflight;
	c->inflight = c->pending;
	c->pending = tmp;
	buf_reset(&c->pending.b);
	c->pending.off = 0;
	c->r->be->send(c);
}

static void flush_conn(reactor_conn *c)
{
	if (c->dead || c->connect_inflight)
		return;
	if (!c->close_now && c->want_send && c->ops->produce) {
		c->want_send = false;
		c->ops->produce(c);
	}
	if (c->tls && !c->close_now && c->plain.len) {
		pending_take_block(c);
		int rc = tls_conn_send(c->tls, c->plain.data, c->plain.len, &c->pending.b);
		buf_reset(&c->plain);
		if (rc)
			reactor_conn_abort(c, rc);
	}
	if (c->tls && c->closing && !c->close_now && !c->tls_closed) {
		c->tls_closed = true;
		pending_take_block(c);
		tls_conn_shutdown(c->tls, &c->pending.b);
	}
	if (!c->close_now && !c->send_inflight && c->pending.b.len)
		start_send(c);
	if (c->closing && (c->close_now || (!c->send_inflight && !c->pending.b.len)))
		begin_shutdown(c);
}

static void flush_dirty(reactor *r)
{
	while (r->dirty) {
		reactor_conn *c = r->dirty;
		r->dirty = c->dirty_next;
		c->on_dirty_list = false;
		if (c->dead)
			conn_free(c);
		else
			flush_conn(c);
	}
}

static int tls_deliver(void *arg, const uint8_t *p, size_t n)
{
	reactor_conn *c = arg;
	return c->closing ? 0 : c->ops->on_recv(c, p, n);
}

/* Ciphertext in: plaintext to the owner, TLS's own answers (handshake) out. */
static int tls_recv(reactor_conn *c, const uint8_t *data, size_t len)
{
	char err[240];
	pending_take_block(c);
	size_t before = c->pending.b.len;
	int rc = tls_conn_recv(c->tls, data, len, tls_deliver, c, &c->pending.b, err, sizeof(err));
	if (c->pending.b.len != before)
		mark_dirty(c);
	if (rc == -EPROTO) {
		/* Not TLS, or a failed handshake: its alert goes out before the close. */
		log_debug("tls: %s", err);
		c->close_err = rc;
		reactor_conn_close(c);
		return 0;
	}
	return rc;
}

void reactor_on_recv(reactor_conn *c, const uint8_t *data, size_t len)
{
	if (c->closing)
		return;
	int rc = c->tls ? tls_recv(c, data, len) : c->ops->on_recv(c, data, len);
	if (rc < 0)
		reactor_conn_abort(c, rc);
}

void reactor_on_recv_end(reactor_conn *c, int res)
{
	/* EOF or error: the peer is gone. */
	if (!c->closing)
		reactor_conn_abort(c, res);
	reactor_finish_close(c);
}

void reactor_on_sent(reactor_conn *c, ssize_t res)
{
	c->send_inflight = false;
	if (res < 0) {
		reactor_conn_abort(c, (int)res);
		reactor_finish_close(c);
		return;
	}
	c->bytes_sent += (uint64_t)res;
	out_buf *o = &c->inflight;
	size_t n = (size_t)res, in = o->b.len - o->off;
	o->off += n < in ? n : in;
	c->pending.off += n < in ? 0 : n - in;
	if (o->off < o->b.len && !c->close_now) {
		c->r->be->send(c);
		return;
	}
	out_release(c->r, o);
	if (c->pending.b.len || c->want_send || c->closing)
		mark_dirty(c);
	if (c->close_now)
		reactor_finish_close(c);
}

void reactor_on_connected(reactor_conn *c, int res)
{
	c->connect_inflight = false;
	if (res < 0) {
		c->close_err = res;
		c->closing = c->close_now = true;
		if (c->ops->on_connect)
			c->ops->on_connect(c, res);
		reactor_finish_close(c);
		return;
	}
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->r->be->recv(c);
	if (c->ops->on_connect)
		c->ops->on_connect(c, 0);
	if (c->pending.b.len || c->want_send || c->closing)
		mark_dirty(c);
}

void reactor_on_wake(reactor *r)
{
	pthread_mutex_lock(&r->post_mu);
	reactor_task *t = r->post_head;
	r->post_head = r->post_tail = NULL;
	r->wake_pending = false;
	pthread_mutex_unlock(&r->post_mu);
	while (t) {
		reactor_task *next = t->next;
		t->fn(t);
		t = next;
	}
}

int reactor_run_once(reactor *r, int64_t timeout_ns)
{
	flush_dirty(r);
	int64_t next = timer_next(&r->timers);
	int64_t now = clock_now_ns();
	if (next != INT64_MAX && next - now < timeout_ns)
		timeout_ns = next > now ? next - now : 0;
	int rc = r->be->poll(r, timeout_ns);
	if (rc < 0)
		return rc;
	timer_run(&r->timers, r->now);
	flush_dirty(r);
	return 0;
}

int reactor_run(reactor *r)
{
	/* Every way out of busy (a connection freed, a job's completion) happens during a
	 * turn, so checking between turns is enough. */
	while (!r->stopping || r->nconns || r->jobs_pending) {
		int rc = reactor_run_once(r, 3600 * NS_PER_SEC);
		if (rc < 0)
			return rc;
	}
	return 0;
}

void reactor_stop(reactor *r) { r->stopping = true; }

void reactor_abort_all(reactor *r, int err)
{
	list_each (it, &r->conns) {
		reactor_conn *c = container_of(it, reactor_conn, link);
		if (!c->dead)
			reactor_conn_abort(c, err);
	}
}

void reactor_post(reactor *r, reactor_task *t)
{
	t->next = NULL;
	pthread_mutex_lock(&r->post_mu);
	if (r->post_tail)
		r->post_tail->next = t;
	else
		r->post_head = t;
	r->post_tail = t;
	bool wake = !r->wake_pending;
	r->wake_pending = true;
	pthread_mutex_unlock(&r->post_mu);
	if (wake) {
		uint64_t one = 1;
		ssize_t n = write(r->wake_fd, &one, sizeof(one));
		(void)n;
	}
}

int64_t reactor_now(reactor *r) { return r->now; }
int reactor_timer_arm(reactor *r, timer *t, int64_t deadline_ns, timer_fn fn)
{
	return timer_arm(&r->timers, t, deadline_ns, fn);
}
void reactor_timer_disarm(reactor *r, timer *t) { timer_disarm(&r->timers, t); }
void reactor_set_user(reactor *r, void *user) { r->user = user; }
void *reactor_user(reactor *r) { return r->user; }
size_t reactor_count_conns(reactor *r) { return r->nconns; }
size_t reactor_jobs_pending(reactor *r) { return r->jobs_pending; }
void reactor_job_begin(reactor *r) { r->jobs_pending++; }
void reactor_job_end(reactor *r) { r->jobs_pending--; }
