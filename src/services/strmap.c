#include "services/strmap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/hash.h"
#include "base/mem.h"

static unsigned key_hash(const char *s, size_t n) { return hash_fnv1a(HASH_FNV1A_INIT, s, n); }

static strmap_slot *find(const strmap *m, const char *key, size_t len, unsigned h)
{
	for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
		strmap_slot *s = &m->slots[i];
		if (!s->key || (s->hash == h && s->len == len && !memcmp(s->key, key, len)))
			return s;
	}
}

void *strmap_get(const strmap *m, const char *key, size_t len)
{
	if (!m->cap)
		return NULL;
	strmap_slot *s = find(m, key, len, key_hash(key, len));
	return s->key ? s->value : NULL;
}

static int grow(strmap *m)
{
	size_t cap = m->cap ? 2 * m->cap : 16;
	strmap_slot *slots = mem_calloc(cap, sizeof(*slots));
	if (!slots)
		return -ENOMEM;
	strmap bigger = {.slots = slots, .cap = cap, .used = m->used};
	for (size_t i = 0; i < m->cap; i++)
		if (m->slots[i].key)
			*find(&bigger, m->slots[i].key, m->slots[i].len, m->slots[i].hash) =
				m->slots[i];
	mem_free(m->slots);
	*m = bigger;
	return 0;
}

int strmap_put(strmap *m, const char *key, size_t len, void *value, void **old)
{
	unsigned h = key_hash(key, len);
	strmap_slot *s = m->cap ? find(m, key, len, h) : NULL;
	if (old)
		*old = s && s->key ? s->value : NULL;
	if (s && s->key) { /* replacing never fails */
		s->value = value;
		return 0;
	}
	if ((m->used + 1) * 2 > m->cap) {
		if (grow(m))
			return -ENOMEM;
		s = find(m, key, len, h);
	}
	char *copy = mem_alloc(len + 1);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, key, len);
	copy[len] = 0;
	*s = (strmap_slot){.key = copy, .len = len, .value = value, .hash = h};
	m->used++;
	return 0;
}

void *strmap_del(strmap *m, const char *key, size_t len)
{
	if (!m->cap)
		return NULL;
	strmap_slot *s = find(m, key, len, key_hash(key, len));
	if (!s->key)
		return NULL;
	void *value = s->value;
	mem_free(s->key);
	size_t mask = m->cap - 1, hole = (size_t)(s - m->slots);
	for (size_t i = (hole + 1) & mask; m->slots[i].key; i = (i + 1) & mask) {
		/* The entry at i may fill the hole when the hole lies between its home slot and
		 * i: a lookup for it starts at home and would otherwise stop at the hole. */
		size_t home = m->slots[i].hash & mask;
		if (((i - home) & mask) >= ((i - hole) & mask)) {
			m->slots[hole] = m->slots[i];
			hole = i;
		}
	}
	m->slots[hole] = (strmap_slot){0};
	m->used--;
	return value;
}

void strmap_free(strmap *m)
{
	for (size_t i = 0; i < m->cap; i++)
		mem_free(m->slots[i].key);
	mem_free(m->slots);
	*m = (strmap){0};
}

void strmap_each(const strmap *m, void (*fn)(void *ctx, const char *key, size_t len, void *value),
		 void *ctx)
{
	for (size_t i = 0; i < m->cap; i++)
		if (m->slots[i].key)
			fn(ctx, m->slots[i].key, m->slots[i].len, m->slots[i].value);
}
