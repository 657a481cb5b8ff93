/* The io_uring backend: one ring per reactor, multishot accept and recv with a ring of
 * provided receive buffers, sends and connects as single operations, the wake eventfd read
 * by the ring. Submissions are batched and go to the kernel with the wait. */
#include <errno.h>
#include <liburing.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>

#include "base/clock.h"
#include "base/mem.h"
#include "io/reactor_impl.h"

/* Receive buffers: one provided-buffer ring per reactor, shared by its connections. */
#define RECV_BUF_SIZE (16 * 1024)
#define RECV_BUF_COUNT 256
#define RECV_BGID 1
#define RING_ENTRIES 1024

typedef struct uring_reactor {
	reactor base;
	struct io_uring ring;
	bool ring_ok;
	struct io_uring_buf_ring *bufring;
	uint8_t *bufs;
	size_t bufring_bytes;
	uint64_t wake_val;
} uring_reactor;

static inline uring_reactor *U(reactor *r) { return (uring_reactor *)r; }

static struct io_uring_sqe *get_sqe(reactor *r)
{
	struct io_uring *ring = &U(r)->ring;
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
	if (!sqe) {
		io_uring_submit(ring);
		sqe = io_uring_get_sqe(ring);
	}
	return sqe;
}

static int setup_ring(uring_reactor *u)
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
		rc = io_uring_queue_init_params(RING_ENTRIES, &u->ring, &p);
		if (rc != -EINVAL)
			break;
	}
	u->ring_ok = rc == 0;
	return rc;
}

static void recycle_buf(uring_reactor *u, unsigned bid)
{
	io_uring_buf_ring_add(u->bufring, u->bufs + (size_t)bid * RECV_BUF_SIZE, RECV_BUF_SIZE, bid,
			      io_uring_buf_ring_mask(RECV_BUF_COUNT), 0);
	io_uring_buf_ring_advance(u->bufring, 1);
}

static int setup_bufring(uring_reactor *u)
{
	/* liburing 2.3 has no io_uring_setup_buf_ring: map the ring memory ourselves. */
	u->bufring_bytes = RECV_BUF_COUNT * sizeof(struct io_uring_buf);
	u->bufring = mem_aligned_alloc(4096, u->bufring_bytes);
	if (!u->bufring)
		return -ENOMEM;
	io_uring_buf_ring_init(u->bufring);
	struct io_uring_buf_reg reg = {
		.ring_addr = (uint64_t)(uintptr_t)u->bufring,
		.ring_entries = RECV_BUF_COUNT,
		.bgid = RECV_BGID,
	};
	int rc = io_uring_register_buf_ring(&u->ring, &reg, 0);
	if (rc)
		return rc;
	u->bufs = mem_alloc((size_t)RECV_BUF_COUNT * RECV_BUF_SIZE);
	if (!u->bufs)
		return -ENOMEM;
	for (unsigned i = 0; i < RECV_BUF_COUNT; i++)
		recycle_buf(u, i);
	return 0;
}

static void arm_wake(reactor *r)
{
	struct io_uring_sqe *sqe = get_sqe(r);
	io_uring_prep_read(sqe, r->wake_fd, &U(r)->wake_val, sizeof(U(r)->wake_val), 0);
	io_uring_sqe_set_data64(sqe, reactor_tag(r, TAG_WAKE));
}

static int uring_init(reactor *r)
{
	uring_reactor *u = U(r);
	int rc = setup_ring(u);
	if (!rc)
		rc = setup_bufring(u);
	if (!rc)
		arm_wake(r);
	return rc;
}

static void uring_fini(reactor *r)
{
	uring_reactor *u = U(r);
	if (u->ring_ok)
		io_uring_queue_exit(&u->ring);
	mem_free(u->bufring);
	mem_free(u->bufs);
}

static void uring_accept(reactor *r, listener *l)
{
	struct io_uring_sqe *sqe = get_sqe(r);
	io_uring_prep_multishot_accept(sqe, l->fd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, reactor_tag(l, TAG_ACCEPT));
}

static void uring_accept_cancel(reactor *r, listener *l)
{
	/* The accept's last completion (-ECANCELED, no F_MORE) closes l->fd. */
	struct io_uring_sqe *sqe = get_sqe(r);
	io_uring_prep_cancel64(sqe, reactor_tag(l, TAG_ACCEPT), 0);
	io_uring_sqe_set_data64(sqe, TAG_IGNORE);
}

