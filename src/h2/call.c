/* The server's call object and the call API of call.h: its lifetime (created with its
 * stream, detached when the stream goes, freed with its last reference), accessors,
 * response metadata, sending and finishing. The request path is call_in.c; both share
 * server_int.h with the connections (server.c). */
#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/bufpool.h"
#include "base/container_of.h"
#include "base/mem.h"
#include "h2/call.h"
#include "h2/metadata.h"
#include "h2/metrics.h"
#include "h2/nvlist.h"
#include "h2/server_int.h"
#include "h2/session.h"
#include "io/tls.h"

void *call_alloc(call *c, size_t size) { return arena_alloc(&c->arena, size); }

/* ---- call lifetime ---- */

/* What a call's arena holds without another allocation: its request headers and the
 * like, for most calls. */
#define CALL_ARENA_INLINE 1024
#define CALL_HEAD ((sizeof(call) + 15) & ~(size_t)15)

call *call_new(h2_conn *h, int32_t stream_id)
{
	/* The call and its arena's first block are one block of the buffer pool: at
	 * thousands of calls in flight, glibc's small bins made two allocations per call a
	 * large part of the loop. */
	size_t cap;
	call *c = bufpool_get(CALL_HEAD + CALL_ARENA_INLINE, &cap);
	if (!c)
		return NULL;
	memset(c, 0, sizeof(*c));
	c->alloc_cap = cap;
	arena_init_on(&c->arena, (char *)c + CALL_HEAD, cap - CALL_HEAD, 0);
	c->refs = 1;
	c->conn = h;
	c->r = h->e->r;
	c->stream_id = stream_id;
	c->deadline = INT64_MAX;
	c->over_call_cap = conn_live_calls(h) >= h->e->s->o.max_calls_per_conn;
	grpcmsg_reader_init(&c->reader, h->e->s->o.max_message_bytes);
	list_push_front(&h->calls, &c->link);
	h->ncalls++;
	h->e->active_calls++;
	c->began = h->io ? reactor_now(c->r) : 0;
	metrics_stream_open(h->e->metrics);
	return c;
}

/* The call's end in the metrics, once: its status, or CANCELLED when its stream went
 * first. Plain answers (/healthz, /metrics) are no calls. */
static void call_count(call *c, h2_conn *h, int code)
{
	if (c->counted || c->wire == WIRE_PLAIN || !h)
		return;
	c->counted = true;
	int64_t now = h->io ? reactor_now(c->r) : 0;
	metrics_call_end(h->e->metrics, c->mrow, code, now - c->began);
}

/* A call ended on h: the connection may have become idle. */
static void conn_call_gone(h2_conn *h)
{
	if (conn_live_calls(h) == 0 && h->io) {
		h->idle_since = reactor_now(h->e->r);
		conn_schedule(h);
	}
}

static void call_free(call *c)
{
	h2_conn *z = c->zombie_of;
	if (z) {
		list_remove(&c->link);
		z->nzombies--;
		conn_call_gone(z);
	}
	grpcmsg_reader_free(&c->reader);
	call_pending_free(c);
	if (c->request && c->request_pool)
		decode_free_later(c->request_pool, c->request);
	else if (c->request)
		protobuf_c_message_free_unpacked(c->request, NULL);
	buf_free(&c->raw_request);
	buf_free(&c->held);
	buf_free(&c->body_in);
	buf_free(&c->resp_msg);
	buf_free(&c->body_out);
	grpcmsg_queue_free(&c->out);
	nv_list_free(&c->initial_md);
	nv_list_free(&c->trailing_md);
	arena_free(&c->arena);
	bufpool_put(c, c->alloc_cap);
}

void call_ref(call *c) { c->refs++; }

void call_unref(call *c)
{
	if (--c->refs == 0)
		call_free(c);
}

void call_detach(call *c)
{
	h2_conn *h = c->conn;
	if (!h)
		return;
	list_remove(&c->link);
	h->ncalls--;
	/* Until its handler lets go, the call still counts against the connection's cap:
	 * resetting streams must not let a peer start unbounded work (rapid reset). */
	list_push_front(&h->zombies, &c->link);
	h->nzombies++;
	c->zombie_of = h;
	call_release_input(c); /* held DATA goes back to the connection's window */
	if (c->decoding) {
		/* The job frees itself; its reference to the call goes below. */
		decode_cancel(c->decoding);
		c->decoding = NULL;
		c->pending_bytes -= c->decoding_len;
		c->refs--;
	}
	call_account(c);
	c->conn = NULL;
	conn_send_sub(h, grpcmsg_queue_pending(&c->out));
	h->e->active_calls--;
	metrics_stream_close(h->e->metrics);
	if (!c->finished)
		call_count(c, h, GRPC_CANCELLED);
	reactor_timer_disarm(c->r, &c->deadline_timer);
	connect_cancel(c);
	if (!c->finished && !c->cancelled) {
		c->cancelled = true;
		if (c->started && c->m->h.on_cancel)
			c->m->h.on_cancel(c);
	}
	call_unref(c);
}

