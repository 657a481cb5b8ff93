#include "base/buf.h"

#include <errno.h>

#include "base/mem.h"

int buf_grow(buf *b, size_t n)
{
	if (b->failed)
		return -ENOMEM;
	if (n <= SIZE_MAX / 2 - b->len) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap - b->len < n)
			cap *= 2;
		uint8_t *p = mem_realloc(b->data, cap);
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
	mem_free(b->data);
	*b = (buf)BUF_INIT;
}
