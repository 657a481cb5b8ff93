/* The protobuf <-> JSON transcoder: exact bytes and exact JSON for every scalar type and
 * its edge values, protobuf's merge rules when reading, canonical output, maps, oneofs,
 * nesting, each well-known type, Any, both naming modes, and the errors for malformed
 * protobuf and malformed or ill-typed JSON. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "descbuild.h"
#include "store/json.h"
#include "store/typepool.h"

extern const uint8_t api_descriptor_set[];
extern const size_t api_descriptor_set_len;

static tp_pool *tp;

/* Types built at run time, in namespace "t": t.S has a field of every kind. */
static void add_test_types(void)
{
	db_file *f = db_file_new("t/s.proto", "t", "proto3");
	db_import(f, "google/protobuf/struct.proto");
	db_enum *color = db_enum_add(f, NULL, "Color");
	db_value(color, "COLOR_UNSPECIFIED", 0);
	db_value(color, "RED", 1);
	db_value(color, "BLUE", -3);
	db_msg *s = db_message(f, "S");
	static const struct {
		const char *name;
		int number, type;
	} scalars[] = {{"d", 1, 1},	 {"f", 2, 2},	  {"i64", 3, 3},   {"u64", 4, 4},
		       {"i32", 5, 5},	 {"x64", 6, 6},	  {"x32", 7, 7},   {"b", 8, 8},
		       {"s", 9, 9},	 {"by", 12, 12},  {"u32", 13, 13}, {"sx32", 15, 15},
		       {"sx64", 16, 16}, {"s32", 17, 17}, {"s64", 18, 18}};
	for (size_t i = 0; i < sizeof scalars / sizeof *scalars; i++)
		db_field_add(s, scalars[i].name, scalars[i].number, 1, scalars[i].type, NULL);
	db_field_add(s, "e", 14, 1, 14, "Color");
	db_field_add(s, "sub", 19, 1, 11, "S");
	db_field_add(s, "ri", 20, 3, 5, NULL);
	db_field_add(s, "rd", 21, 3, 1, NULL);
	db_field_add(s, "rs", 22, 3, 9, NULL);
	db_field_add(s, "rm", 23, 3, 11, "S");
	db_field_add(s, "rz", 24, 3, 18, NULL);
	db_field_add(s, "re", 25, 3, 14, "Color");
	db_map(s, "mi", 30, 5, 9, NULL);
	db_map(s, "mb", 31, 8, 5, NULL);
	db_map(s, "ms", 32, 9, 11, ".t.S");
	db_map(s, "mu", 33, 4, 14, ".t.Color");
	int o = db_oneof(s, "o");
	db_in_oneof(db_field_add(s, "oi", 40, 1, 5, NULL), o);
	db_in_oneof(db_field_add(s, "os", 41, 1, 9, NULL), o);
	db_in_oneof(db_field_add(s, "om", 42, 1, 11, "S"), o);
	db_field *pi = db_field_add(s, "pi", 50, 1, 5, NULL);
	db_in_oneof(pi, db_oneof(s, "_pi"));
	pi->has_proto3_optional = pi->proto3_optional = 1;
	db_field *pb = db_field_add(s, "pb", 51, 1, 12, NULL);
	db_in_oneof(pb, db_oneof(s, "_pb"));
	pb->has_proto3_optional = pb->proto3_optional = 1;
	db_field_add(s, "nv", 52, 1, 14, "google.protobuf.NullValue");
	db_field_add(s, "snake_name", 53, 1, 5, NULL);

	db_file *l = db_file_new("t/legacy.proto", "t2", "proto2");
	db_enum *closed = db_enum_add(l, NULL, "Closed");
	db_value(closed, "FIVE", 5);
	db_value(closed, "ONE", 1);
	db_msg *lm = db_message(l, "L");
	db_field_add(lm, "i", 1, 1, 5, NULL);
	db_field_add(lm, "r", 2, 3, 5, NULL);
	db_field_add(lm, "e", 4, 1, 14, "Closed");
	db_field_add(lm, "re", 5, 3, 14, "Closed");
	db_msg *grp = db_nested(lm, "Grp");
	db_field_add(grp, "g", 7, 1, 5, NULL);
	db_field_add(lm, "grp", 6, 1, 10, "Grp");

	if (tp_add_file(tp, "t", f) || tp_add_file(tp, "t", l))
		fail_msg("test types: %s", store_err_msg());
	db_free();
}

static int setup(void **state)
{
	(void)state;
	tp = tp_new();
	if (tp_add_set(tp, NULL, api_descriptor_set, api_descriptor_set_len))
		fail_msg("builtin: %s", store_err_msg());
	add_test_types();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	tp_free(tp);
	return 0;
}

static const tp_message *type(const char *name)
{
	const tp_message *m = tp_find_message(tp, "t", name);
	if (!m)
		fail_msg("no type %s", name);
	return m;
}

/* "0a 01 ff" -> bytes */
static size_t unhex(const char *hex, uint8_t *out)
{
	size_t n = 0;
	for (const char *p = hex; *p;) {
		if (*p == ' ') {
			p++;
			continue;
		}
		unsigned v;
		if (sscanf(p, "%2x", &v) != 1)
			fail_msg("bad hex %s", hex);
		out[n++] = (uint8_t)v;
		p += 2;
	}
	return n;
}

static char *hexof(const uint8_t *p, size_t n)
{
	static char buf[8192];
	size_t at = 0;
	for (size_t i = 0; i < n && at + 4 < sizeof buf; i++)
		at += (size_t)snprintf(buf + at, sizeof buf - at, i ? " %02x" : "%02x", p[i]);
	buf[at] = '\0';
	return buf;
}

