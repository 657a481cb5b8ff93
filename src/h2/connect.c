/* The Connect protocol's unary form (connectrpc.com/docs/protocol) on the call API: a POST
 * of one plain message, application/proto or application/json, answered with the response
 * message and HTTP 200, or with Connect's JSON error body and the HTTP status its code maps
 * to. The body becomes the call's one request message and goes through the same path as a
 * gRPC request (method table, gate, deadline, decode limits, handler); only the framing on
 * the wire differs. JSON is turned into protobuf and back by the layer above
 * (h2_web_hooks.json_prepare, json_transcode), which has the type pool: on the reactor up
 * to DECODE_INLINE_MAX bytes, as for decoding, and on the pool beyond. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "base/container_of.h"
#include "base/jsonstr.h"
#include "base/mem.h"
#include "h2/decode.h"
#include "h2/server_int.h"

static bool ctype_is(const uint8_t *v, size_t len, const char *want)
{
	size_t n = strlen(want);
	return len >= n && !strncasecmp((const char *)v, want, n) &&
	       (len == n || v[n] == ';' || v[n] == ' ');
}

enum call_wire connect_wire_of(const uint8_t *v, size_t len)
{
	if (ctype_is(v, len, "application/grpc-web") ||
	    ctype_is(v, len, "application/grpc-web+proto"))
		return WIRE_GRPC_WEB;
	if (ctype_is(v, len, "application/grpc-web-text") ||
	    ctype_is(v, len, "application/grpc-web-text+proto"))
		return WIRE_GRPC_WEB_TEXT;
	static const char grpc[] = "application/grpc";
	size_t n = sizeof(grpc) - 1;
	if (len >= n && !memcmp(v, grpc, n) && (len == n || v[n] == '+' || v[n] == ';'))
		return WIRE_GRPC;
	if (ctype_is(v, len, "application/json"))
		return WIRE_CONNECT_JSON;
	if (ctype_is(v, len, "application/proto"))
		return WIRE_CONNECT_PROTO;
	return WIRE_PLAIN;
}

bool connect_timeout(call *c, const uint8_t *v, size_t len)
{
	/* Connect: at most 10 digits of milliseconds. */
	if (!len || len > 10)
		return false;
	int64_t ms = 0;
	for (size_t i = 0; i < len; i++) {
		if (v[i] < '0' || v[i] > '9')
			return false;
		ms = ms * 10 + (v[i] - '0');
	}
	c->deadline = reactor_now(c->r) + ms * 1000000;
	return true;
}

void connect_body_in(call *c, const uint8_t *data, size_t len)
{
	if (call_done(c) || !len)
		return;
	size_t max = c->conn->e->s->o.max_message_bytes;
	/* gRPC-Web: one framed message, in base64 for grpc-web-text. */
	if (c->wire == WIRE_GRPC_WEB)
		max += 5;
	else if (c->wire == WIRE_GRPC_WEB_TEXT)
		max = (max + 5 + 2) / 3 * 4 + 64;
	if (c->body_in.len + len > max) {
		buf_free(&c->body_in);
		call_fail(c, GRPC_RESOURCE_EXHAUSTED, "request message larger than the limit");
		return;
	}
	if (buf_append(&c->body_in, data, len)) {
		buf_free(&c->body_in);
		call_fail(c, GRPC_RESOURCE_EXHAUSTED, "out of memory");
	}
}

/* ---- JSON, on the reactor or the pool ---- */

/* One transcoding on the pool: its input copied, its output taken over by the call when it
 * is done, or dropped when the call went meanwhile. */
typedef struct json_job {
	pool_job pj;
	call *c; /* referenced until done */
	const h2_web_hooks *hooks;
	void *state;
	bool response;
	buf in, out;
	int code;
	char err[300];
} json_job;

static void json_work(pool_job *pj)
{
	json_job *j = container_of(pj, json_job, pj);
	j->code = j->hooks->json_transcode(j->hooks->ctx, j->state, j->response, j->in.data,
					   j->in.len, &j->out, j->err, sizeof(j->err));
}

static void request_ready(call *c, buf *pb, int code, const char *err);
static void response_ready(call *c, int code, const char *err);

