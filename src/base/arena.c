#include "base/arena.h"

#include <stdalign.h>
#include <stdint.h>
#include <string.h>

#include "base/bufpool.h"
#include "base/mem.h"

struct arena_block {
	arena_block *prev; /* the block before: releasing walks back to a mark */
	size_t used, cap;
	max_align_t data[];
};

#define ALIGN_UP(n) (((n) + alignof(max_align_t) - 1) & ~(alignof(max_align_t) - 1))

void arena_init_on(arena *a, void *mem, size_t size, size_t next)
{
	arena_block *b = mem;
	b->prev = NULL;
	b->used = 0;
	b->cap = size - sizeof(*b);
	*a = (arena){.head = b, .fixed = b, .next = next};
}

void *arena_alloc(arena *a, size_t n)
{
	if (n > SIZE_MAX - alignof(max_align_t))
		return NULL;
	n = ALIGN_UP(n);
	arena_block *b = a->head;
	if (!b || b->cap - b->used < n) {
		size_t cap = b ? a->next : a->first;
		if (!cap) /* the default block, its header included, is a pool class */
			cap = ARENA_BLOCK - sizeof(*b);
		if (n > cap)
			cap = n;
		/* Blocks come from the buffer pool: an arena per call made every call allocate
		 * and free a block of this size, which glibc serves slowly (a request past its
		 * small bins consolidates its fast bins first). */
		size_t got;
		if (cap > SIZE_MAX - sizeof(*b) || !(b = bufpool_get(sizeof(*b) + cap, &got)))
			return NULL;
		b->prev = a->head;
		b->used = 0;
		b->cap = got - sizeof(*b);
		a->head = b;
	}
	void *p = (char *)b->data + b->used;
	b->used += n;
	return p;
}

void *arena_zalloc(arena *a, size_t n)
{
	void *p = arena_alloc(a, n);
	if (p)
		memset(p, 0, n);
	return p;
}

char *arena_strndup(arena *a, const void *s, size_t n)
{
	char *p = n == SIZE_MAX ? NULL : arena_alloc(a, n + 1);
	if (p) {
		if (n)
			memcpy(p, s, n);
		p[n] = 0;
	}
	return p;
}

arena_mark arena_get_mark(const arena *a)
{
	return (arena_mark){a->head, a->head ? a->head->used : 0};
}

void arena_release(arena *a, arena_mark m)
{
	while (a->head != m.block) {
		arena_block *b = a->head;
		a->head = b->prev;
		bufpool_put(b, sizeof(*b) + b->cap);
	}
	if (a->head)
		a->head->used = m.used;
}

void arena_free(arena *a) { arena_release(a, (arena_mark){a->fixed, 0}); }
