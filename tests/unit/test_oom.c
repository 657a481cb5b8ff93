/* Out of memory on a request's path. Every allocation of a bounded decode (with nesting and
 * the merge of repeated message fields), of a store put (through the collection's writer
 * thread and SQLite) and of a JSON transcode in both directions is made to fail in turn
 * (base/mem.h's injection): the operation must end in a clean error (-ENOMEM, its outputs
 * as they were), crash nothing and leak nothing (LeakSanitizer checks at exit in the ASan
 * build), and succeed once N is past its last allocation. Each walk also runs with every
 * allocation from the N-th on failing, which keeps the cleanup paths short of memory too. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/buf.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/pbdecode.h"
#include "collector/collection_repo.pb-c.h"
#include "collector/collection_server.pb-c.h"
#include "descbuild.h"
#include "store/coll.h"
#include "store/json.h"
#include "store/store.h"
#include "store/typepool.h"

extern const uint8_t api_descriptor_set[];
extern const size_t api_descriptor_set_len;

/* One operation under test: run with the injection armed, then check (disarmed) that its
 * outcome rc is clean and release what it made. */
typedef struct oom_case {
	const char *what;
	int (*run)(void *ctx);
	void (*check)(void *ctx, int rc, bool injected);
	void *ctx;
	/* SQLite gets over some failed allocations by itself (a smaller cache, a statement
	 * prepared again): the operation may then succeed although an allocation failed. */
	bool may_absorb;
} oom_case;

/* Fails allocation 1, 2, ... of the case until it runs with none failed; returns how
 * many allocations that run made. */
static long walk(const oom_case *k, bool persistent)
{
	for (long n = 1;; n++) {
		mem_fail_arm(n, persistent);
		int rc = k->run(k->ctx);
		long seen = mem_fail_disarm();
		bool injected = mem_fail_count() > 0;
		if (injected && rc != -ENOMEM && !(rc == 0 && k->may_absorb))
			fail_msg("%s: allocation %ld failed%s: rc %d, not -ENOMEM", k->what, n,
				 persistent ? " (and every one after it)" : "", rc);
		if (!injected && rc)
			fail_msg("%s: failed (rc %d) with every allocation granted", k->what, rc);
		k->check(k->ctx, rc, injected);
		if (!injected) {
			/* Every run starts from the same state, but for the store's caches. */
			if (!k->may_absorb)
				assert_int_equal(seen, n - 1);
			return seen;
		}
	}
}

static void walk_both(const oom_case *k)
{
	long n = walk(k, false), np = walk(k, true);
	assert_true(n > 0);
	/* The same allocations each time, except where SQLite's caches warm up. */
	if (!k->may_absorb)
		assert_int_equal(np, n);
	print_message("%s: %ld allocations, each failed in turn (then %ld, each with all after it)\n",
		      k->what, n, np);
}

/* ---- (a) a bounded decode: nesting, repeats, merges ---- */

static void w_varint(buf *w, uint64_t v)
{
	do {
		buf_putc(w, (char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0)));
		v >>= 7;
	} while (v);
}

static void w_ld(buf *w, uint32_t num, const buf *inner)
{
	w_varint(w, (uint64_t)num << 3 | 2);
	w_varint(w, inner->len);
	buf_append(w, inner->data, inner->len);
}

static void w_str(buf *w, uint32_t num, const char *s)
{
	w_varint(w, (uint64_t)num << 3 | 2);
	w_varint(w, strlen(s));
	buf_puts(w, s);
}

static void w_int(buf *w, uint32_t num, uint64_t v)
{
	w_varint(w, (uint64_t)num << 3);
	w_varint(w, v);
}

/* A Collection part: name, indexed fields, message type, metadata with a timestamp and a
 * label. Sent several times, every part merges into the first. */
static void collection_part(buf *w, int i)
{
	buf c = BUF_INIT, t = BUF_INIT, md = BUF_INIT, ts = BUF_INIT, e = BUF_INIT;
	char s[32];
	snprintf(s, sizeof(s), "name%d", i);
	w_str(&c, 2, s);
	w_str(&c, 4, "a.b");
	w_str(&c, 4, "items[2].name");
	w_str(&t, 1, "ns");
	w_str(&t, 2, "pkg.Type");
	w_ld(&c, 3, &t);
	w_int(&ts, 1, 1700000000 + (uint64_t)i);
	w_ld(&md, 1, &ts);
	snprintf(s, sizeof(s), "label%d", i);
	w_str(&e, 1, s);
	w_str(&e, 2, "value");
	w_ld(&md, 3, &e);
	w_ld(&c, 6, &md);
	w_ld(w, 1, &c);
	buf_free(&c);
	buf_free(&t);
	buf_free(&md);
	buf_free(&ts);
	buf_free(&e);
}