/* ---- accessors ---- */

const method *call_method(const call *c) { return c->m; }
void *call_ctx(const call *c) { return c->m ? c->m->ctx : NULL; }
void call_set_user(call *c, void *user) { c->user = user; }
void *call_user(const call *c) { return c->user; }
void call_set_auth(call *c, void *auth) { c->auth = auth; }
void *call_auth(const call *c) { return c->auth; }

void *call_conn_memo(const call *c) { return c->conn ? c->conn->auth_memo : NULL; }

void call_set_conn_memo(call *c, void *memo, void (*free_fn)(void *))
{
	h2_conn *h = c->conn;
	if (!h) {
		free_fn(memo);
		return;
	}
	if (h->auth_memo)
		h->auth_memo_free(h->auth_memo);
	h->auth_memo = memo;
	h->auth_memo_free = free_fn;
}
reactor *call_reactor(const call *c) { return c->r; }
size_t call_md_count(const call *c) { return c->md.n; }
const call_md *call_md_at(const call *c, size_t i) { return i < c->md.n ? &c->md.v[i] : NULL; }
int64_t call_deadline(const call *c) { return c->deadline; }
bool call_request_compressed(const call *c) { return c->last_compressed; }
const char *call_path(const call *c, size_t *len)
{
	*len = c->path_len;
	return c->path ? c->path : "";
}
const char *call_peer(const call *c) { return c->conn ? c->conn->peer : ""; }

const char *call_peer_subject(const call *c)
{
	tls_conn *t = c->conn && c->conn->io ? reactor_conn_tls(c->conn->io) : NULL;
	return t ? tls_conn_peer_subject(t) : "";
}
bool call_done(const call *c) { return c->finished || c->cancelled || !c->conn; }
bool call_cancelled(const call *c) { return c->cancelled; }

const call_md *call_md_get(const call *c, const char *name) { return md_list_get(&c->md, name); }

void call_set_response_compression(call *c, bool on) { c->compress_response = on; }

/* ---- response headers ---- */

int call_add_initial_md(call *c, const char *name, const void *value, size_t len)
{
	if (c->headers_submitted || call_done(c))
		return -EALREADY;
	return nv_list_push_md(&c->initial_md, &c->arena, name, value, len);
}

int call_add_trailing_md(call *c, const char *name, const void *value, size_t len)
{
	if (call_done(c))
		return -EALREADY;
	return nv_list_push_md(&c->trailing_md, &c->arena, name, value, len);
}

static bool response_gzip(const call *c) { return c->compress_response && c->accept_gzip; }

/* :status 200 and the gRPC response headers, then the handler's initial metadata. */
static int build_headers(call *c, nv_list *l)
{
	int rc = NV_LIST_LIT(l, ":status", "200");
	rc = rc ? rc : NV_LIST_LIT(l, "content-type", "application/grpc");
	if (!rc && response_gzip(c))
		rc = NV_LIST_LIT(l, "grpc-encoding", "gzip");
	rc = rc ? rc : NV_LIST_LIT(l, "grpc-accept-encoding", "identity,gzip");
	for (size_t i = 0; !rc && i < c->initial_md.n; i++)
		rc = nv_list_push(l, (char *)c->initial_md.v[i].name, c->initial_md.v[i].namelen,
				  (char *)c->initial_md.v[i].value, c->initial_md.v[i].valuelen);
	return rc;
}

static int build_trailers(call *c, nv_list *l)
{
	char *code = call_alloc(c, 12);
	if (!code)
		return -ENOMEM;
	int n = snprintf(code, 12, "%d", c->status);
	int rc = nv_list_push(l, "grpc-status", 11, code, (size_t)n);
	if (!rc && c->status_msg && *c->status_msg) {
		buf b = {0};
		rc = md_percent_encode(&b, (const uint8_t *)c->status_msg, strlen(c->status_msg));
		char *msg = rc ? NULL : arena_strndup(&c->arena, b.data, b.len);
		rc = msg ? nv_list_push(l, "grpc-message", 12, msg, b.len) : -ENOMEM;
		buf_free(&b);
	}
	for (size_t i = 0; !rc && i < c->trailing_md.n; i++)
		rc = nv_list_push(l, (char *)c->trailing_md.v[i].name, c->trailing_md.v[i].namelen,
				  (char *)c->trailing_md.v[i].value, c->trailing_md.v[i].valuelen);
	return rc;
}