static void json_done(pool_job *pj)
{
	json_job *j = container_of(pj, json_job, pj);
	call *c = j->c;
	if (c->json_job == j)
		c->json_job = NULL;
	/* Gone meanwhile (the stream closed; or, for a request, the deadline ended it): the
	 * result is dropped. */
	bool wanted = !pool_job_cancelled(pj) && c->conn && (j->response || !call_done(c));
	if (wanted && j->response) {
		buf_free(&c->body_out);
		c->body_out = j->out;
		j->out = (buf){0};
		response_ready(c, j->code, j->err);
	} else if (wanted) {
		request_ready(c, &j->out, j->code, j->err);
	}
	buf_free(&j->in);
	buf_free(&j->out);
	mem_free(j);
	call_unref(c);
}

/* Transcodes in (taken) for c: at once when small or without a pool, else on the pool.
 * Returns 1 when a job took it (done follows), else the status with out filled. */
static int transcode(call *c, bool response, buf *in, buf *out, char *err, size_t cap)
{
	h2_server *s = c->conn->e->s;
	const h2_web_hooks *w = &s->web;
	if (!s->pool || in->len <= DECODE_INLINE_MAX) {
		int code = w->json_transcode(w->ctx, c->web_state, response, in->data, in->len, out,
					     err, cap);
		buf_free(in);
		return code;
	}
	json_job *j = mem_calloc(1, sizeof(*j));
	if (!j) {
		buf_free(in);
		snprintf(err, cap, "out of memory");
		return GRPC_RESOURCE_EXHAUSTED;
	}
	*j = (json_job){.c = c, .hooks = w, .state = c->web_state, .response = response, .in = *in};
	*in = (buf){0};
	j->pj.work = json_work;
	j->pj.done = json_done;
	int rc = pool_submit(s->pool, c->r, &j->pj);
	if (rc) {
		buf_free(&j->in);
		mem_free(j);
		snprintf(err, cap, "%s",
			 rc == -EAGAIN ? "the node is busy: its blocking pool's queue is full"
				       : "the node is stopping");
		return rc == -EAGAIN ? GRPC_RESOURCE_EXHAUSTED : GRPC_UNAVAILABLE;
	}
	call_ref(c);
	c->json_job = j;
	return 1;
}

void connect_cancel(call *c)
{
	if (c->json_job) {
		pool_job_cancel(&c->json_job->pj); /* its done still runs, and drops the result */
		c->json_job = NULL;
	}
}

/* The request's message is here (pb), or its status: handed on, then the half-close. */
static void request_ready(call *c, buf *pb, int code, const char *err)
{
	if (code != GRPC_OK) {
		call_fail(c, code, err);
		return;
	}
	call_ref(c);
	call_message_in(c, pb->data ? pb->data : (const uint8_t *)"", pb->len, false);
	if (c->half_closed)
		call_half_close_continue(c);
	call_unref(c);
}

