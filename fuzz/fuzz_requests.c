/* Arbitrary bytes as the request of every method the node serves, through the same path
 * as a real call: an HTTP/2 connection of the server (detached from any socket), the
 * registry's validation, bounded decoding (on the reactor, or on the pool when large),
 * then the method's handler with its pool work, on a real store (in /dev/shm, so that
 * commits cost no fsync), type pool and registry. Each input is one call; the harness runs
 * the reactor until the call and its pool work are over.
 *
 * Input: the method's path without its leading '/' ("collector.CollectionService/List"),
 * a '\n', then the request message. A path the node does not serve picks a method by its
 * hash, so that mutated paths still reach handlers. The request goes in one gRPC message
 * split over DATA frames, after the headers (with x-collector-namespace "fuzz").
 *
 * A structure-aware mutator (LLVMFuzzerCustomMutator) reads the request with the method's
 * descriptors and, half of the time, repeats a field (a singular message field sent many
 * times), nests a Struct, Value, ListValue or DescriptorProto deeper, or adds a field of
 * the message's own, at any depth; the other half is libFuzzer's own mutation. Run it
 * with -max_len at the message limit (fuzz_requests.flags). */
#include <nghttp2/nghttp2.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/hash.h"
#include "base/log.h"
#include "h2/server.h"
#include "io/pool.h"
#include "services/collector_api.h"
#include "services/registry.h"
#include "store/store.h"

extern const uint8_t api_descriptor_set[];
extern const size_t api_descriptor_set_len;

size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max);

#define MESSAGE_LIMIT (4 * 1024 * 1024)
/* The world (store, registry, type pool) is made again this often, so that what the
 * inputs create stays bounded in long campaigns. */
#define RESET_EVERY 2000

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
	unsigned runs;
} w;

static void world_down(void)
{
	h2_endpoint_free(w.ep);
	h2_server_free(w.server);
	method_table_free(w.methods);
	pool_free(w.pool);
	registry_free(w.env.registry);
	store_close(w.st);
	tp_free(w.types);
	reactor_free(w.r);
	char cmd[96];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", w.dir);
	if (system(cmd))
		abort();
}

static void world_up(void)
{
	log_set_level(LOG_ERROR);
	snprintf(w.dir, sizeof(w.dir), "/dev/shm/fuzz_requests.XXXXXX");
	if (!mkdtemp(w.dir))
		abort();
	int err;
	store_options so = {.sync_normal = true};
	w.r = reactor_new(&err);
	w.pool = pool_new(2, 64);
	w.types = tp_new();
	if (!w.r || !w.pool || !w.types ||
	    tp_add_set(w.types, NULL, api_descriptor_set, api_descriptor_set_len) ||
	    store_open(w.dir, &so, &w.st))
		abort();
	w.env = (svc_env){.pool = w.pool,
			  .store = w.st,
			  .types = w.types,
			  .default_ns = "fuzz",
			  .endpoint = "127.0.0.1:1",
			  .token_key = w.token_key,
			  .max_message_bytes = MESSAGE_LIMIT};
	w.methods = method_table_new();
	if (registry_open(&w.env, NULL, &w.env.registry) || !w.methods ||
	    collector_api_register_all(w.methods, &w.env) ||
	    registry_add_node_services(w.env.registry, w.methods))
		abort();
	h2_server_opts o;
	h2_server_opts_default(&o);
	o.max_message_bytes = MESSAGE_LIMIT;
	w.server = h2_server_new(w.methods, &o);
	if (!w.server)
		abort();
	h2_server_set_pool(w.server, w.pool);
	h2_server_set_gate(w.server, registry_gate, w.env.registry);
	if (!(w.ep = h2_endpoint_new(w.server, w.r)))
		abort();
}

/* ---- the method an input names ---- */

static const method *method_of(const uint8_t *data, size_t size, size_t *body_at)
{
	const uint8_t *nl = memchr(data, '\n', size);
	size_t plen = nl ? (size_t)(nl - data) : 0;
	*body_at = nl ? plen + 1 : 0;
	char path[256];
	if (plen && plen < sizeof(path) - 1) {
		path[0] = '/';
		memcpy(path + 1, data, plen);
		const method *m = method_table_find(w.methods, path, plen + 1);
		if (m)
			return m;
	}
	size_t n = method_table_count(w.methods);
	return method_table_at(w.methods, hash_fnv1a(HASH_FNV1A_INIT, data, plen) % n);
}

