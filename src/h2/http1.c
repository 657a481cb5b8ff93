/* HTTP/1.1 on the node's port, for browsers, curl and probes: /healthz, /metrics and the
 * Connect protocol's unary calls (connect.c), parsed by Debian's libhttp-parser on the
 * connection's reactor.
 *
 * A connection serves one request at a time: a Connect request becomes a call like an
 * HTTP/2 stream (call_new, call_start: the method table, the gate, the deadline, the
 * handler) and its response is written once the call is finished and its request has
 * ended. Bytes that follow a whole request (pipelining) wait, at most H1_PIPELINE_MAX of
 * them, and are parsed once the response went. The limits are the HTTP/2 side's: the
 * header list size (431), the message size for bodies (413), the header and body
 * timeouts (408), the idle timeout; errors close the connection (Connection: close). */
#include <errno.h>
#include <http_parser.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/mem.h"
#include "h2/metrics.h"
#include "h2/server_int.h"
#include "h2/session.h"

/* Bytes after a whole request held while its response is pending: pipelining beyond
 * this is refused (503 and close) rather than buffered. */
#define H1_PIPELINE_MAX (64 * 1024)
/* After an error answer, the time the peer gets to read it before the socket goes. */
#define H1_CLOSE_GRACE (5 * NS_PER_SEC)

typedef struct h1_header {
	struct h1_header *next;
	char *name; /* lowercased */
	size_t nlen;
	char *value;
	size_t vlen;
} h1_header;

typedef struct http1_conn {
	h2_conn *h;
	http_parser p;
	/* the request being read */
	arena a; /* its url and headers */
	buf url, name, value;
	bool in_value;
	h1_header *headers, **tail;
	size_t header_bytes, body_bytes;
	bool expect_continue;
	bool in_headers, in_body;
	int64_t request_at, body_at, idle_at, closing_at;
	/* the request being served */
	call *cur;
	bool cur_complete; /* its request ended: its response may go once the call is done */
	bool keep_alive;
	bool http10; /* an HTTP/1.0 request: keep-alive only when asked, and said back */
	/* the connection */
	int error; /* HTTP status found by the parser's callbacks, 0: none */
	const char *error_msg;
	bool closing;	    /* an error answer or the last response went: no more input */
	bool goaway;	    /* shutting down: the next response closes */
	bool pipeline_over; /* more pipelined bytes than H1_PIPELINE_MAX */
	buf held;	    /* bytes after a whole request, parsed when it was answered */
	uint32_t seq;	    /* the calls' stream ids */
	uint64_t sent_mark; /* io bytes sent at the last stall check */
	int64_t stall_since;
} http1_conn;

static int64_t now_of(h2_conn *h) { return h->io ? reactor_now(h->e->r) : 0; }

static void out(http1_conn *x, const void *data, size_t len)
{
	h2_conn *h = x->h;
	if (conn_out(h, data, len) && h->io)
		reactor_conn_abort(h->io, -ENOMEM);
}

/* The socket goes once what is queued is out; for a detached connection, its end. */
static void close_conn(http1_conn *x)
{
	x->closing = true;
	x->closing_at = now_of(x->h);
	if (x->h->io)
		reactor_conn_close(x->h->io);
	else
		x->h->broken = true;
}

static void write_head(http1_conn *x, int status, const char *ctype, size_t clen, bool close)
{
	char head[512];
	int n = snprintf(head, sizeof(head), "HTTP/1.1 %03d %s\r\nContent-Type: %s\r\n",
			 status % 1000, web_reason(status), ctype);
	/* A 204 or 304 has no body and says nothing of its length. */
	if (status != 204 && status != 304)
		n += snprintf(head + n, sizeof(head) - (size_t)n, "Content-Length: %zu\r\n", clen);
	if (close)
		n += snprintf(head + n, sizeof(head) - (size_t)n, "Connection: close\r\n");
	else if (x->http10)
		n += snprintf(head + n, sizeof(head) - (size_t)n, "Connection: keep-alive\r\n");
	out(x, head, (size_t)n);
}

static void add_header(void *arg, const char *name, const char *value)
{
	http1_conn *x = arg;
	out(x, name, strlen(name));
	out(x, ": ", 2);
	out(x, value, strlen(value));
	out(x, "\r\n", 2);
}

/* An answer found by this layer (bad request, limits, timeouts): then the close. A
 * request being served is cancelled (its handler told). */
