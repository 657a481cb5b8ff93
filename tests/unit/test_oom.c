/* Out of memory on a request's path. Every allocation of a bounded decode (with nesting and
 * the merge of repeated message fields), of a store put (through the collection's writer
 * thread and SQLite), of a JSON transcode in both directions, of a whole unary call on a
 * server connection (nghttp2, metadata, gzip, decode, handler, reply) and of the services'
 * Create, List, Search and RegisterProto is made to fail in turn (base/mem.h's
 * injection): the operation must end in a clean error (-ENOMEM or RESOURCE_EXHAUSTED, its
 * outputs as they were), crash nothing and leak nothing (LeakSanitizer checks at exit in
 * the ASan build), and succeed once N is past its last allocation. Each walk also runs with
 * every allocation from the N-th on failing, which keeps the cleanup paths short of memory
 * too. */
#include <errno.h>
#include <nghttp2/nghttp2.h>
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
#include "base/clock.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/pbdecode.h"
#include "collector/collection_repo.pb-c.h"
#include "collector/collection_server.pb-c.h"
#include "collector/registry.pb-c.h"
#include "descbuild.h"
#include "h2/call.h"
#include "h2/gzip.h"
#include "h2/server.h"
#include "io/pool.h"
#include "io/reactor.h"
#include "services/collector_api.h"
#include "services/registry.h"
#include "services/svc.h"
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
	/* Optional, disarmed: the outcome from what run left (rc is run's). */
	int (*settle)(void *ctx, int rc);
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
		if (k->settle)
			rc = k->settle(k->ctx, rc);
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
	print_message(
		"%s: %ld allocations, each failed in turn (then %ld, each with all after it)\n",
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
	decode_walk("pbdecode CreateCollectionRequest",
		    &collector__create_collection_request__descriptor, &w);

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
	int seq;    /* records attempted */
	int stored; /* records acknowledged */
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
	int rc = store_coll_write(p->c, &req);
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

static tp_pool *tp;

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
	if (tp_add_file(tp, "o", f))
		fail_msg("test type: %s", store_err_msg());
	db_free();
	const tp_message *t = tp_find_message(tp, "o", "o.M");
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
} json_ctx;

static int json_run(void *ctx)
{
	json_ctx *x = ctx;
	if (x->to_proto)
		return json_to_proto(tp, "o", x->m, x->in, x->in_len, &x->out);
	return json_from_proto(tp, "o", x->m, (const uint8_t *)x->in, x->in_len, 0, &x->out);
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
		assert_int_equal(x->out.len - 4, x->want->len);
		assert_memory_equal(x->out.data + 4, x->want->data, x->want->len);
	}
	/* A new buffer, so that the next run allocates as this one did. */
	buf_free(&x->out);
	buf_puts(&x->out, "keep");
}

static void json_walk(const char *what, const tp_message *m, bool to_proto, const buf *in,
		      const buf *want)
{
	json_ctx x = {.m = m,
		      .to_proto = to_proto,
		      .in = in->text,
		      .in_len = in->len,
		      .want = want};
	buf_puts(&x.out, "keep");
	walk_both(&(oom_case){.what = what, .run = json_run, .check = json_check, .ctx = &x});
	buf_free(&x.out);
}

static void test_json(void **state)
{
	(void)state;
	tp = tp_new();
	assert_non_null(tp);
	if (tp_add_set(tp, NULL, api_descriptor_set, api_descriptor_set_len))
		fail_msg("builtin: %s", store_err_msg());
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
	buf_puts(&json,
		 "],\"sub\":{\"s\":\"one\",\"sub\":{\"i64\":\"-12\",\"sub\":{\"d\":1.5}}},"
		 "\"rm\":[{\"s\":\"a\"},{\"ri\":[1,2]},{\"om\":{\"os\":\"x\"}}],"
		 "\"ms\":{\"k1\":{\"s\":\"v1\"},\"k2\":{\"sub\":{\"s\":\"v2\"}}},"
		 "\"mss\":{\"a\":\"b\",\"c\":\"d\"},"
		 "\"st\":{\"x\":[1,\"two\",{\"three\":null,\"four\":true}],\"y\":{\"z\":[]}},"
		 "\"ts\":\"2024-01-02T03:04:05.123Z\","
		 "\"any\":{\"@type\":\"type.googleapis.com/o.M\",\"s\":\"inner\",\"ri\":[3]},"
		 "\"d\":\"NaN\",\"i64\":\"9007199254740993\",\"os\":\"chosen\"}");
	assert_false(json.failed);

	buf pb = BUF_INIT, back = BUF_INIT;
	if (json_to_proto(tp, "o", m, json.text, json.len, &pb))
		fail_msg("reference to_proto: %s", store_err_msg());
	if (json_from_proto(tp, "o", m, pb.data, pb.len, 0, &back))
		fail_msg("reference from_proto: %s", store_err_msg());

	json_walk("json_to_proto", m, true, &json, &pb);
	json_walk("json_from_proto", m, false, &pb, &back);

	buf_free(&json);
	buf_free(&pb);
	buf_free(&back);
	tp_free(tp);
}

