/* grpc.testing.TestService on this project's h2 server, so that stock clients (python
 * grpcio, node grpc-js) and our own client can check it against grpc's interop test
 * descriptions. UnimplementedCall is left out on purpose: the method table then answers
 * UNIMPLEMENTED, which is what the unimplemented_method case expects.
 *
 *   interop_server --port N [--use_tls=false] [--pool-threads N]
 *                  [--max-calls-per-connection N]
 *
 * Beside TestService, a test-only service collector.test.Pool puts work on a blocking
 * pool the way Collector's storage services do, for the tests of rapid reset: Sleep
 * (request: milliseconds as decimal text) and Stats ("started=N skipped=N queued=N").
 *
 * One reactor thread; prints "listening on 127.0.0.1:PORT" once it accepts. SIGTERM or
 * SIGINT: stop accepting, GOAWAY, let running calls end (at most a second), exit 0. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/container_of.h"
#include "grpc/testing/empty.pb-c.h"
#include "grpc/testing/messages.pb-c.h"
#include "grpc/testing/test.pb-c.h"
#include "h2/call.h"
#include "h2/method.h"
#include "h2/reactor_group.h"
#include "h2/server.h"
#include "h2/status.h"
#include "io/pool.h"
#include "io/reactor.h"
#include "io/tls.h"

#define ECHO_INITIAL "x-grpc-test-echo-initial"
#define ECHO_TRAILING "x-grpc-test-echo-trailing-bin"
#define SHUTDOWN_GRACE_NS (1 * NS_PER_SEC)

/* The service's state, shared by every call through call_ctx. */
typedef struct interop_service {
	size_t max_message_bytes;
	/* max_message_bytes of zeros, read-only: every payload points into it. calloc'd
	 * memory that is only read stays on the kernel's shared zero page, so this costs no
	 * resident memory and no per-response allocation. */
	const uint8_t *zeros;
	pool *pool;
	atomic_size_t pool_started; /* Sleep jobs whose work began */
} interop_service;

/* ---- helpers shared by the methods ---- */

static size_t service_max_message(const call *c)
{
	const interop_service *svc = call_ctx(c);
	return svc->max_message_bytes;
}

/* The server side of "Echo Metadata": the initial key comes back in the response headers,
 * the -bin key in the trailers (call.h re-encodes it in base64). */
static void interop_echo_metadata(call *c)
{
	const call_md *m = call_md_get(c, ECHO_INITIAL);
	int rc = m ? call_add_initial_md(c, ECHO_INITIAL, m->value, m->value_len) : 0;
	m = call_md_get(c, ECHO_TRAILING);
	if (!rc && m)
		rc = call_add_trailing_md(c, ECHO_TRAILING, m->value, m->value_len);
	if (rc)
		call_finishf(c, GRPC_INTERNAL, "could not echo metadata: %s", strerror(-rc));
}

/* "CompressedRequest": a request that states whether it was compressed must have been
 * sent that way. The probe in client_compressed_unary relies on the INVALID_ARGUMENT. */
static bool interop_compression_as_expected(call *c, const Grpc__Testing__BoolValue *expect)
{
	if (!expect || expect->value == call_request_compressed(c))
		return true;
	call_finishf(c, GRPC_INVALID_ARGUMENT, "expected a %s request message",
		     expect->value ? "compressed" : "uncompressed");
	return false;
}

/* Only COMPRESSABLE (zeros) payloads are supported; the spec asks for INVALID_ARGUMENT on
 * anything else. The size bound is what keeps interop_payload_fill inside the zeros. */
static bool interop_payload_ok(call *c, Grpc__Testing__PayloadType type, int32_t size)
{
	if (type != GRPC__TESTING__PAYLOAD_TYPE__COMPRESSABLE) {
		call_finishf(c, GRPC_INVALID_ARGUMENT, "response_type %d is not supported", type);
		return false;
	}
	if (size < 0) {
		call_finishf(c, GRPC_INVALID_ARGUMENT, "negative response size %d", size);
		return false;
	}
	if ((size_t)size > service_max_message(c)) {
		call_finishf(c, GRPC_RESOURCE_EXHAUSTED, "response size %d is over the limit",
			     size);
		return false;
	}
	return true;
}

