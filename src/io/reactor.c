#include "io/reactor.h"

#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/clock.h"
#include "base/list.h"
#include "base/log.h"
#include "base/mem.h"
#include "io/tls.h"

/* Receive buffers: one provided-buffer ring per reactor, shared by its connections. */
#define RECV_BUF_SIZE (16 * 1024)
#define RECV_BUF_COUNT 256
#define RECV_BGID 1
#define RING_ENTRIES 1024
/* Output buffers come in blocks cached per reactor: a connection holds one only while it
 * has output, so an idle connection costs no buffer memory and a busy one no malloc. */
#define OUT_BLOCK (16 * 1024)
#define OUT_FREE_MAX 256

/* The low bits of an io_uring user_data say which operation completed. */
enum op_tag {
	OP_IGNORE = 0,
	OP_RECV = 1,
	OP_SEND = 2,
	OP_CONNECT = 3,
	OP_ACCEPT = 4,
	OP_WAKE = 5,
};
#define TAG_MASK 7ULL

typedef struct out_buf {
	buf b;
	size_t off; /* bytes the kernel has taken */
} out_buf;

struct reactor_conn {
	reactor *r;
	int fd;
	const reactor_conn_ops *ops;
	void *user;
	out_buf pending;  /* filled by reactor_conn_write */
	out_buf inflight; /* handed to the kernel */
	bool recv_armed, send_inflight, connect_inflight;
	bool want_send, on_dirty_list;
	bool closing, close_now, dead;
	int close_err;
	uint64_t bytes_sent;
	tls_conn *tls;	 /* NULL: plaintext */
	bool tls_closed; /* close_notify queued */
	buf plain;	 /* TLS: what the owner wrote, encrypted when the output is flushed */
	reactor_conn *dirty_next;
	list_node link; /* in the reactor's conns */
	struct sockaddr_storage peer;
};

/* After accept fails for lack of descriptors or memory, wait this long before trying
 * again instead of spinning on the same error. */
#define ACCEPT_RETRY_NS (100 * NS_PER_MS)

typedef struct listener {
	int fd;
	bool closed;
	reactor *r;
	timer retry;
	const reactor_listener_ops *ops;
	void *user;
	struct listener *next;
} listener;

struct reactor {
	struct io_uring ring;
	struct io_uring_buf_ring *bufring;
	uint8_t *bufs;
	size_t bufring_bytes;
	timer_heap timers;
	int64_t now;
	bool stopping;
	int wake_fd;
	uint64_t wake_val;
	pthread_mutex_t post_mu;
	reactor_task *post_head, *post_tail;
	bool wake_pending;
	reactor_conn *dirty;
	void *out_free; /* cached OUT_BLOCK buffers, linked through their first bytes */
	size_t nout_free;
	list_node conns;
	size_t nconns;
	size_t jobs_pending;
	listener *listeners;
	void *user;
};

static void mark_dirty(reactor_conn *c);
static void pending_take_block(reactor_conn *c);

static inline uint64_t tag(void *p, enum op_tag t) { return (uint64_t)(uintptr_t)p | t; }

static struct io_uring_sqe *get_sqe(reactor *r)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
	if (!sqe) {
		io_uring_submit(&r->ring);
		sqe = io_uring_get_sqe(&r->ring);
	}
	return sqe;
}

static int setup_ring(reactor *r)
{
	struct io_uring_params p;
	unsigned flag_sets[] = {
		IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
		IORING_SETUP_COOP_TASKRUN,
		0,
	};
	int rc = -EINVAL;
	for (size_t i = 0; i < sizeof(flag_sets) / sizeof(flag_sets[0]); i++) {
		memset(&p, 0, sizeof(p));
		p.flags = flag_sets[i] | IORING_SETUP_SUBMIT_ALL;
		rc = io_uring_queue_init_params(RING_ENTRIES, &r->ring, &p);
		if (rc != -EINVAL)
			break;
	}
	return rc;
}

static void recycle_buf(reactor *r, unsigned bid)
{
	io_uring_buf_ring_add(r->bufring, r->bufs + (size_t)bid * RECV_BUF_SIZE, RECV_BUF_SIZE, bid,
			      io_uring_buf_ring_mask(RECV_BUF_COUNT), 0);
	io_uring_buf_ring_advance(r->bufring, 1);
}

static int setup_bufring(reactor *r)
{
	/* liburing 2.3 has no io_uring_setup_buf_ring: map the ring memory ourselves. */
	r->bufring_bytes = RECV_BUF_COUNT * sizeof(struct io_uring_buf);
	r->bufring = mem_aligned_alloc(4096, r->bufring_bytes);
	if (!r->bufring)
		return -ENOMEM;
	io_uring_buf_ring_init(r->bufring);
	struct io_uring_buf_reg reg = {
		.ring_addr = (uint64_t)(uintptr_t)r->bufring,
		.ring_entries = RECV_BUF_COUNT,
		.bgid = RECV_BGID,
	};
	int rc = io_uring_register_buf_ring(&r->ring, &reg, 0);
	if (rc)
		return rc;
	r->bufs = mem_alloc((size_t)RECV_BUF_COUNT * RECV_BUF_SIZE);
	if (!r->bufs)
		return -ENOMEM;
	for (unsigned i = 0; i < RECV_BUF_COUNT; i++)
		recycle_buf(r, i);
	return 0;
}

