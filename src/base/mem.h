/* Every allocation of the node goes through these functions (tests/check_layers.py fails
 * the tests when a file of src/ but this one calls the C library's allocator), so that
 * a test can make the N-th allocation fail and walk the out-of-memory paths that never run
 * otherwise; SQLite's test_malloc.c and nghttp2's nghttp2_mem are the models. protobuf-c's
 * unpacking (base/pbdecode.h) and SQLite (the store's init) allocate through here as well.
 *
 * The memory is the C library's: mem_free is free, so memory from here may be handed to
 * a library that frees it with free(), and memory a library hands over to be freed with
 * free() goes to mem_free.
 *
 * Not armed (always, outside tests) an allocation costs one predictable branch on a
 * relaxed load before the C library's call, which the compiler inlines at the caller. */
#ifndef BASE_MEM_H
#define BASE_MEM_H
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>

/* Set only by mem_fail_arm and mem_fail_disarm. */
extern atomic_bool mem_fail_armed;

/* Armed: counts one allocation and says whether it is the one (or, persistent, one of
 * those) to fail. */
bool mem_fail_this(void);

static inline bool mem_fails(void)
{
	return __builtin_expect(atomic_load_explicit(&mem_fail_armed, memory_order_relaxed), 0) &&
	       mem_fail_this();
}

static inline void *mem_alloc(size_t n) { return mem_fails() ? NULL : malloc(n); }

static inline void *mem_calloc(size_t n, size_t size)
{
	return mem_fails() ? NULL : calloc(n, size);
}

/* NULL leaves p as it was, as realloc does. */
static inline void *mem_realloc(void *p, size_t n) { return mem_fails() ? NULL : realloc(p, n); }

static inline void mem_free(void *p) { free(p); }

/* align a power of two, a multiple of sizeof(void *). */
void *mem_aligned_alloc(size_t align, size_t n);
char *mem_strdup(const char *s);
/* At most n bytes of s, then a NUL. */
char *mem_strndup(const char *s, size_t n);
/* asprintf through the hook: the length, or -1 with *out NULL. */
int mem_asprintf(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- failure injection, for tests ---- */

/* From now on, the nth allocation (1: the next one) of any thread fails; persistent, every
 * one from the nth on. Counts start again at zero. */
void mem_fail_arm(long nth, bool persistent);
/* Back to plain allocation. Returns the allocations counted since mem_fail_arm. */
long mem_fail_disarm(void);
/* Allocations failed since mem_fail_arm. */
long mem_fail_count(void);

#endif
