#include "h2/arena.h"

#include <stdlib.h>
#include <string.h>

#define ARENA_BLOCK 2048

struct arena_block {
	arena_block *next;
	size_t used, cap;
	max_align_t data[];
};

void *arena_alloc(arena *a, size_t size)
{
	size = (size + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
	arena_block *b = a->head;
	if (!b || b->cap - b->used < size) {
		size_t cap = size > ARENA_BLOCK ? size : ARENA_BLOCK;
		b = malloc(sizeof(*b) + cap);
		if (!b)
			return NULL;
		b->cap = cap;
		b->used = 0;
		b->next = a->head;
		a->head = b;
	}
	void *p = (char *)b->data + b->used;
	b->used += size;
	return p;
}

char *arena_strndup(arena *a, const void *s, size_t n)
{
	char *p = arena_alloc(a, n + 1);
	if (p) {
		if (n)
			memcpy(p, s, n);
		p[n] = 0;
	}
	return p;
}

void arena_free(arena *a)
{
	while (a->head) {
		arena_block *b = a->head;
		a->head = b->next;
		free(b);
	}
}
