#include "base/base64.h"

#include <errno.h>
#include <stdbool.h>

static const char alphabet[2][64] = {
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
};

size_t base64_encoded_len(size_t n, int flags)
{
	if (flags & BASE64_NOPAD)
		return n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
	return (n + 2) / 3 * 4;
}

void base64_encode(char *out, const uint8_t *in, size_t n, int flags)
{
	const char *a = alphabet[flags & BASE64_URL ? 1 : 0];
	size_t i = 0;
	for (; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		*out++ = a[v >> 18];
		*out++ = a[(v >> 12) & 63];
		*out++ = a[(v >> 6) & 63];
		*out++ = a[v & 63];
	}
	if (i == n)
		return;
	bool two = n - i == 2;
	uint32_t v = (uint32_t)in[i] << 16 | (two ? (uint32_t)in[i + 1] << 8 : 0);
	*out++ = a[v >> 18];
	*out++ = a[(v >> 12) & 63];
	if (two)
		*out++ = a[(v >> 6) & 63];
	if (!(flags & BASE64_NOPAD)) {
		if (!two)
			*out++ = '=';
		*out++ = '=';
	}
}

int base64_put(buf *b, const uint8_t *in, size_t n, int flags)
{
	if (!n)
		return 0; /* nothing to write: b may have no memory yet */
	if (n > SIZE_MAX / 2)
		return -ENOMEM;
	size_t len = base64_encoded_len(n, flags);
	int rc = buf_reserve(b, len);
	if (!rc) {
		base64_encode(b->text + b->len, in, n, flags);
		b->len += len;
	}
	return rc;
}

static int value(unsigned char c, int flags)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	bool url = flags & (BASE64_URL | BASE64_EITHER);
	bool std = !(flags & BASE64_URL) || (flags & BASE64_EITHER);
	if ((c == '+' && std) || (c == '-' && url))
		return 62;
	if ((c == '/' && std) || (c == '_' && url))
		return 63;
	return -1;
}

long base64_decode(uint8_t *out, const char *in, size_t n, int flags)
{
	if (n && in[n - 1] == '=' && !(flags & BASE64_NOPAD)) {
		if (n % 4)
			return -1;
		n -= in[n - 2] == '=' ? 2 : 1;
	}
	if (n % 4 == 1)
		return -1;
	uint8_t *o = out;
	uint32_t acc = 0;
	for (size_t i = 0; i < n; i++) {
		int v = value((unsigned char)in[i], flags);
		if (v < 0)
			return -1;
		acc = acc << 6 | (uint32_t)v;
		if (i % 4 == 3) {
			*o++ = (uint8_t)(acc >> 16);
			*o++ = (uint8_t)(acc >> 8);
			*o++ = (uint8_t)acc;
			acc = 0;
		}
	}
	/* Two characters left carry a byte and 4 spare bits, three carry two and 2 spare. */
	uint32_t spare = 0;
	if (n % 4 == 2) {
		*o++ = (uint8_t)(acc >> 4);
		spare = acc & 15;
	} else if (n % 4 == 3) {
		*o++ = (uint8_t)(acc >> 10);
		*o++ = (uint8_t)(acc >> 2);
		spare = acc & 3;
	}
	if (spare && (flags & BASE64_EXACT))
		return -1;
	return (long)(o - out);
}

int base64_put_decoded(buf *b, const char *in, size_t n, int flags)
{
	if (!n)
		return 0;
	int rc = buf_reserve(b, base64_decoded_max(n));
	if (rc)
		return rc;
	long len = base64_decode(b->data + b->len, in, n, flags);
	if (len < 0)
		return -EINVAL;
	b->len += (size_t)len;
	return 0;
}
