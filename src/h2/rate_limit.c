#include "h2/rate_limit.h"

void rate_limit_init(rate_limit *r, uint32_t rate, uint32_t burst)
{
	r->tat = INT64_MIN;
	r->interval = rate ? 1000000000LL / rate : 0;
	if (rate && !r->interval)
		r->interval = 1;
	r->tolerance = r->interval * (int64_t)(burst ? burst - 1 : 0);
}

bool rate_limit_take(rate_limit *r, int64_t now)
{
	if (!r->interval)
		return true;
	int64_t tat = r->tat > now ? r->tat : now;
	if (tat - now > r->tolerance)
		return false;
	r->tat = tat + r->interval;
	return true;
}
