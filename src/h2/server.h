/* gRPC server over HTTP/2 (nghttp2): turns accepted connections into calls dispatched
 * through a method table. One h2_server is shared by all reactors (read-only); each
 * reactor attaches an endpoint that owns that reactor's connections. */
#ifndef H2_SERVER_H
#define H2_SERVER_H
#include <stddef.h>
#include <stdint.h>

#include "h2/method.h"
#include "io/reactor.h"

typedef struct h2_server_opts {
	size_t max_message_bytes;	  /* request and response message limit */
	uint32_t max_concurrent_streams;  /* SETTINGS_MAX_CONCURRENT_STREAMS */
	uint32_t max_header_list_bytes;	  /* SETTINGS_MAX_HEADER_LIST_SIZE, enforced */
	size_t stream_send_high_water;	  /* per-call buffered output before would_block */
} h2_server_opts;

void h2_server_opts_default(h2_server_opts *o);

typedef struct h2_server h2_server;
typedef struct h2_endpoint h2_endpoint;

/* methods must outlive the server. */
h2_server *h2_server_new(const method_table *methods, const h2_server_opts *opts);
void h2_server_free(h2_server *s);

/* Per reactor; call on r's thread. */
h2_endpoint *h2_endpoint_new(h2_server *s, reactor *r);
/* Aborts remaining connections; call on r's thread after the loop stopped. */
void h2_endpoint_free(h2_endpoint *e);
/* Listener callbacks that hand accepted sockets to the endpoint (user = endpoint). */
extern const io_listener_ops h2_endpoint_listener_ops;
void h2_endpoint_accept(h2_endpoint *e, int fd);
/* Graceful shutdown: GOAWAY to every connection, no new streams; running calls go on. */
void h2_endpoint_goaway(h2_endpoint *e);
/* Cancels every running call (end of the grace period) and closes connections. */
void h2_endpoint_close_all(h2_endpoint *e);
size_t h2_endpoint_active_calls(const h2_endpoint *e);
size_t h2_endpoint_conn_count(const h2_endpoint *e);

/* A connection with no socket, for fuzzers: feed it bytes, its output is discarded.
 * Returns NULL on allocation failure. */
typedef struct h2_conn h2_conn;
h2_conn *h2_conn_new_detached(h2_endpoint *e);
/* <0 once the connection is broken (the fuzzer then frees it). */
int h2_conn_feed(h2_conn *h, const uint8_t *data, size_t len);
void h2_conn_free_detached(h2_conn *h);

#endif
