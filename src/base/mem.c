#include "base/mem.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

atomic_bool mem_fail_armed;

/* Relaxed: an injection test needs every allocation counted once, not an order between
 * threads (the thread that arms waits for the work it starts before it disarms). */
static atomic_long seen, failed, fail_nth;
static atomic_bool fail_persistent;

bool mem_fail_this(void)
{
	long k = atomic_fetch_add_explicit(&seen, 1, memory_order_relaxed) + 1;
	long nth = atomic_load_explicit(&fail_nth, memory_order_relaxed);
	if (k < nth || (k > nth && !atomic_load_explicit(&fail_persistent, memory_order_relaxed)))
		return false;
	atomic_fetch_add_explicit(&failed, 1, memory_order_relaxed);
	return true;
}

void mem_fail_arm(long nth, bool persistent)
{
	atomic_store(&seen, 0);
	atomic_store(&failed, 0);
	atomic_store(&fail_nth, nth);
	atomic_store(&fail_persistent, persistent);
	atomic_store(&mem_fail_armed, true);
}

long mem_fail_disarm(void)
{
	atomic_store(&mem_fail_armed, false);
	return atomic_load(&seen);
}

long mem_fail_count(void) { return atomic_load(&failed); }

void *mem_aligned_alloc(size_t align, size_t n)
{
	void *p;
	if (mem_fails() || posix_memalign(&p, align, n))
		return NULL;
	return p;
}

char *mem_strndup(const char *s, size_t n)
{
	size_t len = strnlen(s, n);
	char *p = mem_alloc(len + 1);
	if (p) {
		memcpy(p, s, len);
		p[len] = 0;
	}
	return p;
}

char *mem_strdup(const char *s) { return mem_strndup(s, SIZE_MAX); }

int mem_asprintf(char **out, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	*out = n < 0 ? NULL : mem_alloc((size_t)n + 1);
	if (!*out)
		return -1;
	va_start(ap, fmt);
	vsnprintf(*out, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return n;
}