/* A payload of size zeros (size already checked by interop_payload_ok). */
static void interop_payload_fill(call *c, Grpc__Testing__Payload *p, int32_t size)
{
	const interop_service *svc = call_ctx(c);
	p->type = GRPC__TESTING__PAYLOAD_TYPE__COMPRESSABLE;
	p->body.data = (uint8_t *)svc->zeros;
	p->body.len = (size_t)size;
}

/* Maps a failed call_send to the status the client sees. */
static void interop_finish_send_error(call *c, int rc)
{
	if (rc == -EMSGSIZE)
		call_finish(c, GRPC_RESOURCE_EXHAUSTED,
			    "response larger than the message size limit");
	else if (rc != -ECANCELED)
		call_finishf(c, GRPC_INTERNAL, "could not queue the response: %s", strerror(-rc));
}

/* ---- EmptyCall, UnaryCall, CacheableUnaryCall ---- */

static void unary_start(call *c) { interop_echo_metadata(c); }

static void empty_request(call *c, const ProtobufCMessage *msg)
{
	(void)msg;
	Grpc__Testing__Empty resp = GRPC__TESTING__EMPTY__INIT;
	call_reply(c, &resp.base);
}

static void unary_request(call *c, const ProtobufCMessage *msg)
{
	const Grpc__Testing__SimpleRequest *req = (const Grpc__Testing__SimpleRequest *)msg;
	if (!interop_compression_as_expected(c, req->expect_compressed) ||
	    !interop_payload_ok(c, req->response_type, req->response_size))
		return;
	/* "Echo Status"; an OK echo still needs the response, as a unary call without one
	 * is a protocol error for the client. */
	if (req->response_status && req->response_status->code != GRPC_OK) {
		call_finish(c, req->response_status->code, req->response_status->message);
		return;
	}
	call_set_response_compression(c,
				      req->response_compressed && req->response_compressed->value);
	Grpc__Testing__SimpleResponse resp = GRPC__TESTING__SIMPLE_RESPONSE__INIT;
	Grpc__Testing__Payload payload = GRPC__TESTING__PAYLOAD__INIT;
	interop_payload_fill(c, &payload, req->response_size);
	resp.payload = &payload;
	call_reply(c, &resp.base);
}

/* The payload is the wall clock in nanoseconds, so that two answers differ unless a
 * caching proxy served the second; cache-control lets such a proxy keep it. */
static void cacheable_request(call *c, const ProtobufCMessage *msg)
{
	(void)msg;
	char stamp[24];
	int n = snprintf(stamp, sizeof(stamp), "%lld", (long long)clock_wall_ns());
	static const char cache[] = "max-age=60, public";
	int rc = call_add_initial_md(c, "cache-control", cache, sizeof(cache) - 1);
	if (rc) {
		call_finishf(c, GRPC_INTERNAL, "could not add cache-control: %s", strerror(-rc));
		return;
	}
	Grpc__Testing__SimpleResponse resp = GRPC__TESTING__SIMPLE_RESPONSE__INIT;
	Grpc__Testing__Payload payload = GRPC__TESTING__PAYLOAD__INIT;
	payload.body.data = (uint8_t *)stamp;
	payload.body.len = (size_t)n;
	resp.payload = &payload;
	call_reply(c, &resp.base);
}

/* ---- StreamingInputCall ---- */

typedef struct in_stream {
	int64_t total;
} in_stream;

