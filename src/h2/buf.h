/* A growable byte buffer. */
#ifndef H2_BUF_H
#define H2_BUF_H
#include <stddef.h>
#include <stdint.h>

typedef struct buf {
	uint8_t *data;
	size_t len, cap;
} buf;

/* Makes room for n more bytes. 0 or -ENOMEM. */
int buf_reserve(buf *b, size_t n);
int buf_append(buf *b, const void *data, size_t n);
/* Drops the first n bytes. */
void buf_consume(buf *b, size_t n);
void buf_reset(buf *b);
void buf_free(buf *b);

#endif
