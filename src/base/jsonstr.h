/* JSON string literals (RFC 8259), the one escaper of the node: the transcoder's output and
 * the small JSON documents the services keep (labels, lists of names). */
#ifndef BASE_JSONSTR_H
#define BASE_JSONSTR_H
#include <stdbool.h>
#include <stddef.h>

#include "base/buf.h"

/* Bytes a JSON string holds as they are: no quote, backslash, control character or
 * start of a multi-byte sequence. */
static inline bool jsonstr_plain(unsigned char c)
{
	return c >= 0x20 && c != '"' && c != '\\' && c < 0x80;
}

/* Appends s[0..n) as a JSON string with its quotes: '"', '\\' and control characters
 * escaped (the short forms where JSON has them), everything else as it is. Returns 0,
 * -EILSEQ when s is not UTF-8 (base/utf8.h; what was written is then unspecified), or
 * -ENOMEM (the buffer's failure). */
int jsonstr_put(buf *b, const char *s, size_t n);

#endif
