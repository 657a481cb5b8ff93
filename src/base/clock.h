/* Monotonic and wall clocks in nanoseconds. */
#ifndef BASE_CLOCK_H
#define BASE_CLOCK_H
#include <stdint.h>

#define NS_PER_MS 1000000LL
#define NS_PER_SEC 1000000000LL

int64_t clock_now_ns(void);  /* CLOCK_MONOTONIC */
int64_t clock_wall_ns(void); /* CLOCK_REALTIME */

#endif
