#include "h2/reactor_group.h"

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/container_of.h"
#include "base/log.h"
#include "base/mem.h"
#include "io/sock.h"

/* After the grace period, connections still closing (a peer that reads nothing holds our
 * last bytes) get this long before they are aborted. */
#define CLOSE_WAIT_NS (2 * NS_PER_SEC)

typedef struct group_slot {
	reactor_group *g;
	pthread_t thread;
	int listen_fd; /* -1 once the reactor took it */
	reactor *r;
	h2_endpoint *ep;
	int err;
	bool running; /* its loop runs: the stop task may be posted */
	reactor_task stop_task;
	timer drain_timer;
} group_slot;

struct reactor_group {
	h2_server *server;
	reactor_group_opts o;
	char address[80];
	sem_t ready;
	atomic_bool stopping;
	int64_t grace_ns; /* written before the stop tasks are posted, read by them */
	int nstarted;	  /* threads to join */
	int n;
	group_slot slots[];
};

static void slot_abort_rest(timer *t)
{
	group_slot *s = container_of(t, group_slot, drain_timer);
	reactor_abort_all(s->r, -ECANCELED);
}

static void slot_grace_over(timer *t)
{
	group_slot *s = container_of(t, group_slot, drain_timer);
	h2_endpoint_close_all(s->ep);
	/* Without memory for the wait, what is left goes at once. */
	if (reactor_timer_arm(s->r, t, reactor_now(s->r) + CLOSE_WAIT_NS, slot_abort_rest))
		slot_abort_rest(t);
}

static void slot_drain(reactor_task *t)
{
	group_slot *s = container_of(t, group_slot, stop_task);
	reactor_group *g = s->g;
	reactor_close_listeners(s->r);
	if (g->o.on_drain)
		g->o.on_drain(s->r, g->o.ctx);
	h2_endpoint_goaway(s->ep);
	/* Without memory for the grace period, it is over at once: a shutdown that could
	 * never end would be worse. */
	if (reactor_timer_arm(s->r, &s->drain_timer, reactor_now(s->r) + g->grace_ns,
			      slot_grace_over))
		slot_grace_over(&s->drain_timer);
	reactor_stop(s->r);
}

static void *slot_main(void *arg)
{
	group_slot *s = arg;
	reactor_group *g = s->g;
	s->r = reactor_new_io(g->o.io, &s->err);
	if (s->r) {
		s->ep = h2_endpoint_new(g->server, s->r);
		if (!s->ep)
			s->err = -ENOMEM;
	}
	/* on_exit pairs with a successful start: without an on_start, with the reactor's. */
	if (!s->err && g->o.on_start)
		s->err = g->o.on_start(s->r, g->o.ctx);
	bool hooked = !s->err;
	if (!s->err)
		s->err = reactor_listen(s->r, s->listen_fd, &h2_endpoint_listener_ops, s->ep);
	if (!s->err)
		s->listen_fd = -1;
	s->running = !s->err;
	bool run = s->running;
	sem_post(&g->ready); /* s belongs to the starting thread again until the join */
	if (run) {
		int rc = reactor_run(s->r);
		if (rc < 0)
			log_error("reactor stopped: %s", strerror(-rc));
		reactor_timer_disarm(s->r, &s->drain_timer);
		if (rc < 0 && reactor_jobs_pending(s->r)) {
			/* A dead ring cannot run the completions of jobs still out, but they
			 * will land on the reactor: it must stay allocated. */
			log_error("reactor left allocated: %zu pool jobs are out",
				  reactor_jobs_pending(s->r));
			return NULL;
		}
	}
	if (hooked && g->o.on_exit)
		g->o.on_exit(s->r, g->o.ctx);
	h2_endpoint_free(s->ep);
	reactor_free(s->r);
	return NULL;
}

static const char *io_uring_hint(const reactor_group *g, int err)
{
	if (g->o.io == REACTOR_IO_URING && reactor_io_refused(err))
		return " (io_uring is refused here: check sysctl kernel.io_uring_disabled, or the "
		       "container's seccomp profile; --io epoll or --io auto runs on epoll)";
	return "";
}

