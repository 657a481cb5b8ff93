#include "base/bufpool.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/mem.h"

#if defined(__SANITIZE_ADDRESS__)
#define BUFPOOL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BUFPOOL_ASAN 1
#endif
#endif
#ifdef BUFPOOL_ASAN
/* A cached block is poisoned, so that a use after its buffer was freed is still caught by
 * the sanitizer, as it would be without the cache. */
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define MIN_SHIFT 10 /* BUFPOOL_MIN */
#define MAX_SHIFT 24 /* BUFPOOL_MAX */
/* Class 0 is BUFPOOL_MIN; then four per doubling up to BUFPOOL_MAX. */
#define NCLASSES (1 + 4 * (MAX_SHIFT - MIN_SHIFT))
/* A class keeps at most half the thread's bound, so that one size cannot take it all. At
 * thousands of calls in flight the churn of a loop turn is thousands of blocks of a
 * class (one arena block per call). */
#define CLASS_BYTES (limit / 2)

typedef struct block {
	struct block *next;
} block;

/* A thread's cache lives on the heap, linked from a global list: LeakSanitizer does not
 * scan thread-local storage, and the main thread's cache is still there at exit. */
typedef struct cache {
	block *head[NCLASSES];
	size_t class_bytes[NCLASSES];
	size_t bytes;
	struct cache *prev, *next;
} cache;

static _Thread_local cache *mine;
static _Thread_local size_t limit = BUFPOOL_THREAD_BYTES;
static cache *all;
static pthread_mutex_t all_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_key_t exit_key;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;

/* The class of a pooled size n (BUFPOOL_MIN <= n <= BUFPOOL_MAX), rounding up; *size
 * receives the class's size. */
static int class_of(size_t n, size_t *size)
{
	if (n <= BUFPOOL_MIN) {
		*size = BUFPOOL_MIN;
		return 0;
	}
	/* 2^e < n <= 2^(e+1); the classes in there are 5/4, 6/4, 7/4 and 8/4 of 2^e. */
	int e = 63 - __builtin_clzll((unsigned long long)(n - 1));
	size_t step = (size_t)1 << (e - 2);
	size_t quarters = (n + step - 1) / step; /* 5..8 */
	*size = quarters * step;
	return 1 + 4 * (e - MIN_SHIFT) + (int)(quarters - 5);
}

size_t bufpool_class_size(size_t n)
{
	if (n > BUFPOOL_MAX)
		return n;
	size_t size;
	class_of(n < BUFPOOL_MIN ? BUFPOOL_MIN : n, &size);
	return n < BUFPOOL_MIN ? n : size;
}

/* The size of class k (the inverse of class_of). */
static size_t class_size(int k)
{
	if (k == 0)
		return BUFPOOL_MIN;
	int e = MIN_SHIFT + (k - 1) / 4;
	return (size_t)(5 + (k - 1) % 4) << (e - 2);
}

static void release(cache *c)
{
	for (int i = 0; i < NCLASSES; i++) {
		while (c->head[i]) {
			block *b = c->head[i];
			UNPOISON(b, class_size(i));
			c->head[i] = b->next;
			mem_free(b);
		}
		c->class_bytes[i] = 0;
	}
	c->bytes = 0;
}

static void on_thread_exit(void *arg)
{
	cache *c = arg;
	release(c);
	pthread_mutex_lock(&all_mu);
	if (c->prev)
		c->prev->next = c->next;
	else
		all = c->next;
	if (c->next)
		c->next->prev = c->prev;
	pthread_mutex_unlock(&all_mu);
	mem_free(c);
	mine = NULL;
}

static void make_key(void) { pthread_key_create(&exit_key, on_thread_exit); }

/* This thread's cache, made at its first use; NULL when out of memory (then nothing is
 * cached). */
static cache *my_cache(void)
{
	if (mine)
		return mine;
	cache *c = mem_calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	pthread_once(&exit_once, make_key);
	pthread_mutex_lock(&all_mu);
	c->next = all;
	if (all)
		all->prev = c;
	all = c;
	pthread_mutex_unlock(&all_mu);
	/* The key's destructor frees the cache when the thread ends. */
	pthread_setspecific(exit_key, c);
	return mine = c;
}

void *bufpool_get(size_t n, size_t *cap)
{
	if (n < BUFPOOL_MIN || n > BUFPOOL_MAX) {
		*cap = n;
		return mem_alloc(n ? n : 1);
	}
	size_t size;
	int k = class_of(n, &size);
	*cap = size;
	cache *c = mine;
	block *b = c ? c->head[k] : NULL;
	/* A cached block counts as an allocation for failure injection all the same, so that
	 * the out-of-memory paths stay reachable whatever the cache holds. */
	if (b && !mem_fails()) {
		UNPOISON(b, size);
		c->head[k] = b->next;
		c->class_bytes[k] -= size;
		c->bytes -= size;
		return b;
	}
	return b ? NULL : mem_alloc(size);
}

void bufpool_put(void *p, size_t cap)
{
	if (!p)
		return;
	size_t size;
	int k = cap >= BUFPOOL_MIN && cap <= BUFPOOL_MAX ? class_of(cap, &size) : -1;
	cache *c = k < 0 || size != cap ? NULL : my_cache();
	if (!c || c->class_bytes[k] + size > CLASS_BYTES || c->bytes + size > limit) {
		mem_free(p);
		return;
	}
	block *b = p;
	b->next = c->head[k];
	c->head[k] = b;
	c->class_bytes[k] += size;
	c->bytes += size;
	/* The link stays readable: LeakSanitizer follows it to the blocks behind. */
	POISON((char *)p + sizeof(block), size - sizeof(block));
}

void bufpool_thread_limit(size_t bytes)
{
	limit = bytes;
	bufpool_thread_release();
}

void bufpool_thread_release(void)
{
	if (mine)
		release(mine);
}

size_t bufpool_thread_cached(void) { return mine ? mine->bytes : 0; }
