/* Checks what protobuf-c's unpacking lets through but C code cannot live with: every
 * string field (at any depth) must be valid UTF-8, as proto3 requires, and hold no NUL
 * byte, which protobuf-c's NUL-terminated strings would silently cut at. */
#ifndef H2_PBCHECK_H
#define H2_PBCHECK_H
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* True when data is fine (or malformed in a way unpacking itself will refuse). On false,
 * *field names the offending field. */
bool pbcheck_strings(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t len,
		     const char **field);
/* Valid UTF-8 without NUL bytes. */
bool pbcheck_utf8(const uint8_t *s, size_t n);

#endif
