#include "h2/metadata.h"

#include <errno.h>
#include <string.h>

#include "base/base64.h"
#include "base/hex.h"

static bool percent_plain(uint8_t c) { return c >= 0x20 && c <= 0x7E && c != '%'; }

int md_percent_encode(buf *out, const uint8_t *in, size_t len)
{
	if (len > SIZE_MAX / 3)
		return -ENOMEM;
	size_t extra = 0;
	for (size_t i = 0; i < len; i++)
		extra += percent_plain(in[i]) ? 0 : 2;
	if (len + extra == 0)
		return 0;
	int rc = buf_reserve(out, len + extra);
	if (rc)
		return rc;
	uint8_t *p = out->data + out->len;
	for (size_t i = 0; i < len; i++) {
		if (percent_plain(in[i])) {
			*p++ = in[i];
		} else {
			*p++ = '%';
			*p++ = (uint8_t)hex_upper(in[i] >> 4);
			*p++ = (uint8_t)hex_upper(in[i]);
		}
	}
	out->len += len + extra;
	return 0;
}

int md_percent_decode(buf *out, const uint8_t *in, size_t len)
{
	if (!len)
		return 0;
	/* Decoding never lengthens the text. */
	int rc = buf_reserve(out, len);
	if (rc)
		return rc;
	uint8_t *p = out->data + out->len;
	for (size_t i = 0; i < len; i++) {
		int hi, lo;
		if (in[i] == '%' && i + 2 < len && (hi = hex_value(in[i + 1])) >= 0 &&
		    (lo = hex_value(in[i + 2])) >= 0) {
			*p++ = (uint8_t)(hi << 4 | lo);
			i += 2;
		} else {
			*p++ = in[i];
		}
	}
	out->len = (size_t)(p - out->data);
	return 0;
}

static const struct {
	char unit;
	int64_t ns;
} units[] = {
	{'n', 1},
	{'u', 1000},
	{'m', 1000000},
	{'S', 1000000000},
	{'M', 60LL * 1000000000},
	{'H', 3600LL * 1000000000},
};
#define NUNITS (sizeof(units) / sizeof(units[0]))
#define TIMEOUT_MAX_DIGITS 8
#define TIMEOUT_MAX_VALUE 99999999

int md_timeout_parse(const char *in, size_t len, int64_t *ns)
{
	if (len < 2 || len > TIMEOUT_MAX_DIGITS + 1)
		return -EINVAL;
	int64_t v = 0;
	for (size_t i = 0; i + 1 < len; i++) {
		if (in[i] < '0' || in[i] > '9')
			return -EINVAL;
		v = v * 10 + (in[i] - '0');
	}
	for (size_t u = 0; u < NUNITS; u++) {
		if (in[len - 1] != units[u].unit)
			continue;
		*ns = v > INT64_MAX / units[u].ns ? INT64_MAX : v * units[u].ns;
		return 0;
	}
	return -EINVAL;
}

size_t md_timeout_format(int64_t ns, char out[10])
{
	if (ns < 1)
		ns = 1;
	size_t u = 0;
	int64_t v = ns;
	/* The smallest unit whose rounded-up count fits 8 digits: the finest precision
	 * the header can carry, never shortening the caller's deadline. */
	for (; u < NUNITS; u++) {
		v = ns / units[u].ns + (ns % units[u].ns != 0);
		if (v <= TIMEOUT_MAX_VALUE)
			break;
	}
	char digits[TIMEOUT_MAX_DIGITS];
	size_t nd = 0;
	do {
		digits[nd++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	size_t len = 0;
	while (nd)
		out[len++] = digits[--nd];
	out[len++] = units[u].unit;
	out[len] = '\0';
	return len;
}

bool md_is_binary(const char *name, size_t len)
{
	return len >= 4 && !memcmp(name + len - 4, "-bin", 4);
}

static bool name_eq(const char *name, size_t len, const char *lit)
{
	size_t n = strlen(lit);
	if (len != n)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (c != lit[i])
			return false;
	}
	return true;
}

bool md_is_reserved(const char *name, size_t len)
{
	/* HTTP/2 framing and connection-level headers, and what gRPC itself sets. Not
	 * user-agent: applications read it. Everything under grpc- belongs to the protocol,
	 * except the rich error details that handlers set and clients read. */
	static const char *const reserved[] = {
		"content-type",	     "te",	"connection", "keep-alive",	 "proxy-connection",
		"transfer-encoding", "upgrade", "host",	      "accept-encoding", "content-length",
	};
	if (len == 0)
		return false;
	if (name[0] == ':')
		return true;
	if (len >= 5 && name_eq(name, 5, "grpc-"))
		return !name_eq(name, len, "grpc-status-details-bin");
	for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
		if (name_eq(name, len, reserved[i]))
			return true;
	return false;
}

bool md_valid_key(const char *name, size_t len)
{
	if (!len)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = name[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || c == '_' || c == '.' ||
		      c == '-'))
			return false;
	}
	return true;
}

bool md_valid_ascii_value(const uint8_t *v, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (v[i] < 0x20 || v[i] > 0x7E)
			return false;
	return true;
}

int md_list_add(md_list *l, arena *a, const uint8_t *name, size_t nlen, const uint8_t *value,
		size_t vlen)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 8;
		call_md *v = arena_alloc(a, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		if (l->n)
			memcpy(v, l->v, l->n * sizeof(*v));
		l->v = v;
		l->cap = cap;
	}
	call_md *m = &l->v[l->n];
	m->name = arena_strndup(a, name, nlen);
	m->name_len = nlen;
	if (md_is_binary((const char *)name, nlen)) {
		/* Padded or not, as gRPC accepts; a NUL after the value, as for text. */
		uint8_t *dec = arena_alloc(a, base64_decoded_max(vlen) + 1);
		if (!dec)
			return -ENOMEM;
		long n = base64_decode(dec, (const char *)value, vlen, 0);
		if (n < 0)
			return -EINVAL;
		dec[n] = 0;
		m->value = dec;
		m->value_len = (size_t)n;
	} else {
		m->value = (uint8_t *)arena_strndup(a, value, vlen);
		m->value_len = vlen;
	}
	if (!m->name || !m->value)
		return -ENOMEM;
	l->n++;
	return 0;
}

const call_md *md_list_get(const md_list *l, const char *name)
{
	for (size_t i = 0; i < l->n; i++)
		if (!strcmp(l->v[i].name, name))
			return &l->v[i];
	return NULL;
}
