/* grpc.testing.BenchmarkService on this project's core, the node's side of `make bench`:
 *
 *   bench_server --port N [--threads T] [--codec protobuf-c|raw]
 *
 * UnaryCall answers a SimpleRequest with a SimpleResponse whose payload is response_size
 * zero bytes; StreamingCall is the ping-pong: one SimpleResponse per SimpleRequest, OK on
 * the client's half-close. T reactor threads (default 1), each with its own SO_REUSEPORT
 * listener on 127.0.0.1:N, as the node runs them; port 0 picks a free port. Prints
 * "listening on 127.0.0.1:PORT" once every reactor accepts. SIGTERM or SIGINT: exit 0.
 *
 * --codec protobuf-c (the default, what the node's services pay): requests are decoded and
 * responses packed by protobuf-c like any handler on the call API, so the comparison with
 * stock gRPC's generated code is like for like. --codec raw reads only response_size from
 * the request bytes and writes the response bytes itself (no allocation): it shows what
 * the core alone costs. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/testing/messages.pb-c.h"
#include "h2/call.h"
#include "h2/method.h"
#include "h2/reactor_group.h"
#include "h2/server.h"
#include "h2/status.h"
#include "io/reactor.h"
#include "io/tls.h"

/* Room for the response's field headers in front of the zeros: tag and length of
 * SimpleResponse.payload, tag and length of Payload.body (varints of up to 5 bytes). */
#define HDR_ROOM 16
#define LISTEN_BACKLOG 4096

/* What a reactor's handlers share (reactor_user of its reactor). */
typedef struct bench_reactor {
	/* HDR_ROOM + max_message_bytes: the header bytes are rewritten per response, the
	 * rest stays zero. One per reactor, because the header is written in place. Only the
	 * first page is ever written; the rest is the kernel's shared zero page. */
	uint8_t *resp;
	size_t max_message_bytes;
} bench_reactor;

/* ---- the wire format, by hand ---- */