static void fail(http1_conn *x, int status, const char *msg)
{
	if (x->closing)
		return;
	if (x->cur) {
		call *c = x->cur;
		x->cur = NULL;
		call_detach(c);
	}
	char body[200];
	int n = snprintf(body, sizeof(body), "%s\n", msg);
	write_head(x, status, "text/plain", (size_t)n, true);
	out(x, "\r\n", 2);
	out(x, body, (size_t)n);
	log_debug("connection from %s (HTTP/1.1): %d: %s", x->h->peer, status, msg);
	close_conn(x);
}

/* ---- parser callbacks ---- */

static http1_conn *of(http_parser *p) { return p->data; }

/* Counts request-line and header bytes against the header list limit (as HTTP/2 does:
 * a field costs its name, its value and 32). */
static int count_header(http1_conn *x, size_t n)
{
	x->header_bytes += n;
	if (x->header_bytes > x->h->e->s->o.max_header_list_bytes) {
		x->error = 431;
		x->error_msg = "request headers larger than the limit";
		return -1;
	}
	return 0;
}

static int on_message_begin(http_parser *p)
{
	http1_conn *x = of(p);
	arena_free(&x->a);
	buf_reset(&x->url);
	buf_reset(&x->name);
	buf_reset(&x->value);
	x->in_value = false;
	x->headers = NULL;
	x->tail = &x->headers;
	x->header_bytes = x->body_bytes = 0;
	x->expect_continue = false;
	x->in_headers = true;
	x->in_body = false;
	x->request_at = now_of(x->h);
	x->keep_alive = false;
	http1_schedule(x->h);
	return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
	http1_conn *x = of(p);
	if (count_header(x, len) || buf_append(&x->url, at, len))
		return -1;
	return 0;
}

/* The header read so far goes on the request's list. */
static int commit_header(http1_conn *x)
{
	if (!x->in_value)
		return 0;
	x->in_value = false;
	if (count_header(x, 32))
		return -1;
	h1_header *hd = arena_alloc(&x->a, sizeof(*hd));
	char *name = hd ? arena_strndup(&x->a, x->name.data, x->name.len) : NULL;
	char *value = name ? arena_strndup(&x->a, x->value.data, x->value.len) : NULL;
	if (!value)
		return -1;
	for (size_t i = 0; i < x->name.len; i++)
		if (name[i] >= 'A' && name[i] <= 'Z')
			name[i] = (char)(name[i] - 'A' + 'a');
	*hd = (h1_header){.name = name, .nlen = x->name.len, .value = value, .vlen = x->value.len};
	*x->tail = hd;
	x->tail = &hd->next;
	buf_reset(&x->name);
	buf_reset(&x->value);
	return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
	http1_conn *x = of(p);
	if (commit_header(x) || count_header(x, len) || buf_append(&x->name, at, len))
		return -1;
	return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
	http1_conn *x = of(p);
	x->in_value = true;
	if (count_header(x, len) || buf_append(&x->value, at, len))
		return -1;
	return 0;
}

static bool is(const h1_header *hd, const char *name)
{
	return hd->nlen == strlen(name) && !memcmp(hd->name, name, hd->nlen);
}

/* Headers of HTTP/1.1 itself and of browsers, which are no call metadata. */
static bool hop_header(const h1_header *hd)
{
	static const char *const names[] = {
		"host",
		"connection",
		"keep-alive",
		"transfer-encoding",
		"upgrade",
		"expect",
		"accept",
		"accept-encoding",
		"accept-language",

		"referer",
		"cookie",
		"http2-settings",
		"content-length",
		"connect-protocol-version",
		"connect-accept-encoding",
		"connect-content-encoding",
		"pragma",
		"cache-control",
		"dnt",
		"priority",
	};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (is(hd, names[i]))
			return true;
	return hd->nlen > 4 && (!memcmp(hd->name, "sec-", 4) || !memcmp(hd->name, "proxy-", 6));
}

