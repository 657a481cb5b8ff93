/* The epoll backend, for hosts that refuse io_uring. Level-triggered: a connection is
 * watched for input while it receives and for output only while a send is blocked, so an
 * idle or flowing connection costs no epoll_ctl per turn. Sends are queued like io_uring's
 * submissions and written (sendmsg over the in-flight and pending buffers) at the start of
 * the next poll, where their results are reported as completions would be: the common code
 * sees the same sequence of events on both backends. */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/mem.h"
#include "io/reactor_impl.h"

/* One receive buffer per reactor: the owner's on_recv consumes what it is given. */
#define RECV_BUF_SIZE (64 * 1024)
/* Reads per connection and turn: a fast sender cannot hold the loop for longer. */
#define RECV_BATCH 16
#define MAX_EVENTS 256
/* Accepts per listener readiness, so that a flood of connections does not starve the rest
 * of the turn (level-triggered: the rest is reported again). */
#define ACCEPT_BATCH 64

typedef struct ep_reactor {
	reactor base;
	int epfd;
	bool ep_ok;
	list_node sendq; /* connections whose send waits for the next poll */
	list_node doneq; /* connections whose connect failed at once, to report */
	uint8_t *rbuf;
	struct epoll_event events[MAX_EVENTS];
} ep_reactor;

typedef struct ep_conn {
	reactor_conn base;
	list_node q;	 /* on sendq or doneq */
	uint32_t events; /* what epoll watches; 0: not registered */
	bool want_out;	 /* a send waits for EPOLLOUT */
	int connect_res; /* on doneq: the connect's result */
} ep_conn;

static inline ep_reactor *E(reactor *r) { return (ep_reactor *)r; }
static inline ep_conn *EC(reactor_conn *c) { return (ep_conn *)c; }

static int ep_init(reactor *r)
{
	ep_reactor *e = E(r);
	list_init(&e->sendq);
	list_init(&e->doneq);
	e->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (e->epfd < 0)
		return -errno;
	e->ep_ok = true;
	e->rbuf = mem_alloc(RECV_BUF_SIZE);
	if (!e->rbuf)
		return -ENOMEM;
	/* reactor_post writes the eventfd from any thread; the loop drains it without
	 * blocking. */
	int on = 1;
	if (ioctl(r->wake_fd, FIONBIO, &on) < 0)
		return -errno;
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = reactor_tag(r, TAG_WAKE)};
	if (epoll_ctl(e->epfd, EPOLL_CTL_ADD, r->wake_fd, &ev) < 0)
		return -errno;
	return 0;
}

static void ep_fini(reactor *r)
{
	ep_reactor *e = E(r);
	if (e->ep_ok)
		close(e->epfd);
	mem_free(e->rbuf);
}

/* Watches c for events (0: not at all). Returns 0 or a negative errno. */
static int ep_watch(reactor_conn *c, uint32_t events)
{
	ep_conn *ec = EC(c);
	if (ec->events == events)
		return 0;
	struct epoll_event ev = {.events = events, .data.u64 = reactor_tag(c, TAG_CONN)};
	int op = !ec->events ? EPOLL_CTL_ADD : !events ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
	if (epoll_ctl(E(c->r)->epfd, op, c->fd, &ev) < 0)
		return -errno;
	ec->events = events;
	return 0;
}

static uint32_t conn_events(reactor_conn *c)
{
	return (c->recv_armed ? EPOLLIN : 0) |
	       (EC(c)->want_out || c->connect_inflight ? EPOLLOUT : 0);
}

static void conn_prepare(reactor_conn *c)
{
	ep_conn *ec = EC(c);
	if (!ec->q.next)
		list_init(&ec->q);
	int on = 1;
	ioctl(c->fd, FIONBIO, &on);
}

static void ep_accept(reactor *r, listener *l)
{
	int on = 1;
	ioctl(l->fd, FIONBIO, &on);
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = reactor_tag(l, TAG_ACCEPT)};
	if (epoll_ctl(E(r)->epfd, EPOLL_CTL_ADD, l->fd, &ev) < 0)
		/* Out of memory for the watch: try again later, as after EMFILE. */
		reactor_on_accept(r, l, -ENOMEM, false);
}

