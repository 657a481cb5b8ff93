#include "base/jsonstr.h"

#include <errno.h>

#include "base/hex.h"
#include "base/utf8.h"

int jsonstr_put(buf *b, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + n;
	buf_putc(b, '"');
	while (p < end) {
		const unsigned char *run = p;
		while (p < end && jsonstr_plain(*p))
			p++;
		buf_append(b, run, (size_t)(p - run));
		if (p == end)
			break;
		unsigned char c = *p;
		if (c >= 0x80) {
			size_t k = utf8_seq_len(p, (size_t)(end - p));
			if (!k)
				return -EILSEQ;
			buf_append(b, p, k);
			p += k;
			continue;
		}
		char esc[6] = {'\\', 0};
		size_t elen = 2;
		switch (c) {
		case '"':
			esc[1] = '"';
			break;
		case '\\':
			esc[1] = '\\';
			break;
		case '\b':
			esc[1] = 'b';
			break;
		case '\f':
			esc[1] = 'f';
			break;
		case '\n':
			esc[1] = 'n';
			break;
		case '\r':
			esc[1] = 'r';
			break;
		case '\t':
			esc[1] = 't';
			break;
		default:
			esc[1] = 'u';
			esc[2] = esc[3] = '0';
			esc[4] = hex_lower(c >> 4);
			esc[5] = hex_lower(c);
			elen = 6;
		}
		buf_append(b, esc, elen);
		p++;
	}
	return buf_putc(b, '"');
}
