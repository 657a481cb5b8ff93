/* Hexadecimal digits: lowercase for what the node writes (ids, digests, JSON escapes),
 * uppercase where gRPC's percent-encoding asks for it. */
#ifndef BASE_HEX_H
#define BASE_HEX_H
#include <stddef.h>
#include <stdint.h>

/* The lowercase digits, then the uppercase ones. */
extern const char hex_digits[32];

static inline char hex_lower(unsigned v) { return hex_digits[v & 15]; }

static inline char hex_upper(unsigned v) { return hex_digits[16 | (v & 15)]; }

/* 0..15, or -1 when c is not a hex digit (either case). */
int hex_value(unsigned char c);

/* The lowercase hex of in[0..n) to out: 2n characters and a NUL. */
void hex_encode(char *out, const uint8_t *in, size_t n);

#endif
