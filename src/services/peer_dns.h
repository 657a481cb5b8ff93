/* Peer discovery by DNS (`--peers-dns NAME`, issue 17): the addresses a name stands for,
 * as the mesh links to them. SRV records `_grpc._tcp.NAME` first (a Kubernetes headless
 * Service publishes one per pod); when the name has none, its A and AAAA records with the
 * node's own port.
 *
 * peer_dns_resolve blocks (c-ares on a private channel, driven by poll), so it runs on a
 * pool thread, never on a reactor. It is bounded in time (opts.total_ms) and in what it
 * returns (PEER_DNS_MAX_PEERS). DNS replies are peer data: the parsers below take any
 * bytes (fuzz/fuzz_peer_dns.c) and hold no state between calls, so any number of threads
 * may resolve at once. */
#ifndef SERVICES_PEER_DNS_H
#define SERVICES_PEER_DNS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Peers returned at most; more found are cut (list.truncated), the first in sort order
 * kept, so that every node of a mesh keeps the same ones. */
#define PEER_DNS_MAX_PEERS 64
/* Addresses gathered before sorting: bounds the work a huge reply can cause. */
#define PEER_DNS_MAX_FOUND 256
/* SRV targets followed, lowest priority group only, in name order. */
#define PEER_DNS_MAX_TARGETS 64
/* "[" IPv6 "]:" port and a NUL. */
#define PEER_DNS_ADDR_LEN 56
/* A DNS name in text form, and a NUL. */
#define PEER_DNS_NAME_LEN 256

typedef struct peer_dns_opts {
	/* "IP:PORT" or "[IPv6]:PORT" (the port may be left out: 53), NULL or "": the
	 * system's resolvers (/etc/resolv.conf). Numeric: no DNS to find the DNS. */
	const char *server;
	int timeout_ms; /* per try, doubled by c-ares at each round; 0: 1000 */
	int tries;	/* per query and server; 0: 2 */
	int total_ms;	/* the whole call, whatever the queries; 0: 5000 */
	/* Polled about every 100 ms; true ends the call with -ECANCELED (pool_job_cancelled
	 * of the job running it, so that a stopping node does not wait for DNS). */
	bool (*cancelled)(void *arg);
	void *cancel_arg;
} peer_dns_opts;

/* One address: family AF_INET (ip[0..4)) or AF_INET6 (ip[0..16)), port in host order. */
typedef struct peer_dns_addr {
	uint8_t family;
	uint8_t ip[16];
	uint16_t port;
} peer_dns_addr;

/* Addresses as they are found: unsorted, maybe repeated, at most PEER_DNS_MAX_FOUND (the
 * rest dropped, dropped set). */
typedef struct peer_dns_found {
	size_t n;
	bool dropped;
	peer_dns_addr a[PEER_DNS_MAX_FOUND];
} peer_dns_found;

/* The answer: "IP:PORT" / "[IPv6]:PORT" strings, numeric, sorted (IPv4 before IPv6, then
 * by address bytes, then port) and distinct. */
typedef struct peer_dns_list {
	size_t n;
	bool truncated; /* more than PEER_DNS_MAX_PEERS found, or SRV targets cut */
	char addr[PEER_DNS_MAX_PEERS][PEER_DNS_ADDR_LEN];
} peer_dns_list;

typedef struct peer_dns_target {
	char name[PEER_DNS_NAME_LEN]; /* without the final dot */
	uint16_t port;
} peer_dns_target;

/* What a reply to the SRV query says. */
typedef struct peer_dns_srv {
	uint16_t priority; /* of the group kept: the lowest */
	size_t ntargets;   /* distinct (name, port), sorted by name then port */
	bool dropped;	   /* more targets than PEER_DNS_MAX_TARGETS in the group */
	bool no_service;   /* the group's only target is ".": the service is not offered */
	peer_dns_target targets[PEER_DNS_MAX_TARGETS];
	/* The additional section's A and AAAA records, each for the target of the same index
	 * (glue: a server that sends it saves a query per target); port already the target's. */
	peer_dns_found glue;
	bool has_glue[PEER_DNS_MAX_TARGETS];
} peer_dns_srv;

/* ---- the resolver ---- */

/* Resolves name (see above) into out. Blocking: a pool thread's, never a reactor's.
 * default_port goes with A/AAAA answers to NAME itself (SRV records carry their own).
 * Returns 0 with out->n >= 1, or a negative errno with err[0..cap) saying why, out->n 0:
 * -EINVAL bad name or server, -ENOENT NXDOMAIN or no record (or SRV saying no service),
 * -ETIMEDOUT no answer in time, -ECONNREFUSED server unreachable, -EIO other DNS
 * failures (SERVFAIL, REFUSED, bad reply), -ECANCELED, -ENOMEM. */
int peer_dns_resolve(const peer_dns_opts *o, const char *name, uint16_t default_port,
		     peer_dns_list *out, char *err, size_t cap);

/* For the mesh's re-resolution (every --peers-dns-interval seconds, as a pool job):
 * peer_dns_resolve with the node's settings, default timeouts, and the job's cancel flag
 * through cancelled/arg (NULL: none). dns_server NULL or "" for the system's resolvers. */
int peer_dns_discover(const char *name, const char *dns_server, uint16_t own_port,
		      bool (*cancelled)(void *arg), void *arg, peer_dns_list *out, char *err,
		      size_t cap);

/* Compares two answers (each of distinct addresses, as peer_dns_resolve makes them): gone(arg,
 * addr) for each address of old not in now (drop the link), added(arg, addr) for each of
 * now not in old (make one). Either callback may be NULL. */
void peer_dns_diff(const peer_dns_list *old, const peer_dns_list *now,
		   void (*gone)(void *arg, const char *addr),
		   void (*added)(void *arg, const char *addr), void *arg);

/* ---- settings (collector_open checks them, config.c stores them) ---- */

/* 0 when name can be looked up: 1 to 242 characters (so that "_grpc._tcp." fits in a
 * DNS name), labels of 1 to 63 of A-Z a-z 0-9 - _, an optional final dot; else -EINVAL
 * and why in err. */
int peer_dns_check_name(const char *name, char *err, size_t cap);
/* 0 when server is a numeric IP[:PORT] or [IPv6][:PORT] with a port in 1..65535; else
 * -EINVAL and why in err. */
int peer_dns_check_server(const char *server, char *err, size_t cap);

/* ---- the parsers of replies (peer data) ---- */

/* The SRV reply abuf[0..alen) into out (zeroed first). 0, or -EIO when the reply does not
 * parse, -ENOENT when it has no SRV record, -ENOMEM. */
int peer_dns_parse_srv(const unsigned char *abuf, int alen, peer_dns_srv *out);
/* The A (family AF_INET) or AAAA (AF_INET6) records of the reply abuf[0..alen), each with
 * port, appended to out. Returns how many were added (>= 1), or -EIO / -ENOENT (none) /
 * -ENOMEM as above. CNAME chains are followed (the answer's records for the name asked). */
int peer_dns_parse_addrs(const unsigned char *abuf, int alen, int family, uint16_t port,
			 peer_dns_found *out);
/* Appends one address (ip: 4 or 16 bytes by family), or sets f->dropped when full. */
void peer_dns_found_add(peer_dns_found *f, int family, const void *ip, uint16_t port);
/* Sorts and de-duplicates found into list (formatted, at most PEER_DNS_MAX_PEERS). */
void peer_dns_finish(peer_dns_found *found, peer_dns_list *list);

#endif
