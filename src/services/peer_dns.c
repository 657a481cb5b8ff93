/* The blocking resolver of peer_dns.h: one c-ares channel per call, driven by poll on the
 * calling (pool) thread until every query is answered or the call's time is up. A private
 * channel costs a socket and a read of resolv.conf per resolution, every 30 s: nothing,
 * against a shared one's locking and lifetime. */
#include <ares.h>
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/mem.h"
#include "services/peer_dns.h"

#define DEFAULT_TIMEOUT_MS 1000
#define DEFAULT_TRIES 2
#define DEFAULT_TOTAL_MS 5000
/* How often a call looks at its cancel flag while no reply comes. */
#define POLL_SLICE_MS 100
/* "_grpc._tcp." and a name of at most this many characters fit in 253. */
#define NAME_MAX_LEN 242
#define SRV_PREFIX "_grpc._tcp."

/* ---- settings ---- */

int peer_dns_check_name(const char *name, char *err, size_t cap)
{
	size_t len = strlen(name), label = 0;
	if (!len || len > NAME_MAX_LEN) {
		snprintf(err, cap, "'%s': a DNS name has 1 to %d characters", name, NAME_MAX_LEN);
		return -EINVAL;
	}
	for (size_t i = 0; i < len; i++) {
		char c = name[i];
		if (c == '.') {
			if (!label) {
				snprintf(err, cap, "'%s': empty label in a DNS name", name);
				return -EINVAL;
			}
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_')) {
			snprintf(err, cap,
				 "'%s': a DNS name has letters, digits, '-', '_' and dots", name);
			return -EINVAL;
		}
		if (++label > 63) {
			snprintf(err, cap, "'%s': a label of a DNS name has at most 63 characters",
				 name);
			return -EINVAL;
		}
	}
	return 0;
}

/* Splits "IP[:PORT]" / "[IPv6][:PORT]" into a family, address and port (53 when none). */
static int split_server(const char *s, int *family, void *ip, unsigned *port)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *p;
	size_t n;
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (!close)
			return -EINVAL;
		n = (size_t)(close - s - 1);
		p = close + 1;
		*family = AF_INET6;
		if (n >= sizeof(host))
			return -EINVAL;
		memcpy(host, s + 1, n);
	} else {
		p = strchr(s, ':');
		n = p ? (size_t)(p - s) : strlen(s);
		if (!p)
			p = s + n;
		*family = AF_INET;
		if (n >= sizeof(host))
			return -EINVAL;
		memcpy(host, s, n);
	}
	host[n] = 0;
	if (inet_pton(*family, host, ip) != 1)
		return -EINVAL;
	*port = 53;
	if (!*p)
		return 0;
	if (*p != ':' || !p[1])
		return -EINVAL;
	char *end;
	unsigned long v = strtoul(p + 1, &end, 10);
	if (*end || p[1] < '0' || p[1] > '9' || !v || v > 65535)
		return -EINVAL;
	*port = (unsigned)v;
	return 0;
}

int peer_dns_check_server(const char *server, char *err, size_t cap)
{
	int family;
	unsigned char ip[16];
	unsigned port;
	if (split_server(server, &family, ip, &port)) {
		snprintf(err, cap,
			 "'%s': want a numeric IP:PORT or [IPv6]:PORT (port 1 to 65535) for "
			 "the DNS server",
			 server);
		return -EINVAL;
	}
	return 0;
}

/* ---- the channel ---- */

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;
static int lib_status;

/* ares_library_init is not thread-safe and process-wide: once, for every caller. */
static void lib_init(void) { lib_status = ares_library_init(ARES_LIB_INIT_ALL); }

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One resolution's state, shared by its queries' callbacks. */
typedef struct resolution {
	ares_channel ch;
	const peer_dns_opts *o;
	const char *server; /* for messages */
	int pending;	    /* queries not answered yet */
	bool timed_out, cancelled;
	int nomem;
	peer_dns_srv *srv;    /* the SRV phase's reply, parsed */
	int srv_status;	      /* its c-ares status */
	int first_status;     /* of the A/AAAA phase: the first failure that is no NODATA */
	int addr_notfound;    /* A/AAAA queries answered NXDOMAIN */
	int addr_queries;     /* A/AAAA queries made */
	peer_dns_found found; /* addresses so far */
} resolution;

typedef struct addr_query {
	resolution *r;
	int family;
	uint16_t port;
} addr_query;

