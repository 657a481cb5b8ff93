/* The wire guards: the frame scanner sees every frame whatever the read boundaries, the
 * glitch classification, the rate limiter's burst and refill, gRPC's ping policy, and the
 * connection admission caps. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "h2/admit.h"
#include "h2/frame.h"
#include "h2/ping_policy.h"
#include "h2/rate_limit.h"

#define MAX_SEEN 64

typedef struct seen {
	frame_info f[MAX_SEEN];
	size_t n;
} seen;

static void record(void *user, const frame_info *f)
{
	seen *s = user;
	assert_true(s->n < MAX_SEEN);
	s->f[s->n++] = *f;
}

static size_t put_frame(uint8_t *out, uint8_t type, uint8_t flags, uint32_t sid,
			const uint8_t *payload, uint32_t len)
{
	out[0] = (uint8_t)(len >> 16);
	out[1] = (uint8_t)(len >> 8);
	out[2] = (uint8_t)len;
	out[3] = type;
	out[4] = flags;
	out[5] = (uint8_t)(sid >> 24);
	out[6] = (uint8_t)(sid >> 16);
	out[7] = (uint8_t)(sid >> 8);
	out[8] = (uint8_t)sid;
	if (len)
		memcpy(out + 9, payload, len);
	return 9 + len;
}

static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/* A byte stream of several frames, including padded DATA and a split header block. */
static size_t sample_stream(uint8_t *buf)
{
	size_t n = 0;
	memcpy(buf, preface, 24);
	n += 24;
	uint8_t settings[6] = {0, 4, 0, 0, 0xff, 0xff};
	n += put_frame(buf + n, FRAME_SETTINGS, 0, 0, settings, 6);
	uint8_t block[20] = {0};
	n += put_frame(buf + n, FRAME_HEADERS, 0, 1, block, 20);
	n += put_frame(buf + n, FRAME_CONTINUATION, FRAME_FLAG_END_HEADERS, 1, block, 5);
	uint8_t padded_empty[4] = {3, 0, 0, 0}; /* pad length 3, no data */
	n += put_frame(buf + n, FRAME_DATA, FRAME_FLAG_PADDED, 1, padded_empty, 4);
	uint8_t padded_data[6] = {2, 'a', 'b', 'c', 0, 0};
	n += put_frame(buf + n, FRAME_DATA, FRAME_FLAG_PADDED, 1, padded_data, 6);
	n += put_frame(buf + n, FRAME_DATA, FRAME_FLAG_END_STREAM, 1, NULL, 0);
	uint8_t ping[8] = {1, 2, 3, 4, 5, 6, 7, 8};
	n += put_frame(buf + n, FRAME_PING, 0, 0, ping, 8);
	n += put_frame(buf + n, 0xfa, 0, 0, ping, 3); /* a type HTTP/2 does not define */
	return n;
}

static void check_sample(const seen *s)
{
	assert_int_equal(s->n, 8);
	assert_int_equal(s->f[0].type, FRAME_SETTINGS);
	assert_int_equal(s->f[0].length, 6);
	assert_int_equal(s->f[1].type, FRAME_HEADERS);
	assert_int_equal(s->f[1].stream_id, 1);
	assert_int_equal(s->f[2].type, FRAME_CONTINUATION);
	assert_int_equal(s->f[3].type, FRAME_DATA);
	assert_int_equal(s->f[3].data_length, 0);
	assert_int_equal(s->f[4].data_length, 3);
	assert_int_equal(s->f[5].data_length, 0);
	assert_int_equal(s->f[6].type, FRAME_PING);
	assert_int_equal(s->f[7].type, 0xfa);
	assert_int_equal(s->f[7].length, 3);

	assert_false(frame_is_glitch(&s->f[1]));
	assert_true(frame_is_glitch(&s->f[3]));	 /* empty, padded, no END_STREAM */
	assert_false(frame_is_glitch(&s->f[4])); /* carries data */
	assert_false(frame_is_glitch(&s->f[5])); /* empty but ends the stream */
	assert_true(frame_is_glitch(&s->f[0]));
	assert_true(frame_is_glitch(&s->f[6]));
	assert_true(frame_is_glitch(&s->f[7]));
}

static void test_scan_whole_and_bytewise(void **state)
{
	(void)state;
	uint8_t buf[512];
	size_t n = sample_stream(buf);

	seen whole = {0};
	frame_scan sc;
	frame_scan_init(&sc, true);
	frame_scan_feed(&sc, buf, n, record, &whole);
	check_sample(&whole);

	/* Every split point of every read must give the same frames. */
	for (size_t step = 1; step <= 13; step++) {
		seen parts = {0};
		frame_scan_init(&sc, true);
		for (size_t off = 0; off < n; off += step)
			frame_scan_feed(&sc, buf + off, off + step <= n ? step : n - off, record,
					&parts);
		check_sample(&parts);
	}
}

