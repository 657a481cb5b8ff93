#include "h2/session.h"

#include <errno.h>

#include "base/mem.h"

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

int session_pump(nghttp2_session *ng, reactor_conn *io)
{
	while (reactor_conn_out_pending(io) < SESSION_OUT_HIGH) {
		const uint8_t *p;
		ssize_t n = nghttp2_session_mem_send(ng, &p);
		if (n < 0) {
			reactor_conn_abort(io, -EPROTO);
			return -EPROTO;
		}
		if (n == 0)
			break;
		if (reactor_conn_write(io, p, (size_t)n)) {
			reactor_conn_abort(io, -ENOMEM);
			return -ENOMEM;
		}
	}
	return 0;
}

void session_after_pump(nghttp2_session *ng, reactor_conn *io)
{
	if (reactor_conn_out_pending(io) >= SESSION_OUT_HIGH && nghttp2_session_want_write(ng))
		reactor_conn_want_send(io); /* the rest after this send completes */
	else if (!nghttp2_session_want_read(ng) && !nghttp2_session_want_write(ng))
		reactor_conn_close(io);
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