/* bytes (hex) -> JSON must be `json` exactly. */
static void to_json_f(const char *t, const char *hex, int flags, const char *json)
{
	uint8_t bytes[4096];
	size_t n = unhex(hex, bytes);
	buf out = BUF_INIT;
	int rc = json_from_proto(tp, "t", type(t), bytes, n, flags, &out);
	if (rc)
		fail_msg("%s %s -> JSON failed: %s", t, hex, store_err_msg());
	assert_int_equal(strlen(out.text), out.len);
	if (strcmp(out.text, json))
		fail_msg("%s %s -> %s, expected %s", t, hex, out.data, json);
	buf_free(&out);
}

static void to_json(const char *t, const char *hex, const char *json)
{
	to_json_f(t, hex, 0, json);
}

/* JSON -> bytes must be `hex` exactly. */
static void to_pb(const char *t, const char *json, const char *hex)
{
	uint8_t want[4096];
	size_t n = unhex(hex, want);
	buf out = BUF_INIT;
	int rc = json_to_proto(tp, "t", type(t), json, strlen(json), &out);
	if (rc)
		fail_msg("%s %s -> bytes failed: %s", t, json, store_err_msg());
	if (out.len != n || (n && memcmp(out.data, want, n)))
		fail_msg("%s %s -> %s, expected %s", t, json, hexof((uint8_t *)out.data, out.len),
			 hex);
	buf_free(&out);
}

/* Both ways: json is the canonical JSON of hex. */
static void rt(const char *t, const char *json, const char *hex)
{
	to_pb(t, json, hex);
	to_json(t, hex, json);
}

static void json_err(const char *t, const char *json, const char *want)
{
	buf out = BUF_INIT;
	buf_append(&out, "keep", 4);
	int rc = json_to_proto(tp, "t", type(t), json, strlen(json), &out);
	if (rc != -EINVAL)
		fail_msg("%s %s: expected an error, got %d (%s)", t, json, rc,
			 rc ? store_err_msg() : hexof((uint8_t *)out.data + 4, out.len - 4));
	if (!strstr(store_err_msg(), want))
		fail_msg("%s %s: error \"%s\" does not mention \"%s\"", t, json, store_err_msg(),
			 want);
	assert_int_equal(out.len, 4); /* what was there before is kept */
	assert_memory_equal(out.data, "keep", 4);
	buf_free(&out);
}

static void pb_err_n(const char *t, const uint8_t *bytes, size_t n, const char *want)
{
	buf out = BUF_INIT;
	buf_append(&out, "keep", 4);
	int rc = json_from_proto(tp, "t", type(t), bytes, n, 0, &out);
	if (rc != -EINVAL)
		fail_msg("%s %s: expected an error, got %d (%s)", t, hexof(bytes, n), rc,
			 rc ? store_err_msg() : out.text + 4);
	if (!strstr(store_err_msg(), want))
		fail_msg("%s %s: error \"%s\" does not mention \"%s\"", t, hexof(bytes, n),
			 store_err_msg(), want);
	assert_int_equal(out.len, 4);
	buf_free(&out);
}

static void pb_err(const char *t, const char *hex, const char *want)
{
	uint8_t bytes[4096];
	pb_err_n(t, bytes, unhex(hex, bytes), want);
}

