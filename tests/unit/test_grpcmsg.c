/* The gRPC message reader: messages whole however the bytes are split, limits enforced on the
 * prefix, bad flags refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "h2/grpcmsg.h"

/* A stream of messages and what the reader should yield from it. */
#define MAX_MSGS 64
typedef struct stream {
	buf wire;
	size_t n;
	size_t len[MAX_MSGS];
	size_t off[MAX_MSGS]; /* payload offset in wire */
	bool compressed[MAX_MSGS];
} stream;

static void stream_add(stream *s, size_t len, bool compressed, uint8_t seed)
{
	uint8_t prefix[GRPCMSG_PREFIX_LEN];
	grpcmsg_prefix(prefix, compressed, (uint32_t)len);
	assert_int_equal(buf_append(&s->wire, prefix, sizeof(prefix)), 0);
	s->off[s->n] = s->wire.len;
	s->len[s->n] = len;
	s->compressed[s->n] = compressed;
	s->n++;
	assert_int_equal(buf_reserve(&s->wire, len), 0);
	for (size_t i = 0; i < len; i++)
		s->wire.data[s->wire.len++] = (uint8_t)(seed + i * 7);
}

/* Feeds s->wire in pieces of sizes given by next_piece and checks every message. */
static void feed_and_check(const stream *s, size_t max_len, size_t (*next_piece)(size_t i))
{
	grpcmsg_reader d;
	grpcmsg_reader_init(&d, max_len);
	size_t pos = 0, got = 0;
	for (size_t piece = 0; pos < s->wire.len; piece++) {
		size_t n = next_piece(piece);
		if (n > s->wire.len - pos)
			n = s->wire.len - pos;
		const uint8_t *data = s->wire.data + pos;
		size_t len = n;
		for (;;) {
			const uint8_t *msg;
			size_t msg_len;
			bool compressed;
			int rc = grpcmsg_reader_next(&d, &data, &len, &msg, &msg_len, &compressed);
			if (rc == GRPCMSG_NEED_MORE) {
				assert_int_equal(len, 0);
				break;
			}
			assert_int_equal(rc, GRPCMSG_MESSAGE);
			assert_true(got < s->n);
			assert_int_equal(msg_len, s->len[got]);
			assert_int_equal(compressed, s->compressed[got]);
			if (msg_len)
				assert_memory_equal(msg, s->wire.data + s->off[got], msg_len);
			/* The message ends exactly where the consumed input ends. */
			assert_int_equal((size_t)(data - s->wire.data), s->off[got] + s->len[got]);
			got++;
		}
		pos += n;
		bool at_boundary =
			got < s->n ? pos == s->off[got] - GRPCMSG_PREFIX_LEN : pos == s->wire.len;
		assert_int_equal(grpcmsg_reader_partial(&d), !at_boundary);
	}
	assert_int_equal(got, s->n);
	assert_false(grpcmsg_reader_partial(&d));
	grpcmsg_reader_free(&d);
}

static size_t piece_one(size_t i)
{
	(void)i;
	return 1;
}

static size_t piece_all(size_t i)
{
	(void)i;
	return SIZE_MAX;
}

static size_t piece_random(size_t i)
{
	/* Deterministic and irregular: sizes 0..37, zero-length feeds included. */
	return (i * 2654435761u >> 7) % 38;
}

static size_t piece_prime(size_t i)
{
	(void)i;
	return 4099;
}

static void make_mixed(stream *s)
{
	memset(s, 0, sizeof(*s));
	stream_add(s, 3, false, 1);
	stream_add(s, 0, false, 0);
	stream_add(s, 0, true, 0);
	stream_add(s, 1, true, 2);
	stream_add(s, 4, false, 3);
	stream_add(s, 5, false, 4);
	stream_add(s, 6, true, 5);
	stream_add(s, 1000, false, 6);
	stream_add(s, 70000, true, 7); /* past the size the reader keeps between messages */
	stream_add(s, 2, false, 8);
	stream_add(s, 0, false, 0);
}

