#include "h2/pbcheck.h"

#define MAX_DEPTH 64

bool pbcheck_utf8(const uint8_t *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		uint8_t c = s[i];
		if (c == 0)
			return false;
		if (c < 0x80) {
			i++;
			continue;
		}
		size_t len;
		uint32_t cp, min;
		if ((c & 0xe0) == 0xc0) {
			len = 2, cp = c & 0x1f, min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			len = 3, cp = c & 0x0f, min = 0x800;
		} else if ((c & 0xf8) == 0xf0) {
			len = 4, cp = c & 0x07, min = 0x10000;
		} else {
			return false;
		}
		if (n - i < len)
			return false;
		for (size_t k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		/* Overlong forms, UTF-16 surrogates and beyond Unicode are not UTF-8. */
		if (cp < min || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
			return false;
		i += len;
	}
	return true;
}

static bool varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	*v = 0;
	for (int shift = 0; shift < 64 && *p < end; shift += 7) {
		uint8_t b = *(*p)++;
		*v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return true;
	}
	return false;
}

static bool check(const ProtobufCMessageDescriptor *d, const uint8_t *p, const uint8_t *end,
		  int depth, const char **field)
{
	if (depth > MAX_DEPTH)
		return true; /* unpacking refuses what is too deep on its own terms */
	while (p < end) {
		uint64_t key, n;
		if (!varint(&p, end, &key))
			return true;
		switch (key & 7) {
		case 0:
			if (!varint(&p, end, &n))
				return true;
			continue;
		case 1:
			if (end - p < 8)
				return true;
			p += 8;
			continue;
		case 5:
			if (end - p < 4)
				return true;
			p += 4;
			continue;
		case 2:
			break;
		default:
			return true; /* groups or garbage: for unpacking to judge */
		}
		if (!varint(&p, end, &n) || n > (uint64_t)(end - p))
			return true;
		const ProtobufCFieldDescriptor *f =
			key >> 3 <= UINT32_MAX ? protobuf_c_message_descriptor_get_field(d, (unsigned)(key >> 3))
					       : NULL;
		if (f && f->type == PROTOBUF_C_TYPE_STRING && !pbcheck_utf8(p, (size_t)n)) {
			*field = f->name;
			return false;
		}
		if (f && f->type == PROTOBUF_C_TYPE_MESSAGE &&
		    !check(f->descriptor, p, p + n, depth + 1, field))
			return false;
		p += n;
	}
	return true;
}

bool pbcheck_strings(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t len,
		     const char **field)
{
	return check(d, data, data + len, 0, field);
}