static void test_scalars(void **state)
{
	(void)state;
	rt("t.S", "{}", "");
	rt("t.S", "{\"i64\":\"-9223372036854775808\"}", "18 80 80 80 80 80 80 80 80 80 01");
	rt("t.S", "{\"i64\":\"9223372036854775807\"}", "18 ff ff ff ff ff ff ff ff 7f");
	rt("t.S", "{\"u64\":\"18446744073709551615\"}", "20 ff ff ff ff ff ff ff ff ff 01");
	rt("t.S", "{\"i32\":-1}", "28 ff ff ff ff ff ff ff ff ff 01");
	rt("t.S", "{\"i32\":2147483647}", "28 ff ff ff ff 07");
	rt("t.S", "{\"i32\":-2147483648}", "28 80 80 80 80 f8 ff ff ff ff 01");
	rt("t.S", "{\"x64\":\"18446744073709551615\"}", "31 ff ff ff ff ff ff ff ff");
	rt("t.S", "{\"x32\":4294967295}", "3d ff ff ff ff");
	rt("t.S", "{\"b\":true}", "40 01");
	rt("t.S", "{\"u32\":4294967295}", "68 ff ff ff ff 0f");
	rt("t.S", "{\"sx32\":-2}", "7d fe ff ff ff");
	rt("t.S", "{\"sx64\":\"-9223372036854775808\"}", "81 01 00 00 00 00 00 00 00 80");
	rt("t.S", "{\"s32\":-2147483648}", "88 01 ff ff ff ff 0f");
	rt("t.S", "{\"s64\":\"-1\"}", "90 01 01");
	rt("t.S", "{\"s64\":\"9223372036854775807\"}", "90 01 fe ff ff ff ff ff ff ff ff 01");
	/* Doubles: -0 is not the default, NaN and the infinities are strings. */
	rt("t.S", "{\"d\":-0}", "09 00 00 00 00 00 00 00 80");
	rt("t.S", "{\"d\":\"NaN\"}", "09 00 00 00 00 00 00 f8 7f");
	rt("t.S", "{\"d\":\"Infinity\"}", "09 00 00 00 00 00 00 f0 7f");
	rt("t.S", "{\"d\":\"-Infinity\"}", "09 00 00 00 00 00 00 f0 ff");
	rt("t.S", "{\"d\":0.1}", "09 9a 99 99 99 99 99 b9 3f");
	rt("t.S", "{\"d\":1e+300}", "09 9c 75 00 88 3c e4 37 7e");
	rt("t.S", "{\"d\":5e-324}", "09 01 00 00 00 00 00 00 00");
	rt("t.S", "{\"f\":0.1}", "15 cd cc cc 3d");
	rt("t.S", "{\"f\":3.4028235e+38}", "15 ff ff 7f 7f");
	rt("t.S", "{\"f\":\"-Infinity\"}", "15 00 00 80 ff");
	/* Strings: escapes out, UTF-8 as is; \u escapes and surrogate pairs in. */
	rt("t.S", "{\"s\":\"a\\\"\\\\\\n\\u0001\\u001f\x7f\xc3\xa9\xf0\x9f\x98\x80\"}",
	   "4a 0d 61 22 5c 0a 01 1f 7f c3 a9 f0 9f 98 80");
	to_pb("t.S", "{\"s\":\"\\ud83d\\ude00\\u00e9\\/\\b\\f\\r\\t\"}",
	      "4a 0b f0 9f 98 80 c3 a9 2f 08 0c 0d 09");
	to_json("t.S", "4a 03 08 0c 0d", "{\"s\":\"\\b\\f\\r\"}");
	/* Bytes: standard base64 with padding out; URL-safe or unpadded accepted in. */
	rt("t.S", "{\"by\":\"AAEC/w==\"}", "62 04 00 01 02 ff");
	to_pb("t.S", "{\"by\":\"AAEC_w\"}", "62 04 00 01 02 ff");
	rt("t.S", "{\"by\":\"+/8=\"}", "62 02 fb ff");
	/* Defaults of fields without presence are left out; with presence they stay. */
	to_pb("t.S",
	      "{\"i32\":0,\"s\":\"\",\"by\":\"\",\"b\":false,\"e\":\"COLOR_UNSPECIFIED\","
	      "\"d\":0,\"f\":0,\"ri\":[],\"mi\":{},\"nv\":null}",
	      "");
	rt("t.S", "{\"pi\":0}", "90 03 00");
	rt("t.S", "{\"pb\":\"\"}", "9a 03 00");
	rt("t.S", "{\"oi\":0}", "c0 02 00");
	to_json("t.S", "28 00 4a 00", "{}");
	/* Enums: names, or numbers for values without one (open enums). */
	rt("t.S", "{\"e\":\"BLUE\"}", "70 fd ff ff ff ff ff ff ff ff 01");
	to_pb("t.S", "{\"e\":1}", "70 01");
	to_pb("t.S", "{\"e\":\"1\"}", "70 01");
	rt("t.S", "{\"e\":7}", "70 07");
	/* Numbers as strings, integral floats for integers. */
	to_pb("t.S", "{\"i32\":\"12\",\"u64\":1e2,\"d\":\"1.5\",\"f\":\"NaN\"}",
	      "09 00 00 00 00 00 00 f8 3f 15 00 00 c0 7f 20 64 28 0c");
	to_pb("t.S", "{\"i64\":\"-0\",\"i32\":-0.0}", "");
	/* An int32 varint with bits past 32 is truncated, as protobuf does. */
	to_json("t.S", "28 81 80 80 80 10", "{\"i32\":1}");
	to_json("t.S", "28 80 80 80 80 10", "{}");
	to_json_f("t.S", "a8 03 05", JSON_PROTO_NAMES, "{\"snake_name\":5}");
	to_json_f("t.S", "a8 03 05", 0, "{\"snakeName\":5}");
	to_pb("t.S", "{\"snake_name\":5}", "a8 03 05");
}