static void queue_writable(call *c)
{
	if (c->on_writable_list || !c->conn)
		return;
	c->on_writable_list = true;
	call_ref(c);
	c->writable_next = c->conn->writable;
	c->conn->writable = c;
}

/* After DATA bytes left the stream's queue: the connection's send accounting, and calls
 * that waited for room are told they may send again. */
static void sent_from_queue(call *c, size_t n)
{
	h2_conn *h = c->conn;
	conn_send_sub(h, n);
	if (n)
		h->progress_at = reactor_now(h->e->r);
	if (h->send_blocked && h->send_queued < h->e->s->o.conn_buffer_bytes / 2) {
		h->send_blocked = false;
		list_each (it, &h->calls) {
			call *o = container_of(it, call, link);
			if (!o->would_block)
				queue_writable(o); /* c too: it may wait on the connection alone */
		}
	}
	if (c->would_block &&
	    grpcmsg_queue_pending(&c->out) < c->conn->e->s->o.stream_send_high_water / 2) {
		c->would_block = false;
		queue_writable(c);
	}
}

/* nghttp2 asks how much response DATA goes in the next frame; the bytes themselves go
 * from the queue to the connection's output in call_send_data (NO_COPY), not through a
 * copy in nghttp2's frame buffer. Trailers go out when the queue is drained. */
static ssize_t read_response(nghttp2_session *ng, int32_t stream_id, uint8_t *out, size_t length,
			     uint32_t *data_flags, nghttp2_data_source *src, void *user)
{
	(void)user;
	(void)out;
	call *c = src->ptr;
	size_t pending = grpcmsg_queue_pending(&c->out);
	size_t n = pending < length ? pending : length;
	if (n)
		*data_flags |= NGHTTP2_DATA_FLAG_NO_COPY;
	if (pending > n)
		return (ssize_t)n;
	if (!c->finished)
		return n ? (ssize_t)n : NGHTTP2_ERR_DEFERRED;
	*data_flags |= NGHTTP2_DATA_FLAG_EOF;
	nv_list t = {0};
	if (build_trailers(c, &t) == 0 && t.n) {
		*data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
		if (nghttp2_submit_trailer(ng, stream_id, t.v, t.n) != 0)
			*data_flags &= ~NGHTTP2_DATA_FLAG_NO_END_STREAM;
	}
	nv_list_free(&t);
	return (ssize_t)n;
}

int call_send_data(nghttp2_session *ng, nghttp2_frame *frame, const uint8_t *framehd, size_t length,
		   nghttp2_data_source *src, void *user)
{
	(void)ng;
	(void)user;
	call *c = src->ptr;
	/* No padding is ever asked for (no select_padding callback): the frame is its
	 * 9-byte header and the payload. */
	if (frame->data.padlen || length > grpcmsg_queue_pending(&c->out) ||
	    conn_out(c->conn, framehd, 9) || conn_out(c->conn, grpcmsg_queue_head(&c->out), length))
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	grpcmsg_queue_skip(&c->out, length);
	sent_from_queue(c, length);
	return 0;
}

static int submit_headers(call *c, bool with_body)
{
	nv_list l = {0};
	int rc = build_headers(c, &l);
	if (!rc && !with_body)
		rc = build_trailers(c, &l);
	if (!rc) {
		nghttp2_data_provider dp = {.source.ptr = c, .read_callback = read_response};
		rc = nghttp2_submit_response(c->conn->ng, c->stream_id, l.v, l.n,
					     with_body ? &dp : NULL);
	}
	nv_list_free(&l);
	c->headers_submitted = true;
	conn_want_send(c->conn);
	return rc;
}

/* ---- sending ---- */

static void send_status(call *c, int code, const char *message);

/* Queues one message: data (len bytes), or msg packed straight into the queue when the
 * caller already knows that is possible (plain gRPC, no compression). */
