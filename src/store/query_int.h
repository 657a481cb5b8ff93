/* What the query compiler's files share (query.c the compiler, query_state.c the state of
 * a compile, query_value.c the values of requests, query_emit.c the SQL of conditions,
 * query_order.c the order, query_token.c page tokens and keyset positions): the compiled
 * query, the compiler's state and what each file lends the others. They call each other
 * downward only: query.c uses them all; query_token.c query_order.c; query_order.c
 * query_emit.c; query_emit.c query_value.c; all of them query_state.c. For those files
 * only. */
#ifndef STORE_QUERY_INT_H
#define STORE_QUERY_INT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "store/err.h"
#include "store/query.h"
#include "store/store_int.h"

#define QUOTE_MAX 64

/* Comparison types: the public kinds, plus "decide at run time" and the integer
 * microsecond columns. */
enum ty {
	TY_RUNTIME,
	TY_STRING,
	TY_NUMBER,
	TY_INT64,
	TY_BOOL,
	TY_ENUM,
	TY_BYTES,
	TY_MESSAGE,
	TY_REPEATED,
	TY_MAP,
	TY_TIMESTAMP,
	TY_DURATION,
	TY_MICROS,
};

/* Their names, for messages. */
extern const char *const query_ty_names[];

/* ---- SQL text ---- */

/* Parameter n's placeholder, ?n. */
static inline void query_put_param(buf *b, int n)
{
	char t[16];
	buf_append(b, t, (size_t)snprintf(t, sizeof t, "?%d", n));
}

struct query {
	char *sql, *count_sql;
	/* Or NULL: a page query equal to sql where created_at never decreases in rid order
	 * (records_count.ordered), and faster (full text in created_at order: the full-text
	 * index walked in rid order, to the page). */
	char *fast_sql;
	query_bindval *binds;
	size_t nbinds, cap;
	int32_t page_size;
	bool list;
	unsigned nkeys;
	uint64_t qhash, scope_hash;
	uint8_t key[16];
	/* A filtered List counts its matches once, on its first page, and its tokens carry
	 * that count to the next pages (carry); carried is the count a token brought, or -1. */
	bool carry;
	int64_t carried;
};

/* A place a comparison reads from: a record column, the JSON at a path, or the current
 * row of a json_each over an array. */
typedef struct opnd {
	const char *col;
	bool each;
	int param;	  /* bound JSON path; 0 when the path is spliced (an indexed field) */
	const char *text; /* the user's key, for messages */
	query_path p;
	char path[QUERY_PATH_TEXT_MAX];
} opnd;

typedef struct key {
	opnd o;
	enum ty ty;
	bool score;
} key;

typedef struct leaf {
	char *path; /* owned */
	enum query_op op;
	const query_value *v;
} leaf;

typedef struct cc {
	const query_schema *s;
	query *q;
	int rc; /* the first failure (its message is the store's, store_err_msg()) */
	char (*indexed)[QUERY_PATH_TEXT_MAX];
	size_t nindexed;
	unsigned nconds;
	bool fts;
	int fts_param;	 /* the MATCH text's parameter */
	size_t fts_wlen; /* c->w's length right after the MATCH: longer means more conditions */
	buf w;		 /* the conditions, ANDed */
	leaf *leaves;
	size_t nleaves, capleaves;
} cc;

/* An order: up to QUERY_MAX_ORDER_KEYS keys, each ascending or descending. */
typedef struct order {
	key k[QUERY_MAX_ORDER_KEYS];
	bool desc[QUERY_MAX_ORDER_KEYS];
	unsigned n;
} order;

/* ---- query_state.c: the state of a compile ---- */

/* s, printable and cut to fit out, for messages. */
const char *query_quote(const char *s, char out[QUOTE_MAX]);
/* Fails the compile with -EINVAL and a message (the first failure stands). c->rc. */
__attribute__((format(printf, 2, 3))) int query_fail(cc *c, const char *fmt, ...);
/* Fails the compile with rc (-ENOMEM...): "what: strerror". */
void query_fail_errno(cc *c, int rc, const char *what);
/* Appends a parameter value (text is copied) and returns its number (?N), or 0 after a
 * failure. */