/* ---- calls on a server connection: a client's bytes in, its answer read back ---- */

/* clang-format would lay this macro's braced initializer out as a block. */
/* clang-format off */
#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), strlen(n), strlen(v), 0}
/* clang-format on */

typedef struct exchange {
	buf body; /* the request's DATA: prefix and message */
	buf wire; /* what the client sends: preface, SETTINGS, HEADERS, DATA */
	buf out;  /* what the server sends, reserved ahead so that keeping it allocates nothing */
} exchange;

static ssize_t client_send(nghttp2_session *ng, const uint8_t *data, size_t len, int flags,
			   void *user)
{
	(void)ng, (void)flags;
	buf_append(user, data, len);
	return (ssize_t)len;
}

static ssize_t client_body(nghttp2_session *ng, int32_t stream, uint8_t *out, size_t cap,
			   uint32_t *flags, nghttp2_data_source *src, void *user)
{
	(void)ng, (void)stream, (void)user;
	buf *body = src->ptr;
	assert_true(body->len <= cap);
	memcpy(out, body->data, body->len);
	*flags = NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)body->len;
}

/* A client session that has sent its SETTINGS and the request (to wire, when not NULL):
 * the answer then finds it where the server saw it. */
static nghttp2_session *client_new(nghttp2_session_callbacks *cbs, buf *wire, const nghttp2_nv *nv,
				   size_t n, buf *body)
{
	nghttp2_session *ng;
	nghttp2_session_callbacks_set_send_callback(cbs, client_send);
	assert_int_equal(nghttp2_session_client_new(&ng, cbs, wire), 0);
	assert_int_equal(nghttp2_submit_settings(ng, NGHTTP2_FLAG_NONE, NULL, 0), 0);
	nghttp2_data_provider dp = {.source.ptr = body, .read_callback = client_body};
	assert_true(nghttp2_submit_request(ng, NULL, nv, n, &dp, NULL) > 0);
	return ng;
}

/* The bytes of one call of path with msg, gzip-compressed when gzip, with metadata. */
static void exchange_init(exchange *x, const char *path, const buf *msg, bool gzip)
{
	*x = (exchange){.body = BUF_INIT, .wire = BUF_INIT, .out = BUF_INIT};
	buf z = BUF_INIT;
	if (gzip)
		assert_int_equal(gzip_compress(&z, msg->data, msg->len), 0);
	const buf *m = gzip ? &z : msg;
	uint8_t prefix[5] = {gzip, (uint8_t)(m->len >> 24), (uint8_t)(m->len >> 16),
			     (uint8_t)(m->len >> 8), (uint8_t)m->len};
	buf_append(&x->body, prefix, 5);
	buf_append(&x->body, m->data, m->len);
	buf_free(&z);
	const nghttp2_nv nv[] = {
		NV(":method", "POST"),
		NV(":scheme", "http"),
		NV(":path", path),
		NV(":authority", "oom"),
		NV("content-type", "application/grpc"),
		NV("te", "trailers"),
		NV("grpc-accept-encoding", "gzip"),
		NV("grpc-timeout", "10S"),
		NV("x-trace-bin", "AQID"),
		NV("x-user", "someone"),
		NV("grpc-encoding", "gzip"), /* last: only with gzip */
	};
	nghttp2_session_callbacks *cbs;
	assert_int_equal(nghttp2_session_callbacks_new(&cbs), 0);
	nghttp2_session *ng =
		client_new(cbs, &x->wire, nv, sizeof(nv) / sizeof(nv[0]) - !gzip, &x->body);
	assert_int_equal(nghttp2_session_send(ng), 0);
	nghttp2_session_del(ng);
	nghttp2_session_callbacks_del(cbs);
	assert_int_equal(buf_reserve(&x->out, 1 << 20), 0);
	assert_false(x->wire.failed || x->body.failed);
}

