/* Protobuf wire format primitives shared by the transcoder's two directions: varints,
 * zigzag, little-endian fixed-width values and tags. Header only: these sit on the hot path
 * of every field. */
#ifndef STORE_PBWIRE_H
#define STORE_PBWIRE_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum {
	PB_VARINT = 0,
	PB_FIXED64 = 1,
	PB_LEN = 2,
	PB_SGROUP = 3,
	PB_EGROUP = 4,
	PB_FIXED32 = 5,
};

#define PB_MAX_FIELD 536870911u /* 2^29 - 1 */

/* Reads a varint of at most 10 bytes; bits past 64 are dropped as protobuf does. Returns the
 * bytes used, 0 when truncated or longer than 10 bytes. */
static inline size_t pb_get_varint(const uint8_t *p, const uint8_t *end, uint64_t *out)
{
	uint64_t v = 0;
	for (size_t i = 0; i < 10 && p + i < end; i++) {
		v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
		if (!(p[i] & 0x80)) {
			*out = v;
			return i + 1;
		}
	}
	return 0;
}

static inline size_t pb_varint_size(uint64_t v)
{
	size_t n = 1;
	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

/* dst needs room for 10 bytes. */
static inline size_t pb_put_varint(uint8_t *dst, uint64_t v)
{
	size_t n = 0;
	while (v >= 0x80) {
		dst[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	dst[n++] = (uint8_t)v;
	return n;
}

static inline uint32_t pb_get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t pb_get_le64(const uint8_t *p)
{
	return (uint64_t)pb_get_le32(p) | (uint64_t)pb_get_le32(p + 4) << 32;
}

static inline void pb_put_le32(uint8_t *dst, uint32_t v)
{
	dst[0] = (uint8_t)v;
	dst[1] = (uint8_t)(v >> 8);
	dst[2] = (uint8_t)(v >> 16);
	dst[3] = (uint8_t)(v >> 24);
}

static inline void pb_put_le64(uint8_t *dst, uint64_t v)
{
	pb_put_le32(dst, (uint32_t)v);
	pb_put_le32(dst + 4, (uint32_t)(v >> 32));
}

static inline int64_t pb_unzigzag(uint64_t v) { return (int64_t)(v >> 1) ^ -(int64_t)(v & 1); }

static inline uint64_t pb_zigzag(int64_t v) { return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63); }

static inline double pb_bits_double(uint64_t bits)
{
	double d;
	memcpy(&d, &bits, sizeof d);
	return d;
}

static inline uint64_t pb_double_bits(double d)
{
	uint64_t bits;
	memcpy(&bits, &d, sizeof bits);
	return bits;
}

static inline float pb_bits_float(uint32_t bits)
{
	float f;
	memcpy(&f, &bits, sizeof f);
	return f;
}

static inline uint32_t pb_float_bits(float f)
{
	uint32_t bits;
	memcpy(&bits, &f, sizeof bits);
	return bits;
}

#endif
