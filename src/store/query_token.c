/* Page tokens and keyset positions: a List's token holds the order-key values and rid of
 * the last row returned, bound to its query and scope, sealed with SipHash-2-4. */
#include <errno.h>
#include <math.h>

#include "base/base64.h"
#include "base/mem.h"
#include "store/query_int.h"

/* Page tokens: version byte, query hash, scope hash, key count, typed key values, rid, the
 * query's count (-1: none), MAC. Version 1 had no scope: its tokens are refused; version 2
 * had no count: its tokens are taken, and the count is made again. */
#define TOKEN_VERSION 3
#define TOKEN_VERSION_NO_COUNT 2
#define TOKEN_HEADER 18
#define TOKEN_MAX_CHARS (4 * (QUERY_MAX_ORDER_KEYS * (5 + QUERY_MAX_TOKEN_TEXT) + 64) / 3)

enum tag { TAG_NULL, TAG_INT, TAG_REAL, TAG_TEXT };

static uint64_t rotl(uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }

static uint64_t get_le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

#define SIPROUND                                                                                   \
	do {                                                                                       \
		v0 += v1, v1 = rotl(v1, 13), v1 ^= v0, v0 = rotl(v0, 32);                          \
		v2 += v3, v3 = rotl(v3, 16), v3 ^= v2;                                             \
		v0 += v3, v3 = rotl(v3, 21), v3 ^= v0;                                             \
		v2 += v1, v1 = rotl(v1, 17), v1 ^= v2, v2 = rotl(v2, 32);                          \
	} while (0)

uint64_t query_token_siphash(const uint8_t *key, const uint8_t *m, size_t n)
{
	static const uint8_t zero[16];
	if (!key)
		key = zero;
	uint64_t k0 = get_le64(key), k1 = get_le64(key + 8);
	uint64_t v0 = k0 ^ 0x736f6d6570736575ULL, v1 = k1 ^ 0x646f72616e646f6dULL;
	uint64_t v2 = k0 ^ 0x6c7967656e657261ULL, v3 = k1 ^ 0x7465646279746573ULL;
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t w = get_le64(m + i);
		v3 ^= w;
		SIPROUND;
		SIPROUND;
		v0 ^= w;
	}
	uint64_t last = (uint64_t)n << 56;
	for (size_t j = 0; i + j < n; j++)
		last |= (uint64_t)m[i + j] << (8 * j);
	v3 ^= last;
	SIPROUND;
	SIPROUND;
	v0 ^= last;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

/* Tokens are base64url without padding, and strict: one spelling per token. */
#define TOKEN_BASE64 (BASE64_URL | BASE64_NOPAD | BASE64_EXACT)

static void put_be64(buf *b, uint64_t v)
{
	uint8_t t[8];
	for (int i = 0; i < 8; i++)
		t[i] = (uint8_t)(v >> (56 - 8 * i));
	buf_append(b, t, 8);
}

static uint64_t get_be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

int query_token_seal(const uint8_t *key, const uint8_t *payload, size_t n, char **token)
{
	buf b = BUF_INIT;
	buf_append(&b, payload, n);
	put_be64(&b, query_token_siphash(key, payload, n));
	size_t len = base64_encoded_len(b.len, TOKEN_BASE64);
	*token = b.failed ? NULL : mem_alloc(len + 1);
	if (*token) {
		base64_encode(*token, b.data, b.len, TOKEN_BASE64);
		(*token)[len] = 0;
	}
	buf_free(&b);
	return *token ? 0 : -ENOMEM;
}

uint64_t query_token_hash(const void *data, size_t n) { return query_token_siphash(NULL, data, n); }

void query_token_hash_binds(buf *h, const query *q)
{
	for (size_t i = 0; i < q->nbinds; i++) {
		const query_bindval *v = &q->binds[i];
		uint8_t t = (uint8_t)v->type;
		buf_append(h, &t, 1);
		if (v->type == QUERY_BIND_INT)
			put_be64(h, (uint64_t)v->u.i);
		else if (v->type == QUERY_BIND_REAL)
			buf_append(h, &v->u.d, sizeof v->u.d);
		else if (v->type == QUERY_BIND_TEXT) {
			put_be64(h, v->u.text.len);
			buf_append(h, v->u.text.p, v->u.text.len);
		}
	}
}