static void exchange_free(exchange *x)
{
	buf_free(&x->body);
	buf_free(&x->wire);
	buf_free(&x->out);
}

/* The answer as the client reads it. */
typedef struct answer {
	bool complete; /* :status 200 and a grpc-status, no reset or GOAWAY with an error */
	bool ok_status, reset;
	char status[8];	   /* grpc-status */
	char message[200]; /* grpc-message */
	buf data;
	buf msg; /* the first message, inflated */
} answer;

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
		     const uint8_t *value, size_t vlen, uint8_t flags, void *user)
{
	(void)ng, (void)f, (void)flags;
	answer *a = user;
	if (nlen == 7 && !memcmp(name, ":status", 7))
		a->ok_status = vlen == 3 && !memcmp(value, "200", 3);
	if (nlen == 11 && !memcmp(name, "grpc-status", 11))
		snprintf(a->status, sizeof(a->status), "%.*s", (int)vlen, value);
	if (nlen == 12 && !memcmp(name, "grpc-message", 12))
		snprintf(a->message, sizeof(a->message), "%.*s", (int)vlen, value);
	return 0;
}

static int on_data(nghttp2_session *ng, uint8_t flags, int32_t stream, const uint8_t *data,
		   size_t len, void *user)
{
	(void)ng, (void)flags, (void)stream;
	buf_append(&((answer *)user)->data, data, len);
	return 0;
}

static int on_frame(nghttp2_session *ng, const nghttp2_frame *f, void *user)
{
	(void)ng;
	if (f->hd.type == NGHTTP2_RST_STREAM ||
	    (f->hd.type == NGHTTP2_GOAWAY && f->goaway.error_code))
		((answer *)user)->reset = true;
	return 0;
}

static void exchange_read(exchange *x, answer *a)
{
	*a = (answer){.data = BUF_INIT, .msg = BUF_INIT};
	nghttp2_session_callbacks *cbs;
	assert_int_equal(nghttp2_session_callbacks_new(&cbs), 0);
	nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame);
	const nghttp2_nv nv[] = {NV(":method", "POST"), NV(":scheme", "http"), NV(":path", "/"),
				 NV(":authority", "oom")};
	buf sent = BUF_INIT;
	nghttp2_session *ng = client_new(cbs, &sent, nv, 4, &x->body);
	assert_int_equal(nghttp2_session_send(ng), 0);
	nghttp2_session_set_user_data(ng, a);
	bool parsed = nghttp2_session_mem_recv(ng, x->out.data, x->out.len) == (ssize_t)x->out.len;
	nghttp2_session_del(ng);
	nghttp2_session_callbacks_del(cbs);
	buf_free(&sent);
	a->complete = parsed && !a->reset && a->ok_status && a->status[0];
	if (a->complete && a->data.len >= 5) {
		const uint8_t *d = a->data.data + 5;
		size_t n = a->data.len - 5;
		if (a->data.data[0])
			assert_int_equal(gzip_decompress(&a->msg, d, n, 1 << 20), 0);
		else
			buf_append(&a->msg, d, n);
	}
}

static void answer_free(answer *a)
{
	buf_free(&a->data);
	buf_free(&a->msg);
}

/* One call on a new detached connection of ep, turning r until the call's pool work is
 * back and nothing moves. Returns what h2_conn_feed said (0, or <0: the connection
 * broke). */