static void arm_wake(reactor *r)
{
	struct io_uring_sqe *sqe = get_sqe(r);
	io_uring_prep_read(sqe, r->wake_fd, &r->wake_val, sizeof(r->wake_val), 0);
	io_uring_sqe_set_data64(sqe, tag(r, OP_WAKE));
}

reactor *reactor_new(int *err)
{
	reactor *r = mem_calloc(1, sizeof(*r));
	int rc = -ENOMEM;
	if (!r)
		goto fail;
	r->wake_fd = -1;
	list_init(&r->conns);
	rc = setup_ring(r);
	if (rc < 0) {
		mem_free(r);
		r = NULL;
		goto fail;
	}
	rc = setup_bufring(r);
	if (rc < 0)
		goto fail;
	r->wake_fd = eventfd(0, EFD_CLOEXEC);
	if (r->wake_fd < 0) {
		rc = -errno;
		goto fail;
	}
	pthread_mutex_init(&r->post_mu, NULL);
	timer_heap_init(&r->timers);
	r->now = clock_now_ns();
	arm_wake(r);
	return r;
fail:
	if (err)
		*err = rc;
	if (r) {
		io_uring_queue_exit(&r->ring);
		mem_free(r->bufring);
		mem_free(r->bufs);
		if (r->wake_fd >= 0)
			close(r->wake_fd);
		mem_free(r);
	}
	return NULL;
}

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
		if (c->fd >= 0)
			close(c->fd);
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
	io_uring_queue_exit(&r->ring);
	mem_free(r->bufring);
	mem_free(r->bufs);
	close(r->wake_fd);
	timer_heap_free(&r->timers);
	pthread_mutex_destroy(&r->post_mu);
	mem_free(r);
}

static void arm_accept(reactor *r, listener *l)
{
	struct io_uring_sqe *sqe = get_sqe(r);
	io_uring_prep_multishot_accept(sqe, l->fd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, tag(l, OP_ACCEPT));
}

static void retry_accept(timer *t)
{
	listener *l = container_of(t, listener, retry);
	if (!l->closed)
		arm_accept(l->r, l);
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
	arm_accept(r, l);
	return 0;
}

void reactor_close_listeners(reactor *r)
{
	for (listener *l = r->listeners; l; l = l->next) {
		if (l->closed)
			continue;
		l->closed = true;
		if (timer_armed(&l->retry)) {
			/* Waiting to retry: no accept is in flight to cancel. */
			timer_disarm(&r->timers, &l->retry);
			close(l->fd);
			l->fd = -1;
			continue;
		}
		struct io_uring_sqe *sqe = get_sqe(r);
		io_uring_prep_cancel64(sqe, tag(l, OP_ACCEPT), 0);
		io_uring_sqe_set_data64(sqe, OP_IGNORE);
	}
}

static void arm_recv(reactor_conn *c)
{
	struct io_uring_sqe *sqe = get_sqe(c->r);
	io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = RECV_BGID;
	io_uring_sqe_set_data64(sqe, tag(c, OP_RECV));
	c->recv_armed = true;
}

