#include "h2/grpcmsg.h"

#include <errno.h>
#include <string.h>

#include "base/mem.h"
#include "h2/gzip.h"

/* A body buffer larger than this is released after its message is delivered, so that one
 * big message does not pin its memory for the rest of a long stream. */
#define BODY_KEEP_CAP (64 * 1024)

void grpcmsg_reader_init(grpcmsg_reader *d, size_t max_len)
{
	memset(d, 0, sizeof(*d));
	d->max_len = max_len;
}

void grpcmsg_reader_free(grpcmsg_reader *d)
{
	buf_free(&d->body);
	d->prefix_have = 0;
	d->in_body = false;
}

bool grpcmsg_reader_partial(const grpcmsg_reader *d) { return d->prefix_have > 0 || d->in_body; }

void grpcmsg_prefix(uint8_t out[GRPCMSG_PREFIX_LEN], bool compressed, uint32_t len)
{
	out[0] = compressed ? 1 : 0;
	out[1] = (uint8_t)(len >> 24);
	out[2] = (uint8_t)(len >> 16);
	out[3] = (uint8_t)(len >> 8);
	out[4] = (uint8_t)len;
}

/* Validates a complete prefix. It is left in place on failure, so that every later call
 * reports the same error instead of reading payload bytes as a new prefix. */
static int parse_prefix(grpcmsg_reader *d)
{
	if (d->prefix[0] > 1)
		return GRPCMSG_BAD_FLAG;
	uint32_t n = (uint32_t)d->prefix[1] << 24 | (uint32_t)d->prefix[2] << 16 |
		     (uint32_t)d->prefix[3] << 8 | d->prefix[4];
	if (n > d->max_len)
		return GRPCMSG_TOO_LARGE;
	d->compressed = d->prefix[0] == 1;
	d->need = n;
	d->in_body = true;
	return 0;
}

static int deliver(grpcmsg_reader *d, const uint8_t *msg, size_t len, const uint8_t **out,
		   size_t *out_len, bool *compressed)
{
	*out = msg;
	*out_len = len;
	*compressed = d->compressed;
	d->in_body = false;
	d->prefix_have = 0;
	return GRPCMSG_MESSAGE;
}

int grpcmsg_reader_next(grpcmsg_reader *d, const uint8_t **data, size_t *len, const uint8_t **msg,
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
		size_t take = GRPCMSG_PREFIX_LEN - d->prefix_have;
		if (take > *len)
			take = *len;
		if (take) {
			memcpy(d->prefix + d->prefix_have, *data, take);
			d->prefix_have += take;
			*data += take;
			*len -= take;
		}
		if (d->prefix_have < GRPCMSG_PREFIX_LEN)
			return GRPCMSG_NEED_MORE;
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
		return GRPCMSG_NEED_MORE;
	/* Grows with the bytes actually received, never to the declared length up front: a
	 * peer announcing large messages without sending them cannot make us allocate. */
	if (buf_append(&d->body, *data, take))
		return GRPCMSG_NOMEM;
	*data += take;
	*len -= take;
	if (d->body.len < d->need)
		return GRPCMSG_NEED_MORE;
	return deliver(d, d->body.data, d->body.len, msg, msg_len, compressed);
}

int grpcmsg_queue_push(grpcmsg_queue *q, const uint8_t *msg, size_t len, bool gzip)
{
	uint8_t prefix[GRPCMSG_PREFIX_LEN];
	buf z = BUF_INIT;
	int rc = gzip ? gzip_compress(&z, msg, len) : 0;
	if (gzip) {
		msg = z.data;
		len = z.len;
	}
	if (!rc && len > UINT32_MAX)
		rc = -ENOMEM;
	/* Bytes already pulled go before the buffer grows: a queue refilled before it drains
	 * (a stream kept near its high-water mark) would otherwise grow by all it ever sent.
	 * Only once they are at least what is left, so each byte moves O(1) times. */
	if (!rc && q->off && q->off >= q->data.len - q->off) {
		buf_consume(&q->data, q->off);
		q->off = 0;
	}
	/* Room for the whole message first: a prefix queued without its body would garble
	 * the stream. */
	if (!rc && !(rc = buf_reserve(&q->data, sizeof(prefix) + len))) {
		grpcmsg_prefix(prefix, gzip, (uint32_t)len);
		buf_append(&q->data, prefix, sizeof(prefix));
		buf_append(&q->data, msg, len);
	} else if (q->data.failed) {
		/* The queue still takes the next message: a refused one leaves no trace. */
		buf_truncate(&q->data, q->data.len);
	}
	buf_free(&z);
	return rc;
}

size_t grpcmsg_queue_pull(grpcmsg_queue *q, uint8_t *out, size_t cap)
{
	size_t avail = q->data.len - q->off;
	size_t n = avail < cap ? avail : cap;
	if (!n)
		return 0;
	memcpy(out, q->data.data + q->off, n);
	q->off += n;
	if (q->off == q->data.len) {
		buf_reset(&q->data);
		q->off = 0;
		/* A burst's buffer is not kept by an idle stream. */
		if (q->data.cap > 64 * 1024)
			buf_free(&q->data);
	}
	return n;
}

size_t grpcmsg_queue_pending(const grpcmsg_queue *q) { return q->data.len - q->off; }
void grpcmsg_queue_free(grpcmsg_queue *q)
{
	buf_free(&q->data);
	q->off = 0;
}

int grpcmsg_pack(const ProtobufCMessage *msg, uint8_t *stackbuf, size_t stackcap, uint8_t **out,
		 size_t *len)
{
	*len = protobuf_c_message_get_packed_size(msg);
	*out = *len <= stackcap ? stackbuf : mem_alloc(*len);
	if (!*out)
		return -ENOMEM;
	protobuf_c_message_pack(msg, *out);
	return 0;
}