static void test_scan_header_block_state(void **state)
{
	(void)state;
	uint8_t buf[256], block[10] = {0};
	frame_scan sc;
	seen s = {0};
	frame_scan_init(&sc, false);
	size_t n = put_frame(buf, FRAME_HEADERS, 0, 1, block, 10);
	/* Inside the HEADERS frame, then after it: still in the block (no END_HEADERS). */
	frame_scan_feed(&sc, buf, 12, record, &s);
	assert_true(frame_scan_in_header_block(&sc));
	frame_scan_feed(&sc, buf + 12, n - 12, record, &s);
	assert_true(frame_scan_in_header_block(&sc));
	size_t m = put_frame(buf, FRAME_CONTINUATION, FRAME_FLAG_END_HEADERS, 1, block, 10);
	frame_scan_feed(&sc, buf, m - 1, record, &s);
	assert_true(frame_scan_in_header_block(&sc)); /* the last byte is still to come */
	frame_scan_feed(&sc, buf + m - 1, 1, record, &s);
	assert_false(frame_scan_in_header_block(&sc));
	/* A complete HEADERS frame with END_HEADERS: the block ends with the frame. */
	m = put_frame(buf, FRAME_HEADERS, FRAME_FLAG_END_HEADERS | FRAME_FLAG_END_STREAM, 3, block,
		      10);
	frame_scan_feed(&sc, buf, m, record, &s);
	assert_false(frame_scan_in_header_block(&sc));
	assert_int_equal(s.n, 3);
}

static void test_acks_are_not_glitches(void **state)
{
	(void)state;
	frame_info f = {.type = FRAME_SETTINGS, .flags = FRAME_FLAG_ACK};
	assert_false(frame_is_glitch(&f));
	f.type = FRAME_PING;
	assert_false(frame_is_glitch(&f));
	f = (frame_info){.type = FRAME_PRIORITY};
	assert_true(frame_is_glitch(&f));
	f = (frame_info){.type = FRAME_WINDOW_UPDATE};
	assert_false(frame_is_glitch(&f));
	f = (frame_info){.type = FRAME_RST_STREAM};
	assert_false(frame_is_glitch(&f)); /* nghttp2's own rate limit counts these */
}

#define SEC 1000000000LL

static void test_rate_limit_burst_and_refill(void **state)
{
	(void)state;
	rate_limit r;
	rate_limit_init(&r, 10, 5);
	int64_t t = 1000 * SEC;
	for (int i = 0; i < 5; i++)
		assert_true(rate_limit_take(&r, t));
	assert_false(rate_limit_take(&r, t));
	assert_false(rate_limit_take(&r, t + SEC / 20)); /* half an interval: not yet */
	assert_true(rate_limit_take(&r, t + SEC / 10));	 /* one interval: one more */
	assert_false(rate_limit_take(&r, t + SEC / 10));
	/* Long quiet: the burst is back, never more. */
	t += 100 * SEC;
	for (int i = 0; i < 5; i++)
		assert_true(rate_limit_take(&r, t));
	assert_false(rate_limit_take(&r, t));
	/* A steady 10/s stream is never refused. */
	for (int i = 1; i <= 1000; i++)
		assert_true(rate_limit_take(&r, t + i * (SEC / 10) + SEC));
}

static void test_rate_limit_zero_is_off(void **state)
{
	(void)state;
	rate_limit r;
	rate_limit_init(&r, 0, 1);
	for (int i = 0; i < 100000; i++)
		assert_true(rate_limit_take(&r, 5));
}

