/* gRPC metadata: grpc-message percent-encoding and grpc-timeout (-bin values are
 * base/base64.h's), key and value checks, and the list of a call's received metadata.
 * Pure functions over caller-given buffers; no allocation unless stated. */
#ifndef H2_METADATA_H
#define H2_METADATA_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/arena.h"
#include "base/buf.h"
#include "h2/call.h"

/* Percent-encodes a status message as gRPC prescribes: bytes outside 0x20-0x7E and '%'
 * become %XX. Appends to out. 0 or -ENOMEM. */
int md_percent_encode(buf *out, const uint8_t *in, size_t len);
/* Decodes %XX sequences; an invalid sequence is kept as it is (gRPC: never fail on a
 * message). Appends to out. */
int md_percent_decode(buf *out, const uint8_t *in, size_t len);

/* Parses a grpc-timeout value (1-8 digits then H, M, S, m, u or n) into nanoseconds,
 * saturating at INT64_MAX. 0 or -EINVAL. */
int md_timeout_parse(const char *in, size_t len, int64_t *ns);
/* Formats a timeout (ns > 0) in the unit that keeps it within 8 digits, rounding up.
 * out needs 10 bytes; returns the length written. */
size_t md_timeout_format(int64_t ns, char out[10]);

/* True for names ending in "-bin" (binary values, base64 on the wire). */
bool md_is_binary(const char *name, size_t len);
/* True for header names that gRPC or HTTP/2 reserve (pseudo-headers, content-type, te,
 * grpc-*, ...): these are never exposed as custom metadata. */
bool md_is_reserved(const char *name, size_t len);
/* True when name is a valid lowercase metadata key: [0-9a-z_.-]+. */
bool md_valid_key(const char *name, size_t len);
/* True when an ASCII metadata value is legal: printable 0x20-0x7E. */
bool md_valid_ascii_value(const uint8_t *v, size_t len);

/* Received metadata, in an arena: -bin values are base64-decoded. */
typedef struct md_list {
	call_md *v;
	size_t n, cap;
} md_list;
/* Appends one entry, copied to a. 0, -EINVAL on bad base64, -ENOMEM. */
int md_list_add(md_list *l, arena *a, const uint8_t *name, size_t nlen, const uint8_t *value,
		size_t vlen);
/* The first entry named name (lowercase), or NULL. */
const call_md *md_list_get(const md_list *l, const char *name);

#endif
