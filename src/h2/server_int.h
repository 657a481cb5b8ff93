/* What the server's files share (server.c: sessions and the nghttp2 callbacks; call.c:
 * the call object and its API; call_in.c: the request path; conn_limits.c: timers,
 * floods and the memory budget) and nothing else includes. */
#ifndef H2_SERVER_INT_H
#define H2_SERVER_INT_H
#include <nghttp2/nghttp2.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "base/arena.h"
#include "base/buf.h"
#include "base/list.h"
#include "h2/admit.h"
#include "h2/call.h"
#include "h2/decode.h"
#include "h2/frame.h"
#include "h2/grpcmsg.h"
#include "h2/metadata.h"
#include "h2/nvlist.h"
#include "h2/ping_policy.h"
#include "h2/rate_limit.h"
#include "h2/server.h"
#include "h2/session.h"

struct h2_server {
	const method_table *methods;
	h2_server_opts o;
	nghttp2_session_callbacks *cbs;
	nghttp2_option *opt;
	admit *admit;
	h2_call_gate gate;
	void *gate_ctx;
	h2_call_fallback fallback;
	void *fallback_ctx;
	h2_call_auth auth;
	void *auth_ctx;
	pool *pool; /* decodes large and compressed requests; NULL: all on the reactor */
	h2_web_hooks web;
	struct metrics_set *metrics; /* per-endpoint counters, summed at scrape time */
	_Atomic size_t held; /* message bytes buffered by every connection (o.max_buffered_bytes) */
};

struct h2_endpoint {
	h2_server *s;
	reactor *r;
	list_node conns;
	size_t nconns;
	size_t active_calls;
	bool goaway;
	size_t held;		    /* this endpoint's share of s->held */
	size_t handshaking;	    /* TLS handshakes in progress (max_tls_handshakes) */
	timer budget_timer;	    /* sheds connections while the node is over its budget */
	struct metrics_ep *metrics; /* this reactor's counters (metrics.h) */
};

/* What a connection speaks: HTTP/2 or HTTP/1.1 (http1.c), known from the client's first
 * bytes or from ALPN. Nothing is sent before that: our SETTINGS would be garbage to an
 * HTTP/1.1 client. */
enum conn_proto { PROTO_SNIFF, PROTO_H2, PROTO_H1 };

struct h2_conn {
	h2_endpoint *e;
	reactor_conn *io;    /* NULL for a detached (fuzzing) connection */
	buf *keep;	     /* detached: where its output goes (NULL: nowhere) */
	nghttp2_session *ng; /* NULL once the connection turned out to be HTTP/1.1 */
	enum conn_proto proto;
	bool handshaking;    /* TLS, counted in e->handshaking until it ends */
	uint8_t sniffed[24]; /* the first bytes while they still match the HTTP/2 preface */
	size_t nsniffed;
	struct http1_conn *h1; /* PROTO_H1 */
	void *auth_memo;       /* call_set_conn_memo */
	void (*auth_memo_free)(void *);
	list_node link;	   /* in e->conns */
	list_node calls;   /* streams with a call attached */
	list_node zombies; /* calls whose stream is gone but whose handler still holds them */
	size_t ncalls, nzombies;
	call *writable; /* calls to tell on_writable after this send */
	char peer[64];
	struct sockaddr_storage peer_addr;
	bool admitted; /* counted by the server's admit table */
	bool goaway_sent;
	bool closing; /* GOAWAY for misbehaviour or a timeout: input ignored, close once sent */
	bool broken;

	/* guards (frame.h, rate_limit.h, ping_policy.h) */
	frame_scan scan;
	rate_limit flood;
	ping_policy pings;
	size_t recv_held;      /* bytes of request messages its calls buffer (call_held) */
	size_t send_queued;    /* response bytes queued by its calls, not yet taken by nghttp2 */
	int64_t progress_at;   /* a request message's bytes arrived or response bytes left */
	int64_t body_check_at; /* a partial message may have stalled by then (0: none) */
	bool send_blocked;     /* over conn_buffer_bytes: calls were told to wait */

	/* times (reactor clock) */
	timer tick;
	int64_t accepted_at, last_recv, idle_since, header_block_since;
	int64_t ping_sent_at; /* our keepalive PING in flight, 0 if none */
	int64_t closing_at;
	bool got_settings, settings_acked;
	uint64_t sent_mark;  /* io bytes sent at the last progress check */
	int64_t stall_since; /* output waiting without progress since, 0 if none */
};

/* How a call's messages and status travel (connect.c): gRPC framing with trailers, or
 * the Connect protocol's unary form (one plain message in the body, the status as the
 * HTTP status and a JSON error body), or a plain HTTP answer with no handler (web.c). */
