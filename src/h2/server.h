/* gRPC server over HTTP/2 (nghttp2): turns accepted connections into calls dispatched
 * through a method table. One h2_server is shared by all reactors (read-only); each
 * reactor attaches an endpoint that owns that reactor's connections. */
#ifndef H2_SERVER_H
#define H2_SERVER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "h2/asset.h"
#include "h2/method.h"
#include "io/pool.h"
#include "io/reactor.h"

/* Limits and timeouts (README, Security). Times are nanoseconds; 0 turns a timeout or a
 * cap off unless said otherwise. */
typedef struct h2_server_opts {
	size_t max_message_bytes;	 /* request and response message limit */
	uint32_t max_concurrent_streams; /* SETTINGS_MAX_CONCURRENT_STREAMS */
	uint32_t max_header_list_bytes;	 /* SETTINGS_MAX_HEADER_LIST_SIZE, enforced */
	size_t stream_send_high_water;	 /* per-call buffered output before would_block */
	size_t conn_buffer_bytes;	 /* per connection, receive side and send side each */
	size_t max_buffered_bytes;	 /* node-wide, both sides (0: no budget) */
	int64_t body_timeout;		 /* a partial request message that stops growing */
	uint32_t max_calls_per_conn;	 /* handlers alive, reset streams' included */
	size_t max_conns, max_conns_per_peer;
	uint32_t reset_burst, reset_rate; /* nghttp2's RST_STREAM token bucket */
	uint32_t max_continuations;	  /* CONTINUATION frames per header block */
	uint32_t flood_burst, flood_rate; /* frames that ask nothing (frame.h) */
	int64_t handshake_timeout;	  /* preface, SETTINGS and its ACK */
	/* TLS handshakes in progress per reactor; a connection beyond it is closed at once
	 * (0: no bound). Handshakes cost CPU before anything is known of the peer. */
	uint32_t max_tls_handshakes;
	int64_t header_timeout;	   /* a header block, HEADERS to END_HEADERS */
	int64_t idle_timeout;	   /* no calls for this long: GOAWAY and close */
	int64_t keepalive_time;	   /* silence before we PING */
	int64_t keepalive_timeout; /* PING unanswered this long: close */
	int64_t ping_min_interval; /* gRPC ping policy (ping_policy.h) */
	uint32_t ping_max_strikes;
	int64_t send_stall_timeout; /* output waiting with no progress this long: close */
	bool require_te_trailers;   /* refuse requests without te: trailers */
	bool http1; /* HTTP/1.1 on the same port (http1.h), told apart by the preface or ALPN */
	/* Origins whose browsers may call (CORS), comma-separated, "*" for any; NULL or "":
	 * none. Outlives the server. */
	const char *cors_origins;
	/* Files answered to GET (web.c: ETag, If-None-Match, a Content-Security-Policy that
	 * admits the node's own scripts alone); NULL: none, such GETs get 404. Outlive the
	 * server. */
	const h2_asset *assets;
	size_t n_assets;
	/* TLS under every connection (io/tls.h; ALPN h2, and http/1.1 with http1); NULL:
	 * plaintext. Outlives the server. */
	struct tls_ctx *tls;
} h2_server_opts;

void h2_server_opts_default(h2_server_opts *o);

typedef struct h2_server h2_server;
typedef struct h2_endpoint h2_endpoint;

/* methods must outlive the server. */
h2_server *h2_server_new(const method_table *methods, const h2_server_opts *opts);
void h2_server_free(h2_server *s);
/* A check of every call before its handler runs (the registry's validation): gets the call
 * (for its metadata), its path and whether the method table serves it. Returns GRPC_OK to
 * let the call go on, or the status code that ends it, with msg[0..cap) the message.
 * Runs on every reactor thread at once. Set before the reactors start. */
typedef int (*h2_call_gate)(void *ctx, call *c, const char *path, size_t path_len, bool served,
			    char *msg, size_t cap);
void h2_server_set_gate(h2_server *s, h2_call_gate gate, void *ctx);
/* Supplies the method of a call whose path the table does not serve (a registered service
 * served by another process, which a service forwards): NULL when there is none. Runs before
 * the gate, which then sees the call as served; the method must outlive the call (it may
 * keep per-call state with call_set_user or call_alloc). Runs on every reactor thread at
 * once. Set before the reactors start. */