void connect_deliver(call *c)
{
	if (call_done(c))
		return;
	if (c->connect_encoded) {
		buf_free(&c->body_in);
		call_fail(c, GRPC_UNIMPLEMENTED,
			  "content-encoding is not supported; send identity");
		return;
	}
	buf in = c->body_in;
	c->body_in = (buf){0};
	if (c->wire != WIRE_CONNECT_JSON) {
		call_ref(c);
		call_message_in(c, in.data ? in.data : (const uint8_t *)"", in.len, false);
		call_unref(c);
		buf_free(&in);
		return;
	}
	const h2_web_hooks *w = &c->conn->e->s->web;
	char err[300] = "JSON is not served by this node";
	int code = GRPC_UNIMPLEMENTED;
	/* An empty JSON body is the empty message, as for protobuf. */
	if (!in.len && buf_append(&in, "{}", 2)) {
		call_fail(c, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	if (w->json_prepare && w->json_transcode)
		c->web_state = w->json_prepare(w->ctx, c, in.data, in.len, &code, err, sizeof(err));
	if (!c->web_state) {
		buf_free(&in);
		call_fail(c, code, err);
		return;
	}
	buf pb = {0};
	code = transcode(c, false, &in, &pb, err, sizeof(err));
	if (code != 1) {
		/* Inline: the half-close that called us goes on by itself. */
		if (code != GRPC_OK) {
			call_fail(c, code, err);
		} else {
			call_ref(c);
			call_message_in(c, pb.data ? pb.data : (const uint8_t *)"", pb.len, false);
			call_unref(c);
		}
	}
	buf_free(&pb);
}

int connect_queue(call *c, const uint8_t *data, size_t len)
{
	if (len > c->conn->e->s->o.max_message_bytes)
		return -EMSGSIZE;
	if (c->have_resp_msg)
		return -EPROTO; /* unary: one response message */
	if (buf_append(&c->resp_msg, data, len))
		return -ENOMEM;
	c->have_resp_msg = true;
	return 0;
}

/* Connect's names of the codes and the HTTP statuses they travel with. */
static const struct {
	const char *name;
	int http;
} codes[] = {
	[GRPC_OK] = {"ok", 200},
	[GRPC_CANCELLED] = {"canceled", 499},
	[GRPC_UNKNOWN] = {"unknown", 500},
	[GRPC_INVALID_ARGUMENT] = {"invalid_argument", 400},
	[GRPC_DEADLINE_EXCEEDED] = {"deadline_exceeded", 504},
	[GRPC_NOT_FOUND] = {"not_found", 404},
	[GRPC_ALREADY_EXISTS] = {"already_exists", 409},
	[GRPC_PERMISSION_DENIED] = {"permission_denied", 403},
	[GRPC_RESOURCE_EXHAUSTED] = {"resource_exhausted", 429},
	[GRPC_FAILED_PRECONDITION] = {"failed_precondition", 400},
	[GRPC_ABORTED] = {"aborted", 409},
	[GRPC_OUT_OF_RANGE] = {"out_of_range", 400},
	[GRPC_UNIMPLEMENTED] = {"unimplemented", 501},
	[GRPC_INTERNAL] = {"internal", 500},
	[GRPC_UNAVAILABLE] = {"unavailable", 503},
	[GRPC_DATA_LOSS] = {"data_loss", 500},
	[GRPC_UNAUTHENTICATED] = {"unauthenticated", 401},
};

static void error_body(call *c, int code, const char *msg)
{
	if (code <= GRPC_OK || code > GRPC_UNAUTHENTICATED)
		code = GRPC_UNKNOWN;
	c->http_status = codes[code].http;
	c->resp_ctype = "application/json";
	buf_reset(&c->body_out);
	buf_puts(&c->body_out, "{\"code\":\"");
	buf_puts(&c->body_out, codes[code].name);
	buf_putc(&c->body_out, '"');
	if (msg && *msg) {
		size_t mark = c->body_out.len;
		buf_puts(&c->body_out, ",\"message\":");
		if (jsonstr_put(&c->body_out, msg, strlen(msg)))
			buf_truncate(&c->body_out, mark); /* not UTF-8: the code alone */
	}
	buf_putc(&c->body_out, '}');
}

/* The response of a finished call, once its body is known (code: how its JSON went). */
static void response_ready(call *c, int code, const char *err)
{
	if (code == GRPC_OK) {
		c->http_status = 200;
		c->resp_ctype =
			c->wire == WIRE_CONNECT_JSON ? "application/json" : "application/proto";
	} else {
		error_body(c, code, err);
	}
	if (c->body_out.failed) {
		buf_reset(&c->body_out);
		c->http_status = 500;
		c->resp_ctype = "application/json";
		buf_puts(&c->body_out, "{\"code\":\"resource_exhausted\"}");
	}
	buf_free(&c->resp_msg);
	buf_free(&c->body_in);
	c->resp_ready = true;
	connect_respond(c);
}

void connect_respond(call *c)
{
	if (!c->conn)
		return;
	if (c->conn->proto == PROTO_H1)
		http1_call_finished(c);
	else
		h2_submit_plain(c);
}

void connect_finish(call *c)
{
	int code = c->status;
	const char *msg = c->status_msg;
	buf_reset(&c->body_out);
	c->out_off = 0;
	if (code == GRPC_OK && !c->have_resp_msg) {
		code = GRPC_INTERNAL;
		msg = "the method ended without a response message";
	}
	if (code != GRPC_OK) {
		response_ready(c, code, msg);
	} else if (c->wire == WIRE_CONNECT_JSON && c->web_state) {
		char err[300] = "";
		buf in = c->resp_msg;
		c->resp_msg = (buf){0};
		code = transcode(c, true, &in, &c->body_out, err, sizeof(err));
		if (code != 1)
			response_ready(c, code, err);
	} else if (c->wire == WIRE_CONNECT_JSON) {
		/* Ended before its request was read (a gate, a deadline): nothing to show. */
		response_ready(c, GRPC_INTERNAL, "no JSON state");
	} else {
		buf_free(&c->body_out);
		c->body_out = c->resp_msg;
		c->resp_msg = (buf){0};
		response_ready(c, GRPC_OK, NULL);
	}
}