int query_param(cc *c, query_bindval v);
int query_param_text(cc *c, const char *s, size_t len);
int query_param_int(cc *c, int64_t i);
int query_param_real(cc *c, double d);

/* ---- query_value.c: values of requests ---- */

/* d as an int64 when it is one exactly. */
bool query_value_to_i64(double d, int64_t *out);
/* -?[0-9]+ within int64; canonical additionally refuses leading zeros and "-0", so that
 * the text is exactly what proto3 JSON renders for the number. */
bool query_value_parse_int(const char *s, bool canonical, int64_t *out);
/* A JSON number written as a string ("1.5e3"), finite. */
bool query_value_parse_number(const char *s, double *out);
/* RFC 3339: YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|+HH:MM|-HH:MM), within protobuf Timestamp's
 * range. */
bool query_value_parse_ts(const char *s, int64_t *secs, int32_t *nanos);
/* The proto3 JSON rendering: UTC, "Z", 0, 3, 6 or 9 fractional digits. Its length. */
size_t query_value_format_ts(int64_t secs, int32_t nanos, char out[40]);
/* -?[0-9]{1,12}(.[0-9]{1,9})?s : protobuf Duration's JSON form. */
bool query_value_duration_ok(const char *s);

/* ---- query_emit.c: the SQL of conditions ---- */

/* The value at the operand. For a spliced path this is exactly query_index_field's
 * expression, so SQLite matches it with the expression index. */
void query_emit_operand(buf *b, const opnd *o);
/* The operand as compared by type: int64 strings as integers, timestamps without their
 * "Z" (so that "...:05Z" sorts after "...:04.5Z"), durations as seconds. */
void query_emit_lhs(buf *b, const opnd *o, enum ty ty, bool ordering);
/* Parses a filter or order key into k (its path bound, or spliced when indexed). */
int query_emit_key(cc *c, const char *s, bool allow_score, key *k);
/* Adds the filter prefix.key op v, to be emitted by query_emit_leaves. */
void query_emit_leaf(cc *c, const char *prefix, const char *key, enum query_op op,
		     const query_value *v);
/* Every key of a Struct an equality, nested Structs extending the path; with operators,
 * SearchCollections' {"operator": OP, "value": v} Structs. */
void query_emit_struct(cc *c, const char *prefix, const query_value *st, bool operators,
		       unsigned depth);
/* The filters added, sorted, as conditions ANDed into c->w. */
void query_emit_leaves(cc *c);
/* The record's label l->key equals l->value. */
void query_emit_label(cc *c, const query_label *l);
/* The full-text MATCH. */
void query_emit_fts(cc *c, const char *text);

/* ---- query_order.c: the order ---- */

/* order_by into o (o->n 0 when empty); *dir_given when a direction was written. c->rc. */
int query_order_parse(cc *c, const char *s, bool allow_score, bool *dir_given, order *o);
/* A default order key: the column col, or the full-text score. */
void query_order_default(key *k, const char *col, bool score);
/* An order key as the ORDER BY and the result columns have it. */
void query_order_key(const cc *c, buf *b, const key *k);
/* " ORDER BY" the keys, then rid in the direction of the last key. */
void query_order_by(const cc *c, buf *b, const order *o);

/* ---- query_token.c: page tokens and keyset positions ---- */

/* SipHash-2-4 of m under key (NULL: all zero). */
uint64_t query_token_siphash(const uint8_t *key, const uint8_t *m, size_t n);
/* Every parameter bound so far, typed, into h: part of a List's identity. */
void query_token_hash_binds(buf *h, const query *q);
/* Checks a List's page token against the query, then appends the keyset condition
 * "after its row" (in order o) to w. */
void query_token_after(cc *c, const char *token, const order *o, buf *w);

#endif