static int exchange_run(exchange *x, h2_endpoint *ep, reactor *r)
{
	buf_reset(&x->out);
	h2_conn *h = h2_conn_new_detached(ep);
	if (!h)
		return -ENOMEM;
	h2_conn_keep_output(h, &x->out);
	int rc = h2_conn_feed(h, x->wire.data, x->wire.len);
	for (int quiet = 0; quiet < 2;) {
		reactor_run_once(r, reactor_jobs_pending(r) ? 1000000 : 0);
		if (h2_conn_feed(h, NULL, 0))
			rc = -EPROTO;
		if (!h2_endpoint_active_calls(ep) && !reactor_jobs_pending(r))
			break;
		quiet = reactor_jobs_pending(r) ? 0 : quiet + 1;
	}
	h2_conn_free_detached(h);
	/* Cancelled calls' pool work still comes back to this reactor. */
	while (reactor_jobs_pending(r))
		reactor_run_once(r, 1000000);
	return rc;
}

/* ---- (d) a unary call on a server connection ---- */

static struct {
	reactor *r;
	h2_endpoint *ep;
	exchange x;
	buf want;    /* what the request decodes to, packed again */
	int handled; /* handler runs */
	int replied; /* of which answered in full */
} srv;

/* Echoes the request, with initial metadata: the reply path of every unary handler. */
static void echo(call *c, const ProtobufCMessage *req)
{
	srv.handled++;
	size_t n = protobuf_c_message_get_packed_size(req);
	uint8_t *packed = malloc(n);
	assert_non_null(packed);
	protobuf_c_message_pack(req, packed);
	bool same = n == srv.want.len && !memcmp(packed, srv.want.data, n);
	free(packed);
	if (!same) {
		call_finish(c, GRPC_INTERNAL, "the request did not decode as sent");
		return;
	}
	/* The rest of the call as sent: custom metadata in order (-bin decoded), the
	 * deadline from grpc-timeout 10S, the detached connection's peer. */
	const call_md *trace = call_md_at(c, 0), *user = call_md_at(c, 1);
	int64_t left = call_deadline(c) - reactor_now(call_reactor(c));
	if (call_md_count(c) != 2 || call_md_at(c, 2) || !trace || !user ||
	    strcmp(trace->name, "x-trace-bin") || trace->value_len != 3 ||
	    memcmp(trace->value, "\x01\x02\x03", 3) || strcmp(user->name, "x-user") ||
	    strcmp((const char *)user->value, "someone") || left <= 0 || left > 10 * NS_PER_SEC ||
	    strcmp(call_peer(c), "fuzz") || call_cancelled(c)) {
		call_finish(c, GRPC_INTERNAL, "the call's metadata or deadline is not as sent");
		return;
	}
	int rc = call_add_initial_md(c, "x-echo-bin", "\x01\x02", 2);
	rc = rc ? rc : call_send(c, req);
	call_finish(c, rc ? GRPC_RESOURCE_EXHAUSTED : GRPC_OK, rc ? "out of memory" : NULL);
	srv.replied += !rc;
}

static const method echo_method = {
	.path = "/oom.Test/Echo",
	.kind = METHOD_UNARY,
	.input = &collector__list_request__descriptor,
	.output = &collector__list_request__descriptor,
	.h = {.on_request = echo},
};

static int echo_run(void *ctx)
{
	(void)ctx;
	srv.handled = srv.replied = 0;
	return exchange_run(&srv.x, srv.ep, srv.r);
}

/* The call got through when the client reads the echoed message and grpc-status 0;
 * anything less (a reset stream, a broken connection, another status) is the clean
 * failure of an allocation. */
static int echo_settle(void *ctx, int rc)
{
	(void)ctx;
	answer a;
	exchange_read(&srv.x, &a);
	bool through = a.complete && !strcmp(a.status, "0") && a.msg.len == srv.want.len &&
		       !memcmp(a.msg.data, srv.want.data, a.msg.len);
	if (a.complete && strcmp(a.status, "0") && strcmp(a.status, "8"))
		fail_msg("echo answered %s (%s), not RESOURCE_EXHAUSTED", a.status, a.message);
	answer_free(&a);
	assert_true(srv.handled <= 1);
	assert_true(srv.replied <= srv.handled);
	/* A call answered in full was answered by the handler, once. */
	assert_true(!through || srv.replied == 1);
	return rc || !through ? -ENOMEM : 0;
}