static int queue_message(call *c, const uint8_t *data, const ProtobufCMessage *msg, size_t len)
{
	h2_conn *h = c->conn;
	if (grpcweb_is(c)) {
		int rc = grpcweb_queue(c, data, len);
		if (rc != -ENOBUFS)
			return rc;
		send_status(c, GRPC_RESOURCE_EXHAUSTED,
			    "gRPC-Web response larger than the node buffers for one call");
		return -ECANCELED;
	}
	if (c->wire != WIRE_GRPC)
		return connect_queue(c, data, len);
	const h2_server_opts *o = &h->e->s->o;
	if (len > o->max_message_bytes)
		return -EMSGSIZE;
	/* Handlers should stop at would_block; one that does not is cut off here, so that
	 * a peer that never reads cannot make us buffer without bound. The handler learns
	 * it from -ECANCELED, not from a re-entrant on_cancel in the middle of its send. */
	size_t before = grpcmsg_queue_pending(&c->out);
	if (before + len > o->stream_send_high_water + o->max_message_bytes ||
	    h->send_queued + len > 2 * o->conn_buffer_bytes) {
		send_status(c, GRPC_RESOURCE_EXHAUSTED,
			    "send buffer limit reached: the client is not reading");
		return -ECANCELED;
	}
	int rc = msg ? grpcmsg_queue_push_packed(&c->out, msg, len)
		     : grpcmsg_queue_push(&c->out, data, len, response_gzip(c));
	if (rc)
		return rc;
	conn_send_add(h, grpcmsg_queue_pending(&c->out) - before);
	if (h->send_queued > o->conn_buffer_bytes)
		h->send_blocked = true;
	if (!c->headers_submitted) {
		if (submit_headers(c, true))
			return -ENOMEM;
	} else {
		nghttp2_session_resume_data(c->conn->ng, c->stream_id);
		conn_want_send(c->conn);
	}
	if (grpcmsg_queue_pending(&c->out) > c->conn->e->s->o.stream_send_high_water)
		c->would_block = true;
	return 0;
}

int call_send_raw(call *c, const uint8_t *data, size_t len)
{
	if (call_done(c))
		return -ECANCELED;
	return queue_message(c, data, NULL, len);
}

int call_send(call *c, const ProtobufCMessage *msg)
{
	if (call_done(c))
		return -ECANCELED;
	size_t len = protobuf_c_message_get_packed_size(msg);
	if (len > c->conn->e->s->o.max_message_bytes)
		return -EMSGSIZE;
	if (c->wire == WIRE_GRPC && !response_gzip(c))
		return queue_message(c, NULL, msg, len);
	uint8_t stackbuf[1024], *p;
	if (grpcmsg_pack(msg, stackbuf, sizeof(stackbuf), &p, &len))
		return -ENOMEM;
	int rc = queue_message(c, p, NULL, len);
	if (p != stackbuf)
		mem_free(p);
	return rc;
}

bool call_send_would_block(const call *c)
{
	return c->would_block || (c->conn && c->conn->send_blocked);
}

/* Sends the status whatever the handler state (used for errors found by this layer). */
static void send_status(call *c, int code, const char *message)
{
	c->finished = true;
	c->status = code;
	c->status_msg = message ? arena_strndup(&c->arena, message, strlen(message)) : NULL;
	reactor_timer_disarm(c->r, &c->deadline_timer);
	if (!c->conn)
		return;
	call_count(c, c->conn, code);
	if (c->wire != WIRE_GRPC) {
		/* Connect: the status is the HTTP status; the response goes whole. */
		if (grpcweb_is(c)) {
			grpcweb_finish(c);
		} else if (c->wire != WIRE_PLAIN) {
			connect_finish(c);
		} else {
			c->resp_ready = true;
			connect_respond(c);
		}
		return;
	}
	if (!c->headers_submitted) {
		/* Trailers-Only when nothing was sent; otherwise headers + queued body. */
		submit_headers(c, grpcmsg_queue_pending(&c->out) > 0);
		return;
	}
	nghttp2_session_resume_data(c->conn->ng, c->stream_id);
	conn_want_send(c->conn);
}

void call_finish(call *c, int code, const char *message)
{
	if (call_done(c))
		return;
	send_status(c, code, message);
}

void call_finishf(call *c, int code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	call_finish(c, code, msg);
}

/* The end of a call whose response was queued with outcome rc. */
static void finish_reply(call *c, int rc)
{
	if (rc == -EMSGSIZE)
		call_finish(c, GRPC_RESOURCE_EXHAUSTED,
			    "response larger than the message size limit");
	else if (rc == -ENOMEM)
		call_finish(c, GRPC_RESOURCE_EXHAUSTED, "out of memory");
	else if (rc && rc != -ECANCELED)
		call_finish(c, GRPC_INTERNAL, "could not queue the response");
	else
		call_finish(c, GRPC_OK, NULL);
}

void call_reply(call *c, const ProtobufCMessage *resp) { finish_reply(c, call_send(c, resp)); }

void call_reply_raw(call *c, const uint8_t *data, size_t len)
{
	finish_reply(c, call_send_raw(c, data, len));
}

void call_fail(call *c, int code, const char *message)
{
	if (call_done(c))
		return;
	bool notify = c->started;
	send_status(c, code, message);
	if (notify && c->m && c->m->h.on_cancel) {
		c->cancelled = true;
		c->m->h.on_cancel(c);
	}
}