static void test_repeated_maps_oneofs(void **state)
{
	(void)state;
	rt("t.S", "{\"ri\":[1,-1,300]}", "a2 01 0d 01 ff ff ff ff ff ff ff ff ff 01 ac 02");
	rt("t.S", "{\"rz\":[\"-1\",\"1\"]}", "c2 01 02 01 02");
	rt("t.S", "{\"re\":[\"RED\",9]}", "ca 01 02 01 09");
	rt("t.S", "{\"rd\":[1.5,\"NaN\"]}",
	   "aa 01 10 00 00 00 00 00 00 f8 3f 00 00 00 00 00 00 f8 7f");
	rt("t.S", "{\"rs\":[\"a\",\"\"]}", "b2 01 01 61 b2 01 00");
	rt("t.S", "{\"rm\":[{},{\"i32\":1}]}", "ba 01 00 ba 01 02 28 01");
	/* Unpacked, packed and mixed on the wire all read. */
	to_json("t.S", "a0 01 01 a0 01 02", "{\"ri\":[1,2]}");
	to_json("t.S", "a2 01 01 05 a0 01 06 a2 01 00", "{\"ri\":[5,6]}");
	to_json("t.S", "a2 01 00", "{}");
	rt("t.S", "{\"mi\":{\"1\":\"a\",\"-2\":\"\"}}",
	   "f2 01 05 08 01 12 01 61 f2 01 0d 08 fe ff ff ff ff ff ff ff ff 01 12 00");
	rt("t.S", "{\"mb\":{\"true\":1,\"false\":0}}", "fa 01 04 08 01 10 01 fa 01 04 08 00 10 00");
	rt("t.S", "{\"ms\":{\"k\":{\"s\":\"v\"}}}", "82 02 08 0a 01 6b 12 03 4a 01 76");
	rt("t.S", "{\"mu\":{\"18446744073709551615\":\"BLUE\"}}",
	   "8a 02 16 08 ff ff ff ff ff ff ff ff ff 01 10 fd ff ff ff ff ff ff ff ff 01");
	/* The last entry of a key wins; a missing key or value is the default. */
	to_json("t.S", "f2 01 05 08 01 12 01 61 f2 01 05 08 02 12 01 63 f2 01 05 08 01 12 01 62",
		"{\"mi\":{\"2\":\"c\",\"1\":\"b\"}}");
	to_json("t.S", "f2 01 00", "{\"mi\":{\"0\":\"\"}}");
	to_json("t.S", "82 02 00", "{\"ms\":{\"\":{}}}");
	to_json("t.S", "82 02 0b 0a 01 6b 12 02 28 01 12 02 40 01",
		"{\"ms\":{\"k\":{\"i32\":1,\"b\":true}}}");
	rt("t.S", "{\"os\":\"x\"}", "ca 02 01 78");
	rt("t.S", "{\"om\":{}}", "d2 02 00");
	to_pb("t.S", "{\"oi\":null,\"os\":\"x\"}", "ca 02 01 78");
	/* The last member of a oneof wins; a message member merges only after the switch. */
	to_json("t.S", "c0 02 05 ca 02 01 78", "{\"os\":\"x\"}");
	to_json("t.S", "d2 02 02 28 01 c0 02 05 d2 02 02 40 01", "{\"om\":{\"b\":true}}");
	to_json("t.S", "d2 02 02 28 01 d2 02 02 40 01", "{\"om\":{\"i32\":1,\"b\":true}}");
	/* Scalars: the last wins; messages merge. */
	to_json("t.S", "28 01 28 02", "{\"i32\":2}");
	to_json("t.S", "9a 01 02 28 01 9a 01 02 40 01", "{\"sub\":{\"i32\":1,\"b\":true}}");
	rt("t.S", "{\"sub\":{\"sub\":{\"i32\":1}}}", "9a 01 05 9a 01 02 28 01");
	/* Unknown fields (a varint, a group holding a field) are skipped. */
	to_json("t.S", "f8 07 01 a3 06 28 01 a4 06 28 02", "{\"i32\":2}");
	/* Canonical output: members in field order whatever the JSON order. */
	to_pb("t.S", "{\"oi\":1,\"sub\":{},\"i32\":1,\"d\":1}",
	      "09 00 00 00 00 00 00 f0 3f 28 01 9a 01 00 c0 02 01");
	to_json("t.S", "c0 02 01 28 01", "{\"i32\":1,\"oi\":1}");
	/* NullValue fields print null; a singular one without presence is never printed. */
	to_json("t.S", "a0 03 00", "{}");
}

static void test_proto2(void **state)
{
	(void)state;
	rt("t2.L", "{\"i\":0}", "08 00");
	rt("t2.L", "{\"r\":[1,2]}", "10 01 10 02"); /* proto2: not packed */
	to_json("t2.L", "12 02 03 04", "{\"r\":[3,4]}");
	rt("t2.L", "{\"e\":\"ONE\"}", "20 01");
	/* Closed enums drop numbers they do not declare; the value before stays. */
	to_json("t2.L", "20 07", "{}");
	to_json("t2.L", "20 01 20 07", "{\"e\":\"ONE\"}");
	to_json("t2.L", "28 07 28 05 2a 02 01 09", "{\"re\":[\"FIVE\",\"ONE\"]}");
	json_err("t2.L", "{\"e\":7}", "not a value of t2.Closed");
	/* Groups. */
	rt("t2.L", "{\"grp\":{\"g\":3}}", "33 38 03 34");
	to_json("t2.L", "33 34", "{\"grp\":{}}");
	pb_err("t2.L", "33 38 03", "not ended");
	pb_err("t2.L", "33 38 03 3c", "ended by");
	pb_err("t2.L", "34", "unexpected end of group");
}

static void test_names_and_collector_types(void **state)
{
	(void)state;
	const char *json =
		"{\"namespace\":\"ns\",\"name\":\"c\",\"messageType\":{\"messageName\":"
		"\"zoo.Animal\"},\"indexedFields\":[\"a.b\"],\"metadata\":{\"createdAt\":"
		"\"2024-01-02T03:04:05.123Z\",\"labels\":{\"k\":\"v\"}}}";
	const char *proto =
		"{\"namespace\":\"ns\",\"name\":\"c\",\"message_type\":{\"message_name\":"
		"\"zoo.Animal\"},\"indexed_fields\":[\"a.b\"],\"metadata\":{\"created_at\":"
		"\"2024-01-02T03:04:05.123Z\",\"labels\":{\"k\":\"v\"}}}";
	const tp_message *m = tp_find_message(tp, NULL, "collector.Collection");
	buf a = BUF_INIT, b = BUF_INIT, j = BUF_INIT;
	assert_int_equal(json_to_proto(tp, NULL, m, json, strlen(json), &a), 0);
	assert_int_equal(json_to_proto(tp, NULL, m, proto, strlen(proto), &b), 0);
	assert_int_equal(a.len, b.len);
	assert_memory_equal(a.data, b.data, a.len);
	assert_int_equal(json_from_proto(tp, NULL, m, (uint8_t *)a.data, a.len, 0, &j), 0);
	assert_string_equal(j.data, json);
	/* Output appends to what the buffer holds. */
	assert_int_equal(
		json_from_proto(tp, NULL, m, (uint8_t *)a.data, a.len, JSON_PROTO_NAMES, &j), 0);
	assert_int_equal(j.len, strlen(json) + strlen(proto));
	assert_string_equal(j.data + strlen(json), proto);
	buf_free(&a);
	buf_free(&b);
	buf_free(&j);
	const char *both = "{\"indexedFields\":[],\"indexed_fields\":[]}";
	assert_int_equal(json_to_proto(tp, NULL, m, both, strlen(both), &a), -EINVAL);
	assert_non_null(strstr(store_err_msg(), "indexed_fields is given twice"));
	const tp_message *push = tp_find_message(tp, NULL, "collector.PushCollectionRequest");
	const char *two = "{\"chunk\":\"\",\"metadata\":{}}";
	assert_int_equal(json_to_proto(tp, NULL, push, two, strlen(two), &a), -EINVAL);
	assert_non_null(strstr(store_err_msg(), "oneof data"));
	buf_free(&a);
}

