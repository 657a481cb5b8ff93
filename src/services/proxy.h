/* Forwarding one unary call to a gRPC server (this node itself over loopback, later a peer
 * or a registered service's handler) through the node's one client (h2/client.h). Each
 * reactor keeps one channel per target, made on first use and closed when the reactor
 * drains; everything runs on the calling reactor's thread. */
#ifndef SERVICES_PROXY_H
#define SERVICES_PROXY_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "h2/call.h"
#include "h2/client.h"
#include "io/reactor.h"

typedef struct proxy_call proxy_call;

/* The call is over: code is a grpc-status; on OK, resp holds the one response message
 * (valid during the callback). Runs once per started call, never inside proxy_start. */
typedef void (*proxy_done_fn)(void *user, int code, const char *message, const uint8_t *resp,
			      size_t len);

typedef struct proxy_args {
	const char *target; /* host:port (a numeric host or localhost) */
	const char *path;   /* /pkg.Service/Method */
	const uint8_t *request;
	size_t request_len;
	int64_t deadline_ns; /* absolute, on the monotonic clock; INT64_MAX: none */
	const call_md *md;   /* metadata to send */
	size_t nmd;
	size_t max_message_bytes; /* of the response */
	proxy_done_fn done;
	void *user;
	/* Optional: set before done runs, true when the call failed surely without running on
	 * the target (client_call_unprocessed), so that it may go elsewhere. */
	bool *unprocessed;
	/* The target is a Collector node (this one or a peer): over TLS when the node's own
	 * client has it (proxy_set_node_tls). Else (a handler process) plaintext. */
	bool node;
} proxy_args;

/* The TLS context of calls to nodes (a client context presenting the node's certificate);
 * NULL: plaintext. Set before the reactors start; it outlives them. */
struct tls_ctx;
void proxy_set_node_tls(struct tls_ctx *t);

/* The authorization header value ("Bearer ...") of calls to nodes (auth.h,
 * auth_node_credential); NULL: none. Calls to a node carry it unless their md names an
 * authorization of their own (route.c's loopback carries its caller's); no call carries
 * a client's authorization on to a handler or a peer. Set before the reactors start. */
void proxy_set_node_credential(const char *authorization);
/* md with the node credential added when node (into extra, room for n + 1), else md. */
const call_md *proxy_md_for_node(const call_md *md, size_t n, bool node, call_md *extra,
				 size_t *nout);

/* Starts the call on reactor r (the calling thread's). NULL when it cannot start (a bad
 * target, no memory, the reactor draining): done is not called then. */
proxy_call *proxy_start(reactor *r, const proxy_args *a);
/* The reactor's channel to target (host:port), made on first use; NULL when it cannot be
 * (a bad target, no memory, the reactor draining). On r's thread; the channel stays the
 * cache's (it may close when the reactor drains or the cache evicts it, ending its calls
 * CANCELLED). */
client_channel *proxy_channel(reactor *r, const char *target, size_t max_message_bytes, bool node);

/* A whole call forwarded, message by message in both directions (proxy_stream.c), to a
 * gRPC server: the method that the h2 server's fallback (h2_server_set_fallback) gives
 * for call c, with c set up to go to target at path in namespace ns (all copied into c's
 * arena). It carries the remaining deadline, the client's custom metadata, ns as
 * x-collector-namespace (so that a node on the far side validates the call where this
 * one did) and x-collector-hops (one more; refused at the limit), passes the server's metadata,
 * messages and status back, cancels the forwarded call when c is cancelled, and reads from one side
 * only as fast as the other side takes (no message is buffered beyond the HTTP/2 windows and the
 * calls' high-water marks). NULL when out of memory. */
const method *proxy_forward_method(call *c, method_kind kind, const char *target, const char *path,
				   const char *ns, size_t max_message_bytes, bool node);

/* Cancels a started call: done(CANCELLED) follows at once. */
void proxy_cancel(proxy_call *p);
/* The reactor's shutdown began: its channels close (their calls end CANCELLED) and no new
 * call starts, so that the reactor's loop can end. On the reactor's thread. */
void proxy_reactor_drain(reactor *r);
/* After the reactor's loop ended: frees what proxy kept for it. */
void proxy_reactor_exit(reactor *r);

#endif
