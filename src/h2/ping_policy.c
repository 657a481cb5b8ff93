#include "h2/ping_policy.h"

void ping_policy_init(ping_policy *p, int64_t min_interval, int64_t idle_min_interval,
		      uint32_t max_strikes)
{
	*p = (ping_policy){.min_interval = min_interval,
			   .idle_min_interval = idle_min_interval,
			   .max_strikes = max_strikes,
			   .last_ping = INT64_MIN};
}

bool ping_policy_on_ping(ping_policy *p, int64_t now, bool idle)
{
	int64_t interval = idle ? p->idle_min_interval : p->min_interval;
	if (p->last_ping != INT64_MIN && now - p->last_ping < interval)
		p->strikes++;
	p->last_ping = now;
	return p->strikes > p->max_strikes;
}

void ping_policy_reset(ping_policy *p)
{
	p->strikes = 0;
	p->last_ping = INT64_MIN;
}
