/* gzip message compression: round trips, interoperability with other gzip writers, and
 * bounded, strict decompression. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "h2/gzip.h"

/* Python's gzip.compress(b"hello gzip\n", mtime=0): another implementation's output. */
static const uint8_t hello_gz[] = {
	0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0xcb,
	0x48, 0xcd, 0xc9, 0xc9, 0x57, 0x48, 0xaf, 0xca, 0x2c, 0xe0, 0x02,
	0x00, 0x39, 0x7c, 0x63, 0x56, 0x0b, 0x00, 0x00, 0x00,
};
static const char hello[] = "hello gzip\n";

static void fill_pseudo_random(uint8_t *p, size_t n, uint32_t seed)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		p[i] = (uint8_t)(seed >> 16);
	}
}

static void roundtrip(const uint8_t *data, size_t len)
{
	buf z = {0}, plain = {0};
	assert_int_equal(gzip_compress(&z, data, len), 0);
	assert_true(z.len >= 18);
	/* The gzip wrapper (RFC 1952), not zlib's: magic, then deflate. */
	assert_int_equal(z.data[0], 0x1f);
	assert_int_equal(z.data[1], 0x8b);
	assert_int_equal(z.data[2], 8);
	assert_int_equal(gzip_decompress(&plain, z.data, z.len, len), 0);
	assert_int_equal(plain.len, len);
	if (len)
		assert_memory_equal(plain.data, data, len);
	buf_free(&z);
	buf_free(&plain);
}

static void test_roundtrip(void **state)
{
	(void)state;
	roundtrip(NULL, 0);
	roundtrip((const uint8_t *)hello, strlen(hello));
	size_t n = 1 << 20;
	uint8_t *p = malloc(n);
	assert_non_null(p);
	fill_pseudo_random(p, n, 7);
	roundtrip(p, n); /* incompressible: the output is larger than the input */
	memset(p, 'a', n);
	roundtrip(p, n);
	for (size_t len = 1; len < 5000; len = len * 3 + 1)
		roundtrip(p, len);
	free(p);
}

static void test_decompress_foreign(void **state)
{
	(void)state;
	buf plain = {0};
	assert_int_equal(gzip_decompress(&plain, hello_gz, sizeof(hello_gz), 1000), 0);
	assert_int_equal(plain.len, strlen(hello));
	assert_memory_equal(plain.data, hello, plain.len);
	buf_free(&plain);
}

static void test_appends(void **state)
{
	(void)state;
	buf z = {0}, plain = {0};
	assert_int_equal(buf_append(&z, "HDR", 3), 0);
	assert_int_equal(gzip_compress(&z, (const uint8_t *)hello, strlen(hello)), 0);
	assert_memory_equal(z.data, "HDR", 3);
	assert_int_equal(buf_append(&plain, ">>", 2), 0);
	assert_int_equal(gzip_decompress(&plain, z.data + 3, z.len - 3, 100), 0);
	assert_int_equal(plain.len, 2 + strlen(hello));
	assert_memory_equal(plain.data, ">>", 2);
	assert_memory_equal(plain.data + 2, hello, strlen(hello));
	/* The limit counts this call's output only, not what the buffer held before. */
	buf_reset(&plain);
	assert_int_equal(buf_append(&plain, "0123456789", 10), 0);
	assert_int_equal(gzip_decompress(&plain, hello_gz, sizeof(hello_gz), strlen(hello)), 0);
	assert_int_equal(plain.len, 10 + strlen(hello));
	buf_free(&z);
	buf_free(&plain);
}

static void test_bomb(void **state)
{
	(void)state;
	size_t n = 10 << 20;
	uint8_t *zeros = calloc(1, n);
	assert_non_null(zeros);
	buf z = {0}, plain = {0};
	assert_int_equal(gzip_compress(&z, zeros, n), 0);
	free(zeros);
	assert_true(z.len < 64 * 1024);
	assert_int_equal(buf_append(&plain, "keep", 4), 0);
	assert_int_equal(gzip_decompress(&plain, z.data, z.len, 1 << 20), -EFBIG);
	/* Nothing of the refused output stays, and memory stayed near the limit rather
	 * than following the 10 MB the input would expand to. */
	assert_int_equal(plain.len, 4);
	assert_memory_equal(plain.data, "keep", 4);
	assert_true(plain.cap <= (2u << 20) + 4096);
	buf_free(&z);
	buf_free(&plain);
}

static void test_limit_exact(void **state)
{
	(void)state;
	uint8_t data[3000];
	fill_pseudo_random(data, sizeof(data), 3);
	buf z = {0}, plain = {0};
	assert_int_equal(gzip_compress(&z, data, sizeof(data)), 0);
	assert_int_equal(gzip_decompress(&plain, z.data, z.len, sizeof(data)), 0);
	assert_int_equal(plain.len, sizeof(data));
	buf_reset(&plain);
	assert_int_equal(gzip_decompress(&plain, z.data, z.len, sizeof(data) - 1), -EFBIG);
	assert_int_equal(plain.len, 0);
	assert_int_equal(gzip_decompress(&plain, z.data, z.len, 0), -EFBIG);
	assert_int_equal(gzip_decompress(&plain, z.data, z.len, SIZE_MAX), 0);
	assert_int_equal(plain.len, sizeof(data));
	buf_free(&z);
	/* An empty message fits a zero limit. */
	buf_reset(&plain);
	assert_int_equal(gzip_compress(&z, NULL, 0), 0);
	assert_int_equal(gzip_decompress(&plain, z.data, z.len, 0), 0);
	assert_int_equal(plain.len, 0);
	buf_free(&z);
	buf_free(&plain);
}

