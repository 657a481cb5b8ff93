/* The request side of a server call: headers checked and the method found, gRPC messages
 * read off DATA (grpcmsg.h), inflated and decoded with the node's bounds (on the reactor
 * when cheap, on the pool when not, in arrival order either way), handed to the handler,
 * and what the call buffers meanwhile counted against its connection and the node. */
#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/container_of.h"
#include "base/mem.h"
#include "base/pbdecode.h"
#include "h2/decode.h"
#include "h2/gzip.h"
#include "h2/metrics.h"
#include "h2/server_int.h"

/* ---- request path ---- */

static void on_deadline(timer *t)
{
	call *c = container_of(t, call, deadline_timer);
	call_fail(c, GRPC_DEADLINE_EXCEEDED, "deadline exceeded");
}

static bool kind_single_request(method_kind k)
{
	return k == METHOD_UNARY || k == METHOD_SERVER_STREAM;
}

static void free_decoded(ProtobufCMessage *msg, pool *p)
{
	if (p)
		decode_free_later(p, msg);
	else
		protobuf_c_message_free_unpacked(msg, NULL);
}

static void run_on_start(call *c)
{
	if (c->m->h.on_start) {
		call_ref(c);
		c->m->h.on_start(c);
		call_unref(c);
	}
}

/* The registry's check of the call (h2_server_set_gate). False when it ended the call. */
static bool call_gate(h2_server *s, call *c)
{
	if (!s->gate || !c->path)
		return true;
	char msg[400];
	int code = s->gate(s->gate_ctx, c, c->path, c->path_len, c->m != NULL, msg, sizeof(msg));
	if (code != GRPC_OK) {
		call_fail(c, code, msg);
		return false;
	}
	return true;
}

/* The authorizer's look at the first request message, when it asked for one (server.h,
 * h2_server_set_auth). False when it ended the call. */
static bool auth_request(call *c, const ProtobufCMessage *msg)
{
	if (!c->auth_pending)
		return true;
	c->auth_pending = false;
	h2_server *s = c->conn->e->s;
	char err[300] = "";
	bool again = false;
	int code = s->auth(s->auth_ctx, c, c->m, msg, &again, err, sizeof(err));
	if (code != GRPC_OK) {
		call_fail(c, code, err);
		return false;
	}
	/* The gate and on_start waited for this check (call_start). */
	if (!call_gate(s, c))
		return false;
	run_on_start(c);
	return !call_done(c);
}

/* A client stream that ended without a message, while the authorizer waited for one: it
 * judges an empty request (the namespace then comes from the metadata, as the handler
 * would take it), and on_start runs after it as usual. False when the call ended. */
