#include "h2/frame.h"

#include <string.h>

/* A body buffer larger than this is released after its message is delivered, so that one
 * big message does not pin its memory for the rest of a long stream. */
#define BODY_KEEP_CAP (64 * 1024)

void deframer_init(deframer *d, size_t max_len)
{
	memset(d, 0, sizeof(*d));
	d->max_len = max_len;
}

void deframer_free(deframer *d)
{
	buf_free(&d->body);
	d->prefix_have = 0;
	d->in_body = false;
}

bool deframer_partial(const deframer *d) { return d->prefix_have > 0 || d->in_body; }

void frame_prefix(uint8_t out[GRPC_PREFIX_LEN], bool compressed, uint32_t len)
{
	out[0] = compressed ? 1 : 0;
	out[1] = (uint8_t)(len >> 24);
	out[2] = (uint8_t)(len >> 16);
	out[3] = (uint8_t)(len >> 8);
	out[4] = (uint8_t)len;
}

/* Validates a complete prefix. It is left in place on failure, so that every later call
 * reports the same error instead of reading payload bytes as a new prefix. */
static int parse_prefix(deframer *d)
{
	if (d->prefix[0] > 1)
		return DEFRAME_BAD_FLAG;
	uint32_t n = (uint32_t)d->prefix[1] << 24 | (uint32_t)d->prefix[2] << 16 |
		     (uint32_t)d->prefix[3] << 8 | d->prefix[4];
	if (n > d->max_len)
		return DEFRAME_TOO_LARGE;
	d->compressed = d->prefix[0] == 1;
	d->need = n;
	d->in_body = true;
	return 0;
}

static int deliver(deframer *d, const uint8_t *msg, size_t len, const uint8_t **out,
		   size_t *out_len, bool *compressed)
{
	*out = msg;
	*out_len = len;
	*compressed = d->compressed;
	d->in_body = false;
	d->prefix_have = 0;
	return DEFRAME_MESSAGE;
}

int deframer_next(deframer *d, const uint8_t **data, size_t *len, const uint8_t **msg,
		  size_t *msg_len, bool *compressed)
{
	/* The previous message may still sit in body: the caller is done with it now. */
	if (!d->in_body && d->body.len) {
		if (d->body.cap > BODY_KEEP_CAP)
			buf_free(&d->body);
		else
			buf_reset(&d->body);
	}
	if (!d->in_body) {
		size_t take = GRPC_PREFIX_LEN - d->prefix_have;
		if (take > *len)
			take = *len;
		if (take) {
			memcpy(d->prefix + d->prefix_have, *data, take);
			d->prefix_have += take;
			*data += take;
			*len -= take;
		}
		if (d->prefix_have < GRPC_PREFIX_LEN)
			return DEFRAME_NEED_MORE;
		int rc = parse_prefix(d);
		if (rc)
			return rc;
		/* A zero-length message has no payload bytes; the pointer only has to be
		 * valid, not meaningful. */
		if (d->need == 0)
			return deliver(d, d->prefix, 0, msg, msg_len, compressed);
	}
	/* Fast path: the whole payload is in this input, point into it without copying. */
	if (d->body.len == 0 && *len >= d->need) {
		const uint8_t *p = *data;
		*data += d->need;
		*len -= d->need;
		return deliver(d, p, d->need, msg, msg_len, compressed);
	}
	size_t take = d->need - d->body.len;
	if (take > *len)
		take = *len;
	if (!take)
		return DEFRAME_NEED_MORE;
	/* Grows with the bytes actually received, never to the declared length up front: a
	 * peer announcing large messages without sending them cannot make us allocate. */
	if (buf_append(&d->body, *data, take))
		return DEFRAME_NOMEM;
	*data += take;
	*len -= take;
	if (d->body.len < d->need)
		return DEFRAME_NEED_MORE;
	return deliver(d, d->body.data, d->body.len, msg, msg_len, compressed);
}
