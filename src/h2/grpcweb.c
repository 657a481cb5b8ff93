/* gRPC-Web (the protocol of github.com/grpc/grpc/blob/master/doc/PROTOCOL-WEB.md) on the
 * call API, over HTTP/1.1 and HTTP/2: the request body holds gRPC-framed messages
 * (base64 for grpc-web-text), read by the same reader as gRPC's DATA (grpcmsg.h: limits,
 * the compressed flag with grpc-encoding) into the same call path; the response is the
 * messages, framed, then a trailer frame (flag 0x80) that carries grpc-status,
 * grpc-message and the trailing metadata as an HTTP/1.1 header block, since browsers
 * cannot read HTTP trailers.
 *
 * Unary and server-streaming methods (browsers send one request message). A response is
 * sent whole when the call ends, bounded like a gRPC call's buffered output: a server
 * stream is delivered at its end, not message by message. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/base64.h"
#include "h2/metadata.h"
#include "h2/server_int.h"

#define TRAILER_FLAG 0x80

bool grpcweb_is(const call *c) { return c->wire == WIRE_GRPC_WEB || c->wire == WIRE_GRPC_WEB_TEXT; }

/* grpc-web-text: base64 whose groups may each end in padding (a client may encode every
 * piece it sends on its own), so it is decoded run by run. */
static int text_decode(buf *out, const uint8_t *in, size_t len)
{
	size_t i = 0;
	while (i < len) {
		const uint8_t *eq = memchr(in + i, '=', len - i);
		size_t end = eq ? (size_t)(eq - in) : len;
		/* The run with its padding: up to the next multiple of four. */
		if (eq)
			end = i + ((end - i) + 3) / 4 * 4;
		if (end > len || end == i)
			return -EINVAL;
		int rc = base64_put_decoded(out, (const char *)in + i, end - i, 0);
		if (rc)
			return rc;
		i = end;
	}
	return 0;
}

void grpcweb_deliver(call *c)
{
	buf in = c->body_in;
	c->body_in = (buf){0};
	if (c->wire == WIRE_GRPC_WEB_TEXT) {
		buf raw = {0};
		int rc = text_decode(&raw, in.data, in.len);
		buf_free(&in);
		if (rc) {
			buf_free(&raw);
			call_fail(c,
				  rc == -ENOMEM ? GRPC_RESOURCE_EXHAUSTED : GRPC_INVALID_ARGUMENT,
				  "grpc-web-text body that is not base64");
			return;
		}
		in = raw;
	}
	call_ref(c);
	/* The reader takes what it can; a call paused by its handler gets the rest held, as
	 * for HTTP/2 DATA. */
	size_t used = call_data_in(c, in.data ? in.data : (const uint8_t *)"", in.len);
	if (!call_done(c) && used < in.len && buf_append(&c->held, in.data + used, in.len - used))
		call_fail(c, GRPC_RESOURCE_EXHAUSTED, "out of memory");
	call_unref(c);
	buf_free(&in);
}

int grpcweb_queue(call *c, const uint8_t *data, size_t len)
{
	const h2_server_opts *o = &c->conn->e->s->o;
	if (len > o->max_message_bytes)
		return -EMSGSIZE;
	/* The whole response waits for the call's end: bounded as gRPC's buffered output. */
	if (c->resp_msg.len + len + 5 > o->stream_send_high_water + o->max_message_bytes)
		return -ENOBUFS;
	uint8_t prefix[5] = {0, (uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
			     (uint8_t)len};
	if (buf_append(&c->resp_msg, prefix, 5) || buf_append(&c->resp_msg, data, len))
		return -ENOMEM;
	return 0;
}

/* grpc-status, grpc-message and the trailing metadata, as a header block. */
static int trailer_block(call *c, buf *t)
{
	char code[16];
	snprintf(code, sizeof(code), "%d", c->status);
	buf_puts(t, "grpc-status: ");
	buf_puts(t, code);
	buf_puts(t, "\r\n");
	if (c->status_msg && *c->status_msg) {
		buf_puts(t, "grpc-message: ");
		md_percent_encode(t, (const uint8_t *)c->status_msg, strlen(c->status_msg));
		buf_puts(t, "\r\n");
	}
	for (size_t i = 0; i < c->trailing_md.n; i++) {
		const nghttp2_nv *nv = &c->trailing_md.v[i];
		buf_append(t, nv->name, nv->namelen);
		buf_puts(t, ": ");
		buf_append(t, nv->value, nv->valuelen);
		buf_puts(t, "\r\n");
	}
	return t->failed ? -ENOMEM : 0;
}

void grpcweb_finish(call *c)
{
	buf body = c->resp_msg, t = {0};
	c->resp_msg = (buf){0};
	int rc = trailer_block(c, &t);
	uint8_t prefix[5] = {TRAILER_FLAG, (uint8_t)(t.len >> 24), (uint8_t)(t.len >> 16),
			     (uint8_t)(t.len >> 8), (uint8_t)t.len};
	rc = rc ? rc : buf_append(&body, prefix, 5);
	rc = rc ? rc : buf_append(&body, t.data, t.len);
	buf_free(&t);
	buf_reset(&c->body_out);
	c->out_off = 0;
	if (c->wire == WIRE_GRPC_WEB_TEXT) {
		rc = rc ? rc : base64_put(&c->body_out, body.data, body.len, 0);
		buf_free(&body);
	} else {
		buf_free(&c->body_out);
		c->body_out = body;
	}
	c->http_status = rc ? 500 : 200;
	c->resp_ctype = c->wire == WIRE_GRPC_WEB_TEXT ? "application/grpc-web-text+proto"
						      : "application/grpc-web+proto";
	if (rc)
		buf_reset(&c->body_out);
	buf_free(&c->body_in);
	c->resp_ready = true;
	connect_respond(c);
}