/* The request's headers onto its call, as server.c's on_header does for HTTP/2. */
static int call_headers(http1_conn *x, call *c)
{
	for (h1_header *hd = x->headers; hd; hd = hd->next) {
		const uint8_t *v = (const uint8_t *)hd->value;
		if (is(hd, "content-type")) {
			c->wire = connect_wire_of(v, hd->vlen);
			/* gRPC needs trailers, which HTTP/1.1 does not carry. */
			if (c->wire == WIRE_GRPC)
				c->wire = WIRE_PLAIN;
			c->grpc_content_type = c->wire != WIRE_PLAIN;
		} else if (is(hd, "connect-timeout-ms")) {
			if (!connect_timeout(c, v, hd->vlen))
				c->bad_metadata = true;
		} else if (is(hd, "grpc-timeout")) {
			int64_t ns;
			if (md_timeout_parse(hd->value, hd->vlen, &ns) == 0)
				c->deadline = reactor_now(c->r) +
					      (ns > INT64_MAX / 2 ? INT64_MAX / 2 : ns);
			else
				c->bad_metadata = true;
		} else if (is(hd, "grpc-encoding")) {
			c->req_encoding = hd->vlen == 4 && !memcmp(v, "gzip", 4) ? ENC_GZIP
					  : hd->vlen == 8 && !memcmp(v, "identity", 8)
						  ? ENC_IDENTITY
						  : ENC_OTHER;
			c->req_encoding_name = arena_strndup(&c->arena, hd->value, hd->vlen);
		} else if (is(hd, "content-encoding")) {
			c->connect_encoded = !(hd->vlen == 8 && !memcmp(v, "identity", 8));
		} else if (hop_header(hd) || md_is_reserved(hd->name, hd->nlen)) {
			continue;
		} else {
			int rc = md_list_add(&c->md, &c->arena, (const uint8_t *)hd->name, hd->nlen,
					     v, hd->vlen);
			if (rc == -EINVAL)
				c->bad_metadata = true;
			else if (rc)
				return rc;
		}
	}
	return 0;
}

static int on_headers_complete(http_parser *p)
{
	http1_conn *x = of(p);
	h2_conn *h = x->h;
	if (commit_header(x))
		return -1;
	x->in_headers = false;
	x->in_body = true;
	x->body_at = now_of(h);
	x->keep_alive = http_should_keep_alive(p);
	x->http10 = p->http_major == 1 && p->http_minor == 0;
	if (p->http_major != 1) {
		x->error = 505;
		x->error_msg = "HTTP/1.x only here (HTTP/2 by its preface or ALPN)";
		return -1;
	}
	/* A declared body over the limit is refused before a byte of it is read. */
	if (!(p->flags & F_CHUNKED) && p->content_length != ULLONG_MAX &&
	    p->content_length > h->e->s->o.max_message_bytes) {
		x->error = 413;
		x->error_msg = "request body larger than the message size limit";
		return -1;
	}
	for (h1_header *hd = x->headers; hd; hd = hd->next)
		if (is(hd, "expect") && hd->vlen == 12 &&
		    !strncasecmp(hd->value, "100-continue", 12))
			x->expect_continue = true;
	call *c = call_new(h, (int32_t)(++x->seq & 0x7fffffff));
	if (!c) {
		x->error = 503;
		x->error_msg = "out of memory";
		return -1;
	}
	x->cur = c;
	x->cur_complete = false;
	c->is_post = p->method == HTTP_POST;
	c->is_get = p->method == HTTP_GET;
	c->is_options = p->method == HTTP_OPTIONS;
	c->path = arena_strndup(&c->arena, x->url.data ? x->url.data : (uint8_t *)"", x->url.len);
	c->path_len = x->url.len;
	if (!c->path || call_headers(x, c)) {
		x->error = 503;
		x->error_msg = "out of memory";
		return -1;
	}
	/* Without a Connect content type the path alone is looked at (web.c). */
	if (!c->grpc_content_type)
		c->path_len = strcspn(c->path, "?");
	if (x->expect_continue && !call_done(c))
		out(x, "HTTP/1.1 100 Continue\r\n\r\n", 25);
	call_ref(c);
	call_start(h, c);
	call_unref(c);
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
	http1_conn *x = of(p);
	h2_conn *h = x->h;
	x->body_bytes += len;
	x->body_at = now_of(h);
	/* Chunked bodies have no declared length: counted as they come. */
	if (x->body_bytes > h->e->s->o.max_message_bytes) {
		x->error = 413;
		x->error_msg = "request body larger than the message size limit";
		return -1;
	}
	call *c = x->cur;
	if (c && c->wire != WIRE_PLAIN && !call_done(c) && c->conn) {
		connect_body_in(c, (const uint8_t *)at, len);
		if (c->conn)
			call_received(h, c);
	}
	return 0;
}

static int on_message_complete(http_parser *p)
{
	http1_conn *x = of(p);
	x->in_body = false;
	x->cur_complete = true;
	/* One request at a time: what follows waits until this one is answered. */
	http_parser_pause(p, 1);
	call *c = x->cur;
	if (c && !call_done(c)) {
		call_ref(c);
		call_half_close(c);
		call_unref(c);
	}
	if (x->h->io)
		reactor_conn_want_send(x->h->io);
	return 0;
}

