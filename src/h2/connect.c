/* The Connect protocol's unary form (connectrpc.com/docs/protocol) on the call API: a POST
 * of one plain message, application/proto or application/json, answered with the response
 * message and HTTP 200, or with Connect's JSON error body and the HTTP status its code maps
 * to. The body becomes the call's one request message and goes through the same path as a
 * gRPC request (method table, gate, deadline, decode limits, handler); only the framing on
 * the wire differs. JSON is turned into protobuf and back by the layer above
 * (h2_web_hooks.transcode), which has the type pool. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "base/jsonstr.h"
#include "base/utf8.h"
#include "h2/server_int.h"

static bool ctype_is(const uint8_t *v, size_t len, const char *want)
{
	size_t n = strlen(want);
	return len >= n && !strncasecmp((const char *)v, want, n) &&
	       (len == n || v[n] == ';' || v[n] == ' ');
}

enum call_wire connect_wire_of(const uint8_t *v, size_t len)
{
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
	if (c->wire == WIRE_CONNECT_JSON) {
		const h2_web_hooks *w = &c->conn->e->s->web;
		buf pb = {0};
		char err[300] = "";
		int code = GRPC_UNIMPLEMENTED;
		/* An empty JSON body is the empty message, as for protobuf. */
		const uint8_t *j = in.len ? in.data : (const uint8_t *)"{}";
		if (w->transcode)
			code = w->transcode(w->ctx, c, &c->web_state, false, false, j,
					    in.len ? in.len : 2, &pb, err, sizeof(err));
		else
			snprintf(err, sizeof(err), "JSON is not served by this node");
		buf_free(&in);
		if (code != GRPC_OK) {
			buf_free(&pb);
			call_fail(c, code, err);
			return;
		}
		in = pb;
	}
	call_ref(c);
	call_message_in(c, in.data ? in.data : (const uint8_t *)"", in.len, false);
	call_unref(c);
	buf_free(&in);
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

void connect_build(call *c)
{
	int code = c->status;
	const char *msg = c->status_msg;
	char err[300];
	buf_reset(&c->body_out);
	c->out_off = 0;
	if (code == GRPC_OK && !c->have_resp_msg) {
		code = GRPC_INTERNAL;
		msg = "the method ended without a response message";
	}
	if (code == GRPC_OK && c->wire == WIRE_CONNECT_JSON) {
		const h2_web_hooks *w = &c->conn->e->s->web;
		err[0] = 0;
		code = w->transcode ? w->transcode(w->ctx, c, &c->web_state, true, true,
						   c->resp_msg.data, c->resp_msg.len, &c->body_out,
						   err, sizeof(err))
				    : GRPC_UNIMPLEMENTED;
		msg = err;
		if (code == GRPC_OK) {
			c->http_status = 200;
			c->resp_ctype = "application/json";
		}
	} else if (code == GRPC_OK) {
		buf_free(&c->body_out);
		c->body_out = c->resp_msg;
		c->resp_msg = (buf){0};
		c->http_status = 200;
		c->resp_ctype = "application/proto";
	}
	if (code != GRPC_OK)
		error_body(c, code, msg);
	if (c->body_out.failed) {
		buf_reset(&c->body_out);
		c->http_status = 500;
		c->resp_ctype = "application/json";
		buf_puts(&c->body_out, "{\"code\":\"resource_exhausted\"}");
	}
	buf_free(&c->resp_msg);
	buf_free(&c->body_in);
}
