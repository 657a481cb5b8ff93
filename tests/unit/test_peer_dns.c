/* Peer discovery by DNS without a server (the end-to-end test has one): the checks of the
 * settings, the SRV parser on a reply as dnsmasq sends it (glue, priorities, the "."
 * target), the order and bounds of the answer, and the diff the mesh acts on. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "services/peer_dns.h"

/* ---- a reply builder ---- */

typedef struct msg {
	unsigned char b[4096];
	int n;
} msg;

static void put16(msg *m, unsigned v)
{
	m->b[m->n++] = (unsigned char)(v >> 8);
	m->b[m->n++] = (unsigned char)v;
}

static void put_name(msg *m, const char *name)
{
	while (*name) {
		const char *dot = strchr(name, '.');
		size_t len = dot ? (size_t)(dot - name) : strlen(name);
		m->b[m->n++] = (unsigned char)len;
		memcpy(m->b + m->n, name, len);
		m->n += (int)len;
		name += len + (dot ? 1 : 0);
	}
	m->b[m->n++] = 0;
}

static void header(msg *m, const char *qname, unsigned qtype, unsigned an, unsigned ar)
{
	m->n = 0;
	put16(m, 0x4242);
	put16(m, 0x8180);
	put16(m, 1);
	put16(m, an);
	put16(m, 0);
	put16(m, ar);
	put_name(m, qname);
	put16(m, qtype);
	put16(m, 1);
}

static void rr_head(msg *m, const char *owner, unsigned type, unsigned rdlen)
{
	put_name(m, owner);
	put16(m, type);
	put16(m, 1);
	put16(m, 0);
	put16(m, 30);
	put16(m, rdlen);
}

static void srv_rr(msg *m, const char *owner, unsigned prio, unsigned port, const char *target)
{
	rr_head(m, owner, 33, 6 + (unsigned)strlen(target) + (target[0] ? 2 : 1));
	put16(m, prio);
	put16(m, 0);
	put16(m, port);
	put_name(m, target);
}

static void a_rr(msg *m, const char *owner, const char *ip)
{
	rr_head(m, owner, 1, 4);
	inet_pton(AF_INET, ip, m->b + m->n);
	m->n += 4;
}

#define Q "_grpc._tcp.svc.mesh.test"

static void settings_are_checked(void **state)
{
	(void)state;
	char err[256];
	assert_int_equal(peer_dns_check_name("svc.mesh.test", err, sizeof(err)), 0);
	assert_int_equal(peer_dns_check_name("svc.mesh.test.", err, sizeof(err)), 0);
	assert_int_equal(peer_dns_check_name("my_svc-1", err, sizeof(err)), 0);
	assert_int_equal(peer_dns_check_name("", err, sizeof(err)), -EINVAL);
	assert_int_equal(peer_dns_check_name("a..b", err, sizeof(err)), -EINVAL);
	assert_int_equal(peer_dns_check_name(".a", err, sizeof(err)), -EINVAL);
	assert_int_equal(peer_dns_check_name("a b", err, sizeof(err)), -EINVAL);
	char longlabel[80];
	memset(longlabel, 'x', 64);
	longlabel[64] = 0;
	assert_int_equal(peer_dns_check_name(longlabel, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "63"));
	char longname[300];
	for (int i = 0; i < 60; i++)
		memcpy(longname + 5 * i, "abcd.", 5);
	longname[243] = 0; /* 243 characters: "_grpc._tcp." would not fit */
	assert_int_equal(peer_dns_check_name(longname, err, sizeof(err)), -EINVAL);

	assert_int_equal(peer_dns_check_server("127.0.0.1:5353", err, sizeof(err)), 0);
	assert_int_equal(peer_dns_check_server("127.0.0.1", err, sizeof(err)), 0);
	assert_int_equal(peer_dns_check_server("[::1]:53", err, sizeof(err)), 0);
	assert_int_equal(peer_dns_check_server("[::1]", err, sizeof(err)), 0);
	const char *bad[] = {"localhost:53", "127.0.0.1:0",  "127.0.0.1:65536",
			     "127.0.0.1:",   "::1:53",	     "[::1:53",
			     "[::1]x",	     "127.0.0.1:+5", ""};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(peer_dns_check_server(bad[i], err, sizeof(err)), -EINVAL);
}

