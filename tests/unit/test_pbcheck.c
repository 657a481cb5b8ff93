/* String fields of requests: UTF-8 without NUL, at any depth, and malformed input left to
 * the unpacker. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "collector/collection_repo.pb-c.h"
#include "h2/pbcheck.h"

static void test_utf8(void **state)
{
	(void)state;
	struct {
		const char *s;
		size_t n;
		bool ok;
	} cases[] = {
		{"", 0, true},
		{"plain ascii", 11, true},
		{"caf\xc3\xa9", 5, true},
		{"\xe2\x98\xba", 3, true},
		{"\xf0\x9f\x98\x88", 4, true},
		{"a\0b", 3, false},		/* NUL */
		{"\xc3", 1, false},		/* truncated */
		{"\xc0\xaf", 2, false},		/* overlong '/' */
		{"\xe0\x80\xaf", 3, false},	/* overlong */
		{"\xed\xa0\x80", 3, false},	/* UTF-16 surrogate */
		{"\xf4\x90\x80\x80", 4, false}, /* above U+10FFFF */
		{"\xff", 1, false},
		{"\x80", 1, false},		/* lone continuation */
		{"\xe2\x28\xa1", 3, false},	/* bad continuation */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_int_equal(pbcheck_utf8((const uint8_t *)cases[i].s, cases[i].n), cases[i].ok);
}

/* A CreateCollectionRequest whose nested collection.name is `name` (len bytes). */
static size_t encode(uint8_t *out, const char *name, size_t len)
{
	uint8_t inner[300];
	size_t k = 0;
	inner[k++] = 0x12; /* Collection.name = 2, length-delimited */
	inner[k++] = (uint8_t)len;
	memcpy(inner + k, name, len);
	k += len;
	size_t n = 0;
	out[n++] = 0x0a; /* CreateCollectionRequest.collection = 1 */
	out[n++] = (uint8_t)k;
	memcpy(out + n, inner, k);
	return n + k;
}

static void test_nested_strings(void **state)
{
	(void)state;
	const ProtobufCMessageDescriptor *d = &collector__create_collection_request__descriptor;
	uint8_t buf[400];
	const char *field = NULL;
	size_t n = encode(buf, "fine", 4);
	assert_true(pbcheck_strings(d, buf, n, &field));
	n = encode(buf, "bad\0name", 8);
	assert_false(pbcheck_strings(d, buf, n, &field));
	assert_string_equal(field, "name");
	n = encode(buf, "\xff\xfe", 2);
	assert_false(pbcheck_strings(d, buf, n, &field));
	/* Bytes fields may hold anything; unknown fields are skipped. */
	uint8_t unknown[] = {0xfa, 0x01, 0x02, 0x00, 0xff}; /* field 31, length 2 */
	assert_true(pbcheck_strings(d, unknown, sizeof(unknown), &field));
	/* Malformed input is for the unpacker to refuse, not a verdict here. */
	uint8_t truncated[] = {0x0a, 0x7f, 0x12};
	assert_true(pbcheck_strings(d, truncated, sizeof(truncated), &field));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_utf8),
		cmocka_unit_test(test_nested_strings),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
