/* FNV-1a, the one string hash of the project's in-memory tables (type pool, registry,
 * open collections, definition cache): fast on short names, and chainable, so that a key
 * made of parts needs no joined copy. Not for anything a client could exploit to collide
 * on purpose at scale: every user of it bounds its table or its input. */
#ifndef BASE_HASH_H
#define BASE_HASH_H
#include <stddef.h>
#include <stdint.h>

#define HASH_FNV1A_INIT 2166136261u

static inline uint32_t hash_fnv1a(uint32_t h, const void *data, size_t n)
{
	const unsigned char *p = data;
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 16777619u;
	return h;
}

#endif