static void echo_check(void *ctx, int rc, bool injected)
{
	(void)ctx, (void)rc, (void)injected;
	/* Whatever failed, nothing of the call or the connection is left behind. */
	assert_int_equal(h2_endpoint_active_calls(srv.ep), 0);
	assert_int_equal(h2_endpoint_conn_count(srv.ep), 0);
}

static void test_server_call(void **state)
{
	(void)state;
	log_set_level(LOG_ERROR);
	int err;
	srv.r = reactor_new(&err);
	assert_non_null(srv.r);
	method_table *t = method_table_new();
	assert_non_null(t);
	assert_int_equal(method_table_add(t, &echo_method), 0);
	h2_server_opts o;
	h2_server_opts_default(&o);
	h2_server *s = h2_server_new(t, &o);
	assert_non_null(s);
	srv.ep = h2_endpoint_new(s, srv.r);
	assert_non_null(srv.ep);

	/* A ListRequest whose filter comes twice (merged), nested a few levels. */
	buf req = BUF_INIT;
	w_str(&req, 1, "ns");
	w_str(&req, 2, "coll");
	for (int i = 0; i < 2; i++) {
		buf st = BUF_INIT, entry = BUF_INIT, v = BUF_INIT;
		nested_value(&v, 3);
		w_str(&entry, 1, i ? "b" : "a");
		w_ld(&entry, 2, &v);
		w_ld(&st, 1, &entry);
		w_ld(&req, 3, &st);
		buf_free(&st);
		buf_free(&entry);
		buf_free(&v);
	}
	ProtobufCMessage *ref = protobuf_c_message_unpack(&collector__list_request__descriptor,
							  NULL, req.len, req.data);
	assert_non_null(ref);
	assert_int_equal(buf_reserve(&srv.want, protobuf_c_message_get_packed_size(ref)), 0);
	srv.want.len = protobuf_c_message_pack(ref, srv.want.data);
	protobuf_c_message_free_unpacked(ref, NULL);
	exchange_init(&srv.x, "/oom.Test/Echo", &req, true);
	buf_free(&req);

	walk_both(&(oom_case){.what = "unary call on a server connection",
			      .run = echo_run,
			      .settle = echo_settle,
			      .check = echo_check});

	h2_endpoint_free(srv.ep);
	h2_server_free(s);
	method_table_free(t);
	reactor_free(srv.r);
	exchange_free(&srv.x);
	buf_free(&srv.want);
}

/* ---- (e) the node's services: Create, List, Search and RegisterProto ---- */

static struct {
	char dir[64];
	reactor *r;
	pool *pool;
	store *st;
	tp_pool *types;
	svc_env env;
	method_table *methods;
	h2_server *server;
	h2_endpoint *ep;
	uint8_t token_key[SVC_TOKEN_KEY_LEN];
	int seq;
	exchange x;
} node;

/* A call of the node, disarmed: its grpc-status, and the message in *msg. */
static int node_call(const char *path, const buf *req, buf *msg)
{
	exchange x;
	exchange_init(&x, path, req, false);
	assert_int_equal(exchange_run(&x, node.ep, node.r), 0);
	answer a;
	exchange_read(&x, &a);
	assert_true(a.complete);
	if (msg) {
		buf_reset(msg);
		buf_append(msg, a.msg.data, a.msg.len);
	}
	int code = atoi(a.status);
	answer_free(&a);
	exchange_free(&x);
	return code;
}

/* One method of the node walked: the request of each run (seq counts them), and what an
 * OK answer must hold: verify's checks, or for a read (same), the very answer it gives
 * with every allocation granted (a failure absorbed on the way must not change it). */
typedef struct node_walk {
	const char *what, *path;
	void (*request)(buf *req, int seq);
	void (*verify)(const buf *resp, int seq);
	bool same;
} node_walk;

static const node_walk *walking;
static buf reference;

static void next_exchange(void)
{
	buf req = BUF_INIT;
	walking->request(&req, ++node.seq);
	exchange_free(&node.x);
	exchange_init(&node.x, walking->path, &req, false);
	buf_free(&req);
}

static int node_run(void *ctx)
{
	(void)ctx;
	return exchange_run(&node.x, node.ep, node.r);
}

/* OK with what the method promises, or a clean failure: RESOURCE_EXHAUSTED, a reset
 * stream or a broken connection. */
