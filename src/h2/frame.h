/* gRPC message framing: each message is a 1-byte compressed flag, a 4-byte big-endian
 * length, then the payload. The deframer is fed DATA bytes in arbitrary pieces and
 * yields whole messages; the size limit is checked on the 5-byte prefix, before any
 * allocation for the payload. */
#ifndef H2_FRAME_H
#define H2_FRAME_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

#define GRPC_PREFIX_LEN 5

typedef struct deframer {
	uint8_t prefix[GRPC_PREFIX_LEN];
	size_t prefix_have;
	bool in_body;
	bool compressed;
	uint32_t need; /* payload length of the message being read */
	buf body;
	size_t max_len;
} deframer;

enum deframe_result {
	DEFRAME_MESSAGE = 1,	   /* *msg, *len, *compressed set: valid until the next call */
	DEFRAME_NEED_MORE = 0,	   /* all input consumed, no whole message yet */
	DEFRAME_TOO_LARGE = -1,	   /* declared length over max_len */
	DEFRAME_BAD_FLAG = -2,	   /* flag byte not 0 or 1 */
	DEFRAME_NOMEM = -3,
};

void deframer_init(deframer *d, size_t max_len);
void deframer_free(deframer *d);
/* Consumes input from *data and *len (advancing them) until one message is whole or the
 * input ends. Call again with the rest while it returns DEFRAME_MESSAGE. */
int deframer_next(deframer *d, const uint8_t **data, size_t *len, const uint8_t **msg,
		  size_t *msg_len, bool *compressed);
/* True when bytes of a message are buffered (a stream ending now is truncated). */
bool deframer_partial(const deframer *d);
/* Bytes of memory the deframer holds for a partial message. */
static inline size_t deframer_held(const deframer *d) { return d->body.cap; }
/* Writes the 5-byte prefix for a payload of len bytes. */
void frame_prefix(uint8_t out[GRPC_PREFIX_LEN], bool compressed, uint32_t len);

#endif
