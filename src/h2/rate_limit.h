/* A rate limit on events: the generic cell rate algorithm, `rate` events per second on
 * average, `burst` at once. Pure logic: time comes in as monotonic nanoseconds. */
#ifndef H2_RATE_LIMIT_H
#define H2_RATE_LIMIT_H
#include <stdbool.h>
#include <stdint.h>

typedef struct rate_limit {
	int64_t tat; /* theoretical arrival time of the next event */
	int64_t interval, tolerance;
} rate_limit;

/* rate 0 disables the limit. */
void rate_limit_init(rate_limit *r, uint32_t rate, uint32_t burst);
/* Records one event at now; false when it goes over the limit. */
bool rate_limit_take(rate_limit *r, int64_t now);

#endif