int query_token_open(const uint8_t *key, const char *token, size_t max_chars, uint8_t **payload,
		     size_t *n)
{
	size_t len = strlen(token);
	*payload = NULL;
	if (len > max_chars)
		return store_err_set(-EINVAL, "page_token is too long");
	uint8_t *t = mem_alloc(base64_decoded_max(len));
	if (!t)
		return store_err_set(-ENOMEM, "out of memory");
	long got = base64_decode(t, token, len, TOKEN_BASE64);
	if (got < 0) {
		mem_free(t);
		return store_err_set(-EINVAL,
				     "page_token is not a token this node issued (bad encoding)");
	}
	*n = (size_t)got;
	if (*n < 8 || query_token_siphash(key, t, *n - 8) != get_be64(t + *n - 8)) {
		mem_free(t);
		return store_err_set(-EINVAL, "page_token is corrupt or was issued elsewhere");
	}
	*n -= 8;
	*payload = t;
	return 0;
}

/* Whether the keyset condition can be one row-value comparison, which SQLite runs as a
 * range of an index on the keys (the OR form below it does not): every key a record
 * column (never NULL), all in one direction. */
static bool row_value_form(const order *o)
{
	for (unsigned i = 0; i < o->n; i++)
		if (!o->k[i].o.col || o->k[i].score || o->desc[i] != o->desc[0])
			return false;
	return true;
}

/* Decodes and checks a token, then appends the keyset condition "after this row" to w. */
void query_token_after(cc *c, const char *token, const order *o, buf *w)
{
	const query *q = c->q;
	size_t n = 0;
	uint8_t *t;
	int rc = query_token_open(q->key, token, TOKEN_MAX_CHARS, &t, &n);
	if (rc) {
		if (rc == -ENOMEM)
			query_fail_errno(c, rc, "query");
		else
			query_fail(c, "%s", store_err_msg());
		return;
	}
	query_bindval vals[QUERY_MAX_ORDER_KEYS];
	int params[QUERY_MAX_ORDER_KEYS];
	size_t at = TOKEN_HEADER;
	unsigned i;
	if (n < TOKEN_HEADER + 8 || (t[0] != TOKEN_VERSION && t[0] != TOKEN_VERSION_NO_COUNT)) {
		query_fail(c, "page_token is not a List token of this node (bad version)");
		goto out;
	}
	if (get_be64(t + 9) != q->scope_hash) {
		query_fail(
			c,
			"page_token belongs to another collection (or to one of this name deleted since)");
		goto out;
	}
	if (get_be64(t + 1) != q->qhash) {
		query_fail(c, "page_token belongs to another query (filter or order_by changed)");
		goto out;
	}
	if (t[17] != o->n)
		goto bad;
	for (i = 0; i < o->n; i++) {
		if (at >= n)
			goto bad;
		uint8_t tag = t[at++];
		vals[i].type = QUERY_BIND_NULL;
		if (tag == TAG_NULL)
			continue;
		if (tag == TAG_INT || tag == TAG_REAL) {
			if (n - at < 8)
				goto bad;
			uint64_t u = get_be64(t + at);
			at += 8;
			if (tag == TAG_INT) {
				vals[i] =
					(query_bindval){.type = QUERY_BIND_INT, .u.i = (int64_t)u};
			} else {
				vals[i].type = QUERY_BIND_REAL;
				memcpy(&vals[i].u.d, &u, 8);
				if (isnan(vals[i].u.d))
					goto bad;
			}
		} else if (tag == TAG_TEXT) {
			if (n - at < 4)
				goto bad;
			size_t l = (size_t)t[at] << 24 | (size_t)t[at + 1] << 16 |
				   (size_t)t[at + 2] << 8 | t[at + 3];
			at += 4;
			if (l > QUERY_MAX_TOKEN_TEXT || n - at < l)
				goto bad;
			vals[i] = (query_bindval){.type = QUERY_BIND_TEXT,
						  .u.text = {(const char *)t + at, l}};
			at += l;
		} else {
			goto bad;
		}
	}
	if (n - at != (t[0] == TOKEN_VERSION ? 16u : 8u))
		goto bad;
	int prid = query_param_int(c, (int64_t)get_be64(t + at));
	if (t[0] == TOKEN_VERSION && c->q->carry) {
		int64_t total = (int64_t)get_be64(t + at + 8);
		c->q->carried = total >= 0 ? total : -1;
	}
	for (i = 0; i < o->n; i++)
		params[i] = vals[i].type == QUERY_BIND_NULL ? 0 : query_param(c, vals[i]);
	if (row_value_form(o)) {
		/* (k0, ..., rid) > (v0, ..., r): one range of an index on the keys. */
		buf_puts(w, "((");
		for (i = 0; i < o->n; i++) {
			query_order_key(c, w, &o->k[i]);
			buf_puts(w, ", ");
		}
		buf_puts(w, o->desc[0] ? "rid) < (" : "rid) > (");
		for (i = 0; i < o->n; i++) {
			query_put_param(w, params[i]);
			buf_puts(w, ", ");
		}
		query_put_param(w, prid);
		buf_puts(w, "))");
		goto out;
	}
	/* (k0 > v0) OR (k0 IS v0 AND k1 > v1) OR ... OR (all equal AND rid > r), where a
	 * missing key (NULL) sorts first ascending and last descending. */
	buf_puts(w, "(");
	for (unsigned j = 0, first = 1; j <= o->n; j++) {
		bool desc = o->desc[j < o->n ? j : o->n - 1];
		if (j < o->n && desc && !params[j])
			continue; /* nothing sorts after NULL descending */
		buf_puts(w, first ? "" : " OR ");
		first = 0;
		buf_puts(w, "(");
		for (i = 0; i < j; i++) {
			query_order_key(c, w, &o->k[i]);
			if (params[i]) {
				buf_puts(w, " IS ");
				query_put_param(w, params[i]);
			} else {
				buf_puts(w, " IS NULL");
			}
			buf_puts(w, " AND ");
		}
		if (j == o->n) {
			buf_puts(w, desc ? "rid < " : "rid > ");
			query_put_param(w, prid);
		} else if (!params[j]) {
			query_order_key(c, w, &o->k[j]);
			buf_puts(w, " IS NOT NULL");
		} else {
			buf_puts(w, "(");
			query_order_key(c, w, &o->k[j]);
			buf_puts(w, desc ? " < " : " > ");
			query_put_param(w, params[j]);
			if (desc) {
				buf_puts(w, " OR ");
				query_order_key(c, w, &o->k[j]);
				buf_puts(w, " IS NULL");
			}
			buf_puts(w, ")");
		}
		buf_puts(w, ")");
	}
	buf_puts(w, ")");
	goto out;
bad:
	query_fail(c, "page_token is malformed");
out:
	mem_free(t);
}

