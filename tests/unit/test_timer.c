/* The timer heap: firing order, disarm and re-arm anywhere in the heap, and callbacks that
 * change the heap while it runs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "base/container_of.h"
#include "io/timer.h"

typedef struct item {
	timer t;
	int64_t want; /* deadline it is armed with, -1 when it must not fire */
	int fired;
	int64_t fired_at_now;
	size_t order;
} item;

static struct {
	int64_t now;
	size_t order;
	int64_t last_deadline;
	timer_heap *h;
	item *other; /* for callbacks that act on another timer */
} ctx;

static item *owner(timer *t) { return container_of(t, item, t); }

static void on_fire(timer *t)
{
	item *it = owner(t);
	assert_false(timer_armed(t));
	assert_true(it->want >= 0);
	assert_true(t->deadline_ns <= ctx.now);
	/* Earliest first, across a single run and across runs. */
	assert_true(t->deadline_ns >= ctx.last_deadline);
	ctx.last_deadline = t->deadline_ns;
	it->fired++;
	it->fired_at_now = ctx.now;
	it->order = ctx.order++;
}

/* Heap shape and back-pointers: what every operation has to preserve. */
static void check_heap(const timer_heap *h)
{
	for (size_t i = 0; i < h->n; i++) {
		assert_int_equal(h->v[i]->slot, i + 1);
		if (i)
			assert_true(h->v[(i - 1) / 2]->deadline_ns <= h->v[i]->deadline_ns);
	}
}

static int64_t brute_min(const item *items, size_t n)
{
	int64_t m = INT64_MAX;
	for (size_t i = 0; i < n; i++)
		if (timer_armed(&items[i].t) && items[i].t.deadline_ns < m)
			m = items[i].t.deadline_ns;
	return m;
}

static void reset_ctx(timer_heap *h)
{
	ctx.now = 0;
	ctx.order = 0;
	ctx.last_deadline = INT64_MIN;
	ctx.h = h;
	ctx.other = NULL;
}

static void test_basic_order(void **state)
{
	(void)state;
	timer_heap h;
	timer_heap_init(&h);
	reset_ctx(&h);
	item it[3] = {0};
	assert_int_equal(timer_next(&h), INT64_MAX);
	assert_int_equal(timer_arm(&h, &it[0].t, 30, on_fire), 0);
	assert_int_equal(timer_arm(&h, &it[1].t, 10, on_fire), 0);
	assert_int_equal(timer_arm(&h, &it[2].t, 20, on_fire), 0);
	for (int i = 0; i < 3; i++)
		it[i].want = it[i].t.deadline_ns;
	assert_int_equal(timer_next(&h), 10);
	ctx.now = 9;
	assert_int_equal(timer_run(&h, 9), 0);
	ctx.now = 20;
	assert_int_equal(timer_run(&h, 20), 2);
	assert_int_equal(it[1].order, 0);
	assert_int_equal(it[2].order, 1);
	assert_int_equal(it[0].fired, 0);
	assert_int_equal(timer_next(&h), 30);
	ctx.now = 1000;
	assert_int_equal(timer_run(&h, 1000), 1);
	assert_int_equal(it[0].fired, 1);
	assert_int_equal(timer_next(&h), INT64_MAX);
	assert_int_equal(timer_run(&h, INT64_MAX), 0);
	timer_heap_free(&h);
}

static void test_rearm_and_disarm(void **state)
{
	(void)state;
	timer_heap h;
	timer_heap_init(&h);
	reset_ctx(&h);
	item a = {0}, b = {0};
	/* Disarming a timer never armed is harmless. */
	timer_disarm(&h, &a.t);
	assert_int_equal(timer_arm(&h, &a.t, 50, on_fire), 0);
	assert_int_equal(timer_arm(&h, &b.t, 60, on_fire), 0);
	/* Re-arming moves the timer; it is not in the heap twice. */
	assert_int_equal(timer_arm(&h, &a.t, 70, on_fire), 0);
	assert_int_equal(h.n, 2);
	assert_int_equal(timer_next(&h), 60);
	check_heap(&h);
	timer_disarm(&h, &b.t);
	assert_false(timer_armed(&b.t));
	timer_disarm(&h, &b.t);
	assert_int_equal(h.n, 1);
	a.want = 70;
	b.want = -1;
	ctx.now = 100;
	assert_int_equal(timer_run(&h, 100), 1);
	assert_int_equal(a.fired, 1);
	assert_int_equal(b.fired, 0);
	timer_heap_free(&h);
}

enum { NRAND = 3000 };

