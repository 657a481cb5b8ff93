#include "base/hex.h"

const char hex_digits[32] = "0123456789abcdef0123456789ABCDEF";

int hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

void hex_encode(char *out, const uint8_t *in, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		*out++ = hex_lower(in[i] >> 4);
		*out++ = hex_lower(in[i]);
	}
	*out = 0;
}
