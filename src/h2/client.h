/* gRPC client over HTTP/2 on a reactor: channels keep one connection to a target and
 * reuse it for every call (reconnecting when it is gone); calls are unary or streaming
 * with deadlines, metadata, cancellation and gzip. Everything runs on the channel's
 * reactor thread. */
#ifndef H2_CLIENT_H
#define H2_CLIENT_H
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "h2/call.h"
#include "io/reactor.h"

typedef struct h2_channel h2_channel;
typedef struct ccall ccall;

typedef struct ccall_ops {
	/* Response headers arrived (initial metadata readable). Optional. */
	void (*on_headers)(ccall *c);
	/* One response message (already decompressed), valid during the call. Peer bytes:
	 * decode them with pbdecode (base/pbdecode.h), never protobuf-c's unpack alone. */
	void (*on_message)(ccall *c, const uint8_t *data, size_t len);
	/* The call is over. Trailing metadata is readable now; c is freed on return. */
	void (*on_done)(ccall *c, int code, const char *message);
} ccall_ops;

typedef struct ccall_args {
	const char *path;      /* "/pkg.Service/Method" */
	int64_t timeout_ns;    /* 0: no deadline */
	const call_md *md;     /* custom metadata; -bin values are raw bytes */
	size_t nmd;
	bool compress;	       /* gzip request messages */
	const ccall_ops *ops;
	void *user;
} ccall_args;

/* target: "host:port" with a numeric host or localhost. NULL on a bad target. */
h2_channel *h2_channel_new(reactor *r, const char *target, size_t max_message_bytes);
/* Cancels the channel's calls (their on_done runs) and closes its connection. */
void h2_channel_free(h2_channel *ch);

/* Starts a call; headers go out at once. NULL on a bad argument or no memory. */
ccall *ccall_start(h2_channel *ch, const ccall_args *a);
/* Queues one request message. 0; -ECANCELED once the call is over; -EMSGSIZE. */
int ccall_send(ccall *c, const uint8_t *data, size_t len);
int ccall_send_pb(ccall *c, const ProtobufCMessage *msg);
/* No more request messages. */
void ccall_half_close(ccall *c);
/* RST_STREAM(CANCEL); on_done(CANCELLED) follows at once. */
void ccall_cancel(ccall *c);
void *ccall_user(const ccall *c);
/* Response metadata: initial (headers) and trailing. */
size_t ccall_md_count(const ccall *c, bool trailing);
const call_md *ccall_md_at(const ccall *c, bool trailing, size_t i);
const call_md *ccall_md_get(const ccall *c, bool trailing, const char *name);
/* Whether the last response message came compressed. */
bool ccall_response_compressed(const ccall *c);

/* A channel with no socket, for fuzzers: feed server bytes; output is discarded. */
h2_channel *h2_channel_new_detached(reactor *r, size_t max_message_bytes);
int h2_channel_feed(h2_channel *ch, const uint8_t *data, size_t len);

#endif
