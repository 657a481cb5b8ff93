#include "io/tls.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "base/mem.h"

/* The most plaintext one SSL_read hands over, and one TLS record's worth of SSL_write. */
#define TLS_CHUNK 16384

struct tls_ctx {
	pthread_mutex_t mu;
	SSL_CTX *ctx; /* the current one; each SSL keeps a reference to its own */
	tls_opts o;
	char *cert, *key, *ca, *alpn; /* the copies o points to */
};

struct tls_conn {
	SSL *ssl;
	BIO *rbio, *wbio; /* owned by ssl */
	buf held;	  /* plaintext sent before the handshake ended */
	bool established;
	char subject[256];
	bool subject_read;
};

static void ssl_error(char *err, size_t cap, const char *what)
{
	unsigned long e = ERR_get_error();
	char why[200] = "";
	if (e)
		ERR_error_string_n(e, why, sizeof(why));
	ERR_clear_error();
	snprintf(err, cap, "%s%s%s", what, *why ? ": " : "", why);
}

/* ALPN, server side: o->alpn is a comma-separated list in the server's order of
 * preference ("h2,http/1.1"): the first of ours that the client offers wins, so that a
 * browser offering both gets HTTP/2. A client offering only other protocols is refused;
 * one offering none goes on without. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		       const unsigned char *in, unsigned int inlen, void *arg)
{
	(void)ssl;
	for (const char *want = arg; *want;) {
		size_t wlen = strcspn(want, ",");
		for (unsigned int i = 0; i < inlen;) {
			unsigned int n = in[i];
			if (i + 1 + n > inlen)
				break;
			if (n == wlen && !memcmp(in + i + 1, want, n)) {
				*out = in + i + 1;
				*outlen = (unsigned char)n;
				return SSL_TLSEXT_ERR_OK;
			}
			i += 1 + n;
		}
		want += wlen;
		if (*want == ',')
			want++;
	}
	return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* A client's ALPN list ("h2" or "h2,http/1.1") in the wire form: length-prefixed names.
 * Returns the wire length, 0 when it does not fit or a name is empty. */
static size_t alpn_wire(const char *list, unsigned char *wire, size_t cap)
{
	size_t w = 0;
	for (const char *p = list; *p;) {
		size_t n = strcspn(p, ",");
		if (!n || n > 255 || w + 1 + n > cap)
			return 0;
		wire[w++] = (unsigned char)n;
		memcpy(wire + w, p, n);
		w += n;
		p += n;
		if (*p == ',')
			p++;
	}
	return w;
}

static SSL_CTX *build(const tls_opts *o, char *err, size_t cap)
{
	SSL_CTX *ctx = SSL_CTX_new(o->server ? TLS_server_method() : TLS_client_method());
	if (!ctx) {
		ssl_error(err, cap, "cannot make a TLS context");
		return NULL;
	}
	int min = o->min_version == 13 ? TLS1_3_VERSION : TLS1_2_VERSION;
	SSL_CTX_set_min_proto_version(ctx, min);
	/* No renegotiation (a CPU sink and an old attack surface), no compression (CRIME). */
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
					 SSL_OP_CIPHER_SERVER_PREFERENCE);
	const char *what = NULL, *file = "";
	if (o->cert_file && SSL_CTX_use_certificate_chain_file(ctx, o->cert_file) != 1)
		what = "cannot load the certificate", file = o->cert_file;
	else if (o->key_file &&
		 SSL_CTX_use_PrivateKey_file(ctx, o->key_file, SSL_FILETYPE_PEM) != 1)
		what = "cannot load the private key", file = o->key_file;
	else if (o->cert_file && o->key_file && SSL_CTX_check_private_key(ctx) != 1)
		what = "the private key does not match the certificate", file = o->key_file;
	else if (o->server && (!o->cert_file || !o->key_file))
		what = "a TLS server needs a certificate and its key";
	if (!what && o->ca_file && SSL_CTX_load_verify_locations(ctx, o->ca_file, NULL) != 1)
		what = "cannot load the CA file", file = o->ca_file;
	if (!what && !o->server && o->verify_peer && !o->ca_file &&
	    SSL_CTX_set_default_verify_paths(ctx) != 1)
		what = "cannot load the system's CA certificates";
	if (what) {
		char msg[600];
		snprintf(msg, sizeof(msg), "%s%s%.500s", what, *file ? " " : "", file);
		ssl_error(err, cap, msg);
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (o->server && o->ca_file) {
		STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o->ca_file);
		if (names)
			SSL_CTX_set_client_CA_list(ctx, names);
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	} else if (!o->server && o->verify_peer) {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	}
	if (o->alpn && o->server) {
		SSL_CTX_set_alpn_select_cb(ctx, alpn_select, (void *)o->alpn);
	} else if (o->alpn) {
		unsigned char wire[64];
		size_t n = alpn_wire(o->alpn, wire, sizeof(wire));
		if (n)
			SSL_CTX_set_alpn_protos(ctx, wire, (unsigned)n);
	}
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	return ctx;
}

