#include "base/utf8.h"

size_t utf8_seq_len(const unsigned char *p, size_t n)
{
	unsigned c = p[0];
	if (c < 0x80)
		return 1;
	if (c < 0xc2)
		return 0;
	if (c < 0xe0)
		return n >= 2 && (p[1] & 0xc0) == 0x80 ? 2 : 0;
	if (c < 0xf0) {
		if (n < 3 || (p[2] & 0xc0) != 0x80)
			return 0;
		unsigned lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
		return p[1] >= lo && p[1] <= hi ? 3 : 0;
	}
	if (c < 0xf5) {
		if (n < 4 || (p[2] & 0xc0) != 0x80 || (p[3] & 0xc0) != 0x80)
			return 0;
		unsigned lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
		return p[1] >= lo && p[1] <= hi ? 4 : 0;
	}
	return 0;
}

bool utf8_valid(const void *s, size_t n, bool no_nul)
{
	const unsigned char *p = s, *end = p + n;
	while (p < end) {
		if (*p < 0x80) {
			if (!*p && no_nul)
				return false;
			p++;
			continue;
		}
		size_t k = utf8_seq_len(p, (size_t)(end - p));
		if (!k)
			return false;
		p += k;
	}
	return true;
}
