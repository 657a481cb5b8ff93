/* The receiver's checks of a collection transfer (services/transfer_rx.h): a stream that
 * matches its manifest reaches the sink whole, piece by piece, whatever the chunking; each
 * way of getting it wrong is refused with its code. */
#include <openssl/evp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/buf.h"
#include "base/mem.h"
#include "h2/status.h"
#include "services/transfer_rx.h"

/* The sink: what each piece received, by path. */
typedef struct piece {
	char path[64];
	uint8_t data[256];
	size_t len;
	bool closed;
} piece;

typedef struct sink_state {
	piece p[8];
	size_t n;
	bool open;
} sink_state;

static int s_open(void *ctx, const char *path)
{
	sink_state *s = ctx;
	assert_false(s->open);
	assert_true(s->n < 8);
	snprintf(s->p[s->n].path, sizeof(s->p[s->n].path), "%s", path);
	s->open = true;
	return 0;
}

static int s_write(void *ctx, const uint8_t *data, size_t len)
{
	sink_state *s = ctx;
	assert_true(s->open);
	piece *p = &s->p[s->n];
	assert_true(p->len + len <= sizeof(p->data));
	memcpy(p->data + p->len, data, len);
	p->len += len;
	return 0;
}

static int s_close(void *ctx)
{
	sink_state *s = ctx;
	assert_true(s->open);
	s->open = false;
	s->p[s->n++].closed = true;
	return 0;
}

static const char db[] = "SQLite format 3 and then some pages";
static const char fa[] = "alpha";
static const char fb[] = "the second file, longer";

static void sha(const void *d, size_t n, uint8_t out[32])
{
	unsigned len = 32;
	EVP_Digest(d, n, out, &len, EVP_sha256(), NULL);
}

/* The manifest of db, a.txt, d/empty (no bytes) and d/b.txt, as JSON in out. */
static void make_manifest(buf *out, bool corrupt_b)
{
	manifest m;
	memset(&m, 0, sizeof(m));
	snprintf(m.backup_id, sizeof(m.backup_id), "transfer");
	snprintf(m.ns, sizeof(m.ns), "default");
	snprintf(m.name, sizeof(m.name), "c1");
	m.records = 2;
	m.db_size = sizeof(db) - 1;
	sha(db, m.db_size, m.db_sha256);
	m.include_files = true;
	uint8_t h[32];
	sha(fa, sizeof(fa) - 1, h);
	assert_int_equal(manifest_add_file(&m, "a.txt", sizeof(fa) - 1, h), 0);
	sha("", 0, h);
	assert_int_equal(manifest_add_file(&m, "d/empty", 0, h), 0);
	sha(fb, sizeof(fb) - 1, h);
	if (corrupt_b)
		h[0] ^= 1;
	assert_int_equal(manifest_add_file(&m, "d/b.txt", sizeof(fb) - 1, h), 0);
	m.file_count = 3;
	m.file_bytes = sizeof(fa) - 1 + sizeof(fb) - 1;
	m.definition.data = mem_alloc(2);
	memcpy(m.definition.data, "\n\0", 2);
	m.definition.len = 2;
	assert_int_equal(manifest_write(&m, out), 0);
	manifest_free(&m);
}

static size_t stream(uint8_t *out)
{
	size_t n = 0;
	memcpy(out + n, db, sizeof(db) - 1);
	n += sizeof(db) - 1;
	memcpy(out + n, fa, sizeof(fa) - 1);
	n += sizeof(fa) - 1;
	memcpy(out + n, fb, sizeof(fb) - 1);
	return n + sizeof(fb) - 1;
}

static void whole_transfer_in_any_chunking(void **state)
{
	(void)state;
	buf text = BUF_INIT;
	make_manifest(&text, false);
	uint8_t data[256];
	size_t total = stream(data);
	for (size_t chunk = 1; chunk <= total; chunk += 7) {
		sink_state s;
		memset(&s, 0, sizeof(s));
		xfer_sink sink = {&s, s_open, s_write, s_close};
		xfer_rx rx;
		xfer_rx_init(&rx);
		assert_int_equal(
			xfer_rx_meta(&rx, text.data, text.len, (int64_t)total, 2, 3, &sink),
			GRPC_OK);
		for (size_t off = 0; off < total; off += chunk) {
			size_t n = total - off < chunk ? total - off : chunk;
			assert_int_equal(xfer_rx_data(&rx, data + off, n, &sink), GRPC_OK);
		}
		assert_int_equal(xfer_rx_end(&rx), GRPC_OK);
		assert_int_equal(s.n, 4);
		assert_string_equal(s.p[0].path, "records.db");
		assert_memory_equal(s.p[0].data, db, sizeof(db) - 1);
		assert_string_equal(s.p[1].path, "files/a.txt");
		assert_string_equal(s.p[2].path, "files/d/empty");
		assert_int_equal(s.p[2].len, 0);
		assert_string_equal(s.p[3].path, "files/d/b.txt");
		assert_memory_equal(s.p[3].data, fb, sizeof(fb) - 1);
		xfer_rx_free(&rx, &sink);
	}
	buf_free(&text);
}