static size_t varint_put(uint8_t *out, uint64_t v)
{
	size_t n = 0;
	while (v >= 0x80) {
		out[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	out[n++] = (uint8_t)v;
	return n;
}

static size_t varint_len(uint64_t v)
{
	size_t n = 1;
	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

/* Reads a varint at *p; false when it is truncated or longer than 10 bytes. */
static bool varint_get(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	uint64_t x = 0;
	for (unsigned shift = 0; shift < 70 && *p < end; shift += 7) {
		uint8_t b = *(*p)++;
		x |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*v = x;
			return true;
		}
	}
	return false;
}

/* Walks a SimpleRequest and takes response_size (field 2, int32; the last one wins, as in
 * any protobuf parser). Every field is checked for a well-formed wire encoding, so that a
 * malformed request fails as it would with a generated parser. */
static bool request_response_size(const uint8_t *p, size_t len, int32_t *size)
{
	const uint8_t *end = p + len;
	*size = 0;
	while (p < end) {
		uint64_t key, v;
		if (!varint_get(&p, end, &key) || key >> 3 == 0 || key >> 3 > UINT32_MAX >> 3)
			return false;
		switch (key & 7) {
		case 0:
			if (!varint_get(&p, end, &v))
				return false;
			if (key >> 3 == 2)
				*size = (int32_t)(uint32_t)v;
			break;
		case 1:
			if (end - p < 8)
				return false;
			p += 8;
			break;
		case 2:
			if (!varint_get(&p, end, &v) || v > (uint64_t)(end - p))
				return false;
			p += v;
			break;
		case 5:
			if (end - p < 4)
				return false;
			p += 4;
			break;
		default:
			return false; /* groups (3, 4) and undefined types */
		}
	}
	return true;
}

/* Sends SimpleResponse{payload: {body: size zeros}}; a size of 0 is the empty message, as
 * stock servers answer it. The call is finished with an error when it cannot be sent. */
static bool send_response(call *c, const uint8_t *req, size_t len)
{
	int32_t size;
	if (!request_response_size(req, len, &size)) {
		call_finish(c, GRPC_INTERNAL, "could not parse the request message");
		return false;
	}
	const bench_reactor *s = reactor_user(call_reactor(c));
	if (size < 0) {
		call_finishf(c, GRPC_INVALID_ARGUMENT, "negative response_size %d", size);
		return false;
	}
	if ((size_t)size + HDR_ROOM > s->max_message_bytes) {
		call_finishf(c, GRPC_RESOURCE_EXHAUSTED, "response_size %d is over the limit",
			     size);
		return false;
	}
	uint8_t *body = s->resp + HDR_ROOM;
	size_t n = 0;
	if (size > 0) {
		uint8_t hdr[HDR_ROOM];
		uint64_t body_len = (uint64_t)size;
		uint64_t payload_len = 1 + varint_len(body_len) + body_len;
		size_t h = 0;
		hdr[h++] = 0x0a; /* SimpleResponse.payload, length-delimited */
		h += varint_put(hdr + h, payload_len);
		hdr[h++] = 0x12; /* Payload.body, length-delimited */
		h += varint_put(hdr + h, body_len);
		body -= h;
		memcpy(body, hdr, h);
		n = h + body_len;
	}
	int rc = call_send_raw(c, body, n);
	if (rc && rc != -ECANCELED) {
		call_finishf(c, rc == -EMSGSIZE ? GRPC_RESOURCE_EXHAUSTED : GRPC_INTERNAL,
			     "could not queue the response: %s", strerror(-rc));
		return false;
	}
	return rc == 0;
}

/* ---- the methods ---- */

static void unary_raw(call *c, const uint8_t *data, size_t len)
{
	if (send_response(c, data, len))
		call_finish(c, GRPC_OK, NULL);
}

static void streaming_raw(call *c, const uint8_t *data, size_t len)
{
	if (!call_done(c))
		send_response(c, data, len);
}

static void streaming_half_close(call *c) { call_finish(c, GRPC_OK, NULL); }

/* protobuf-c codec: the request decoded by the call layer, the response packed by it. */
static bool send_decoded(call *c, const ProtobufCMessage *msg)
{
	const Grpc__Testing__SimpleRequest *req = (const void *)msg;
	const bench_reactor *s = reactor_user(call_reactor(c));
	if (req->response_size < 0 ||
	    (size_t)req->response_size + HDR_ROOM > s->max_message_bytes) {
		call_finishf(c, GRPC_INVALID_ARGUMENT, "response_size %d out of range",
			     req->response_size);
		return false;
	}
	Grpc__Testing__Payload payload = GRPC__TESTING__PAYLOAD__INIT;
	Grpc__Testing__SimpleResponse resp = GRPC__TESTING__SIMPLE_RESPONSE__INIT;
	payload.body.data = s->resp + HDR_ROOM;
	payload.body.len = (size_t)req->response_size;
	if (req->response_size > 0)
		resp.payload = &payload;
	int rc = call_send(c, &resp.base);
	if (rc && rc != -ECANCELED) {
		call_finishf(c, GRPC_INTERNAL, "could not queue the response: %s", strerror(-rc));
		return false;
	}
	return rc == 0;
}

static void unary_decoded(call *c, const ProtobufCMessage *req)
{
	if (send_decoded(c, req))
		call_finish(c, GRPC_OK, NULL);
}

static void streaming_decoded(call *c, const ProtobufCMessage *req)
{
	if (!call_done(c))
		send_decoded(c, req);
}

#define BS "/grpc.testing.BenchmarkService/"

static int bench_add_methods(method_table *t, bool raw)
{
	const ProtobufCMessageDescriptor *in = &grpc__testing__simple_request__descriptor;
	const ProtobufCMessageDescriptor *out = &grpc__testing__simple_response__descriptor;
	const method raw_methods[] = {
		{BS "UnaryCall", METHOD_UNARY, NULL, out, {.on_raw = unary_raw}, NULL},
		{BS "StreamingCall",
		 METHOD_BIDI,
		 NULL,
		 out,
		 {.on_raw = streaming_raw, .on_half_close = streaming_half_close},
		 NULL},
	};
	const method pb_methods[] = {
		{BS "UnaryCall", METHOD_UNARY, in, out, {.on_request = unary_decoded}, NULL},
		{BS "StreamingCall",
		 METHOD_BIDI,
		 in,
		 out,
		 {.on_message = streaming_decoded, .on_half_close = streaming_half_close},
		 NULL},
	};
	const method *methods = raw ? raw_methods : pb_methods;
	for (size_t i = 0; i < 2; i++) {
		int rc = method_table_add(t, &methods[i]);
		if (rc)
			return rc;
	}
	return 0;
}

/* ---- reactors ---- */

static int bench_reactor_new(reactor *r, void *ctx)
{
	const size_t *max_message_bytes = ctx;
	bench_reactor *b = calloc(1, sizeof(*b));
	uint8_t *resp = calloc(1, *max_message_bytes);
	if (!b || !resp) {
		free(b);
		free(resp);
		return -ENOMEM;
	}
	*b = (bench_reactor){.resp = resp, .max_message_bytes = *max_message_bytes};
	reactor_set_user(r, b);
	return 0;
}

static void bench_reactor_free(reactor *r, void *ctx)
{
	(void)ctx;
	bench_reactor *b = reactor_user(r);
	free(b->resp);
	free(b);
}

/* ---- process ---- */

static int usage(const char *why)
{
	fprintf(stderr,
		"bench_server: %s\nusage: bench_server --port N [--threads T] "
		"[--codec protobuf-c|raw] [--io auto|uring|epoll]\n",
		why);
	return 2;
}

static bool parse_int(const char *s, long lo, long hi, long *out)
{
	char *end;
	errno = 0;
	long v = s ? strtol(s, &end, 10) : 0;
	if (!s || !*s || *end || errno || v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

int main(int argc, char **argv)
{
	long port = -1, threads = 1;
	bool raw = false;
	reactor_io io = REACTOR_IO_AUTO;
	const char *tls_cert = NULL, *tls_key = NULL;
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		const char *val = strchr(arg, '=');
		size_t nlen = val ? (size_t)(val - arg) : strlen(arg);
		if (val)
			val++;
		else if (i + 1 < argc)
			val = argv[++i];
		if (nlen == 6 && !strncmp(arg, "--port", nlen)) {
			if (!parse_int(val, 0, 65535, &port))
				return usage("--port needs a number from 0 to 65535");
		} else if (nlen == 9 && !strncmp(arg, "--threads", nlen)) {
			if (!parse_int(val, 1, 1024, &threads))
				return usage("--threads needs a number from 1 to 1024");
		} else if (nlen == 7 && !strncmp(arg, "--codec", nlen)) {
			if (!val || (strcmp(val, "raw") && strcmp(val, "protobuf-c")))
				return usage("--codec is protobuf-c or raw");
			raw = !strcmp(val, "raw");
		} else if (nlen == 4 && !strncmp(arg, "--io", nlen)) {
			if (!val || reactor_io_parse(val, &io))
				return usage("--io is auto, uring or epoll");
		} else if (nlen == 10 && !strncmp(arg, "--tls-cert", nlen)) {
			tls_cert = val;
		} else if (nlen == 9 && !strncmp(arg, "--tls-key", nlen)) {
			tls_key = val;
		} else {
			char why[300];
			snprintf(why, sizeof(why), "unknown argument '%.250s'", arg);
			return usage(why);
		}
	}
	if (port < 0)
		return usage("--port is required");

	/* Blocked in every thread: they reach only the sigwait below. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	char hostport[32];
	snprintf(hostport, sizeof(hostport), "127.0.0.1:%ld", port);
	h2_server_opts opts;
	h2_server_opts_default(&opts);
	tls_ctx *tls = NULL;
	if (tls_cert || tls_key) {
		tls_opts to = {.server = true,
			       .cert_file = tls_cert,
			       .key_file = tls_key,
			       .alpn = "h2"};
		char why[400];
		if (tls_ctx_new(&to, &tls, why, sizeof(why))) {
			fprintf(stderr, "bench_server: %s\n", why);
			return 1;
		}
		opts.tls = tls;
	}
	reactor_group_opts gopts = {.listen = hostport,
				    .threads = (int)threads,
				    .backlog = LISTEN_BACKLOG,
				    .io = io,
				    .on_start = bench_reactor_new,
				    .on_exit = bench_reactor_free,
				    .ctx = &opts.max_message_bytes};
	char err[256];
	reactor_group *group = NULL;
	method_table *methods = method_table_new();
	h2_server *server = NULL;
	int rc = methods ? bench_add_methods(methods, raw) : -ENOMEM;
	if (rc) {
		fprintf(stderr, "bench_server: cannot build the method table: %s\n", strerror(-rc));
	} else if (!(server = h2_server_new(methods, &opts))) {
		rc = -ENOMEM;
		fprintf(stderr, "bench_server: cannot set up the server: %s\n", strerror(ENOMEM));
	} else if ((rc = reactor_group_open(&gopts, &group, err, sizeof(err))) ||
		   (rc = reactor_group_start(group, server, err, sizeof(err)))) {
		fprintf(stderr, "bench_server: %s\n", err);
	} else {
		fprintf(stderr, "bench_server: reactors on %s\n",
			reactor_io_name(reactor_group_io(group)));
		printf("listening on %s\n", reactor_group_address(group));
		fflush(stdout);
		int sig;
		sigwait(&sigs, &sig);
	}
	/* A benchmark server's shutdown needs no grace: whatever runs is dropped. */
	reactor_group_free(group);
	h2_server_free(server);
	method_table_free(methods);
	tls_ctx_free(tls);
	return rc ? 1 : 0;
}
