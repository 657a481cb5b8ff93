/* Parsing DNS replies for peer discovery (peer_dns.h): peer data, so every step is bounded
 * by the reply's length and the fixed caps of the header, whatever the record counts in
 * the reply claim. c-ares parses the answers; the additional section (glue), which its
 * parsers do not read, is walked here. */
#include <ares.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "services/peer_dns.h"

#define DNS_HEADER_LEN 12
#define DNS_CLASS_IN 1
#define DNS_TYPE_A 1
#define DNS_TYPE_AAAA 28

static int ares_errno(int status)
{
	switch (status) {
	case ARES_ENOMEM:
		return -ENOMEM;
	case ARES_ENODATA:
		return -ENOENT;
	default:
		return -EIO;
	}
}

static unsigned rd16(const unsigned char *p) { return (unsigned)p[0] << 8 | p[1]; }

/* Steps over an encoded name at *p; a compression pointer ends it (where it points is
 * ares_expand_name's concern). -EIO when the name runs past end or uses a reserved label
 * type. */
static int skip_name(const unsigned char **p, const unsigned char *end)
{
	const unsigned char *q = *p;
	for (;;) {
		if (q >= end)
			return -EIO;
		unsigned len = *q;
		if ((len & 0xc0) == 0xc0) {
			if (end - q < 2)
				return -EIO;
			*p = q + 2;
			return 0;
		}
		if (len & 0xc0)
			return -EIO;
		q++;
		if (!len) {
			*p = q;
			return 0;
		}
		if ((size_t)(end - q) < len)
			return -EIO;
		q += len;
	}
}

/* Index of the target named name (any port: glue is per name), or -1. */
static int target_index(const peer_dns_srv *s, const char *name, size_t from)
{
	for (size_t i = from; i < s->ntargets; i++)
		if (!strcasecmp(s->targets[i].name, name))
			return (int)i;
	return -1;
}

void peer_dns_found_add(peer_dns_found *f, int family, const void *ip, uint16_t port)
{
	if (f->n == PEER_DNS_MAX_FOUND) {
		f->dropped = true;
		return;
	}
	peer_dns_addr *a = &f->a[f->n++];
	memset(a, 0, sizeof(*a));
	a->family = (uint8_t)family;
	memcpy(a->ip, ip, family == AF_INET ? 4 : 16);
	a->port = port;
}

/* The additional section's A and AAAA records for the targets already in s: every section
 * is walked, since the counts before it say nothing of where it starts. */
static int read_glue(const unsigned char *abuf, int alen, peer_dns_srv *s)
{
	if (alen < DNS_HEADER_LEN)
		return -EIO;
	const unsigned char *p = abuf + DNS_HEADER_LEN, *end = abuf + alen;
	unsigned qd = rd16(abuf + 4), an = rd16(abuf + 6), ns = rd16(abuf + 8),
		 ar = rd16(abuf + 10);
	for (unsigned i = 0; i < qd; i++) {
		if (skip_name(&p, end) || end - p < 4)
			return -EIO;
		p += 4;
	}
	for (unsigned i = 0; i < an + ns + ar; i++) {
		const unsigned char *owner = p;
		if (skip_name(&p, end) || end - p < 10)
			return -EIO;
		unsigned type = rd16(p), class = rd16(p + 2), rdlen = rd16(p + 8);
		p += 10;
		if ((size_t)(end - p) < rdlen)
			return -EIO;
		const unsigned char *rdata = p;
		p += rdlen;
		if (i < an + ns || class != DNS_CLASS_IN ||
		    !((type == DNS_TYPE_A && rdlen == 4) || (type == DNS_TYPE_AAAA && rdlen == 16)))
			continue;
		char *name = NULL;
		long enclen;
		int rc = ares_expand_name(owner, abuf, alen, &name, &enclen);
		if (rc != ARES_SUCCESS)
			return ares_errno(rc);
		/* One name may be the target of several records with different ports. */
		for (int t = target_index(s, name, 0); t >= 0;
		     t = target_index(s, name, (size_t)t + 1)) {
			peer_dns_found_add(&s->glue, type == DNS_TYPE_A ? AF_INET : AF_INET6, rdata,
					   s->targets[t].port);
			s->has_glue[t] = true;
		}
		ares_free_string(name);
	}
	return 0;
}

static int target_cmp(const peer_dns_target *a, const char *name, uint16_t port)
{
	int c = strcasecmp(a->name, name);
	return c ? c : (int)a->port - (int)port;
}

/* Inserts (name, port) in name order, keeping the first PEER_DNS_MAX_TARGETS of that
 * order: which targets are kept does not depend on the order of the records. */
