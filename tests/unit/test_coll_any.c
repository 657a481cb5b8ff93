/* Records of untyped collections (services/coll_any.h): what kind each Any is, the JSON
 * it is searched by, and the stored form read back exactly. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/mem.h"
#include "google/protobuf/struct.pb-c.h"
#include "services/coll_any.h"
#include "store/typepool.h"

extern const uint8_t api_descriptor_set[];
extern const size_t api_descriptor_set_len;

static tp_pool *tp;

static int setup(void **state)
{
	(void)state;
	tp = tp_new();
	assert_non_null(tp);
	assert_int_equal(tp_add_set(tp, NULL, api_descriptor_set, api_descriptor_set_len), 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	tp_free(tp);
	return 0;
}

static Google__Protobuf__Any any_of(const char *url, const void *v, size_t n)
{
	Google__Protobuf__Any a = GOOGLE__PROTOBUF__ANY__INIT;
	a.type_url = (char *)url;
	a.value.data = (uint8_t *)v;
	a.value.len = n;
	return a;
}

/* The kind (or -EINVAL), with the JSON kept. */
static int classify(const char *url, const char *v, size_t n, buf *json, char *why)
{
	Google__Protobuf__Any a = any_of(url, v, n);
	const tp_message *m = NULL;
	int k = coll_any_classify(tp, "ns", &a, json, &m, why, 256);
	assert_true(k != COLL_ANY_TYPED || m != NULL);
	return k;
}

#define S(lit) (lit), sizeof(lit) - 1

static void test_kinds(void **state)
{
	(void)state;
	buf json = BUF_INIT;
	char why[256];
	/* A JSON object's text under any type URL, blanks around it kept out. */
	assert_int_equal(classify("type.googleapis.com/unknown", S(" {\"a\":{\"b\":[1,\"x\"]}}\n"),
				  &json, why),
			 COLL_ANY_JSON);
	assert_string_equal(json.text, "{\"a\":{\"b\":[1,\"x\"]}}");
	assert_int_equal(classify("", S("{}"), &json, why), COLL_ANY_JSON);
	/* A message of a known type: its proto3 JSON. */
	Google__Protobuf__Struct st = GOOGLE__PROTOBUF__STRUCT__INIT;
	Google__Protobuf__Value v = GOOGLE__PROTOBUF__VALUE__INIT;
	v.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
	v.string_value = "y";
	Google__Protobuf__Struct__FieldsEntry e = GOOGLE__PROTOBUF__STRUCT__FIELDS_ENTRY__INIT;
	e.key = "x";
	e.value = &v;
	Google__Protobuf__Struct__FieldsEntry *ep = &e;
	st.n_fields = 1;
	st.fields = &ep;
	uint8_t pb[64];
	size_t pn = google__protobuf__struct__pack(&st, pb);
	assert_int_equal(
		classify("type.googleapis.com/google.protobuf.Struct", (char *)pb, pn, &json, why),
		COLL_ANY_TYPED);
	assert_string_equal(json.text, "{\"x\":\"y\"}");
	/* JSON text under a known type's URL is still a JSON record. */
	assert_int_equal(
		classify("type.googleapis.com/google.protobuf.Struct", S("{\"x\":1}"), &json, why),
		COLL_ANY_JSON);
	/* Neither the message nor a JSON object: refused, naming the type. */
	assert_int_equal(
		classify("type.googleapis.com/google.protobuf.Struct", S("[1,2]"), &json, why),
		-EINVAL);
	assert_non_null(strstr(why, "google.protobuf.Struct"));
	/* Anything else under an unknown URL: opaque. */
	static const struct {
		const char *v;
		size_t n;
	} opaque[] = {{S("[1,2]")}, {S("42")}, {S("\"s\"")}, {S("")}, {S("\x08\x01")}, {S("{")}};
	for (size_t i = 0; i < sizeof opaque / sizeof opaque[0]; i++) {
		assert_int_equal(classify("x/y.Unknown", opaque[i].v, opaque[i].n, &json, why),
				 COLL_ANY_OPAQUE);
		assert_string_equal(json.text, COLL_ANY_OPAQUE_JSON);
	}
	/* What looks like an object and is none: refused, saying so. */
	static const struct {
		const char *v;
		size_t n;
	} broken[] = {{S("{\"a\":}")}, {S("{\"a\":\"\xff\"}")}, {S("{\"a\":1,}")}, {S("{} {}")}};
	for (size_t i = 0; i < sizeof broken / sizeof broken[0]; i++) {
		assert_int_equal(classify("x/y", broken[i].v, broken[i].n, &json, why), -EINVAL);
		assert_non_null(strstr(why, "JSON"));
	}
	/* Nested deeper than the node's limit. */
	char deep[700];
	size_t n = 0;
	for (int i = 0; i < 100; i++)
		n += (size_t)snprintf(deep + n, sizeof deep - n, "{\"a\":");
	deep[n++] = '1';
	for (int i = 0; i < 100 && n < sizeof deep - 1; i++)
		deep[n++] = '}';
	assert_int_equal(classify("x/y", deep, n, &json, why), -EINVAL);
	buf_free(&json);
}