/* Joins the threads that were started and closes the listeners no reactor took. */
static void group_join(reactor_group *g)
{
	for (int i = 0; i < g->nstarted; i++)
		pthread_join(g->slots[i].thread, NULL);
	g->nstarted = 0;
	for (int i = 0; i < g->n; i++) {
		if (g->slots[i].listen_fd >= 0)
			close(g->slots[i].listen_fd);
		g->slots[i].listen_fd = -1;
	}
}

static int group_listen(reactor_group *g, const char *listen, char *err, size_t cap)
{
	struct sockaddr_storage ss;
	socklen_t len;
	if (sock_parse_addr(listen, &ss, &len)) {
		snprintf(err, cap, "cannot parse the address '%s' (want HOST:PORT)", listen);
		return -EINVAL;
	}
	for (int i = 0; i < g->n; i++) {
		int fd = sock_listen((struct sockaddr *)&ss, len, g->o.backlog);
		if (fd < 0) {
			snprintf(err, cap, "cannot listen on %s: %s", listen, strerror(-fd));
			return fd;
		}
		g->slots[i].listen_fd = fd;
		if (i > 0)
			continue;
		/* The others bind the port the first one got. */
		int port = sock_local_port(fd);
		if (port < 0) {
			snprintf(err, cap, "cannot read the port of %s: %s", listen,
				 strerror(-port));
			return port;
		}
		if (ss.ss_family == AF_INET6)
			((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)port);
		else
			((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)port);
	}
	sock_format_addr((struct sockaddr *)&ss, g->address, sizeof(g->address));
	return 0;
}

int reactor_group_open(const reactor_group_opts *o, reactor_group **out, char *err, size_t cap)
{
	*out = NULL;
	int n = o->threads > 0 ? o->threads : 1;
	reactor_group *g = mem_calloc(1, sizeof(*g) + (size_t)n * sizeof(g->slots[0]));
	if (!g) {
		snprintf(err, cap, "out of memory");
		return -ENOMEM;
	}
	g->o = *o;
	g->o.listen = NULL; /* the caller's */
	g->n = n;
	sem_init(&g->ready, 0, 0);
	for (int i = 0; i < n; i++) {
		g->slots[i].g = g;
		g->slots[i].listen_fd = -1;
	}
	int rc = group_listen(g, o->listen, err, cap);
	if (rc) {
		reactor_group_free(g);
		return rc;
	}
	*out = g;
	return 0;
}

int reactor_group_start(reactor_group *g, h2_server *s, char *err, size_t cap)
{
	g->server = s;
	int rc = 0;
	for (int i = 0; !rc && i < g->n; i++) {
		group_slot *sl = &g->slots[i];
		if (pthread_create(&sl->thread, NULL, slot_main, sl)) {
			rc = -EAGAIN;
			snprintf(err, cap, "cannot start a reactor thread");
			break;
		}
		g->nstarted++;
		sem_wait(&g->ready);
		if (sl->err) {
			rc = sl->err;
			snprintf(err, cap, "cannot start a reactor: %s%s", strerror(-rc),
				 io_uring_hint(g, rc));
		}
	}
	if (rc) {
		reactor_group_stop(g, 0);
		group_join(g);
	}
	return rc;
}

const char *reactor_group_address(const reactor_group *g) { return g->address; }

reactor_io reactor_group_io(const reactor_group *g)
{
	/* Under AUTO the first reactor's choice is every reactor's: a refusal of io_uring is
	 * the kernel's, the same for each thread. */
	return g->nstarted && g->slots[0].r ? reactor_io_of(g->slots[0].r) : g->o.io;
}

void reactor_group_stop(reactor_group *g, int64_t grace_ns)
{
	if (atomic_exchange(&g->stopping, true))
		return;
	g->grace_ns = grace_ns;
	for (int i = 0; i < g->nstarted; i++) {
		group_slot *s = &g->slots[i];
		if (!s->running)
			continue;
		s->stop_task.fn = slot_drain;
		reactor_post(s->r, &s->stop_task);
	}
}

void reactor_group_free(reactor_group *g)
{
	if (!g)
		return;
	reactor_group_stop(g, 0);
	group_join(g);
	sem_destroy(&g->ready);
	mem_free(g);
}
