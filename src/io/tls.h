/* TLS for the reactor's connections, with OpenSSL through memory BIOs: ciphertext in from
 * the socket's completions, plaintext out to the connection's owner, and back; the socket
 * itself stays the reactor backend's (io_uring or epoll). A reactor_conn with TLS
 * (reactor_conn_set_tls) does this on its own, so the layers above see plaintext alone.
 *
 * A tls_ctx holds the settings (certificate, key, CA of the clients, versions, ALPN) and
 * may be reloaded while connections run: each connection keeps the context it started
 * with. Not thread safe for one tls_conn; a tls_ctx is shared by every reactor. */
#ifndef IO_TLS_H
#define IO_TLS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

typedef struct tls_ctx tls_ctx;
typedef struct tls_conn tls_conn;

typedef struct tls_opts {
	bool server;
	const char *cert_file; /* PEM chain; a server needs one, a client may have one */
	const char *key_file;
	/* Server: clients must present a certificate this CA signed (mTLS). Client: the CA
	 * that signs the servers; NULL: the system's. */
	const char *ca_file;
	bool verify_peer; /* client: check the server's certificate (and name) */
	int min_version;  /* 12 or 13 (TLS 1.2, 1.3); 0: 1.2 */
	const char *alpn; /* protocols, comma-separated, preferred first: "h2,http/1.1" */
} tls_opts;

/* 0, or a negative errno with err[0..cap) saying what failed (a file, a key that does not
 * match its certificate, a bad version). */
int tls_ctx_new(const tls_opts *o, tls_ctx **out, char *err, size_t cap);
/* Reads the certificate, key and CA files again; connections made from now on use them,
 * those running keep theirs. Thread safe. On failure the old ones stay. */
int tls_ctx_reload(tls_ctx *t, char *err, size_t cap);
void tls_ctx_free(tls_ctx *t);

/* A connection's TLS state; server_name: the name a client checks (NULL: none). */
tls_conn *tls_conn_new(tls_ctx *t, const char *server_name);
void tls_conn_free(tls_conn *c);
/* Ciphertext arrived. Each piece of plaintext it yields goes to deliver (a negative return
 * stops and is returned); what TLS must answer (handshake, alerts) is appended to out.
 * 0; -EPROTO when the peer does not speak TLS or fails the handshake (err says why). */
int tls_conn_recv(tls_conn *c, const uint8_t *data, size_t len,
		  int (*deliver)(void *arg, const uint8_t *p, size_t n), void *arg, buf *out,
		  char *err, size_t cap);
/* Encrypts plaintext into out. Before the handshake is done it waits in the connection
 * (sent once it is). 0, -ENOMEM, -EPROTO. */
int tls_conn_send(tls_conn *c, const uint8_t *plain, size_t len, buf *out);
/* Plaintext held back until the handshake ends. */
size_t tls_conn_held(const tls_conn *c);
/* Starts a client's handshake (its ClientHello into out). */
int tls_conn_start(tls_conn *c, buf *out);
/* close_notify into out. */
void tls_conn_shutdown(tls_conn *c, buf *out);
bool tls_conn_established(const tls_conn *c);
/* The protocol ALPN chose ("" before the handshake or without one). */
const char *tls_conn_alpn(const tls_conn *c);
/* The peer certificate's subject (one line), "" without one. */
const char *tls_conn_peer_subject(tls_conn *c);

#endif
