#include "h2/guard.h"

#include <limits.h>

void frame_scan_init(frame_scan *s, bool server)
{
	*s = (frame_scan){.skip = server ? H2_CLIENT_PREFACE_LEN : 0};
}

static void frame_end(frame_scan *s)
{
	if (s->block_ends) {
		s->in_header_block = false;
		s->block_ends = false;
	}
}

static void frame_begin(frame_scan *s, frame_scan_fn fn, void *user)
{
	const uint8_t *h = s->hdr;
	h2_frame_info *f = &s->cur;
	f->length = (uint32_t)h[0] << 16 | (uint32_t)h[1] << 8 | h[2];
	f->type = h[3];
	f->flags = h[4];
	f->stream_id = ((uint32_t)h[5] << 24 | (uint32_t)h[6] << 16 | (uint32_t)h[7] << 8 | h[8]) &
		       0x7fffffffu;
	f->data_length = f->type == H2_DATA ? f->length : 0;
	s->hdr_have = 0;
	if (f->type == H2_HEADERS || f->type == H2_PUSH_PROMISE)
		s->in_header_block = true;
	if ((f->type == H2_HEADERS || f->type == H2_PUSH_PROMISE || f->type == H2_CONTINUATION) &&
	    (f->flags & H2_FLAG_END_HEADERS))
		s->block_ends = true;
	if (f->type == H2_DATA && (f->flags & H2_FLAG_PADDED) && f->length > 0) {
		s->want_pad = true;
		return;
	}
	fn(user, f);
	s->skip = f->length;
	if (!s->skip)
		frame_end(s);
}

void frame_scan_feed(frame_scan *s, const uint8_t *p, size_t n, frame_scan_fn fn, void *user)
{
	while (n) {
		if (s->skip) {
			size_t k = n < s->skip ? n : s->skip;
			p += k;
			n -= k;
			s->skip -= k;
			if (!s->skip)
				frame_end(s);
			continue;
		}
		if (s->want_pad) {
			uint32_t pad = *p++;
			n--;
			s->want_pad = false;
			h2_frame_info *f = &s->cur;
			f->data_length = pad + 1 <= f->length ? f->length - 1 - pad : 0;
			fn(user, f);
			s->skip = f->length - 1;
			if (!s->skip)
				frame_end(s);
			continue;
		}
		size_t k = H2_FRAME_HEADER_LEN - s->hdr_have;
		if (k > n)
			k = n;
		for (size_t i = 0; i < k; i++)
			s->hdr[s->hdr_have + i] = p[i];
		s->hdr_have += k;
		p += k;
		n -= k;
		if (s->hdr_have == H2_FRAME_HEADER_LEN)
			frame_begin(s, fn, user);
	}
}

bool frame_is_glitch(const h2_frame_info *f)
{
	switch (f->type) {
	case H2_DATA:
		return f->data_length == 0 && !(f->flags & H2_FLAG_END_STREAM);
	case H2_PRIORITY:
		return true;
	case H2_SETTINGS:
	case H2_PING:
		return !(f->flags & H2_FLAG_ACK);
	default:
		return f->type > H2_CONTINUATION;
	}
}

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
