/* gRPC client over HTTP/2 on a reactor: channels keep one connection to a target and
 * reuse it for every call (reconnecting when it is gone); calls are unary or streaming
 * with deadlines, metadata, cancellation and gzip. Everything runs on the channel's
 * reactor thread. A client call is a client_call (client_call_send, ...), the sibling of
 * the server's call (call_send, call.h): the module's prefix says which side. */
#ifndef H2_CLIENT_H
#define H2_CLIENT_H
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "h2/call.h"
#include "io/reactor.h"

typedef struct client_channel client_channel;
typedef struct client_call client_call;

typedef struct client_call_ops {
	/* Response headers arrived (initial metadata readable). Optional. */
	void (*on_headers)(client_call *c);
	/* One response message (already decompressed), valid during the call. Peer bytes:
	 * decode them with pbdecode (base/pbdecode.h), never protobuf-c's unpack alone. */
	void (*on_message)(client_call *c, const uint8_t *data, size_t len);
	/* The call is over. Trailing metadata is readable now; c is freed on return. */
	void (*on_done)(client_call *c, int code, const char *message);
	/* Request output queued past the high-water mark (client_call_send_would_block) fell
	 * below half of it. Optional. */
	void (*on_writable)(client_call *c);
} client_call_ops;

typedef struct client_call_args {
	const char *path;   /* "/pkg.Service/Method" */
	int64_t timeout_ns; /* 0: no deadline */
	const call_md *md;  /* custom metadata; -bin values are raw bytes */
	size_t nmd;
	bool compress; /* gzip request messages */
	const client_call_ops *ops;
	void *user;
} client_call_args;

/* target: "host:port" with a numeric host or localhost. NULL on a bad target. */
client_channel *client_channel_new(reactor *r, const char *target, size_t max_message_bytes);
/* The same over TLS (io/tls.h; a client context, ALPN h2): tls must outlive the channel. */
struct tls_ctx;
client_channel *client_channel_new_tls(reactor *r, const char *target, size_t max_message_bytes,
				       struct tls_ctx *tls);
/* Cancels the channel's calls (their on_done runs) and closes its connection. */
void client_channel_free(client_channel *ch);

/* Starts a call; headers go out at once. NULL on a bad argument or no memory. */
client_call *client_call_start(client_channel *ch, const client_call_args *a);
/* Queues one request message. 0; -ECANCELED once the call is over; -EMSGSIZE. */
int client_call_send(client_call *c, const uint8_t *data, size_t len);
int client_call_send_pb(client_call *c, const ProtobufCMessage *msg);
/* True when the call holds more unsent request bytes than its high-water mark (the server
 * reads slowly): a caller passing a stream on should stop and continue from on_writable. */
bool client_call_send_would_block(client_call *c);
/* Flow control of the response side: while paused, no response message reaches on_message
 * and arriving bytes are not given back to the stream's window, so the server stops once
 * that window (1 MiB) is full; the end of the call waits behind them. Resuming delivers
 * them at once (ops may run inside client_call_resume, on_done included). */
void client_call_pause(client_call *c);
void client_call_resume(client_call *c);
/* No more request messages. */
void client_call_half_close(client_call *c);
/* RST_STREAM(CANCEL); on_done(CANCELLED) follows at once. */
void client_call_cancel(client_call *c);
void *client_call_user(const client_call *c);
/* Response metadata: initial (headers) and trailing. */
size_t client_call_md_count(const client_call *c, bool trailing);
const call_md *client_call_md_at(const client_call *c, bool trailing, size_t i);
const call_md *client_call_md_get(const client_call *c, bool trailing, const char *name);
/* In on_done: whether the call surely never ran on the server (no connection, or the
 * stream refused), so that it may be retried elsewhere without running twice. */
bool client_call_unprocessed(const client_call *c);
/* Whether the response was trailers-only (one header block, no messages): its metadata,
 * read as initial, is then what the server meant as trailing. */
bool client_call_trailers_only(const client_call *c);
/* Whether the last response message came compressed. */
bool client_call_response_compressed(const client_call *c);

/* A channel with no socket, for fuzzers: feed server bytes; output is discarded. */
client_channel *client_channel_new_detached(reactor *r, size_t max_message_bytes);
int client_channel_feed(client_channel *ch, const uint8_t *data, size_t len);

#endif