static const http_parser_settings settings = {
	.on_message_begin = on_message_begin,
	.on_url = on_url,
	.on_header_field = on_header_field,
	.on_header_value = on_header_value,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

/* ---- the connection ---- */

int http1_attach(h2_conn *h)
{
	http1_conn *x = mem_calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	x->h = h;
	http_parser_init(&x->p, HTTP_REQUEST);
	x->p.data = x;
	x->tail = &x->headers;
	x->idle_at = now_of(h);
	h->h1 = x;
	/* No HTTP/2 session: its queued SETTINGS never go out. */
	nghttp2_session_del(h->ng);
	h->ng = NULL;
	if (h->closing) /* refused at accept (admit.h): said in HTTP/1.1 */
		fail(x, 503, "too many connections");
	x->goaway = h->e->goaway;
	http1_schedule(h);
	return 0;
}

void http1_detach(h2_conn *h)
{
	http1_conn *x = h->h1;
	if (!x)
		return;
	h->h1 = NULL;
	arena_free(&x->a);
	buf_free(&x->url);
	buf_free(&x->name);
	buf_free(&x->value);
	buf_free(&x->held);
	mem_free(x);
}

/* Parses input until a request ends (the parser pauses) or the bytes run out. */
static void parse(http1_conn *x, const uint8_t *data, size_t len)
{
	size_t n = http_parser_execute(&x->p, &settings, (const char *)data, len);
	enum http_errno err = HTTP_PARSER_ERRNO(&x->p);
	if (x->closing)
		return;
	if (err == HPE_PAUSED) {
		if (n < len && buf_append(&x->held, data + n, len - n))
			fail(x, 503, "out of memory");
		return;
	}
	if (err != HPE_OK || n != len) {
		if (x->error)
			fail(x, x->error, x->error_msg);
		else
			fail(x, 400, http_errno_description(err));
	}
}

int http1_recv(h2_conn *h, const uint8_t *data, size_t len)
{
	http1_conn *x = h->h1;
	if (!x || x->closing)
		return 0; /* after an error answer nothing more is read */
	if (x->cur_complete || x->held.len) {
		/* Pipelined behind a request still being answered. */
		if (x->held.len + len > H1_PIPELINE_MAX)
			x->pipeline_over = true;
		else if (buf_append(&x->held, data, len))
			fail(x, 503, "out of memory");
		return 0;
	}
	parse(x, data, len);
	return 0;
}

/* The finished call's response: status, headers (the handler's metadata, its trailing
 * metadata as trailer- headers as Connect's unary form has them), body. */
static void write_response(http1_conn *x, call *c, bool close)
{
	write_head(x, c->http_status, c->resp_ctype, c->body_out.len, close);
	web_cors_headers(c, add_header, x);
	size_t ntrail = grpcweb_is(c) ? 0 : c->trailing_md.n; /* gRPC-Web: in its body */
	for (size_t i = 0; i < c->initial_md.n + ntrail; i++) {
		bool trailer = i >= c->initial_md.n;
		const nghttp2_nv *nv =
			trailer ? &c->trailing_md.v[i - c->initial_md.n] : &c->initial_md.v[i];
		if (trailer)
			out(x, "trailer-", 8);
		out(x, nv->name, nv->namelen);
		out(x, ": ", 2);
		out(x, nv->value, nv->valuelen);
		out(x, "\r\n", 2);
	}
	out(x, "\r\n", 2);
	out(x, c->body_out.data, c->body_out.len);
}

void http1_call_finished(call *c)
{
	h2_conn *h = c->conn;
	if (h && h->io)
		reactor_conn_want_send(h->io);
}

void http1_produce(h2_conn *h)
{
	http1_conn *x = h->h1;
	/* Each round answers one request and parses the next, while the socket keeps up. */
	while (x && !x->closing && x->cur && x->cur_complete && x->cur->resp_ready) {
		call *c = x->cur;
		bool close = !x->keep_alive || x->goaway || x->pipeline_over;
		write_response(x, c, close);
		x->cur = NULL;
		x->cur_complete = false;
		call_detach(c);
		x->idle_at = now_of(h);
		if (close) {
			if (x->pipeline_over)
				log_info("connection from %s (HTTP/1.1): closed, over %d bytes "
					 "pipelined",
					 h->peer, H1_PIPELINE_MAX);
			close_conn(x);
			break;
		}
		http_parser_pause(&x->p, 0);
		if (x->held.len) {
			buf in = x->held;
			x->held = (buf){0};
			parse(x, in.data, in.len);
			buf_free(&in);
		}
		if (h->io && reactor_conn_out_pending(h->io) >= SESSION_OUT_HIGH)
			break; /* the rest once the socket took this */
	}
	if (!x || !h->io)
		return;
	if (x->cur && x->cur_complete && x->cur->resp_ready)
		reactor_conn_want_send(h->io);
	if (!x->stall_since && reactor_conn_out_pending(h->io)) {
		x->stall_since = now_of(h);
		x->sent_mark = reactor_conn_bytes_sent(h->io);
	}
	http1_schedule(h);
}

void http1_goaway(h2_conn *h)
{
	http1_conn *x = h->h1;
	if (!x)
		return;
	x->goaway = true;
	if (!x->cur && !x->in_headers && !x->in_body && !x->closing)
		close_conn(x);
}

/* ---- time ---- */

static void http1_tick(timer *t);

/* The earliest of the connection's deadlines: a request's headers, its body's progress,
 * idleness, a peer that reads nothing, the grace after an error answer. */
static int64_t next_deadline(http1_conn *x)
{
	const h2_server_opts *o = &x->h->e->s->o;
	int64_t next = INT64_MAX;
#define CONSIDER(cond, at)                                                                         \
	do {                                                                                       \
		if ((cond) && (at) < next)                                                         \
			next = (at);                                                               \
	} while (0)
	CONSIDER(x->closing, x->closing_at + H1_CLOSE_GRACE);
	CONSIDER(!x->closing && o->header_timeout && x->in_headers,
		 x->request_at + o->header_timeout);
	CONSIDER(!x->closing && o->body_timeout && x->in_body, x->body_at + o->body_timeout);
	CONSIDER(!x->closing && o->idle_timeout && !x->cur && !x->in_headers && !x->in_body,
		 x->idle_at + o->idle_timeout);
	CONSIDER(o->send_stall_timeout && x->stall_since, x->stall_since + o->send_stall_timeout);
#undef CONSIDER
	return next;
}

void http1_schedule(h2_conn *h)
{
	http1_conn *x = h->h1;
	if (!x || !h->io)
		return;
	reactor *r = h->e->r;
	int64_t next = next_deadline(x), now = reactor_now(r);
	if (next <= now)
		next = now + NS_PER_MS;
	if (next == INT64_MAX)
		reactor_timer_disarm(r, &h->tick);
	else if ((!timer_armed(&h->tick) || next < h->tick.deadline_ns ||
		  h->tick.fn != http1_tick) &&
		 reactor_timer_arm(r, &h->tick, next, http1_tick))
		reactor_conn_abort(h->io, -ENOMEM);
}

static void http1_tick(timer *t)
{
	h2_conn *h = container_of(t, h2_conn, tick);
	http1_conn *x = h->h1;
	if (!x)
		return;
	const h2_server_opts *o = &h->e->s->o;
	int64_t now = reactor_now(h->e->r);
	if (x->closing && now - x->closing_at >= H1_CLOSE_GRACE) {
		reactor_conn_abort(h->io, -ETIMEDOUT);
		return;
	}
	if (x->stall_since) {
		uint64_t sent = reactor_conn_bytes_sent(h->io);
		if (!reactor_conn_out_pending(h->io)) {
			x->stall_since = 0;
		} else if (sent != x->sent_mark) {
			x->sent_mark = sent;
			x->stall_since = now;
		} else if (now - x->stall_since >= o->send_stall_timeout) {
			log_info(
				"connection from %s (HTTP/1.1): dropped, it read nothing for %lld s",
				h->peer, (long long)(o->send_stall_timeout / NS_PER_SEC));
			reactor_conn_abort(h->io, -ETIMEDOUT);
			return;
		}
	}
	if (!x->closing && x->in_headers && o->header_timeout &&
	    now - x->request_at >= o->header_timeout)
		fail(x, 408, "request headers not completed in time (--header-timeout)");
	else if (!x->closing && x->in_body && o->body_timeout &&
		 now - x->body_at >= o->body_timeout)
		fail(x, 408, "request body stalled (--body-timeout)");
	else if (!x->closing && !x->cur && !x->in_headers && !x->in_body && o->idle_timeout &&
		 now - x->idle_at >= o->idle_timeout)
		close_conn(x);
	http1_schedule(h);
}
