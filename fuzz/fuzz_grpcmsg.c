/* The gRPC message reader fed a stream in pieces whose sizes come from the input, checked
 * against a one-pass reference parse of the whole stream: the same messages, the same
 * error at the same byte, whatever the split.
 *
 * Input: 2 bytes max message length (little-endian), 1 byte piece-table size k (mod 8,
 * plus 1), k piece sizes (used in turn), then the stream. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "h2/grpcmsg.h"

typedef struct ref_msg {
	size_t off, len; /* payload position in the stream */
	bool compressed;
} ref_msg;

typedef struct ref {
	ref_msg *msgs;
	size_t n;
	int err;	     /* 0 or the GRPCMSG_ error */
	size_t err_consumed; /* stream bytes consumed when the error is reported */
	bool partial;
} ref;

static void ref_parse(ref *r, const uint8_t *s, size_t len, size_t max_len)
{
	size_t pos = 0;
	r->n = 0;
	r->err = 0;
	while (len - pos >= GRPCMSG_PREFIX_LEN) {
		uint32_t n = (uint32_t)s[pos + 1] << 24 | (uint32_t)s[pos + 2] << 16 |
			     (uint32_t)s[pos + 3] << 8 | s[pos + 4];
		if (s[pos] > 1 || n > max_len) {
			r->err = s[pos] > 1 ? GRPCMSG_BAD_FLAG : GRPCMSG_TOO_LARGE;
			r->err_consumed = pos + GRPCMSG_PREFIX_LEN;
			r->partial = true;
			return;
		}
		if (len - pos - GRPCMSG_PREFIX_LEN < n)
			break;
		r->msgs[r->n++] = (ref_msg){pos + GRPCMSG_PREFIX_LEN, n, s[pos] == 1};
		pos += GRPCMSG_PREFIX_LEN + n;
	}
	r->partial = pos < len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 3)
		return 0;
	size_t max_len = (size_t)data[0] | (size_t)data[1] << 8;
	size_t k = data[2] % 8 + 1;
	if (size < 3 + k)
		return 0;
	const uint8_t *pieces = data + 3;
	size_t pieces_sum = 0;
	for (size_t i = 0; i < k; i++)
		pieces_sum += pieces[i];
	const uint8_t *s = data + 3 + k;
	size_t len = size - 3 - k;

	ref r;
	r.msgs = malloc((len / GRPCMSG_PREFIX_LEN + 1) * sizeof(*r.msgs));
	CHECK(r.msgs);
	ref_parse(&r, s, len, max_len);

	grpcmsg_reader d;
	grpcmsg_reader_init(&d, max_len);
	size_t off = 0, got = 0, turn = 0;
	int err = 0;
	while (off < len && !err) {
		/* All-zero piece tables still make progress, one byte at a time. */
		size_t piece = pieces_sum ? pieces[turn++ % k] : 1;
		if (piece > len - off)
			piece = len - off;
		const uint8_t *p = s + off;
		size_t left = piece;
		for (;;) {
			const uint8_t *msg;
			size_t msg_len;
			bool compressed;
			int rc = grpcmsg_reader_next(&d, &p, &left, &msg, &msg_len, &compressed);
			CHECK(p + left == s + off + piece);
			if (rc == GRPCMSG_NEED_MORE) {
				/* Nothing is left behind: the reader took every byte given. */
				CHECK(left == 0);
				break;
			}
			if (rc != GRPCMSG_MESSAGE) {
				CHECK(rc == r.err);
				CHECK(got == r.n);
				CHECK((size_t)(p - s) == r.err_consumed);
				err = rc;
				break;
			}
			CHECK(msg_len <= max_len);
			CHECK(got < r.n);
			CHECK(msg_len == r.msgs[got].len);
			CHECK(compressed == r.msgs[got].compressed);
			CHECK(msg != NULL);
			CHECK(!msg_len || !memcmp(msg, s + r.msgs[got].off, msg_len));
			CHECK((size_t)(p - s) == r.msgs[got].off + msg_len);
			got++;
		}
		off += piece;
	}
	if (!err) {
		CHECK(r.err == 0);
		CHECK(got == r.n);
	}
	CHECK(grpcmsg_reader_partial(&d) == r.partial);
	/* Memory follows the bytes that arrived, never a declared length alone: at most twice
	 * them, rounded up to the buffer pool's size class (at most 1.25x). */
	CHECK(d.body.cap <= 2 * len + len / 2 + 256);
	grpcmsg_reader_free(&d);
	free(r.msgs);
	return 0;
}
