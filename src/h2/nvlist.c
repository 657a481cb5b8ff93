#include "h2/nvlist.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "base/base64.h"
#include "base/mem.h"
#include "h2/metadata.h"

int nv_list_push(nv_list *l, const char *name, size_t nlen, const char *value, size_t vlen)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 8;
		nghttp2_nv *v = mem_realloc(l->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = (nghttp2_nv){
		.name = (uint8_t *)name,
		.value = (uint8_t *)value,
		.namelen = nlen,
		.valuelen = vlen,
		.flags = NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE,
	};
	return 0;
}

int nv_list_push_md(nv_list *l, arena *a, const char *name, const void *value, size_t len)
{
	size_t nlen = strlen(name);
	if (!md_valid_key(name, nlen) || md_is_reserved(name, nlen))
		return -EINVAL;
	const char *v;
	size_t vlen;
	if (md_is_binary(name, nlen)) {
		/* Standard alphabet, padded: what gRPC's implementations send. */
		vlen = len > SIZE_MAX / 2 ? SIZE_MAX : base64_encoded_len(len, 0);
		char *enc = vlen == SIZE_MAX ? NULL : arena_alloc(a, vlen + 1);
		if (enc) {
			base64_encode(enc, value, len, 0);
			enc[vlen] = 0;
		}
		v = enc;
	} else {
		if (!md_valid_ascii_value(value, len))
			return -EINVAL;
		v = arena_strndup(a, value, len);
		vlen = len;
	}
	const char *n = arena_strndup(a, name, nlen);
	if (!v || !n)
		return -ENOMEM;
	return nv_list_push(l, n, nlen, v, vlen);
}

void nv_list_free(nv_list *l)
{
	mem_free(l->v);
	memset(l, 0, sizeof(*l));
}