static void uring_recv(reactor_conn *c)
{
	struct io_uring_sqe *sqe = get_sqe(c->r);
	io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = RECV_BGID;
	io_uring_sqe_set_data64(sqe, reactor_tag(c, TAG_RECV));
	c->recv_armed = true;
}

static int uring_connect(reactor_conn *c, socklen_t len)
{
	struct io_uring_sqe *sqe = get_sqe(c->r);
	io_uring_prep_connect(sqe, c->fd, (struct sockaddr *)&c->peer, len);
	io_uring_sqe_set_data64(sqe, reactor_tag(c, TAG_CONNECT));
	c->connect_inflight = true;
	return 0;
}

static void uring_send(reactor_conn *c)
{
	out_buf *o = &c->inflight;
	struct io_uring_sqe *sqe = get_sqe(c->r);
	io_uring_prep_send(sqe, c->fd, o->b.data + o->off, o->b.len - o->off, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, reactor_tag(c, TAG_SEND));
	c->send_inflight = true;
}

/* Operations in flight end by themselves after shutdown(): recv with 0 bytes, a send with
 * what it managed or an error. */
static void uring_shutdown(reactor_conn *c) { (void)c; }

static void uring_release(reactor_conn *c) { (void)c; }

static void on_recv_cqe(uring_reactor *u, reactor_conn *c, struct io_uring_cqe *cqe)
{
	if (!(cqe->flags & IORING_CQE_F_MORE))
		c->recv_armed = false;
	if (cqe->res > 0) {
		unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
		reactor_on_recv(c, u->bufs + (size_t)bid * RECV_BUF_SIZE, (size_t)cqe->res);
		recycle_buf(u, bid);
		if (!c->recv_armed && !c->closing)
			uring_recv(c);
		if (c->closing && !c->recv_armed)
			reactor_finish_close(c);
		return;
	}
	if (cqe->res == -ENOBUFS && !c->closing) {
		/* Every buffer was in use: they are recycled as completions are handled. */
		if (!c->recv_armed)
			uring_recv(c);
		return;
	}
	reactor_on_recv_end(c, cqe->res);
}

static void handle_cqe(uring_reactor *u, struct io_uring_cqe *cqe)
{
	reactor *r = &u->base;
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	void *p = reactor_untag(ud);
	switch ((enum reactor_tag)(ud & REACTOR_TAG_MASK)) {
	case TAG_RECV:
		on_recv_cqe(u, p, cqe);
		break;
	case TAG_SEND:
		reactor_on_sent(p, cqe->res);
		break;
	case TAG_CONNECT:
		reactor_on_connected(p, cqe->res);
		break;
	case TAG_ACCEPT:
		reactor_on_accept(r, p, cqe->res, cqe->flags & IORING_CQE_F_MORE);
		break;
	case TAG_WAKE:
		arm_wake(r);
		reactor_on_wake(r);
		break;
	case TAG_IGNORE:
	case TAG_CONN:
		break;
	}
}

static int uring_poll(reactor *r, int64_t timeout_ns)
{
	uring_reactor *u = U(r);
	struct __kernel_timespec ts = {
		.tv_sec = timeout_ns / NS_PER_SEC,
		.tv_nsec = timeout_ns % NS_PER_SEC,
	};
	struct io_uring_cqe *cqe;
	int rc = io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, &ts, NULL);
	if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
		return rc;
	r->now = clock_now_ns();
	unsigned head, seen = 0;
	io_uring_for_each_cqe(&u->ring, head, cqe)
	{
		handle_cqe(u, cqe);
		seen++;
	}
	io_uring_cq_advance(&u->ring, seen);
	return 0;
}

const reactor_backend reactor_backend_uring = {
	.io = REACTOR_IO_URING,
	.reactor_size = sizeof(uring_reactor),
	.conn_size = sizeof(reactor_conn),
	.init = uring_init,
	.fini = uring_fini,
	.accept = uring_accept,
	.accept_cancel = uring_accept_cancel,
	.recv = uring_recv,
	.connect = uring_connect,
	.send = uring_send,
	.shutdown = uring_shutdown,
	.release = uring_release,
	.poll = uring_poll,
};
