/* A group of reactor threads serving one h2_server: each thread owns a reactor, its own
 * SO_REUSEPORT listener on the group's address, and the connections it accepts. The node,
 * the benchmark server and the interop server all run their reactors this way.
 *
 * Shutdown (reactor_group_stop), on every reactor: stop accepting, the owner's drain hook,
 * GOAWAY to every connection. Calls in flight get the grace period; then they are
 * cancelled and their connections closed, and a connection still there CLOSE_WAIT later
 * (a peer that reads nothing) is aborted. A connection closes by itself once GOAWAY went
 * out and its last call ended, and a reactor's loop ends by itself once it holds no
 * connection and no pool job (reactor_run): a pool job still out always completes before
 * its reactor is freed, and nothing polls. */
#ifndef H2_REACTOR_GROUP_H
#define H2_REACTOR_GROUP_H
#include <stddef.h>
#include <stdint.h>

#include "h2/server.h"
#include "io/reactor.h"

typedef struct reactor_group reactor_group;

typedef struct reactor_group_opts {
	const char *listen; /* HOST:PORT; port 0 picks one free port for every reactor */
	int threads;	    /* reactors, at least 1 */
	int backlog;	    /* of each listener */
	reactor_io io;	    /* the reactors' backend (io/reactor.h); 0 is AUTO */
	/* Each hook is optional and runs on the reactor's own thread, with ctx. on_start: before
	 * the reactor accepts; a negative errno fails the group's start. on_drain: when the
	 * shutdown begins, after the reactor stopped accepting. on_exit: after the loop ended,
	 * before the reactor is freed, on every reactor whose on_start succeeded (every reactor
	 * that started, without an on_start). */
	int (*on_start)(reactor *r, void *ctx);
	void (*on_drain)(reactor *r, void *ctx);
	void (*on_exit)(reactor *r, void *ctx);
	void *ctx;
} reactor_group_opts;

/* Opens the listeners, one per reactor (port 0 resolves once for all), so that a bad
 * address or a port in use fails before any thread starts. On failure nothing is left open
 * and err[0..cap) says what failed: -EINVAL when the address does not parse, else the
 * errno of the listen. */
int reactor_group_open(const reactor_group_opts *o, reactor_group **out, char *err, size_t cap);
/* Starts the threads and returns once every reactor accepts; s must outlive the group.
 * On failure the reactors that started are stopped again and err says what failed. The
 * threads inherit the caller's signal mask. */
int reactor_group_start(reactor_group *g, h2_server *s, char *err, size_t cap);
/* The backend the reactors run on, once started: REACTOR_IO_URING or REACTOR_IO_EPOLL
 * (AUTO resolved). */
reactor_io reactor_group_io(const reactor_group *g);
/* The address the listeners are bound to, HOST:PORT with port 0 resolved. */
const char *reactor_group_address(const reactor_group *g);
/* Thread-safe; the first call counts. Begins the shutdown above on every reactor, calls in
 * flight getting grace_ns. */
void reactor_group_stop(reactor_group *g, int64_t grace_ns);
/* Waits until every reactor's loop has ended, then frees the group (and closes listeners
 * no reactor took). Without an earlier reactor_group_stop it stops the group first, with
 * no grace. */
void reactor_group_free(reactor_group *g);

#endif