/* A Value: a Struct of depth levels, each with a list of a number, a string and the next
 * level. */
static void nested_value(buf *w, int depth)
{
	buf st = BUF_INIT, entry = BUF_INIT, v = BUF_INIT, list = BUF_INIT, item = BUF_INIT;
	if (depth) {
		w_varint(&item, 2 << 3 | 1); /* number_value */
		double d = depth;
		buf_append(&item, &d, 8);
		w_ld(&list, 1, &item);
		buf_reset(&item);
		w_str(&item, 3, "text"); /* string_value */
		w_ld(&list, 1, &item);
		buf_reset(&item);
		nested_value(&item, depth - 1);
		w_ld(&list, 1, &item);
		w_ld(&v, 6, &list); /* list_value */
		w_str(&entry, 1, "k");
		w_ld(&entry, 2, &v);
		w_ld(&st, 1, &entry);
		w_ld(w, 5, &st); /* struct_value */
	} else {
		w_int(w, 4, 1); /* bool_value */
	}
	buf_free(&st);
	buf_free(&entry);
	buf_free(&v);
	buf_free(&list);
	buf_free(&item);
}

typedef struct decode_ctx {
	const ProtobufCMessageDescriptor *d;
	buf wire;
	ProtobufCMessage *m;
	uint8_t *want; /* protobuf-c's own decode, packed again */
	size_t want_len;
} decode_ctx;

static int decode_run(void *ctx)
{
	decode_ctx *x = ctx;
	char err[200];
	return pbdecode(x->d, x->wire.data, x->wire.len, &x->m, err, sizeof(err));
}

static void decode_check(void *ctx, int rc, bool injected)
{
	(void)injected;
	decode_ctx *x = ctx;
	if (rc) {
		assert_null(x->m);
		return;
	}
	size_t n = protobuf_c_message_get_packed_size(x->m);
	uint8_t *got = malloc(n ? n : 1);
	assert_non_null(got);
	protobuf_c_message_pack(x->m, got);
	assert_int_equal(n, x->want_len);
	assert_memory_equal(got, x->want, n);
	free(got);
	protobuf_c_message_free_unpacked(x->m, NULL);
	x->m = NULL;
}

static void decode_walk(const char *what, const ProtobufCMessageDescriptor *d, buf *wire)
{
	decode_ctx x = {.d = d, .wire = *wire};
	ProtobufCMessage *ref = protobuf_c_message_unpack(d, NULL, wire->len, wire->data);
	assert_non_null(ref);
	x.want_len = protobuf_c_message_get_packed_size(ref);
	x.want = malloc(x.want_len);
	assert_non_null(x.want);
	protobuf_c_message_pack(ref, x.want);
	protobuf_c_message_free_unpacked(ref, NULL);
	/* The walk must go through the merge rewrite. */
	pbdecode_info info;
	char err[200];
	assert_int_equal(pbdecode_check(d, wire->data, wire->len, &info, err, sizeof(err)), 0);
	assert_true(info.merges);
	walk_both(&(oom_case){.what = what, .run = decode_run, .check = decode_check, .ctx = &x});
	free(x.want);
	buf_free(wire);
}

static void test_decode(void **state)
{
	(void)state;
	buf w = BUF_INIT;
	for (int i = 0; i < 4; i++)
		collection_part(&w, i);
	decode_walk("pbdecode CreateCollectionRequest", &collector__create_collection_request__descriptor,
		    &w);

	/* ListRequest.filter sent three times, each a Struct nested a few levels. */
	for (int i = 0; i < 3; i++) {
		buf st = BUF_INIT, entry = BUF_INIT, v = BUF_INIT;
		char key[16];
		snprintf(key, sizeof(key), "f%d", i);
		nested_value(&v, 4);
		w_str(&entry, 1, key);
		w_ld(&entry, 2, &v);
		w_ld(&st, 1, &entry);
		w_ld(&w, 3, &st);
		buf_free(&st);
		buf_free(&entry);
		buf_free(&v);
	}
	w_str(&w, 1, "ns");
	w_str(&w, 2, "coll");
	w_str(&w, 4, "a desc");
	decode_walk("pbdecode ListRequest", &collector__list_request__descriptor, &w);
}

/* ---- (b) a store put: a record through the collection's writer ---- */

typedef struct put_ctx {
	store *s;
	store_coll *c;
	int seq;     /* records attempted */
	int stored;  /* records acknowledged */
	char id[32];
	buf json;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	int rc;
} put_ctx;

