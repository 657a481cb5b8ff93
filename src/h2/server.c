/* gRPC server side on nghttp2: connection sessions, request parsing, the call object. */
#include "h2/server.h"

#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/pbdecode.h"
#include "h2/admit.h"
#include "h2/buf.h"
#include "h2/call.h"
#include "h2/compress.h"
#include "h2/decode.h"
#include "h2/frame.h"
#include "h2/guard.h"
#include "h2/metadata.h"
#include "h2/session.h"
#include "io/clock.h"
#include "io/log.h"
#include "io/sock.h"

struct h2_server {
	const method_table *methods;
	h2_server_opts o;
	nghttp2_session_callbacks *cbs;
	nghttp2_option *opt;
	admit *admit;
	h2_call_gate gate;
	void *gate_ctx;
	pool *pool; /* decodes large and compressed requests; NULL: all on the reactor */
	_Atomic size_t held; /* message bytes buffered by every connection (o.max_buffered_bytes) */
};

struct h2_endpoint {
	h2_server *s;
	reactor *r;
	h2_conn *conns;
	size_t nconns;
	size_t active_calls;
	bool goaway;
	size_t held;	    /* this endpoint's share of s->held */
	timer budget_timer; /* sheds connections while the node is over its budget */
};

struct h2_conn {
	h2_endpoint *e;
	io_conn *io; /* NULL for a detached (fuzzing) connection */
	nghttp2_session *ng;
	h2_conn *prev, *next;
	call *calls; /* streams with a call attached */
	call *zombies; /* calls whose stream is gone but whose handler still holds them */
	size_t ncalls, nzombies;
	call *writable; /* calls to tell on_writable after this send */
	char peer[64];
	struct sockaddr_storage peer_addr;
	bool admitted; /* counted by the server's admit table */
	bool goaway_sent;
	bool closing; /* GOAWAY for misbehaviour or a timeout: input ignored, close once sent */
	bool broken;

	/* guards (guard.h) */
	frame_scan scan;
	rate_limit flood;
	ping_policy pings;
	size_t recv_held;  /* bytes of request messages its calls buffer (call_held) */
	size_t send_queued; /* response bytes queued by its calls, not yet taken by nghttp2 */
	int64_t progress_at; /* a request message's bytes arrived or response bytes left */
	int64_t body_check_at; /* a partial message may have stalled by then (0: none) */
	bool send_blocked;  /* over conn_buffer_bytes: calls were told to wait */

	/* times (reactor clock) */
	timer tick;
	int64_t accepted_at, last_recv, idle_since, header_block_since;
	int64_t ping_sent_at; /* our keepalive PING in flight, 0 if none */
	int64_t closing_at;
	bool got_settings, settings_acked;
	uint64_t sent_mark; /* io bytes sent at the last progress check */
	int64_t stall_since; /* output waiting without progress since, 0 if none */
};

struct call {
	int refs;
	h2_conn *conn; /* NULL once the stream is gone */
	h2_conn *zombie_of; /* the stream is gone, this connection still counts the call */
	call *prev, *next; /* in conn->calls, then in zombie_of->zombies */
	int32_t stream_id;
	const method *m;
	reactor *r;
	arena arena;
	void *user;

	/* request headers */
	const char *path;
	size_t path_len;
	bool is_post, grpc_content_type, te_trailers, headers_too_large, bad_metadata;
	bool over_call_cap;
	size_t header_bytes;
	md_list md;
	int64_t deadline;
	timer deadline_timer;
	enum { ENC_IDENTITY, ENC_GZIP, ENC_OTHER } req_encoding;
	const char *req_encoding_name;
	bool accept_gzip;

	/* request messages */
	deframer df;
	size_t recv_counted; /* call_held as last counted in conn->recv_held */
	int64_t body_since;  /* a partial message last grew then (0: none) */
	bool last_compressed;
	bool have_request;
	decode_job *decoding; /* a request message on the pool, NULL if none */
	pool *request_pool;   /* request was decoded there: it is freed there too */
	size_t decoding_len;
	struct pending_msg *pending, **pending_tail; /* arrived while one was decoding */
	size_t pending_bytes;
	bool half_close_waits; /* half-closed while messages were still decoding */
	ProtobufCMessage *request;
	buf raw_request;
	bool half_closed;

	/* response */
	bool started, finished, cancelled;
	bool headers_submitted, compress_response;
	bool would_block;
	call *writable_next;
	bool on_writable_list;
	nv_list initial_md, trailing_md;
	msg_queue out;
	int status;
	const char *status_msg;
};

/* A sixteenth of the machine's memory, within 64 MiB .. 1 GiB. */
static size_t h2_default_buffer_budget(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
	size_t ram = pages > 0 && page > 0 ? (size_t)pages * (size_t)page : 0;
	size_t b = ram / 16, lo = (size_t)64 << 20, hi = (size_t)1 << 30;
	return b < lo ? lo : b > hi ? hi : b;
}

void h2_server_opts_default(h2_server_opts *o)
{
	o->max_message_bytes = 4 * 1024 * 1024;
	o->max_concurrent_streams = 100;
	o->max_header_list_bytes = 16 * 1024;
	o->stream_send_high_water = 256 * 1024;
	o->conn_buffer_bytes = 16 * 1024 * 1024;
	o->max_buffered_bytes = h2_default_buffer_budget();
	o->body_timeout = 30 * NS_PER_SEC;
	o->max_calls_per_conn = 200;
	o->max_conns = 10000;
	o->max_conns_per_peer = 100;
	o->reset_burst = 1000;
	o->reset_rate = 33;
	o->max_continuations = 8;
	o->flood_burst = 1000;
	o->flood_rate = 100;
	o->handshake_timeout = 10 * NS_PER_SEC;
	o->header_timeout = 10 * NS_PER_SEC;
	o->idle_timeout = 300 * NS_PER_SEC;
	o->keepalive_time = 7200 * NS_PER_SEC;
	o->keepalive_timeout = 20 * NS_PER_SEC;
	o->ping_min_interval = 300 * NS_PER_SEC;
	o->ping_max_strikes = 2;
	o->send_stall_timeout = 30 * NS_PER_SEC;
	o->require_te_trailers = true;
}

void *call_alloc(call *c, size_t size) { return arena_alloc(&c->arena, size); }

/* ---- call lifetime ---- */

static void conn_want_send(h2_conn *h)
{
	if (h->io)
		io_conn_want_send(h->io);
}

static void conn_schedule(h2_conn *h);
static void conn_tick(timer *t);

static size_t conn_live_calls(const h2_conn *h) { return h->ncalls + h->nzombies; }

/* ---- memory held for messages: per connection, per endpoint, node-wide ---- */