static void test_random(void **state)
{
	(void)state;
	timer_heap h;
	timer_heap_init(&h);
	reset_ctx(&h);
	item *items = calloc(NRAND, sizeof(*items));
	assert_non_null(items);
	srand(12345);
	for (size_t i = 0; i < NRAND; i++) {
		/* A narrow range, so that many deadlines are equal. */
		int64_t d = rand() % 5000;
		items[i].want = d;
		assert_int_equal(timer_arm(&h, &items[i].t, d, on_fire), 0);
		if (i % 97 == 0) {
			check_heap(&h);
			assert_int_equal(timer_next(&h), brute_min(items, i + 1));
		}
	}
	check_heap(&h);
	/* Disarm a third and re-arm another third from the middle of the heap. */
	for (size_t i = 0; i < NRAND; i++) {
		int r = rand() % 3;
		if (r == 0) {
			timer_disarm(&h, &items[i].t);
			items[i].want = -1;
		} else if (r == 1) {
			int64_t d = rand() % 5000;
			items[i].want = d;
			assert_int_equal(timer_arm(&h, &items[i].t, d, on_fire), 0);
		}
		if (i % 101 == 0) {
			check_heap(&h);
			assert_int_equal(timer_next(&h), brute_min(items, NRAND));
		}
	}
	check_heap(&h);
	/* Run in uneven steps; every due timer fires, none early. */
	size_t total = 0;
	for (ctx.now = -1; ctx.now < 5100; ctx.now += 1 + rand() % 40) {
		size_t due = 0;
		for (size_t i = 0; i < NRAND; i++)
			due += timer_armed(&items[i].t) && items[i].t.deadline_ns <= ctx.now;
		assert_int_equal(timer_run(&h, ctx.now), due);
		total += due;
		check_heap(&h);
		assert_int_equal(timer_next(&h), brute_min(items, NRAND));
	}
	size_t expected = 0;
	for (size_t i = 0; i < NRAND; i++) {
		if (items[i].want < 0) {
			assert_int_equal(items[i].fired, 0);
			continue;
		}
		expected++;
		assert_int_equal(items[i].fired, 1);
		assert_false(timer_armed(&items[i].t));
	}
	assert_int_equal(total, expected);
	assert_int_equal(h.n, 0);
	free(items);
	timer_heap_free(&h);
}

static void rearm_later(timer *t)
{
	item *it = owner(t);
	it->fired++;
	if (it->fired < 3)
		assert_int_equal(timer_arm(ctx.h, t, ctx.now + 10, rearm_later), 0);
}

static void rearm_now(timer *t)
{
	item *it = owner(t);
	it->fired++;
	if (it->fired < 5)
		assert_int_equal(timer_arm(ctx.h, t, ctx.now, rearm_now), 0);
}

static void disarm_other(timer *t)
{
	owner(t)->fired++;
	timer_disarm(ctx.h, &ctx.other->t);
}

static void test_callbacks_change_heap(void **state)
{
	(void)state;
	timer_heap h;
	timer_heap_init(&h);
	reset_ctx(&h);
	item periodic = {0}, eager = {0};
	assert_int_equal(timer_arm(&h, &periodic.t, 5, rearm_later), 0);
	ctx.now = 5;
	/* Re-armed for later: not fired twice in one run. */
	assert_int_equal(timer_run(&h, 5), 1);
	assert_true(timer_armed(&periodic.t));
	assert_int_equal(periodic.t.deadline_ns, 15);
	ctx.now = 15;
	assert_int_equal(timer_run(&h, 15), 1);
	ctx.now = 25;
	assert_int_equal(timer_run(&h, 25), 1);
	assert_false(timer_armed(&periodic.t));
	assert_int_equal(periodic.fired, 3);
	/* Re-armed as already due: it fires again on the next run, not in this one, so that a
	 * timer re-arming itself at now cannot keep the loop from its I/O. */
	assert_int_equal(timer_arm(&h, &eager.t, 30, rearm_now), 0);
	ctx.now = 30;
	for (int run = 1; run <= 5; run++) {
		assert_int_equal(timer_run(&h, 30), 1);
		assert_int_equal(eager.fired, run);
	}
	assert_int_equal(timer_run(&h, 30), 0);
	assert_false(timer_armed(&eager.t));
	/* A callback cancels another timer that is due at the same moment. */
	item first = {0}, victim = {0};
	victim.want = -1;
	ctx.other = &victim;
	assert_int_equal(timer_arm(&h, &first.t, 40, disarm_other), 0);
	assert_int_equal(timer_arm(&h, &victim.t, 41, on_fire), 0);
	ctx.now = 50;
	assert_int_equal(timer_run(&h, 50), 1);
	assert_int_equal(first.fired, 1);
	assert_int_equal(victim.fired, 0);
	assert_int_equal(h.n, 0);
	timer_heap_free(&h);
}

static void test_extreme_deadlines(void **state)
{
	(void)state;
	timer_heap h;
	timer_heap_init(&h);
	reset_ctx(&h);
	item lo = {.want = 0}, hi = {.want = 0};
	assert_int_equal(timer_arm(&h, &hi.t, INT64_MAX - 1, on_fire), 0);
	assert_int_equal(timer_arm(&h, &lo.t, INT64_MIN, on_fire), 0);
	assert_int_equal(timer_next(&h), INT64_MIN);
	ctx.now = 0;
	assert_int_equal(timer_run(&h, 0), 1);
	assert_int_equal(lo.fired, 1);
	assert_int_equal(timer_next(&h), INT64_MAX - 1);
	ctx.now = INT64_MAX;
	assert_int_equal(timer_run(&h, INT64_MAX), 1);
	assert_int_equal(hi.fired, 1);
	timer_heap_free(&h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_basic_order),
		cmocka_unit_test(test_rearm_and_disarm),
		cmocka_unit_test(test_random),
		cmocka_unit_test(test_callbacks_change_heap),
		cmocka_unit_test(test_extreme_deadlines),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