/* ---- one call over a detached connection ---- */

static void put_frame(buf *o, uint8_t type, uint8_t flags, uint32_t sid, const uint8_t *p,
		      size_t len)
{
	uint8_t h[9] = {(uint8_t)(len >> 16),
			(uint8_t)(len >> 8),
			(uint8_t)len,
			type,
			flags,
			(uint8_t)(sid >> 24 & 0x7f),
			(uint8_t)(sid >> 16),
			(uint8_t)(sid >> 8),
			(uint8_t)sid};
	if (buf_append(o, h, sizeof(h)) || buf_append(o, p, len))
		abort();
}

static void request_bytes(buf *o, const char *path, const uint8_t *msg, size_t len)
{
	static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
	if (buf_append(o, preface, sizeof(preface) - 1))
		abort();
	put_frame(o, NGHTTP2_SETTINGS, 0, 0, NULL, 0);
	/* Acknowledges the server's SETTINGS, so that its 1 MiB stream window applies. */
	put_frame(o, NGHTTP2_SETTINGS, NGHTTP2_FLAG_ACK, 0, NULL, 0);
	nghttp2_nv nv[] = {
/* clang-format would lay this macro's braced initializer out as a block. */
/* clang-format off */
#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), strlen(n), strlen(v), NGHTTP2_NV_FLAG_NONE}
		/* clang-format on */
		NV(":method", "POST"),
		NV(":scheme", "http"),
		NV(":path", path),
		NV(":authority", "fuzz"),
		NV("content-type", "application/grpc"),
		NV("te", "trailers"),
		NV("x-collector-namespace", "fuzz"),
#undef NV
	};
	nghttp2_hd_deflater *hd;
	uint8_t block[1024];
	if (nghttp2_hd_deflate_new(&hd, 4096))
		abort();
	ssize_t n = nghttp2_hd_deflate_hd(hd, block, sizeof(block), nv, sizeof(nv) / sizeof(nv[0]));
	nghttp2_hd_deflate_del(hd);
	if (n < 0)
		abort();
	put_frame(o, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, 1, block, (size_t)n);
	buf framed = {0};
	uint8_t prefix[5] = {0, (uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
			     (uint8_t)len};
	if (buf_append(&framed, prefix, 5) || buf_append(&framed, msg, len))
		abort();
	for (size_t off = 0; off < framed.len; off += 16384) {
		size_t k = framed.len - off < 16384 ? framed.len - off : 16384;
		put_frame(o, NGHTTP2_DATA, off + k == framed.len ? NGHTTP2_FLAG_END_STREAM : 0, 1,
			  framed.data + off, k);
	}
	buf_free(&framed);
}

/* Turns the reactor until the call's pool work is done and nothing moves any more (a
 * server stream that never ends, Health/Watch, is cut when the connection goes). */
static void settle(h2_conn *h)
{
	for (int quiet = 0; quiet < 2;) {
		reactor_run_once(w.r, reactor_jobs_pending(w.r) ? 1000000 : 0);
		h2_conn_feed(h, NULL, 0);
		if (!h2_endpoint_active_calls(w.ep) && !reactor_jobs_pending(w.r))
			return;
		quiet = reactor_jobs_pending(w.r) ? 0 : quiet + 1;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!w.r)
		world_up();
	size_t at;
	const method *m = method_of(data, size, &at);
	buf req = {0};
	request_bytes(&req, m->path, data + at, size - at);
	h2_conn *h = h2_conn_new_detached(w.ep);
	if (!h)
		abort();
	h2_conn_feed(h, req.data, req.len);
	buf_free(&req);
	settle(h);
	h2_conn_free_detached(h);
	/* Cancelled calls' pool work still comes back to this reactor. */
	while (reactor_jobs_pending(w.r))
		reactor_run_once(w.r, 1000000);
	if (++w.runs % RESET_EVERY == 0) {
		world_down();
		world_up();
	}
	return 0;
}

/* ---- the structure-aware mutator ---- */

typedef struct mut {
	unsigned seed;
	size_t max;
	int op; /* OP_* */
} mut;

enum { OP_REPEAT, OP_DEEPEN, OP_ADD, OP_COUNT };

static unsigned rnd(mut *m, unsigned n)
{
	m->seed = m->seed * 1103515245u + 12345u;
	return n ? (m->seed >> 8) % n : 0;
}

static void put_varint(buf *o, uint64_t v)
{
	uint8_t t[10];
	size_t n = 0;
	do {
		t[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
		v >>= 7;
	} while (v);
	if (buf_append(o, t, n))
		abort();
}

static void put_ld(buf *o, uint32_t num, const uint8_t *p, size_t n)
{
	put_varint(o, (uint64_t)num << 3 | 2);
	put_varint(o, n);
	if (buf_append(o, p, n))
		abort();
}

static bool get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	*v = 0;
	for (int i = 0; i < 10 && *p < end; i++) {
		uint8_t b = *(*p)++;
		*v |= (uint64_t)(b & 0x7f) << (7 * i);
		if (!(b & 0x80))
			return true;
	}
	return false;
}

/* One field: [start, end), its number, wire type and (length-delimited) payload. */
typedef struct field {
	const uint8_t *start, *end, *payload;
	uint32_t num;
	int wt;
} field;

static bool next_field(const uint8_t **p, const uint8_t *end, field *f)
{
	uint64_t key, n;
	f->start = *p;
	if (!get_varint(p, end, &key) || !(key >> 3) || key >> 3 > 0x1fffffff)
		return false;
	f->num = (uint32_t)(key >> 3);
	f->wt = key & 7;
	f->payload = NULL;
	switch (f->wt) {
	case 0:
		if (!get_varint(p, end, &n))
			return false;
		break;
	case 1:
		if (end - *p < 8)
			return false;
		*p += 8;
		break;
	case 5:
		if (end - *p < 4)
			return false;
		*p += 4;
		break;
	case 2:
		if (!get_varint(p, end, &n) || n > (uint64_t)(end - *p))
			return false;
		f->payload = *p;
		*p += n;
		break;
	default:
		return false;
	}
	f->end = *p;
	return true;
}

/* Wraps payload (a message of type d) in k more levels of d, for the recursive types. */
static bool deepen(mut *m, const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t n, buf *o)
{
	const char *t = d->name;
	int kind = !strcmp(t, "google.protobuf.Value")		   ? 1
		   : !strcmp(t, "google.protobuf.ListValue")	   ? 2
		   : !strcmp(t, "google.protobuf.Struct")	   ? 3
		   : !strcmp(t, "google.protobuf.DescriptorProto") ? 4
								   : 0;
	if (!kind)
		return false;
	buf cur = {0};
	if (buf_append(&cur, p, n))
		abort();
	for (unsigned k = 1 + rnd(m, 300); k > 0 && cur.len < m->max; k--) {
		buf next = {0}, in = {0};
		switch (kind) {
		case 1: /* Value{list_value: ListValue{values: [cur]}} */
			put_ld(&in, 1, cur.data, cur.len);
			put_ld(&next, 6, in.data, in.len);
			break;
		case 2: /* ListValue{values: [Value{list_value: cur}]} */
			put_ld(&in, 6, cur.data, cur.len);
			put_ld(&next, 1, in.data, in.len);
			break;
		case 3: { /* Struct{fields: {"k": Value{struct_value: cur}}} */
			buf v = {0};
			put_ld(&v, 5, cur.data, cur.len);
			put_ld(&in, 1, (const uint8_t *)"k", 1);
			put_ld(&in, 2, v.data, v.len);
			put_ld(&next, 1, in.data, in.len);
			buf_free(&v);
			break;
		}
		default: /* DescriptorProto{name: "N", nested_type: [cur]} */
			put_ld(&next, 1, (const uint8_t *)"N", 1);
			put_ld(&next, 3, cur.data, cur.len);
		}
		buf_free(&in);
		buf_free(&cur);
		cur = next;
	}
	if (buf_append(o, cur.data, cur.len))
		abort();
	buf_free(&cur);
	return true;
}

/* A field of d's own, made up: an empty message, a short string, a small number. */
static void add_field(mut *m, const ProtobufCMessageDescriptor *d, buf *o)
{
	if (!d->n_fields)
		return;
	const ProtobufCFieldDescriptor *f = &d->fields[rnd(m, d->n_fields)];
	switch (f->type) {
	case PROTOBUF_C_TYPE_MESSAGE:
	case PROTOBUF_C_TYPE_BYTES:
	case PROTOBUF_C_TYPE_STRING:
		put_ld(o, f->id, (const uint8_t *)"fuzz",
		       f->type == PROTOBUF_C_TYPE_MESSAGE ? 0 : 4);
		break;
	case PROTOBUF_C_TYPE_DOUBLE:
	case PROTOBUF_C_TYPE_FIXED64:
	case PROTOBUF_C_TYPE_SFIXED64:
		put_varint(o, (uint64_t)f->id << 3 | 1);
		if (buf_append(o, "\x01\0\0\0\0\0\0\0", 8))
			abort();
		break;
	case PROTOBUF_C_TYPE_FLOAT:
	case PROTOBUF_C_TYPE_FIXED32:
	case PROTOBUF_C_TYPE_SFIXED32:
		put_varint(o, (uint64_t)f->id << 3 | 5);
		if (buf_append(o, "\x01\0\0\0", 4))
			abort();
		break;
	default:
		put_varint(o, (uint64_t)f->id << 3);
		put_varint(o, rnd(m, 4) ? rnd(m, 10) : (uint64_t)-1);
	}
}

/* Copies the message p[0..n) of type d to o with one structural change somewhere in it. */
static bool mutate_msg(mut *m, const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t n,
		       buf *o, int depth)
{
	const uint8_t *q = p, *end = p + n;
	size_t count = 0;
	field f;
	while (q < end) {
		if (!next_field(&q, end, &f))
			return false;
		count++;
	}
	size_t target = rnd(m, (unsigned)count + 1); /* count: add a field at the end */
	bool done = false;
	q = p;
	for (size_t i = 0; q < end; i++) {
		next_field(&q, end, &f);
		const ProtobufCFieldDescriptor *fd =
			protobuf_c_message_descriptor_get_field(d, f.num);
		bool message = fd && fd->type == PROTOBUF_C_TYPE_MESSAGE && f.wt == 2;
		if (i != target) {
			if (buf_append(o, f.start, (size_t)(f.end - f.start)))
				abort();
			continue;
		}
		size_t plen = message ? (size_t)(f.end - f.payload) : 0;
		if (message && depth < 200 && rnd(m, 2)) {
			buf child = {0};
			done = mutate_msg(m, fd->descriptor, f.payload, plen, &child, depth + 1);
			put_ld(o, f.num, child.data, child.len);
			buf_free(&child);
		} else if (m->op == OP_DEEPEN && message) {
			buf deep = {0};
			done = deepen(m, fd->descriptor, f.payload, plen, &deep);
			if (done)
				put_ld(o, f.num, deep.data, deep.len);
			else if (buf_append(o, f.start, (size_t)(f.end - f.start)))
				abort();
			buf_free(&deep);
		} else if (m->op == OP_REPEAT) {
			size_t len = (size_t)(f.end - f.start), k = 2 + ((size_t)1 << rnd(m, 16));
			if (len && k > (m->max - o->len) / len / 2)
				k = (m->max - o->len) / len / 2;
			for (size_t j = 0; j < (k ? k : 1); j++)
				if (buf_append(o, f.start, len))
					abort();
			done = k > 1;
		} else if (buf_append(o, f.start, (size_t)(f.end - f.start))) {
			abort();
		}
	}
	if (target == count) {
		add_field(m, d, o);
		done = true;
	}
	return done;
}

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max, unsigned seed)
{
	mut m = {.seed = seed, .max = max};
	if (!w.r)
		world_up();
	if (rnd(&m, 2))
		return LLVMFuzzerMutate(data, size, max);
	size_t at;
	const method *me = method_of(data, size, &at);
	if (!me->input)
		return LLVMFuzzerMutate(data, size, max);
	m.op = (int)rnd(&m, OP_COUNT);
	buf o = {0};
	if (buf_append(&o, data, at))
		abort();
	bool ok = mutate_msg(&m, me->input, data + at, size - at, &o, 0);
	size_t n = o.len;
	if (ok && n <= max)
		memcpy(data, o.data, n);
	buf_free(&o);
	return ok && n <= max ? n : LLVMFuzzerMutate(data, size, max);
}
