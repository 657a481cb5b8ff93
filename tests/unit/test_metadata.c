/* Metadata encodings: grpc-message percent-encoding, grpc-timeout, and the key
 * classification that decides what handlers see (-bin values' base64: test_base.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "h2/metadata.h"

#define S(lit) (const uint8_t *)(lit), sizeof(lit) - 1

static void expect_buf(const buf *b, const char *want)
{
	assert_int_equal(b->len, strlen(want));
	if (b->len)
		assert_memory_equal(b->data, want, b->len);
}

static void test_percent_encode(void **state)
{
	(void)state;
	buf b = {0};
	assert_int_equal(md_percent_encode(&b, S("hello world ~!")), 0);
	expect_buf(&b, "hello world ~!");
	buf_reset(&b);
	assert_int_equal(md_percent_encode(&b, S("100%")), 0);
	expect_buf(&b, "100%25");
	buf_reset(&b);
	assert_int_equal(md_percent_encode(&b, S("a\nb\x01\x7f\xff")), 0);
	expect_buf(&b, "a%0Ab%01%7F%FF");
	buf_reset(&b);
	assert_int_equal(md_percent_encode(&b, S("caf\xc3\xa9")), 0);
	expect_buf(&b, "caf%C3%A9");
	/* Appends rather than overwrites. */
	assert_int_equal(md_percent_encode(&b, S("\t")), 0);
	expect_buf(&b, "caf%C3%A9%09");
	buf_reset(&b);
	assert_int_equal(md_percent_encode(&b, NULL, 0), 0);
	assert_int_equal(b.len, 0);
	buf_free(&b);
}

static void test_percent_decode(void **state)
{
	(void)state;
	static const struct {
		const char *in, *out;
	} cases[] = {
		{"plain text", "plain text"},
		{"%41%4a%4A", "AJJ"},
		{"100%25", "100%"},
		{"%%41", "%A"},
		/* Invalid sequences are kept as they are, never fatal. */
		{"%", "%"},
		{"50%", "50%"},
		{"%4", "%4"},
		{"x%4", "x%4"},
		{"%G1", "%G1"},
		{"%4G", "%4G"},
		{"% 1", "% 1"},
		{"%%", "%%"},
		{"%0", "%0"},
		{"%e9t%E9", "\xe9t\xe9"},
		{"", ""},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		buf b = {0};
		assert_int_equal(
			md_percent_decode(&b, (const uint8_t *)cases[i].in, strlen(cases[i].in)),
			0);
		expect_buf(&b, cases[i].out);
		buf_free(&b);
	}
	/* A sequence cut by len is incomplete, whatever follows in memory. */
	buf b = {0};
	assert_int_equal(md_percent_decode(&b, (const uint8_t *)"x%41", 3), 0);
	expect_buf(&b, "x%4");
	buf_reset(&b);
	assert_int_equal(md_percent_decode(&b, (const uint8_t *)"x%41", 2), 0);
	expect_buf(&b, "x%");
	buf_free(&b);
}

static void test_percent_roundtrip_all_bytes(void **state)
{
	(void)state;
	uint8_t all[256];
	for (int i = 0; i < 256; i++)
		all[i] = (uint8_t)i;
	buf enc = {0}, dec = {0};
	assert_int_equal(md_percent_encode(&enc, all, sizeof(all)), 0);
	/* 95 printable bytes minus '%' stay; the other 162 take three bytes each. */
	assert_int_equal(enc.len, 94 + 162 * 3);
	assert_true(md_valid_ascii_value(enc.data, enc.len));
	assert_int_equal(md_percent_decode(&dec, enc.data, enc.len), 0);
	assert_int_equal(dec.len, sizeof(all));
	assert_memory_equal(dec.data, all, sizeof(all));
	buf_free(&enc);
	buf_free(&dec);
}

static int64_t parse_ok(const char *s)
{
	int64_t ns = -1;
	int rc = md_timeout_parse(s, strlen(s), &ns);
	if (rc)
		fail_msg("grpc-timeout \"%s\" refused (%d)", s, rc);
	return ns;
}