static void test_truncated(void **state)
{
	(void)state;
	uint8_t data[2000];
	fill_pseudo_random(data, sizeof(data), 11);
	memset(data, 'x', 1000);
	buf z = {0}, plain = {0};
	assert_int_equal(gzip_compress(&z, data, sizeof(data)), 0);
	for (size_t cut = 0; cut < z.len; cut++) {
		assert_int_equal(buf_append(&plain, "k", 1), 0);
		int rc = gzip_decompress(&plain, z.data, cut, 1 << 20);
		if (rc != -EINVAL)
			fail_msg("gzip cut to %zu of %zu bytes: rc %d", cut, z.len, rc);
		assert_int_equal(plain.len, 1);
		buf_reset(&plain);
	}
	buf_free(&z);
	buf_free(&plain);
}

static void test_corrupt(void **state)
{
	(void)state;
	uint8_t copy[sizeof(hello_gz)];
	buf plain = {0};
	/* The CRC32 trailer, then the length trailer, then the magic and the method. */
	static const size_t spots[] = {sizeof(hello_gz) - 8, sizeof(hello_gz) - 1, 0, 1, 2};
	for (size_t i = 0; i < sizeof(spots) / sizeof(spots[0]); i++) {
		memcpy(copy, hello_gz, sizeof(copy));
		copy[spots[i]] ^= 0x01;
		assert_int_equal(gzip_decompress(&plain, copy, sizeof(copy), 1000), -EINVAL);
		assert_int_equal(plain.len, 0);
	}
	/* Any single flipped bit either fails or, where gzip does not cover it (mtime, OS,
	 * extra flags), still yields the exact original. */
	for (size_t pos = 0; pos < sizeof(hello_gz); pos++) {
		for (int bit = 0; bit < 8; bit++) {
			memcpy(copy, hello_gz, sizeof(copy));
			copy[pos] ^= (uint8_t)(1 << bit);
			buf_reset(&plain);
			int rc = gzip_decompress(&plain, copy, sizeof(copy), 1000);
			if (rc == 0) {
				assert_int_equal(plain.len, strlen(hello));
				assert_memory_equal(plain.data, hello, plain.len);
			} else {
				assert_int_equal(rc, -EINVAL);
			}
		}
	}
	/* Raw garbage, and a zlib (RFC 1950) stream, which is not gzip. */
	static const uint8_t garbage[] = "this is not gzip at all";
	assert_int_equal(gzip_decompress(&plain, garbage, sizeof(garbage), 1000), -EINVAL);
	static const uint8_t zlib_hello[] = {0x78, 0x9c, 0xcb, 0x48, 0xcd, 0xc9, 0xc9,
					     0x57, 0x48, 0xaf, 0xca, 0x2c, 0xe0, 0x02,
					     0x00, 0x19, 0x7a, 0x03, 0xf9};
	assert_int_equal(gzip_decompress(&plain, zlib_hello, sizeof(zlib_hello), 1000), -EINVAL);
	buf_free(&plain);
}

static void test_trailing_garbage(void **state)
{
	(void)state;
	uint8_t data[sizeof(hello_gz) + 4];
	memcpy(data, hello_gz, sizeof(hello_gz));
	buf plain = {0};
	memcpy(data + sizeof(hello_gz), "junk", 4);
	assert_int_equal(gzip_decompress(&plain, data, sizeof(data), 1000), -EINVAL);
	assert_int_equal(plain.len, 0);
	memset(data + sizeof(hello_gz), 0, 4);
	assert_int_equal(gzip_decompress(&plain, data, sizeof(data), 1000), -EINVAL);
	assert_int_equal(gzip_decompress(&plain, data, sizeof(hello_gz) + 1, 1000), -EINVAL);
	assert_int_equal(plain.len, 0);
	buf_free(&plain);
}

static void test_concatenated_members(void **state)
{
	(void)state;
	/* RFC 1952: a gzip file is a series of members; gunzip yields them joined. */
	uint8_t two[2 * sizeof(hello_gz)];
	memcpy(two, hello_gz, sizeof(hello_gz));
	memcpy(two + sizeof(hello_gz), hello_gz, sizeof(hello_gz));
	buf plain = {0};
	assert_int_equal(gzip_decompress(&plain, two, sizeof(two), 1000), 0);
	assert_int_equal(plain.len, 2 * strlen(hello));
	assert_memory_equal(plain.data + strlen(hello), hello, strlen(hello));
	/* The limit spans members. */
	buf_reset(&plain);
	assert_int_equal(gzip_decompress(&plain, two, sizeof(two), 2 * strlen(hello) - 1), -EFBIG);
	/* A second member cut short is still truncation. */
	assert_int_equal(gzip_decompress(&plain, two, sizeof(two) - 1, 1000), -EINVAL);
	buf_free(&plain);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_decompress_foreign),
		cmocka_unit_test(test_appends),
		cmocka_unit_test(test_bomb),
		cmocka_unit_test(test_limit_exact),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_corrupt),
		cmocka_unit_test(test_trailing_garbage),
		cmocka_unit_test(test_concatenated_members),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
