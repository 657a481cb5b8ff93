/* A server connection fed well-formed HTTP/2 frames built from the input, so that the
 * fuzzer spends its time past nghttp2's framing checks: in header blocks (HPACK-encoded
 * here, with gRPC headers and their bad variants), gRPC messages across DATA frames,
 * resets, window updates, settings, pings and unknown frames, on a few streams at once.
 * fuzz_server_conn feeds raw bytes; this one feeds structure. */
#include <nghttp2/nghttp2.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server_fixture.h"

#define OUT_CAP (256 * 1024)

typedef struct input {
	const uint8_t *p;
	size_t n;
} input;

static uint8_t take(input *in)
{
	if (!in->n)
		return 0;
	in->n--;
	return *in->p++;
}

static size_t take_bytes(input *in, size_t want, const uint8_t **out)
{
	if (want > in->n)
		want = in->n;
	*out = in->p;
	in->p += want;
	in->n -= want;
	return want;
}

typedef struct out {
	uint8_t buf[OUT_CAP];
	size_t len;
} out;

static void put_frame(out *o, uint8_t type, uint8_t flags, uint32_t sid, const uint8_t *payload,
		      size_t len)
{
	if (len > 16384 || o->len + 9 + len > OUT_CAP)
		return;
	uint8_t *h = o->buf + o->len;
	h[0] = (uint8_t)(len >> 16);
	h[1] = (uint8_t)(len >> 8);
	h[2] = (uint8_t)len;
	h[3] = type;
	h[4] = flags;
	h[5] = (uint8_t)(sid >> 24 & 0x7f);
	h[6] = (uint8_t)(sid >> 16);
	h[7] = (uint8_t)(sid >> 8);
	h[8] = (uint8_t)sid;
	if (len)
		memcpy(h + 9, payload, len);
	o->len += 9 + len;
}

static const char *const paths[] = {
	"/fuzz.Test/Unary",
	"/fuzz.Test/ServerStream",
	"/fuzz.Test/Bidi",
	"/fuzz.Test/ClientStream",
	"/grpc.health.v1.Health/Check",
	"/grpc.health.v1.Health/Watch",
	"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
	"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
	"/no.Such/Method",
	"",
};

/* Optional headers, chosen by the bits of one input byte; some are invalid on purpose. */
static const char *const extras[][2] = {
	{"grpc-timeout", "1S"},	     {"grpc-timeout", "99999999H"},
	{"grpc-timeout", "1x"},	     {"grpc-encoding", "gzip"},
	{"grpc-encoding", "snappy"}, {"grpc-accept-encoding", "identity,gzip"},
	{"x-echo-bin", "AAEC"},	     {"x-echo-bin", "!!"},
};

typedef struct conn_state {
	nghttp2_hd_deflater *hd;
	uint32_t next_sid;
	uint32_t sids[4];
} conn_state;

static uint32_t pick_stream(conn_state *st, uint8_t b)
{
	return b & 4 ? st->sids[b & 3] : (uint32_t)b >> 3;
}

static void op_headers(conn_state *st, input *in, out *o)
{
	uint8_t shape = take(in), extra = take(in), split = take(in);
	nghttp2_nv nv[16];
	size_t n = 0;
#define NV(name, value)                                                                            \
	nv[n++] = (nghttp2_nv){(uint8_t *)(name), (uint8_t *)(value), strlen(name), strlen(value), \
			       NGHTTP2_NV_FLAG_NONE}
	NV(":method", shape & 1 ? "GET" : "POST");
	NV(":scheme", "http");
	NV(":path", paths[(shape >> 1) % (sizeof(paths) / sizeof(paths[0]))]);
	NV(":authority", "fuzz");
	if (!(shape & 0x20))
		NV("content-type", shape & 0x10 ? "text/plain" : "application/grpc");
	if (!(shape & 0x40))
		NV("te", "trailers");
	for (size_t i = 0; i < 8; i++)
		if (extra & (1u << i))
			NV(extras[i][0], extras[i][1]);
#undef NV
	uint8_t block[4096];
	ssize_t len = nghttp2_hd_deflate_hd(st->hd, block, sizeof(block), nv, n);
	if (len < 0)
		return;
	uint32_t sid = st->next_sid;
	st->next_sid += 2;
	st->sids[split & 3] = sid;
	uint8_t end = shape & 0x80 ? 0x1 : 0;
	/* Split the block into HEADERS + CONTINUATIONs when asked. */
	size_t parts = 1 + (split >> 2) % 4, each = ((size_t)len + parts - 1) / parts;
	size_t off = 0;
	for (size_t i = 0; i < parts; i++) {
		size_t k = (size_t)len - off < each ? (size_t)len - off : each;
		uint8_t flags = (i + 1 == parts ? 0x4 : 0) | (i == 0 ? end : 0);
		put_frame(o, i == 0 ? 1 : 9, flags, sid, block + off, k);
		off += k;
	}
}