/* While an endpoint holds message bytes, it looks this often whether the node is over its
 * budget (a reactor whose connections stall silently would otherwise never look). */
#define BUDGET_CHECK (100 * NS_PER_MS)

static void budget_tick(timer *t);

static bool over_budget(const h2_server *s)
{
	return s->o.max_buffered_bytes &&
	       atomic_load_explicit(&s->held, memory_order_relaxed) > s->o.max_buffered_bytes;
}

static void budget_watch(h2_endpoint *e)
{
	if (!e->s->o.max_buffered_bytes)
		return;
	int64_t at = reactor_now(e->r) + (over_budget(e->s) ? 0 : BUDGET_CHECK);
	if (!timer_armed(&e->budget_timer) || at < e->budget_timer.deadline_ns)
		reactor_timer_arm(e->r, &e->budget_timer, at, budget_tick);
}

static void held_add(h2_conn *h, size_t n)
{
	h->e->held += n;
	atomic_fetch_add_explicit(&h->e->s->held, n, memory_order_relaxed);
	budget_watch(h->e);
}

static void held_sub(h2_conn *h, size_t n)
{
	h->e->held -= n;
	atomic_fetch_sub_explicit(&h->e->s->held, n, memory_order_relaxed);
}

static void send_add(h2_conn *h, size_t n)
{
	h->send_queued += n;
	held_add(h, n);
}

static void send_sub(h2_conn *h, size_t n)
{
	h->send_queued -= n;
	held_sub(h, n);
}

/* A message that arrived while an earlier one of its call was still being decoded. */
typedef struct pending_msg {
	struct pending_msg *next;
	size_t len;
	bool compressed;
	uint8_t data[];
} pending_msg;

/* Bytes of request messages c holds: a partial message, messages waiting for decoding. */
static size_t call_held(const call *c) { return deframer_held(&c->df) + c->pending_bytes; }

/* Brings c's share of its connection's and the node's counts up to date. */
static void call_account(call *c)
{
	h2_conn *h = c->conn;
	if (!h)
		return;
	size_t now = call_held(c);
	if (now > c->recv_counted) {
		h->recv_held += now - c->recv_counted;
		held_add(h, now - c->recv_counted);
	} else {
		h->recv_held -= c->recv_counted - now;
		held_sub(h, c->recv_counted - now);
	}
	c->recv_counted = now;
}

static void pending_free(call *c)
{
	while (c->pending) {
		pending_msg *pm = c->pending;
		c->pending = pm->next;
		c->pending_bytes -= pm->len;
		free(pm);
	}
	c->pending_tail = NULL;
}

/* Drops what c holds of request messages (the call is being ended). */
static void call_release_input(call *c)
{
	deframer_free(&c->df);
	pending_free(c);
	call_account(c);
	c->body_since = 0;
}

static void list_unlink(call **head, call *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		*head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
}

static void list_push(call **head, call *c)
{
	c->prev = NULL;
	c->next = *head;
	if (*head)
		(*head)->prev = c;
	*head = c;
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
		list_unlink(&z->zombies, c);
		z->nzombies--;
		conn_call_gone(z);
	}
	deframer_free(&c->df);
	pending_free(c);
	if (c->request && c->request_pool)
		decode_free_later(c->request_pool, c->request);
	else if (c->request)
		protobuf_c_message_free_unpacked(c->request, NULL);
	buf_free(&c->raw_request);
	msg_queue_free(&c->out);
	nv_list_free(&c->initial_md);
	nv_list_free(&c->trailing_md);
	arena_free(&c->arena);
	free(c);
}

void call_ref(call *c) { c->refs++; }

void call_unref(call *c)
{
	if (--c->refs == 0)
		call_free(c);
}