int tls_ctx_new(const tls_opts *o, tls_ctx **out, char *err, size_t cap)
{
	*out = NULL;
	tls_ctx *t = mem_calloc(1, sizeof(*t));
	if (!t) {
		snprintf(err, cap, "out of memory");
		return -ENOMEM;
	}
	pthread_mutex_init(&t->mu, NULL);
	t->o = *o;
	t->cert = o->cert_file ? mem_strdup(o->cert_file) : NULL;
	t->key = o->key_file ? mem_strdup(o->key_file) : NULL;
	t->ca = o->ca_file ? mem_strdup(o->ca_file) : NULL;
	t->alpn = o->alpn ? mem_strdup(o->alpn) : NULL;
	t->o.cert_file = t->cert;
	t->o.key_file = t->key;
	t->o.ca_file = t->ca;
	t->o.alpn = t->alpn;
	if (o->min_version && o->min_version != 12 && o->min_version != 13) {
		snprintf(err, cap, "TLS minimum version must be 1.2 or 1.3");
		tls_ctx_free(t);
		return -EINVAL;
	}
	t->ctx = build(&t->o, err, cap);
	if (!t->ctx) {
		tls_ctx_free(t);
		return -EINVAL;
	}
	*out = t;
	return 0;
}

int tls_ctx_reload(tls_ctx *t, char *err, size_t cap)
{
	SSL_CTX *fresh = build(&t->o, err, cap);
	if (!fresh)
		return -EINVAL;
	pthread_mutex_lock(&t->mu);
	SSL_CTX *old = t->ctx;
	t->ctx = fresh;
	pthread_mutex_unlock(&t->mu);
	SSL_CTX_free(old); /* the connections made from it hold their own references */
	return 0;
}

void tls_ctx_free(tls_ctx *t)
{
	if (!t)
		return;
	SSL_CTX_free(t->ctx);
	mem_free(t->cert);
	mem_free(t->key);
	mem_free(t->ca);
	mem_free(t->alpn);
	pthread_mutex_destroy(&t->mu);
	mem_free(t);
}

tls_conn *tls_conn_new(tls_ctx *t, const char *server_name)
{
	tls_conn *c = mem_calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	pthread_mutex_lock(&t->mu);
	c->ssl = SSL_new(t->ctx);
	pthread_mutex_unlock(&t->mu);
	c->rbio = BIO_new(BIO_s_mem());
	c->wbio = BIO_new(BIO_s_mem());
	if (!c->ssl || !c->rbio || !c->wbio) {
		BIO_free(c->rbio);
		BIO_free(c->wbio);
		SSL_free(c->ssl);
		mem_free(c);
		return NULL;
	}
	SSL_set_bio(c->ssl, c->rbio, c->wbio);
	if (t->o.server) {
		SSL_set_accept_state(c->ssl);
	} else {
		SSL_set_connect_state(c->ssl);
		if (server_name) {
			SSL_set_tlsext_host_name(c->ssl, server_name);
			if (t->o.verify_peer)
				SSL_set1_host(c->ssl, server_name);
		}
	}
	return c;
}

void tls_conn_free(tls_conn *c)
{
	if (!c)
		return;
	SSL_free(c->ssl);
	buf_free(&c->held);
	mem_free(c);
}

