#include "h2/gzip.h"

#include <errno.h>
#include <limits.h>
#include <zlib.h>

#include "base/mem.h"
#include "h2/status.h"

/* windowBits 15 with 16 added: zlib writes and accepts the gzip wrapper (RFC 1952), which
 * is what grpc-encoding: gzip means, rather than the bare zlib format. */
#define GZIP_WBITS (15 + 16)
/* Smallest output growth step; inflate then grows with the output produced. */
#define GROW_CHUNK 4096

static uInt clamp_uint(size_t n) { return n > UINT_MAX ? UINT_MAX : (uInt)n; }

/* zlib allocates through the node's hook (base/mem.h), as everything else does; like
 * zlib's own, without zeroing (its state is hundreds of KiB). */
static voidpf zalloc(voidpf opaque, uInt items, uInt size)
{
	(void)opaque;
	return mem_alloc((size_t)items * size);
}

static void zfree(voidpf opaque, voidpf p)
{
	(void)opaque;
	mem_free(p);
}

int gzip_compress(buf *out, const uint8_t *in, size_t len)
{
	z_stream zs = {.zalloc = zalloc, .zfree = zfree};
	if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, GZIP_WBITS, 8,
			 Z_DEFAULT_STRATEGY) != Z_OK)
		return -ENOMEM;
	int rc = buf_reserve(out, deflateBound(&zs, len));
	if (rc) {
		deflateEnd(&zs);
		return rc;
	}
	size_t start = out->len;
	zs.next_in = (Bytef *)in;
	size_t in_left = len;
	int zrc;
	do {
		if (out->cap == out->len && (rc = buf_reserve(out, GROW_CHUNK)))
			break;
		zs.avail_in = clamp_uint(in_left);
		zs.next_out = out->data + out->len;
		zs.avail_out = clamp_uint(out->cap - out->len);
		uInt avail_in = zs.avail_in, avail_out = zs.avail_out;
		zrc = deflate(&zs, in_left > avail_in ? Z_NO_FLUSH : Z_FINISH);
		in_left -= avail_in - zs.avail_in;
		out->len += avail_out - zs.avail_out;
		if (zrc == Z_STREAM_ERROR) {
			rc = -EIO;
			break;
		}
	} while (zrc != Z_STREAM_END);
	deflateEnd(&zs);
	if (rc)
		buf_truncate(out, start);
	return rc;
}

int gzip_decompress(buf *out, const uint8_t *in, size_t len, size_t max_out)
{
	z_stream zs = {.zalloc = zalloc, .zfree = zfree};
	int zrc = inflateInit2(&zs, GZIP_WBITS);
	if (zrc != Z_OK)
		return zrc == Z_MEM_ERROR ? -ENOMEM : -EIO;
	size_t start = out->len;
	zs.next_in = (Bytef *)in;
	size_t in_left = len;
	int rc = 0;
	for (;;) {
		size_t produced = out->len - start;
		/* One byte of room past the limit: whether inflate fills it tells "exactly at
		 * the limit" from "over it" without inflating any further. */
		size_t allowed = max_out - produced;
		if (allowed < SIZE_MAX)
			allowed++;
		if (out->cap == out->len) {
			size_t want = produced > GROW_CHUNK ? produced : GROW_CHUNK;
			if ((rc = buf_reserve(out, want < allowed ? want : allowed)))
				break;
		}
		size_t room = out->cap - out->len;
		zs.next_out = out->data + out->len;
		zs.avail_out = clamp_uint(room < allowed ? room : allowed);
		zs.avail_in = clamp_uint(in_left);
		uInt avail_in = zs.avail_in, avail_out = zs.avail_out;
		zrc = inflate(&zs, Z_NO_FLUSH);
		in_left -= avail_in - zs.avail_in;
		out->len += avail_out - zs.avail_out;
		if (out->len - start > max_out) {
			rc = -EFBIG;
			break;
		}
		if (zrc == Z_STREAM_END) {
			if (!in_left)
				break;
			/* Concatenated gzip members form one valid gzip stream (RFC 1952 2.2);
			 * anything else after the end fails in the next member's header. */
			if (inflateReset(&zs) != Z_OK) {
				rc = -EIO;
				break;
			}
			continue;
		}
		if (zrc == Z_OK)
			continue;
		if (zrc == Z_BUF_ERROR && zs.avail_out == 0)
			continue;
		/* Z_BUF_ERROR with room left means the input ended mid-stream. */
		rc = zrc == Z_MEM_ERROR ? -ENOMEM : -EINVAL;
		break;
	}
	inflateEnd(&zs);
	if (rc)
		buf_truncate(out, start);
	return rc;
}

int gzip_failure_status(int rc, const char **why)
{
	switch (rc) {
	case -EFBIG:
		*why = "decompressed message larger than the limit";
		return GRPC_RESOURCE_EXHAUSTED;
	case -ENOMEM:
		*why = "out of memory";
		return GRPC_RESOURCE_EXHAUSTED;
	default:
		*why = "could not decompress the message";
		return GRPC_INTERNAL;
	}
}