static void test_well_known(void **state)
{
	(void)state;
	rt("google.protobuf.Timestamp", "\"1972-01-01T10:00:20.021Z\"",
	   "08 b4 e7 8b 1e 10 c0 de 81 0a");
	rt("google.protobuf.Timestamp", "\"0001-01-01T00:00:00Z\"",
	   "08 80 92 b8 c3 98 fe ff ff ff 01");
	rt("google.protobuf.Timestamp", "\"9999-12-31T23:59:59.999999999Z\"",
	   "08 ff 82 d1 ff af 07 10 ff 93 eb dc 03");
	rt("google.protobuf.Timestamp", "\"1970-01-01T00:00:00.000001Z\"", "10 e8 07");
	rt("google.protobuf.Timestamp", "\"1969-12-31T23:59:59.000000001Z\"",
	   "08 ff ff ff ff ff ff ff ff ff 01 10 01");
	rt("google.protobuf.Timestamp", "\"1970-01-01T00:00:00Z\"", "");
	to_pb("google.protobuf.Timestamp", "\"1970-01-01T01:00:00.5+01:00\"", "10 80 ca b5 ee 01");
	to_pb("google.protobuf.Timestamp", "\"1969-12-31T23:30:00-00:30\"", "");
	rt("google.protobuf.Duration", "\"1.000340012s\"", "08 01 10 ac e0 14");
	rt("google.protobuf.Duration", "\"-0.500s\"", "10 80 b6 ca 91 fe ff ff ff ff 01");
	rt("google.protobuf.Duration", "\"-315576000000.999999999s\"",
	   "08 80 c4 d1 b1 e8 f6 ff ff ff 01 10 81 ec 94 a3 fc ff ff ff ff 01");
	rt("google.protobuf.Duration", "\"0s\"", "");
	to_pb("google.protobuf.Duration", "\"-0.5s\"", "10 80 b6 ca 91 fe ff ff ff ff 01");
	rt("google.protobuf.FieldMask", "\"a.b,cD\"", "0a 03 61 2e 62 0a 03 63 5f 64");
	rt("google.protobuf.FieldMask", "\"\"", "");
	rt("google.protobuf.Struct", "{\"a\":1,\"b\":[true,null,\"x\",{}]}",
	   "0a 0e 0a 01 61 12 09 11 00 00 00 00 00 00 f0 3f 0a 18 0a 01 62 12 13 32 11 0a 02 20 01 "
	   "0a 02 08 00 0a 03 1a 01 78 0a 02 2a 00");
	rt("google.protobuf.Struct", "{}", "");
	rt("google.protobuf.Value", "null", "08 00");
	rt("google.protobuf.Value", "1.5", "11 00 00 00 00 00 00 f8 3f");
	rt("google.protobuf.Value", "\"s\"", "1a 01 73");
	rt("google.protobuf.Value", "true", "20 01");
	rt("google.protobuf.Value", "{}", "2a 00");
	rt("google.protobuf.Value", "[]", "32 00");
	to_json("google.protobuf.Value", "", "null");
	rt("google.protobuf.ListValue", "[1]", "0a 09 11 00 00 00 00 00 00 f0 3f");
	rt("google.protobuf.ListValue", "[]", "");
	rt("google.protobuf.Int64Value", "\"5\"", "08 05");
	rt("google.protobuf.Int64Value", "\"0\"", "");
	to_pb("google.protobuf.Int64Value", "5", "08 05");
	rt("google.protobuf.UInt64Value", "\"18446744073709551615\"",
	   "08 ff ff ff ff ff ff ff ff ff 01");
	rt("google.protobuf.BoolValue", "false", "");
	rt("google.protobuf.StringValue", "\"\"", "");
	rt("google.protobuf.BytesValue", "\"AQ==\"", "0a 01 01");
	rt("google.protobuf.FloatValue", "\"NaN\"", "0d 00 00 c0 7f");
	rt("google.protobuf.DoubleValue", "-2.5", "09 00 00 00 00 00 00 04 c0");
	rt("google.protobuf.Empty", "{}", "");
	/* A Value field given null holds a null Value; other fields given null are absent. */
	rt("collector.SearchRequest", "{\"filters\":{\"f\":{\"value\":null}}}",
	   "22 09 0a 01 66 12 04 12 02 08 00");
	to_pb("t.S", "{\"sub\":null,\"rm\":null,\"mi\":null,\"s\":null,\"e\":null,\"pi\":null}",
	      "");
	json_err("google.protobuf.Empty", "{\"a\":1}", "no field");
	json_err("google.protobuf.Timestamp", "\"1970-01-01t00:00:00Z\"", "RFC 3339");
	json_err("google.protobuf.Timestamp", "\"1970-01-01T00:00:00\"", "RFC 3339");
	json_err("google.protobuf.Timestamp", "\"1970-13-01T00:00:00Z\"", "RFC 3339");
	json_err("google.protobuf.Timestamp", "\"2023-02-29T00:00:00Z\"", "RFC 3339");
	json_err("google.protobuf.Timestamp", "\"0000-12-31T00:00:00Z\"", "RFC 3339");
	json_err("google.protobuf.Timestamp", "\"1970-01-01T00:00:00.1234567890Z\"", "RFC 3339");
	json_err("google.protobuf.Timestamp", "\"0001-01-01T00:00:00+00:01\"", "out of range");
	json_err("google.protobuf.Timestamp", "0", "expected a string");
	json_err("google.protobuf.Duration", "\"315576000001s\"", "not a duration");
	json_err("google.protobuf.Duration", "\"1.5\"", "not a duration");
	json_err("google.protobuf.Duration", "\"1.s\"", "not a duration");
	json_err("google.protobuf.FieldMask", "\"a_b\"", "contains '_'");
	json_err("google.protobuf.Value", "1e999", "out of range");
	json_err("google.protobuf.Struct", "[]", "expected an object");
	json_err("google.protobuf.Struct", "{\"a\":1,\"a\":2}", "duplicate map key");
	json_err("google.protobuf.ListValue", "{}", "expected an array");
	pb_err("google.protobuf.Timestamp", "08 80 80 80 80 80 80 80 80 80 01", "out of range");
	pb_err("google.protobuf.Timestamp", "10 ff ff ff ff ff ff ff ff ff 01", "out of range");
	pb_err("google.protobuf.Duration", "08 01 10 ff ff ff ff ff ff ff ff ff 01",
	       "out of range");
	pb_err("google.protobuf.FieldMask", "0a 02 61 42", "no JSON form");
	pb_err("google.protobuf.FieldMask", "0a 02 61 5f", "ends with '_'");
	pb_err("google.protobuf.FieldMask", "0a 03 61 2c 62", "no JSON form");
	pb_err("google.protobuf.Value", "11 00 00 00 00 00 00 f8 7f", "no JSON form");
	pb_err("google.protobuf.Timestamp", "0d 00 00 00 00", "wire type");
}

