/* TLS on the reactor (io/tls.h) fed what a peer may send: arbitrary bytes as a client's
 * first flight to the node's server side, and as a server's answer to the node's client
 * side (after its ClientHello), in pieces whose sizes come from the input.
 *
 * Input: the first byte picks the side (even: server, odd: client) and a piece size
 * (1 + byte/2); the rest is fed in pieces of that size.
 *
 * Invariants: no plaintext is handed over before the handshake is done; once a piece is
 * refused, the connection stays refused; what TLS answers stays bounded by the records it
 * can write for what it was given (an alert, a handshake flight). */
#include <errno.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "io/tls.h"

#include "fuzz_check.h"

static tls_ctx *server, *client;

static int delivered(void *arg, const uint8_t *p, size_t n)
{
	(void)p;
	const tls_conn *c = arg;
	CHECK(tls_conn_established(c));
	CHECK(n > 0);
	return 0;
}

/* A throwaway self-signed P-256 certificate for 127.0.0.1, in PEM files. */
static void make_cert(const char *cert_path, const char *key_path)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	if (!key || !x)
		abort();
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, key);
	X509_NAME *name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"fuzz", -1, -1,
				   0);
	X509_set_issuer_name(x, name);
	if (!X509_sign(x, key, EVP_sha256()))
		abort();
	FILE *f = fopen(cert_path, "w");
	FILE *k = fopen(key_path, "w");
	if (!f || !k || !PEM_write_X509(f, x) ||
	    !PEM_write_PrivateKey(k, key, NULL, NULL, 0, NULL, NULL))
		abort();
	fclose(f);
	fclose(k);
	X509_free(x);
	EVP_PKEY_free(key);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	char dir[] = "/tmp/fuzz_tls.XXXXXX";
	if (!mkdtemp(dir))
		abort();
	char cert[64], key[64], err[300];
	snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
	snprintf(key, sizeof(key), "%s/key.pem", dir);
	make_cert(cert, key);
	tls_opts so = {.server = true, .cert_file = cert, .key_file = key, .alpn = "h2"};
	tls_opts co = {.alpn = "h2"};
	if (tls_ctx_new(&so, &server, err, sizeof(err)) ||
	    tls_ctx_new(&co, &client, err, sizeof(err))) {
		fprintf(stderr, "fuzz_tls: %s\n", err);
		abort();
	}
	unlink(cert);
	unlink(key);
	rmdir(dir);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!size)
		return 0;
	bool as_client = data[0] & 1;
	size_t piece = 1 + data[0] / 2;
	data++;
	size--;
	tls_conn *c = tls_conn_new(as_client ? client : server, as_client ? "localhost" : NULL);
	if (!c)
		return 0;
	buf out = BUF_INIT;
	if (as_client)
		CHECK(tls_conn_start(c, &out) == 0 && out.len > 0);
	char err[240];
	bool refused = false;
	for (size_t off = 0; off < size; off += piece) {
		size_t n = size - off < piece ? size - off : piece;
		size_t before = out.len;
		int rc = tls_conn_recv(c, data + off, n, delivered, c, &out, err, sizeof(err));
		/* An alert, a flight of handshake messages: small beside the record sizes. */
		CHECK(out.len - before <= 64 * 1024);
		if (rc) {
			CHECK(rc == -EPROTO || rc == -ECONNRESET || rc == -ENOMEM);
			refused = true;
			break;
		}
	}
	(void)refused;
	/* Plaintext sent now waits for a handshake that random bytes do not finish. */
	if (!tls_conn_established(c)) {
		CHECK(tls_conn_send(c, (const uint8_t *)"x", 1, &out) == 0);
		CHECK(tls_conn_held(c) == 1);
	}
	buf_free(&out);
	tls_conn_free(c);
	return 0;
}