static void test_whole_feed(void **state)
{
	(void)state;
	stream s;
	make_mixed(&s);
	feed_and_check(&s, 1 << 20, piece_all);
	buf_free(&s.wire);
}

static void test_byte_by_byte(void **state)
{
	(void)state;
	stream s;
	make_mixed(&s);
	feed_and_check(&s, 1 << 20, piece_one);
	buf_free(&s.wire);
}

static void test_irregular_pieces(void **state)
{
	(void)state;
	stream s;
	make_mixed(&s);
	feed_and_check(&s, 1 << 20, piece_random);
	feed_and_check(&s, 1 << 20, piece_prime);
	buf_free(&s.wire);
}

static void test_zero_copy_when_whole(void **state)
{
	(void)state;
	stream s;
	memset(&s, 0, sizeof(s));
	stream_add(&s, 100, false, 9);
	grpcmsg_reader d;
	grpcmsg_reader_init(&d, 1000);
	const uint8_t *data = s.wire.data, *msg;
	size_t len = s.wire.len, msg_len;
	bool compressed;
	assert_int_equal(grpcmsg_reader_next(&d, &data, &len, &msg, &msg_len, &compressed),
			 GRPCMSG_MESSAGE);
	/* A message whole in one input is handed out in place, not copied. */
	assert_ptr_equal(msg, s.wire.data + GRPCMSG_PREFIX_LEN);
	assert_int_equal(d.body.cap, 0);
	grpcmsg_reader_free(&d);
	buf_free(&s.wire);
}

static void test_zero_length_messages(void **state)
{
	(void)state;
	const uint8_t wire[] = {0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0};
	grpcmsg_reader d;
	grpcmsg_reader_init(&d, 0);
	const uint8_t *data = wire, *msg;
	size_t len = sizeof(wire), msg_len = 99;
	bool compressed = true;
	for (int i = 0; i < 3; i++) {
		assert_int_equal(grpcmsg_reader_next(&d, &data, &len, &msg, &msg_len, &compressed),
				 GRPCMSG_MESSAGE);
		assert_int_equal(msg_len, 0);
		assert_non_null(msg);
		assert_int_equal(compressed, i == 1);
		assert_int_equal(len, sizeof(wire) - 5 * (size_t)(i + 1));
	}
	assert_int_equal(grpcmsg_reader_next(&d, &data, &len, &msg, &msg_len, &compressed),
			 GRPCMSG_NEED_MORE);
	assert_false(grpcmsg_reader_partial(&d));
	grpcmsg_reader_free(&d);
}

static void test_size_at_limit(void **state)
{
	(void)state;
	stream s;
	memset(&s, 0, sizeof(s));
	stream_add(&s, 1024, false, 1);
	feed_and_check(&s, 1024, piece_one);
	feed_and_check(&s, 1024, piece_all);
	buf_free(&s.wire);
}

static void test_size_over_limit(void **state)
{
	(void)state;
	/* Only the prefix is given: the verdict must come before any payload arrives. */
	uint8_t prefix[GRPCMSG_PREFIX_LEN];
	grpcmsg_prefix(prefix, false, 1025);
	grpcmsg_reader d;
	grpcmsg_reader_init(&d, 1024);
	const uint8_t *data = prefix, *msg;
	size_t len = 4, msg_len;
	bool compressed;
	assert_int_equal(grpcmsg_reader_next(&d, &data, &len, &msg, &msg_len, &compressed),
			 GRPCMSG_NEED_MORE);
	assert_true(grpcmsg_reader_partial(&d));
	len = 1;
	assert_int_equal(grpcmsg_reader_next(&d, &data, &len, &msg, &msg_len, &compressed),
			 GRPCMSG_TOO_LARGE);
	assert_int_equal(len, 0);
	assert_int_equal(d.body.cap, 0);
	/* The error sticks: later payload bytes are not mistaken for a new prefix. */
	const uint8_t more[] = {0, 0, 0, 0, 0};
	data = more;
	len = sizeof(more);
	assert_int_equal(grpcmsg_reader_next(&d, &data, &len, &msg, &msg_len, &compressed),
			 GRPCMSG_TOO_LARGE);
	grpcmsg_reader_free(&d);
}

