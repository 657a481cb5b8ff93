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
	pool *pool;	     /* decodes large and compressed requests; NULL: all on the reactor */
	_Atomic size_t held; /* message bytes buffered by every connection (o.max_buffered_bytes) */
};

struct h2_endpoint {
	h2_server *s;
	reactor *r;
	list_node conns;
	size_t nconns;
	size_t active_calls;
	bool goaway;
	size_t held;	    /* this endpoint's share of s->held */
	timer budget_timer; /* sheds connections while the node is over its budget */
};

struct h2_conn {
	h2_endpoint *e;
	reactor_conn *io; /* NULL for a detached (fuzzing) connection */
	buf *keep;	  /* detached: where its output goes (NULL: nowhere) */
	nghttp2_session *ng;
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

struct call {
	int refs;
	h2_conn *conn;	    /* NULL once the stream is gone */
	h2_conn *zombie_of; /* the stream is gone, this connection still counts the call */
	list_node link;	    /* in conn->calls, then in zombie_of->zombies */
	int32_t stream_id;
	const method *m;
	reactor *r;
	arena arena;
	void *user;
	void *auth;	   /* the authorizer's (call_set_auth) */
	bool auth_pending; /* the authorizer waits for the first request message */

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

/* conn_limits.c */
bool server_over_budget(const h2_server *s);
/* Arms the endpoint's budget timer for its whole life. 0 or -ENOMEM. */
int endpoint_budget_start(h2_endpoint *e);
void conn_held_add(h2_conn *h, size_t n);
void conn_held_sub(h2_conn *h, size_t n);
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
