#include "services/budget.h"

void budget_init(budget *b, size_t limit, size_t fixed)
{
	*b = (budget){.limit = limit, .fixed = fixed, .used = fixed, .full = fixed > limit};
}

size_t budget_field(size_t len)
{
	size_t n = 1;
	for (size_t v = len; v >= 0x80; v >>= 7)
		n++;
	return 1 + n + len;
}

bool budget_take_bytes(budget *b, size_t n)
{
	if (b->full || n > b->limit - b->used) {
		b->full = true;
		return false;
	}
	b->used += n;
	return true;
}

bool budget_take(budget *b, size_t n, size_t reserve)
{
	if (b->full || n > b->limit - b->used || reserve > b->limit - b->used - n) {
		b->full = true;
		return false;
	}
	b->used += n;
	b->items++;
	return true;
}

bool budget_fits_alone(const budget *b, size_t n, size_t reserve)
{
	return b->fixed <= b->limit && n <= b->limit - b->fixed &&
	       reserve <= b->limit - b->fixed - n;
}
