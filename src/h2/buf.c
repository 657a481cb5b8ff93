#include "h2/buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int buf_reserve(buf *b, size_t n)
{
	if (b->len + n <= b->cap)
		return 0;
	if (n > SIZE_MAX / 2 - b->len)
		return -ENOMEM;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + n)
		cap *= 2;
	uint8_t *p = realloc(b->data, cap);
	if (!p)
		return -ENOMEM;
	b->data = p;
	b->cap = cap;
	return 0;
}

int buf_append(buf *b, const void *data, size_t n)
{
	if (!n)
		return 0;
	int rc = buf_reserve(b, n);
	if (rc)
		return rc;
	memcpy(b->data + b->len, data, n);
	b->len += n;
	return 0;
}

void buf_consume(buf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
}

void buf_reset(buf *b) { b->len = 0; }

void buf_free(buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}