static int node_settle(void *ctx, int rc)
{
	(void)ctx;
	answer a;
	exchange_read(&node.x, &a);
	int out = -ENOMEM;
	if (!rc && a.complete && !strcmp(a.status, "0")) {
		if (walking->verify)
			walking->verify(&a.msg, node.seq);
		if (walking->same && (a.msg.len != reference.len ||
				      memcmp(a.msg.data, reference.data, reference.len)))
			fail_msg("%s answered OK, but not what it answers with memory",
				 walking->what);
		out = 0;
	} else if (a.complete && strcmp(a.status, "8")) {
		fail_msg("%s answered %s (%s), not RESOURCE_EXHAUSTED", walking->what, a.status,
			 a.message);
	}
	answer_free(&a);
	return out;
}

static void node_check(void *ctx, int rc, bool injected)
{
	(void)ctx, (void)rc, (void)injected;
	/* Whatever failed, nothing of the call or its connection is left behind. */
	assert_int_equal(h2_endpoint_active_calls(node.ep), 0);
	assert_int_equal(h2_endpoint_conn_count(node.ep), 0);
	assert_int_equal(pool_queued(node.pool), 0);
	next_exchange();
}

static void node_walk_run(const node_walk *w)
{
	walking = w;
	if (w->same) {
		buf req = BUF_INIT;
		w->request(&req, node.seq);
		assert_int_equal(node_call(w->path, &req, &reference), 0);
		buf_free(&req);
	}
	next_exchange();
	walk_both(&(oom_case){.what = w->what,
			      .run = node_run,
			      .settle = node_settle,
			      .check = node_check,
			      .may_absorb = true});
}

/* CreateRequest{collection_name, item: Any of grpc.testing.SimpleRequest, id}. */
static void create_request(buf *req, int seq)
{
	buf any = BUF_INIT, item = BUF_INIT, payload = BUF_INIT, status = BUF_INIT;
	char id[32];
	snprintf(id, sizeof(id), "rec%d", seq);
	w_int(&item, 2, 314);			   /* response_size */
	w_str(&payload, 2, "\x01\x02 some bytes"); /* Payload.body */
	w_ld(&item, 3, &payload);
	w_int(&item, 4, 1);		       /* fill_username */
	w_int(&status, 1, 3);		       /* EchoStatus.code */
	w_str(&status, 2, "searchable words"); /* EchoStatus.message */
	w_ld(&item, 7, &status);	       /* response_status */
	w_str(&any, 1, "type.googleapis.com/grpc.testing.SimpleRequest");
	w_ld(&any, 2, &item);
	w_str(req, 2, "things");
	w_ld(req, 3, &any);
	w_str(req, 4, id);
	buf_free(&any);
	buf_free(&item);
	buf_free(&payload);
	buf_free(&status);
}

/* The record is stored, under its id (read back disarmed). */
static void create_verify(const buf *resp, int seq)
{
	char id[32];
	snprintf(id, sizeof(id), "rec%d", seq);
	Collector__CreateResponse *r =
		collector__create_response__unpack(NULL, resp->len, resp->data);
	assert_non_null(r);
	assert_string_equal(r->id, id);
	collector__create_response__free_unpacked(r, NULL);
	buf req = BUF_INIT;
	w_str(&req, 2, "things");
	w_str(&req, 3, id);
	assert_int_equal(node_call("/collector.CollectionService/Get", &req, NULL), 0);
	buf_free(&req);
}

/* A page of two records of the collection, filtered and ordered, after the first page:
 * the query compiler, its page token, the reader and the page's byte budget. */
static char list_token[256];

static void list_request(buf *req, int seq)
{
	(void)seq;
	buf st = BUF_INIT, entry = BUF_INIT, v = BUF_INIT;
	double size = 314;
	w_varint(&v, 2 << 3 | 1); /* number_value */
	buf_append(&v, &size, 8);
	w_str(&entry, 1, "response_size");
	w_ld(&entry, 2, &v);
	w_ld(&st, 1, &entry);
	w_str(req, 2, "things");
	w_ld(req, 3, &st);
	w_str(req, 4, "@created_at desc");
	w_int(req, 5, 2);
	if (list_token[0])
		w_str(req, 6, list_token);
	buf_free(&st);
	buf_free(&entry);
	buf_free(&v);
}

