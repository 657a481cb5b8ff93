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
	 * peer announcing large messages without sending them cannot make us allocate. To
	 * twice what arrived (or the declared length, if less) at each growth: a message of a
	 * few frames takes one buffer, not a doubling chain from 256 bytes, each growth a
	 * copy, while what is held stays within 2.5x what arrived (the pool's size classes
	 * round up by at most 1.25x). */
	size_t have = d->body.len + take;
	if (d->body.cap < have) {
		size_t target = have <= d->need / 2 ? 2 * have : d->need;
		if (buf_grow_to(&d->body, target))
			return GRPCMSG_NOMEM;
	}
	if (buf_append(&d->body, *data, take))
		return GRPCMSG_NOMEM;
	*data += take;
	*len -= take;
	if (d->body.len < d->need)
		return GRPCMSG_NEED_MORE;
	return deliver(d, d->body.data, d->body.len, msg, msg_len, compressed);
}

/* Makes room for a prefixed message of len bytes at the end of the queue. */
static int queue_room(grpcmsg_queue *q, size_t len)
{
	if (len > UINT32_MAX)
		return -ENOMEM;
	/* Bytes already pulled go before the buffer grows: a queue refilled before it drains
	 * (a stream kept near its high-water mark) would otherwise grow by all it ever sent.
	 * Only once they are at least what is left, so each byte moves O(1) times. */
	if (q->off && q->off >= q->data.len - q->off) {
		buf_consume(&q->data, q->off);
		q->off = 0;
	}
	/* Room for the whole message first: a prefix queued without its body would garble
	 * the stream. */
	int rc = buf_reserve(&q->data, GRPCMSG_PREFIX_LEN + len);
	if (rc && q->data.failed) /* the queue still takes the next message */
		buf_truncate(&q->data, q->data.len);
	return rc;
}

static void queue_prefix(grpcmsg_queue *q, bool compressed, size_t len)
{
	grpcmsg_prefix(q->data.data + q->data.len, compressed, (uint32_t)len);
	q->data.len += GRPCMSG_PREFIX_LEN;
}

int grpcmsg_queue_push(grpcmsg_queue *q, const uint8_t *msg, size_t len, bool gzip)
{
	buf z = BUF_INIT;
	int rc = gzip ? gzip_compress(&z, msg, len) : 0;
	if (gzip) {
		msg = z.data;
		len = z.len;
	}
	if (!rc && !(rc = queue_room(q, len))) {
		queue_prefix(q, gzip, len);
		buf_append(&q->data, msg, len);
	}
	buf_free(&z);
	return rc;
}

int grpcmsg_queue_push_packed(grpcmsg_queue *q, const ProtobufCMessage *msg, size_t len)
{
	int rc = queue_room(q, len);
	if (!rc) {
		queue_prefix(q, false, len);
		protobuf_c_message_pack(msg, q->data.data + q->data.len);
		q->data.len += len;
	}
	return rc;
}

void grpcmsg_queue_skip(grpcmsg_queue *q, size_t n)
{
	q->off += n;
	if (q->off == q->data.len) {
		buf_reset(&q->data);
		q->off = 0;
		/* A burst's buffer is not kept by an idle stream. */
		if (q->data.cap > 64 * 1024)
			buf_free(&q->data);
	}
}

size_t grpcmsg_queue_pull(grpcmsg_queue *q, uint8_t *out, size_t cap)
{
	size_t avail = q->data.len - q->off;
	size_t n = avail < cap ? avail : cap;
	if (!n)
		return 0;
	memcpy(out, q->data.data + q->off, n);
	grpcmsg_queue_skip(q, n);
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
