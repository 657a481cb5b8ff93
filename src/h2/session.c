#include "h2/session.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/base64.h"
#include "base/mem.h"
#include "h2/metadata.h"

static void *nmalloc(size_t n, void *user)
{
	(void)user;
	return mem_alloc(n);
}

static void nfree(void *p, void *user)
{
	(void)user;
	mem_free(p);
}

static void *ncalloc(size_t n, size_t size, void *user)
{
	(void)user;
	return mem_calloc(n, size);
}

static void *nrealloc(void *p, size_t n, void *user)
{
	(void)user;
	return mem_realloc(p, n);
}

nghttp2_mem session_mem = {NULL, nmalloc, nfree, ncalloc, nrealloc};

int session_pump(nghttp2_session *ng, io_conn *io)
{
	while (io_conn_out_pending(io) < SESSION_OUT_HIGH) {
		const uint8_t *p;
		ssize_t n = nghttp2_session_mem_send(ng, &p);
		if (n < 0) {
			io_conn_abort(io, -EPROTO);
			return -EPROTO;
		}
		if (n == 0)
			break;
		if (io_conn_write(io, p, (size_t)n)) {
			io_conn_abort(io, -ENOMEM);
			return -ENOMEM;
		}
	}
	return 0;
}

void session_after_pump(nghttp2_session *ng, io_conn *io)
{
	if (io_conn_out_pending(io) >= SESSION_OUT_HIGH && nghttp2_session_want_write(ng))
		io_conn_want_send(io); /* the rest after this send completes */
	else if (!nghttp2_session_want_read(ng) && !nghttp2_session_want_write(ng))
		io_conn_close(io);
}

int session_drain_output(nghttp2_session *ng, buf *keep)
{
	const uint8_t *p;
	ssize_t n;
	while ((n = nghttp2_session_mem_send(ng, &p)) > 0)
		if (keep)
			buf_append(keep, p, (size_t)n);
	return n < 0 ? -EPROTO : 0;
}

int nv_push(nv_list *l, const char *name, size_t nlen, const char *value, size_t vlen)
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

int nv_push_md(nv_list *l, arena *a, const char *name, const void *value, size_t len)
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
	return nv_push(l, n, nlen, v, vlen);
}

void nv_list_free(nv_list *l)
{
	mem_free(l->v);
	memset(l, 0, sizeof(*l));
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

