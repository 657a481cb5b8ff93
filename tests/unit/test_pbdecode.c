/* Bounded decoding (base/pbdecode.h): strings, malformed input, the depth limit at its
 * exact edge, and merges of repeated singular message fields, which must decode to what
 * protobuf-c's own unpacking makes of the same bytes, in linear time. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/pbdecode.h"
#include "collector/collection_repo.pb-c.h"
#include "collector/collection_server.pb-c.h"
#include "google/protobuf/struct.pb-c.h"

/* ---- building wire bytes ---- */

typedef struct wire {
	uint8_t *b;
	size_t len, cap;
} wire;

static void w_bytes(wire *w, const void *p, size_t n)
{
	if (w->len + n > w->cap) {
		w->cap = (w->len + n) * 2 + 64;
		w->b = realloc(w->b, w->cap);
		assert_non_null(w->b);
	}
	memcpy(w->b + w->len, p, n);
	w->len += n;
}

static void w_varint(wire *w, uint64_t v)
{
	uint8_t t[10];
	size_t n = 0;
	do {
		t[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
		v >>= 7;
	} while (v);
	w_bytes(w, t, n);
}

/* Field num, length-delimited, holding p[0..n). */
static void w_ld(wire *w, uint32_t num, const void *p, size_t n)
{
	w_varint(w, (uint64_t)num << 3 | 2);
	w_varint(w, n);
	w_bytes(w, p, n);
}

static void w_str(wire *w, uint32_t num, const char *s) { w_ld(w, num, s, strlen(s)); }

static void w_free(wire *w)
{
	free(w->b);
	*w = (wire){0};
}

static int decode(const ProtobufCMessageDescriptor *d, const wire *w, ProtobufCMessage **m,
		  char *err, size_t cap)
{
	return pbdecode(d, w->b, w->len, m, err, cap);
}

/* ---- strings ---- */

/* A CreateCollectionRequest whose nested collection.name is name[0..len). */
static void create_collection(wire *w, const char *name, size_t len)
{
	wire inner = {0};
	w_ld(&inner, 2, name, len); /* Collection.name */
	w_ld(w, 1, inner.b, inner.len);
	w_free(&inner);
}

static void test_nested_strings(void **state)
{
	(void)state;
	const ProtobufCMessageDescriptor *d = &collector__create_collection_request__descriptor;
	char err[200];
	ProtobufCMessage *m;
	wire w = {0};
	create_collection(&w, "fine", 4);
	assert_int_equal(decode(d, &w, &m, err, sizeof(err)), 0);
	assert_string_equal(((Collector__CreateCollectionRequest *)m)->collection->name, "fine");
	protobuf_c_message_free_unpacked(m, NULL);
	w_free(&w);
	create_collection(&w, "bad\0name", 8);
	assert_int_equal(decode(d, &w, &m, err, sizeof(err)), -EILSEQ);
	assert_null(m);
	assert_non_null(strstr(err, "'name'"));
	w_free(&w);
	create_collection(&w, "\xff\xfe", 2);
	assert_int_equal(decode(d, &w, &m, err, sizeof(err)), -EILSEQ);
	w_free(&w);
	/* Bytes of unknown fields may be anything. */
	uint8_t unknown[] = {0xfa, 0x01, 0x02, 0x00, 0xff}; /* field 31, length 2 */
	assert_int_equal(pbdecode(d, unknown, sizeof(unknown), &m, err, sizeof(err)), 0);
	protobuf_c_message_free_unpacked(m, NULL);
}

static void test_malformed(void **state)
{
	(void)state;
	const ProtobufCMessageDescriptor *d = &collector__create_collection_request__descriptor;
	char err[200];
	ProtobufCMessage *m;
	static const uint8_t truncated[] = {0x0a, 0x7f, 0x12};
	static const uint8_t group[] = {0x0b, 0x0c};	      /* field 1 as a group */
	static const uint8_t scalar_message[] = {0x08, 0x01}; /* message field, varint */
	static const uint8_t tag_zero[] = {0x02, 0x00};	      /* field number 0 */
	static const uint8_t long_varint[] = {0x10, 0xff, 0xff, 0xff, 0xff, 0xff,
					      0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
	const struct {
		const uint8_t *p;
		size_t n;
	} cases[] = {
		{truncated, sizeof(truncated)},		  {group, sizeof(group)},
		{scalar_message, sizeof(scalar_message)}, {tag_zero, sizeof(tag_zero)},
		{long_varint, sizeof(long_varint)},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(pbdecode(d, cases[i].p, cases[i].n, &m, err, sizeof(err)),
				 -EBADMSG);
		assert_null(m);
		assert_true(err[0] != 0);
	}
}

/* ---- depth ---- */

/* A google.protobuf.Value whose deepest message sits at depth `deepest` (the top one is
 * depth 0): Values and ListValues alternate, list_value = 6, values = 1. Written from the
 * innermost message outwards, at the end of a buffer, so that each level costs its header
 * only. */
static void nested_value(wire *w, int deepest)
{
	size_t cap = (size_t)deepest * 8 + 16, start = cap;
	uint8_t *b = malloc(cap);
	assert_non_null(b);
	for (int k = deepest - 1; k >= 0; k--) {
		size_t inner = cap - start;
		uint8_t len[10];
		size_t n = 0;
		do {
			len[n++] = (uint8_t)((inner & 0x7f) | (inner > 0x7f ? 0x80 : 0));
			inner >>= 7;
		} while (inner);
		start -= n;
		memcpy(b + start, len, n);
		b[--start] = (uint8_t)((k % 2 == 0 ? 6 : 1) << 3 | 2);
	}
	w_bytes(w, b + start, cap - start);
	free(b);
}

static void test_depth_limit(void **state)
{
	(void)state;
	const ProtobufCMessageDescriptor *d = &google__protobuf__value__descriptor;
	char err[200];
	ProtobufCMessage *m;
	wire w = {0};
	nested_value(&w, PB_MAX_DEPTH);
	assert_int_equal(decode(d, &w, &m, err, sizeof(err)), 0);
	protobuf_c_message_free_unpacked(m, NULL);
	w_free(&w);
	nested_value(&w, PB_MAX_DEPTH + 1);
	assert_int_equal(decode(d, &w, &m, err, sizeof(err)), -ELOOP);
	assert_non_null(strstr(err, "deeper than 64"));
	w_free(&w);
	/* Far deeper than any stack would take from protobuf-c: refused the same way. */
	nested_value(&w, 100000);
	assert_int_equal(decode(d, &w, &m, err, sizeof(err)), -ELOOP);
	w_free(&w);
}

/* ---- merges ---- */

/* Serializes m; the caller frees. */
static uint8_t *packed(const ProtobufCMessage *m, size_t *n)
{
	*n = protobuf_c_message_get_packed_size(m);
	uint8_t *b = malloc(*n + 1);
	assert_non_null(b);
	protobuf_c_message_pack(m, b);
	return b;
}

/* pbdecode and protobuf-c's own unpacking make the same message of w. */
static void assert_same_as_protobuf_c(const ProtobufCMessageDescriptor *d, const wire *w)
{
	char err[200];
	ProtobufCMessage *ours, *theirs = protobuf_c_message_unpack(d, NULL, w->len, w->b);
	assert_non_null(theirs);
	assert_int_equal(decode(d, w, &ours, err, sizeof(err)), 0);
	size_t n1, n2;
	uint8_t *a = packed(ours, &n1), *b = packed(theirs, &n2);
	assert_int_equal(n1, n2);
	assert_memory_equal(a, b, n1);
	free(a);
	free(b);
	protobuf_c_message_free_unpacked(ours, NULL);
	protobuf_c_message_free_unpacked(theirs, NULL);
}

/* Collection{name, indexed_fields[], metadata{labels{k: v}}} with some parts left out. */
static void collection_part(wire *w, const char *name, const char *indexed, const char *label)
{
	wire c = {0};
	if (name)
		w_str(&c, 2, name);
	if (indexed)
		w_str(&c, 4, indexed);
	if (label) {
		wire entry = {0}, md = {0};
		w_str(&entry, 1, label);
		w_str(&entry, 2, "v");
		w_ld(&md, 3, entry.b, entry.len); /* Metadata.labels */
		w_ld(&c, 6, md.b, md.len);	  /* Collection.metadata */
		w_free(&entry);
		w_free(&md);
	}
	w_ld(w, 1, c.b ? c.b : (const uint8_t *)"", c.len); /* CreateCollectionRequest.collection */
	w_free(&c);
}

static void test_merge_matches_protobuf_c(void **state)
{
	(void)state;
	const ProtobufCMessageDescriptor *d = &collector__create_collection_request__descriptor;
	wire w = {0};
	collection_part(&w, "a", "x", NULL);
	collection_part(&w, NULL, "y", "k1");
	collection_part(&w, "b", NULL, "k2");
	collection_part(&w, NULL, NULL, NULL);
	assert_same_as_protobuf_c(d, &w);
	char err[200];
	ProtobufCMessage *m;
	assert_int_equal(decode(d, &w, &m, err, sizeof(err)), 0);
	Collector__Collection *c = ((Collector__CreateCollectionRequest *)m)->collection;
	assert_string_equal(c->name, "b");
	assert_int_equal(c->n_indexed_fields, 2);
	assert_string_equal(c->indexed_fields[1], "y");
	assert_int_equal(c->metadata->n_labels, 2);
	protobuf_c_message_free_unpacked(m, NULL);
	w_free(&w);
}

/* Members of a oneof replace each other (protobuf-c does not merge them). */
static void test_oneof_last_wins(void **state)
{
	(void)state;
	wire w = {0}, s1 = {0}, entry = {0}, s2 = {0};
	w_str(&entry, 1, "one");
	w_ld(&s1, 1, entry.b, entry.len);
	w_free(&entry);
	w_str(&entry, 1, "two");
	w_ld(&s2, 1, entry.b, entry.len);
	w_ld(&w, 5, s1.b, s1.len); /* struct_value */
	w_ld(&w, 6, "", 0);	   /* list_value */
	w_ld(&w, 5, s2.b, s2.len); /* struct_value again */
	w_ld(&w, 5, s1.b, s1.len);
	assert_same_as_protobuf_c(&google__protobuf__value__descriptor, &w);
	w_free(&w);
	w_free(&s1);
	w_free(&s2);
	w_free(&entry);
}

/* Random mixes of repeated occurrences at two levels, checked against protobuf-c. */
static void test_merge_random(void **state)
{
	(void)state;
	srand(13);
	const ProtobufCMessageDescriptor *d = &collector__create_collection_request__descriptor;
	static const char *names[] = {NULL, "p", "q"}, *labels[] = {NULL, "a", "b", "c"};
	for (int round = 0; round < 500; round++) {
		wire w = {0};
		int parts = 1 + rand() % 6;
		for (int i = 0; i < parts; i++)
			collection_part(&w, names[rand() % 3], names[rand() % 3],
					labels[rand() % 4]);
		assert_same_as_protobuf_c(d, &w);
		w_free(&w);
	}
}

/* ListRequest.filter sent 600,000 times: protobuf-c alone copies the entries gathered so
 * far at each copy (1.8 * 10^11 entry copies, over a minute here: 100,000 copies took
 * 2.2 s); decoded in one pass, this test ends well inside meson's 60 s timeout. */
static void test_merge_is_linear(void **state)
{
	(void)state;
	enum { COPIES = 600000 };
	wire one = {0}, entry = {0}, w = {0};
	w_str(&entry, 1, "a");
	w_ld(&entry, 2, "", 0);
	w_ld(&one, 1, entry.b, entry.len); /* Struct.fields */
	w_str(&w, 2, "coll");
	for (int i = 0; i < COPIES; i++)
		w_ld(&w, 3, one.b, one.len); /* ListRequest.filter */
	char err[200];
	ProtobufCMessage *m;
	assert_int_equal(decode(&collector__list_request__descriptor, &w, &m, err, sizeof(err)), 0);
	Collector__ListRequest *lr = (Collector__ListRequest *)m;
	assert_string_equal(lr->collection_name, "coll");
	assert_int_equal(lr->filter->n_fields, COPIES);
	protobuf_c_message_free_unpacked(m, NULL);
	w_free(&one);
	w_free(&entry);
	w_free(&w);
}

/* The cost estimate counts fields at every depth and stops past its bound. */
static void test_fields_within(void **state)
{
	(void)state;
	const ProtobufCMessageDescriptor *d = &collector__create_collection_request__descriptor;
	wire w = {0};
	collection_part(&w, "a", "x", "k"); /* collection{name, indexed, metadata{labels{k, v}}} */
	/* collection, name, indexed_fields, metadata, labels, key, value: 7 fields */
	assert_true(pbdecode_fields_within(d, w.b, w.len, 7));
	assert_false(pbdecode_fields_within(d, w.b, w.len, 6));
	w_free(&w);
	/* A megabyte of bytes is one field. */
	size_t n = 1 << 20;
	char *big = calloc(1, n);
	assert_non_null(big);
	w_ld(&w, 3, big, n); /* CreateCollectionRequest has no field 3: unknown, one field */
	assert_true(pbdecode_fields_within(d, w.b, w.len, 1));
	free(big);
	w_free(&w);
}

/* An empty message may come as NULL and no length (an empty buffer never written): it
 * decodes, with no arithmetic on the NULL (UBSan in fuzz_workflow). */
static void test_empty_as_null(void **state)
{
	(void)state;
	const ProtobufCMessageDescriptor *d = &collector__get_request__descriptor;
	char err[200];
	assert_int_equal(pbdecode_check(d, NULL, 0, NULL, err, sizeof(err)), 0);
	assert_true(pbdecode_fields_within(d, NULL, 0, 0));
	ProtobufCMessage *m = NULL;
	assert_int_equal(pbdecode(d, NULL, 0, &m, err, sizeof(err)), 0);
	assert_non_null(m);
	protobuf_c_message_free_unpacked(m, NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nested_strings),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_depth_limit),
		cmocka_unit_test(test_merge_matches_protobuf_c),
		cmocka_unit_test(test_oneof_last_wins),
		cmocka_unit_test(test_merge_random),
		cmocka_unit_test(test_merge_is_linear),
		cmocka_unit_test(test_fields_within),
		cmocka_unit_test(test_empty_as_null),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