static void srv_lowest_group_with_glue(void **state)
{
	(void)state;
	msg m;
	header(&m, Q, 33, 4, 2);
	srv_rr(&m, Q, 0, 7002, "n2.mesh.test");
	srv_rr(&m, Q, 0, 7001, "N1.mesh.test");
	srv_rr(&m, Q, 3, 7003, "n3.mesh.test");
	srv_rr(&m, Q, 0, 7001, "n1.mesh.test"); /* the same target again, other case */
	a_rr(&m, "n1.mesh.test", "10.0.0.1");
	a_rr(&m, "n3.mesh.test", "10.0.0.3"); /* glue for a target left out */
	peer_dns_srv *s = malloc(sizeof(*s));
	assert_int_equal(peer_dns_parse_srv(m.b, m.n, s), 0);
	assert_int_equal(s->priority, 0);
	assert_int_equal(s->ntargets, 2);
	assert_string_equal(s->targets[0].name, "N1.mesh.test");
	assert_int_equal(s->targets[0].port, 7001);
	assert_string_equal(s->targets[1].name, "n2.mesh.test");
	assert_true(s->has_glue[0]);
	assert_false(s->has_glue[1]);
	assert_int_equal(s->glue.n, 1);
	peer_dns_list l;
	peer_dns_finish(&s->glue, &l);
	assert_int_equal(l.n, 1);
	assert_string_equal(l.addr[0], "10.0.0.1:7001");

	header(&m, Q, 33, 1, 0);
	srv_rr(&m, Q, 0, 0, "");
	assert_int_equal(peer_dns_parse_srv(m.b, m.n, s), 0);
	assert_true(s->no_service);
	assert_int_equal(s->ntargets, 0);

	header(&m, Q, 33, 0, 0);
	assert_int_equal(peer_dns_parse_srv(m.b, m.n, s), -ENOENT);
	header(&m, Q, 33, 1, 0);
	srv_rr(&m, Q, 0, 1, "x.mesh.test");
	assert_int_equal(peer_dns_parse_srv(m.b, m.n - 3, s), -EIO);
	free(s);
}

static void a_reply_follows_cname(void **state)
{
	(void)state;
	msg m;
	header(&m, "alias.mesh.test", 1, 2, 0);
	rr_head(&m, "alias.mesh.test", 5, 16);
	put_name(&m, "real.mesh.test");
	a_rr(&m, "real.mesh.test", "10.0.0.9");
	peer_dns_found f = {0};
	assert_int_equal(peer_dns_parse_addrs(m.b, m.n, AF_INET, 99, &f), 1);
	assert_int_equal(f.a[0].port, 99);
	assert_int_equal(peer_dns_parse_addrs(m.b, m.n, AF_INET6, 99, &f), -ENOENT);
}

static void answer_is_sorted_distinct_bounded(void **state)
{
	(void)state;
	peer_dns_found *f = calloc(1, sizeof(*f));
	uint8_t v6[16] = {0xfd, 0}, v4[4] = {10, 0, 0, 10};
	peer_dns_found_add(f, AF_INET6, v6, 1);
	peer_dns_found_add(f, AF_INET, v4, 2);
	v4[3] = 2;
	peer_dns_found_add(f, AF_INET, v4, 2);
	peer_dns_found_add(f, AF_INET, v4, 2);
	peer_dns_found_add(f, AF_INET, v4, 1);
	peer_dns_list l;
	peer_dns_finish(f, &l);
	assert_int_equal(l.n, 4);
	/* Numeric order, not text order: 10.0.0.2 before 10.0.0.10. */
	assert_string_equal(l.addr[0], "10.0.0.2:1");
	assert_string_equal(l.addr[1], "10.0.0.2:2");
	assert_string_equal(l.addr[2], "10.0.0.10:2");
	assert_string_equal(l.addr[3], "[fd00::]:1");
	assert_false(l.truncated);

	memset(f, 0, sizeof(*f));
	for (unsigned i = 0; i < PEER_DNS_MAX_FOUND + 5; i++) {
		uint8_t ip[4] = {10, 1, (uint8_t)(i >> 8), (uint8_t)i};
		peer_dns_found_add(f, AF_INET, ip, 50051);
	}
	assert_true(f->dropped);
	peer_dns_finish(f, &l);
	assert_int_equal(l.n, PEER_DNS_MAX_PEERS);
	assert_true(l.truncated);
	assert_string_equal(l.addr[0], "10.1.0.0:50051");
	free(f);
}

