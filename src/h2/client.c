/* gRPC client side on nghttp2. */
#include "h2/client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/list.h"
#include "base/mem.h"
#include "h2/grpcmsg.h"
#include "h2/gzip.h"
#include "h2/metadata.h"
#include "h2/nvlist.h"
#include "h2/session.h"
#include "io/sock.h"
#include "io/tls.h"

typedef struct cconn cconn;

struct client_channel {
	reactor *r;
	struct sockaddr_storage addr;
	socklen_t addr_len;
	char authority[128];
	size_t max_message_bytes;
	nghttp2_session_callbacks *cbs;
	nghttp2_option *opt;
	list_node conns; /* every live connection; the first usable one takes new calls */
	bool detached;
	tls_ctx *tls; /* NULL: plaintext */
};

struct cconn {
	client_channel *ch;
	reactor_conn *io; /* NULL when detached */
	nghttp2_session *ng;
	list_node link; /* in ch->conns */
	list_node calls;
	bool goaway; /* the server said GOAWAY, or the connection failed: no new calls */
	int err;
};

struct client_call {
	cconn *conn;
	list_node link; /* in conn->calls */
	int32_t stream_id;
	const client_call_ops *ops;
	void *user;
	arena arena;
	timer deadline_timer;
	grpcmsg_reader reader;
	bool compress, resp_gzip, resp_encoding_unknown, last_compressed;
	bool half_close, done;
	/* Ended before the server could have run it: the connection never came up, or the
	 * server refused the stream (REFUSED_STREAM, or above a GOAWAY's last stream). */
	bool unprocessed;
	/* Flow control: would_block until the queue drains to half the high-water mark, then
	 * writable_due until on_writable ran. Response DATA held while paused (not yet given
	 * back to the window), and an end that waits behind it. */
	bool would_block, writable_due, paused, busy, end_due;
	bool trailers_only; /* the response was one header block ending the stream */
	buf held;
	int end_code;
	const char *end_msg;
	grpcmsg_queue out;
	md_list md[2]; /* [0] initial, [1] trailing */
	int http_status;
	bool have_status;
	int status;
	const char *status_msg;
};

/* Request bytes a call queues before client_call_send_would_block says so. */
#define CLIENT_SEND_HIGH_WATER (256 * 1024)

static void conn_want_send(cconn *h)
{
	if (h->io)
		reactor_conn_want_send(h->io);
}

static void call_free_mem(client_call *c)
{
	grpcmsg_reader_free(&c->reader);
	grpcmsg_queue_free(&c->out);
	buf_free(&c->held);
	arena_free(&c->arena);
	mem_free(c);
}

/* ---- finishing ---- */

static void call_end(client_call *c, int code, const char *msg)
{
	if (c->done)
		return;
	c->done = true;
	cconn *h = c->conn;
	list_remove(&c->link);
	if (c->stream_id > 0)
		nghttp2_session_set_stream_user_data(h->ng, c->stream_id, NULL);
	reactor_timer_disarm(h->ch->r, &c->deadline_timer);
	/* What it held was never read: the connection's window gets it back. */
	if (c->held.len && c->stream_id > 0)
		nghttp2_session_consume_connection(h->ng, c->held.len);
	if (c->ops->on_done)
		c->ops->on_done(c, code, msg);
	if (!c->busy) /* else deliver() frees it once it returns */
		call_free_mem(c);
}

/* Status for a response without grpc-status: the HTTP-to-gRPC mapping of the spec. */
static int status_from_http(int http)
{
	switch (http) {
	case 400:
		return GRPC_INTERNAL;
	case 401:
		return GRPC_UNAUTHENTICATED;
	case 403:
		return GRPC_PERMISSION_DENIED;
	case 404:
		return GRPC_UNIMPLEMENTED;
	case 429:
	case 502:
	case 503:
	case 504:
		return GRPC_UNAVAILABLE;
	default:
		return GRPC_UNKNOWN;
	}
}

static void fail_stream(client_call *c, int code, const char *msg)
{
	if (c->done)
		return;
	nghttp2_submit_rst_stream(c->conn->ng, NGHTTP2_FLAG_NONE, c->stream_id, NGHTTP2_CANCEL);
	conn_want_send(c->conn);
	call_end(c, code, msg);
}

/* ---- nghttp2 callbacks ---- */

