/* The reactor: one event loop driven by one thread, over io_uring (one ring) or epoll. It
 * owns TCP connections (accepted or outbound), a timer heap, and a queue of tasks posted
 * from other threads (pool completions, shutdown). Everything here except reactor_post
 * runs on the reactor's own thread. The backend is chosen when the reactor is made and is
 * invisible above this header: both behave the same to their callers. */
#ifndef IO_REACTOR_H
#define IO_REACTOR_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "io/timer.h"

typedef struct reactor reactor;
typedef struct reactor_conn reactor_conn;

typedef struct reactor_task reactor_task;
struct reactor_task {
	reactor_task *next;
	void (*fn)(reactor_task *t);
};

typedef struct reactor_conn_ops {
	/* Bytes arrived (valid only during the call). Return <0 to abort the connection. */
	int (*on_recv)(reactor_conn *c, const uint8_t *data, size_t len);
	/* The reactor is about to send: append output with reactor_conn_write. */
	void (*produce)(reactor_conn *c);
	/* Outbound connections: the connect finished (err 0) or failed (-errno). */
	void (*on_connect)(reactor_conn *c, int err);
	/* Last call for this connection: the socket is closed and c is freed on return. */
	void (*on_close)(reactor_conn *c, int err);
} reactor_conn_ops;

typedef struct reactor_listener_ops {
	/* A connection was accepted; the callee takes fd (usually with reactor_conn_new). */
	void (*on_accept)(reactor *r, int fd, void *user);
} reactor_listener_ops;

/* The I/O backend. io_uring is the default and the faster; epoll is for hosts that refuse
 * io_uring (a container's seccomp profile, sysctl kernel.io_uring_disabled). AUTO tries
 * io_uring and, when the kernel refuses it (reactor_io_refused), runs on epoll and says so
 * once in the log. */
typedef enum reactor_io { REACTOR_IO_AUTO, REACTOR_IO_URING, REACTOR_IO_EPOLL } reactor_io;
/* "auto", "uring" or "epoll": 0, or -EINVAL for anything else. */
int reactor_io_parse(const char *s, reactor_io *out);
const char *reactor_io_name(reactor_io io);
/* The errors by which a kernel refuses io_uring (as opposed to lacking memory). */
bool reactor_io_refused(int err);

/* Creates a reactor bound to the calling thread (the ring is single-issuer) on the given
 * backend. On failure returns NULL and sets *err to a negative errno. */
reactor *reactor_new_io(reactor_io io, int *err);
/* reactor_new_io(REACTOR_IO_AUTO, err). */
reactor *reactor_new(int *err);
/* The backend r runs on: REACTOR_IO_URING or REACTOR_IO_EPOLL. */
reactor_io reactor_io_of(const reactor *r);
void reactor_free(reactor *r);
/* Accepts on an already listening socket (multishot on io_uring); the reactor owns fd
 * from now on. */
int reactor_listen(reactor *r, int fd, const reactor_listener_ops *ops, void *user);
/* Stops accepting: new connections are refused from now on (graceful shutdown). */
void reactor_close_listeners(reactor *r);
/* Runs until reactor_stop was called and the reactor is idle: it holds no connection and
 * no pool job is out (reactor_jobs_pending). So whoever stops a reactor never frees it
 * under work that would still land on it. Returns 0 or a negative errno on a ring
 * failure. */
int reactor_run(reactor *r);
/* Runs one loop turn, waiting at most timeout_ns for events (tests and fuzzers). */
int reactor_run_once(reactor *r, int64_t timeout_ns);
/* Asks reactor_run to return once the reactor is idle; may come before reactor_run. The
 * connections are their owners' to end (closed, or reactor_abort_all); pool jobs always
 * come back by themselves. */
void reactor_stop(reactor *r);
/* Aborts every connection (reactor_conn_abort): the bound on a shutdown, whatever the peers
 * do. */
void reactor_abort_all(reactor *r, int err);
/* Thread-safe: runs t->fn on r's thread during a later loop turn. */
void reactor_post(reactor *r, reactor_task *t);
/* Cached monotonic time of the current loop turn. */
int64_t reactor_now(reactor *r);
/* Arms a timer on r. */
int reactor_timer_arm(reactor *r, timer *t, int64_t deadline_ns, timer_fn fn);
void reactor_timer_disarm(reactor *r, timer *t);
void reactor_set_user(reactor *r, void *user);
void *reactor_user(reactor *r);
/* The count of connections this reactor holds. */
size_t reactor_count_conns(reactor *r);
/* Pool jobs submitted from this reactor whose done callback has not run yet (and other
 * work that holds the reactor the same way, reactor_job_begin/end): reactor_run does not
 * return while any is out, or its completion would land on freed memory. Maintained by
 * pool_submit and the completion path. */
size_t reactor_jobs_pending(reactor *r);
void reactor_job_begin(reactor *r);
void reactor_job_end(reactor *r);

/* Wraps a connected socket; recv is armed at once. */
reactor_conn *reactor_conn_new(reactor *r, int fd, const reactor_conn_ops *ops, void *user);
/* Starts an outbound connection; ops->on_connect reports the result. */
reactor_conn *reactor_conn_connect(reactor *r, const struct sockaddr *addr, socklen_t len,
				   const reactor_conn_ops *ops, void *user);
/* Puts TLS (io/tls.h) under the connection, which takes t: the owner reads and writes
 * plaintext from now on. A client's handshake starts at once (client true). Call before
 * any byte was received or written. */
typedef struct tls_conn tls_conn;
int reactor_conn_set_tls(reactor_conn *c, tls_conn *t, bool client);
tls_conn *reactor_conn_tls(const reactor_conn *c);
void *reactor_conn_user(reactor_conn *c);
void reactor_conn_set_user(reactor_conn *c, void *user);
/* Appends bytes to the connection's pending output. Returns 0 or -ENOMEM. */
int reactor_conn_write(reactor_conn *c, const void *data, size_t len);
/* Bytes appended but not yet handed to the kernel, plus those in flight. */
size_t reactor_conn_out_pending(reactor_conn *c);
/* Bytes the kernel took so far: tells a slow reader from a stalled one. */
uint64_t reactor_conn_bytes_sent(const reactor_conn *c);
/* Asks for a produce() call and a send at the end of this loop turn. */
void reactor_conn_want_send(reactor_conn *c);
/* Sends what is buffered, then closes. on_close follows. */
void reactor_conn_close(reactor_conn *c);
/* Closes at once, dropping unsent output. on_close follows. */
void reactor_conn_abort(reactor_conn *c, int err);

#endif