static void target_add(peer_dns_srv *s, const char *name, uint16_t port)
{
	size_t i = 0;
	while (i < s->ntargets && target_cmp(&s->targets[i], name, port) < 0)
		i++;
	if (i < s->ntargets && !target_cmp(&s->targets[i], name, port))
		return;
	if (i == PEER_DNS_MAX_TARGETS) {
		s->dropped = true;
		return;
	}
	if (s->ntargets == PEER_DNS_MAX_TARGETS) {
		s->dropped = true;
		s->ntargets--;
	}
	memmove(&s->targets[i + 1], &s->targets[i], (s->ntargets - i) * sizeof(s->targets[0]));
	s->ntargets++;
	snprintf(s->targets[i].name, sizeof(s->targets[i].name), "%s", name);
	s->targets[i].port = port;
}

int peer_dns_parse_srv(const unsigned char *abuf, int alen, peer_dns_srv *out)
{
	memset(out, 0, sizeof(*out));
	struct ares_srv_reply *srv = NULL;
	int rc = ares_parse_srv_reply(abuf, alen, &srv);
	if (rc != ARES_SUCCESS)
		return ares_errno(rc);
	if (!srv)
		return -ENOENT;
	/* Only the lowest priority group: RFC 2782 makes the others fallbacks for when the
	 * group is unreachable, and a mesh that linked them too would route through nodes
	 * meant to stand by. */
	unsigned low = 0xffff;
	for (struct ares_srv_reply *r = srv; r; r = r->next)
		if (r->priority < low)
			low = r->priority;
	out->priority = (uint16_t)low;
	bool dot = false;
	for (struct ares_srv_reply *r = srv; r; r = r->next) {
		if (r->priority != low)
			continue;
		/* "." (the empty name here) says the service is not offered there; too long a
		 * name (c-ares escapes odd bytes) cannot be a host to look up. */
		if (!r->host[0])
			dot = true;
		else if (strlen(r->host) < PEER_DNS_NAME_LEN && r->port)
			target_add(out, r->host, r->port);
	}
	ares_free_data(srv);
	out->no_service = dot && !out->ntargets;
	return read_glue(abuf, alen, out);
}

int peer_dns_parse_addrs(const unsigned char *abuf, int alen, int family, uint16_t port,
			 peer_dns_found *out)
{
	/* As many as the list can take: more would be dropped anyway. */
	enum { CAP = PEER_DNS_MAX_FOUND };
	int n = CAP, rc;
	if (family == AF_INET) {
		struct ares_addrttl v4[CAP];
		rc = ares_parse_a_reply(abuf, alen, NULL, v4, &n);
		for (int i = 0; rc == ARES_SUCCESS && i < n; i++)
			peer_dns_found_add(out, AF_INET, &v4[i].ipaddr, port);
	} else {
		struct ares_addr6ttl v6[CAP];
		rc = ares_parse_aaaa_reply(abuf, alen, NULL, v6, &n);
		for (int i = 0; rc == ARES_SUCCESS && i < n; i++)
			peer_dns_found_add(out, AF_INET6, &v6[i].ip6addr, port);
	}
	if (rc != ARES_SUCCESS)
		return ares_errno(rc);
	/* c-ares says success for a reply holding only a CNAME: no address is no record. */
	return n ? n : -ENOENT;
}

static int addr_cmp(const void *pa, const void *pb)
{
	const peer_dns_addr *a = pa, *b = pb;
	if (a->family != b->family)
		return a->family == AF_INET ? -1 : 1;
	int c = memcmp(a->ip, b->ip, sizeof(a->ip));
	return c ? c : (int)a->port - (int)b->port;
}

void peer_dns_finish(peer_dns_found *found, peer_dns_list *list)
{
	memset(list, 0, sizeof(*list));
	qsort(found->a, found->n, sizeof(found->a[0]), addr_cmp);
	for (size_t i = 0; i < found->n; i++) {
		const peer_dns_addr *a = &found->a[i];
		if (i && !addr_cmp(a, &found->a[i - 1]))
			continue;
		if (list->n == PEER_DNS_MAX_PEERS) {
			list->truncated = true;
			break;
		}
		char ip[INET6_ADDRSTRLEN];
		inet_ntop(a->family, a->ip, ip, sizeof(ip));
		snprintf(list->addr[list->n++], PEER_DNS_ADDR_LEN,
			 a->family == AF_INET ? "%s:%u" : "[%s]:%u", ip, a->port);
	}
	if (found->dropped)
		list->truncated = true;
}