static void test_any(void **state)
{
	(void)state;
	rt("google.protobuf.Any",
	   "{\"@type\":\"type.googleapis.com/collector.Status\",\"code\":\"NOT_FOUND\",\"message\":\"m\"}",
	   "0a 24 74 79 70 65 2e 67 6f 6f 67 6c 65 61 70 69 73 2e 63 6f 6d 2f 63 6f 6c 6c 65 63 74 "
	   "6f 72 2e 53 74 61 74 75 73 12 05 08 04 12 01 6d");
	/* "@type" may come last; output puts it first. */
	to_pb("google.protobuf.Any",
	      "{\"code\":\"NOT_FOUND\",\"message\":\"m\",\"@type\":\"type.googleapis.com/collector.Status\"}",
	      "0a 24 74 79 70 65 2e 67 6f 6f 67 6c 65 61 70 69 73 2e 63 6f 6d 2f 63 6f 6c 6c 65 63 74 "
	      "6f 72 2e 53 74 61 74 75 73 12 05 08 04 12 01 6d");
	rt("google.protobuf.Any",
	   "{\"@type\":\"type.googleapis.com/google.protobuf.Duration\",\"value\":\"1.500s\"}",
	   "0a 2c 74 79 70 65 2e 67 6f 6f 67 6c 65 61 70 69 73 2e 63 6f 6d 2f 67 6f 6f 67 6c 65 2e 70 "
	   "72 6f 74 6f 62 75 66 2e 44 75 72 61 74 69 6f 6e 12 08 08 01 10 80 ca b5 ee 01");
	rt("google.protobuf.Any", "{}", "");
	/* A type of the namespace, an empty inner message, Any in Any, Empty. */
	rt("google.protobuf.Any", "{\"@type\":\"x/t.S\"}", "0a 05 78 2f 74 2e 53");
	rt("google.protobuf.Any", "{\"@type\":\"t.S\",\"i32\":1}", "0a 03 74 2e 53 12 02 28 01");
	rt("google.protobuf.Any",
	   "{\"@type\":\"a/google.protobuf.Any\",\"value\":{\"@type\":\"a/t.S\",\"sub\":{}}}",
	   "0a 15 61 2f 67 6f 6f 67 6c 65 2e 70 72 6f 74 6f 62 75 66 2e 41 6e 79 12 0c 0a 05 61 2f "
	   "74 2e 53 12 03 9a 01 00");
	rt("google.protobuf.Any", "{\"@type\":\"a/google.protobuf.Empty\"}",
	   "0a 17 61 2f 67 6f 6f 67 6c 65 2e 70 72 6f 74 6f 62 75 66 2e 45 6d 70 74 79");
	to_json_f("google.protobuf.Any", "0a 03 74 2e 53 12 03 a8 03 01", JSON_PROTO_NAMES,
		  "{\"@type\":\"t.S\",\"snake_name\":1}");
	json_err("google.protobuf.Any", "{\"@type\":\"a/t.Nope\"}", "not known");
	json_err("google.protobuf.Any", "{\"i32\":1}", "\"@type\" is missing");
	json_err("google.protobuf.Any", "{\"@type\":1}", "\"@type\" is missing");
	json_err("google.protobuf.Any", "{\"@type\":\"a/google.protobuf.Duration\"}", "\"value\"");
	json_err("google.protobuf.Any", "{\"@type\":\"t.S\",\"@type\":\"t.S\"}", "given twice");
	json_err("google.protobuf.Any", "{\"@type\":\"t.S\",\"nope\":1}", "no field \"nope\"");
	pb_err("google.protobuf.Any", "0a 06 61 2f 74 2e 4e 6f", "not known");
	pb_err("google.protobuf.Any", "12 01 00", "no type URL");
	pb_err("google.protobuf.Any", "0a 03 74 2e 53 12 01 ff", "truncated");
	/* Types of a namespace are not seen from outside it. */
	const tp_message *any = tp_find_message(tp, NULL, "google.protobuf.Any");
	uint8_t b[16];
	size_t n = unhex("0a 03 74 2e 53", b);
	buf out = BUF_INIT;
	assert_int_equal(json_from_proto(tp, NULL, any, b, n, 0, &out), -EINVAL);
	assert_non_null(strstr(store_err_msg(), "not known"));
	buf_free(&out);
}