static void test_timeout_parse(void **state)
{
	(void)state;
	assert_int_equal(parse_ok("1n"), 1);
	assert_int_equal(parse_ok("1u"), 1000);
	assert_int_equal(parse_ok("1m"), 1000000);
	assert_int_equal(parse_ok("1S"), 1000000000);
	assert_int_equal(parse_ok("1M"), 60000000000LL);
	assert_int_equal(parse_ok("1H"), 3600000000000LL);
	assert_int_equal(parse_ok("0S"), 0);
	assert_int_equal(parse_ok("00000001S"), 1000000000);
	assert_int_equal(parse_ok("99999999n"), 99999999);
	assert_int_equal(parse_ok("99999999u"), 99999999000LL);
	assert_int_equal(parse_ok("250m"), 250000000);
	/* The largest hour count that fits in int64 nanoseconds, then saturation. */
	assert_int_equal(parse_ok("2562047H"), 2562047LL * 3600000000000LL);
	assert_int_equal(parse_ok("2562048H"), INT64_MAX);
	assert_int_equal(parse_ok("99999999H"), INT64_MAX);
	assert_int_equal(parse_ok("99999999M"), 99999999LL * 60000000000LL);
	/* Only len bytes are read. */
	int64_t ns = 0;
	assert_int_equal(md_timeout_parse("5Sjunk", 2, &ns), 0);
	assert_int_equal(ns, 5000000000LL);
}

static void test_timeout_parse_invalid(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"",	"S",   "1",  "12",   "123456789S", "000000000S",    "1s",
		"1h",	"1x",  "1 ", " 1S",  "1S ",	   "-1S",	    "+1S",
		"1.5S", "1SS", "S1", "1e3n", "0x10S",	   "\xef\xbc\x91S", "99999999",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int64_t ns = 42;
		int rc = md_timeout_parse(bad[i], strlen(bad[i]), &ns);
		if (rc != -EINVAL)
			fail_msg("grpc-timeout \"%s\" accepted (%d, %lld)", bad[i], rc,
				 (long long)ns);
	}
	int64_t ns;
	assert_int_equal(md_timeout_parse("1\0S", 3, &ns), -EINVAL);
	assert_int_equal(md_timeout_parse(NULL, 0, &ns), -EINVAL);
}

static void expect_format(int64_t ns, const char *want)
{
	char out[10];
	size_t n = md_timeout_format(ns, out);
	assert_int_equal(n, strlen(want));
	assert_string_equal(out, want);
}

static void test_timeout_format(void **state)
{
	(void)state;
	expect_format(1, "1n");
	expect_format(99999999, "99999999n");
	expect_format(100000000, "100000u");
	expect_format(100000001, "100001u"); /* rounded up: a deadline is never shortened */
	expect_format(1000000000, "1000000u");
	expect_format(3600LL * 1000000000, "3600000m");
	expect_format(99999999LL * 1000000, "99999999m");
	expect_format(99999999LL * 1000000 + 1, "100000S");
	expect_format(INT64_MAX, "2562048H");
	/* No deadline in the past can be expressed: the shortest possible one is sent. */
	expect_format(0, "1n");
	expect_format(-5, "1n");
}

static int64_t unit_ns(char u)
{
	switch (u) {
	case 'n':
		return 1;
	case 'u':
		return 1000;
	case 'm':
		return 1000000;
	case 'S':
		return 1000000000;
	case 'M':
		return 60000000000LL;
	default:
		return 3600000000000LL;
	}
}

static void test_timeout_roundtrip(void **state)
{
	(void)state;
	uint64_t x = 88172645463325252ULL;
	for (int i = 0; i < 100000; i++) {
		/* xorshift64, then a random magnitude so that every unit is exercised. */
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		int64_t ns = (int64_t)((x >> 1) >> (x % 63));
		if (ns < 1)
			ns = 1;
		char out[10];
		size_t n = md_timeout_format(ns, out);
		assert_true(n >= 2 && n <= 9);
		int64_t back;
		assert_int_equal(md_timeout_parse(out, n, &back), 0);
		assert_true(back >= ns);
		if (back != INT64_MAX)
			assert_true(back - ns < unit_ns(out[n - 1]));
	}
}

