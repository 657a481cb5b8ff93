/* gRPC messages on HTTP/2 DATA, both directions (gRPC's Length-Prefixed-Message; "frame"
 * in this tree means an HTTP/2 frame alone): each message is a 1-byte compressed flag, a
 * 4-byte big-endian length, then the payload. The reader is fed DATA bytes in arbitrary
 * pieces and yields whole messages; the size limit is checked on the 5-byte prefix,
 * before any allocation for the payload. The queue holds prefixed messages until nghttp2
 * pulls them into DATA frames. */
#ifndef H2_GRPCMSG_H
#define H2_GRPCMSG_H
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

#define GRPCMSG_PREFIX_LEN 5

typedef struct grpcmsg_reader {
	uint8_t prefix[GRPCMSG_PREFIX_LEN];
	size_t prefix_have;
	bool in_body;
	bool compressed;
	uint32_t need; /* payload length of the message being read */
	buf body;
	size_t max_len;
} grpcmsg_reader;

enum grpcmsg_read_result {
	GRPCMSG_MESSAGE = 1,	/* *msg, *len, *compressed set: valid until the next call */
	GRPCMSG_NEED_MORE = 0,	/* all input consumed, no whole message yet */
	GRPCMSG_TOO_LARGE = -1, /* declared length over max_len */
	GRPCMSG_BAD_FLAG = -2,	/* flag byte not 0 or 1 */
	GRPCMSG_NOMEM = -3,
};

void grpcmsg_reader_init(grpcmsg_reader *d, size_t max_len);
void grpcmsg_reader_free(grpcmsg_reader *d);
/* Consumes input from *data and *len (advancing them) until one message is whole or the
 * input ends. Call again with the rest while it returns GRPCMSG_MESSAGE. */
int grpcmsg_reader_next(grpcmsg_reader *d, const uint8_t **data, size_t *len, const uint8_t **msg,
			size_t *msg_len, bool *compressed);
/* True when bytes of a message are buffered (a stream ending now is truncated). */
bool grpcmsg_reader_partial(const grpcmsg_reader *d);
/* Bytes of memory the reader holds for a partial message. */
static inline size_t grpcmsg_reader_held(const grpcmsg_reader *d) { return d->body.cap; }
/* Writes the 5-byte prefix for a payload of len bytes. */
void grpcmsg_prefix(uint8_t out[GRPCMSG_PREFIX_LEN], bool compressed, uint32_t len);

/* Prefixed messages waiting for nghttp2 to pull them into DATA frames. */
typedef struct grpcmsg_queue {
	buf data;
	size_t off;
} grpcmsg_queue;

/* Appends one message with its prefix, gzip-compressed when gzip is set. */
int grpcmsg_queue_push(grpcmsg_queue *q, const uint8_t *msg, size_t len, bool gzip);
/* Appends one message (not compressed) packed straight into the queue: no copy between
 * the packing and the queue. len is protobuf_c_message_get_packed_size(msg). */
int grpcmsg_queue_push_packed(grpcmsg_queue *q, const ProtobufCMessage *msg, size_t len);
/* Copies up to cap queued bytes to out; returns how many. */
size_t grpcmsg_queue_pull(grpcmsg_queue *q, uint8_t *out, size_t cap);
/* The queued bytes (grpcmsg_queue_pending of them), valid until the queue changes: for a
 * sender that copies them out itself, then grpcmsg_queue_skip. */
static inline const uint8_t *grpcmsg_queue_head(const grpcmsg_queue *q)
{
	return q->data.data + q->off;
}
/* Drops n bytes (at most the pending ones) from the head. */
void grpcmsg_queue_skip(grpcmsg_queue *q, size_t n);
size_t grpcmsg_queue_pending(const grpcmsg_queue *q);
void grpcmsg_queue_free(grpcmsg_queue *q);

/* Converts a message to serialized bytes: stack buffer when small. Caller frees *out
 * when it differs from stackbuf. */
int grpcmsg_pack(const ProtobufCMessage *msg, uint8_t *stackbuf, size_t stackcap, uint8_t **out,
		 size_t *len);

#endif
