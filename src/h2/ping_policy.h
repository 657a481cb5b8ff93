/* gRPC's server ping policy, against peers that make us answer PINGs without asking for
 * anything: a PING that comes sooner than the allowed interval after the previous one is
 * a strike, unless we sent HEADERS or DATA in between; more than max_strikes strikes ->
 * GOAWAY ENHANCE_YOUR_CALM "too_many_pings". Pure logic: time comes in as monotonic
 * nanoseconds. */
#ifndef H2_PING_POLICY_H
#define H2_PING_POLICY_H
#include <stdbool.h>
#include <stdint.h>

typedef struct ping_policy {
	int64_t min_interval;	   /* while calls are active */
	int64_t idle_min_interval; /* while the connection has no calls */
	uint32_t max_strikes;
	uint32_t strikes;
	int64_t last_ping; /* INT64_MIN: none since the last reset */
} ping_policy;

void ping_policy_init(ping_policy *p, int64_t min_interval, int64_t idle_min_interval,
		      uint32_t max_strikes);
/* A PING arrived; true when the peer is over its strikes. */
bool ping_policy_on_ping(ping_policy *p, int64_t now, bool idle);
/* We sent HEADERS or DATA: the peer may ping again. */
void ping_policy_reset(ping_policy *p);

#endif
