/* What server and client connections share: moving nghttp2 output into the socket's
 * buffer, and metadata on the wire. */
#ifndef H2_SESSION_H
#define H2_SESSION_H
#include <nghttp2/nghttp2.h>
#include <stdbool.h>

#include "base/arena.h"
#include "base/buf.h"
#include "h2/call.h"
#include "io/reactor.h"

/* Output per connection buffered before the session yields to the socket. */
#define SESSION_OUT_HIGH (256 * 1024)
#define SESSION_CONN_WINDOW (16 * 1024 * 1024)
#define SESSION_STREAM_WINDOW (1024 * 1024)

/* Copies nghttp2 output into io's send buffer up to SESSION_OUT_HIGH. <0 on failure
 * (the connection was aborted). */
int session_pump(nghttp2_session *ng, io_conn *io);
/* After pumping: asks for another turn when output was capped, or closes the
 * connection when the session has nothing left to read or write. */
void session_after_pump(nghttp2_session *ng, io_conn *io);
/* Drains output into keep, or discards it when keep is NULL (detached connections, for
 * fuzzers and tests). */
int session_drain_output(nghttp2_session *ng, buf *keep);

/* nghttp2's allocator for every session: base/mem.h's, so that the tests' failure
 * injection reaches nghttp2's allocations too. */
extern nghttp2_mem session_mem;

/* Growable header list whose names and values point to memory that outlives the frame. */
typedef struct nv_list {
	nghttp2_nv *v;
	size_t n, cap;
} nv_list;

int nv_push(nv_list *l, const char *name, size_t nlen, const char *value, size_t vlen);
#define NV_LIT(l, n, v) nv_push((l), (n), sizeof(n) - 1, (v), sizeof(v) - 1)
/* Validates a custom metadata entry and appends it, base64-encoding -bin values; copies
 * go to a. 0, -EINVAL, -ENOMEM. */
int nv_push_md(nv_list *l, arena *a, const char *name, const void *value, size_t len);
void nv_list_free(nv_list *l);

/* Received metadata: decodes -bin values. -EINVAL on bad base64, -ENOMEM. */
typedef struct md_list {
	call_md *v;
	size_t n, cap;
} md_list;
int md_list_add(md_list *l, arena *a, const uint8_t *name, size_t nlen, const uint8_t *value,
		size_t vlen);
const call_md *md_list_get(const md_list *l, const char *name);

#endif