static reactor_conn *conn_alloc(reactor *r, int fd, const reactor_conn_ops *ops, void *user)
{
	reactor_conn *c = mem_calloc(1, sizeof(*c));
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
		arm_recv(c);
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
	struct io_uring_sqe *sqe = get_sqe(r);
	io_uring_prep_connect(sqe, fd, (struct sockaddr *)&c->peer, len);
	io_uring_sqe_set_data64(sqe, tag(c, OP_CONNECT));
	c->connect_inflight = true;
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
	return c->plain.len + c->pending.b.len + (c->inflight.b.len - c->inflight.off);
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

static void submit_send(reactor_conn *c)
{
	out_buf *o = &c->inflight;
	struct io_uring_sqe *sqe = get_sqe(c->r);
	io_uring_prep_send(sqe, c->fd, o->b.data + o->off, o->b.len - o->off, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, tag(c, OP_SEND));
	c->send_inflight = true;
}

/* Finishes a closing connection once the kernel holds no operation on it. */
static void try_finish_close(reactor_conn *c)
{
	if (c->recv_armed || c->send_inflight || c->connect_inflight)
		return;
	if (c->dead)
		return;
	c->dead = true;
	close(c->fd);
	c->fd = -1;
	if (c->ops->on_close)
		c->ops->on_close(c, c->close_err);
	/* Freed by flush_dirty, so that no caller up the stack holds a dangling c. */
	mark_dirty(c);
}

static void begin_shutdown(reactor_conn *c)
{
	/* shutdown() ends the armed multishot recv with a 0-byte completion. */
	if (c->fd >= 0)
		shutdown(c->fd, SHUT_RDWR);
	try_finish_close(c);
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
	if (!c->close_now && !c->send_inflight && c->pending.b.len) {
		out_buf tmp = c->inflight;
		c->inflight = c->pending;
		c->pending = tmp;
		buf_reset(&c->pending.b);
		c->pending.off = 0;
		submit_send(c);
	}
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

static void on_recv_cqe(reactor *r, reactor_conn *c, struct io_uring_cqe *cqe)
{
	if (!(cqe->flags & IORING_CQE_F_MORE))
		c->recv_armed = false;
	if (cqe->res > 0) {
		unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
		if (!c->closing) {
			const uint8_t *data = r->bufs + (size_t)bid * RECV_BUF_SIZE;
			int rc = c->tls ? tls_recv(c, data, (size_t)cqe->res)
					: c->ops->on_recv(c, data, (size_t)cqe->res);
			if (rc < 0)
				reactor_conn_abort(c, rc);
		}
		recycle_buf(r, bid);
		if (!c->recv_armed && !c->closing)
			arm_recv(c);
		if (c->closing && !c->recv_armed)
			try_finish_close(c);
		return;
	}
	if (cqe->res == -ENOBUFS && !c->closing) {
		/* Every buffer was in use: they are recycled as completions are handled. */
		if (!c->recv_armed)
			arm_recv(c);
		return;
	}
	/* EOF or error: the peer is gone. */
	if (!c->closing)
		reactor_conn_abort(c, cqe->res == 0 ? 0 : cqe->res);
	if (!c->recv_armed)
		try_finish_close(c);
}

static void on_send_cqe(reactor_conn *c, struct io_uring_cqe *cqe)
{
	c->send_inflight = false;
	out_buf *o = &c->inflight;
	if (cqe->res < 0) {
		reactor_conn_abort(c, cqe->res);
		try_finish_close(c);
		return;
	}
	o->off += (size_t)cqe->res;
	c->bytes_sent += (uint64_t)cqe->res;
	if (o->off < o->b.len && !c->close_now) {
		submit_send(c);
		return;
	}
	out_release(c->r, o);
	if (c->pending.b.len || c->want_send || c->closing)
		mark_dirty(c);
	if (c->close_now)
		try_finish_close(c);
}

static void on_connect_cqe(reactor_conn *c, struct io_uring_cqe *cqe)
{
	c->connect_inflight = false;
	if (cqe->res < 0) {
		c->close_err = cqe->res;
		c->closing = c->close_now = true;
		if (c->ops->on_connect)
			c->ops->on_connect(c, cqe->res);
		try_finish_close(c);
		return;
	}
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	arm_recv(c);
	if (c->ops->on_connect)
		c->ops->on_connect(c, 0);
	if (c->pending.b.len || c->want_send || c->closing)
		mark_dirty(c);
}

static void drain_posted(reactor *r)
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

static void handle_cqe(reactor *r, struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	void *p = (void *)(uintptr_t)(ud & ~TAG_MASK);
	switch ((enum op_tag)(ud & TAG_MASK)) {
	case OP_RECV:
		on_recv_cqe(r, p, cqe);
		break;
	case OP_SEND:
		on_send_cqe(p, cqe);
		break;
	case OP_CONNECT:
		on_connect_cqe(p, cqe);
		break;
	case OP_ACCEPT: {
		listener *l = p;
		if (cqe->res >= 0 && l->closed) {
			close(cqe->res);
		} else if (cqe->res >= 0) {
			int one = 1;
			setsockopt(cqe->res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			l->ops->on_accept(r, cqe->res, l->user);
		}
		if (cqe->flags & IORING_CQE_F_MORE)
			break;
		bool starved = cqe->res == -EMFILE || cqe->res == -ENFILE || cqe->res == -ENOBUFS ||
			       cqe->res == -ENOMEM;
		if (l->closed) {
			if (l->fd >= 0)
				close(l->fd);
			l->fd = -1;
		} else if (starved) {
			timer_arm(&r->timers, &l->retry, r->now + ACCEPT_RETRY_NS, retry_accept);
		} else {
			arm_accept(r, l);
		}
		break;
	}
	case OP_WAKE:
		arm_wake(r);
		drain_posted(r);
		break;
	case OP_IGNORE:
		break;
	}
}

int reactor_run_once(reactor *r, int64_t timeout_ns)
{
	flush_dirty(r);
	int64_t next = timer_next(&r->timers);
	int64_t now = clock_now_ns();
	if (next != INT64_MAX && next - now < timeout_ns)
		timeout_ns = next > now ? next - now : 0;
	struct __kernel_timespec ts = {
		.tv_sec = timeout_ns / NS_PER_SEC,
		.tv_nsec = timeout_ns % NS_PER_SEC,
	};
	struct io_uring_cqe *cqe;
	int rc = io_uring_submit_and_wait_timeout(&r->ring, &cqe, 1, &ts, NULL);
	if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
		return rc;
	r->now = clock_now_ns();
	unsigned head, seen = 0;
	io_uring_for_each_cqe(&r->ring, head, cqe)
	{
		handle_cqe(r, cqe);
		seen++;
	}
	io_uring_cq_advance(&r->ring, seen);
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
