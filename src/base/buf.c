#include "base/buf.h"

#include <errno.h>

#include "base/bufpool.h"
#include "base/mem.h"

/* Small buffers grow in place (realloc); from BUFPOOL_MIN on they move between the
 * pool's size classes, so that a large buffer freed is there for the next one. */
static uint8_t *regrow(buf *b, size_t *cap)
{
	if (*cap < BUFPOOL_MIN)
		return mem_realloc(b->data, *cap);
	uint8_t *p = bufpool_get(*cap, cap);
	if (p && b->len)
		memcpy(p, b->data, b->len);
	if (p)
		bufpool_put(b->data, b->cap);
	return p;
}

int buf_grow(buf *b, size_t n)
{
	if (b->failed)
		return -ENOMEM;
	if (n <= SIZE_MAX / 2 - b->len) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap - b->len < n)
			cap *= 2;
		/* A first large reservation takes its size class, not the next power of two:
		 * a 16 KiB message with its prefix would otherwise take 32 KiB. */
		if (!b->cap && n >= BUFPOOL_MIN)
			cap = n;
		uint8_t *p = regrow(b, &cap);
		if (p) {
			b->data = p;
			b->cap = cap;
			return 0;
		}
	}
	b->failed = true;
	b->cap = b->len;
	return -ENOMEM;
}

int buf_grow_to(buf *b, size_t cap)
{
	if (b->failed)
		return -ENOMEM;
	if (cap <= b->cap)
		return 0;
	uint8_t *p = regrow(b, &cap);
	if (!p) {
		b->failed = true;
		b->cap = b->len;
		return -ENOMEM;
	}
	b->data = p;
	b->cap = cap;
	return 0;
}

int buf_terminate(buf *b)
{
	int rc = buf_reserve(b, 1);
	if (!rc)
		b->data[b->len] = 0;
	return rc;
}

void buf_consume(buf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
	if (b->failed)
		b->cap = b->len; /* still refusing bytes (buf_reserve) */
}

void buf_truncate(buf *b, size_t len)
{
	b->len = len;
	b->failed = false;
}

void buf_reset(buf *b) { buf_truncate(b, 0); }

void buf_free(buf *b)
{
	/* A failed buffer's cap says nothing of its block's size (see buf_grow). */
	if (b->failed)
		mem_free(b->data);
	else
		bufpool_put(b->data, b->cap);
	*b = (buf)BUF_INIT;
}
