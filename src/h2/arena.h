/* A bump allocator for memory that lives as long as one call: no individual frees. */
#ifndef H2_ARENA_H
#define H2_ARENA_H
#include <stddef.h>

typedef struct arena_block arena_block;
typedef struct arena {
	arena_block *head;
} arena;

void *arena_alloc(arena *a, size_t size);
/* Copies n bytes and a NUL. */
char *arena_strndup(arena *a, const void *s, size_t n);
void arena_free(arena *a);

#endif