static void test_huge_declared_length_no_allocation(void **state)
{
	(void)state;
	uint8_t wire[GRPCMSG_PREFIX_LEN + 10] = {0};
	grpcmsg_prefix(wire, true, UINT32_MAX);
	grpcmsg_reader d;
	grpcmsg_reader_init(&d, SIZE_MAX);
	const uint8_t *data = wire, *msg;
	size_t len = sizeof(wire), msg_len;
	bool compressed;
	assert_int_equal(grpcmsg_reader_next(&d, &data, &len, &msg, &msg_len, &compressed),
			 GRPCMSG_NEED_MORE);
	assert_int_equal(len, 0);
	/* 4 GiB declared, 10 bytes sent: memory follows what arrived. */
	assert_true(d.body.cap < 4096);
	assert_true(grpcmsg_reader_partial(&d));
	grpcmsg_reader_free(&d);
}

static void test_max_zero(void **state)
{
	(void)state;
	const uint8_t wire[] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 'x'};
	grpcmsg_reader d;
	grpcmsg_reader_init(&d, 0);
	const uint8_t *data = wire, *msg;
	size_t len = sizeof(wire), msg_len;
	bool compressed;
	assert_int_equal(grpcmsg_reader_next(&d, &data, &len, &msg, &msg_len, &compressed),
			 GRPCMSG_MESSAGE);
	assert_int_equal(grpcmsg_reader_next(&d, &data, &len, &msg, &msg_len, &compressed),
			 GRPCMSG_TOO_LARGE);
	grpcmsg_reader_free(&d);
}

static void test_bad_flags(void **state)
{
	(void)state;
	const uint8_t flags[] = {2, 3, 0x80, 0xFF};
	for (size_t i = 0; i < sizeof(flags); i++) {
		const uint8_t wire[] = {flags[i], 0, 0, 0, 1, 'a'};
		grpcmsg_reader d;
		grpcmsg_reader_init(&d, 100);
		const uint8_t *data = wire, *msg;
		size_t len = sizeof(wire), msg_len;
		bool compressed;
		assert_int_equal(grpcmsg_reader_next(&d, &data, &len, &msg, &msg_len, &compressed),
				 GRPCMSG_BAD_FLAG);
		/* The flag is checked once the prefix is whole, not later. */
		assert_int_equal(len, 1);
		assert_int_equal(grpcmsg_reader_next(&d, &data, &len, &msg, &msg_len, &compressed),
				 GRPCMSG_BAD_FLAG);
		grpcmsg_reader_free(&d);
	}
	/* A bad flag after a good message: the good one still comes out first. */
	const uint8_t wire[] = {1, 0, 0, 0, 1, 'a', 7, 0, 0, 0, 0};
	grpcmsg_reader d;
	grpcmsg_reader_init(&d, 100);
	const uint8_t *data = wire, *msg;
	size_t len = sizeof(wire), msg_len;
	bool compressed = false;
	assert_int_equal(grpcmsg_reader_next(&d, &data, &len, &msg, &msg_len, &compressed),
			 GRPCMSG_MESSAGE);
	assert_true(compressed);
	assert_int_equal(msg_len, 1);
	assert_int_equal(msg[0], 'a');
	assert_int_equal(grpcmsg_reader_next(&d, &data, &len, &msg, &msg_len, &compressed),
			 GRPCMSG_BAD_FLAG);
	grpcmsg_reader_free(&d);
}

static void test_empty_input(void **state)
{
	(void)state;
	grpcmsg_reader d;
	grpcmsg_reader_init(&d, 100);
	const uint8_t *data = NULL, *msg;
	size_t len = 0, msg_len;
	bool compressed;
	assert_int_equal(grpcmsg_reader_next(&d, &data, &len, &msg, &msg_len, &compressed),
			 GRPCMSG_NEED_MORE);
	assert_false(grpcmsg_reader_partial(&d));
	grpcmsg_reader_free(&d);
}

