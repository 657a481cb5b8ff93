/* The growable byte buffer of the node: wire messages, compression, metadata encodings,
 * JSON, SQL text.
 *
 * Failure is sticky: a growth that fails (out of memory) leaves the contents as they were
 * and marks the buffer failed; from then on it takes no more bytes and every write that
 * needs room returns -ENOMEM, until buf_truncate, buf_reset or buf_free. Every write also
 * returns 0 or -ENOMEM, so a caller checks each write, the last one, or `failed` once at
 * the end, whichever reads best: a long run of writes (a JSON document) is checked once. */
#ifndef BASE_BUF_H
#define BASE_BUF_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct buf {
	union {
		uint8_t *data; /* owned; NULL until the first write */
		char *text;    /* the same bytes, for text */
	};
	size_t len, cap;
	bool failed;
} buf;

/* clang-format would lay this macro's braced initializer out as a block. */
/* clang-format off */
#define BUF_INIT {.data = NULL}
/* clang-format on */

/* The slow path of buf_reserve: grows the buffer (doubling, from 256 bytes). */
int buf_grow(buf *b, size_t n);

/* Makes room for n more bytes at data + len. 0 or -ENOMEM. */
static inline int buf_reserve(buf *b, size_t n)
{
	/* A failed buffer's cap is its len, so the test below sends every write to buf_grow,
	 * which refuses it: the fast path needs no test of `failed`. */
	return n <= b->cap - b->len ? 0 : buf_grow(b, n);
}

/* Grows the capacity to at least cap (rounded up to the buffer pool's size class, at most
 * 1.25x), without the doubling of buf_reserve: for a caller that bounds its memory by what
 * it received. 0 or -ENOMEM. */
int buf_grow_to(buf *b, size_t cap);

static inline int buf_append(buf *b, const void *p, size_t n)
{
	int rc = buf_reserve(b, n);
	if (!rc && n) {
		memcpy(b->data + b->len, p, n);
		b->len += n;
	}
	return rc;
}

static inline int buf_putc(buf *b, char c)
{
	int rc = buf_reserve(b, 1);
	if (!rc)
		b->text[b->len++] = c;
	return rc;
}

static inline int buf_puts(buf *b, const char *s) { return buf_append(b, s, strlen(s)); }

/* A NUL after the contents, not counted in len. */
int buf_terminate(buf *b);

/* Drops the first n bytes. */
void buf_consume(buf *b, size_t n);
/* Keeps the first len bytes (len at most b->len) and clears a failure. */
void buf_truncate(buf *b, size_t len);
/* Empty, memory kept, failure cleared. */
void buf_reset(buf *b);
void buf_free(buf *b);

#endif