static void test_is_binary(void **state)
{
	(void)state;
	assert_true(md_is_binary("x-bin", 5));
	assert_true(md_is_binary("grpc-status-details-bin", 23));
	assert_false(md_is_binary("x-bin2", 6));
	assert_false(md_is_binary("bin", 3));
	assert_false(md_is_binary("xbin", 4));
	assert_false(md_is_binary("x-bi", 4));
	assert_false(md_is_binary("", 0));
	/* len is honoured: "x-bin" cut short is not binary. */
	assert_false(md_is_binary("x-bin", 4));
}

static bool reserved(const char *name) { return md_is_reserved(name, strlen(name)); }

static void test_is_reserved(void **state)
{
	(void)state;
	static const char *const yes[] = {
		":path",
		":authority",
		":method",
		":status",
		":scheme",
		":",
		"content-type",
		"te",
		"grpc-timeout",
		"grpc-encoding",
		"grpc-accept-encoding",
		"grpc-status",
		"grpc-message",
		"grpc-trace-bin",
		"grpc-",
		"connection",
		"keep-alive",
		"proxy-connection",
		"transfer-encoding",
		"upgrade",
		"host",
		"accept-encoding",
		"content-length",
		"Content-Type",
		"TE",
		"GRPC-STATUS",
	};
	static const char *const no[] = {
		"user-agent",	 "grpc-status-details-bin",
		"x-custom",	 "authorization",
		"tee",		 "t",
		"contenttype",	 "grpc",
		"x-grpc-status", "content-type-x",
		"hosts",	 "",
	};
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
		if (!reserved(yes[i]))
			fail_msg("\"%s\" should be reserved", yes[i]);
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		if (reserved(no[i]))
			fail_msg("\"%s\" should be visible metadata", no[i]);
	/* len is honoured: a prefix of a reserved name is not reserved. */
	assert_false(md_is_reserved("content-type", 7));
	assert_true(md_is_reserved("tex", 2));
}

static void test_valid_key(void **state)
{
	(void)state;
	assert_true(md_valid_key("abc-1_2.x", 9));
	assert_true(md_valid_key("x-bin", 5));
	assert_false(md_valid_key("", 0));
	assert_false(md_valid_key("Abc", 3));
	assert_false(md_valid_key("a b", 3));
	assert_false(md_valid_key("a:b", 3));
	assert_false(md_valid_key(":path", 5));
	assert_false(md_valid_key("a\0b", 3));
	assert_false(md_valid_key("a/b", 3));
}

static void test_valid_ascii_value(void **state)
{
	(void)state;
	assert_true(md_valid_ascii_value(S("")));
	assert_true(md_valid_ascii_value(S(" printable ~ value !")));
	assert_false(md_valid_ascii_value(S("tab\there")));
	assert_false(md_valid_ascii_value(S("\x1f")));
	assert_false(md_valid_ascii_value(S("\x7f")));
	assert_false(md_valid_ascii_value(S("caf\xc3\xa9")));
	assert_false(md_valid_ascii_value(S("line\r\n")));
	assert_false(md_valid_ascii_value((const uint8_t *)"a\0b", 3));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_percent_encode),
		cmocka_unit_test(test_percent_decode),
		cmocka_unit_test(test_percent_roundtrip_all_bytes),
		cmocka_unit_test(test_timeout_parse),
		cmocka_unit_test(test_timeout_parse_invalid),
		cmocka_unit_test(test_timeout_format),
		cmocka_unit_test(test_timeout_roundtrip),
		cmocka_unit_test(test_is_binary),
		cmocka_unit_test(test_is_reserved),
		cmocka_unit_test(test_valid_key),
		cmocka_unit_test(test_valid_ascii_value),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
