/* Metadata encodings on arbitrary bytes: percent-encoding and base64 round trips, decoders
 * on hostile input, grpc-timeout parsing against a reference and format->parse within
 * rounding, and the key and value classifiers against their definitions. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/base64.h"
#include "fuzz_check.h"
#include "h2/metadata.h"

static void percent(const uint8_t *in, size_t len)
{
	buf enc = {0}, dec = {0};
	CHECK(md_percent_encode(&enc, in, len) == 0);
	/* What goes on the wire is a legal header value, and decodes to the original. */
	CHECK(md_valid_ascii_value(enc.data, enc.len));
	CHECK(md_percent_decode(&dec, enc.data, enc.len) == 0);
	CHECK(dec.len == len);
	CHECK(!len || !memcmp(dec.data, in, len));

	/* Any received text decodes without failing, never longer than it came, and text
	 * without '%' is left alone. */
	buf_reset(&dec);
	CHECK(md_percent_decode(&dec, in, len) == 0);
	CHECK(dec.len <= len);
	if (!memchr(in, '%', len))
		CHECK(dec.len == len && (!len || !memcmp(dec.data, in, len)));
	buf_free(&enc);
	buf_free(&dec);
}

static void base64(const uint8_t *in, size_t len)
{
	buf enc = {0}, dec = {0};
	CHECK(base64_put(&enc, in, len, 0) == 0);
	CHECK(enc.len == (len + 2) / 3 * 4);
	CHECK(base64_put_decoded(&dec, (const char *)enc.data, enc.len, 0) == 0);
	CHECK(dec.len == len && (!len || !memcmp(dec.data, in, len)));
	size_t unpadded = enc.len;
	while (unpadded && enc.data[unpadded - 1] == '=')
		unpadded--;
	buf_reset(&dec);
	CHECK(base64_put_decoded(&dec, (const char *)enc.data, unpadded, 0) == 0);
	CHECK(dec.len == len && (!len || !memcmp(dec.data, in, len)));

	/* Arbitrary input: when accepted, re-encoding gives the same text up to padding and
	 * the unused low bits of the last character. */
	buf_reset(&dec);
	buf_reset(&enc);
	int rc = base64_put_decoded(&dec, (const char *)in, len, 0);
	CHECK(rc == 0 || rc == -EINVAL);
	if (rc == 0) {
		CHECK(base64_put(&enc, dec.data, dec.len, 0) == 0);
		size_t a = len, b = enc.len;
		while (a && in[a - 1] == '=')
			a--;
		while (b && enc.data[b - 1] == '=')
			b--;
		CHECK(a == b);
		CHECK(a < 2 || !memcmp(in, enc.data, a - 1));
	} else {
		CHECK(dec.len == 0);
	}
	buf_free(&enc);
	buf_free(&dec);
}

static const char units[] = "numSMH";
static const int64_t unit_ns[] = {1, 1000, 1000000, 1000000000, 60000000000LL, 3600000000000LL};

static int unit_index(char c)
{
	const char *p = c ? strchr(units, c) : NULL;
	return p ? (int)(p - units) : -1;
}

static void timeout_parse(const uint8_t *in, size_t len)
{
	if (len > 12)
		len = 12;
	const char *s = (const char *)in;
	/* The reference: 1 to 8 ASCII digits, then exactly one unit character. */
	bool ok = len >= 2 && len <= 9 && unit_index(s[len - 1]) >= 0;
	unsigned __int128 v = 0;
	for (size_t i = 0; ok && i + 1 < len; i++) {
		ok = s[i] >= '0' && s[i] <= '9';
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	int64_t ns = -1;
	int rc = md_timeout_parse(s, len, &ns);
	CHECK(ok == (rc == 0));
	if (!ok) {
		CHECK(rc == -EINVAL);
		return;
	}
	v *= (unsigned __int128)unit_ns[unit_index(s[len - 1])];
	CHECK(ns == (v > INT64_MAX ? INT64_MAX : (int64_t)v));
}

static void timeout_format(const uint8_t *in, size_t len)
{
	if (len < 8)
		return;
	uint64_t raw;
	memcpy(&raw, in, 8);
	/* Spread over all magnitudes: the low byte picks a shift. */
	int64_t ns = (int64_t)((raw >> 1) >> (raw & 63));
	if (ns < 1)
		ns = 1;
	char out[10];
	memset(out, 'X', sizeof(out));
	size_t n = md_timeout_format(ns, out);
	CHECK(n >= 2 && n <= 9);
	CHECK(out[n] == '\0');
	CHECK(out[0] != '0');
	int u = unit_index(out[n - 1]);
	CHECK(u >= 0);
	int64_t back;
	CHECK(md_timeout_parse(out, n, &back) == 0);
	/* Never shorter than asked, and longer by less than one unit. */
	CHECK(back >= ns);
	if (back != INT64_MAX)
		CHECK(back - ns < unit_ns[u]);
	/* The finest unit that fits: one step finer would need more than 8 digits. */
	if (u > 0) {
		int64_t finer = unit_ns[u - 1];
		CHECK(ns / finer + (ns % finer != 0) > 99999999);
	}
}

static void classify(const uint8_t *in, size_t len)
{
	const char *s = (const char *)in;
	bool key = len > 0, ascii = true;
	for (size_t i = 0; i < len; i++) {
		uint8_t c = in[i];
		key = key && ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || c == '_' ||
			      c == '.' || c == '-');
		ascii = ascii && c >= 0x20 && c <= 0x7E;
	}
	CHECK(md_valid_key(s, len) == key);
	CHECK(md_valid_ascii_value(in, len) == ascii);
	CHECK(md_is_binary(s, len) == (len >= 4 && !memcmp(s + len - 4, "-bin", 4)));
	bool reserved = md_is_reserved(s, len);
	if (len && s[0] == ':')
		CHECK(reserved);
	/* Header names compare without regard to case. */
	bool details = len == 23 && !strncasecmp(s, "grpc-status-details-bin", 23);
	if (len >= 5 && !strncasecmp(s, "grpc-", 5))
		CHECK(reserved == !details);
	if (len && key && s[0] == 'x')
		CHECK(!reserved);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	percent(data, size);
	base64(data, size);
	timeout_parse(data, size);
	timeout_format(data, size);
	classify(data, size);
	return 0;
}