/* A gRPC message (prefix + payload from the input), cut into DATA frames. */
static void op_message(conn_state *st, input *in, out *o)
{
	uint8_t which = take(in), flags = take(in), cut = take(in);
	uint32_t sid = pick_stream(st, which | 4);
	const uint8_t *payload;
	size_t len = take_bytes(in, take(in), &payload);
	uint8_t msg[5 + 256];
	msg[0] = flags & 1;
	uint32_t declared = flags & 2 ? (uint32_t)len + (flags >> 4) : (uint32_t)len;
	msg[1] = (uint8_t)(declared >> 24);
	msg[2] = (uint8_t)(declared >> 16);
	msg[3] = (uint8_t)(declared >> 8);
	msg[4] = (uint8_t)declared;
	memcpy(msg + 5, payload, len);
	size_t total = 5 + len, piece = 1 + cut % 64, off = 0;
	while (off < total) {
		size_t k = total - off < piece ? total - off : piece;
		bool last = off + k == total;
		put_frame(o, 0, last && (flags & 4) ? 0x1 : 0, sid, msg + off, k);
		off += k;
	}
}

static void op_control(conn_state *st, input *in, out *o)
{
	uint8_t kind = take(in), a = take(in), b = take(in);
	uint32_t sid = pick_stream(st, a);
	uint8_t p[16] = {0};
	switch (kind % 9) {
	case 0: /* RST_STREAM */
		p[3] = b % 14;
		put_frame(o, 3, 0, sid, p, 4);
		break;
	case 1: /* WINDOW_UPDATE, sometimes zero or huge */
		p[0] = b & 0x80 ? 0x7f : 0;
		p[3] = b & 0x7f;
		put_frame(o, 8, 0, b & 1 ? 0 : sid, p, 4);
		break;
	case 2: /* SETTINGS with one entry, or an ACK */
		p[1] = b % 8;
		p[2] = a;
		p[5] = b;
		put_frame(o, 4, a & 1, 0, p, a & 1 ? 0 : 6);
		break;
	case 3: /* PING or its ACK */
		p[0] = b;
		put_frame(o, 6, a & 1, 0, p, 8);
		break;
	case 4: /* PRIORITY */
		p[3] = b;
		p[4] = a;
		put_frame(o, 2, 0, sid, p, 5);
		break;
	case 5: /* empty DATA */
		put_frame(o, 0, b & 1, sid, NULL, 0);
		break;
	case 6: /* padded DATA */
		p[0] = b % 8;
		put_frame(o, 0, 0x8 | (a & 1), sid, p, 1 + (size_t)(b % 8) + (a >> 6));
		break;
	case 7: /* an unknown frame type */
		put_frame(o, (uint8_t)(10 + b % 240), a, sid, p, a % 16);
		break;
	case 8: /* GOAWAY */
		p[3] = a;
		p[7] = b % 14;
		put_frame(o, 7, 0, 0, p, 8);
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
	static out o;
	input in = {data, size};
	conn_state st = {.next_sid = 1};
	if (nghttp2_hd_deflate_new(&st.hd, 4096))
		return 0;
	o.len = 0;
	memcpy(o.buf, preface, 24);
	o.len = 24;
	put_frame(&o, 4, 0, 0, NULL, 0); /* the client's SETTINGS */
	put_frame(&o, 4, 1, 0, NULL, 0); /* and its ACK of ours */
	while (in.n && o.len < OUT_CAP - 20000) {
		uint8_t op = take(&in);
		if (op < 80)
			op_headers(&st, &in, &o);
		else if (op < 170)
			op_message(&st, &in, &o);
		else
			op_control(&st, &in, &o);
	}
	nghttp2_hd_deflate_del(st.hd);

	h2_conn *h = h2_conn_new_detached(fuzz_server_endpoint());
	if (!h)
		return 0;
	/* Fed in pieces of varying size so that frames straddle reads. */
	size_t piece = size ? (size_t)data[size - 1] * 13 + 1 : o.len;
	for (size_t off = 0; off < o.len; off += piece) {
		size_t k = o.len - off < piece ? o.len - off : piece;
		if (h2_conn_feed(h, o.buf + off, k) < 0)
			break;
	}
	fuzz_server_run_timers();
	h2_conn_free_detached(h);
	return 0;
}