static void put_done(store_write_req *r, int rc)
{
	put_ctx *p = r->ctx;
	pthread_mutex_lock(&p->mu);
	p->rc = rc;
	p->done = true;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

static int put_run(void *ctx)
{
	put_ctx *p = ctx;
	snprintf(p->id, sizeof(p->id), "rec%d", ++p->seq);
	store_op op = {.kind = STORE_OP_INSERT,
		       .id = p->id,
		       .row = {.data = p->id, .data_len = strlen(p->id), .json = p->json.text}};
	store_write_req req = {.ops = &op, .nops = 1, .done = put_done, .ctx = p};
	p->done = false;
	int rc = store_write(p->c, &req);
	if (rc)
		return rc;
	pthread_mutex_lock(&p->mu);
	while (!p->done)
		pthread_cond_wait(&p->cv, &p->mu);
	pthread_mutex_unlock(&p->mu);
	return p->rc;
}

static void put_check(void *ctx, int rc, bool injected)
{
	(void)injected;
	put_ctx *p = ctx;
	store_reader *r;
	assert_int_equal(store_coll_read_begin(p->c, &r), 0);
	store_record rec;
	int got = store_reader_get(r, p->id, &rec);
	store_coll_read_end(r);
	/* Written when acknowledged, not at all when refused. */
	assert_int_equal(got, rc ? -ENOENT : 0);
	p->stored += !rc;
	int64_t records, bytes;
	assert_int_equal(store_coll_stats(p->c, &records, &bytes), 0);
	assert_int_equal(records, p->stored);
}

static void test_store_put(void **state)
{
	(void)state;
	log_set_level(LOG_ERROR); /* each failed commit is a warning */
	char dir[] = "/tmp/test_oom_XXXXXX";
	assert_non_null(mkdtemp(dir));
	put_ctx p = {.json = BUF_INIT};
	pthread_mutex_init(&p.mu, NULL);
	pthread_cond_init(&p.cv, NULL);
	store_options o = {.sync_normal = true};
	assert_int_equal(store_open(dir, &o, &p.s), 0);
	store_collection def = {.ns = "oom", .name = "records", .def = "def", .def_len = 3};
	assert_int_equal(store_collection_create(p.s, &def, 0), 0);
	assert_int_equal(store_coll_acquire(p.s, "oom", "records", &p.c), 0);
	/* A record with text for the full-text index, long enough to need growing buffers. */
	buf_puts(&p.json, "{\"title\":\"out of memory\",\"tags\":[\"a\",\"b\\u00e9\"],\"body\":\"");
	for (int i = 0; i < 200; i++)
		buf_puts(&p.json, "words to index ");
	buf_puts(&p.json, "\",\"n\":{\"deep\":{\"er\":\"text\"}}}");
	buf_terminate(&p.json);
	assert_false(p.json.failed);

	walk_both(&(oom_case){.what = "store put",
			      .run = put_run,
			      .check = put_check,
			      .ctx = &p,
			      .may_absorb = true});

	store_coll_release(p.c);
	store_close(p.s);
	buf_free(&p.json);
	pthread_mutex_destroy(&p.mu);
	pthread_cond_destroy(&p.cv);
	char cmd[64];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

/* ---- (c) JSON transcoding, both ways ---- */

static typepool *tp;

/* o.M: scalars, bytes, repeated fields, a recursive message, maps, a oneof and the
 * well-known types with special JSON forms. */
static const tp_message *test_type(void)
{
	db_file *f = db_file_new("o/m.proto", "o", "proto3");
	db_import(f, "google/protobuf/struct.proto");
	db_import(f, "google/protobuf/timestamp.proto");
	db_import(f, "google/protobuf/any.proto");
	db_msg *m = db_message(f, "M");
	db_field_add(m, "s", 1, 1, 9, NULL);
	db_field_add(m, "by", 2, 1, 12, NULL);
	db_field_add(m, "ri", 3, 3, 5, NULL);
	db_field_add(m, "sub", 4, 1, 11, ".o.M");
	db_field_add(m, "rm", 5, 3, 11, ".o.M");
	db_map(m, "ms", 6, 9, 11, ".o.M");
	db_map(m, "mss", 7, 9, 9, NULL);
	db_field_add(m, "st", 8, 1, 11, ".google.protobuf.Struct");
	db_field_add(m, "ts", 9, 1, 11, ".google.protobuf.Timestamp");
	db_field_add(m, "any", 10, 1, 11, ".google.protobuf.Any");
	db_field_add(m, "d", 11, 1, 1, NULL);
	db_field_add(m, "i64", 12, 1, 3, NULL);
	int o = db_oneof(m, "o");
	db_in_oneof(db_field_add(m, "os", 13, 1, 9, NULL), o);
	db_in_oneof(db_field_add(m, "om", 14, 1, 11, ".o.M"), o);
	char *err = NULL;
	if (typepool_add_file(tp, "o", f, &err))
		fail_msg("test type: %s", err);
	db_free();
	const tp_message *t = typepool_find_message(tp, "o", "o.M");
	assert_non_null(t);
	return t;
}

typedef struct json_ctx {
	const tp_message *m;
	bool to_proto;
	const char *in;
	size_t in_len;
	buf out;
	const buf *want;
	char *err;
} json_ctx;

static int json_run(void *ctx)
{
	json_ctx *x = ctx;
	if (x->to_proto)
		return json_to_proto(tp, "o", x->m, x->in, x->in_len, &x->out, &x->err);
	return json_from_proto(tp, "o", x->m, (const uint8_t *)x->in, x->in_len, 0, &x->out,
			       &x->err);
}

static void json_check(void *ctx, int rc, bool injected)
{
	(void)injected;
	json_ctx *x = ctx;
	/* The output keeps what was there before, and gains the result only on success. */
	assert_true(x->out.len >= 4);
	assert_memory_equal(x->out.data, "keep", 4);
	if (rc) {
		assert_int_equal(x->out.len, 4);
		assert_false(x->out.failed);
	} else {
		assert_null(x->err);
		assert_int_equal(x->out.len - 4, x->want->len);
		assert_memory_equal(x->out.data + 4, x->want->data, x->want->len);
	}
	mem_free(x->err);
	x->err = NULL;
	/* A new buffer, so that the next run allocates as this one did. */
	buf_free(&x->out);
	buf_puts(&x->out, "keep");
}

static void json_walk(const char *what, const tp_message *m, bool to_proto, const buf *in,
		      const buf *want)
{
	json_ctx x = {.m = m, .to_proto = to_proto, .in = in->text, .in_len = in->len, .want = want};
	buf_puts(&x.out, "keep");
	walk_both(&(oom_case){.what = what, .run = json_run, .check = json_check, .ctx = &x});
	buf_free(&x.out);
}

static void test_json(void **state)
{
	(void)state;
	tp = typepool_new();
	assert_non_null(tp);
	char *err = NULL;
	if (typepool_add_set(tp, NULL, api_descriptor_set, api_descriptor_set_len, &err))
		fail_msg("builtin: %s", err);
	const tp_message *m = test_type();

	/* Past the transcoder's inline scratch (4 KiB) and occurrence table (128), with
	 * escapes, base64, nesting, maps, a oneof and every special form. */
	buf json = BUF_INIT;
	buf_puts(&json, "{\"s\":\"caf\\u00e9 \\ud83d\\ude00 \\n");
	for (int i = 0; i < 300; i++)
		buf_puts(&json, "long text ");
	buf_puts(&json, "\",\"by\":\"");
	for (int i = 0; i < 1500; i++)
		buf_puts(&json, "AAEC");
	buf_puts(&json, "\",\"ri\":[");
	for (int i = 0; i < 300; i++)
		buf_puts(&json, i ? ",7" : "7");
	buf_puts(&json, "],\"sub\":{\"s\":\"one\",\"sub\":{\"i64\":\"-12\",\"sub\":{\"d\":1.5}}},"
			"\"rm\":[{\"s\":\"a\"},{\"ri\":[1,2]},{\"om\":{\"os\":\"x\"}}],"
			"\"ms\":{\"k1\":{\"s\":\"v1\"},\"k2\":{\"sub\":{\"s\":\"v2\"}}},"
			"\"mss\":{\"a\":\"b\",\"c\":\"d\"},"
			"\"st\":{\"x\":[1,\"two\",{\"three\":null,\"four\":true}],\"y\":{\"z\":[]}},"
			"\"ts\":\"2024-01-02T03:04:05.123Z\","
			"\"any\":{\"@type\":\"type.googleapis.com/o.M\",\"s\":\"inner\",\"ri\":[3]},"
			"\"d\":\"NaN\",\"i64\":\"9007199254740993\",\"os\":\"chosen\"}");
	assert_false(json.failed);

	buf pb = BUF_INIT, back = BUF_INIT;
	if (json_to_proto(tp, "o", m, json.text, json.len, &pb, &err))
		fail_msg("reference to_proto: %s", err);
	if (json_from_proto(tp, "o", m, pb.data, pb.len, 0, &back, &err))
		fail_msg("reference from_proto: %s", err);

	json_walk("json_to_proto", m, true, &json, &pb);
	json_walk("json_from_proto", m, false, &pb, &back);

	buf_free(&json);
	buf_free(&pb);
	buf_free(&back);
	typepool_free(tp);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decode),
		cmocka_unit_test(test_store_put),
		cmocka_unit_test(test_json),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