static void on_srv(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	(void)timeouts;
	resolution *r = arg;
	r->pending--;
	r->srv_status = status;
	if (status != ARES_SUCCESS)
		return;
	int rc = peer_dns_parse_srv(abuf, alen, r->srv);
	if (rc == -ENOMEM)
		r->nomem = 1;
	/* A reply with no SRV record in it is no SRV answer: fall back as for NODATA. */
	r->srv_status = rc == -ENOENT ? ARES_ENODATA : rc ? ARES_EBADRESP : ARES_SUCCESS;
}

static void on_addr(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	(void)timeouts;
	addr_query *q = arg;
	resolution *r = q->r;
	r->pending--;
	if (status == ARES_SUCCESS) {
		int rc = peer_dns_parse_addrs(abuf, alen, q->family, q->port, &r->found);
		if (rc == -ENOMEM)
			r->nomem = 1;
		status = rc >= 0 ? ARES_SUCCESS : rc == -ENOENT ? ARES_ENODATA : ARES_EBADRESP;
	}
	if (status == ARES_ENOTFOUND)
		r->addr_notfound++;
	else if (status != ARES_SUCCESS && status != ARES_ENODATA && !r->first_status)
		r->first_status = status;
	mem_free(q);
}

static int query_addr(resolution *r, const char *name, int family, uint16_t port)
{
	addr_query *q = mem_alloc(sizeof(*q));
	if (!q)
		return -ENOMEM;
	*q = (addr_query){.r = r, .family = family, .port = port};
	r->pending++;
	r->addr_queries++;
	ares_query(r->ch, name, ns_c_in, family == AF_INET ? ns_t_a : ns_t_aaaa, on_addr, q);
	return 0;
}

/* Runs the channel until no query is pending, the deadline passes or the caller cancels;
 * the last two cancel the queries left, whose callbacks run (ARES_ECANCELLED) before this
 * returns, so nothing of theirs outlives the call. */