static void test_ping_policy(void **state)
{
	(void)state;
	ping_policy p;
	ping_policy_init(&p, 300 * SEC, 7200 * SEC, 2);
	int64_t t = 10 * SEC;
	assert_false(ping_policy_on_ping(&p, t, false));	   /* first: no strike */
	assert_false(ping_policy_on_ping(&p, t + SEC, false));	   /* strike 1 */
	assert_false(ping_policy_on_ping(&p, t + 2 * SEC, false)); /* strike 2 */
	assert_true(ping_policy_on_ping(&p, t + 3 * SEC, false));  /* strike 3: over */

	/* Data sent between pings forgives them (gRPC's BDP pings follow our data). */
	ping_policy_init(&p, 300 * SEC, 7200 * SEC, 2);
	for (int i = 0; i < 100; i++) {
		assert_false(ping_policy_on_ping(&p, t + i, false));
		ping_policy_reset(&p);
	}
	/* Pings spaced by the allowed interval are fine forever. */
	ping_policy_init(&p, 300 * SEC, 7200 * SEC, 2);
	for (int i = 0; i < 100; i++)
		assert_false(ping_policy_on_ping(&p, t + i * 300 * SEC, false));
	/* Without calls, the allowed interval is the longer one. */
	ping_policy_init(&p, 300 * SEC, 7200 * SEC, 0);
	assert_false(ping_policy_on_ping(&p, t, true));
	assert_true(ping_policy_on_ping(&p, t + 400 * SEC, true));
	/* 0 interval: no policy. */
	ping_policy_init(&p, 0, 0, 0);
	for (int i = 0; i < 100; i++)
		assert_false(ping_policy_on_ping(&p, t, false));
}

static struct sockaddr_in v4(const char *ip, int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	inet_pton(AF_INET, ip, &a.sin_addr);
	return a;
}

static void test_admit_caps(void **state)
{
	(void)state;
	admit *a = admit_new(10, 3);
	assert_non_null(a);
	struct sockaddr_in x = v4("10.0.0.1", 1000), y = v4("10.0.0.2", 1000);
	for (int i = 0; i < 3; i++)
		assert_int_equal(admit_take(a, (struct sockaddr *)&x), ADMIT_OK);
	/* Another port of the same address is the same peer. */
	struct sockaddr_in x2 = v4("10.0.0.1", 2000);
	assert_int_equal(admit_take(a, (struct sockaddr *)&x2), ADMIT_PEER);
	assert_int_equal(admit_take(a, (struct sockaddr *)&y), ADMIT_OK);
	admit_release(a, (struct sockaddr *)&x);
	assert_int_equal(admit_take(a, (struct sockaddr *)&x2), ADMIT_OK);
	assert_int_equal(admit_total(a), 4);

	/* The total cap, across many peers. */
	char ip[32];
	struct sockaddr_in peers[8];
	for (int i = 0; i < 6; i++) {
		snprintf(ip, sizeof(ip), "192.168.1.%d", i + 1);
		peers[i] = v4(ip, 1);
		assert_int_equal(admit_take(a, (struct sockaddr *)&peers[i]), ADMIT_OK);
	}
	assert_int_equal(admit_total(a), 10);
	peers[6] = v4("192.168.1.99", 1);
	assert_int_equal(admit_take(a, (struct sockaddr *)&peers[6]), ADMIT_TOTAL);
	admit_release(a, (struct sockaddr *)&peers[0]);
	assert_int_equal(admit_take(a, (struct sockaddr *)&peers[6]), ADMIT_OK);
	admit_free(a);
}

/* Many peers come and go: the table keeps exact counts through growth and deletions. */
static void test_admit_churn(void **state)
{
	(void)state;
	enum { PEERS = 500 };
	admit *a = admit_new(0, 2);
	assert_non_null(a);
	struct sockaddr_in6 p[PEERS];
	for (int i = 0; i < PEERS; i++) {
		memset(&p[i], 0, sizeof(p[i]));
		p[i].sin6_family = AF_INET6;
		p[i].sin6_addr.s6_addr[0] = 0x20;
		p[i].sin6_addr.s6_addr[14] = (uint8_t)(i >> 8);
		p[i].sin6_addr.s6_addr[15] = (uint8_t)i;
		assert_int_equal(admit_take(a, (struct sockaddr *)&p[i]), ADMIT_OK);
		assert_int_equal(admit_take(a, (struct sockaddr *)&p[i]), ADMIT_OK);
	}
	for (int i = 0; i < PEERS; i += 2) {
		admit_release(a, (struct sockaddr *)&p[i]);
		admit_release(a, (struct sockaddr *)&p[i]);
	}
	for (int i = 0; i < PEERS; i++) {
		int want = i % 2 ? ADMIT_PEER : ADMIT_OK;
		assert_int_equal(admit_take(a, (struct sockaddr *)&p[i]), want);
	}
	assert_int_equal(admit_total(a), PEERS + PEERS / 2);
	admit_free(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_scan_whole_and_bytewise),
		cmocka_unit_test(test_scan_header_block_state),
		cmocka_unit_test(test_acks_are_not_glitches),
		cmocka_unit_test(test_rate_limit_burst_and_refill),
		cmocka_unit_test(test_rate_limit_zero_is_off),
		cmocka_unit_test(test_ping_policy),
		cmocka_unit_test(test_admit_caps),
		cmocka_unit_test(test_admit_churn),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
