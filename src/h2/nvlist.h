/* Header lists handed to nghttp2 (request, response and trailers): names and values point
 * to memory that outlives the frame (literals, or copies in the call's arena). */
#ifndef H2_NVLIST_H
#define H2_NVLIST_H
#include <nghttp2/nghttp2.h>
#include <stddef.h>

#include "base/arena.h"

typedef struct nv_list {
	nghttp2_nv *v;
	size_t n, cap;
} nv_list;

/* Appends one header, without copying. 0 or -ENOMEM. */
int nv_list_push(nv_list *l, const char *name, size_t nlen, const char *value, size_t vlen);
#define NV_LIST_LIT(l, n, v) nv_list_push((l), (n), sizeof(n) - 1, (v), sizeof(v) - 1)
/* Validates a custom metadata entry and appends it, base64-encoding -bin values; copies
 * go to a. 0, -EINVAL, -ENOMEM. */
int nv_list_push_md(nv_list *l, arena *a, const char *name, const void *value, size_t len);
void nv_list_free(nv_list *l);

#endif