static void input_start(call *c)
{
	interop_echo_metadata(c);
	if (call_done(c))
		return;
	in_stream *st = call_alloc(c, sizeof(*st));
	if (!st) {
		call_finish(c, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	st->total = 0;
	call_set_user(c, st);
}

static void input_message(call *c, const ProtobufCMessage *msg)
{
	const Grpc__Testing__StreamingInputCallRequest *req =
		(const Grpc__Testing__StreamingInputCallRequest *)msg;
	in_stream *st = call_user(c);
	if (call_done(c) || !interop_compression_as_expected(c, req->expect_compressed))
		return;
	if (req->payload)
		st->total += (int64_t)req->payload->body.len;
}

static void input_half_close(call *c)
{
	in_stream *st = call_user(c);
	if (call_done(c))
		return;
	if (st->total > INT32_MAX) {
		call_finish(c, GRPC_OUT_OF_RANGE, "aggregated payload size does not fit an int32");
		return;
	}
	Grpc__Testing__StreamingInputCallResponse resp =
		GRPC__TESTING__STREAMING_INPUT_CALL_RESPONSE__INIT;
	resp.aggregated_payload_size = (int32_t)st->total;
	call_reply(c, &resp.base);
}

/* ---- StreamingOutputCall, FullDuplexCall, HalfDuplexCall ----
 *
 * The responses owed are a queue of ResponseParameters copied out of the requests (a
 * request is freed when its callback returns). A pump sends from the head while the call
 * can take more output, waits on a reactor timer for interval_us and on on_writable for
 * a full send buffer. The state holds a call reference from on_start until it finishes
 * the call or hears on_cancel; both paths go through out_release. */

typedef struct out_param {
	int32_t size;
	int32_t interval_us;
	bool compressed;
} out_param;

typedef struct out_stream {
	call *c;
	timer t;
	out_param *v; /* malloc'd queue; [head, n) still to send */
	size_t head, n, cap;
	bool slept;	 /* the interval before v[head] has passed */
	bool input_done; /* no request will add to the queue any more */
	bool hold;	 /* HalfDuplexCall: answer nothing before the half-close */
	bool sent_any;
	bool gzip_call;	  /* compression was on when the response headers went out */
	bool have_status; /* a request asked for this status once the queue is sent */
	int status;
	char *status_msg;
} out_stream;

static void out_release(out_stream *st)
{
	call *c = st->c;
	reactor_timer_disarm(call_reactor(c), &st->t);
	call_set_user(c, NULL);
	free(st->v);
	free(st->status_msg);
	free(st);
	call_unref(c);
}

static void out_end(out_stream *st, int code, const char *msg)
{
	call_finish(st->c, code, msg);
	out_release(st);
}

/* Whether the next response goes compressed. The response headers (and so grpc-encoding)
 * go out with the first message, so the call's encoding is settled then, as in stock
 * servers: later messages may opt out of gzip, but cannot opt in. */
static void out_set_compression(out_stream *st, const out_param *p)
{
	if (!st->sent_any)
		st->gzip_call = p->compressed;
	call_set_response_compression(st->c, st->gzip_call && p->compressed);
}

/* 0, or a negative errno after which the call has been finished. */
static int out_send_one(out_stream *st, const out_param *p)
{
	Grpc__Testing__StreamingOutputCallResponse resp =
		GRPC__TESTING__STREAMING_OUTPUT_CALL_RESPONSE__INIT;
	Grpc__Testing__Payload payload = GRPC__TESTING__PAYLOAD__INIT;
	interop_payload_fill(st->c, &payload, p->size);
	resp.payload = &payload;
	out_set_compression(st, p);
	int rc = call_send(st->c, &resp.base);
	if (rc) {
		interop_finish_send_error(st->c, rc);
		return rc;
	}
	st->sent_any = true;
	return 0;
}

static void out_timer_fired(timer *t);

static void out_pump(out_stream *st)
{
	call *c = st->c;
	if (timer_armed(&st->t) || (st->hold && !st->input_done))
		return;
	while (st->head < st->n) {
		if (call_send_would_block(c))
			return; /* on_writable resumes */
		const out_param *p = &st->v[st->head];
		if (p->interval_us > 0 && !st->slept) {
			int64_t at = reactor_now(call_reactor(c)) + (int64_t)p->interval_us * 1000;
			if (reactor_timer_arm(call_reactor(c), &st->t, at, out_timer_fired)) {
				out_end(st, GRPC_RESOURCE_EXHAUSTED, "could not arm a timer");
				return;
			}
			return;
		}
		st->slept = false;
		st->head++;
		if (out_send_one(st, p)) {
			out_release(st);
			return;
		}
	}
	if (st->have_status)
		out_end(st, st->status, st->status_msg);
	else if (st->input_done)
		out_end(st, GRPC_OK, NULL);
}

static void out_timer_fired(timer *t)
{
	out_stream *st = container_of(t, out_stream, t);
	st->slept = true;
	out_pump(st);
}

/* Queues the responses one request asks for; false when the call has been finished. */
static bool out_take_request(out_stream *st, const Grpc__Testing__StreamingOutputCallRequest *req)
{
	call *c = st->c;
	for (size_t i = 0; i < req->n_response_parameters; i++) {
		if (!interop_payload_ok(c, req->response_type, req->response_parameters[i]->size))
			return false;
	}
	if (req->n_response_parameters > st->cap - st->n) {
		size_t cap = st->cap ? st->cap : 4;
		while (cap - st->n < req->n_response_parameters)
			cap *= 2;
		out_param *v = realloc(st->v, cap * sizeof(*v));
		if (!v) {
			call_finish(c, GRPC_RESOURCE_EXHAUSTED, "out of memory");
			return false;
		}
		st->v = v;
		st->cap = cap;
	}
	for (size_t i = 0; i < req->n_response_parameters; i++) {
		const Grpc__Testing__ResponseParameters *rp = req->response_parameters[i];
		st->v[st->n++] = (out_param){
			.size = rp->size,
			.interval_us = rp->interval_us,
			.compressed = rp->compressed && rp->compressed->value,
		};
	}
	/* "Echo Status": the stream closes with it and reads nothing more. */
	if (req->response_status) {
		const char *msg = req->response_status->message;
		st->status_msg = msg && *msg ? strdup(msg) : NULL;
		if (msg && *msg && !st->status_msg) {
			call_finish(c, GRPC_RESOURCE_EXHAUSTED, "out of memory");
			return false;
		}
		st->status = req->response_status->code;
		st->have_status = true;
		st->input_done = true;
	}
	return true;
}

static void out_start_common(call *c, bool hold)
{
	interop_echo_metadata(c);
	if (call_done(c))
		return;
	out_stream *st = calloc(1, sizeof(*st));
	if (!st) {
		call_finish(c, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	st->c = c;
	st->hold = hold;
	call_ref(c);
	call_set_user(c, st);
}

static void out_start(call *c) { out_start_common(c, false); }
static void half_duplex_start(call *c) { out_start_common(c, true); }

static void output_request(call *c, const ProtobufCMessage *msg)
{
	out_stream *st = call_user(c);
	if (!st)
		return;
	if (!out_take_request(st, (const Grpc__Testing__StreamingOutputCallRequest *)msg)) {
		out_release(st);
		return;
	}
	st->input_done = true;
	out_pump(st);
}

static void duplex_message(call *c, const ProtobufCMessage *msg)
{
	out_stream *st = call_user(c);
	if (!st || st->input_done)
		return;
	if (!out_take_request(st, (const Grpc__Testing__StreamingOutputCallRequest *)msg)) {
		out_release(st);
		return;
	}
	out_pump(st);
}

static void duplex_half_close(call *c)
{
	out_stream *st = call_user(c);
	if (!st)
		return;
	st->input_done = true;
	out_pump(st);
}

static void out_writable(call *c)
{
	out_stream *st = call_user(c);
	if (st)
		out_pump(st);
}

static void out_cancel(call *c)
{
	out_stream *st = call_user(c);
	if (st)
		out_release(st);
}

/* ---- the method table ---- */

#define TS "/grpc.testing.TestService/"

static int interop_add_methods(method_table *t, interop_service *svc)
{
	const method methods[] = {
		{TS "EmptyCall",
		 METHOD_UNARY,
		 &grpc__testing__empty__descriptor,
		 &grpc__testing__empty__descriptor,
		 {.on_start = unary_start, .on_request = empty_request},
		 svc},
		{TS "UnaryCall",
		 METHOD_UNARY,
		 &grpc__testing__simple_request__descriptor,
		 &grpc__testing__simple_response__descriptor,
		 {.on_start = unary_start, .on_request = unary_request},
		 svc},
		{TS "CacheableUnaryCall",
		 METHOD_UNARY,
		 &grpc__testing__simple_request__descriptor,
		 &grpc__testing__simple_response__descriptor,
		 {.on_start = unary_start, .on_request = cacheable_request},
		 svc},
		{TS "StreamingOutputCall",
		 METHOD_SERVER_STREAM,
		 &grpc__testing__streaming_output_call_request__descriptor,
		 &grpc__testing__streaming_output_call_response__descriptor,
		 {.on_start = out_start,
		  .on_request = output_request,
		  .on_writable = out_writable,
		  .on_cancel = out_cancel},
		 svc},
		{TS "StreamingInputCall",
		 METHOD_CLIENT_STREAM,
		 &grpc__testing__streaming_input_call_request__descriptor,
		 &grpc__testing__streaming_input_call_response__descriptor,
		 {.on_start = input_start,
		  .on_message = input_message,
		  .on_half_close = input_half_close},
		 svc},
		{TS "FullDuplexCall",
		 METHOD_BIDI,
		 &grpc__testing__streaming_output_call_request__descriptor,
		 &grpc__testing__streaming_output_call_response__descriptor,
		 {.on_start = out_start,
		  .on_message = duplex_message,
		  .on_half_close = duplex_half_close,
		  .on_writable = out_writable,
		  .on_cancel = out_cancel},
		 svc},
		{TS "HalfDuplexCall",
		 METHOD_BIDI,
		 &grpc__testing__streaming_output_call_request__descriptor,
		 &grpc__testing__streaming_output_call_response__descriptor,
		 {.on_start = half_duplex_start,
		  .on_message = duplex_message,
		  .on_half_close = duplex_half_close,
		  .on_writable = out_writable,
		  .on_cancel = out_cancel},
		 svc},
	};
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		int rc = method_table_add(t, &methods[i]);
		if (rc)
			return rc;
	}
	return 0;
}

/* ---- collector.test.Pool ---- */

typedef struct sleep_job {
	pool_job j; /* first: the pool hands back this pointer */
	call *c;
	interop_service *svc;
	long ms;
} sleep_job;

static void sleep_work(pool_job *pj)
{
	sleep_job *s = (sleep_job *)pj;
	atomic_fetch_add(&s->svc->pool_started, 1);
	struct timespec ts = {.tv_sec = s->ms / 1000, .tv_nsec = (s->ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

static void sleep_done(pool_job *pj)
{
	sleep_job *s = (sleep_job *)pj;
	if (!call_done(s->c)) {
		call_send_raw(s->c, (const uint8_t *)"ok", 2);
		call_finish(s->c, GRPC_OK, NULL);
	}
	call_set_user(s->c, NULL);
	call_unref(s->c);
	free(s);
}

static void sleep_request(call *c, const uint8_t *data, size_t len)
{
	interop_service *svc = call_ctx(c);
	char text[16];
	char *end;
	long ms = -1;
	if (len > 0 && len < sizeof(text)) {
		memcpy(text, data, len);
		text[len] = 0;
		ms = strtol(text, &end, 10);
		if (*end)
			ms = -1;
	}
	if (ms < 0 || ms > 60000) {
		call_finish(c, GRPC_INVALID_ARGUMENT, "expected milliseconds, 0 to 60000");
		return;
	}
	sleep_job *s = calloc(1, sizeof(*s));
	if (!s) {
		call_finish(c, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	*s = (sleep_job){.j = {.work = sleep_work, .done = sleep_done},
			 .c = c,
			 .svc = svc,
			 .ms = ms};
	call_ref(c);
	call_set_user(c, s);
	int rc = pool_submit(svc->pool, call_reactor(c), &s->j);
	if (rc) {
		call_set_user(c, NULL);
		call_unref(c);
		free(s);
		call_finish(c, GRPC_RESOURCE_EXHAUSTED, "the blocking pool is full");
	}
}

/* The client went away: a job still queued leaves the queue without running. */
static void sleep_cancel(call *c)
{
	sleep_job *s = call_user(c);
	if (s)
		pool_job_cancel(&s->j);
}

static void stats_request(call *c, const uint8_t *data, size_t len)
{
	(void)data;
	(void)len;
	interop_service *svc = call_ctx(c);
	char text[128];
	int n = snprintf(text, sizeof(text), "started=%zu skipped=%zu queued=%zu",
			 atomic_load(&svc->pool_started), pool_skipped(svc->pool),
			 pool_queued(svc->pool));
	call_send_raw(c, (const uint8_t *)text, (size_t)n);
	call_finish(c, GRPC_OK, NULL);
}

static int pool_add_methods(method_table *t, interop_service *svc)
{
	const method methods[] = {
		{"/collector.test.Pool/Sleep",
		 METHOD_UNARY,
		 NULL,
		 NULL,
		 {.on_raw = sleep_request, .on_cancel = sleep_cancel},
		 svc},
		{"/collector.test.Pool/Stats",
		 METHOD_UNARY,
		 NULL,
		 NULL,
		 {.on_raw = stats_request},
		 svc},
	};
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		int rc = method_table_add(t, &methods[i]);
		if (rc)
			return rc;
	}
	return 0;
}

/* ---- process: flags, signals, the loop ---- */

typedef struct interop_flags {
	int port;
	int pool_threads;
	long max_calls_per_conn; /* 0: the server's default */
	bool tls;
	const char *tls_cert, *tls_key; /* PEM files, with --use_tls=true */
} interop_flags;

static int interop_usage(const char *why)
{
	fprintf(stderr,
		"interop_server: %s\n"
		"usage: interop_server --port N [--use_tls=false|true] [--pool-threads N]\n"
		"       [--tls_cert_file F --tls_key_file F (with --use_tls=true)]\n"
		"       [--max-calls-per-connection N]\n",
		why);
	return 2;
}

static bool interop_number(const char *val, long min, long max, long *out)
{
	char *end;
	if (!val || !*val)
		return false;
	*out = strtol(val, &end, 10);
	return !*end && *out >= min && *out <= max;
}

/* Stock interop servers take "--flag=value"; "--flag value" is accepted as well. */
static int interop_parse_flags(int argc, char **argv, interop_flags *f)
{
	f->port = -1;
	f->pool_threads = 2;
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i], *val = NULL;
		const char *eq = strchr(arg, '=');
		size_t nlen = eq ? (size_t)(eq - arg) : strlen(arg);
		if (eq)
			val = eq + 1;
		else if (i + 1 < argc)
			val = argv[++i];
		long n;
		if (nlen == 6 && !strncmp(arg, "--port", nlen)) {
			if (!interop_number(val, 0, 65535, &n))
				return interop_usage("--port needs a number from 0 to 65535");
			f->port = (int)n;
		} else if (nlen == 14 && !strncmp(arg, "--pool-threads", nlen)) {
			if (!interop_number(val, 1, 64, &n))
				return interop_usage("--pool-threads needs a number from 1 to 64");
			f->pool_threads = (int)n;
		} else if (nlen == 26 && !strncmp(arg, "--max-calls-per-connection", nlen)) {
			if (!interop_number(val, 1, 100000, &n))
				return interop_usage("--max-calls-per-connection needs a number");
			f->max_calls_per_conn = n;
		} else if (nlen == 9 && !strncmp(arg, "--use_tls", nlen)) {
			if (!val)
				return interop_usage("--use_tls needs true or false");
			f->tls = !strcmp(val, "true") || !strcmp(val, "1");
			if (!f->tls && strcmp(val, "false") && strcmp(val, "0"))
				return interop_usage("--use_tls needs true or false");
		} else if (nlen == 15 && !strncmp(arg, "--tls_cert_file", nlen)) {
			f->tls_cert = val;
		} else if (nlen == 14 && !strncmp(arg, "--tls_key_file", nlen)) {
			f->tls_key = val;
		} else {
			char why[300];
			snprintf(why, sizeof(why), "unknown argument '%.250s'", arg);
			return interop_usage(why);
		}
	}
	if (f->port < 0)
		return interop_usage("--port is required");
	/* The stock servers embed grpc's test certificates; here they are files. */
	if (f->tls && (!f->tls_cert || !f->tls_key))
		return interop_usage("--use_tls=true needs --tls_cert_file and --tls_key_file");
	return 0;
}

int main(int argc, char **argv)
{
	interop_flags flags = {0};
	int rc = interop_parse_flags(argc, argv, &flags);
	if (rc)
		return rc;

	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	/* Blocked before any thread starts, so that they reach only the sigwait below. */
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	h2_server_opts opts;
	h2_server_opts_default(&opts);
	tls_ctx *tls = NULL;
	if (flags.tls) {
		tls_opts to = {.server = true,
			       .cert_file = flags.tls_cert,
			       .key_file = flags.tls_key,
			       .alpn = "h2"};
		char why[400];
		if (tls_ctx_new(&to, &tls, why, sizeof(why))) {
			fprintf(stderr, "interop_server: %s\n", why);
			return 1;
		}
		opts.tls = tls;
	}
	if (flags.max_calls_per_conn)
		opts.max_calls_per_conn = (uint32_t)flags.max_calls_per_conn;
	uint8_t *zeros = calloc(1, opts.max_message_bytes);
	interop_service svc = {.max_message_bytes = opts.max_message_bytes,
			       .zeros = zeros,
			       .pool = pool_new((size_t)flags.pool_threads, 32)};
	method_table *methods = method_table_new();
	h2_server *server = NULL;
	reactor_group *group = NULL;
	char hostport[32], err[256];
	snprintf(hostport, sizeof(hostport), "127.0.0.1:%d", flags.port);
	reactor_group_opts gopts = {.listen = hostport, .threads = 1, .backlog = 512};
	int status = 1;
	if (!zeros || !svc.pool || !methods) {
		fprintf(stderr, "interop_server: %s\n", strerror(ENOMEM));
	} else if ((rc = interop_add_methods(methods, &svc)) ||
		   (rc = pool_add_methods(methods, &svc))) {
		fprintf(stderr, "interop_server: cannot build the method table: %s\n",
			strerror(-rc));
	} else if (!(server = h2_server_new(methods, &opts))) {
		fprintf(stderr, "interop_server: cannot create the server: %s\n", strerror(ENOMEM));
	} else if (reactor_group_open(&gopts, &group, err, sizeof(err)) ||
		   reactor_group_start(group, server, err, sizeof(err))) {
		fprintf(stderr, "interop_server: %s\n", err);
	} else {
		printf("listening on %s\n", reactor_group_address(group));
		fflush(stdout);
		int sig;
		sigwait(&set, &sig);
		reactor_group_stop(group, SHUTDOWN_GRACE_NS);
		status = 0;
	}
	/* The reactor's loop ends once the pool jobs of its calls came back: the pool is
	 * idle when it goes. */
	reactor_group_free(group);
	pool_free(svc.pool);
	h2_server_free(server);
	method_table_free(methods);
	tls_ctx_free(tls);
	free(zeros);
	return status;
}