enum call_wire {
	WIRE_GRPC,
	WIRE_CONNECT_PROTO,
	WIRE_CONNECT_JSON,
	WIRE_GRPC_WEB,	    /* grpcweb.c */
	WIRE_GRPC_WEB_TEXT, /* the same in base64 */
	WIRE_PLAIN,
};

struct call {
	int refs;
	h2_conn *conn;	    /* NULL once the stream is gone */
	h2_conn *zombie_of; /* the stream is gone, this connection still counts the call */
	list_node link;	    /* in conn->calls, then in zombie_of->zombies */
	int32_t stream_id;
	const method *m;
	reactor *r;
	arena arena; /* its first block shares the call's allocation (call_new) */
	size_t alloc_cap;
	void *user;
	void *auth;	   /* the authorizer's (call_set_auth) */
	bool auth_pending; /* the authorizer waits for the first request message */

	/* request headers */
	const char *path;
	size_t path_len;
	bool is_post, is_get, is_options, grpc_content_type, te_trailers, headers_too_large,
		bad_metadata;
	enum call_wire wire;
	bool connect_encoded; /* a content-encoding other than identity (not supported) */
	bool over_call_cap;
	size_t header_bytes;
	md_list md;
	int64_t deadline;
	timer deadline_timer;
	enum { ENC_IDENTITY, ENC_GZIP, ENC_OTHER } req_encoding;
	const char *req_encoding_name;
	bool accept_gzip;

	/* request messages */
	grpcmsg_reader reader;
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
	/* Flow control (call_pause_input): DATA bytes that arrived while the handler paused
	 * input, not yet read and not yet given back to the stream's window. */
	bool input_paused, feeding;
	bool half_close_held; /* half-closed while held bytes were still unread */
	buf held;

	/* response */
	bool started, finished, cancelled;
	bool headers_submitted, compress_response;
	bool would_block;
	call *writable_next;
	bool on_writable_list;
	nv_list initial_md, trailing_md;
	grpcmsg_queue out;
	int status;
	const char *status_msg;

	/* Connect and plain answers: the request body, the response message, then the whole
	 * response (HTTP status, content type, body) once the call is finished. */
	buf body_in, resp_msg, body_out;
	size_t out_off; /* bytes of body_out taken by nghttp2 */
	int http_status;
	const char *resp_ctype;
	bool have_resp_msg;
	void *web_state;	   /* h2_web_hooks.json_prepare's */
	struct json_job *json_job; /* a JSON transcoding on the pool, NULL if none */
	bool resp_ready;	   /* Connect, plain: http_status, resp_ctype, body_out set */
	/* metrics: the method's row (metrics.h) and when the call began */
	uint32_t mrow;
	int64_t began;
	bool counted;
};

/* A message that arrived while an earlier one of its call was still being decoded. */
typedef struct pending_msg {
	struct pending_msg *next;
	size_t len;
	bool compressed;
	uint8_t data[];
} pending_msg;

static inline void conn_want_send(h2_conn *h)
{
	if (h->io)
		reactor_conn_want_send(h->io);
}

static inline size_t conn_live_calls(const h2_conn *h) { return h->ncalls + h->nzombies; }

/* call.c */
/* A call for a new stream of h, holding the server's reference. NULL: no memory. */
call *call_new(h2_conn *h, int32_t stream_id);
/* The stream is gone (closed, reset, or its connection died): the handler is told once,
 * the call counts against h until its handler lets go, and the server's reference goes. */
void call_detach(call *c);
/* An error found by this layer: the status goes out and the handler is told. */
void call_fail(call *c, int code, const char *message);

/* call_in.c */
/* The request's headers are in: checks, the method, the gate, the deadline, on_start. */
void call_start(h2_conn *h, call *c);
/* END_STREAM from the client: the single request or on_half_close, once every message
 * is handled. */
void call_half_close(call *c);
/* A Connect request's message was handed on after a wait (JSON on the pool): the
 * half-close goes on. */
void call_half_close_continue(call *c);
/* One whole gRPC message of the call, in arrival order. */
void call_message_in(call *c, const uint8_t *data, size_t len, bool compressed);
/* DATA bytes of the call: read into messages until they end, the call ends or its input
 * is paused. Returns the bytes read (the rest is the caller's to hold). */
size_t call_data_in(call *c, const uint8_t *data, size_t len);
/* Gives n bytes of the stream back to the peer's window (WINDOW_UPDATE). */
void call_consume(call *c, size_t n);
/* After DATA for c: its buffers against its connection's cap and the node's budget. */
void call_received(h2_conn *h, call *c);
/* Brings c's share of its connection's and the node's counts up to date. */
void call_account(call *c);
/* Drops what c holds of request messages (the call is being ended). */
void call_release_input(call *c);
void call_pending_free(call *c);

