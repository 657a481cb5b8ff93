/* A binary min-heap of timers keyed by monotonic deadline (ns). One heap per reactor,
 * used from its thread only. A timer is embedded in its owner; the heap never allocates
 * per timer, only grows its index array. */
#ifndef IO_TIMER_H
#define IO_TIMER_H
#include <stddef.h>
#include <stdint.h>

typedef struct timer timer;
typedef void (*timer_fn)(timer *t);

struct timer {
	int64_t deadline_ns;
	timer_fn fn;
	size_t slot; /* index in the heap + 1; 0 when not armed */
};

typedef struct timer_heap {
	timer **v;
	size_t n, cap;
} timer_heap;

void timer_heap_init(timer_heap *h);
void timer_heap_free(timer_heap *h);
/* Arms (or re-arms) t to fire at deadline_ns. Returns 0 or -ENOMEM. */
int timer_arm(timer_heap *h, timer *t, int64_t deadline_ns, timer_fn fn);
void timer_disarm(timer_heap *h, timer *t);
static inline int timer_armed(const timer *t) { return t->slot != 0; }
/* Deadline of the earliest timer, or INT64_MAX when none is armed. */
int64_t timer_next(const timer_heap *h);
/* Fires (disarmed first) the timers whose deadline is <= now, at most as many as were
 * armed on entry (what callbacks arm for now fires on the next run); returns how many. */
size_t timer_run(timer_heap *h, int64_t now_ns);

#endif