int64_t query_carried_total(const query *q) { return q->carried; }

int query_token_next(const query *q, sqlite3_stmt *st, char **token)
{
	return query_token_next_total(q, st, -1, token);
}

int query_token_next_total(const query *q, sqlite3_stmt *st, int64_t total, char **token)
{
	buf b = BUF_INIT;
	uint8_t ver = TOKEN_VERSION, nkeys = (uint8_t)q->nkeys;
	int rc = 0;
	*token = NULL;
	if (!q->list)
		return -EINVAL;
	buf_append(&b, &ver, 1);
	put_be64(&b, q->qhash);
	put_be64(&b, q->scope_hash);
	buf_append(&b, &nkeys, 1);
	for (unsigned i = 0; i < q->nkeys && !rc; i++) {
		int col = QUERY_COL_KEYS + (int)i;
		uint8_t tag;
		switch (sqlite3_column_type(st, col)) {
		case SQLITE_NULL:
			tag = TAG_NULL;
			buf_append(&b, &tag, 1);
			break;
		case SQLITE_INTEGER:
			tag = TAG_INT;
			buf_append(&b, &tag, 1);
			put_be64(&b, (uint64_t)sqlite3_column_int64(st, col));
			break;
		case SQLITE_FLOAT: {
			double d = sqlite3_column_double(st, col);
			uint64_t u;
			memcpy(&u, &d, 8);
			tag = TAG_REAL;
			buf_append(&b, &tag, 1);
			put_be64(&b, u);
			break;
		}
		case SQLITE_TEXT: {
			const unsigned char *s = sqlite3_column_text(st, col);
			size_t l = (size_t)sqlite3_column_bytes(st, col);
			uint8_t h[5] = {TAG_TEXT, (uint8_t)(l >> 24), (uint8_t)(l >> 16),
					(uint8_t)(l >> 8), (uint8_t)l};
			if (!s) {
				rc = -ENOMEM;
			} else if (l > QUERY_MAX_TOKEN_TEXT) {
				rc = -EOVERFLOW;
			} else {
				buf_append(&b, h, 5);
				buf_append(&b, s, l);
			}
			break;
		}
		default:
			rc = -EINVAL;
		}
	}
	put_be64(&b, (uint64_t)sqlite3_column_int64(st, QUERY_COL_RID));
	put_be64(&b, (uint64_t)(q->carry && total >= 0 ? total : -1));
	if (!rc)
		rc = b.failed ? -ENOMEM : query_token_seal(q->key, b.data, b.len, token);
	buf_free(&b);
	return rc;
}