/* The stream is gone (closed, reset, or its connection died). */
static void call_detach(call *c)
{
	h2_conn *h = c->conn;
	if (!h)
		return;
	list_unlink(&h->calls, c);
	h->ncalls--;
	/* Until its handler lets go, the call still counts against the connection's cap:
	 * resetting streams must not let a peer start unbounded work (rapid reset). */
	list_push(&h->zombies, c);
	h->nzombies++;
	c->zombie_of = h;
	deframer_free(&c->df);
	pending_free(c);
	if (c->decoding) {
		/* The job frees itself; its reference to the call goes below. */
		decode_cancel(c->decoding);
		c->decoding = NULL;
		c->pending_bytes -= c->decoding_len;
		c->refs--;
	}
	call_account(c);
	c->conn = NULL;
	send_sub(h, msg_queue_pending(&c->out));
	h->e->active_calls--;
	reactor_timer_disarm(c->r, &c->deadline_timer);
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
reactor *call_reactor(const call *c) { return c->r; }
size_t call_md_count(const call *c) { return c->md.n; }
const call_md *call_md_at(const call *c, size_t i) { return i < c->md.n ? &c->md.v[i] : NULL; }
int64_t call_deadline(const call *c) { return c->deadline; }
bool call_request_compressed(const call *c) { return c->last_compressed; }
const char *call_peer(const call *c) { return c->conn ? c->conn->peer : ""; }
bool call_done(const call *c) { return c->finished || c->cancelled || !c->conn; }
bool call_cancelled(const call *c) { return c->cancelled; }

const call_md *call_md_get(const call *c, const char *name) { return md_list_get(&c->md, name); }

void call_set_response_compression(call *c, bool on) { c->compress_response = on; }

/* ---- response headers ---- */

int call_add_initial_md(call *c, const char *name, const void *value, size_t len)
{
	if (c->headers_submitted || call_done(c))
		return -EALREADY;
	return nv_push_md(&c->initial_md, &c->arena, name, value, len);
}

int call_add_trailing_md(call *c, const char *name, const void *value, size_t len)
{
	if (call_done(c))
		return -EALREADY;
	return nv_push_md(&c->trailing_md, &c->arena, name, value, len);
}

static bool response_gzip(const call *c) { return c->compress_response && c->accept_gzip; }

/* :status 200 and the gRPC response headers, then the handler's initial metadata. */
static int build_headers(call *c, nv_list *l)
{
	int rc = NV_LIT(l, ":status", "200");
	rc = rc ? rc : NV_LIT(l, "content-type", "application/grpc");
	if (!rc && response_gzip(c))
		rc = NV_LIT(l, "grpc-encoding", "gzip");
	rc = rc ? rc : NV_LIT(l, "grpc-accept-encoding", "identity,gzip");
	for (size_t i = 0; !rc && i < c->initial_md.n; i++)
		rc = nv_push(l, (char *)c->initial_md.v[i].name, c->initial_md.v[i].namelen,
			     (char *)c->initial_md.v[i].value, c->initial_md.v[i].valuelen);
	return rc;
}

static int build_trailers(call *c, nv_list *l)
{
	char *code = call_alloc(c, 12);
	if (!code)
		return -ENOMEM;
	int n = snprintf(code, 12, "%d", c->status);
	int rc = nv_push(l, "grpc-status", 11, code, (size_t)n);
	if (!rc && c->status_msg && *c->status_msg) {
		buf b = {0};
		rc = md_percent_encode(&b, (const uint8_t *)c->status_msg, strlen(c->status_msg));
		char *msg = rc ? NULL : arena_strndup(&c->arena, b.data, b.len);
		rc = msg ? nv_push(l, "grpc-message", 12, msg, b.len) : -ENOMEM;
		buf_free(&b);
	}
	for (size_t i = 0; !rc && i < c->trailing_md.n; i++)
		rc = nv_push(l, (char *)c->trailing_md.v[i].name, c->trailing_md.v[i].namelen,
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

/* nghttp2 pulls response DATA from here; trailers go out when the queue is drained. */
static ssize_t read_response(nghttp2_session *ng, int32_t stream_id, uint8_t *out,
			     size_t length, uint32_t *data_flags, nghttp2_data_source *src,
			     void *user)
{
	(void)user;
	call *c = src->ptr;
	h2_conn *h = c->conn;
	size_t n = msg_queue_pull(&c->out, out, length);
	send_sub(h, n);
	if (n)
		h->progress_at = reactor_now(h->e->r);
	if (h->send_blocked && h->send_queued < h->e->s->o.conn_buffer_bytes / 2) {
		h->send_blocked = false;
		for (call *o = h->calls; o; o = o->next)
			if (!o->would_block)
				queue_writable(o); /* c too: it may wait on the connection alone */
	}
	if (c->would_block &&
	    msg_queue_pending(&c->out) < c->conn->e->s->o.stream_send_high_water / 2) {
		c->would_block = false;
		queue_writable(c);
	}
	if (msg_queue_pending(&c->out))
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

static int queue_message(call *c, const uint8_t *data, size_t len)
{
	h2_conn *h = c->conn;
	const h2_server_opts *o = &h->e->s->o;
	if (len > o->max_message_bytes)
		return -EMSGSIZE;
	/* Handlers should stop at would_block; one that does not is cut off here, so that
	 * a peer that never reads cannot make us buffer without bound. The handler learns
	 * it from -ECANCELED, not from a re-entrant on_cancel in the middle of its send. */
	size_t before = msg_queue_pending(&c->out);
	if (before + len > o->stream_send_high_water + o->max_message_bytes ||
	    h->send_queued + len > 2 * o->conn_buffer_bytes) {
		send_status(c, GRPC_RESOURCE_EXHAUSTED,
			    "send buffer limit reached: the client is not reading");
		return -ECANCELED;
	}
	int rc = msg_queue_push(&c->out, data, len, response_gzip(c));
	if (rc)
		return rc;
	send_add(h, msg_queue_pending(&c->out) - before);
	if (h->send_queued > o->conn_buffer_bytes)
		h->send_blocked = true;
	if (!c->headers_submitted) {
		if (submit_headers(c, true))
			return -ENOMEM;
	} else {
		nghttp2_session_resume_data(c->conn->ng, c->stream_id);
		conn_want_send(c->conn);
	}
	if (msg_queue_pending(&c->out) > c->conn->e->s->o.stream_send_high_water)
		c->would_block = true;
	return 0;
}

int call_send_raw(call *c, const uint8_t *data, size_t len)
{
	if (call_done(c))
		return -ECANCELED;
	return queue_message(c, data, len);
}

int call_send(call *c, const ProtobufCMessage *msg)
{
	if (call_done(c))
		return -ECANCELED;
	uint8_t stackbuf[1024], *p;
	size_t len;
	if (protobuf_c_message_get_packed_size(msg) > c->conn->e->s->o.max_message_bytes)
		return -EMSGSIZE;
	if (pack_message(msg, stackbuf, sizeof(stackbuf), &p, &len))
		return -ENOMEM;
	int rc = queue_message(c, p, len);
	if (p != stackbuf)
		free(p);
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
	if (!c->headers_submitted) {
		/* Trailers-Only when nothing was sent; otherwise headers + queued body. */
		submit_headers(c, msg_queue_pending(&c->out) > 0);
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

void call_reply(call *c, const ProtobufCMessage *resp)
{
	int rc = call_send(c, resp);
	if (rc == -EMSGSIZE)
		call_finish(c, GRPC_RESOURCE_EXHAUSTED, "response larger than the message size limit");
	else if (rc && rc != -ECANCELED)
		call_finish(c, GRPC_INTERNAL, "could not queue the response");
	else
		call_finish(c, GRPC_OK, NULL);
}

/* An error found by this layer: the handler is told the call is over. */
static void fail_call(call *c, int code, const char *message)
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

/* ---- request path ---- */

static void on_deadline(timer *t)
{
	call *c = (call *)((char *)t - offsetof(call, deadline_timer));
	fail_call(c, GRPC_DEADLINE_EXCEEDED, "deadline exceeded");
}

static bool kind_single_request(call_kind k) { return k == CALL_UNARY || k == CALL_SERVER_STREAM; }

/* A decoded request: the unary request, or one message of a stream (freed here). One
 * that was decoded on pool p is freed there too. */
static void deliver_decoded(call *c, ProtobufCMessage *msg, pool *p)
{
	const method *m = c->m;
	if (kind_single_request(m->kind)) {
		c->request = msg;
		c->request_pool = p;
		return;
	}
	call_ref(c);
	if (m->h.on_message)
		m->h.on_message(c, msg);
	if (p)
		decode_free_later(p, msg);
	else
		protobuf_c_message_free_unpacked(msg, NULL);
	call_unref(c);
}

/* A plain message for a method that takes raw bytes. */
static void deliver_raw(call *c, const uint8_t *data, size_t len)
{
	const method *m = c->m;
	if (kind_single_request(m->kind)) {
		if (buf_append(&c->raw_request, data, len))
			fail_call(c, GRPC_RESOURCE_EXHAUSTED, "out of memory");
	} else if (m->h.on_raw) {
		m->h.on_raw(c, data, len);
	}
}

static void finish_half_close(call *c);
static void process_message(call *c, const uint8_t *data, size_t len, bool compressed);

/* Messages that waited for a decode go in order; a deferred half-close comes last. */
static void drain_pending(call *c)
{
	while (!c->decoding && c->pending && !call_done(c)) {
		pending_msg *pm = c->pending;
		if (!(c->pending = pm->next))
			c->pending_tail = NULL;
		c->pending_bytes -= pm->len;
		process_message(c, pm->data, pm->len, pm->compressed);
		free(pm);
	}
	if (call_done(c))
		pending_free(c);
	if (!c->decoding && !c->pending && c->half_close_waits && !call_done(c)) {
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
		fail_call(c, code, err);
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
		fail_call(c, GRPC_RESOURCE_EXHAUSTED,
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
		fail_call(c, GRPC_UNIMPLEMENTED, msg);
		return;
	}
	if (compressed && c->req_encoding != ENC_GZIP) {
		fail_call(c, GRPC_INTERNAL, "compressed message without grpc-encoding");
		return;
	}
	if (kind_single_request(m->kind)) {
		if (c->have_request) {
			fail_call(c, GRPC_UNIMPLEMENTED, "more than one request message on a unary call");
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
			fail_call(c, rc == -EFBIG ? GRPC_RESOURCE_EXHAUSTED : GRPC_INTERNAL,
				  rc == -EFBIG ? "decompressed message larger than the limit"
					       : "could not decompress the message");
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
			fail_call(c, code, err);
	}
	buf_free(&plain);
}

static void handle_message(call *c, const uint8_t *data, size_t len, bool compressed)
{
	if (!c->decoding && !c->pending) {
		process_message(c, data, len, compressed);
		return;
	}
	pending_msg *pm = malloc(sizeof(*pm) + len);
	if (!pm) {
		fail_call(c, GRPC_RESOURCE_EXHAUSTED, "out of memory");
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

static void start_call(h2_conn *h, call *c)
{
	h2_server *s = h->e->s;
	if (!c->grpc_content_type || !c->is_post) {
		/* Not a gRPC request: plain HTTP answer, no handler. */
		nghttp2_nv nv[] = {{(uint8_t *)":status", (uint8_t *)(c->is_post ? "415" : "405"),
				    7, 3, NGHTTP2_NV_FLAG_NONE}};
		nghttp2_submit_response(h->ng, c->stream_id, nv, 1, NULL);
		c->finished = true;
		conn_want_send(h);
		return;
	}
	if (c->headers_too_large) {
		fail_call(c, GRPC_RESOURCE_EXHAUSTED, "request headers larger than the limit");
		return;
	}
	if (!c->te_trailers && s->o.require_te_trailers) {
		fail_call(c, GRPC_INTERNAL, "the request has no 'te: trailers' header");
		return;
	}
	if (c->over_call_cap) {
		fail_call(c, GRPC_RESOURCE_EXHAUSTED,
			  "too many calls still running on this connection");
		return;
	}
	if (c->bad_metadata) {
		fail_call(c, GRPC_INTERNAL, "malformed metadata value");
		return;
	}
	c->m = c->path ? method_table_find(s->methods, c->path, c->path_len) : NULL;
	if (s->gate && c->path) {
		char msg[400];
		int code = s->gate(s->gate_ctx, c, c->path, c->path_len, c->m != NULL, msg, sizeof(msg));
		if (code != GRPC_OK) {
			fail_call(c, code, msg);
			return;
		}
	}
	if (!c->m) {
		char msg[300];
		snprintf(msg, sizeof(msg), "unknown method %.250s", c->path ? c->path : "");
		fail_call(c, GRPC_UNIMPLEMENTED, msg);
		return;
	}
	if (c->deadline != INT64_MAX) {
		if (c->deadline <= reactor_now(c->r)) {
			fail_call(c, GRPC_DEADLINE_EXCEEDED, "deadline exceeded");
			return;
		}
		reactor_timer_arm(c->r, &c->deadline_timer, c->deadline, on_deadline);
	}
	c->started = true;
	if (c->m->h.on_start) {
		call_ref(c);
		c->m->h.on_start(c);
		call_unref(c);
	}
}

/* The client is done sending and every message it sent has been handled. */
static void finish_half_close(call *c)
{
	const method *m = c->m;
	call_ref(c);
	if (kind_single_request(m->kind)) {
		if (!c->have_request)
			fail_call(c, GRPC_UNIMPLEMENTED, "half-closed without a request message");
		else if (!m->input && m->h.on_raw)
			m->h.on_raw(c, c->raw_request.data, c->raw_request.len);
		else if (m->input && m->h.on_request)
			m->h.on_request(c, c->request);
	} else if (m->h.on_half_close) {
		m->h.on_half_close(c);
	}
	call_unref(c);
}

static void half_close(call *c)
{
	if (c->half_closed)
		return;
	c->half_closed = true;
	if (call_done(c))
		return;
	if (deframer_partial(&c->df)) {
		fail_call(c, GRPC_INTERNAL, "stream ended inside a message");
		return;
	}
	if (c->decoding || c->pending)
		c->half_close_waits = true; /* drain_pending finishes it */
	else
		finish_half_close(c);
}

/* ---- nghttp2 callbacks ---- */

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *frame, void *user)
{
	h2_conn *h = user;
	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	if (h->e->goaway)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	call *c = calloc(1, sizeof(*c));
	if (!c)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	c->refs = 1;
	c->conn = h;
	c->r = h->e->r;
	c->stream_id = frame->hd.stream_id;
	c->deadline = INT64_MAX;
	c->over_call_cap = conn_live_calls(h) >= h->e->s->o.max_calls_per_conn;
	deframer_init(&c->df, h->e->s->o.max_message_bytes);
	list_push(&h->calls, c);
	h->ncalls++;
	h->e->active_calls++;
	nghttp2_session_set_stream_user_data(ng, frame->hd.stream_id, c);
	return 0;
}

static bool header_is(const uint8_t *name, size_t len, const char *lit)
{
	return len == strlen(lit) && !memcmp(name, lit, len);
}

static bool grpc_content_type(const uint8_t *v, size_t len)
{
	static const char ct[] = "application/grpc";
	size_t n = sizeof(ct) - 1;
	return len >= n && !memcmp(v, ct, n) && (len == n || v[n] == '+' || v[n] == ';');
}

static bool list_has_token(const uint8_t *v, size_t len, const char *token)
{
	size_t tlen = strlen(token);
	size_t i = 0;
	while (i < len) {
		while (i < len && (v[i] == ' ' || v[i] == ','))
			i++;
		size_t start = i;
		while (i < len && v[i] != ',' && v[i] != ' ')
			i++;
		if (i - start == tlen && !memcmp(v + start, token, tlen))
			return true;
	}
	return false;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *frame, const uint8_t *name,
		     size_t nlen, const uint8_t *value, size_t vlen, uint8_t flags, void *user)
{
	(void)flags;
	h2_conn *h = user;
	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	call *c = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
	if (!c)
		return 0;
	/* nghttp2 1.52 advertises but does not enforce SETTINGS_MAX_HEADER_LIST_SIZE. */
	c->header_bytes += nlen + vlen + 32;
	if (c->header_bytes > h->e->s->o.max_header_list_bytes) {
		c->headers_too_large = true;
		return 0;
	}
	if (nlen && name[0] == ':') {
		if (header_is(name, nlen, ":path")) {
			c->path = arena_strndup(&c->arena, value, vlen);
			c->path_len = vlen;
		} else if (header_is(name, nlen, ":method")) {
			c->is_post = header_is(value, vlen, "POST");
		}
		return 0;
	}
	if (header_is(name, nlen, "content-type")) {
		c->grpc_content_type = grpc_content_type(value, vlen);
	} else if (header_is(name, nlen, "te")) {
		c->te_trailers = header_is(value, vlen, "trailers");
	} else if (header_is(name, nlen, "grpc-timeout")) {
		int64_t ns;
		if (md_timeout_parse((const char *)value, vlen, &ns) == 0)
			c->deadline = reactor_now(c->r) + (ns > INT64_MAX / 2 ? INT64_MAX / 2 : ns);
		else
			c->bad_metadata = true;
	} else if (header_is(name, nlen, "grpc-encoding")) {
		if (header_is(value, vlen, "gzip"))
			c->req_encoding = ENC_GZIP;
		else if (header_is(value, vlen, "identity"))
			c->req_encoding = ENC_IDENTITY;
		else {
			c->req_encoding = ENC_OTHER;
			c->req_encoding_name = arena_strndup(&c->arena, value, vlen);
		}
	} else if (header_is(name, nlen, "grpc-accept-encoding")) {
		c->accept_gzip = list_has_token(value, vlen, "gzip");
	} else if (!md_is_reserved((const char *)name, nlen)) {
		int rc = md_list_add(&c->md, &c->arena, name, nlen, value, vlen);
		if (rc == -EINVAL)
			c->bad_metadata = true;
		else if (rc)
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	return 0;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *frame, void *user)
{
	h2_conn *h = user;
	if (frame->hd.type == NGHTTP2_SETTINGS) {
		if (frame->hd.flags & NGHTTP2_FLAG_ACK)
			h->settings_acked = true;
		else
			h->got_settings = true;
		return 0;
	}
	if (frame->hd.type == NGHTTP2_PING && (frame->hd.flags & NGHTTP2_FLAG_ACK)) {
		h->ping_sent_at = 0;
		return 0;
	}
	if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
		return 0;
	call *c = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
	if (!c)
		return 0;
	if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST)
		start_call(h, c);
	if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) && c->conn)
		half_close(c);
	return 0;
}

/* After DATA for c: its buffers against the connection's cap and the node's budget, and
 * the clock of a message that is only partly here. */
static void account_received(h2_conn *h, call *c)
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
		fail_call(c, GRPC_RESOURCE_EXHAUSTED,
			  "the connection's receive buffer limit was reached");
		return;
	}
	if (c->recv_counted > before && over_budget(h->e->s)) {
		/* Messages that arrive whole are never buffered, so small calls (health
		 * checks among them) go on while big ones are refused. */
		call_release_input(c);
		fail_call(c, GRPC_RESOURCE_EXHAUSTED,
			  "the node's budget for buffered messages is spent (--max-buffered-bytes)");
		return;
	}
	if (!deframer_partial(&c->df)) {
		c->body_since = 0;
		return;
	}
	c->body_since = now;
	if (o->body_timeout && (!h->body_check_at || now + o->body_timeout < h->body_check_at)) {
		h->body_check_at = now + o->body_timeout;
		conn_schedule(h);
	}
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t stream_id,
			 const uint8_t *data, size_t len, void *user)
{
	(void)flags;
	(void)user;
	call *c = nghttp2_session_get_stream_user_data(ng, stream_id);
	if (!c || call_done(c) || c->half_closed)
		return 0;
	h2_conn *h = c->conn;
	call_ref(c);
	while (!call_done(c)) {
		const uint8_t *msg;
		size_t msg_len;
		bool compressed;
		int rc = deframer_next(&c->df, &data, &len, &msg, &msg_len, &compressed);
		if (rc == DEFRAME_NEED_MORE)
			break;
		if (rc == DEFRAME_MESSAGE) {
			handle_message(c, msg, msg_len, compressed);
			continue;
		}
		if (rc == DEFRAME_TOO_LARGE)
			fail_call(c, GRPC_RESOURCE_EXHAUSTED, "request message larger than the limit");
		else if (rc == DEFRAME_BAD_FLAG)
			fail_call(c, GRPC_INTERNAL, "invalid message flag");
		else
			fail_call(c, GRPC_RESOURCE_EXHAUSTED, "out of memory");
	}
	if (c->conn)
		account_received(h, c);
	call_unref(c);
	return 0;
}

static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *frame, void *user)
{
	h2_conn *h = user;
	if (frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA)
		ping_policy_reset(&h->pings);
	/* Trailers are out but the client is still sending: gRPC servers reset the
	 * stream with NO_ERROR so that it does not linger. */
	if (frame->hd.type != NGHTTP2_HEADERS || !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
		return 0;
	call *c = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
	if (c && !c->half_closed)
		nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
					  NGHTTP2_NO_ERROR);
	return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t stream_id, uint32_t error_code,
			   void *user)
{
	(void)error_code;
	(void)user;
	call *c = nghttp2_session_get_stream_user_data(ng, stream_id);
	if (c) {
		nghttp2_session_set_stream_user_data(ng, stream_id, NULL);
		call_detach(c);
	}
	return 0;
}

/* ---- server and endpoints ---- */

h2_server *h2_server_new(const method_table *methods, const h2_server_opts *opts)
{
	h2_server *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->methods = methods;
	if (opts)
		s->o = *opts;
	else
		h2_server_opts_default(&s->o);
	if (nghttp2_session_callbacks_new(&s->cbs) || nghttp2_option_new(&s->opt)) {
		h2_server_free(s);
		return NULL;
	}
	nghttp2_session_callbacks_set_on_begin_headers_callback(s->cbs, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(s->cbs, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(s->cbs, on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(s->cbs, on_data_chunk);
	nghttp2_session_callbacks_set_on_frame_send_callback(s->cbs, on_frame_send);
	nghttp2_session_callbacks_set_on_stream_close_callback(s->cbs, on_stream_close);
	nghttp2_option_set_max_deflate_dynamic_table_size(s->opt, 4096);
	/* Set explicitly rather than trusting the library's defaults to stay as they are. */
	nghttp2_option_set_stream_reset_rate_limit(s->opt, s->o.reset_burst, s->o.reset_rate);
	nghttp2_option_set_max_continuations(s->opt, s->o.max_continuations);
	nghttp2_option_set_max_outbound_ack(s->opt, 1000);
	nghttp2_option_set_max_settings(s->opt, 32);
	/* One message must always fit in a connection's buffers. */
	if (s->o.conn_buffer_bytes < s->o.max_message_bytes + 64 * 1024)
		s->o.conn_buffer_bytes = s->o.max_message_bytes + 64 * 1024;
	s->admit = admit_new(s->o.max_conns, s->o.max_conns_per_peer);
	if (!s->admit) {
		h2_server_free(s);
		return NULL;
	}
	return s;
}

void h2_server_set_gate(h2_server *s, h2_call_gate gate, void *ctx)
{
	s->gate = gate;
	s->gate_ctx = ctx;
}

void h2_server_set_pool(h2_server *s, pool *p) { s->pool = p; }

size_t h2_server_held(h2_server *s) { return atomic_load(&s->held); }

void h2_server_free(h2_server *s)
{
	if (!s)
		return;
	nghttp2_session_callbacks_del(s->cbs);
	nghttp2_option_del(s->opt);
	admit_free(s->admit);
	free(s);
}

h2_endpoint *h2_endpoint_new(h2_server *s, reactor *r)
{
	h2_endpoint *e = calloc(1, sizeof(*e));
	if (e) {
		e->s = s;
		e->r = r;
	}
	return e;
}

static void conn_destroy(h2_conn *h)
{
	while (h->calls)
		call_detach(h->calls);
	for (call *c = h->zombies; c; c = c->next)
		c->zombie_of = NULL;
	reactor_timer_disarm(h->e->r, &h->tick);
	if (h->admitted)
		admit_release(h->e->s->admit, (struct sockaddr *)&h->peer_addr);
	while (h->writable) {
		call *c = h->writable;
		h->writable = c->writable_next;
		c->on_writable_list = false;
		call_unref(c);
	}
	if (h->prev)
		h->prev->next = h->next;
	else
		h->e->conns = h->next;
	if (h->next)
		h->next->prev = h->prev;
	h->e->nconns--;
	nghttp2_session_del(h->ng);
	free(h);
}

void h2_endpoint_free(h2_endpoint *e)
{
	if (!e)
		return;
	while (e->conns) {
		h2_conn *h = e->conns;
		if (h->io)
			io_conn_set_user(h->io, NULL);
		conn_destroy(h);
	}
	reactor_timer_disarm(e->r, &e->budget_timer);
	free(e);
}

static h2_conn *conn_new(h2_endpoint *e)
{
	h2_conn *h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	h->e = e;
	const h2_server_opts *o = &e->s->o;
	frame_scan_init(&h->scan, true);
	rate_limit_init(&h->flood, o->flood_rate, o->flood_burst);
	/* gRPC allows pings on a connection without calls only every two hours. */
	int64_t idle_ping = o->ping_min_interval > 7200 * NS_PER_SEC || !o->ping_min_interval
				    ? o->ping_min_interval
				    : 7200 * NS_PER_SEC;
	ping_policy_init(&h->pings, o->ping_min_interval, idle_ping, o->ping_max_strikes);
	if (nghttp2_session_server_new2(&h->ng, e->s->cbs, h, e->s->opt)) {
		free(h);
		return NULL;
	}
	nghttp2_settings_entry iv[] = {
		{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, e->s->o.max_concurrent_streams},
		{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, SESSION_STREAM_WINDOW},
		{NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, e->s->o.max_header_list_bytes},
	};
	nghttp2_submit_settings(h->ng, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0]));
	nghttp2_session_set_local_window_size(h->ng, NGHTTP2_FLAG_NONE, 0, SESSION_CONN_WINDOW);
	h->next = e->conns;
	if (e->conns)
		e->conns->prev = h;
	e->conns = h;
	e->nconns++;
	if (e->goaway) {
		nghttp2_submit_goaway(h->ng, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, NULL, 0);
		h->goaway_sent = true;
	}
	return h;
}

/* ---- connection guards: misbehaviour and time ---- */

/* After a GOAWAY for misbehaviour or a timeout, the time the peer gets to read it. */
#define CLOSE_GRACE (5 * NS_PER_SEC)

/* GOAWAY with a reason; the connection takes no more input and closes once the GOAWAY
 * is out (or when the send stall timeout finds that it cannot go out). */
static void conn_terminate(h2_conn *h, uint32_t code, const char *why)
{
	if (h->closing)
		return;
	h->closing = true;
	h->closing_at = h->io ? reactor_now(h->e->r) : 0;
	log_msg(code == NGHTTP2_NO_ERROR ? LOG_DEBUG : LOG_INFO, "connection from %s: GOAWAY %s: %s",
		h->peer, nghttp2_http2_strerror(code), why);
	nghttp2_submit_goaway(h->ng, NGHTTP2_FLAG_NONE,
			      nghttp2_session_get_last_proc_stream_id(h->ng), code,
			      (const uint8_t *)why, strlen(why));
	h->goaway_sent = true;
	conn_want_send(h);
}

static void on_scanned_frame(void *user, const h2_frame_info *f)
{
	h2_conn *h = user;
	if (h->closing)
		return;
	int64_t now = h->io ? reactor_now(h->e->r) : 0;
	if (f->type == H2_PING && !(f->flags & H2_FLAG_ACK) &&
	    ping_policy_on_ping(&h->pings, now, conn_live_calls(h) == 0)) {
		conn_terminate(h, NGHTTP2_ENHANCE_YOUR_CALM, "too_many_pings");
		return;
	}
	if (frame_is_glitch(f) && !rate_limit_take(&h->flood, now))
		conn_terminate(h, NGHTTP2_ENHANCE_YOUR_CALM,
			       "too many frames that carry no request (empty DATA, PRIORITY, "
			       "SETTINGS, PING or unknown types)");
}

/* Sees every frame header before nghttp2 does. */
static void conn_scan(h2_conn *h, const uint8_t *data, size_t len)
{
	frame_scan_feed(&h->scan, data, len, on_scanned_frame, h);
	bool in_block = frame_scan_in_header_block(&h->scan);
	if (in_block && !h->header_block_since && h->io) {
		h->header_block_since = reactor_now(h->e->r);
		conn_schedule(h);
	} else if (!in_block) {
		h->header_block_since = 0;
	}
}

static bool conn_output_waiting(h2_conn *h)
{
	return h->send_queued > 0 || io_conn_out_pending(h->io) > 0;
}

static int64_t conn_next_deadline(h2_conn *h, int64_t now)
{
	const h2_server_opts *o = &h->e->s->o;
	int64_t next = INT64_MAX;
#define CONSIDER(cond, at)                                                                         \
	do {                                                                                       \
		if ((cond) && (at) < next)                                                         \
			next = (at);                                                               \
	} while (0)
	CONSIDER(h->closing, h->closing_at + CLOSE_GRACE);
	CONSIDER(o->handshake_timeout && !h->closing && !(h->got_settings && h->settings_acked),
		 h->accepted_at + o->handshake_timeout);
	CONSIDER(o->header_timeout && !h->closing && h->header_block_since,
		 h->header_block_since + o->header_timeout);
	CONSIDER(o->idle_timeout && !h->closing && conn_live_calls(h) == 0,
		 h->idle_since + o->idle_timeout);
	CONSIDER(o->keepalive_time && h->ping_sent_at, h->ping_sent_at + o->keepalive_timeout);
	CONSIDER(o->keepalive_time && !h->ping_sent_at && !h->closing,
		 h->last_recv + o->keepalive_time);
	CONSIDER(o->send_stall_timeout && h->stall_since, h->stall_since + o->send_stall_timeout);
	CONSIDER(o->body_timeout && h->body_check_at && !h->closing, h->body_check_at);
#undef CONSIDER
	/* Never at or before now: the timer heap would fire it again in the same run. */
	return next <= now ? now + NS_PER_MS : next;
}

/* One timer per connection, armed for the earliest deadline. Deadlines that move later
 * (activity) do not re-arm it: the tick finds out and arms again. */
static void conn_schedule(h2_conn *h)
{
	if (!h->io)
		return;
	reactor *r = h->e->r;
	int64_t next = conn_next_deadline(h, reactor_now(r));
	if (next == INT64_MAX)
		reactor_timer_disarm(r, &h->tick);
	else if (!timer_armed(&h->tick) || next < h->tick.deadline_ns)
		reactor_timer_arm(r, &h->tick, next, conn_tick);
}

/* Output is waiting: start watching for progress if not already. */
static void conn_watch_stall(h2_conn *h)
{
	if (!h->e->s->o.send_stall_timeout || h->stall_since)
		return;
	if (conn_output_waiting(h)) {
		h->stall_since = reactor_now(h->e->r);
		h->sent_mark = io_conn_bytes_sent(h->io);
		conn_schedule(h);
	}
}

/* Calls whose request message stopped arriving part way are ended: a peer must not keep
 * memory (and a call slot) by never sending a message's last bytes. */
static void conn_check_bodies(h2_conn *h, int64_t now)
{
	int64_t timeout = h->e->s->o.body_timeout;
	h->body_check_at = 0;
	for (call *c = h->calls; c; c = c->next) {
		if (!c->body_since || call_done(c))
			continue;
		if (now - c->body_since >= timeout) {
			call_release_input(c);
			char msg[120];
			snprintf(msg, sizeof(msg),
				 "no bytes of the request message for %lld s (--body-timeout)",
				 (long long)(timeout / NS_PER_SEC));
			fail_call(c, GRPC_CANCELLED, msg);
		} else if (!h->body_check_at || c->body_since + timeout < h->body_check_at) {
			h->body_check_at = c->body_since + timeout;
		}
	}
}

/* Over the node's budget, the connections of this endpoint that hold the most message
 * bytes for the longest without progress are closed, until the node is back under 7/8 of
 * its budget or no connection holds a noticeable amount. */
#define SHED_MIN_BYTES (64 * 1024)

static void conn_shed(h2_conn *h)
{
	log_info("connection from %s: closed, it held %zu bytes of messages while the node was "
		 "over its budget (--max-buffered-bytes)",
		 h->peer, h->recv_held + h->send_queued);
	for (call *c = h->calls; c; c = c->next) {
		call_release_input(c);
		fail_call(c, GRPC_RESOURCE_EXHAUSTED,
			  "the node's budget for buffered messages is spent (--max-buffered-bytes)");
	}
	conn_terminate(h, NGHTTP2_ENHANCE_YOUR_CALM,
		       "over the node's budget for buffered messages");
	/* Response bytes it holds go only with the connection: a peer that was not reading
	 * them will not read the GOAWAY either. */
	if (h->send_queued && h->io)
		io_conn_abort(h->io, -ENOBUFS);
}

static void endpoint_shed(h2_endpoint *e)
{
	h2_server *s = e->s;
	size_t target = s->o.max_buffered_bytes - s->o.max_buffered_bytes / 8;
	int64_t now = reactor_now(e->r);
	while (atomic_load_explicit(&s->held, memory_order_relaxed) > target) {
		h2_conn *victim = NULL;
		double worst = 0;
		for (h2_conn *h = e->conns; h; h = h->next) {
			size_t held = h->recv_held + h->send_queued;
			if (held < SHED_MIN_BYTES || h->closing)
				continue; /* a closing connection's memory goes with it soon */
			double score = (double)held * (double)(now - h->progress_at + NS_PER_MS);
			if (score > worst) {
				worst = score;
				victim = h;
			}
		}
		if (!victim)
			return;
		conn_shed(victim);
	}
}

static void budget_tick(timer *t)
{
	h2_endpoint *e = (h2_endpoint *)((char *)t - offsetof(h2_endpoint, budget_timer));
	if (over_budget(e->s))
		endpoint_shed(e);
	if (e->held)
		reactor_timer_arm(e->r, t, reactor_now(e->r) + BUDGET_CHECK, budget_tick);
}

static void conn_tick(timer *t)
{
	h2_conn *h = (h2_conn *)((char *)t - offsetof(h2_conn, tick));
	const h2_server_opts *o = &h->e->s->o;
	int64_t now = reactor_now(h->e->r);
	if (h->closing && now - h->closing_at >= CLOSE_GRACE) {
		io_conn_abort(h->io, -ETIMEDOUT); /* our GOAWAY could not even be delivered */
		return;
	}
	if (h->stall_since) {
		uint64_t sent = io_conn_bytes_sent(h->io);
		if (!conn_output_waiting(h)) {
			h->stall_since = 0;
		} else if (sent != h->sent_mark) {
			h->sent_mark = sent;
			h->stall_since = now;
		} else if (now - h->stall_since >= o->send_stall_timeout) {
			log_info("connection from %s: dropped, it read nothing for %lld s", h->peer,
				 (long long)(o->send_stall_timeout / NS_PER_SEC));
			io_conn_abort(h->io, -ETIMEDOUT);
			return;
		}
	}
	if (o->handshake_timeout && !h->closing && !(h->got_settings && h->settings_acked) &&
	    now - h->accepted_at >= o->handshake_timeout) {
		if (!h->got_settings) {
			/* No HTTP/2 client at the other end: nothing to say to it. */
			log_info("connection from %s: no HTTP/2 preface in time, closed", h->peer);
			io_conn_abort(h->io, -ETIMEDOUT);
			return;
		}
		conn_terminate(h, NGHTTP2_SETTINGS_TIMEOUT, "SETTINGS not acknowledged in time");
	}
	if (o->body_timeout && h->body_check_at && now >= h->body_check_at)
		conn_check_bodies(h, now);
	if (o->header_timeout && h->header_block_since &&
	    now - h->header_block_since >= o->header_timeout)
		conn_terminate(h, NGHTTP2_ENHANCE_YOUR_CALM, "header block not completed in time");
	if (o->idle_timeout && conn_live_calls(h) == 0 && now - h->idle_since >= o->idle_timeout)
		conn_terminate(h, NGHTTP2_NO_ERROR, "idle");
	if (o->keepalive_time && h->ping_sent_at && now - h->ping_sent_at >= o->keepalive_timeout) {
		log_info("connection from %s: keepalive PING unanswered, closed", h->peer);
		io_conn_abort(h->io, -ETIMEDOUT);
		return;
	}
	if (o->keepalive_time && !h->ping_sent_at && !h->closing &&
	    now - h->last_recv >= o->keepalive_time) {
		if (nghttp2_submit_ping(h->ng, NGHTTP2_FLAG_NONE, NULL) == 0) {
			h->ping_sent_at = now;
			conn_want_send(h);
		}
	}
	conn_schedule(h);
}

/* Tells handlers whose output drained that they may send again. */
static void run_writable(h2_conn *h)
{
	while (h->writable) {
		call *c = h->writable;
		h->writable = c->writable_next;
		c->on_writable_list = false;
		if (!call_done(c) && c->m && c->m->h.on_writable)
			c->m->h.on_writable(c);
		call_unref(c);
	}
}

static void conn_produce(io_conn *io)
{
	h2_conn *h = io_conn_user(io);
	if (!h)
		return;
	/* Handlers woken by drained output may queue more: give them a few rounds. */
	for (int round = 0; round < 4; round++) {
		if (session_pump(h->ng, io))
			return;
		if (!h->writable)
			break;
		run_writable(h);
	}
	if (h->writable)
		io_conn_want_send(io); /* the rest next turn, after other connections */
	else if (h->closing && !nghttp2_session_want_write(h->ng))
		io_conn_close(io); /* the GOAWAY is in the socket's buffer */
	else
		session_after_pump(h->ng, io);
	conn_watch_stall(h);
}

static int conn_recv(io_conn *io, const uint8_t *data, size_t len)
{
	h2_conn *h = io_conn_user(io);
	if (!h)
		return -ECONNRESET;
	if (h->closing)
		return 0; /* after our GOAWAY for misbehaviour, nothing more is read */
	h->last_recv = reactor_now(h->e->r);
	conn_scan(h, data, len);
	ssize_t n = h->closing ? 0 : nghttp2_session_mem_recv(h->ng, data, len);
	io_conn_want_send(io);
	return n < 0 ? -EPROTO : 0;
}

static void conn_closed(io_conn *io, int err)
{
	(void)err;
	h2_conn *h = io_conn_user(io);
	if (h)
		conn_destroy(h);
}

static const io_conn_ops conn_ops = {
	.on_recv = conn_recv,
	.produce = conn_produce,
	.on_close = conn_closed,
};

void h2_endpoint_accept(h2_endpoint *e, int fd)
{
	h2_conn *h = conn_new(e);
	if (!h) {
		close(fd);
		return;
	}
	socklen_t len = sizeof(h->peer_addr);
	if (getpeername(fd, (struct sockaddr *)&h->peer_addr, &len) == 0)
		sock_format_addr((struct sockaddr *)&h->peer_addr, h->peer, sizeof(h->peer));
	h->io = io_conn_new(e->r, fd, &conn_ops, h);
	if (!h->io) {
		close(fd);
		conn_destroy(h);
		return;
	}
	h->accepted_at = h->last_recv = h->idle_since = reactor_now(e->r);
	/* Over a cap the peer still hears why (GOAWAY) rather than seeing a bare reset. */
	int adm = admit_take(e->s->admit, (struct sockaddr *)&h->peer_addr);
	if (adm == ADMIT_OK)
		h->admitted = true;
	else
		conn_terminate(h, NGHTTP2_ENHANCE_YOUR_CALM,
			       adm == ADMIT_PEER ? "too many connections from this address"
						 : "too many connections");
	conn_schedule(h);
	io_conn_want_send(h->io); /* our SETTINGS */
}

static void listener_accept(reactor *r, int fd, void *user)
{
	(void)r;
	h2_endpoint_accept(user, fd);
}

const io_listener_ops h2_endpoint_listener_ops = {.on_accept = listener_accept};

void h2_endpoint_goaway(h2_endpoint *e)
{
	e->goaway = true;
	for (h2_conn *h = e->conns; h; h = h->next) {
		if (h->goaway_sent)
			continue;
		h->goaway_sent = true;
		nghttp2_submit_goaway(h->ng, NGHTTP2_FLAG_NONE,
				      nghttp2_session_get_last_proc_stream_id(h->ng),
				      NGHTTP2_NO_ERROR, NULL, 0);
		conn_want_send(h);
	}
}

void h2_endpoint_close_all(h2_endpoint *e)
{
	for (h2_conn *h = e->conns; h; h = h->next) {
		for (call *c = h->calls; c; c = c->next)
			fail_call(c, GRPC_UNAVAILABLE, "server shutting down");
		if (h->io)
			io_conn_close(h->io);
	}
}

size_t h2_endpoint_active_calls(const h2_endpoint *e) { return e->active_calls; }
size_t h2_endpoint_conn_count(const h2_endpoint *e) { return e->nconns; }

/* ---- detached connections (fuzzing) ---- */

h2_conn *h2_conn_new_detached(h2_endpoint *e)
{
	h2_conn *h = conn_new(e);
	if (h)
		snprintf(h->peer, sizeof(h->peer), "fuzz");
	return h;
}

int h2_conn_feed(h2_conn *h, const uint8_t *data, size_t len)
{
	if (h->broken)
		return -EPROTO;
	conn_scan(h, data, len);
	if (h->closing || nghttp2_session_mem_recv(h->ng, data, len) < 0)
		h->broken = true;
	for (int round = 0; round < 8; round++) {
		if (session_discard_output(h->ng))
			h->broken = true;
		if (!h->writable)
			break;
		run_writable(h);
	}
	return h->broken ? -EPROTO : 0;
}

void h2_conn_free_detached(h2_conn *h) { conn_destroy(h); }
