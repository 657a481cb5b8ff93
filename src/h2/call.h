/* The call API: what a service handler sees of one gRPC call on the server side.
 *
 * Lifetime: the server holds a reference from the call's start until its stream closes.
 * A handler that finishes the call later (after pool work, a timer, another call) takes
 * its own reference with call_ref and drops it with call_unref when done; the object
 * stays valid, but once call_done() is true every send is a no-op. All functions run on
 * the call's reactor thread. */
#ifndef H2_CALL_H
#define H2_CALL_H
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "h2/method.h"
#include "h2/status.h"
#include "io/reactor.h"

typedef struct call_md {
	const char *name; /* lowercase, NUL-terminated */
	size_t name_len;
	const uint8_t *value; /* -bin values are already base64-decoded */
	size_t value_len;
} call_md;

void call_ref(call *c);
void call_unref(call *c);

const method *call_method(const call *c);
/* The method's ctx (the service's state). */
void *call_ctx(const call *c);
void call_set_user(call *c, void *user);
void *call_user(const call *c);
reactor *call_reactor(const call *c);
/* The authorizer's per-call state (h2_server_set_auth): who the caller is, for handlers
 * that record it. Lives in the call's arena or longer. */
void call_set_auth(call *c, void *auth);
void *call_auth(const call *c);
/* The authorizer's memo on the call's connection (NULL: none yet, or the stream is gone):
 * what it concluded about the credential an earlier call there carried, so that the next
 * call with the same one costs a comparison instead of a digest and a lookup. Setting one
 * frees the one before with its free_fn; the connection frees the last when it ends. */
void *call_conn_memo(const call *c);
void call_set_conn_memo(call *c, void *memo, void (*free_fn)(void *));
/* Scratch memory freed when the call object goes (arena: no individual free). */
void *call_alloc(call *c, size_t size);

/* Request metadata (custom headers only, reserved ones excluded). */
size_t call_md_count(const call *c);
const call_md *call_md_at(const call *c, size_t i);
/* First value for name (lowercase), or NULL. */
const call_md *call_md_get(const call *c, const char *name);
/* Absolute deadline on the monotonic clock (ns); INT64_MAX when the client set none. */
int64_t call_deadline(const call *c);
/* Whether the most recent request message arrived compressed. */
bool call_request_compressed(const call *c);
/* The request's :path (not NUL-terminated past *len for HTTP/1.1 query strings). */
const char *call_path(const call *c, size_t *len);
/* The peer's address as host:port. */
const char *call_peer(const call *c);
/* The subject of the client's certificate, one line ("/CN=alice"), verified against
 * --tls-client-ca by the handshake (a server without one asks for no certificate); ""
 * without one. */
const char *call_peer_subject(const call *c);

/* Compress response messages with gzip when the client accepts it. */
void call_set_response_compression(call *c, bool on);
/* Metadata to send: initial before the first message or the headers go out, trailing
 * before call_finish. -bin names get base64 values; others must be printable ASCII.
 * 0, -EINVAL (bad key or value), -EALREADY (too late), -ENOMEM. */
int call_add_initial_md(call *c, const char *name, const void *value, size_t len);
int call_add_trailing_md(call *c, const char *name, const void *value, size_t len);

/* Queues one response message. 0; -ECANCELED when the call is done (or was just ended
 * with RESOURCE_EXHAUSTED because its output went over the buffer limits, ignoring
 * would_block); -EMSGSIZE when it is larger than the limit; -ENOMEM. */
int call_send(call *c, const ProtobufCMessage *msg);
int call_send_raw(call *c, const uint8_t *data, size_t len);
/* True when the call holds more unsent output than its high-water mark: a streaming
 * handler should stop and continue from on_writable. */
bool call_send_would_block(const call *c);
/* Flow control of the request side, for a handler that passes messages on to a slower
 * consumer: while paused, no request message reaches the handler and the bytes that still
 * arrive are not given back to the stream's HTTP/2 window, so the client stops once that
 * window (1 MiB) is full. Resuming delivers what arrived meanwhile, at once (the handler's
 * callbacks may run inside call_resume_input), then a half-close that waited. */
void call_pause_input(call *c);
void call_resume_input(call *c);
/* Ends the call with a status (message may be NULL). Queued messages go first. */
void call_finish(call *c, int code, const char *message);
/* printf-style status message. */
void call_finishf(call *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* call_send then call_finish: OK, or the status of the send's failure (RESOURCE_EXHAUSTED
 * for a response over the limit or out of memory, INTERNAL otherwise). */
void call_reply(call *c, const ProtobufCMessage *resp);
/* The same with a serialized response. */
void call_reply_raw(call *c, const uint8_t *data, size_t len);
/* Finished by the handler or cancelled. */
bool call_done(const call *c);
bool call_cancelled(const call *c);

#endif