static void test_malformed_bytes(void **state)
{
	(void)state;
	pb_err("t.S", "28 80", "truncated varint");
	pb_err("t.S", "28 80 80 80 80 80 80 80 80 80 80 01", "truncated varint");
	pb_err("t.S", "4a 05 61", "length past the end");
	pb_err("t.S", "4a", "truncated length");
	pb_err("t.S", "09 00 00", "truncated fixed64");
	pb_err("t.S", "15 00", "truncated fixed32");
	pb_err("t.S", "48 01", "t.S.s: wire type 0");
	pb_err("t.S", "2d 00 00 00 00", "t.S.i32: wire type 5");
	pb_err("t.S", "9a 01 01 28", "truncated varint");
	pb_err("t.S", "4a 01 ff", "t.S.s: invalid UTF-8");
	pb_err("t.S", "4a 02 c0 80", "invalid UTF-8");	     /* overlong */
	pb_err("t.S", "4a 03 ed a0 80", "invalid UTF-8");    /* a surrogate */
	pb_err("t.S", "4a 04 f4 90 80 80", "invalid UTF-8"); /* past U+10FFFF */
	pb_err("t.S", "82 02 03 0a 01 ff", "invalid UTF-8"); /* a map key */
	pb_err("t.S", "00 01", "invalid field number");
	pb_err("t.S", "2e", "invalid wire type");
	pb_err("t.S", "aa 01 03 00 00 00", "truncated packed");
	pb_err("t.S", "a2 01 01 80", "truncated packed");
	pb_err("t.S", "f2 01 02 08 80", "truncated varint");
	pb_err("t.S", "f2 01 02 12 01", "length past the end");
	pb_err("t.S", "f2 01 02 10 01", "wire type 0");
	/* Occurrences of a message merge, but a field may not straddle two of them. */
	pb_err("t.S", "9a 01 01 28 9a 01 01 01", "truncated varint");
	pb_err("t.S", "82 02 09 0a 01 6b 12 01 28 12 01 01", "truncated varint");

	/* 64 nested messages are fine, 65 are not. */
	buf in = BUF_INIT;
	for (int level = 2; level <= 65; level++) {
		buf w = BUF_INIT;
		uint8_t hdr[4] = {0x9a, 0x01};
		size_t hl = 2;
		size_t len = in.len;
		do {
			hdr[hl++] = (uint8_t)(len | (len >= 0x80 ? 0x80 : 0));
			len >>= 7;
		} while (len);
		buf_append(&w, hdr, hl);
		buf_append(&w, in.data, in.len);
		buf_free(&in);
		in = w;
		buf out = BUF_INIT;
		int rc = json_from_proto(tp, "t", type("t.S"), (uint8_t *)in.data, in.len, 0, &out);
		if (level <= 64) {
			assert_int_equal(rc, 0);
			/* and back: the JSON of the deepest message allowed converts again */
			buf pb = BUF_INIT;
			assert_int_equal(
				json_to_proto(tp, "t", type("t.S"), out.text, out.len, &pb), 0);
			assert_int_equal(pb.len, in.len);
			buf_free(&pb);
		} else {
			assert_int_equal(rc, -EINVAL);
			assert_non_null(strstr(store_err_msg(), "nesting deeper than 64"));
		}
		buf_free(&out);
	}
	/* 65 levels of JSON objects are refused too. */
	char js[1024] = "";
	for (int i = 0; i < 64; i++)
		strcat(js, "{\"sub\":");
	strcat(js, "{}");
	for (int i = 0; i < 64; i++)
		strcat(js, "}");
	json_err("t.S", js, "nesting deeper than 64");
	buf_free(&in);
}

