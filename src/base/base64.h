/* Base64 (RFC 4648): the standard alphabet (gRPC -bin metadata, bytes in JSON) and the
 * URL-safe one (page tokens). */
#ifndef BASE_BASE64_H
#define BASE_BASE64_H
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

enum {
	BASE64_URL = 1,	   /* '-' and '_' for '+' and '/' (decoding: only those) */
	BASE64_EITHER = 2, /* decoding: either alphabet, even mixed (proto3 JSON's rule) */
	BASE64_NOPAD = 4,  /* no '=': none written, and decoding refuses it */
	BASE64_EXACT = 8,  /* decoding: the bits past the last byte must be zero, so that a
			    * value has one spelling only */
};

/* Characters of the encoding of n bytes (n at most SIZE_MAX / 2). */
size_t base64_encoded_len(size_t n, int flags);
/* Writes the encoding of in[0..n) to out (base64_encoded_len bytes, no NUL). */
void base64_encode(char *out, const uint8_t *in, size_t n, int flags);
/* The same, appended to b: 0 or -ENOMEM. */
int base64_put(buf *b, const uint8_t *in, size_t n, int flags);

/* Bytes enough for decoding n characters. */
static inline size_t base64_decoded_max(size_t n) { return n / 4 * 3 + 3; }

/* Decodes in[0..n) into out (base64_decoded_max(n) bytes). Padding, unless refused, may
 * be left out but completes the last group when present. Returns the decoded length, or
 * -1 when in is not base64 under flags. */
long base64_decode(uint8_t *out, const char *in, size_t n, int flags);
/* The same, appended to b: 0, -EINVAL (not base64), -ENOMEM. */
int base64_put_decoded(buf *b, const char *in, size_t n, int flags);

#endif
