/* collectorctl's calls: one connection to a node through the node's own HTTP/2 client
 * (h2/client.h) on a reactor of the program's own, driven until each call ends; requests
 * and responses as proto3 JSON through a type pool holding the Collector API. */
#ifndef CLI_CLI_CALL_H
#define CLI_CLI_CALL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "store/typepool.h"

typedef struct cli_conn cli_conn;

typedef struct cli_opts {
	const char *node; /* host:port */
	/* The namespace the commands put in their requests' namespace fields (not the
	 * x-collector-namespace header: the node's own services are validated in the
	 * namespaces they are registered in, the default one). */
	const char *ns;
	const char *token;  /* sent as authorization: Bearer ... when set */
	const char *tls_ca; /* TLS, checking the node's certificate against this CA */
	int64_t timeout_ns; /* each call's deadline; 0: none */
} cli_opts;

/* NULL with err when the node's address or the TLS files are not usable. */
cli_conn *cli_open(const cli_opts *o, char *err, size_t cap);
void cli_close(cli_conn *c);
tp_pool *cli_types(cli_conn *c);

/* A method by "/pkg.Service/Method", "pkg.Service/Method" or "Service/Method" (a bare
 * service of the Collector API): its path and message types. false with err. */
bool cli_method(cli_conn *c, const char *name, char *path, size_t cap, const tp_message **in,
		const tp_message **out, bool *server_streaming, char *err, size_t ecap);

/* A unary call of method with the request as JSON; the response's JSON appended to out.
 * The gRPC code (or -1 when the call could not be made); msg says why when not OK. */
int cli_unary_json(cli_conn *c, const char *method, const char *json, buf *out, char *msg,
		   size_t cap);

/* The same with protobuf bytes in and out (resp: the response's bytes). */
int cli_unary(cli_conn *c, const char *path, const uint8_t *req, size_t len, buf *resp, char *msg,
	      size_t cap);

/* A server-streaming call: each response message goes to on_message (nonzero stops the
 * call, cancelled). The gRPC code; msg says why. */
typedef int (*cli_message_fn)(void *ctx, const uint8_t *data, size_t len);
int cli_stream(cli_conn *c, const char *path, const uint8_t *req, size_t len,
	       cli_message_fn on_message, void *ctx, char *msg, size_t cap);

/* A client-streaming call: next gives each request message (1, *data and *len valid until
 * the next call of next), 0 at the end, -1 to give up; sent as fast as the server takes
 * them. The one response's bytes in resp. The gRPC code; msg says why. */
int cli_client_stream(cli_conn *c, const char *path,
		      int (*next)(void *ctx, const uint8_t **data, size_t *len), void *ctx,
		      buf *resp, char *msg, size_t cap);

#endif
