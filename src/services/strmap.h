/* A hash map from byte-string keys to pointers: open addressing, keys copied, values the
 * caller's. Not thread safe: its owner locks. */
#ifndef SERVICES_STRMAP_H
#define SERVICES_STRMAP_H
#include <stddef.h>

typedef struct strmap_slot {
	char *key; /* NUL-terminated copy (keys may hold other NULs: len counts) */
	size_t len;
	void *value;
	unsigned hash;
} strmap_slot;

typedef struct strmap {
	strmap_slot *slots;
	size_t cap; /* power of two, or 0 */
	size_t used;
} strmap;

/* The value of key[0..len), or NULL. */
void *strmap_get(const strmap *m, const char *key, size_t len);
/* Sets key's value. 0, or -ENOMEM for a new key (replacing a value never fails). *old
 * (optional) gets the replaced value. */
int strmap_put(strmap *m, const char *key, size_t len, void *value, void **old);
/* Removes key; its value (the caller's to free), or NULL when it was not there. The
 * entries after it in its probe chain move up, so that the map needs no tombstones and
 * lookups stay as short as after inserts alone. */
void *strmap_del(strmap *m, const char *key, size_t len);
/* Frees the map's memory; values are the caller's (visit them first with strmap_each). */
void strmap_free(strmap *m);
/* Visits every entry, in no order. */
void strmap_each(const strmap *m, void (*fn)(void *ctx, const char *key, size_t len, void *value),
		 void *ctx);

#endif
