/* DNS replies for peer discovery (services/peer_dns.h) on arbitrary bytes: a reply is
 * peer data, from any server the node is pointed at or anyone who can spoof one. Each
 * input is parsed as the reply to the SRV query and to the A and AAAA queries; what comes
 * out is bounded, sorted, distinct, and every address printed parses back. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fuzz_check.h"
#include "services/peer_dns.h"

/* Every entry of the list is "IP:PORT" or "[IPv6]:PORT" of an address that was found. */
static void check_list(const peer_dns_list *l, const peer_dns_found *f)
{
	CHECK(l->n <= PEER_DNS_MAX_PEERS);
	CHECK(l->n <= f->n);
	CHECK(f->n || !l->n);
	for (size_t i = 0; i < l->n; i++) {
		const char *s = l->addr[i];
		CHECK(strlen(s) < PEER_DNS_ADDR_LEN);
		char host[PEER_DNS_ADDR_LEN];
		const char *colon = strrchr(s, ':');
		CHECK(colon);
		size_t n = (size_t)(colon - s);
		unsigned char ip[16];
		if (s[0] == '[') {
			CHECK(n >= 2 && s[n - 1] == ']');
			memcpy(host, s + 1, n - 2);
			host[n - 2] = 0;
			CHECK(inet_pton(AF_INET6, host, ip) == 1);
		} else {
			memcpy(host, s, n);
			host[n] = 0;
			CHECK(inet_pton(AF_INET, host, ip) == 1);
		}
		char *end;
		unsigned long port = strtoul(colon + 1, &end, 10);
		CHECK(!*end && port <= 65535);
		for (size_t j = 0; j < i; j++)
			CHECK(strcmp(l->addr[j], s));
	}
}

static void srv(const uint8_t *data, int len)
{
	peer_dns_srv *s = malloc(sizeof(*s));
	CHECK(s);
	int rc = peer_dns_parse_srv(data, len, s);
	if (!rc) {
		CHECK(s->ntargets <= PEER_DNS_MAX_TARGETS);
		CHECK(!s->no_service || !s->ntargets);
		for (size_t i = 0; i < s->ntargets; i++) {
			const peer_dns_target *t = &s->targets[i];
			CHECK(t->name[0] && strlen(t->name) < PEER_DNS_NAME_LEN);
			CHECK(t->port);
			if (i) {
				const peer_dns_target *p = &s->targets[i - 1];
				int c = strcasecmp(p->name, t->name);
				CHECK(c < 0 || (!c && p->port < t->port));
			}
		}
		for (size_t i = s->ntargets; i < PEER_DNS_MAX_TARGETS; i++)
			CHECK(!s->has_glue[i]);
		CHECK(s->glue.n <= PEER_DNS_MAX_FOUND);
		for (size_t i = 0; i < s->glue.n; i++) {
			bool port_of_target = false;
			for (size_t k = 0; k < s->ntargets; k++)
				port_of_target |= s->targets[k].port == s->glue.a[i].port;
			CHECK(port_of_target);
		}
		peer_dns_list l;
		peer_dns_finish(&s->glue, &l);
		check_list(&l, &s->glue);
	}
	free(s);
}

static void addrs(const uint8_t *data, int len, int family)
{
	peer_dns_found *f = calloc(1, sizeof(*f));
	CHECK(f);
	int rc = peer_dns_parse_addrs(data, len, family, 50051, f);
	CHECK(rc < 0 || (rc > 0 && (size_t)rc == f->n));
	CHECK(f->n <= PEER_DNS_MAX_FOUND);
	for (size_t i = 0; i < f->n; i++)
		CHECK(f->a[i].family == family && f->a[i].port == 50051);
	/* Twice into the same set: the list is the same, every address once. */
	if (rc > 0) {
		peer_dns_list once, twice;
		peer_dns_finish(f, &once);
		check_list(&once, f);
		peer_dns_parse_addrs(data, len, family, 50051, f);
		peer_dns_finish(f, &twice);
		CHECK(once.n == twice.n || twice.truncated);
	}
	free(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* A reply over TCP is at most 65535 bytes; c-ares takes its length as an int. */
	if (size > 65535)
		return 0;
	srv(data, (int)size);
	addrs(data, (int)size, AF_INET);
	addrs(data, (int)size, AF_INET6);
	return 0;
}
