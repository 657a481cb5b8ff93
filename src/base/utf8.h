/* UTF-8 as RFC 3629 has it: no overlong forms, no UTF-16 surrogates, nothing past
 * U+10FFFF. The one check for protobuf strings (base/pbdecode.h) and JSON (store/json.h). */
#ifndef BASE_UTF8_H
#define BASE_UTF8_H
#include <stdbool.h>
#include <stddef.h>

/* Length of the UTF-8 sequence that starts at p (n > 0 bytes there), 0 when it is not
 * one. */
size_t utf8_seq_len(const unsigned char *p, size_t n);

/* Whether s[0..n) is UTF-8; with no_nul, also free of NUL bytes (which C strings would
 * silently cut). */
bool utf8_valid(const void *s, size_t n, bool no_nul);

#endif