static int on_header(nghttp2_session *ng, const nghttp2_frame *frame, const uint8_t *name,
		     size_t nlen, const uint8_t *value, size_t vlen, uint8_t flags, void *user)
{
	(void)flags;
	(void)user;
	if (frame->hd.type != NGHTTP2_HEADERS)
		return 0;
	client_call *c = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
	if (!c)
		return 0;
	bool trailing = frame->headers.cat == NGHTTP2_HCAT_HEADERS;
	if (nlen == 7 && !memcmp(name, ":status", 7)) {
		c->http_status = 0;
		for (size_t i = 0; i < vlen && i < 3; i++)
			c->http_status = c->http_status * 10 + (value[i] - '0');
	} else if (nlen == 11 && !memcmp(name, "grpc-status", 11)) {
		int code = 0;
		bool ok = vlen > 0 && vlen <= 3;
		for (size_t i = 0; ok && i < vlen; i++) {
			ok = value[i] >= '0' && value[i] <= '9';
			code = code * 10 + (value[i] - '0');
		}
		c->have_status = true;
		c->status = ok ? code : GRPC_UNKNOWN;
	} else if (nlen == 12 && !memcmp(name, "grpc-message", 12)) {
		buf b = {0};
		if (md_percent_decode(&b, value, vlen) == 0)
			c->status_msg = arena_strndup(&c->arena, b.data, b.len);
		buf_free(&b);
	} else if (nlen == 13 && !memcmp(name, "grpc-encoding", 13)) {
		c->resp_gzip = vlen == 4 && !memcmp(value, "gzip", 4);
		c->resp_encoding_unknown =
			!c->resp_gzip && !(vlen == 8 && !memcmp(value, "identity", 8));
	} else if (!md_is_reserved((const char *)name, nlen)) {
		/* A -bin value that is not base64 is dropped rather than failing the call. */
		if (md_list_add(&c->md[trailing], &c->arena, name, nlen, value, vlen) == -ENOMEM)
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	return 0;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *frame, void *user)
{
	cconn *h = user;
	if (frame->hd.type == NGHTTP2_GOAWAY) {
		h->goaway = true;
		return 0;
	}
	if (frame->hd.type != NGHTTP2_HEADERS)
		return 0;
	client_call *c = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
	if (!c || frame->headers.cat != NGHTTP2_HCAT_RESPONSE)
		return 0;
	c->trailers_only = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;
	if (c->ops->on_headers)
		c->ops->on_headers(c);
	return 0;
}

/* Reads response DATA into messages until it ends, the call ends or it is paused; returns
 * the bytes read. A call that ended meanwhile is not freed (c->done): the caller frees it. */
static size_t deliver(client_call *c, const uint8_t *data, size_t len)
{
	const uint8_t *start = data;
	c->busy = true;
	while (!c->done && !c->paused) {
		const uint8_t *msg;
		size_t msg_len;
		bool compressed;
		int rc = grpcmsg_reader_next(&c->reader, &data, &len, &msg, &msg_len, &compressed);
		if (rc == GRPCMSG_NEED_MORE)
			break;
		if (rc == GRPCMSG_TOO_LARGE) {
			fail_stream(c, GRPC_RESOURCE_EXHAUSTED,
				    "response message larger than the limit");
			break;
		}
		if (rc != GRPCMSG_MESSAGE) {
			fail_stream(c, GRPC_INTERNAL, "malformed response message");
			break;
		}
		c->last_compressed = compressed;
		if (!compressed) {
			if (c->ops->on_message)
				c->ops->on_message(c, msg, msg_len);
			continue;
		}
		if (!c->resp_gzip) {
			fail_stream(c, GRPC_INTERNAL,
				    "compressed response without a known grpc-encoding");
			break;
		}
		buf plain = {0};
		rc = gzip_decompress(&plain, msg, msg_len, c->conn->ch->max_message_bytes);
		const char *why;
		if (rc)
			fail_stream(c, gzip_failure_status(rc, &why), why);
		else if (c->ops->on_message)
			c->ops->on_message(c, plain.data, plain.len);
		buf_free(&plain);
	}
	c->busy = false;
	return (size_t)(data - start);
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t stream_id, const uint8_t *data,
			 size_t len, void *user)
{
	(void)flags;
	(void)user;
	client_call *c = nghttp2_session_get_stream_user_data(ng, stream_id);
	size_t used = !c || c->done ? len : c->held.len ? 0 : deliver(c, data, len);
	if (c && c->done) {
		call_free_mem(c);
		used = len;
	} else if (c && used < len && buf_append(&c->held, data + used, len - used)) {
		fail_stream(c, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		used = len;
	}
	nghttp2_session_consume(ng, stream_id, used);
	return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t stream_id, uint32_t error_code, void *user)
{
	(void)user;
	client_call *c = nghttp2_session_get_stream_user_data(ng, stream_id);
	if (!c)
		return 0;
	if (c->held.len) {
		/* Messages are still held (paused): the end comes after them. */
		c->end_due = true;
		c->end_code = c->have_status		       ? c->status
			      : error_code == NGHTTP2_NO_ERROR ? GRPC_INTERNAL
							       : GRPC_CANCELLED;
		c->end_msg = c->have_status		      ? c->status_msg
			     : error_code == NGHTTP2_NO_ERROR ? "response ended without grpc-status"
							      : "stream reset by the server";
		nghttp2_session_set_stream_user_data(ng, stream_id, NULL);
		return 0;
	}
	if (c->have_status)
		call_end(c, c->status, c->status_msg);
	else if (error_code == NGHTTP2_REFUSED_STREAM) {
		c->unprocessed = true;
		call_end(c, GRPC_UNAVAILABLE, "stream refused by the server");
	} else if (error_code != NGHTTP2_NO_ERROR)
		call_end(c, GRPC_CANCELLED, "stream reset by the server");
	else if (c->http_status && c->http_status != 200)
		call_end(c, status_from_http(c->http_status), "HTTP status without grpc-status");
	else
		call_end(c, GRPC_INTERNAL, "response ended without grpc-status");
	return 0;
}

/* ---- connections ---- */

static void conn_fail_calls(cconn *h, int code, const char *msg)
{
	/* An on_done that starts a new call must not be handed this dying connection. */
	h->goaway = true;
	while (!list_empty(&h->calls))
		call_end(container_of(h->calls.next, client_call, link), code, msg);
}

static void conn_destroy(cconn *h)
{
	conn_fail_calls(h, GRPC_UNAVAILABLE, "connection closed");
	list_remove(&h->link);
	nghttp2_session_del(h->ng);
	mem_free(h);
}

static int conn_recv(reactor_conn *io, const uint8_t *data, size_t len)
{
	cconn *h = reactor_conn_user(io);
	if (!h)
		return -ECONNRESET;
	ssize_t n = nghttp2_session_mem_recv(h->ng, data, len);
	reactor_conn_want_send(io);
	return n < 0 ? -EPROTO : 0;
}

/* Tells calls whose request output drained that they may send again. A callback may end
 * any call, so the scan starts over after each. */
static void run_writable(cconn *h)
{
	for (bool again = true; again;) {
		again = false;
		list_each (it, &h->calls) {
			client_call *c = container_of(it, client_call, link);
			if (!c->writable_due)
				continue;
			c->writable_due = false;
			if (c->ops->on_writable) {
				c->ops->on_writable(c);
				again = true;
				break;
			}
		}
	}
}

static void conn_produce(reactor_conn *io)
{
	cconn *h = reactor_conn_user(io);
	if (!h)
		return;
	/* Callers woken by drained output may queue more: give them a few rounds. */
	for (int round = 0; round < 4; round++) {
		if (session_pump(h->ng, io))
			return;
		bool due = false;
		list_each (it, &h->calls)
			due |= container_of(it, client_call, link)->writable_due;
		if (!due)
			break;
		run_writable(h);
	}
	session_after_pump(h->ng, io);
}

static void conn_connected(reactor_conn *io, int err)
{
	cconn *h = reactor_conn_user(io);
	if (!h || !err)
		return;
	char msg[160];
	snprintf(msg, sizeof(msg), "cannot connect to %s: %s", h->ch->authority, strerror(-err));
	h->goaway = true;
	list_each (n, &h->calls)
		container_of(n, client_call, link)->unprocessed = true;
	conn_fail_calls(h, GRPC_UNAVAILABLE, msg);
}

static void conn_closed(reactor_conn *io, int err)
{
	(void)err;
	cconn *h = reactor_conn_user(io);
	if (h)
		conn_destroy(h);
}

static const reactor_conn_ops cconn_ops = {
	.on_recv = conn_recv,
	.produce = conn_produce,
	.on_connect = conn_connected,
	.on_close = conn_closed,
};

static cconn *conn_new(client_channel *ch)
{
	cconn *h = mem_calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	h->ch = ch;
	list_init(&h->link);
	list_init(&h->calls);
	if (nghttp2_session_client_new3(&h->ng, ch->cbs, h, ch->opt, &session_mem)) {
		mem_free(h);
		return NULL;
	}
	nghttp2_settings_entry iv[] = {
		{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
		{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, SESSION_STREAM_WINDOW},
	};
	/* Both queue a frame, which the server must see: out of memory, no connection. */
	if (nghttp2_submit_settings(h->ng, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0])) ||
	    nghttp2_session_set_local_window_size(h->ng, NGHTTP2_FLAG_NONE, 0,
						  SESSION_CONN_WINDOW) ||
	    (!ch->detached && !(h->io = reactor_conn_connect(ch->r, (struct sockaddr *)&ch->addr,
							     ch->addr_len, &cconn_ops, h)))) {
		nghttp2_session_del(h->ng);
		mem_free(h);
		return NULL;
	}
	if (h->io && ch->tls) {
		tls_conn *t = tls_conn_new(ch->tls, NULL);
		if (!t || reactor_conn_set_tls(h->io, t, true)) {
			if (!t)
				reactor_conn_abort(h->io, -ENOMEM);
			else
				reactor_conn_abort(h->io, -EPROTO);
		}
	}
	if (h->io)
		reactor_conn_want_send(h->io);
	list_push_front(&ch->conns, &h->link);
	return h;
}

static cconn *usable_conn(client_channel *ch)
{
	list_each (it, &ch->conns) {
		cconn *h = container_of(it, cconn, link);
		if (!h->goaway && nghttp2_session_check_request_allowed(h->ng))
			return h;
	}
	return conn_new(ch);
}

static client_channel *channel_alloc(reactor *r, size_t max_message_bytes)
{
	client_channel *ch = mem_calloc(1, sizeof(*ch));
	if (!ch)
		return NULL;
	ch->r = r;
	list_init(&ch->conns);
	ch->max_message_bytes = max_message_bytes ? max_message_bytes : 4 * 1024 * 1024;
	if (nghttp2_session_callbacks_new(&ch->cbs)) {
		mem_free(ch);
		return NULL;
	}
	if (nghttp2_option_new(&ch->opt)) {
		nghttp2_session_callbacks_del(ch->cbs);
		mem_free(ch);
		return NULL;
	}
	/* Window updates are ours: a paused call (client_call_pause) stops its server. */
	nghttp2_option_set_no_auto_window_update(ch->opt, 1);
	nghttp2_session_callbacks_set_on_header_callback(ch->cbs, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(ch->cbs, on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(ch->cbs, on_data_chunk);
	nghttp2_session_callbacks_set_on_stream_close_callback(ch->cbs, on_stream_close);
	return ch;
}

client_channel *client_channel_new(reactor *r, const char *target, size_t max_message_bytes)
{
	return client_channel_new_tls(r, target, max_message_bytes, NULL);
}

client_channel *client_channel_new_tls(reactor *r, const char *target, size_t max_message_bytes,
				       tls_ctx *tls)
{
	struct sockaddr_storage ss;
	socklen_t len;
	if (sock_parse_addr(target, &ss, &len) ||
	    strlen(target) >= sizeof(((client_channel *)0)->authority))
		return NULL;
	client_channel *ch = channel_alloc(r, max_message_bytes);
	if (!ch)
		return NULL;
	ch->addr = ss;
	ch->addr_len = len;
	ch->tls = tls;
	snprintf(ch->authority, sizeof(ch->authority), "%s", target);
	return ch;
}

client_channel *client_channel_new_detached(reactor *r, size_t max_message_bytes)
{
	client_channel *ch = channel_alloc(r, max_message_bytes);
	if (ch) {
		ch->detached = true;
		snprintf(ch->authority, sizeof(ch->authority), "detached");
	}
	return ch;
}

void client_channel_free(client_channel *ch)
{
	if (!ch)
		return;
	while (!list_empty(&ch->conns)) {
		cconn *h = container_of(ch->conns.next, cconn, link);
		conn_fail_calls(h, GRPC_CANCELLED, "channel closed");
		if (h->io) {
			reactor_conn_set_user(h->io, NULL);
			reactor_conn_abort(h->io, -ECANCELED);
		}
		h->ch = NULL;
		list_remove(&h->link);
		nghttp2_session_del(h->ng);
		mem_free(h);
	}
	nghttp2_session_callbacks_del(ch->cbs);
	nghttp2_option_del(ch->opt);
	mem_free(ch);
}

int client_channel_feed(client_channel *ch, const uint8_t *data, size_t len)
{
	if (list_empty(&ch->conns))
		return -ENOTCONN;
	cconn *h = container_of(ch->conns.next, cconn, link);
	int rc = nghttp2_session_mem_recv(h->ng, data, len) < 0 ? -EPROTO : 0;
	if (session_drain_output(h->ng, NULL))
		rc = -EPROTO;
	return rc;
}

/* ---- calls ---- */

static ssize_t read_request(nghttp2_session *ng, int32_t stream_id, uint8_t *out, size_t length,
			    uint32_t *data_flags, nghttp2_data_source *src, void *user)
{
	(void)ng;
	(void)stream_id;
	(void)user;
	client_call *c = src->ptr;
	size_t n = grpcmsg_queue_pull(&c->out, out, length);
	if (c->would_block && grpcmsg_queue_pending(&c->out) < CLIENT_SEND_HIGH_WATER / 2) {
		c->would_block = false;
		c->writable_due = true; /* told after this send (conn_produce) */
	}
	if (grpcmsg_queue_pending(&c->out))
		return (ssize_t)n;
	if (c->half_close) {
		*data_flags |= NGHTTP2_DATA_FLAG_EOF;
		return (ssize_t)n;
	}
	return n ? (ssize_t)n : NGHTTP2_ERR_DEFERRED;
}

static void on_deadline(timer *t)
{
	client_call *c = container_of(t, client_call, deadline_timer);
	fail_stream(c, GRPC_DEADLINE_EXCEEDED, "deadline exceeded");
}

static int build_request(client_call *c, const client_call_args *a, nv_list *l)
{
	client_channel *ch = c->conn->ch;
	int rc = NV_LIST_LIT(l, ":method", "POST");
	rc = rc	       ? rc
	     : ch->tls ? NV_LIST_LIT(l, ":scheme", "https")
		       : NV_LIST_LIT(l, ":scheme", "http");
	/* nghttp2 keeps pointers to NO_COPY values until the frame is written: copies
	 * live in the call's arena. */
	const char *path = arena_strndup(&c->arena, a->path, strlen(a->path));
	rc = rc ? rc : path ? nv_list_push(l, ":path", 5, path, strlen(path)) : -ENOMEM;
	rc = rc ? rc : nv_list_push(l, ":authority", 10, ch->authority, strlen(ch->authority));
	rc = rc ? rc : NV_LIST_LIT(l, "content-type", "application/grpc");
	rc = rc ? rc : NV_LIST_LIT(l, "te", "trailers");
	rc = rc ? rc : NV_LIST_LIT(l, "user-agent", "collector-c/0.1");
	rc = rc ? rc : NV_LIST_LIT(l, "grpc-accept-encoding", "identity,gzip");
	if (!rc && a->compress)
		rc = NV_LIST_LIT(l, "grpc-encoding", "gzip");
	if (!rc && a->timeout_ns > 0) {
		char *timeout = arena_alloc(&c->arena, 10);
		rc = timeout ? nv_list_push(l, "grpc-timeout", 12, timeout,
					    md_timeout_format(a->timeout_ns, timeout))
			     : -ENOMEM;
	}
	for (size_t i = 0; !rc && i < a->nmd; i++)
		rc = nv_list_push_md(l, &c->arena, a->md[i].name, a->md[i].value,
				     a->md[i].value_len);
	return rc;
}

client_call *client_call_start(client_channel *ch, const client_call_args *a)
{
	if (!a->path || a->path[0] != '/' || !a->ops)
		return NULL;
	cconn *h = usable_conn(ch);
	if (!h)
		return NULL;
	client_call *c = mem_calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->conn = h;
	c->ops = a->ops;
	c->user = a->user;
	c->compress = a->compress;
	grpcmsg_reader_init(&c->reader, ch->max_message_bytes);
	nv_list l = {0};
	int rc = build_request(c, a, &l);
	/* The deadline first: a call that could not keep it is not started. */
	if (!rc && a->timeout_ns > 0) {
		int64_t t = a->timeout_ns < INT64_MAX / 2 ? a->timeout_ns : INT64_MAX / 2;
		rc = reactor_timer_arm(ch->r, &c->deadline_timer, reactor_now(ch->r) + t,
				       on_deadline);
	}
	if (!rc) {
		nghttp2_data_provider dp = {.source.ptr = c, .read_callback = read_request};
		c->stream_id = nghttp2_submit_request(h->ng, NULL, l.v, l.n, &dp, c);
	}
	nv_list_free(&l);
	if (rc || c->stream_id < 0) {
		reactor_timer_disarm(ch->r, &c->deadline_timer);
		grpcmsg_reader_free(&c->reader);
		arena_free(&c->arena);
		mem_free(c);
		return NULL;
	}
	list_push_front(&h->calls, &c->link);
	conn_want_send(h);
	return c;
}

int client_call_send(client_call *c, const uint8_t *data, size_t len)
{
	if (c->done || c->half_close)
		return -ECANCELED;
	if (len > c->conn->ch->max_message_bytes)
		return -EMSGSIZE;
	int rc = grpcmsg_queue_push(&c->out, data, len, c->compress);
	if (rc)
		return rc;
	nghttp2_session_resume_data(c->conn->ng, c->stream_id);
	conn_want_send(c->conn);
	return 0;
}

int client_call_send_pb(client_call *c, const ProtobufCMessage *msg)
{
	uint8_t stackbuf[1024], *p;
	size_t len;
	if (grpcmsg_pack(msg, stackbuf, sizeof(stackbuf), &p, &len))
		return -ENOMEM;
	int rc = client_call_send(c, p, len);
	if (p != stackbuf)
		mem_free(p);
	return rc;
}

bool client_call_send_would_block(client_call *c)
{
	if (grpcmsg_queue_pending(&c->out) > CLIENT_SEND_HIGH_WATER)
		c->would_block = true;
	return c->would_block;
}

void client_call_pause(client_call *c) { c->paused = true; }

void client_call_resume(client_call *c)
{
	if (!c->paused || c->done)
		return;
	c->paused = false;
	if (c->busy)
		return; /* inside deliver: its loop goes on */
	cconn *h = c->conn;
	if (c->held.len) {
		size_t used = deliver(c, c->held.data, c->held.len);
		if (c->done) {
			call_free_mem(c);
			return;
		}
		/* The stream may be closed (end_due): the connection's share still counts. */
		if (c->end_due)
			nghttp2_session_consume_connection(h->ng, used);
		else
			nghttp2_session_consume(h->ng, c->stream_id, used);
		memmove(c->held.data, c->held.data + used, c->held.len - used);
		c->held.len -= used;
		conn_want_send(h);
	}
	if (!c->held.len && c->end_due && !c->paused)
		call_end(c, c->end_code, c->end_msg);
}

void client_call_half_close(client_call *c)
{
	if (c->done || c->half_close)
		return;
	c->half_close = true;
	nghttp2_session_resume_data(c->conn->ng, c->stream_id);
	conn_want_send(c->conn);
}

void client_call_cancel(client_call *c)
{
	fail_stream(c, GRPC_CANCELLED, "cancelled by the client");
}
void *client_call_user(const client_call *c) { return c->user; }
size_t client_call_md_count(const client_call *c, bool trailing) { return c->md[trailing].n; }
const call_md *client_call_md_at(const client_call *c, bool trailing, size_t i)
{
	return i < c->md[trailing].n ? &c->md[trailing].v[i] : NULL;
}
const call_md *client_call_md_get(const client_call *c, bool trailing, const char *name)
{
	return md_list_get(&c->md[trailing], name);
}
bool client_call_response_compressed(const client_call *c) { return c->last_compressed; }
bool client_call_unprocessed(const client_call *c) { return c->unprocessed; }
bool client_call_trailers_only(const client_call *c) { return c->trailers_only; }