static void test_stored_form(void **state)
{
	(void)state;
	buf b = BUF_INIT;
	static const uint8_t value[] = {0, 1, 2, 0xff, 0};
	assert_int_equal(coll_any_pack("type.googleapis.com/x.Y", value, sizeof value, &b), 0);
	Google__Protobuf__Any any;
	uint8_t *block;
	assert_int_equal(coll_any_unpack(b.data, b.len, &any, &block), 0);
	assert_string_equal(any.type_url, "type.googleapis.com/x.Y");
	assert_int_equal(any.value.len, sizeof value);
	assert_memory_equal(any.value.data, value, sizeof value);
	mem_free(block);
	/* Empty parts come back empty. */
	assert_int_equal(coll_any_pack("", NULL, 0, &b), 0);
	assert_int_equal(coll_any_unpack(b.data, b.len, &any, &block), 0);
	assert_string_equal(any.type_url, "");
	assert_int_equal(any.value.len, 0);
	mem_free(block);
	/* What the node did not write is refused, not trusted. */
	static const struct {
		const char *v;
		size_t n;
	} junk[] = {
		{S("\x08\x01")}, /* a varint field */
		{S("\x0a\x05"
		   "ab")}, /* longer than the bytes */
		{S("\x1a\x01"
		   "a")}, /* field 3 */
		{S("\x0a\x03"
		   "a\0b")}, /* a NUL in the URL */
		{S("\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff")},
	};
	for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++) {
		coll_any_parts parts;
		assert_int_equal(coll_any_split(junk[i].v, junk[i].n, &parts), -EINVAL);
		assert_int_equal(coll_any_unpack(junk[i].v, junk[i].n, &any, &block), -EINVAL);
		assert_null(block);
	}
	buf_free(&b);
}

/* SQLite hands back an empty blob as NULL: an empty record reads as an empty Any, with no
 * arithmetic on the NULL (clang UBSan: "applying zero offset to null pointer", found by
 * fuzz_requests; gcc's UBSan in the ASan build does not see it, the fuzz build does). */
static void test_empty_record(void **state)
{
	(void)state;
	coll_any_parts parts;
	assert_int_equal(coll_any_split(NULL, 0, &parts), 0);
	assert_int_equal(parts.url_len, 0);
	assert_int_equal(parts.value_len, 0);
	Google__Protobuf__Any any;
	uint8_t *block;
	assert_int_equal(coll_any_unpack(NULL, 0, &any, &block), 0);
	assert_string_equal(any.type_url, "");
	assert_int_equal(any.value.len, 0);
	mem_free(block);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_kinds, setup, teardown),
		cmocka_unit_test(test_stored_form),
		cmocka_unit_test(test_empty_record),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
