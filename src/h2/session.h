/* What server and client connections share: moving nghttp2 output into the socket's
 * buffer, and metadata on the wire. */
#ifndef H2_SESSION_H
#define H2_SESSION_H
#include <nghttp2/nghttp2.h>

#include "base/buf.h"
#include "io/reactor.h"

/* Output per connection buffered before the session yields to the socket. */
#define SESSION_OUT_HIGH (256 * 1024)
#define SESSION_CONN_WINDOW (16 * 1024 * 1024)
#define SESSION_STREAM_WINDOW (1024 * 1024)

/* Copies nghttp2 output into io's send buffer up to SESSION_OUT_HIGH. <0 on failure
 * (the connection was aborted). */
int session_pump(nghttp2_session *ng, reactor_conn *io);
/* After pumping: asks for another turn when output was capped, or closes the
 * connection when the session has nothing left to read or write. */
void session_after_pump(nghttp2_session *ng, reactor_conn *io);
/* Drains output into keep, or discards it when keep is NULL (detached connections, for
 * fuzzers and tests). */
int session_drain_output(nghttp2_session *ng, buf *keep);

/* nghttp2's allocator for every session: base/mem.h's, so that the tests' failure
 * injection reaches nghttp2's allocations too. */
extern nghttp2_mem session_mem;

#endif