static void ep_accept_cancel(reactor *r, listener *l)
{
	epoll_ctl(E(r)->epfd, EPOLL_CTL_DEL, l->fd, NULL);
	close(l->fd);
	l->fd = -1;
}

static void on_accept_ready(reactor *r, listener *l)
{
	for (int i = 0; i < ACCEPT_BATCH && !l->closed; i++) {
		int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd >= 0) {
			reactor_on_accept(r, l, fd, true);
			continue;
		}
		int err = errno;
		if (err == EINTR)
			continue;
		if (err == EAGAIN || err == EWOULDBLOCK)
			return;
		if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
			/* Unwatched until the retry timer arms the accept again: level-triggered,
			 * the pending connection would otherwise wake every turn. */
			epoll_ctl(E(r)->epfd, EPOLL_CTL_DEL, l->fd, NULL);
			reactor_on_accept(r, l, -err, false);
			return;
		}
		/* A connection that failed before it was taken (ECONNABORTED...): the next. */
		reactor_on_accept(r, l, -err, true);
	}
}

static void ep_recv(reactor_conn *c)
{
	conn_prepare(c);
	c->recv_armed = true;
	int rc = ep_watch(c, conn_events(c));
	if (rc) {
		c->recv_armed = false;
		reactor_conn_abort(c, rc);
	}
}

static int ep_connect(reactor_conn *c, socklen_t len)
{
	conn_prepare(c);
	c->connect_inflight = true;
	if (connect(c->fd, (struct sockaddr *)&c->peer, len) < 0 && errno != EINPROGRESS) {
		/* Reported at the next poll, as io_uring reports it: never from inside the
		 * caller's reactor_conn_connect. */
		EC(c)->connect_res = -errno;
		list_push_back(&E(c->r)->doneq, &EC(c)->q);
		return 0;
	}
	int rc = ep_watch(c, EPOLLOUT);
	if (rc)
		c->connect_inflight = false;
	return rc;
}

static void ep_send(reactor_conn *c)
{
	ep_conn *ec = EC(c);
	c->send_inflight = true;
	if (!ec->want_out && list_empty(&ec->q))
		list_push_back(&E(c->r)->sendq, &ec->q);
}

