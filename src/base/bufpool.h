/* A per-thread cache of large byte buffers in size classes: message bodies, send queues
 * and connection output come and go at every call, and handing them back to the C
 * library made glibc trim its heap and fault the pages in again around every large
 * message (a fifth of the server's time at 16 KiB). A thread keeps what it freed, up to a
 * bound, for its next buffer of the same class.
 *
 * Blocks come from mem_alloc and are plain C library memory: one that is not given back
 * here may be freed with mem_free. A block may be given back on another thread than the
 * one that took it (it then joins that thread's cache). */
#ifndef BASE_BUFPOOL_H
#define BASE_BUFPOOL_H
#include <stddef.h>

/* Below this a buffer is not pooled (the C library's thread cache and small bins serve it
 * well; from 1 KiB on, glibc consolidates its fast bins before each request). */
#define BUFPOOL_MIN ((size_t)1024)
/* Above this neither: such buffers are rare, and a cache of them would hold too much. */
#define BUFPOOL_MAX ((size_t)16 << 20)
/* What one thread keeps at most, unless it says otherwise (bufpool_thread_limit). */
#define BUFPOOL_THREAD_BYTES ((size_t)16 << 20)

/* The capacity bufpool_get gives for a request of n bytes (n itself when it is not
 * pooled): the size class, with four classes per doubling so that a message of a round
 * size does not take twice its bytes. */
size_t bufpool_class_size(size_t n);
/* A block of at least n bytes; *cap receives its usable size (bufpool_class_size(n)).
 * NULL when out of memory. */
void *bufpool_get(size_t n, size_t *cap);
/* Gives back a block of capacity cap (from bufpool_get, or any C library block of at
 * least cap bytes); frees it when it is not of a class or the cache is full. NULL is
 * ignored. */
void bufpool_put(void *p, size_t cap);
/* Sets what this thread keeps at most (BUFPOOL_THREAD_BYTES until then) and empties its
 * cache. Worker threads keep less: what they free is mostly what a reactor made, which
 * they would hold without reusing. */
void bufpool_thread_limit(size_t bytes);
/* Frees this thread's cache (thread exit does it too). */
void bufpool_thread_release(void);
/* Bytes this thread's cache holds (tests). */
size_t bufpool_thread_cached(void);

#endif
