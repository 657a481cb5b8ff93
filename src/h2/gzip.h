/* Message compression: gzip (zlib) and identity. Decompression is bounded so that a
 * small compressed message cannot expand into unbounded memory. */
#ifndef H2_GZIP_H
#define H2_GZIP_H
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

/* Appends the gzip form of in to out. 0 or -ENOMEM / -EIO. */
int gzip_compress(buf *out, const uint8_t *in, size_t len);
/* Appends the inflated gzip in to out. 0; -EFBIG when the output would exceed max_out;
 * -EINVAL on corrupt or truncated input; -ENOMEM. */
int gzip_decompress(buf *out, const uint8_t *in, size_t len, size_t max_out);
/* The gRPC status of a gzip_decompress failure, and *why for the peer: over the limit and
 * out of memory are RESOURCE_EXHAUSTED, a corrupt stream INTERNAL. */
int gzip_failure_status(int rc, const char **why);

#endif