/* Writes what it can of inflight's rest and pending's, and reports it. */
static void try_send(reactor_conn *c)
{
	ep_conn *ec = EC(c);
	size_t total = 0;
	ssize_t res = 0;
	bool blocked = false;
	for (;;) {
		struct iovec iov[2];
		size_t n = 0, skip = total;
		out_buf *parts[2] = {&c->inflight, &c->pending};
		for (int i = 0; i < 2; i++) {
			size_t avail = parts[i]->b.len - parts[i]->off;
			if (skip >= avail) {
				skip -= avail;
				continue;
			}
			iov[n].iov_base = parts[i]->b.data + parts[i]->off + skip;
			iov[n].iov_len = avail - skip;
			skip = 0;
			n++;
		}
		if (!n)
			break;
		struct msghdr msg = {.msg_iov = iov, .msg_iovlen = n};
		ssize_t w = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
		if (w >= 0) {
			total += (size_t)w;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			blocked = true;
		else
			res = -errno;
		break;
	}
	if (blocked != ec->want_out) {
		ec->want_out = blocked;
		int rc = ep_watch(c, conn_events(c));
		if (rc && !res) {
			ec->want_out = false;
			res = rc;
		}
	}
	/* Blocked with nothing taken: EPOLLOUT brings the next try, the send stays in flight. */
	if (total || res || !blocked)
		reactor_on_sent(c, total ? (ssize_t)total : res);
}

static void ep_shutdown(reactor_conn *c)
{
	ep_conn *ec = EC(c);
	list_remove(&ec->q);
	c->recv_armed = c->send_inflight = ec->want_out = false;
	ep_watch(c, 0);
}

static void ep_release(reactor_conn *c)
{
	ep_conn *ec = EC(c);
	if (ec->q.next)
		list_remove(&ec->q);
	/* Explicit: a descriptor shared with another process would stay watched. */
	if (ec->events)
		epoll_ctl(E(c->r)->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	ec->events = 0;
}

/* Reads what the socket holds, up to RECV_BATCH buffers: as io_uring's multishot recv
 * hands over everything that arrived in one turn, so that the owner sees a burst as a
 * burst (its bounds on pipelined or flooding input are met the same way on both). */
static void on_readable(ep_reactor *e, reactor_conn *c)
{
	for (int i = 0; i < RECV_BATCH && c->recv_armed; i++) {
		ssize_t n = recv(c->fd, e->rbuf, RECV_BUF_SIZE, 0);
		if (n > 0) {
			reactor_on_recv(c, e->rbuf, (size_t)n);
			if ((size_t)n < RECV_BUF_SIZE)
				return; /* drained: no EAGAIN round trip to learn it */
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		int res = n == 0 ? 0 : -errno;
		/* Level-triggered, EOF would be reported every turn: stop watching input. */
		c->recv_armed = false;
		ep_watch(c, conn_events(c));
		reactor_on_recv_end(c, res);
		return;
	}
}

static void on_conn_event(ep_reactor *e, reactor_conn *c, uint32_t ev)
{
	if (c->dead)
		return;
	if (c->connect_inflight) {
		int err = 0;
		socklen_t len = sizeof(err);
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		/* Not connected yet (a spurious wakeup): wait on. */
		if (!err && !(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		reactor_on_connected(c, -err);
		return;
	}
	if (c->recv_armed && (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)))
		on_readable(e, c);
	if (c->dead || c->close_now || !(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) || !EC(c)->want_out)
		return;
	if (c->send_inflight) {
		try_send(c);
	} else {
		EC(c)->want_out = false;
		ep_watch(c, conn_events(c));
	}
}

/* The queued work of the last turn, in the order io_uring would complete it: connects that
 * failed at once, then sends. */
static void run_queues(ep_reactor *e)
{
	while (!list_empty(&e->doneq)) {
		ep_conn *ec = container_of(e->doneq.next, ep_conn, q);
		list_remove(&ec->q);
		reactor_on_connected(&ec->base, ec->connect_res);
	}
	while (!list_empty(&e->sendq)) {
		ep_conn *ec = container_of(e->sendq.next, ep_conn, q);
		list_remove(&ec->q);
		/* Aborted by an earlier report: its shutdown drops the output. */
		if (!ec->base.close_now)
			try_send(&ec->base);
	}
}

static int ep_poll(reactor *r, int64_t timeout_ns)
{
	ep_reactor *e = E(r);
	if (!list_empty(&e->doneq) || !list_empty(&e->sendq)) {
		r->now = clock_now_ns();
		run_queues(e);
	}
	/* What the queues' reports left to flush is the next turn's work: no waiting. */
	if (r->dirty)
		timeout_ns = 0;
	int ms = timeout_ns <= 0 ? 0
		 : timeout_ns >= (int64_t)INT_MAX * NS_PER_MS
			 ? INT_MAX
			 : (int)((timeout_ns + NS_PER_MS - 1) / NS_PER_MS);
	int n = epoll_wait(e->epfd, e->events, MAX_EVENTS, ms);
	if (n < 0) {
		if (errno != EINTR)
			return -errno;
		n = 0;
	}
	r->now = clock_now_ns();
	for (int i = 0; i < n; i++) {
		uint64_t ud = e->events[i].data.u64;
		void *p = reactor_untag(ud);
		switch ((enum reactor_tag)(ud & REACTOR_TAG_MASK)) {
		case TAG_CONN:
			on_conn_event(e, p, e->events[i].events);
			break;
		case TAG_ACCEPT:
			if (!((listener *)p)->closed)
				on_accept_ready(r, p);
			break;
		case TAG_WAKE: {
			uint64_t v;
			ssize_t got = read(r->wake_fd, &v, sizeof(v));
			(void)got;
			reactor_on_wake(r);
			break;
		}
		case TAG_IGNORE:
		case TAG_RECV:
		case TAG_SEND:
		case TAG_CONNECT:
			break;
		}
	}
	return 0;
}

const reactor_backend reactor_backend_epoll = {
	.io = REACTOR_IO_EPOLL,
	.reactor_size = sizeof(ep_reactor),
	.conn_size = sizeof(ep_conn),
	.init = ep_init,
	.fini = ep_fini,
	.accept = ep_accept,
	.accept_cancel = ep_accept_cancel,
	.recv = ep_recv,
	.connect = ep_connect,
	.send = ep_send,
	.shutdown = ep_shutdown,
	.release = ep_release,
	.poll = ep_poll,
};