static void list_verify(const buf *resp, int seq)
{
	(void)seq;
	Collector__ListResponse *r = collector__list_response__unpack(NULL, resp->len, resp->data);
	assert_non_null(r);
	assert_int_equal(r->n_items, 2);
	assert_true(r->total_count >= 4);
	assert_true(r->next_page_token && *r->next_page_token);
	collector__list_response__free_unpacked(r, NULL);
}

/* Full text and filters (a range, a list of values), two results: the query compiler
 * with FTS5, the value conversion, the reader. */
static void filter_entry(buf *req, const char *key, int op, const buf *value)
{
	buf f = BUF_INIT, e = BUF_INIT;
	w_int(&f, 1, (uint64_t)op);
	w_ld(&f, 2, value);
	w_str(&e, 1, key);
	w_ld(&e, 2, &f);
	w_ld(req, 4, &e);
	buf_free(&f);
	buf_free(&e);
}

static void search_request(buf *req, int seq)
{
	(void)seq;
	buf v = BUF_INIT, list = BUF_INIT, item = BUF_INIT;
	double min = 300;
	w_str(req, 2, "things");
	w_str(req, 3, "searchable");
	w_varint(&v, 2 << 3 | 1); /* number_value */
	buf_append(&v, &min, 8);
	filter_entry(req, "response_size", 4, &v); /* OP_GREATER_EQUAL */
	buf_reset(&v);
	for (int code = 2; code <= 4; code++) {
		double d = code;
		buf_reset(&item);
		w_varint(&item, 2 << 3 | 1);
		buf_append(&item, &d, 8);
		w_ld(&list, 1, &item);
	}
	w_ld(&v, 6, &list);				  /* list_value */
	filter_entry(req, "response_status.code", 7, &v); /* OP_IN */
	w_int(req, 8, 2);
	buf_free(&v);
	buf_free(&list);
	buf_free(&item);
}

static void search_verify(const buf *resp, int seq)
{
	(void)seq;
	Collector__SearchResponse *r =
		collector__search_response__unpack(NULL, resp->len, resp->data);
	assert_non_null(r);
	assert_int_equal(r->n_results, 2);
	assert_true(r->total_count >= 4);
	collector__search_response__free_unpacked(r, NULL);
}

/* RegisterProtoRequest with a new file each run: oom/f<seq>.proto, package oom<seq>,
 * message M { string a = 1; repeated int32 b = 2; M sub = 3; }. */
static void field(buf *msg, const char *name, int number, int label, int type,
		  const char *type_name)
{
	buf f = BUF_INIT;
	w_str(&f, 1, name);
	w_int(&f, 3, (uint64_t)number);
	w_int(&f, 4, (uint64_t)label);
	w_int(&f, 5, (uint64_t)type);
	if (type_name)
		w_str(&f, 6, type_name);
	w_ld(msg, 2, &f);
	buf_free(&f);
}

static void register_request(buf *req, int seq)
{
	buf file = BUF_INIT, msg = BUF_INIT;
	char s[64];
	snprintf(s, sizeof(s), "oom/f%d.proto", seq);
	w_str(&file, 1, s);
	snprintf(s, sizeof(s), "oom%d", seq);
	w_str(&file, 2, s);
	w_str(&msg, 1, "M");
	field(&msg, "a", 1, 1, 9, NULL);
	field(&msg, "b", 2, 3, 5, NULL);
	snprintf(s, sizeof(s), ".oom%d.M", seq);
	field(&msg, "sub", 3, 1, 11, s);
	w_ld(&file, 4, &msg);
	w_str(&file, 12, "proto3");
	w_ld(req, 2, &file);
	buf_free(&file);
	buf_free(&msg);
}

static void register_verify(const buf *resp, int seq)
{
	Collector__RegisterProtoResponse *r =
		collector__register_proto_response__unpack(NULL, resp->len, resp->data);
	assert_non_null(r);
	char name[64];
	snprintf(name, sizeof(name), "oom%d.M", seq);
	assert_int_equal(r->n_registered_messages, 1);
	assert_string_equal(r->registered_messages[0], name);
	collector__register_proto_response__free_unpacked(r, NULL);
}