/* Runs meta (with the given announcements) then data, then the end; returns the first
 * failure's code (GRPC_OK when none) and checks the sink holds no open piece after free. */
static int run(const buf *text, int64_t total, int64_t records, int64_t files, const uint8_t *data,
	       size_t len, bool meta_twice)
{
	sink_state s;
	memset(&s, 0, sizeof(s));
	xfer_sink sink = {&s, s_open, s_write, s_close};
	xfer_rx rx;
	xfer_rx_init(&rx);
	int code = xfer_rx_meta(&rx, (const uint8_t *)text->data, text->len, total, records, files,
				&sink);
	if (code == GRPC_OK && meta_twice)
		code = xfer_rx_meta(&rx, (const uint8_t *)text->data, text->len, total, records,
				    files, &sink);
	if (code == GRPC_OK && len)
		code = xfer_rx_data(&rx, data, len, &sink);
	if (code == GRPC_OK)
		code = xfer_rx_end(&rx);
	if (code != GRPC_OK)
		assert_true(rx.why[0] != 0);
	xfer_rx_free(&rx, &sink);
	assert_false(s.open);
	return code;
}

static void refusals(void **state)
{
	(void)state;
	buf text = BUF_INIT, bad = BUF_INIT, empty = BUF_INIT;
	make_manifest(&text, false);
	make_manifest(&bad, true);
	uint8_t data[256];
	size_t total = stream(data);
	int64_t t = (int64_t)total;
	assert_int_equal(run(&text, t, 2, 3, data, total, false), GRPC_OK);
	assert_int_equal(run(&text, t, 2, 3, data, total, true), GRPC_INVALID_ARGUMENT);
	assert_int_equal(run(&text, t + 1, 2, 3, data, total, false), GRPC_INVALID_ARGUMENT);
	assert_int_equal(run(&text, t, 3, 3, data, total, false), GRPC_INVALID_ARGUMENT);
	assert_int_equal(run(&text, t, 2, 2, data, total, false), GRPC_INVALID_ARGUMENT);
	assert_int_equal(run(&empty, t, 2, 3, data, total, false), GRPC_INVALID_ARGUMENT);
	/* short, long */
	assert_int_equal(run(&text, t, 2, 3, data, total - 1, false), GRPC_INVALID_ARGUMENT);
	data[total] = 'x';
	assert_int_equal(run(&text, t, 2, 3, data, total + 1, false), GRPC_INVALID_ARGUMENT);
	/* a flipped byte in the database, a hash that the last file does not have */
	data[3] ^= 1;
	assert_int_equal(run(&text, t, 2, 3, data, total, false), GRPC_DATA_LOSS);
	data[3] ^= 1;
	assert_int_equal(run(&bad, t, 2, 3, data, total, false), GRPC_DATA_LOSS);
	/* a chunk before any metadata */
	xfer_rx rx;
	xfer_rx_init(&rx);
	sink_state s;
	memset(&s, 0, sizeof(s));
	xfer_sink sink = {&s, s_open, s_write, s_close};
	assert_int_equal(xfer_rx_data(&rx, data, 1, &sink), GRPC_INVALID_ARGUMENT);
	assert_int_equal(xfer_rx_end(&rx), GRPC_FAILED_PRECONDITION);
	xfer_rx_free(&rx, &sink);
	xfer_rx_init(&rx);
	assert_int_equal(xfer_rx_end(&rx), GRPC_INVALID_ARGUMENT);
	xfer_rx_free(&rx, &sink);
	buf_free(&text);
	buf_free(&bad);
	buf_free(&empty);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(whole_transfer_in_any_chunking),
		cmocka_unit_test(refusals),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