static bool auth_empty_stream(call *c)
{
	ProtobufCMessage *empty = call_alloc(c, c->m->input->sizeof_message);
	if (!empty) {
		call_fail(c, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return false;
	}
	protobuf_c_message_init(c->m->input, empty);
	return auth_request(c, empty);
}

/* A decoded request: the unary request, or one message of a stream (freed here). One
 * that was decoded on pool p is freed there too. */
static void deliver_decoded(call *c, ProtobufCMessage *msg, pool *p)
{
	const method *m = c->m;
	if (!auth_request(c, msg)) {
		free_decoded(msg, p);
		return;
	}
	if (kind_single_request(m->kind)) {
		c->request = msg;
		c->request_pool = p;
		return;
	}
	call_ref(c);
	if (m->h.on_message)
		m->h.on_message(c, msg);
	free_decoded(msg, p);
	call_unref(c);
}

/* A plain message for a method that takes raw bytes. */
static void deliver_raw(call *c, const uint8_t *data, size_t len)
{
	const method *m = c->m;
	if (kind_single_request(m->kind)) {
		if (buf_append(&c->raw_request, data, len))
			call_fail(c, GRPC_RESOURCE_EXHAUSTED, "out of memory");
	} else if (m->h.on_raw) {
		m->h.on_raw(c, data, len);
	}
}

static void finish_half_close(call *c);
static void process_message(call *c, const uint8_t *data, size_t len, bool compressed);

/* Messages that waited for a decode go in order; a deferred half-close comes last. */
static void drain_pending(call *c)
{
	while (!c->decoding && c->pending && !c->input_paused && !call_done(c)) {
		pending_msg *pm = c->pending;
		if (!(c->pending = pm->next))
			c->pending_tail = NULL;
		c->pending_bytes -= pm->len;
		process_message(c, pm->data, pm->len, pm->compressed);
		mem_free(pm);
	}
	if (call_done(c))
		call_pending_free(c);
	if (!c->decoding && !c->pending && c->half_close_waits && !c->input_paused &&
	    !call_done(c)) {
		c->half_close_waits = false;
		finish_half_close(c);
	}
	call_account(c);
}

static void on_decoded(void *owner, ProtobufCMessage *msg, int code, const char *err)
{
	call *c = owner;
	c->decoding = NULL;
	c->pending_bytes -= c->decoding_len;
	if (call_done(c)) {
		if (msg)
			protobuf_c_message_free_unpacked(msg, NULL);
	} else if (!msg) {
		call_fail(c, code, err);
	} else {
		deliver_decoded(c, msg, c->conn->e->s->pool);
	}
	drain_pending(c);
	call_unref(c);
}

/* Hands a large or compressed message to the pool (decode.h); its call waits for it. */
static void offload(call *c, const uint8_t *data, size_t len, bool gzip)
{
	h2_server *s = c->conn->e->s;
	int rc = decode_submit(s->pool, c->r, c->m->input, data, len, gzip, s->o.max_message_bytes,
			       on_decoded, c, &c->decoding);
	if (rc) {
		call_fail(c, GRPC_RESOURCE_EXHAUSTED,
			  rc == -EAGAIN ? "the node is busy: its blocking pool's queue is full"
					: "out of memory");
		return;
	}
	call_ref(c);
	c->decoding_len = len;
	c->pending_bytes += len;
}

/* One whole request message, in arrival order: inflated and decoded on the reactor when
 * that is cheap (decode.h), else on the pool. */
static void process_message(call *c, const uint8_t *data, size_t len, bool compressed)
{
	const method *m = c->m;
	if (compressed && c->req_encoding == ENC_OTHER) {
		char msg[160];
		snprintf(msg, sizeof(msg), "grpc-encoding '%.100s' is not supported",
			 c->req_encoding_name);
		call_fail(c, GRPC_UNIMPLEMENTED, msg);
		return;
	}
	if (compressed && c->req_encoding != ENC_GZIP) {
		call_fail(c, GRPC_INTERNAL, "compressed message without grpc-encoding");
		return;
	}
	if (kind_single_request(m->kind)) {
		if (c->have_request) {
			call_fail(c, GRPC_UNIMPLEMENTED,
				  "more than one request message on a unary call");
			return;
		}
		c->have_request = true;
	}
	c->last_compressed = compressed;
	h2_server *s = c->conn->e->s;
	bool pooled = s->pool && m->input;
	buf plain = {0};
	if (compressed) {
		/* Inflating more than the inline size is the pool's job, like decoding it. */
		size_t cap = pooled && s->o.max_message_bytes > DECODE_INLINE_MAX
				     ? DECODE_INLINE_MAX
				     : s->o.max_message_bytes;
		int rc = gzip_decompress(&plain, data, len, cap);
		if (rc == -EFBIG && cap < s->o.max_message_bytes) {
			offload(c, data, len, true);
		} else if (rc) {
			const char *why;
			int code = gzip_failure_status(rc, &why);
			call_fail(c, code, why);
		}
		data = plain.data;
		len = plain.len;
		if (rc) {
			buf_free(&plain);
			return;
		}
	}
	if (!m->input) {
		deliver_raw(c, data, len);
	} else if (pooled && len > DECODE_INLINE_MAX &&
		   !pbdecode_fields_within(m->input, data, len, DECODE_INLINE_FIELDS)) {
		offload(c, data, len, false);
	} else {
		ProtobufCMessage *msg;
		char err[200];
		int code = decode_message(m->input, data, len, false, 0, &msg, err, sizeof(err));
		if (code == GRPC_OK)
			deliver_decoded(c, msg, NULL);
		else
			call_fail(c, code, err);
	}
	buf_free(&plain);
}

void call_message_in(call *c, const uint8_t *data, size_t len, bool compressed)
{
	if (!c->decoding && !c->pending) {
		process_message(c, data, len, compressed);
		return;
	}
	pending_msg *pm = mem_alloc(sizeof(*pm) + len);
	if (!pm) {
		call_fail(c, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	pm->next = NULL;
	pm->len = len;
	pm->compressed = compressed;
	memcpy(pm->data, data, len);
	if (c->pending_tail)
		*c->pending_tail = pm;
	else
		c->pending = pm;
	c->pending_tail = &pm->next;
	c->pending_bytes += len;
}

/* The authorizer's look at the call's headers (server.h, h2_server_set_auth). False when
 * it ended the call. */
static bool call_auth_start(h2_server *s, call *c)
{
	if (!s->auth)
		return true;
	char err[300] = "";
	bool need = false;
	int code = s->auth(s->auth_ctx, c, c->m, NULL, &need, err, sizeof(err));
	if (code != GRPC_OK) {
		call_fail(c, code, err);
		return false;
	}
	if (need && !(c->m && c->m->input)) {
		/* Nothing will be decoded to show it: refused rather than let through. */
		call_fail(c, GRPC_INTERNAL, "the call cannot be authorized");
		return false;
	}
	c->auth_pending = need;
	return true;
}

void call_start(h2_conn *h, call *c)
{
	h2_server *s = h->e->s;
	if (!c->grpc_content_type || !c->is_post) {
		/* Not a call: /healthz, /metrics or an HTTP error, no handler. */
		web_answer(h->e, c);
		c->finished = true;
		c->resp_ready = true;
		if (h->proto == PROTO_H1)
			http1_call_finished(c);
		else
			h2_submit_plain(c);
		return;
	}
	if (c->headers_too_large) {
		call_fail(c, GRPC_RESOURCE_EXHAUSTED, "request headers larger than the limit");
		return;
	}
	if (!c->te_trailers && s->o.require_te_trailers && c->wire == WIRE_GRPC) {
		call_fail(c, GRPC_INTERNAL, "the request has no 'te: trailers' header");
		return;
	}
	if (c->over_call_cap) {
		call_fail(c, GRPC_RESOURCE_EXHAUSTED,
			  "too many calls still running on this connection");
		return;
	}
	if (c->bad_metadata) {
		call_fail(c, GRPC_INTERNAL, "malformed metadata value");
		return;
	}
	c->m = c->path ? method_table_find(s->methods, c->path, c->path_len) : NULL;
	if (!call_auth_start(s, c))
		return;
	if (!c->m && c->path && s->fallback) {
		c->m = s->fallback(s->fallback_ctx, c, c->path, c->path_len);
		if (c->m && !call_auth_start(s, c))
			return;
	}
	if (s->metrics)
		c->mrow = metrics_row(s->metrics, c->m);
	/* A call whose namespace the authorizer reads from the request meets the gate after
	 * that check: the gate's answer (what is registered in a namespace) is only for
	 * callers allowed there. */
	if (!c->auth_pending && !call_gate(s, c))
		return;
	if (!c->m) {
		char msg[300];
		snprintf(msg, sizeof(msg), "unknown method %.250s", c->path ? c->path : "");
		call_fail(c, GRPC_UNIMPLEMENTED, msg);
		return;
	}
	if (c->wire != WIRE_GRPC && c->m->kind != METHOD_UNARY &&
	    !(grpcweb_is(c) && c->m->kind == METHOD_SERVER_STREAM)) {
		call_fail(c, GRPC_UNIMPLEMENTED,
			  grpcweb_is(c) ? "gRPC-Web serves unary and server-streaming methods"
					: "the Connect protocol is served for unary methods only; "
					  "use gRPC or gRPC-Web");
		return;
	}
	if (c->deadline != INT64_MAX) {
		if (c->deadline <= reactor_now(c->r)) {
			call_fail(c, GRPC_DEADLINE_EXCEEDED, "deadline exceeded");
			return;
		}
		/* A deadline that cannot be watched would let the call run past it. */
		if (reactor_timer_arm(c->r, &c->deadline_timer, c->deadline, on_deadline)) {
			call_fail(c, GRPC_RESOURCE_EXHAUSTED, "out of memory");
			return;
		}
	}
	c->started = true;
	/* No handler code runs before the authorizer's last word (auth_request). */
	if (!c->auth_pending)
		run_on_start(c);
}

/* The client is done sending and every message it sent has been handled. */
static void finish_half_close(call *c)
{
	const method *m = c->m;
	call_ref(c);
	if (kind_single_request(m->kind)) {
		if (!c->have_request)
			call_fail(c, GRPC_UNIMPLEMENTED, "half-closed without a request message");
		else if (!m->input && m->h.on_raw)
			m->h.on_raw(c, c->raw_request.data, c->raw_request.len);
		else if (m->input && m->h.on_request)
			m->h.on_request(c, c->request);
	} else if (c->auth_pending && !auth_empty_stream(c)) {
		/* refused: the handler never ran */
	} else if (m->h.on_half_close) {
		m->h.on_half_close(c);
	}
	call_unref(c);
}

static void half_close_now(call *c);

void call_half_close(call *c)
{
	if (c->half_closed)
		return;
	c->half_closed = true;
	if (call_done(c))
		return;
	if (c->wire != WIRE_GRPC) {
		c->body_since = 0;
		if (grpcweb_is(c))
			grpcweb_deliver(c);
		else
			connect_deliver(c);
		if (call_done(c) || c->json_job)
			return; /* the job goes on with call_half_close_continue */
	}
	if (c->held.len) {
		c->half_close_held = true; /* call_resume_input finishes it */
		return;
	}
	half_close_now(c);
}

void call_half_close_continue(call *c)
{
	if (!call_done(c))
		half_close_now(c);
}

/* Every DATA byte of the half-closed call has been read. */
static void half_close_now(call *c)
{
	if (grpcmsg_reader_partial(&c->reader)) {
		call_fail(c, GRPC_INTERNAL, "stream ended inside a message");
		return;
	}
	if (c->decoding || c->pending)
		c->half_close_waits = true; /* drain_pending finishes it */
	else
		finish_half_close(c);
}

/* Bytes of request messages c holds: a partial message, messages waiting for decoding,
 * DATA held while its input is paused. */
static size_t call_held(const call *c)
{
	return grpcmsg_reader_held(&c->reader) + c->pending_bytes + c->held.cap + c->body_in.cap;
}

size_t call_data_in(call *c, const uint8_t *data, size_t len)
{
	const uint8_t *start = data;
	bool outer = c->feeding;
	c->feeding = true;
	while (!call_done(c) && !c->input_paused) {
		const uint8_t *msg;
		size_t msg_len;
		bool compressed;
		int rc = grpcmsg_reader_next(&c->reader, &data, &len, &msg, &msg_len, &compressed);
		if (rc == GRPCMSG_NEED_MORE)
			break;
		if (rc == GRPCMSG_MESSAGE) {
			call_message_in(c, msg, msg_len, compressed);
			continue;
		}
		if (rc == GRPCMSG_TOO_LARGE)
			call_fail(c, GRPC_RESOURCE_EXHAUSTED,
				  "request message larger than the limit");
		else if (rc == GRPCMSG_BAD_FLAG)
			call_fail(c, GRPC_INTERNAL, "invalid message flag");
		else
			call_fail(c, GRPC_RESOURCE_EXHAUSTED, "out of memory");
	}
	c->feeding = outer;
	return (size_t)(data - start);
}

void call_consume(call *c, size_t n)
{
	if (c->conn && c->conn->ng && n) {
		nghttp2_session_consume(c->conn->ng, c->stream_id, n);
		conn_want_send(c->conn);
	}
}

/* Gives held DATA back to the window and drops it (the call is ending). */
static void held_drop(call *c)
{
	call_consume(c, c->held.len);
	buf_free(&c->held);
}

void call_pause_input(call *c) { c->input_paused = true; }

void call_resume_input(call *c)
{
	if (!c->input_paused)
		return;
	c->input_paused = false;
	/* Inside call_data_in (the handler resumed from its own callback): that loop goes
	 * on by itself. */
	if (c->feeding || call_done(c))
		return;
	call_ref(c);
	drain_pending(c);
	if (c->held.len && !c->input_paused && !call_done(c)) {
		/* Read from a buffer of our own: a callback that ends the call drops c->held. */
		buf in = c->held;
		c->held = (buf){0};
		size_t used = call_data_in(c, in.data, in.len);
		if (call_done(c)) {
			call_consume(c, in.len);
		} else {
			call_consume(c, used);
			memmove(in.data, in.data + used, in.len - used);
			in.len -= used;
			if (in.len) {
				if (c->held.len && buf_append(&in, c->held.data, c->held.len))
					call_fail(c, GRPC_RESOURCE_EXHAUSTED, "out of memory");
				buf_free(&c->held);
				c->held = in;
				in = (buf){0};
			}
		}
		buf_free(&in);
	}
	if (call_done(c)) {
		held_drop(c);
	} else if (!c->held.len) {
		buf_free(&c->held);
		if (c->half_close_held && !c->input_paused) {
			c->half_close_held = false;
			half_close_now(c);
		}
	}
	call_account(c);
	call_unref(c);
}

/* Brings c's share of its connection's and the node's counts up to date. */
void call_account(call *c)
{
	h2_conn *h = c->conn;
	if (!h)
		return;
	size_t now = call_held(c);
	if (now > c->recv_counted) {
		h->recv_held += now - c->recv_counted;
		conn_held_add(h, now - c->recv_counted);
	} else {
		h->recv_held -= c->recv_counted - now;
		conn_held_sub(h, c->recv_counted - now);
	}
	c->recv_counted = now;
}

void call_pending_free(call *c)
{
	while (c->pending) {
		pending_msg *pm = c->pending;
		c->pending = pm->next;
		c->pending_bytes -= pm->len;
		mem_free(pm);
	}
	c->pending_tail = NULL;
}

/* Drops what c holds of request messages (the call is being ended). */
void call_release_input(call *c)
{
	held_drop(c);
	grpcmsg_reader_free(&c->reader);
	call_pending_free(c);
	call_account(c);
	c->body_since = 0;
}

/* After DATA for c: its buffers against the connection's cap and the node's budget, and
 * the clock of a message that is only partly here. */
void call_received(h2_conn *h, call *c)
{
	const h2_server_opts *o = &h->e->s->o;
	int64_t now = h->io ? reactor_now(h->e->r) : 0;
	size_t before = c->recv_counted;
	h->progress_at = now;
	if (call_done(c)) {
		call_release_input(c);
		return;
	}
	call_account(c);
	if (h->recv_held > o->conn_buffer_bytes) {
		call_release_input(c);
		call_fail(c, GRPC_RESOURCE_EXHAUSTED,
			  "the connection's receive buffer limit was reached");
		return;
	}
	if (c->recv_counted > before && server_over_budget(h->e->s)) {
		/* Messages that arrive whole are never buffered, so small calls (health
		 * checks among them) go on while big ones are refused. */
		call_release_input(c);
		call_fail(
			c, GRPC_RESOURCE_EXHAUSTED,
			"the node's budget for buffered messages is spent (--max-buffered-bytes)");
		return;
	}
	/* A Connect body is partial until the request ends. */
	bool partial = c->wire == WIRE_GRPC ? grpcmsg_reader_partial(&c->reader) : !c->half_closed;
	if (!partial) {
		c->body_since = 0;
		return;
	}
	c->body_since = now;
	if (o->body_timeout && (!h->body_check_at || now + o->body_timeout < h->body_check_at)) {
		h->body_check_at = now + o->body_timeout;
		conn_schedule(h);
	}
}