/* Moves what TLS wrote (records to send) into out. */
static int drain(tls_conn *c, buf *out)
{
	size_t n;
	while ((n = BIO_ctrl_pending(c->wbio)) > 0) {
		if (buf_reserve(out, n))
			return -ENOMEM;
		int got = BIO_read(c->wbio, out->data + out->len, (int)n);
		if (got <= 0)
			break;
		out->len += (size_t)got;
	}
	return 0;
}

static int encrypt(tls_conn *c, const uint8_t *plain, size_t len, buf *out)
{
	for (size_t off = 0; off < len;) {
		size_t n = len - off < TLS_CHUNK ? len - off : TLS_CHUNK;
		int w = SSL_write(c->ssl, plain + off, (int)n);
		if (w <= 0) {
			ERR_clear_error();
			return -EPROTO;
		}
		off += (size_t)w;
		/* Each record out at once: the write BIO does not grow with the whole. */
		if (drain(c, out))
			return -ENOMEM;
	}
	return 0;
}

int tls_conn_recv(tls_conn *c, const uint8_t *data, size_t len,
		  int (*deliver)(void *arg, const uint8_t *p, size_t n), void *arg, buf *out,
		  char *err, size_t cap)
{
	if (len && BIO_write(c->rbio, data, (int)len) != (int)len) {
		snprintf(err, cap, "out of memory");
		return -ENOMEM;
	}
	if (!c->established) {
		int r = SSL_do_handshake(c->ssl);
		if (r != 1) {
			int e = SSL_get_error(c->ssl, r);
			if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
				return drain(c, out);
			ssl_error(err, cap, "TLS handshake failed");
			drain(c, out); /* the alert, if any */
			return -EPROTO;
		}
		c->established = true;
		if (c->held.len) {
			int rc = encrypt(c, c->held.data, c->held.len, out);
			buf_free(&c->held);
			if (rc)
				return rc;
		}
	}
	uint8_t plain[TLS_CHUNK];
	for (;;) {
		int n = SSL_read(c->ssl, plain, sizeof(plain));
		if (n > 0) {
			int rc = deliver(arg, plain, (size_t)n);
			if (rc < 0)
				return rc;
			continue;
		}
		int e = SSL_get_error(c->ssl, n);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
			break;
		if (e == SSL_ERROR_ZERO_RETURN) {
			snprintf(err, cap, "the peer closed TLS");
			drain(c, out);
			return -ECONNRESET;
		}
		ssl_error(err, cap, "TLS record refused");
		return -EPROTO;
	}
	return drain(c, out);
}

int tls_conn_send(tls_conn *c, const uint8_t *plain, size_t len, buf *out)
{
	if (!c->established)
		return buf_append(&c->held, plain, len);
	return encrypt(c, plain, len, out);
}

size_t tls_conn_held(const tls_conn *c) { return c->held.len; }

int tls_conn_start(tls_conn *c, buf *out)
{
	int r = SSL_do_handshake(c->ssl);
	if (r != 1) {
		int e = SSL_get_error(c->ssl, r);
		if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
			ERR_clear_error();
			return -EPROTO;
		}
	}
	return drain(c, out);
}

void tls_conn_shutdown(tls_conn *c, buf *out)
{
	if (c->established && SSL_shutdown(c->ssl) >= 0)
		drain(c, out);
	ERR_clear_error();
}

bool tls_conn_established(const tls_conn *c) { return c->established; }

const char *tls_conn_alpn(const tls_conn *c)
{
	static __thread char name[32];
	const unsigned char *p = NULL;
	unsigned int n = 0;
	SSL_get0_alpn_selected(c->ssl, &p, &n);
	snprintf(name, sizeof(name), "%.*s", (int)(n < sizeof(name) ? n : 0),
		 p ? (const char *)p : "");
	return name;
}

const char *tls_conn_peer_subject(tls_conn *c)
{
	if (!c->subject_read && c->established) {
		c->subject_read = true;
		X509 *x = SSL_get1_peer_certificate(c->ssl);
		if (x) {
			X509_NAME_oneline(X509_get_subject_name(x), c->subject, sizeof(c->subject));
			X509_free(x);
		}
	}
	return c->subject;
}
