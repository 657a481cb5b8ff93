#include "io/timer.h"

#include <errno.h>
#include <stdlib.h>

#include "base/mem.h"

void timer_heap_init(timer_heap *h)
{
	h->v = NULL;
	h->n = h->cap = 0;
}

void timer_heap_free(timer_heap *h)
{
	mem_free(h->v);
	timer_heap_init(h);
}

static void place(timer_heap *h, size_t i, timer *t)
{
	h->v[i] = t;
	t->slot = i + 1;
}

static void sift_up(timer_heap *h, size_t i)
{
	timer *t = h->v[i];
	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (h->v[parent]->deadline_ns <= t->deadline_ns)
			break;
		place(h, i, h->v[parent]);
		i = parent;
	}
	place(h, i, t);
}

static void sift_down(timer_heap *h, size_t i)
{
	timer *t = h->v[i];
	for (;;) {
		size_t child = 2 * i + 1;
		if (child >= h->n)
			break;
		if (child + 1 < h->n && h->v[child + 1]->deadline_ns < h->v[child]->deadline_ns)
			child++;
		if (t->deadline_ns <= h->v[child]->deadline_ns)
			break;
		place(h, i, h->v[child]);
		i = child;
	}
	place(h, i, t);
}

void timer_disarm(timer_heap *h, timer *t)
{
	if (!t->slot)
		return;
	size_t i = t->slot - 1;
	t->slot = 0;
	timer *last = h->v[--h->n];
	if (i == h->n)
		return;
	place(h, i, last);
	sift_up(h, i);
	sift_down(h, last->slot - 1);
}

int timer_arm(timer_heap *h, timer *t, int64_t deadline_ns, timer_fn fn)
{
	if (t->slot) {
		/* Moved in place: re-arming needs no memory, so it cannot fail and leave a
		 * deadline (a call's, say) silently dropped. */
		t->deadline_ns = deadline_ns;
		t->fn = fn;
		sift_up(h, t->slot - 1);
		sift_down(h, t->slot - 1);
		return 0;
	}
	if (h->n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 64;
		timer **v = mem_realloc(h->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		h->v = v;
		h->cap = cap;
	}
	t->deadline_ns = deadline_ns;
	t->fn = fn;
	place(h, h->n++, t);
	sift_up(h, h->n - 1);
	return 0;
}

int64_t timer_next(const timer_heap *h) { return h->n ? h->v[0]->deadline_ns : INT64_MAX; }

size_t timer_run(timer_heap *h, int64_t now_ns)
{
	/* At most as many firings as timers were armed on entry: a callback that re-arms a
	 * timer at or before now (its own, say) gets it fired on the next run, not again and
	 * again in this one while the loop never gets back to its I/O. */
	size_t fired = 0, budget = h->n;
	while (h->n && h->v[0]->deadline_ns <= now_ns && fired < budget) {
		timer *t = h->v[0];
		timer_disarm(h, t);
		fired++;
		t->fn(t);
	}
	return fired;
}
