/* gRPC server side on nghttp2: endpoints and connection sessions, and the nghttp2
 * callbacks. The call object and its API are call.c, the request path call_in.c, the
 * timers and memory limits of connections conn_limits.c; server_int.h is what they
 * share. */
#include "h2/server.h"

#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/mem.h"
#include "h2/call.h"
#include "h2/metadata.h"
#include "h2/metrics.h"
#include "h2/server_int.h"
#include "h2/session.h"
#include "io/sock.h"
#include "io/tls.h"

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
	*o = (h2_server_opts){0}; /* what is not named below is off (TLS among them) */
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
	o->max_tls_handshakes = 128;
	o->send_stall_timeout = 30 * NS_PER_SEC;
	o->require_te_trailers = true;
}

/* ---- nghttp2 callbacks ---- */

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *frame, void *user)
{
	h2_conn *h = user;
	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	if (h->e->goaway)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	call *c = call_new(h, frame->hd.stream_id);
	if (!c)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	nghttp2_session_set_stream_user_data(ng, frame->hd.stream_id, c);
	return 0;
}

static bool header_is(const uint8_t *name, size_t len, const char *lit)
{
	return len == strlen(lit) && !memcmp(name, lit, len);
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
			/* Out of memory the stream is reset, as for metadata below, rather than
			 * answered as a call to no method. */
			if (!(c->path = arena_strndup(&c->arena, value, vlen)))
				return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
			c->path_len = vlen;
		} else if (header_is(name, nlen, ":method")) {
			c->is_post = header_is(value, vlen, "POST");
			c->is_get = header_is(value, vlen, "GET");
			c->is_options = header_is(value, vlen, "OPTIONS");
		}
		return 0;
	}
	if (header_is(name, nlen, "content-type")) {
		c->wire = connect_wire_of(value, vlen);
		c->grpc_content_type = c->wire != WIRE_PLAIN;
	} else if (header_is(name, nlen, "connect-timeout-ms")) {
		if (!connect_timeout(c, value, vlen))
			c->bad_metadata = true;
	} else if (header_is(name, nlen, "content-encoding")) {
		c->connect_encoded = !header_is(value, vlen, "identity");
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
			if (!(c->req_encoding_name = arena_strndup(&c->arena, value, vlen)))
				return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
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
		call_start(h, c);
	if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) && c->conn)
		call_half_close(c);
	return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t stream_id, const uint8_t *data,
			 size_t len, void *user)
{
	(void)flags;
	(void)user;
	call *c = nghttp2_session_get_stream_user_data(ng, stream_id);
	if (!c || call_done(c) || c->half_closed) {
		nghttp2_session_consume(ng, stream_id, len); /* dropped: given back at once */
		return 0;
	}
	h2_conn *h = c->conn;
	if (c->wire != WIRE_GRPC) {
		/* A Connect body is read whole, bounded by the message limit. */
		connect_body_in(c, data, len);
		nghttp2_session_consume(ng, stream_id, len);
		if (c->conn)
			call_received(h, c);
		return 0;
	}
	call_ref(c);
	size_t used = c->held.len ? 0 : call_data_in(c, data, len);
	if (call_done(c))
		used = len;
	else if (used < len && buf_append(&c->held, data + used, len - used)) {
		call_fail(c, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		used = len;
	}
	if (used)
		nghttp2_session_consume(ng, stream_id, used);
	if (c->conn)
		call_received(h, c);
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

static int on_stream_close(nghttp2_session *ng, int32_t stream_id, uint32_t error_code, void *user)
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

/* ---- Connect and plain answers on a stream ---- */

static ssize_t read_plain(nghttp2_session *ng, int32_t stream_id, uint8_t *out, size_t length,
			  uint32_t *data_flags, nghttp2_data_source *src, void *user)
{
	(void)ng;
	(void)stream_id;
	(void)user;
	call *c = src->ptr;
	size_t n = c->body_out.len - c->out_off;
	if (n > length)
		n = length;
	memcpy(out, c->body_out.data + c->out_off, n);
	c->out_off += n;
	if (c->out_off == c->body_out.len)
		*data_flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

typedef struct nv_adder {
	nv_list *l;
	int rc;
} nv_adder;

static void add_nv(void *arg, const char *name, const char *value)
{
	nv_adder *a = arg;
	if (!a->rc)
		a->rc = nv_list_push(a->l, name, strlen(name), value, strlen(value));
}

/* The headers of a Connect or plain answer: status, type, length, CORS, the handler's
 * metadata (its trailing metadata as trailer- headers, Connect's unary form; gRPC-Web
 * carries it in its body). */
static int plain_headers(call *c, nv_list *l)
{
	/* nghttp2 reads the values when the frame goes out (NO_COPY): the call's arena. */
	char *status = call_alloc(c, 4), *clen = call_alloc(c, 24);
	if (!status || !clen)
		return -ENOMEM;
	snprintf(status, 4, "%03d", (c->http_status % 1000 + 1000) % 1000);
	snprintf(clen, 24, "%zu", c->body_out.len);
	int rc = nv_list_push(l, ":status", 7, status, 3);
	rc = rc ? rc
		: nv_list_push(l, "content-type", 12, (char *)c->resp_ctype, strlen(c->resp_ctype));
	if (!rc && c->http_status != 204 && c->http_status != 304)
		rc = nv_list_push(l, "content-length", 14, clen, strlen(clen));
	nv_adder a = {l, rc};
	web_cors_headers(c, add_nv, &a);
	rc = a.rc;
	for (size_t i = 0; !rc && i < c->initial_md.n; i++)
		rc = nv_list_push(l, (char *)c->initial_md.v[i].name, c->initial_md.v[i].namelen,
				  (char *)c->initial_md.v[i].value, c->initial_md.v[i].valuelen);
	for (size_t i = 0; !rc && !grpcweb_is(c) && i < c->trailing_md.n; i++) {
		size_t n = c->trailing_md.v[i].namelen;
		char *name = call_alloc(c, n + 8);
		if (!name)
			return -ENOMEM;
		memcpy(name, "trailer-", 8);
		memcpy(name + 8, c->trailing_md.v[i].name, n);
		rc = nv_list_push(l, name, n + 8, (char *)c->trailing_md.v[i].value,
				  c->trailing_md.v[i].valuelen);
	}
	return rc;
}

void h2_submit_plain(call *c)
{
	h2_conn *h = c->conn;
	nv_list l = {0};
	int rc = plain_headers(c, &l);
	nghttp2_data_provider dp = {.source.ptr = c, .read_callback = read_plain};
	if (!rc)
		rc = nghttp2_submit_response(h->ng, c->stream_id, l.v, l.n,
					     c->body_out.len ? &dp : NULL);
	nv_list_free(&l);
	if (rc)
		nghttp2_submit_rst_stream(h->ng, NGHTTP2_FLAG_NONE, c->stream_id,
					  NGHTTP2_INTERNAL_ERROR);
	c->headers_submitted = true;
	conn_want_send(h);
}

int conn_out(h2_conn *h, const void *data, size_t len)
{
	if (h->io)
		return reactor_conn_write(h->io, data, len);
	return h->keep ? buf_append(h->keep, data, len) : 0;
}

/* ---- server and endpoints ---- */

h2_server *h2_server_new(const method_table *methods, const h2_server_opts *opts)
{
	h2_server *s = mem_calloc(1, sizeof(*s));
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
	nghttp2_session_callbacks_set_send_data_callback(s->cbs, call_send_data);
	nghttp2_option_set_max_deflate_dynamic_table_size(s->opt, 4096);
	/* Set explicitly rather than trusting the library's defaults to stay as they are. */
	nghttp2_option_set_stream_reset_rate_limit(s->opt, s->o.reset_burst, s->o.reset_rate);
	nghttp2_option_set_max_continuations(s->opt, s->o.max_continuations);
	nghttp2_option_set_max_outbound_ack(s->opt, 1000);
	nghttp2_option_set_max_settings(s->opt, 32);
	/* Window updates are ours (call_consume): a call whose handler paused its input
	 * stops its client instead of buffering what it sends. */
	nghttp2_option_set_no_auto_window_update(s->opt, 1);
	/* One message must always fit in a connection's buffers. */
	if (s->o.conn_buffer_bytes < s->o.max_message_bytes + 64 * 1024)
		s->o.conn_buffer_bytes = s->o.max_message_bytes + 64 * 1024;
	s->admit = admit_new(s->o.max_conns, s->o.max_conns_per_peer);
	s->metrics = metrics_set_new(methods);
	if (!s->admit || !s->metrics) {
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

void h2_server_set_auth(h2_server *s, h2_call_auth fn, void *ctx)
{
	s->auth = fn;
	s->auth_ctx = ctx;
}

void h2_server_set_fallback(h2_server *s, h2_call_fallback fn, void *ctx)
{
	s->fallback = fn;
	s->fallback_ctx = ctx;
}

void h2_server_set_pool(h2_server *s, pool *p) { s->pool = p; }

void h2_server_set_web(h2_server *s, const h2_web_hooks *hooks) { s->web = *hooks; }

void h2_server_free(h2_server *s)
{
	if (!s)
		return;
	nghttp2_session_callbacks_del(s->cbs);
	nghttp2_option_del(s->opt);
	admit_free(s->admit);
	metrics_set_free(s->metrics);
	mem_free(s);
}

h2_endpoint *h2_endpoint_new(h2_server *s, reactor *r)
{
	h2_endpoint *e = mem_calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->s = s;
	e->r = r;
	list_init(&e->conns);
	e->metrics = metrics_ep_new(s->metrics);
	if (!e->metrics || endpoint_budget_start(e)) {
		metrics_ep_free(e->metrics);
		mem_free(e);
		return NULL;
	}
	return e;
}

/* The TLS handshake of h ended (or h went first). */
static void handshake_over(h2_conn *h)
{
	if (h->handshaking) {
		h->handshaking = false;
		h->e->handshaking--;
	}
}

static void conn_destroy(h2_conn *h)
{
	while (!list_empty(&h->calls))
		call_detach(container_of(h->calls.next, call, link));
	list_each_safe (it, &h->zombies) {
		container_of(it, call, link)->zombie_of = NULL;
		list_remove(it);
	}
	reactor_timer_disarm(h->e->r, &h->tick);
	handshake_over(h);
	if (h->admitted)
		admit_release(h->e->s->admit, (struct sockaddr *)&h->peer_addr);
	while (h->writable) {
		call *c = h->writable;
		h->writable = c->writable_next;
		c->on_writable_list = false;
		call_unref(c);
	}
	list_remove(&h->link);
	h->e->nconns--;
	if (h->proto != PROTO_SNIFF)
		metrics_conn_close(h->e->metrics, h->proto == PROTO_H1);
	http1_detach(h);
	if (h->auth_memo)
		h->auth_memo_free(h->auth_memo);
	nghttp2_session_del(h->ng);
	mem_free(h);
}

void h2_endpoint_free(h2_endpoint *e)
{
	if (!e)
		return;
	while (!list_empty(&e->conns)) {
		h2_conn *h = container_of(e->conns.next, h2_conn, link);
		if (h->io)
			reactor_conn_set_user(h->io, NULL);
		conn_destroy(h);
	}
	reactor_timer_disarm(e->r, &e->budget_timer);
	metrics_ep_free(e->metrics);
	mem_free(e);
}

static h2_conn *conn_new(h2_endpoint *e)
{
	h2_conn *h = mem_calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	h->e = e;
	list_init(&h->calls);
	list_init(&h->zombies);
	const h2_server_opts *o = &e->s->o;
	frame_scan_init(&h->scan, true);
	rate_limit_init(&h->flood, o->flood_rate, o->flood_burst);
	/* gRPC allows pings on a connection without calls only every two hours. */
	int64_t idle_ping = o->ping_min_interval > 7200 * NS_PER_SEC || !o->ping_min_interval
				    ? o->ping_min_interval
				    : 7200 * NS_PER_SEC;
	ping_policy_init(&h->pings, o->ping_min_interval, idle_ping, o->ping_max_strikes);
	if (nghttp2_session_server_new3(&h->ng, e->s->cbs, h, e->s->opt, &session_mem)) {
		mem_free(h);
		return NULL;
	}
	nghttp2_settings_entry iv[] = {
		{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, e->s->o.max_concurrent_streams},
		{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, SESSION_STREAM_WINDOW},
		{NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, e->s->o.max_header_list_bytes},
	};
	/* Both queue a frame: out of memory, the peer would miss our SETTINGS (which must
	 * come first) or our window, so the connection is refused instead. */
	if (nghttp2_submit_settings(h->ng, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0])) ||
	    nghttp2_session_set_local_window_size(h->ng, NGHTTP2_FLAG_NONE, 0,
						  SESSION_CONN_WINDOW)) {
		nghttp2_session_del(h->ng);
		mem_free(h);
		return NULL;
	}
	list_push_front(&e->conns, &h->link);
	e->nconns++;
	/* Without HTTP/1.1 on the port there is nothing to tell apart. */
	if (!e->s->o.http1) {
		h->proto = PROTO_H2;
		metrics_conn_open(e->metrics, false);
	}
	if (e->goaway) {
		nghttp2_submit_goaway(h->ng, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, NULL, 0);
		h->goaway_sent = true;
	}
	return h;
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

static void conn_produce(reactor_conn *io)
{
	h2_conn *h = reactor_conn_user(io);
	if (!h || h->proto == PROTO_SNIFF)
		return;
	if (h->proto == PROTO_H1) {
		http1_produce(h);
		return;
	}
	/* Handlers woken by drained output may queue more: give them a few rounds. */
	for (int round = 0; round < 4; round++) {
		if (session_pump(h->ng, io))
			return;
		if (!h->writable)
			break;
		run_writable(h);
	}
	if (h->writable)
		reactor_conn_want_send(io); /* the rest next turn, after other connections */
	else if (h->closing && !nghttp2_session_want_write(h->ng))
		reactor_conn_close(io); /* the GOAWAY is in the socket's buffer */
	else
		session_after_pump(h->ng, io);
	conn_watch_stall(h);
}

static const char h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/* What the first bytes say: ALPN when TLS negotiated one, else whether they are the
 * HTTP/2 client preface (held in h->sniffed while they match but are not all here). */
static enum conn_proto conn_sniff(h2_conn *h, const uint8_t *data, size_t len)
{
	tls_conn *t = h->io ? reactor_conn_tls(h->io) : NULL;
	const char *alpn = t ? tls_conn_alpn(t) : "";
	if (!strcmp(alpn, "h2"))
		return PROTO_H2;
	if (!strcmp(alpn, "http/1.1"))
		return PROTO_H1;
	size_t want = sizeof(h2_preface) - 1, n = want - h->nsniffed;
	if (n > len)
		n = len;
	if (memcmp(data, h2_preface + h->nsniffed, n))
		return PROTO_H1;
	if (h->nsniffed + n == want)
		return PROTO_H2;
	memcpy(h->sniffed + h->nsniffed, data, n);
	h->nsniffed += n;
	return PROTO_SNIFF;
}

static int conn_recv_h2(h2_conn *h, const uint8_t *data, size_t len)
{
	if (h->closing)
		return 0; /* after our GOAWAY for misbehaviour, nothing more is read */
	h->last_recv = reactor_now(h->e->r);
	conn_scan(h, data, len);
	ssize_t n = h->closing ? 0 : nghttp2_session_mem_recv(h->ng, data, len);
	reactor_conn_want_send(h->io);
	return n < 0 ? -EPROTO : 0;
}

static int conn_recv(reactor_conn *io, const uint8_t *data, size_t len)
{
	h2_conn *h = reactor_conn_user(io);
	if (!h)
		return -ECONNRESET;
	handshake_over(h); /* plaintext arrives once TLS is established */
	if (h->proto == PROTO_SNIFF) {
		enum conn_proto p = conn_sniff(h, data, len);
		if (p == PROTO_SNIFF)
			return 0;
		h->proto = p;
		metrics_conn_open(h->e->metrics, p == PROTO_H1);
		if (p == PROTO_H1 && http1_attach(h))
			return -ENOMEM;
		/* The preface's first bytes, held while they matched. */
		if (h->nsniffed) {
			size_t n = h->nsniffed;
			h->nsniffed = 0;
			int rc = p == PROTO_H1 ? http1_recv(h, h->sniffed, n)
					       : conn_recv_h2(h, h->sniffed, n);
			if (rc)
				return rc;
		}
		reactor_conn_want_send(io); /* HTTP/2: our SETTINGS */
	}
	if (h->proto == PROTO_H1)
		return http1_recv(h, data, len);
	return conn_recv_h2(h, data, len);
}

static void conn_closed(reactor_conn *io, int err)
{
	(void)err;
	h2_conn *h = reactor_conn_user(io);
	if (h)
		conn_destroy(h);
}

static const reactor_conn_ops conn_ops = {
	.on_recv = conn_recv,
	.produce = conn_produce,
	.on_close = conn_closed,
};

static void endpoint_accept(h2_endpoint *e, int fd)
{
	uint32_t max = e->s->o.max_tls_handshakes;
	if (e->s->o.tls && max && e->handshaking >= max) {
		close(fd); /* nothing to say it in before a handshake */
		return;
	}
	h2_conn *h = conn_new(e);
	if (!h) {
		close(fd);
		return;
	}
	socklen_t len = sizeof(h->peer_addr);
	if (getpeername(fd, (struct sockaddr *)&h->peer_addr, &len) == 0)
		sock_format_addr((struct sockaddr *)&h->peer_addr, h->peer, sizeof(h->peer));
	h->io = reactor_conn_new(e->r, fd, &conn_ops, h);
	if (!h->io) {
		close(fd);
		conn_destroy(h);
		return;
	}
	if (e->s->o.tls) {
		tls_conn *t = tls_conn_new(e->s->o.tls, NULL);
		if (!t) {
			reactor_conn_abort(h->io, -ENOMEM);
			return;
		}
		reactor_conn_set_tls(h->io, t, false);
		h->handshaking = true;
		e->handshaking++;
	}
	h->accepted_at = h->last_recv = h->idle_since = h->progress_at = reactor_now(e->r);
	/* Over a cap the peer still hears why (GOAWAY) rather than seeing a bare reset. */
	int adm = admit_take(e->s->admit, (struct sockaddr *)&h->peer_addr);
	if (adm == ADMIT_OK)
		h->admitted = true;
	else
		conn_terminate(h, NGHTTP2_ENHANCE_YOUR_CALM,
			       adm == ADMIT_PEER ? "too many connections from this address"
						 : "too many connections");
	conn_schedule(h);
	/* Our SETTINGS; with HTTP/1.1 on the port, once the first bytes said HTTP/2. */
	if (h->proto == PROTO_H2)
		reactor_conn_want_send(h->io);
}

static void listener_accept(reactor *r, int fd, void *user)
{
	(void)r;
	endpoint_accept(user, fd);
}

const reactor_listener_ops h2_endpoint_listener_ops = {.on_accept = listener_accept};

void h2_endpoint_goaway(h2_endpoint *e)
{
	e->goaway = true;
	list_each (it, &e->conns) {
		h2_conn *h = container_of(it, h2_conn, link);
		if (h->proto == PROTO_H1)
			http1_goaway(h);
		if (h->goaway_sent || h->proto != PROTO_H2)
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
	list_each (it, &e->conns) {
		h2_conn *h = container_of(it, h2_conn, link);
		list_each_safe (ci, &h->calls)
			call_fail(container_of(ci, call, link), GRPC_UNAVAILABLE,
				  "server shutting down");
		if (h->io)
			reactor_conn_close(h->io);
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
	if (h->proto == PROTO_SNIFF) {
		enum conn_proto p = conn_sniff(h, data, len);
		if (p == PROTO_SNIFF)
			return 0;
		h->proto = p;
		if (p == PROTO_H1 && http1_attach(h))
			return -ENOMEM;
		if (h->nsniffed) {
			/* Fed again below with the held bytes in front. */
			uint8_t held[sizeof(h->sniffed)];
			size_t n = h->nsniffed;
			memcpy(held, h->sniffed, n);
			h->nsniffed = 0;
			if (h2_conn_feed(h, held, n))
				return -EPROTO;
		}
	}
	if (h->proto == PROTO_H1) {
		if (http1_recv(h, data, len))
			h->broken = true;
		http1_produce(h);
		return h->broken ? -EPROTO : 0;
	}
	conn_scan(h, data, len);
	if (h->closing || nghttp2_session_mem_recv(h->ng, data, len) < 0)
		h->broken = true;
	for (int round = 0; round < 8; round++) {
		if (session_drain_output(h->ng, h->keep))
			h->broken = true;
		if (!h->writable)
			break;
		run_writable(h);
	}
	return h->broken ? -EPROTO : 0;
}

void h2_conn_keep_output(h2_conn *h, buf *out) { h->keep = out; }

void h2_conn_free_detached(h2_conn *h) { conn_destroy(h); }
