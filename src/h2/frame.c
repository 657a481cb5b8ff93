#include "h2/frame.h"

void frame_scan_init(frame_scan *s, bool server)
{
	*s = (frame_scan){.skip = server ? FRAME_PREFACE_LEN : 0};
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
	frame_info *f = &s->cur;
	f->length = (uint32_t)h[0] << 16 | (uint32_t)h[1] << 8 | h[2];
	f->type = h[3];
	f->flags = h[4];
	f->stream_id = ((uint32_t)h[5] << 24 | (uint32_t)h[6] << 16 | (uint32_t)h[7] << 8 | h[8]) &
		       0x7fffffffu;
	f->data_length = f->type == FRAME_DATA ? f->length : 0;
	s->hdr_have = 0;
	if (f->type == FRAME_HEADERS || f->type == FRAME_PUSH_PROMISE)
		s->in_header_block = true;
	if ((f->type == FRAME_HEADERS || f->type == FRAME_PUSH_PROMISE ||
	     f->type == FRAME_CONTINUATION) &&
	    (f->flags & FRAME_FLAG_END_HEADERS))
		s->block_ends = true;
	if (f->type == FRAME_DATA && (f->flags & FRAME_FLAG_PADDED) && f->length > 0) {
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
			frame_info *f = &s->cur;
			f->data_length = pad + 1 <= f->length ? f->length - 1 - pad : 0;
			fn(user, f);
			s->skip = f->length - 1;
			if (!s->skip)
				frame_end(s);
			continue;
		}
		size_t k = FRAME_HEADER_LEN - s->hdr_have;
		if (k > n)
			k = n;
		for (size_t i = 0; i < k; i++)
			s->hdr[s->hdr_have + i] = p[i];
		s->hdr_have += k;
		p += k;
		n -= k;
		if (s->hdr_have == FRAME_HEADER_LEN)
			frame_begin(s, fn, user);
	}
}

bool frame_is_glitch(const frame_info *f)
{
	switch (f->type) {
	case FRAME_DATA:
		return f->data_length == 0 && !(f->flags & FRAME_FLAG_END_STREAM);
	case FRAME_PRIORITY:
		return true;
	case FRAME_SETTINGS:
	case FRAME_PING:
		return !(f->flags & FRAME_FLAG_ACK);
	default:
		return f->type > FRAME_CONTINUATION;
	}
}