static void drive(resolution *r, long long deadline)
{
	while (r->pending > 0) {
		long long left = deadline - now_ms();
		if (left <= 0 || (r->o->cancelled && r->o->cancelled(r->o->cancel_arg))) {
			if (left <= 0)
				r->timed_out = true;
			else
				r->cancelled = true;
			ares_cancel(r->ch);
			return;
		}
		ares_socket_t socks[ARES_GETSOCK_MAXNUM];
		int bits = ares_getsock(r->ch, socks, ARES_GETSOCK_MAXNUM);
		struct pollfd pfd[ARES_GETSOCK_MAXNUM];
		nfds_t n = 0;
		/* Not ARES_GETSOCK_WRITABLE: its 1 << 31 on an int is undefined behaviour
		 * (UBSan says so) for the last socket. */
		unsigned mask = (unsigned)bits;
		for (unsigned i = 0; i < ARES_GETSOCK_MAXNUM; i++) {
			short ev = (short)((mask & 1u << i ? POLLIN : 0) |
					   (mask & 1u << (i + ARES_GETSOCK_MAXNUM) ? POLLOUT : 0));
			if (!ev)
				continue;
			pfd[n++] = (struct pollfd){.fd = socks[i], .events = ev};
		}
		if (left > POLL_SLICE_MS)
			left = POLL_SLICE_MS;
		struct timeval max = {.tv_sec = left / 1000, .tv_usec = (left % 1000) * 1000}, tv;
		struct timeval *t = ares_timeout(r->ch, &max, &tv);
		int ms = (int)(t->tv_sec * 1000 + (t->tv_usec + 999) / 1000);
		int ready = poll(pfd, n, ms);
		if (ready <= 0) {
			/* Timeouts of queries are c-ares' to act on (the next try or server). */
			ares_process_fd(r->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
			continue;
		}
		for (nfds_t i = 0; i < n; i++) {
			if (!pfd[i].revents)
				continue;
			/* An error or hang-up is given as readable: the read reports it. */
			bool rd = pfd[i].revents & (POLLIN | POLLERR | POLLHUP);
			ares_process_fd(r->ch, rd ? pfd[i].fd : ARES_SOCKET_BAD,
					pfd[i].revents & POLLOUT ? pfd[i].fd : ARES_SOCKET_BAD);
		}
	}
}

static int channel_open(resolution *r, char *err, size_t cap)
{
	const peer_dns_opts *o = r->o;
	pthread_once(&lib_once, lib_init);
	if (lib_status != ARES_SUCCESS) {
		snprintf(err, cap, "c-ares: %s", ares_strerror(lib_status));
		return -EIO;
	}
	struct ares_options opt = {
		.timeout = o->timeout_ms > 0 ? o->timeout_ms : DEFAULT_TIMEOUT_MS,
		.tries = o->tries > 0 ? o->tries : DEFAULT_TRIES,
		/* ares_query never searches; this keeps resolv.conf's "search" out of it all. */
		.flags = ARES_FLAG_NOSEARCH,
	};
	/* c-ares 1.18 answers SERVFAIL and REFUSED by trying the next server, and when none
	 * is left reports ECONNREFUSED, as for a server that is down. With one server given
	 * there is no next one: take its answer as it is, so that the error says what it
	 * said. */
	if (o->server && o->server[0])
		opt.flags |= ARES_FLAG_NOCHECKRESP;
	int rc = ares_init_options(&r->ch, &opt,
				   ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_FLAGS);
	if (rc != ARES_SUCCESS) {
		snprintf(err, cap, "c-ares: cannot start a resolver: %s", ares_strerror(rc));
		return rc == ARES_ENOMEM ? -ENOMEM : -EIO;
	}
	if (o->server && o->server[0]) {
		if (peer_dns_check_server(o->server, err, cap)) {
			ares_destroy(r->ch);
			return -EINVAL;
		}
		rc = ares_set_servers_ports_csv(r->ch, o->server);
		if (rc != ARES_SUCCESS) {
			snprintf(err, cap, "DNS server '%s': %s", o->server, ares_strerror(rc));
			ares_destroy(r->ch);
			return rc == ARES_ENOMEM ? -ENOMEM : -EINVAL;
		}
	}
	return 0;
}

/* The error of a failed query, said for name. */
static int fail(const resolution *r, int status, const char *name, const char *what, char *err,
		size_t cap)
{
	if (r->nomem || status == ARES_ENOMEM) {
		snprintf(err, cap, "%s: out of memory", name);
		return -ENOMEM;
	}
	if (r->cancelled) {
		snprintf(err, cap, "%s: cancelled", name);
		return -ECANCELED;
	}
	if (r->timed_out || status == ARES_ETIMEOUT) {
		snprintf(err, cap, "%s: no answer from %s in time (timeout)", name, r->server);
		return -ETIMEDOUT;
	}
	switch (status) {
	case ARES_ENOTFOUND:
		snprintf(err, cap, "%s: no such domain (NXDOMAIN)", name);
		return -ENOENT;
	case ARES_ENODATA:
		snprintf(err, cap, "%s: no %s record", name, what);
		return -ENOENT;
	case ARES_ECONNREFUSED:
		/* From the system's resolvers this may also be SERVFAIL or REFUSED from each. */
		snprintf(err, cap, "%s: DNS server %s unreachable (connection refused)%s", name,
			 r->server,
			 r->o->server && r->o->server[0] ? "" : ", or each refused the query");
		return -ECONNREFUSED;
	case ARES_ESERVFAIL:
		snprintf(err, cap, "%s: server failure (SERVFAIL) from %s", name, r->server);
		return -EIO;
	case ARES_EREFUSED:
		snprintf(err, cap, "%s: query refused (REFUSED) by %s", name, r->server);
		return -EIO;
	case ARES_EBADNAME:
		snprintf(err, cap, "%s: not a name DNS can look up", name);
		return -EINVAL;
	default:
		snprintf(err, cap, "%s: DNS error from %s: %s", name, r->server,
			 ares_strerror(status));
		return -EIO;
	}
}

/* Why the A/AAAA queries found nothing: the first real failure, else NXDOMAIN when every
 * query had it, else no record. */
static int addr_status(const resolution *r)
{
	if (r->first_status)
		return r->first_status;
	return r->addr_notfound == r->addr_queries ? ARES_ENOTFOUND : ARES_ENODATA;
}

/* The addresses of the SRV targets: glue where the reply had it, else A and AAAA queries
 * (a target that is an address literal is taken as it is). */
static void resolve_targets(resolution *r, long long deadline)
{
	peer_dns_srv *s = r->srv;
	for (size_t i = 0; i < s->ntargets; i++) {
		const peer_dns_target *t = &s->targets[i];
		unsigned char ip[16];
		if (s->has_glue[i])
			continue;
		int family = inet_pton(AF_INET, t->name, ip) == 1    ? AF_INET
			     : inet_pton(AF_INET6, t->name, ip) == 1 ? AF_INET6
								     : 0;
		if (family) {
			peer_dns_found_add(&r->found, family, ip, t->port);
			continue;
		}
		if (query_addr(r, t->name, AF_INET, t->port) ||
		    query_addr(r, t->name, AF_INET6, t->port)) {
			r->nomem = 1;
			break;
		}
	}
	for (size_t i = 0; i < s->glue.n; i++)
		peer_dns_found_add(&r->found, s->glue.a[i].family, s->glue.a[i].ip,
				   s->glue.a[i].port);
	drive(r, deadline);
}

int peer_dns_resolve(const peer_dns_opts *o, const char *name, uint16_t default_port,
		     peer_dns_list *out, char *err, size_t cap)
{
	memset(out, 0, sizeof(*out));
	int rc = peer_dns_check_name(name, err, cap);
	if (rc)
		return rc;
	resolution *r = mem_calloc(1, sizeof(*r));
	peer_dns_srv *srv = mem_alloc(sizeof(*srv));
	if (!r || !srv) {
		mem_free(r);
		mem_free(srv);
		snprintf(err, cap, "%s: out of memory", name);
		return -ENOMEM;
	}
	r->o = o;
	r->srv = srv;
	r->server = o->server && o->server[0] ? o->server : "the system's resolvers";
	long long deadline = now_ms() + (o->total_ms > 0 ? o->total_ms : DEFAULT_TOTAL_MS);
	rc = channel_open(r, err, cap);
	if (rc)
		goto done;

	char qname[sizeof(SRV_PREFIX) + NAME_MAX_LEN + 1];
	snprintf(qname, sizeof(qname), "%s%s", SRV_PREFIX, name);
	r->pending = 1;
	ares_query(r->ch, qname, ns_c_in, ns_t_srv, on_srv, r);
	drive(r, deadline);
	if (r->srv_status == ARES_SUCCESS) {
		if (srv->no_service) {
			snprintf(err, cap, "%s: the SRV record says no service is offered ('.')",
				 qname);
			rc = -ENOENT;
			goto close;
		}
		if (!srv->ntargets) {
			snprintf(err, cap, "%s: no SRV record names a usable target", qname);
			rc = -ENOENT;
			goto close;
		}
		resolve_targets(r, deadline);
		if (!r->found.n) {
			rc = fail(r, addr_status(r), srv->targets[0].name, "A or AAAA", err, cap);
			goto close;
		}
	} else if (r->srv_status == ARES_ENODATA || r->srv_status == ARES_ENOTFOUND) {
		/* No SRV record: the name's own addresses. Any other failure (timeout, a
		 * server down) is said at once: falling back would only wait for it again. */
		if (query_addr(r, name, AF_INET, default_port) ||
		    query_addr(r, name, AF_INET6, default_port))
			r->nomem = 1;
		drive(r, deadline);
		if (!r->found.n) {
			rc = fail(r, addr_status(r), name, "SRV, A or AAAA", err, cap);
			goto close;
		}
	} else {
		rc = fail(r, r->srv_status, qname, "SRV", err, cap);
		goto close;
	}
	if (r->nomem || r->cancelled) {
		rc = fail(r, ARES_SUCCESS, name, "", err, cap);
		goto close;
	}
	/* Some queries may have failed or run out of time: what came is the answer, as a
	 * partial list is better for the mesh than none (the next round completes it). */
	peer_dns_finish(&r->found, out);
	if (r->srv_status == ARES_SUCCESS && srv->dropped)
		out->truncated = true;
close:
	ares_destroy(r->ch);
done:
	mem_free(srv);
	mem_free(r);
	return rc;
}

int peer_dns_discover(const char *name, const char *dns_server, uint16_t own_port,
		      bool (*cancelled)(void *arg), void *arg, peer_dns_list *out, char *err,
		      size_t cap)
{
	peer_dns_opts o = {.server = dns_server, .cancelled = cancelled, .cancel_arg = arg};
	return peer_dns_resolve(&o, name, own_port, out, err, cap);
}

static bool list_has(const peer_dns_list *l, const char *addr)
{
	for (size_t i = 0; i < l->n; i++)
		if (!strcmp(l->addr[i], addr))
			return true;
	return false;
}

/* Quadratic, but on two lists of at most PEER_DNS_MAX_PEERS: simpler than a merge in the
 * lists' numeric order, and nothing next to the DNS round trip. */
void peer_dns_diff(const peer_dns_list *old, const peer_dns_list *now,
		   void (*gone)(void *arg, const char *addr),
		   void (*added)(void *arg, const char *addr), void *arg)
{
	for (size_t i = 0; gone && i < old->n; i++)
		if (!list_has(now, old->addr[i]))
			gone(arg, old->addr[i]);
	for (size_t i = 0; added && i < now->n; i++)
		if (!list_has(old, now->addr[i]))
			added(arg, now->addr[i]);
}