typedef struct seen {
	char gone[8][PEER_DNS_ADDR_LEN], added[8][PEER_DNS_ADDR_LEN];
	int ngone, nadded;
} seen;

static void on_gone(void *arg, const char *a)
{
	seen *s = arg;
	snprintf(s->gone[s->ngone++], PEER_DNS_ADDR_LEN, "%s", a);
}

static void on_added(void *arg, const char *a)
{
	seen *s = arg;
	snprintf(s->added[s->nadded++], PEER_DNS_ADDR_LEN, "%s", a);
}

static void diff_names_gone_and_added(void **state)
{
	(void)state;
	peer_dns_list old = {.n = 3}, now = {.n = 2};
	strcpy(old.addr[0], "10.0.0.1:1");
	strcpy(old.addr[1], "10.0.0.2:1");
	strcpy(old.addr[2], "[fd00::1]:1");
	strcpy(now.addr[0], "10.0.0.2:1");
	strcpy(now.addr[1], "10.0.0.3:1");
	seen s = {0};
	peer_dns_diff(&old, &now, on_gone, on_added, &s);
	assert_int_equal(s.ngone, 2);
	assert_string_equal(s.gone[0], "10.0.0.1:1");
	assert_string_equal(s.gone[1], "[fd00::1]:1");
	assert_int_equal(s.nadded, 1);
	assert_string_equal(s.added[0], "10.0.0.3:1");
	memset(&s, 0, sizeof(s));
	peer_dns_diff(&now, &now, on_gone, on_added, &s);
	assert_int_equal(s.ngone + s.nadded, 0);
}

static void bad_input_fails_before_any_query(void **state)
{
	(void)state;
	peer_dns_opts o = {.server = "not-an-ip:53"};
	peer_dns_list l;
	char err[256];
	assert_int_equal(peer_dns_resolve(&o, "svc.mesh.test", 1, &l, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not-an-ip"));
	o.server = "127.0.0.1:9";
	assert_int_equal(peer_dns_resolve(&o, "bad name", 1, &l, err, sizeof(err)), -EINVAL);
	assert_int_equal(l.n, 0);
}

static int polls;

static bool cancel_on_second_look(void *arg)
{
	(void)arg;
	return ++polls >= 2;
}

/* A server that takes the query and never answers: the cancel flag, looked at about every
 * 100 ms, ends the call long before its timeouts would. */
static void cancel_ends_a_waiting_call(void **state)
{
	(void)state;
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	socklen_t len = sizeof(sa);
	getsockname(fd, (struct sockaddr *)&sa, &len);
	char server[64];
	snprintf(server, sizeof(server), "127.0.0.1:%u", ntohs(sa.sin_port));
	peer_dns_opts o = {.server = server,
			   .timeout_ms = 5000,
			   .total_ms = 10000,
			   .cancelled = cancel_on_second_look};
	peer_dns_list l;
	char err[256];
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(peer_dns_resolve(&o, "svc.mesh.test", 1, &l, err, sizeof(err)),
			 -ECANCELED);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double took = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	assert_true(took < 2.0);
	assert_int_equal(polls, 2);
	assert_non_null(strstr(err, "cancelled"));
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(settings_are_checked),
		cmocka_unit_test(srv_lowest_group_with_glue),
		cmocka_unit_test(a_reply_follows_cname),
		cmocka_unit_test(answer_is_sorted_distinct_bounded),
		cmocka_unit_test(diff_names_gone_and_added),
		cmocka_unit_test(bad_input_fails_before_any_query),
		cmocka_unit_test(cancel_ends_a_waiting_call),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
