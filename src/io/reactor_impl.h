/* Inside the reactor (io/ only): the state both backends share and the small table of
 * operations each backend implements, as in Redis's ae. reactor.c owns connection
 * bookkeeping, output buffers, TLS, timers and posted tasks; a backend (reactor_uring.c,
 * reactor_epoll.c) only moves bytes and reports what happened through the reactor_on_*
 * functions below, so that both paths take the same decisions on partial writes, EOF,
 * resets and closes. */
#ifndef IO_REACTOR_IMPL_H
#define IO_REACTOR_IMPL_H
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "base/buf.h"
#include "base/list.h"
#include "io/reactor.h"
#include "io/timer.h"

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
	out_buf inflight; /* handed to the backend's send */
	/* What the backend holds: a close waits until none is set (reactor_finish_close). */
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

typedef struct listener {
	int fd;
	bool closed;
	reactor *r;
	timer retry;
	const reactor_listener_ops *ops;
	void *user;
	struct listener *next;
} listener;

typedef struct reactor_backend reactor_backend;

struct reactor {
	const reactor_backend *be;
	timer_heap timers;
	int64_t now; /* set by the backend's poll once its wait is over */
	bool stopping;
	int wake_fd; /* eventfd (blocking until a backend says otherwise): reactor_post
		      * writes it, the backend watches it */
	pthread_mutex_t post_mu;
	reactor_task *post_head, *post_tail;
	bool wake_pending;
	reactor_conn *dirty;
	void *out_free; /* cached output blocks, linked through their first bytes */
	size_t nout_free;
	list_node conns;
	size_t nconns;
	size_t jobs_pending;
	listener *listeners;
	void *user;
};

/* A backend's reactor and connection structs begin with struct reactor and struct
 * reactor_conn (reactor_size, conn_size say how much to allocate). Every operation runs on
 * the reactor's thread. */
struct reactor_backend {
	reactor_io io;
	size_t reactor_size, conn_size;
	/* Sets up the backend on r (allocated and zeroed, wake_fd open). Returns 0 or a negative
	 * errno; fini follows either way. */
	int (*init)(reactor *r);
	void (*fini)(reactor *r);
	/* Starts accepting on l->fd; each connection or error is reported with
	 * reactor_on_accept. */
	void (*accept)(reactor *r, listener *l);
	/* Stops accepting on l: closes l->fd now or when its last report came. */
	void (*accept_cancel)(reactor *r, listener *l);
	/* Starts receiving on a connected c (sets recv_armed). */
	void (*recv)(reactor_conn *c);
	/* Starts connecting c to c->peer (len bytes); sets connect_inflight. Returns 0 or a
	 * negative errno (nothing started). */
	int (*connect)(reactor_conn *c, socklen_t len);
	/* Sends c->inflight from its off, then c->pending from its off (sets send_inflight);
	 * reactor_on_sent reports what the kernel took. */
	void (*send)(reactor_conn *c);
	/* The socket was shut down for a close: clears what the backend no longer holds. */
	void (*shutdown)(reactor_conn *c);
	/* Last call before c->fd is closed. */
	void (*release)(reactor_conn *c);
	/* Submits what is queued, waits at most timeout_ns for events, sets r->now and reports
	 * every event through reactor_on_*. Returns 0 or a negative errno (a failed loop). */
	int (*poll)(reactor *r, int64_t timeout_ns);
};

extern const reactor_backend reactor_backend_uring;
extern const reactor_backend reactor_backend_epoll;

/* What a backend reports. */
/* Bytes received on c (valid during the call only). */
void reactor_on_recv(reactor_conn *c, const uint8_t *data, size_t len);
/* EOF (res 0) or an error (-errno) on c: the peer is gone. The close follows once
 * recv_armed is clear. */
void reactor_on_recv_end(reactor_conn *c, int res);
/* The kernel took res bytes (inflight's rest first, then pending's), or -errno. */
void reactor_on_sent(reactor_conn *c, ssize_t res);
/* The connect of c finished: 0 or -errno. */
void reactor_on_connected(reactor_conn *c, int res);
/* A connection fd (res >= 0) or an accept error (-errno) on l; more says the accept is
 * still armed. */
void reactor_on_accept(reactor *r, listener *l, int res, bool more);
/* The wake eventfd fired and the backend read its counter: runs the posted tasks. */
void reactor_on_wake(reactor *r);
/* Finishes a closing connection once the backend holds nothing of it. */
void reactor_finish_close(reactor_conn *c);

/* The low bits of a backend's event cookie say what it is about (pointers are 8-aligned). */
enum reactor_tag {
	TAG_IGNORE = 0,
	TAG_RECV = 1,
	TAG_SEND = 2,
	TAG_CONNECT = 3,
	TAG_ACCEPT = 4,
	TAG_WAKE = 5,
	TAG_CONN = 6,
};
#define REACTOR_TAG_MASK 7ULL

static inline uint64_t reactor_tag(void *p, enum reactor_tag t)
{
	return (uint64_t)(uintptr_t)p | t;
}

static inline void *reactor_untag(uint64_t v) { return (void *)(uintptr_t)(v & ~REACTOR_TAG_MASK); }

#endif