static void test_grpcmsg_prefix(void **state)
{
	(void)state;
	uint8_t p[GRPCMSG_PREFIX_LEN];
	grpcmsg_prefix(p, true, 0x01020304);
	const uint8_t want[] = {1, 1, 2, 3, 4};
	assert_memory_equal(p, want, sizeof(want));
	grpcmsg_prefix(p, false, UINT32_MAX);
	const uint8_t want2[] = {0, 0xFF, 0xFF, 0xFF, 0xFF};
	assert_memory_equal(p, want2, sizeof(want2));
}

static void test_reuse_after_free(void **state)
{
	(void)state;
	/* grpcmsg_reader_free drops a half-read message; the reader starts clean after it. */
	stream s;
	memset(&s, 0, sizeof(s));
	stream_add(&s, 10, false, 1);
	grpcmsg_reader d;
	grpcmsg_reader_init(&d, 100);
	const uint8_t *data = s.wire.data, *msg;
	size_t len = 8, msg_len;
	bool compressed;
	assert_int_equal(grpcmsg_reader_next(&d, &data, &len, &msg, &msg_len, &compressed),
			 GRPCMSG_NEED_MORE);
	grpcmsg_reader_free(&d);
	assert_false(grpcmsg_reader_partial(&d));
	data = s.wire.data;
	len = s.wire.len;
	assert_int_equal(grpcmsg_reader_next(&d, &data, &len, &msg, &msg_len, &compressed),
			 GRPCMSG_MESSAGE);
	assert_int_equal(msg_len, 10);
	grpcmsg_reader_free(&d);
	buf_free(&s.wire);
}

/* A queue refilled before it drains (a stream held near its high-water mark) keeps a
 * buffer of about what it holds, not of everything that went through it; the bytes come
 * out in order. */
static void test_queue_refilled_stays_small(void **state)
{
	(void)state;
	grpcmsg_queue q = {0};
	static uint8_t msg[1000], out[700];
	size_t sent = 0, got = 0;
	for (int i = 0; i < 5000; i++) {
		memset(msg, (uint8_t)i, sizeof(msg));
		assert_int_equal(grpcmsg_queue_push(&q, msg, sizeof(msg), false), 0);
		sent += sizeof(msg) + GRPCMSG_PREFIX_LEN;
		/* Pull a little less than was pushed, so it never drains. */
		while (grpcmsg_queue_pending(&q) > 3000) {
			size_t n = grpcmsg_queue_pull(&q, out, sizeof(out));
			size_t at = got % (sizeof(msg) + GRPCMSG_PREFIX_LEN);
			if (at >= GRPCMSG_PREFIX_LEN)
				assert_int_equal(out[0], (uint8_t)(got / (sizeof(msg) +
									  GRPCMSG_PREFIX_LEN)));
			got += n;
		}
		assert_true(q.data.cap <= 16 * 1024);
	}
	assert_int_equal(sent - got, grpcmsg_queue_pending(&q));
	grpcmsg_queue_free(&q);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_whole_feed),
		cmocka_unit_test(test_byte_by_byte),
		cmocka_unit_test(test_irregular_pieces),
		cmocka_unit_test(test_zero_copy_when_whole),
		cmocka_unit_test(test_zero_length_messages),
		cmocka_unit_test(test_size_at_limit),
		cmocka_unit_test(test_size_over_limit),
		cmocka_unit_test(test_huge_declared_length_no_allocation),
		cmocka_unit_test(test_max_zero),
		cmocka_unit_test(test_bad_flags),
		cmocka_unit_test(test_empty_input),
		cmocka_unit_test(test_grpcmsg_prefix),
		cmocka_unit_test(test_reuse_after_free),
		cmocka_unit_test(test_queue_refilled_stays_small),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