typedef const method *(*h2_call_fallback)(void *ctx, call *c, const char *path, size_t path_len);
void h2_server_set_fallback(h2_server *s, h2_call_fallback fn, void *ctx);
/* What the plain-HTTP side of the port (HTTP/1.1 and HTTP/2 alike: /healthz, /metrics,
 * the Connect protocol; web.h) needs from the layers above, which h2 does not see. Every
 * function is optional and runs on any reactor thread at once. */
typedef struct h2_web_hooks {
	/* /healthz: false while the node is going down (503). Without it: serving until the
	 * endpoint's GOAWAY. */
	bool (*serving)(void *ctx);
	/* /metrics: appends the Prometheus text of the layers above (pool, store...). */
	void (*metrics)(void *ctx, buf *out);
	/* Connect with JSON, in two steps so that a big document is transcoded on the pool
	 * rather than on a reactor. json_prepare runs on c's reactor once its request body is
	 * in (json[0..len)) and returns c's transcoding state (memory of the call:
	 * call_alloc), or NULL with a status code in *code and err[0..cap). json_transcode
	 * touches no call and may run on a pool thread: it turns the request (response false)
	 * from JSON into protobuf bytes, or the response (true) from protobuf bytes into JSON,
	 * appending to out; GRPC_OK or a status code with err. Without them, JSON requests
	 * are answered UNIMPLEMENTED. */
	void *(*json_prepare)(void *ctx, call *c, const uint8_t *json, size_t len, int *code,
			      char *err, size_t cap);
	int (*json_transcode)(void *ctx, void *state, bool response, const uint8_t *in, size_t len,
			      buf *out, char *err, size_t cap);
	void *ctx;
} h2_web_hooks;
/* Copies *hooks. Set before the reactors start. */
void h2_server_set_web(h2_server *s, const h2_web_hooks *hooks);
/* The authorizer (who may call what): one check on the call path of every call, before
 * its handler does any work. It runs when the headers are in (req NULL): first with the
 * method the table serves (m NULL: none; then only the credential can be judged), and
 * again with the method the fallback supplies, if any; both before the gate and on_start.
 * When the namespace the call acts in is in the request (method_access.ns_field), it sets
 * *need_request and runs once more with the first decoded request message, before the
 * handler sees it (decoding is bounded and does nothing; an unknown credential was
 * refused before any byte of a message was read). Returns GRPC_OK, or the status that
 * ends the call with msg[0..cap). Runs on every reactor thread at once; set before the
 * reactors start. */
typedef int (*h2_call_auth)(void *ctx, call *c, const method *m, const ProtobufCMessage *req,
			    bool *need_request, char *msg, size_t cap);
void h2_server_set_auth(h2_server *s, h2_call_auth fn, void *ctx);
/* The pool that decodes large and compressed requests (decode.h), so that no reactor is
 * held by one; without one (tests, fuzzers), everything is decoded on the reactor. */
void h2_server_set_pool(h2_server *s, pool *p);

/* Per reactor; call on r's thread. */
h2_endpoint *h2_endpoint_new(h2_server *s, reactor *r);
/* Aborts remaining connections; call on r's thread after the loop stopped. */
void h2_endpoint_free(h2_endpoint *e);
/* Listener callbacks that hand accepted sockets to the endpoint (user = endpoint). */
extern const reactor_listener_ops h2_endpoint_listener_ops;
/* Graceful shutdown: GOAWAY to every connection, no new streams; running calls go on. */
void h2_endpoint_goaway(h2_endpoint *e);
/* Cancels every running call (end of the grace period) and closes connections. */
void h2_endpoint_close_all(h2_endpoint *e);
size_t h2_endpoint_active_calls(const h2_endpoint *e);
size_t h2_endpoint_conn_count(const h2_endpoint *e);

/* A connection with no socket, for fuzzers and tests: feed it bytes, its output is
 * discarded or kept. Returns NULL on allocation failure. */
typedef struct h2_conn h2_conn;
h2_conn *h2_conn_new_detached(h2_endpoint *e);
/* <0 once the connection is broken (the fuzzer then frees it). */
int h2_conn_feed(h2_conn *h, const uint8_t *data, size_t len);
/* From now on h's output is appended to out (the caller's), for a test to read. */
void h2_conn_keep_output(h2_conn *h, buf *out);
void h2_conn_free_detached(h2_conn *h);

#endif