static void test_services(void **state)
{
	(void)state;
	log_set_level(LOG_ERROR);
	snprintf(node.dir, sizeof(node.dir), "/tmp/test_oom_node.XXXXXX");
	assert_non_null(mkdtemp(node.dir));
	int err;
	store_options so = {.sync_normal = true};
	node.r = reactor_new(&err);
	node.pool = pool_new(2, 64);
	node.types = tp_new();
	assert_true(node.r && node.pool && node.types);
	assert_int_equal(tp_add_set(node.types, NULL, api_descriptor_set, api_descriptor_set_len),
			 0);
	assert_int_equal(store_open(node.dir, &so, &node.st), 0);
	node.env = (svc_env){.pool = node.pool,
			     .store = node.st,
			     .types = node.types,
			     .default_ns = "oom",
			     .endpoint = "127.0.0.1:1",
			     .token_key = node.token_key,
			     .max_message_bytes = 4 << 20};
	node.methods = method_table_new();
	assert_non_null(node.methods);
	assert_int_equal(registry_open(&node.env, NULL, &node.env.registry), 0);
	assert_int_equal(collector_api_register_all(node.methods, &node.env), 0);
	assert_int_equal(registry_add_node_services(node.env.registry, node.methods), 0);
	h2_server_opts o;
	h2_server_opts_default(&o);
	node.server = h2_server_new(node.methods, &o);
	assert_non_null(node.server);
	h2_server_set_pool(node.server, node.pool);
	h2_server_set_gate(node.server, registry_gate, node.env.registry);
	node.ep = h2_endpoint_new(node.server, node.r);
	assert_non_null(node.ep);

	/* The collection, of a compiled-in type, with a few records. */
	buf req = BUF_INIT, c = BUF_INIT, t = BUF_INIT, resp = BUF_INIT;
	w_str(&c, 2, "things");
	w_str(&t, 2, "grpc.testing.SimpleRequest");
	w_ld(&c, 3, &t);
	w_ld(&req, 1, &c);
	assert_int_equal(node_call("/collector.CollectionRepo/CreateCollection", &req, NULL), 0);
	buf_free(&c);
	buf_free(&t);
	for (int i = 0; i < 3; i++) {
		buf_reset(&req);
		create_request(&req, ++node.seq);
		assert_int_equal(node_call("/collector.CollectionService/Create", &req, NULL), 0);
	}

	static const node_walk create = {"CollectionService.Create",
					 "/collector.CollectionService/Create", create_request,
					 create_verify};
	node_walk_run(&create);

	/* List from the second page on: the first one gives its token. */
	buf_reset(&req);
	list_request(&req, 0);
	assert_int_equal(node_call("/collector.CollectionService/List", &req, &resp), 0);
	Collector__ListResponse *first =
		collector__list_response__unpack(NULL, resp.len, resp.data);
	assert_non_null(first);
	snprintf(list_token, sizeof(list_token), "%s", first->next_page_token);
	collector__list_response__free_unpacked(first, NULL);
	static const node_walk list = {"CollectionService.List",
				       "/collector.CollectionService/List", list_request,
				       list_verify, true};
	node_walk_run(&list);

	static const node_walk search = {"CollectionService.Search",
					 "/collector.CollectionService/Search", search_request,
					 search_verify, true};
	node_walk_run(&search);

	static const node_walk reg = {"CollectorRegistry.RegisterProto",
				      "/collector.CollectorRegistry/RegisterProto",
				      register_request, register_verify};
	node_walk_run(&reg);
	buf_free(&req);
	buf_free(&resp);
	buf_free(&reference);

	exchange_free(&node.x);
	h2_endpoint_free(node.ep);
	h2_server_free(node.server);
	method_table_free(node.methods);
	pool_free(node.pool);
	registry_free(node.env.registry);
	store_close(node.st);
	tp_free(node.types);
	reactor_free(node.r);
	char cmd[96];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", node.dir);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decode),	 cmocka_unit_test(test_store_put),
		cmocka_unit_test(test_json),	 cmocka_unit_test(test_server_call),
		cmocka_unit_test(test_services),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
