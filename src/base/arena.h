/* A bump allocator: memory that lives as long as one call, one transcoding or one
 * registered file, released all at once or back to a mark, never piece by piece. Blocks
 * never move, so pointers stay valid while more is allocated.
 *
 * A zeroed arena ({0}) is ready, with blocks of ARENA_BLOCK bytes. ARENA_INIT picks the
 * size of the first block and of later ones (a larger request gets a block of its own
 * size); arena_init_on gives the arena a first block of the caller's (often on its stack),
 * so that small uses allocate nothing. */
#ifndef BASE_ARENA_H
#define BASE_ARENA_H
#include <stddef.h>

#define ARENA_BLOCK 2048

typedef struct arena_block arena_block;

typedef struct arena {
	arena_block *head;  /* the newest block */
	arena_block *fixed; /* the caller's block (arena_init_on), never freed */
	size_t first, next; /* block sizes (0: ARENA_BLOCK) */
} arena;

/* clang-format would lay this macro's braced initializer out as a block. */
/* clang-format off */
#define ARENA_INIT(first_bytes, next_bytes) {.first = (first_bytes), .next = (next_bytes)}
/* clang-format on */

/* Where a mark was taken: arena_release frees what was allocated since. */
typedef struct arena_mark {
	arena_block *block;
	size_t used;
} arena_mark;

/* mem[0..size), aligned like max_align_t, becomes the first block (size at least 64);
 * later blocks are next bytes (0: ARENA_BLOCK). */
void arena_init_on(arena *a, void *mem, size_t size, size_t next);

/* n bytes aligned like max_align_t; NULL when memory runs out. */
void *arena_alloc(arena *a, size_t n);
/* The same, zeroed. */
void *arena_zalloc(arena *a, size_t n);
/* n bytes of s and a NUL. */
char *arena_strndup(arena *a, const void *s, size_t n);

arena_mark arena_get_mark(const arena *a);
void arena_release(arena *a, arena_mark m);

/* Frees every block but the caller's, which is empty again: the arena may be reused. */
void arena_free(arena *a);

#endif