static void test_bad_json(void **state)
{
	(void)state;
	json_err("t.S", "{\"nope\":1}", "t.S has no field \"nope\"");
	json_err("t.S", "{\"i32\":\"abc\"}", "not a number");
	json_err("t.S", "{\"i32\":\" 1\"}", "not a number");
	json_err("t.S", "{\"i32\":true}", "expected a number");
	json_err("t.S", "{\"s\":1}", "expected a string");
	json_err("t.S", "{\"b\":\"true\"}", "expected true or false");
	json_err("t.S", "{\"ri\":1}", "expected an array");
	json_err("t.S", "{\"sub\":[]}", "expected an object");
	json_err("t.S", "{\"mi\":[]}", "expected an object");
	json_err("t.S", "[]", "expected an object");
	json_err("t.S", "{\"i32\":2147483648}", "out of range");
	json_err("t.S", "{\"i32\":-2147483649}", "out of range");
	json_err("t.S", "{\"i32\":1e10}", "out of range");
	json_err("t.S", "{\"i32\":1.5}", "not an integer");
	json_err("t.S", "{\"u32\":-1}", "out of range");
	json_err("t.S", "{\"u32\":4294967296}", "out of range");
	json_err("t.S", "{\"u64\":\"18446744073709551616\"}", "out of range");
	json_err("t.S", "{\"u64\":1.8446744073709552e19}", "out of range");
	json_err("t.S", "{\"i64\":\"9223372036854775808\"}", "out of range");
	json_err("t.S", "{\"i64\":\"-9223372036854775809\"}", "out of range");
	json_err("t.S", "{\"s64\":\"99999999999999999999999\"}", "out of range");
	json_err("t.S", "{\"f\":3.5e38}", "out of range");
	json_err("t.S", "{\"d\":1e309}", "out of range");
	json_err("t.S", "{\"d\":\"nan\"}", "not a number");
	json_err("t.S", "{\"e\":\"PURPLE\"}", "not a value of t.Color");
	json_err("t.S", "{\"e\":2147483648}", "out of range");
	json_err("t.S", "{\"by\":\"@@@@\"}", "invalid base64");
	json_err("t.S", "{\"by\":\"A\"}", "invalid base64");
	json_err("t.S", "{\"by\":\"QQ=\"}", "invalid base64");
	json_err("t.S", "{\"i32\":1,\"i32\":2}", "t.S.i32 is given twice");
	json_err("t.S", "{\"snakeName\":1,\"snake_name\":2}", "given twice");
	json_err("t.S", "{\"oi\":1,\"os\":\"x\"}", "more than one field of oneof o");
	json_err("t.S", "{\"mi\":{\"1\":\"a\",\"1\":\"b\"}}", "duplicate map key");
	json_err("t.S", "{\"mi\":{\"1\":\"a\",\"01\":\"b\"}}", "not an integer");
	json_err("t.S", "{\"mi\":{\"x\":\"a\"}}", "not an integer");
	json_err("t.S", "{\"mi\":{\"2147483648\":\"a\"}}", "out of range");
	json_err("t.S", "{\"mb\":{\"yes\":1}}", "not true or false");
	json_err("t.S", "{\"mi\":{\"1\":null}}", "null map value");
	json_err("t.S", "{\"ri\":[null]}", "null in a repeated field");
	json_err("t.S", "{\"rm\":[null]}", "null in a repeated field");
	json_err("t.S", "{\"s\":\"\\ud800\"}", "unpaired surrogate");
	json_err("t.S", "{\"s\":\"\\udc00\\ud800\"}", "unpaired surrogate");
	json_err("t.S", "{\"s\":\"\\ud800\\u0041\"}", "unpaired surrogate");
	/* Not JSON at all. */
	json_err("t.S", "", "unexpected end");
	json_err("t.S", "{\"i32\":1,}", "expected a member name");
	json_err("t.S", "{'i32':1}", "expected a member name");
	json_err("t.S", "{\"i32\":01}", "expected ',' or '}'");
	json_err("t.S", "{\"i32\":1.}", "bad number");
	json_err("t.S", "{\"i32\":-}", "bad number");
	json_err("t.S", "{\"i32\":+1}", "unexpected character");
	json_err("t.S", "{\"s\":\"a\nb\"}", "control character");
	json_err("t.S", "{\"s\":\"\\x\"}", "bad escape");
	json_err("t.S", "{\"s\":\"\\u12\"}", "bad \\u escape");
	json_err("t.S", "{\"s\":\"abc", "unterminated string");
	json_err("t.S", "{\"s\":\"\xff\"}", "invalid UTF-8");
	json_err("t.S", "{\"s\":\"\xed\xa0\x80\"}", "invalid UTF-8");
	json_err("t.S", "{} x", "trailing characters");
	json_err("t.S", "{\"b\":tru}", "unexpected character");
	json_err("t.S", "{\"i32\" 1}", "expected ':'");
	char deep[601];
	memset(deep, '[', 300);
	memset(deep + 300, ']', 300);
	deep[600] = '\0';
	json_err("google.protobuf.Value", deep, "nesting deeper");
}

static void test_unterminated_input(void **state)
{
	(void)state;
	/* Inputs are length-delimited: nothing is read past len, even where a NUL is missing. */
	static const char *texts[] = {
		"\"1970-01-01\"",	 "\"1x\"", "\"a_b\"",
		"{\"mi\":{\"x\":\"\"}}", "\"A\"",  "\"1970-01-01T00:00:00ZZ\"",
		"{\"e\":\"PURPLE\"}"};
	static const char *types[] = {"google.protobuf.Timestamp",
				      "google.protobuf.Duration",
				      "google.protobuf.FieldMask",
				      "t.S",
				      "google.protobuf.BytesValue",
				      "google.protobuf.Timestamp",
				      "t.S"};
	for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
		size_t n = strlen(texts[i]);
		char *exact = malloc(n);
		memcpy(exact, texts[i], n);
		buf out = BUF_INIT;
		assert_int_equal(json_to_proto(tp, "t", type(types[i]), exact, n, &out), -EINVAL);
		free(exact);
		buf_free(&out);
	}
	const tp_message *ts = type("google.protobuf.Timestamp");
	const char *ok = "\"1970-01-01T00:00:01Z\"";
	char *exact = malloc(strlen(ok));
	memcpy(exact, ok, strlen(ok));
	buf out = BUF_INIT;
	assert_int_equal(json_to_proto(tp, NULL, ts, exact, strlen(ok), &out), 0);
	assert_int_equal(out.len, 2);
	free(exact);
	buf_free(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_scalars),
		cmocka_unit_test(test_repeated_maps_oneofs),
		cmocka_unit_test(test_proto2),
		cmocka_unit_test(test_names_and_collector_types),
		cmocka_unit_test(test_well_known),
		cmocka_unit_test(test_any),
		cmocka_unit_test(test_malformed_bytes),
		cmocka_unit_test(test_bad_json),
		cmocka_unit_test(test_unterminated_input),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