/* connect.c */
/* Request body bytes of a Connect call (whole, unframed), bounded by the message limit. */
void connect_body_in(call *c, const uint8_t *data, size_t len);
/* The body is complete: transcoded when JSON (on the pool when big), then handed on as
 * the call's one message, and the half-close goes on (call_half_close_continue). */
void connect_deliver(call *c);
/* A response message of a Connect call (unary: one). 0, -EMSGSIZE, -ENOMEM, -EPROTO. */
int connect_queue(call *c, const uint8_t *data, size_t len);
/* The call is finished (c->status): builds http_status, resp_ctype and body_out, on the
 * pool when a big response becomes JSON, then the response goes (connect_respond). */
void connect_finish(call *c);
/* The response is built: out it goes, on HTTP/1.1 or its stream. */
void connect_respond(call *c);
/* The stream is gone: a JSON job's result will be dropped. */
void connect_cancel(call *c);
/* The wire of a request content type; WIRE_PLAIN when it is none of ours. */
enum call_wire connect_wire_of(const uint8_t *v, size_t len);
/* connect-timeout-ms into a deadline on c. false: malformed. */
bool connect_timeout(call *c, const uint8_t *v, size_t len);

/* grpcweb.c */
bool grpcweb_is(const call *c);
/* The whole request body: its framed messages into the call's path. */
void grpcweb_deliver(call *c);
/* A response message, framed; the response goes whole at the end. 0, -EMSGSIZE, -ENOMEM,
 * -ENOBUFS (over the buffered output's bound). */
int grpcweb_queue(call *c, const uint8_t *data, size_t len);
/* The call is finished: messages and the trailer frame into body_out, then out. */
void grpcweb_finish(call *c);

/* web.c */
/* A request that is no call: GET /healthz, GET /metrics; anything else 404 (or 405).
 * Fills c->http_status, resp_ctype and body_out. */
void web_answer(h2_endpoint *e, call *c);
/* Calls add(arg, name, value) for each CORS header the response to c gets: none unless
 * its Origin is one of --cors-origin's. The strings live as long as c. */
void web_cors_headers(call *c, void (*add)(void *arg, const char *name, const char *value),
		      void *arg);
/* The reason phrase of an HTTP status. */
const char *web_reason(int status);

/* server.c: the response of a finished Connect or plain call goes out on its stream. */
void h2_submit_plain(call *c);

/* http1.c */
/* A connection's first bytes said HTTP/1.1: from now on http1.c owns it. <0: no memory. */
int http1_attach(h2_conn *h);
void http1_detach(h2_conn *h);
int http1_recv(h2_conn *h, const uint8_t *data, size_t len);
void http1_produce(h2_conn *h);
/* c, a call of this HTTP/1.1 connection, is finished: its response may go. */
void http1_call_finished(call *c);
void http1_schedule(h2_conn *h);
/* The endpoint is going down: no keep-alive from now on, idle connections close. */
void http1_goaway(h2_conn *h);

/* conn_limits.c */
bool server_over_budget(const h2_server *s);
/* Arms the endpoint's budget timer for its whole life. 0 or -ENOMEM. */
int endpoint_budget_start(h2_endpoint *e);
void conn_held_add(h2_conn *h, size_t n);
void conn_held_sub(h2_conn *h, size_t n);
/* Appends bytes to the connection's output (a detached one's keep buffer, or nowhere).
 * 0 or -ENOMEM. */
int conn_out(h2_conn *h, const void *data, size_t len);
/* nghttp2's send_data callback: a response DATA frame whose payload read_response left in
 * the call's queue (NO_COPY) goes from there to the output. */
int call_send_data(nghttp2_session *ng, nghttp2_frame *frame, const uint8_t *framehd, size_t length,
		   nghttp2_data_source *src, void *user);
void conn_send_add(h2_conn *h, size_t n);
void conn_send_sub(h2_conn *h, size_t n);
/* GOAWAY with a reason; no more input; closed once the GOAWAY is out. */
void conn_terminate(h2_conn *h, uint32_t code, const char *why);
/* Sees every frame header before nghttp2 does (floods, pings, header blocks). */
void conn_scan(h2_conn *h, const uint8_t *data, size_t len);
/* Arms the connection's one timer for its earliest deadline. */
void conn_schedule(h2_conn *h);
/* Output is waiting: starts watching for a peer that reads nothing. */
void conn_watch_stall(h2_conn *h);

#endif
