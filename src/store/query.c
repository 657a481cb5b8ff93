#include "store/query.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "store/store_int.h"

/* Page tokens: version byte, query hash, scope hash, key count, typed key values, rid, MAC.
 * Version 1 had no scope: its tokens are refused. */
#define TOKEN_VERSION 2
#define TOKEN_HEADER 18
#define TOKEN_MAX_CHARS (4 * (QUERY_MAX_ORDER_KEYS * (5 + QUERY_MAX_TOKEN_TEXT) + 64) / 3)
#define QUOTE_MAX 64
#define MAX_FTS_TERMS 64

enum tag { TAG_NULL, TAG_INT, TAG_REAL, TAG_TEXT };

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

static const char *const ty_names[] = {
	"untyped", "string", "number", "int64",	   "bool",	"enum",	    "bytes",
	"message", "repeated", "map",  "timestamp", "duration", "time column",
};

static enum ty ty_of(enum query_kind k)
{
	switch (k) {
	case QUERY_KIND_STRING: return TY_STRING;
	case QUERY_KIND_NUMBER: return TY_NUMBER;
	case QUERY_KIND_INT64: return TY_INT64;
	case QUERY_KIND_BOOL: return TY_BOOL;
	case QUERY_KIND_ENUM: return TY_ENUM;
	case QUERY_KIND_BYTES: return TY_BYTES;
	case QUERY_KIND_MESSAGE: return TY_MESSAGE;
	case QUERY_KIND_REPEATED: return TY_REPEATED;
	case QUERY_KIND_MAP: return TY_MAP;
	case QUERY_KIND_TIMESTAMP: return TY_TIMESTAMP;
	case QUERY_KIND_DURATION: return TY_DURATION;
	}
	return TY_RUNTIME;
}

static const char *const op_names[] = {
	"EQUALS",	 "NOT_EQUALS", "GREATER_THAN", "LESS_THAN", "GREATER_EQUAL",
	"LESS_EQUAL", "CONTAINS",   "IN",	   "EXISTS",	"NOT_EXISTS",
};
static const char *const op_sql[] = {"=", "<>", ">", "<", ">=", "<="};

/* ---- growing strings ---- */

typedef struct sb {
	char *p;
	size_t len, cap;
	bool oom;
} sb;

static void sb_put(sb *b, const void *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void sb_add(sb *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_param(sb *b, int n)
{
	char t[16];
	sb_put(b, t, (size_t)snprintf(t, sizeof t, "?%d", n));
}

/* ---- hashing: SipHash-2-4 ---- */

static uint64_t rotl(uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }

static uint64_t get_le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

#define SIPROUND                                                                        \
	do {                                                                            \
		v0 += v1, v1 = rotl(v1, 13), v1 ^= v0, v0 = rotl(v0, 32);               \
		v2 += v3, v3 = rotl(v3, 16), v3 ^= v2;                                  \
		v0 += v3, v3 = rotl(v3, 21), v3 ^= v0;                                  \
		v2 += v1, v1 = rotl(v1, 17), v1 ^= v2, v2 = rotl(v2, 32);               \
	} while (0)

static uint64_t siphash(const uint8_t *key, const uint8_t *m, size_t n)
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

/* ---- the compiled query and the compiler's state ---- */

struct query {
	char *sql, *count_sql;
	query_bindval *binds;
	size_t nbinds, cap;
	int32_t page_size;
	bool list;
	unsigned nkeys;
	uint64_t qhash, scope_hash;
	uint8_t key[16];
};

/* A place a comparison reads from: a record column, the JSON at a path, or the current
 * row of a json_each over an array. */
typedef struct opnd {
	const char *col;
	bool each;
	int param; /* bound JSON path; 0 when the path is spliced (an indexed field) */
	const char *text; /* the user's key, for messages */
	query_path p;
	char path[PATH_TEXT_MAX];
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
	query_err *err;
	int rc;
	char (*indexed)[PATH_TEXT_MAX];
	size_t nindexed;
	unsigned nconds;
	bool fts;
	int fts_param;	 /* the MATCH text's parameter */
	size_t fts_wlen; /* c->w's length right after the MATCH: longer means more conditions */
	sb w; /* the conditions, ANDed */
	leaf *leaves;
	size_t nleaves, capleaves;
} cc;

static const char *quote(const char *s, char out[QUOTE_MAX])
{
	size_t o = 0;
	for (size_t i = 0; s[i]; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (o > QUOTE_MAX - 8) {
			memcpy(out + o, "...", 4);
			return out;
		}
		if (ch >= 0x20 && ch < 0x7f && ch != '\\')
			out[o++] = (char)ch;
		else
			o += (size_t)snprintf(out + o, QUOTE_MAX - o, "\\x%02x", ch);
	}
	out[o] = '\0';
	return out;
}

__attribute__((format(printf, 2, 3))) static int fail(cc *c, const char *fmt, ...)
{
	if (c->rc)
		return c->rc;
	c->rc = -EINVAL;
	if (c->err) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(c->err->msg, sizeof c->err->msg, fmt, ap);
		va_end(ap);
	}
	return c->rc;
}

static void fail_errno(cc *c, int rc, const char *what)
{
	if (c->rc)
		return;
	c->rc = rc;
	if (c->err)
		snprintf(c->err->msg, sizeof c->err->msg, "%s: %s", what, strerror(-rc));
}

/* Appends a parameter value and returns its number (?N), or 0 after a failure. */
static int bind_add(cc *c, query_bindval v)
{
	query *q = c->q;
	if (c->rc)
		return 0;
	if (q->nbinds == QUERY_MAX_BINDS) {
		fail(c, "query too large: more than %d parameters", QUERY_MAX_BINDS);
		return 0;
	}
	if (q->nbinds == q->cap) {
		size_t cap = q->cap ? 2 * q->cap : 16;
		query_bindval *nb = realloc(q->binds, cap * sizeof *nb);
		if (!nb) {
			fail_errno(c, -ENOMEM, "query");
			return 0;
		}
		q->binds = nb;
		q->cap = cap;
	}
	if (v.type == QUERY_BIND_TEXT) {
		char *t = malloc(v.u.text.len + 1);
		if (!t) {
			fail_errno(c, -ENOMEM, "query");
			return 0;
		}
		memcpy(t, v.u.text.p, v.u.text.len);
		t[v.u.text.len] = '\0';
		v.u.text.p = t;
	}
	q->binds[q->nbinds++] = v;
	return (int)q->nbinds;
}

static int bind_text(cc *c, const char *s, size_t len)
{
	return bind_add(c, (query_bindval){.type = QUERY_BIND_TEXT, .u.text = {s, len}});
}

static int bind_int(cc *c, int64_t i)
{
	return bind_add(c, (query_bindval){.type = QUERY_BIND_INT, .u.i = i});
}

static int bind_real(cc *c, double d)
{
	return bind_add(c, (query_bindval){.type = QUERY_BIND_REAL, .u.d = d});
}

/* ---- value conversions ---- */

static bool is_digit(char ch) { return ch >= '0' && ch <= '9'; }

static bool dbl_to_i64(double d, int64_t *out)
{
	if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0) || (double)(int64_t)d != d)
		return false;
	*out = (int64_t)d;
	return true;
}

/* -?[0-9]+ within int64; canonical additionally refuses leading zeros and "-0", so that
 * the text is exactly what proto3 JSON renders for the number. */
static bool parse_int(const char *s, bool canonical, int64_t *out)
{
	bool neg = *s == '-';
	const char *p = s + neg;
	if (!is_digit(*p) || (canonical && *p == '0' && (p[1] || neg)))
		return false;
	uint64_t v = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	for (; is_digit(*p); p++) {
		unsigned d = (unsigned)(*p - '0');
		if (v > (limit - d) / 10)
			return false;
		v = v * 10 + d;
	}
	if (*p)
		return false;
	*out = neg ? (v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v) : (int64_t)v;
	return true;
}

/* A JSON number written as a string ("1.5e3"), finite. */
static bool parse_number(const char *s, double *out)
{
	const char *p = s + (*s == '-');
	if (*p == '0')
		p++;
	else if (is_digit(*p))
		while (is_digit(*p))
			p++;
	else
		return false;
	if (*p == '.') {
		if (!is_digit(*++p))
			return false;
		while (is_digit(*p))
			p++;
	}
	if (*p == 'e' || *p == 'E') {
		p++;
		if (*p == '+' || *p == '-')
			p++;
		if (!is_digit(*p))
			return false;
		while (is_digit(*p))
			p++;
	}
	if (*p)
		return false;
	*out = strtod(s, NULL);
	return isfinite(*out);
}

static int digits(const char *s, int n)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (!is_digit(s[i]))
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

static int64_t days_from_civil(int64_t y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int *y, int *m, int *d)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;
	*d = (int)(doy - (153 * mp + 2) / 5 + 1);
	*m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*y = (int)(yoe + era * 400 + (*m <= 2));
}

#define TS_MIN (-62135596800LL)	 /* 0001-01-01T00:00:00Z */
#define TS_MAX (253402300799LL) /* 9999-12-31T23:59:59Z */

/* RFC 3339: YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|+HH:MM|-HH:MM), within protobuf Timestamp's
 * range. */
static bool parse_ts(const char *s, int64_t *secs, int32_t *nanos)
{
	/* The fixed part is read at fixed offsets. */
	if (strlen(s) < 20)
		return false;
	int y = digits(s, 4), mo = digits(s + 5, 2), d = digits(s + 8, 2);
	if (y < 1 || s[4] != '-' || s[7] != '-' || mo < 1 || mo > 12 || d < 1)
		return false;
	static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	if (d > mdays[mo - 1] + (mo == 2 && leap))
		return false;
	if (s[10] != 'T' && s[10] != 't')
		return false;
	int h = digits(s + 11, 2), mi = digits(s + 14, 2), se = digits(s + 17, 2);
	if (h < 0 || h > 23 || s[13] != ':' || mi < 0 || mi > 59 || s[16] != ':' || se < 0 ||
	    se > 59)
		return false;
	const char *p = s + 19;
	int32_t ns = 0;
	if (*p == '.') {
		int n = 0;
		for (p++; is_digit(*p) && n < 9; p++, n++)
			ns = ns * 10 + (*p - '0');
		if (n == 0 || is_digit(*p))
			return false;
		for (; n < 9; n++)
			ns *= 10;
	}
	int64_t off = 0;
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if ((*p == '+' || *p == '-') && strlen(p) == 6) {
		int oh = digits(p + 1, 2), om = digits(p + 4, 2);
		if (oh < 0 || oh > 23 || p[3] != ':' || om < 0 || om > 59)
			return false;
		off = (*p == '-' ? -1 : 1) * (oh * 3600 + om * 60);
		p += 6;
	} else {
		return false;
	}
	if (*p)
		return false;
	int64_t t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se - off;
	if (t < TS_MIN || t > TS_MAX)
		return false;
	*secs = t;
	*nanos = ns;
	return true;
}

/* The proto3 JSON rendering: UTC, "Z", 0, 3, 6 or 9 fractional digits. */
static size_t format_ts(int64_t secs, int32_t nanos, char out[40])
{
	int64_t days = secs >= 0 ? secs / 86400 : -((-secs + 86399) / 86400);
	int64_t rem = secs - days * 86400;
	int y, m, d;
	civil_from_days(days, &y, &m, &d);
	int n = snprintf(out, 40, "%04d-%02d-%02dT%02d:%02d:%02d", y, m, d, (int)(rem / 3600),
			 (int)(rem / 60 % 60), (int)(rem % 60));
	if (nanos % 1000000 == 0 && nanos)
		n += snprintf(out + n, 40 - (size_t)n, ".%03d", nanos / 1000000);
	else if (nanos % 1000 == 0 && nanos)
		n += snprintf(out + n, 40 - (size_t)n, ".%06d", nanos / 1000);
	else if (nanos)
		n += snprintf(out + n, 40 - (size_t)n, ".%09d", nanos);
	out[n++] = 'Z';
	out[n] = '\0';
	return (size_t)n;
}

/* -?[0-9]{1,12}(.[0-9]{1,9})?s : protobuf Duration's JSON form. */
static bool valid_duration(const char *s)
{
	const char *p = s + (*s == '-');
	int n = 0;
	while (is_digit(*p) && n < 13)
		p++, n++;
	if (n == 0 || n > 12)
		return false;
	if (*p == '.') {
		n = 0;
		for (p++; is_digit(*p) && n < 10; p++)
			n++;
		if (n == 0 || n > 9)
			return false;
	}
	return p[0] == 's' && p[1] == '\0';
}

/* ---- operands ---- */

static void put_path(sb *b, const opnd *o)
{
	if (o->param) {
		sb_param(b, o->param);
	} else {
		sb_add(b, "'");
		sb_add(b, o->path);
		sb_add(b, "'");
	}
}

/* The value at the operand. For a spliced path this is exactly query_index_field's
 * expression, so SQLite matches it with the expression index. */
static void put_e(sb *b, const opnd *o)
{
	if (o->col) {
		sb_add(b, o->col);
	} else if (o->each) {
		sb_add(b, "value");
	} else {
		sb_add(b, "json_extract(json,");
		put_path(b, o);
		sb_add(b, ")");
	}
}

static void put_t(sb *b, const opnd *o)
{
	if (o->each) {
		sb_add(b, "type");
	} else {
		sb_add(b, "json_type(json,");
		put_path(b, o);
		sb_add(b, ")");
	}
}

/* The operand as compared by type: int64 strings as integers, timestamps without their
 * "Z" (so that "...:05Z" sorts after "...:04.5Z"), durations as seconds. */
static void put_lhs(sb *b, const opnd *o, enum ty ty, bool ordering)
{
	if (ty == TY_INT64 && ordering) {
		sb_add(b, "CAST(");
		put_e(b, o);
		sb_add(b, " AS INTEGER)");
	} else if (ty == TY_TIMESTAMP && ordering) {
		sb_add(b, "rtrim(");
		put_e(b, o);
		sb_add(b, ",'Z')");
	} else if (ty == TY_DURATION) {
		sb_add(b, "CAST(rtrim(");
		put_e(b, o);
		sb_add(b, ",'s') AS REAL)");
	} else {
		put_e(b, o);
	}
}

/* Points o at path p: spliced when p is an indexed field, else bound. */
static void opnd_set_path(cc *c, opnd *o)
{
	size_t n = path_render(&o->p, o->path);
	o->col = NULL;
	o->each = false;
	for (size_t i = 0; i < c->nindexed; i++)
		if (!strcmp(c->indexed[i], o->path)) {
			o->param = 0;
			return;
		}
	o->param = bind_text(c, o->path, n);
}

/* The type of p: 0, or -ENOENT with *ty = TY_RUNTIME when no resolver knows it (a failure
 * when required and there is a resolver). */
static int resolve(cc *c, const query_path *p, const char *text, bool required, enum ty *ty)
{
	enum query_kind k;
	*ty = TY_RUNTIME;
	if (!c->s->resolve)
		return -ENOENT;
	int rc = c->s->resolve(c->s->resolve_ctx, p, &k);
	if (rc == 0) {
		*ty = ty_of(k);
		return 0;
	}
	char qb[QUOTE_MAX];
	if (rc != -ENOENT)
		fail_errno(c, rc, "field type lookup");
	else if (required)
		fail(c, "unknown field '%s'", quote(text, qb));
	return -ENOENT;
}

/* Parses a filter or order key. */
static int key_parse(cc *c, const char *s, bool allow_score, key *k)
{
	char qb[QUOTE_MAX];
	memset(&k->o, 0, offsetof(opnd, p));
	k->o.text = s;
	k->score = false;
	if (s[0] == '@') {
		static const struct {
			const char *name, *col;
			enum ty ty;
		} cols[] = {
			{"@id", "id", TY_STRING},
			{"@created_at", "created_at", TY_MICROS},
			{"@updated_at", "updated_at", TY_MICROS},
		};
		for (size_t i = 0; i < sizeof cols / sizeof cols[0]; i++)
			if (!strcmp(s, cols[i].name)) {
				k->o.col = cols[i].col;
				k->ty = cols[i].ty;
				return 0;
			}
		if (allow_score && !strcmp(s, "@score")) {
			k->score = true;
			k->ty = TY_NUMBER;
			return 0;
		}
		return fail(c, "unknown record column '%s' (use @id, @created_at, @updated_at%s)",
			    quote(s, qb), allow_score ? " or @score" : "");
	}
	const char *why;
	if (path_parse(s, strlen(s), &k->o.p, &why))
		return fail(c, "invalid field path '%s': %s", quote(s, qb), why);
	bool bare = !strcmp(s, "id") || !strcmp(s, "created_at") || !strcmp(s, "updated_at");
	bool known = !resolve(c, &k->o.p, s, !bare, &k->ty);
	if (c->rc)
		return c->rc;
	if (bare && !known) {
		k->o.col = s[0] == 'i' ? "id" : s[0] == 'c' ? "created_at" : "updated_at";
		k->ty = s[0] == 'i' ? TY_STRING : TY_MICROS;
		return 0;
	}
	opnd_set_path(c, &k->o);
	return c->rc;
}

/* ---- comparisons ---- */

/* A right-hand side: ?N, or a duration string read as seconds by the same SQLite
 * conversion as the left side. */
typedef struct rhs {
	int param;
	bool dur;
} rhs;

static void put_rhs(sb *b, rhs r)
{
	if (r.dur) {
		sb_add(b, "CAST(rtrim(");
		sb_param(b, r.param);
		sb_add(b, ",'s') AS REAL)");
	} else {
		sb_param(b, r.param);
	}
}

static int bind_num(cc *c, double d)
{
	int64_t i;
	return dbl_to_i64(d, &i) ? bind_int(c, i) : bind_real(c, d);
}

static int bind_i64_text(cc *c, int64_t i)
{
	char t[24];
	return bind_text(c, t, (size_t)snprintf(t, sizeof t, "%lld", (long long)i));
}

static const char *vtype_name(const query_value *v)
{
	static const char *const names[] = {"null",	"a number", "a string", "a bool",
					    "a list", "a Struct", "no value"};
	return (unsigned)v->type <= QUERY_ABSENT ? names[v->type] : "an invalid value";
}

/* Also refuses NaN and infinities, which JSON cannot hold (SQLite would bind NaN as NULL).
 * An absent value was refused by emit_filter with its key; this is the backstop. */
static bool bad_value(cc *c, const query_value *v)
{
	if ((unsigned)v->type >= QUERY_ABSENT)
		fail(c, "invalid value type %d", (int)v->type);
	else if (v->type == QUERY_NUMBER && !isfinite(v->u.number))
		fail(c, "filter value %g is not a finite number", v->u.number);
	else
		return false;
	return true;
}

static int type_mismatch(cc *c, const opnd *o, enum ty ty, enum query_op op,
			 const query_value *v)
{
	char qb[QUOTE_MAX];
	return fail(c, "%s on '%s' (%s) cannot take %s", op_names[op], quote(o->text, qb),
		    ty_names[ty], vtype_name(v));
}

/* Right-hand sides for a typed scalar compared with v: one for most, two for int64
 * equality (the JSON holds a decimal string, or a number when written by hand). Returns
 * how many, 0 after a failure. */
static int typed_rhs(cc *c, const opnd *o, enum ty ty, enum query_op op, const query_value *v,
		     rhs out[2])
{
	bool ordering = op >= QUERY_GREATER_THAN && op <= QUERY_LESS_EQUAL;
	char qb[QUOTE_MAX], qv[QUOTE_MAX];
	int64_t i;
	double d;
	out[0] = out[1] = (rhs){0, false};
	if (bad_value(c, v))
		return 0;
	switch (ty) {
	case TY_STRING:
	case TY_ENUM:
	case TY_BYTES:
		if (ordering && ty != TY_STRING)
			break;
		if (v->type != QUERY_STRING)
			break;
		out[0].param = bind_text(c, v->u.string, strlen(v->u.string));
		return out[0].param ? 1 : 0;
	case TY_BOOL:
		if (ordering || v->type != QUERY_BOOL)
			break;
		out[0].param = bind_int(c, v->u.boolean);
		return out[0].param ? 1 : 0;
	case TY_NUMBER:
		if (v->type == QUERY_NUMBER)
			d = v->u.number;
		else if (v->type != QUERY_STRING)
			break;
		else if (!parse_number(v->u.string, &d)) {
			fail(c, "'%s' is a number field: '%s' is not a number", quote(o->text, qb),
			     quote(v->u.string, qv));
			return 0;
		}
		out[0].param = bind_num(c, d);
		return out[0].param ? 1 : 0;
	case TY_INT64:
	case TY_MICROS:
		if (v->type == QUERY_NUMBER) {
			d = v->u.number;
			if (!dbl_to_i64(d, &i)) {
				if (!ordering) {
					fail(c, "'%s' is an integer field: %g is not an integer",
					     quote(o->text, qb), d);
					return 0;
				}
				out[0].param = bind_real(c, d);
				return out[0].param ? 1 : 0;
			}
		} else if (v->type != QUERY_STRING) {
			break;
		} else if (!parse_int(v->u.string, false, &i)) {
			int64_t secs;
			int32_t ns;
			if (ty == TY_MICROS && parse_ts(v->u.string, &secs, &ns)) {
				i = secs * 1000000 + ns / 1000;
			} else if (ordering && parse_number(v->u.string, &d)) {
				out[0].param = bind_real(c, d);
				return out[0].param ? 1 : 0;
			} else {
				fail(c, "'%s' is an integer field: '%s' is not an integer%s",
				     quote(o->text, qb), quote(v->u.string, qv),
				     ty == TY_MICROS ? " or an RFC 3339 time" : "");
				return 0;
			}
		}
		out[0].param = bind_int(c, i);
		if (ty == TY_MICROS || ordering)
			return out[0].param ? 1 : 0;
		out[1].param = bind_i64_text(c, i);
		return out[1].param ? 2 : 0;
	case TY_TIMESTAMP: {
		int64_t secs;
		int32_t ns;
		char t[40];
		if (v->type != QUERY_STRING)
			break;
		if (!parse_ts(v->u.string, &secs, &ns)) {
			fail(c, "'%s' is a timestamp field: '%s' is not an RFC 3339 time",
			     quote(o->text, qb), quote(v->u.string, qv));
			return 0;
		}
		size_t n = format_ts(secs, ns, t);
		out[0].param = bind_text(c, t, ordering ? n - 1 : n);
		return out[0].param ? 1 : 0;
	}
	case TY_DURATION:
		if (v->type == QUERY_NUMBER) {
			out[0].param = bind_real(c, v->u.number);
			return out[0].param ? 1 : 0;
		}
		if (v->type != QUERY_STRING)
			break;
		if (!valid_duration(v->u.string)) {
			fail(c, "'%s' is a duration field: '%s' is not a duration like \"1.5s\"",
			     quote(o->text, qb), quote(v->u.string, qv));
			return 0;
		}
		out[0] = (rhs){bind_text(c, v->u.string, strlen(v->u.string)), true};
		return out[0].param ? 1 : 0;
	default:
		break;
	}
	type_mismatch(c, o, ty, op, v);
	return 0;
}

static bool typed_scalar(enum ty ty)
{
	return ty != TY_RUNTIME && ty != TY_MESSAGE && ty != TY_REPEATED && ty != TY_MAP;
}

/* Runtime typing: a number, or a string that is a canonical integer, is numeric. */
static bool rt_numeric(const query_value *v, double *d, int64_t *i, bool *integral)
{
	if (v->type == QUERY_NUMBER) {
		*d = v->u.number;
		*integral = dbl_to_i64(*d, i);
		return true;
	}
	if (v->type == QUERY_STRING && parse_int(v->u.string, true, i)) {
		*integral = true;
		return true;
	}
	return false;
}

/* The operand as a number when its JSON is a number or an integer string, else NULL. */
static void put_rt_num(sb *b, const opnd *o)
{
	sb_add(b, "CASE ");
	put_t(b, o);
	sb_add(b, " WHEN 'integer' THEN ");
	put_e(b, o);
	sb_add(b, " WHEN 'real' THEN ");
	put_e(b, o);
	sb_add(b, " WHEN 'text' THEN iif(CAST(CAST(");
	put_e(b, o);
	sb_add(b, " AS INTEGER) AS TEXT) = ");
	put_e(b, o);
	sb_add(b, ", CAST(");
	put_e(b, o);
	sb_add(b, " AS INTEGER), NULL) END");
}

static void emit_eq(cc *c, sb *b, const opnd *o, enum ty ty, const query_value *v);

/* Items lo..hi-1 joined by op as a balanced tree: a flat chain of 1000 terms would exceed
 * SQLite's expression depth limit. */
typedef void (*item_fn)(cc *c, sb *b, size_t i, const void *arg);

static void emit_tree(cc *c, sb *b, size_t lo, size_t hi, const char *op, item_fn item,
		      const void *arg)
{
	if (hi - lo == 1) {
		item(c, b, lo, arg);
		return;
	}
	size_t mid = lo + (hi - lo) / 2;
	sb_add(b, "(");
	emit_tree(c, b, lo, mid, op, item, arg);
	sb_add(b, op);
	emit_tree(c, b, mid, hi, op, item, arg);
	sb_add(b, ")");
}

typedef struct elems {
	const opnd *o;
	enum ty ty;
	const query_value *v;
} elems;

/* Element i of the array at o equals element i of the list. */
static void elem_eq(cc *c, sb *b, size_t i, const void *arg)
{
	const elems *x = arg;
	char qb[QUOTE_MAX];
	opnd *e = malloc(sizeof *e);
	if (!e) {
		fail_errno(c, -ENOMEM, "query");
		return;
	}
	*e = *x->o;
	if (path_append_index(&e->p, (uint32_t)i)) {
		fail(c, "list value for '%s' is nested too deeply", quote(x->o->text, qb));
	} else {
		opnd_set_path(c, e);
		enum ty et = TY_RUNTIME;
		if (x->ty == TY_REPEATED)
			resolve(c, &e->p, x->o->text, false, &et);
		emit_eq(c, b, e, et, &x->v->u.list.items[i]);
	}
	free(e);
}

/* The operand equals list element i. */
static void any_eq(cc *c, sb *b, size_t i, const void *arg)
{
	const elems *x = arg;
	emit_eq(c, b, x->o, x->ty, &x->v->u.list.items[i]);
}

/* The element type of a repeated field: the resolver's answer for path[0]. */
static enum ty elem_ty(cc *c, const opnd *o)
{
	query_path elem = o->p;
	enum ty et = TY_RUNTIME;
	if (!path_append_index(&elem, 0))
		resolve(c, &elem, o->text, false, &et);
	return et;
}

/* Same length, and each element equal in order. */
static void emit_list_eq(cc *c, sb *b, const opnd *o, enum ty ty, const query_value *v)
{
	char qb[QUOTE_MAX];
	size_t n = v->u.list.n;
	if (o->col || o->each || (ty != TY_RUNTIME && ty != TY_REPEATED)) {
		type_mismatch(c, o, ty, QUERY_EQUALS, v);
		return;
	}
	if (n > QUERY_MAX_IN) {
		fail(c, "list value for '%s' has more than %d elements", quote(o->text, qb),
		     QUERY_MAX_IN);
		return;
	}
	if (n == 0 && ty == TY_REPEATED) {
		/* proto3 JSON leaves empty repeated fields out. */
		sb_add(b, "(IFNULL(json_array_length(json,");
		put_path(b, o);
		sb_add(b, "),0) = 0)");
		return;
	}
	sb_add(b, "(");
	put_t(b, o);
	sb_add(b, " = 'array' AND json_array_length(json,");
	put_path(b, o);
	sb_add(b, ") = ");
	sb_param(b, bind_int(c, (int64_t)n));
	if (n) {
		elems x = {o, ty, v};
		sb_add(b, " AND ");
		emit_tree(c, b, 0, n, " AND ", elem_eq, &x);
	}
	sb_add(b, ")");
}

static void emit_rt_eq(cc *c, sb *b, const opnd *o, const query_value *v)
{
	double d;
	int64_t i;
	bool integral;
	if (v->type == QUERY_BOOL) {
		sb_add(b, "(");
		put_t(b, o);
		sb_add(b, v->u.boolean ? " = 'true')" : " = 'false')");
	} else if (rt_numeric(v, &d, &i, &integral)) {
		sb_add(b, "(");
		put_e(b, o);
		if (integral) {
			/* A JSON number, or the integer string proto3 writes for int64; not a
			 * bool, which json_extract also reads as 0 or 1. */
			int pi = bind_int(c, i), pt = bind_i64_text(c, i);
			sb_add(b, " IN (");
			sb_param(b, pi);
			sb_add(b, ",");
			sb_param(b, pt);
			sb_add(b, ") AND ");
			put_t(b, o);
			sb_add(b, " NOT IN ('true','false'))");
		} else {
			sb_add(b, " = ");
			sb_param(b, bind_real(c, d));
			sb_add(b, ")");
		}
	} else {
		sb_add(b, "(");
		put_t(b, o);
		sb_add(b, " = 'text' AND ");
		put_e(b, o);
		sb_add(b, " = ");
		sb_param(b, bind_text(c, v->u.string, strlen(v->u.string)));
		sb_add(b, ")");
	}
}

static void emit_eq(cc *c, sb *b, const opnd *o, enum ty ty, const query_value *v)
{
	char qb[QUOTE_MAX];
	rhs r[2];
	if (bad_value(c, v))
		return;
	switch (v->type) {
	case QUERY_NULL:
		if (o->col) {
			sb_add(b, "0");
		} else {
			sb_add(b, "(");
			put_e(b, o);
			sb_add(b, " IS NULL)");
		}
		return;
	case QUERY_STRUCT:
		fail(c, "'%s' cannot be compared with a Struct: compare its fields with longer paths",
		     quote(o->text, qb));
		return;
	case QUERY_LIST:
		emit_list_eq(c, b, o, ty, v);
		return;
	default:
		break;
	}
	if (ty == TY_RUNTIME) {
		emit_rt_eq(c, b, o, v);
		return;
	}
	int n = typed_rhs(c, o, ty, QUERY_EQUALS, v, r);
	if (!n)
		return;
	sb_add(b, "(");
	put_lhs(b, o, ty, false);
	sb_add(b, n == 1 ? " = " : " IN (");
	put_rhs(b, r[0]);
	if (n == 2) {
		sb_add(b, ",");
		put_rhs(b, r[1]);
		sb_add(b, ")");
	}
	sb_add(b, ")");
}

static void emit_in(cc *c, sb *b, const opnd *o, enum ty ty, const query_value *v)
{
	char qb[QUOTE_MAX];
	if (bad_value(c, v))
		return;
	if (v->type != QUERY_LIST) {
		fail(c, "IN on '%s' needs a list value, not %s", quote(o->text, qb),
		     vtype_name(v));
		return;
	}
	size_t n = v->u.list.n;
	if (n > QUERY_MAX_IN) {
		fail(c, "IN on '%s' has more than %d values", quote(o->text, qb), QUERY_MAX_IN);
		return;
	}
	if (n == 0) {
		sb_add(b, "0");
		return;
	}
	const query_value *items = v->u.list.items;
	if (typed_scalar(ty)) {
		/* One IN list, which an expression index can serve. */
		bool nulls = false, first = true;
		sb_add(b, "(");
		put_lhs(b, o, ty, false);
		sb_add(b, " IN (");
		for (size_t i = 0; i < n && !c->rc; i++) {
			rhs r[2];
			if (items[i].type == QUERY_NULL) {
				nulls = true;
				continue;
			}
			int k = typed_rhs(c, o, ty, QUERY_IN, &items[i], r);
			for (int j = 0; j < k; j++) {
				sb_add(b, first ? "" : ",");
				put_rhs(b, r[j]);
				first = false;
			}
		}
		sb_add(b, ")");
		if (nulls && !o->col) {
			sb_add(b, " OR ");
			put_e(b, o);
			sb_add(b, " IS NULL");
		}
		sb_add(b, ")");
		return;
	}
	elems x = {o, ty, v};
	sb_add(b, "(");
	emit_tree(c, b, 0, n, " OR ", any_eq, &x);
	sb_add(b, ")");
}

static void emit_order_cmp(cc *c, sb *b, const opnd *o, enum ty ty, enum query_op op,
			   const query_value *v)
{
	double d;
	int64_t i;
	bool integral;
	if (bad_value(c, v))
		return;
	if (ty != TY_RUNTIME) {
		rhs r[2];
		if (!typed_rhs(c, o, ty, op, v, r))
			return;
		sb_add(b, "(");
		put_lhs(b, o, ty, true);
		sb_add(b, " ");
		sb_add(b, op_sql[op]);
		sb_add(b, " ");
		put_rhs(b, r[0]);
		sb_add(b, ")");
	} else if (rt_numeric(v, &d, &i, &integral)) {
		int p = integral ? bind_int(c, i) : bind_real(c, d);
		sb_add(b, "(");
		put_rt_num(b, o);
		sb_add(b, " ");
		sb_add(b, op_sql[op]);
		sb_add(b, " ");
		sb_param(b, p);
		sb_add(b, ")");
	} else if (v->type == QUERY_STRING) {
		sb_add(b, "(");
		put_t(b, o);
		sb_add(b, " = 'text' AND ");
		put_e(b, o);
		sb_add(b, " ");
		sb_add(b, op_sql[op]);
		sb_add(b, " ");
		sb_param(b, bind_text(c, v->u.string, strlen(v->u.string)));
		sb_add(b, ")");
	} else {
		type_mismatch(c, o, ty, op, v);
	}
}

/* EXISTS over the elements of the array at o, each compared for equality with v. */
static void emit_any(cc *c, sb *b, const opnd *o, enum ty et, const query_value *v)
{
	opnd *e = malloc(sizeof *e);
	if (!e) {
		fail_errno(c, -ENOMEM, "query");
		return;
	}
	*e = *o;
	e->each = true;
	sb_add(b, "EXISTS (SELECT 1 FROM json_each(records.json,");
	put_path(b, o);
	sb_add(b, ") WHERE ");
	emit_eq(c, b, e, et, v);
	sb_add(b, ")");
	free(e);
}

static void emit_contains(cc *c, sb *b, const opnd *o, enum ty ty, const query_value *v)
{
	char qb[QUOTE_MAX];
	if (bad_value(c, v))
		return;
	if (v->type == QUERY_LIST || v->type == QUERY_STRUCT) {
		type_mismatch(c, o, ty, QUERY_CONTAINS, v);
		return;
	}
	if (ty == TY_STRING) {
		if (v->type != QUERY_STRING) {
			type_mismatch(c, o, ty, QUERY_CONTAINS, v);
			return;
		}
		sb_add(b, "(instr(");
		put_e(b, o);
		sb_add(b, ",");
		sb_param(b, bind_text(c, v->u.string, strlen(v->u.string)));
		sb_add(b, ") > 0)");
	} else if (ty == TY_REPEATED) {
		sb_add(b, "(");
		emit_any(c, b, o, elem_ty(c, o), v);
		sb_add(b, ")");
	} else if (ty == TY_RUNTIME) {
		sb_add(b, "(CASE ");
		put_t(b, o);
		if (v->type == QUERY_STRING) {
			sb_add(b, " WHEN 'text' THEN instr(");
			put_e(b, o);
			sb_add(b, ",");
			sb_param(b, bind_text(c, v->u.string, strlen(v->u.string)));
			sb_add(b, ") > 0");
		}
		sb_add(b, " WHEN 'array' THEN ");
		emit_any(c, b, o, TY_RUNTIME, v);
		sb_add(b, " ELSE 0 END)");
	} else {
		fail(c, "CONTAINS needs a string or repeated field; '%s' is %s", quote(o->text, qb),
		     ty_names[ty]);
	}
}

/* Whether v, or an element of its lists, is no value at all. */
static bool value_absent(const query_value *v)
{
	if (v->type == QUERY_ABSENT)
		return true;
	for (size_t i = 0; v->type == QUERY_LIST && i < v->u.list.n; i++)
		if (value_absent(&v->u.list.items[i]))
			return true;
	return false;
}

static void emit_filter(cc *c, const char *path, enum query_op op, const query_value *v)
{
	char qb[QUOTE_MAX];
	key k;
	if (++c->nconds > QUERY_MAX_FILTERS) {
		fail(c, "too many filters (at most %d)", QUERY_MAX_FILTERS);
		return;
	}
	if ((unsigned)op > QUERY_NOT_EXISTS) {
		fail(c, "unknown operator %d on '%s'", (int)op, quote(path, qb));
		return;
	}
	if (op != QUERY_EXISTS && op != QUERY_NOT_EXISTS && value_absent(v)) {
		fail(c, "%s on '%s' needs a value%s (only EXISTS and NOT_EXISTS take none)",
		     op_names[op], quote(path, qb),
		     v->type == QUERY_ABSENT ? "" : " in every element of its list");
		return;
	}
	if (key_parse(c, path, false, &k))
		return;
	sb *b = &c->w;
	if (b->len)
		sb_add(b, " AND ");
	switch (op) {
	case QUERY_EQUALS:
		emit_eq(c, b, &k.o, k.ty, v);
		break;
	case QUERY_NOT_EQUALS:
		sb_add(b, "(");
		emit_eq(c, b, &k.o, k.ty, v);
		sb_add(b, " IS NOT 1)");
		break;
	case QUERY_GREATER_THAN:
	case QUERY_LESS_THAN:
	case QUERY_GREATER_EQUAL:
	case QUERY_LESS_EQUAL:
		emit_order_cmp(c, b, &k.o, k.ty, op, v);
		break;
	case QUERY_CONTAINS:
		emit_contains(c, b, &k.o, k.ty, v);
		break;
	case QUERY_IN:
		emit_in(c, b, &k.o, k.ty, v);
		break;
	case QUERY_EXISTS:
	case QUERY_NOT_EXISTS:
		if (k.o.col) {
			sb_add(b, op == QUERY_EXISTS ? "1" : "0");
		} else {
			sb_add(b, "(");
			put_t(b, &k.o);
			sb_add(b, op == QUERY_EXISTS ? " IS NOT NULL)" : " IS NULL)");
		}
		break;
	}
}

/* ---- filter sets: Structs flattened to (path, op, value) leaves ---- */

/* "prefix.key" (or key), malloc'd. */
static char *join_path(cc *c, const char *prefix, const char *key)
{
	size_t pl = prefix ? strlen(prefix) + 1 : 0, kl = strlen(key);
	char *path = malloc(pl + kl + 1);
	if (!path) {
		fail_errno(c, -ENOMEM, "query");
		return NULL;
	}
	if (prefix) {
		memcpy(path, prefix, pl - 1);
		path[pl - 1] = '.';
	}
	memcpy(path + pl, key, kl + 1);
	return path;
}

static void leaf_add(cc *c, const char *prefix, const char *key, enum query_op op,
		     const query_value *v)
{
	if (c->rc)
		return;
	if (c->nleaves == QUERY_MAX_FILTERS) {
		fail(c, "too many filters (at most %d)", QUERY_MAX_FILTERS);
		return;
	}
	if (c->nleaves == c->capleaves) {
		size_t cap = c->capleaves ? 2 * c->capleaves : 8;
		leaf *nl = realloc(c->leaves, cap * sizeof *nl);
		if (!nl) {
			fail_errno(c, -ENOMEM, "query");
			return;
		}
		c->leaves = nl;
		c->capleaves = cap;
	}
	char *path = join_path(c, prefix, key);
	if (path)
		c->leaves[c->nleaves++] = (leaf){path, op, v};
}

static bool parse_op(const query_value *v, enum query_op *op)
{
	if (v->type == QUERY_NUMBER) {
		int64_t i;
		if (!dbl_to_i64(v->u.number, &i) || i < 0 || i > QUERY_NOT_EXISTS)
			return false;
		*op = (enum query_op)i;
		return true;
	}
	if (v->type != QUERY_STRING)
		return false;
	const char *s = v->u.string;
	if (!strncmp(s, "OP_", 3))
		s += 3;
	for (int i = 0; i <= QUERY_NOT_EXISTS; i++)
		if (!strcmp(s, op_names[i])) {
			*op = (enum query_op)i;
			return true;
		}
	return false;
}

/* SearchCollections: {"operator": OP, "value": v} (value optional: emit_filter decides
 * whether OP needs one). 1 when st is one, 0 when not, -EINVAL when it is one with a bad
 * operator. */
static int operator_struct(cc *c, const char *prefix, const char *key, const query_value *st)
{
	static const query_value absent = {.type = QUERY_ABSENT};
	const query_value *opv = NULL, *val = &absent;
	size_t n = st->u.object.n;
	if (n < 1 || n > 2)
		return 0;
	for (size_t i = 0; i < n; i++) {
		const query_member *m = &st->u.object.members[i];
		if (!m->key || !m->value)
			return 0; /* flatten reports it */
		if (!strcmp(m->key, "operator") && !opv)
			opv = m->value;
		else if (!strcmp(m->key, "value") && val == &absent)
			val = m->value;
		else
			return 0;
	}
	if (!opv)
		return 0;
	enum query_op op;
	char qb[QUOTE_MAX];
	if (!parse_op(opv, &op))
		return fail(c, "unknown operator for '%s' (use a FilterOperator name or number)",
			    quote(key, qb));
	leaf_add(c, prefix, key, op, val);
	return 1;
}

/* Every key of a Struct an equality, nested Structs extending the path. */
static void flatten(cc *c, const char *prefix, const query_value *st, bool operators,
		    unsigned depth)
{
	char qb[QUOTE_MAX];
	if (depth > PATH_MAX_SEGMENTS) {
		fail(c, "filter Struct nested too deeply at '%s'", quote(prefix, qb));
		return;
	}
	for (size_t i = 0; i < st->u.object.n && !c->rc; i++) {
		const query_member *m = &st->u.object.members[i];
		const query_value *v = m->value;
		if (!m->key || !v) {
			fail(c, "filter Struct has an entry without a key or value");
			return;
		}
		if (v->type != QUERY_STRUCT) {
			leaf_add(c, prefix, m->key, QUERY_EQUALS, v);
			continue;
		}
		if (operators && operator_struct(c, prefix, m->key, v))
			continue;
		if (v->u.object.n == 0) {
			fail(c, "empty Struct for '%s': nothing to compare", quote(m->key, qb));
			return;
		}
		char *sub = join_path(c, prefix, m->key);
		if (!sub)
			return;
		if (strlen(sub) >= PATH_TEXT_MAX)
			fail(c, "filter path starting '%s' is too long", quote(sub, qb));
		else
			flatten(c, sub, v, operators, depth + 1);
		free(sub);
	}
}

static int leaf_cmp(const void *a, const void *b)
{
	const leaf *x = a, *y = b;
	int r = strcmp(x->path, y->path);
	return r ? r : (int)x->op - (int)y->op;
}

/* Sorted first, so that the same filter sent with its keys in another order compiles to
 * the same SQL (and a page token stays valid). */
static void emit_leaves(cc *c)
{
	if (c->nleaves)
		qsort(c->leaves, c->nleaves, sizeof *c->leaves, leaf_cmp);
	for (size_t i = 0; i < c->nleaves && !c->rc; i++)
		emit_filter(c, c->leaves[i].path, c->leaves[i].op, c->leaves[i].v);
}

static void emit_label(cc *c, const query_label *l)
{
	sb *b = &c->w;
	if (!l->key || !l->value) {
		fail(c, "label filter without a key or value");
		return;
	}
	if (++c->nconds > QUERY_MAX_FILTERS) {
		fail(c, "too many filters (at most %d)", QUERY_MAX_FILTERS);
		return;
	}
	/* json_each rather than a JSON path: a label key may hold any character. */
	int pk = bind_text(c, l->key, strlen(l->key));
	int pv = bind_text(c, l->value, strlen(l->value));
	if (b->len)
		sb_add(b, " AND ");
	sb_add(b, "EXISTS (SELECT 1 FROM json_each(records.labels) WHERE key = ");
	sb_param(b, pk);
	sb_add(b, " AND value = ");
	sb_param(b, pv);
	sb_add(b, ")");
}

/* ---- full text ---- */

static bool fts_space(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v';
}

static bool fts_wordy(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch >= 0x80 || (ch >= '0' && ch <= '9') || ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z'))
			return true;
	}
	return false;
}

/* Each term a quoted FTS5 string ('"' doubled), terms ANDed. */
static void emit_fts(cc *c, const char *text)
{
	size_t len = strlen(text), i = 0;
	unsigned terms = 0;
	bool blank = true;
	sb f = {0};
	if (len > QUERY_MAX_TEXT) {
		fail(c, "full_text longer than %d bytes", QUERY_MAX_TEXT);
		return;
	}
	while (i < len) {
		while (i < len && fts_space(text[i]))
			i++;
		size_t start = i;
		while (i < len && !fts_space(text[i]))
			i++;
		if (i == start)
			break;
		blank = false;
		if (!fts_wordy(text + start, i - start))
			continue;
		if (++terms > MAX_FTS_TERMS) {
			fail(c, "full_text has more than %d terms", MAX_FTS_TERMS);
			break;
		}
		sb_add(&f, terms > 1 ? " AND \"" : "\"");
		for (size_t j = start; j < i; j++)
			sb_put(&f, text[j] == '"' ? "\"\"" : text + j, text[j] == '"' ? 2 : 1);
		sb_add(&f, "\"");
	}
	if (blank || c->rc) {
		free(f.p);
		return;
	}
	if (!terms)
		sb_add(&f, "\"\""); /* an empty phrase: matches nothing */
	if (f.oom) {
		fail_errno(c, -ENOMEM, "query");
	} else {
		c->fts = true;
		int p = bind_text(c, f.p, f.len);
		if (c->w.len)
			sb_add(&c->w, " AND ");
		sb_add(&c->w, "records_fts MATCH ");
		sb_param(&c->w, p);
		c->fts_param = p;
		c->fts_wlen = c->w.len;
	}
	free(f.p);
}

/* ---- order ---- */

typedef struct order {
	key k[QUERY_MAX_ORDER_KEYS];
	bool desc[QUERY_MAX_ORDER_KEYS];
	unsigned n;
} order;

static void put_key(const cc *c, sb *b, const key *k)
{
	if (k->score)
		sb_add(b, c->fts ? "-bm25(records_fts)" : "0.0");
	else if (k->o.col || k->ty == TY_RUNTIME)
		put_e(b, &k->o);
	else
		put_lhs(b, &k->o, k->ty, true);
}

static bool is_ws(char ch) { return ch == ' ' || ch == '\t'; }

static bool same_key(const key *x, const key *y)
{
	if (x->score || y->score)
		return x->score == y->score;
	if (x->o.col || y->o.col)
		return x->o.col && y->o.col && !strcmp(x->o.col, y->o.col);
	return !strcmp(x->o.path, y->o.path);
}

static int order_item(cc *c, const char *s, size_t len, bool allow_score, bool *dir_given,
		      order *o)
{
	char qb[QUOTE_MAX], qk[QUOTE_MAX];
	size_t a = 0, e;
	while (a < len && is_ws(s[a]))
		a++;
	while (len > a && is_ws(s[len - 1]))
		len--;
	char *item = strndup(s + a, len - a);
	if (!item) {
		fail_errno(c, -ENOMEM, "query");
		return c->rc;
	}
	for (e = 0; item[e] && !is_ws(item[e]); e++)
		;
	const char *dir = item + e;
	while (is_ws(*dir))
		dir++;
	item[e] = '\0';
	key *k = &o->k[o->n];
	if (!item[0]) {
		fail(c, "empty key in order_by");
	} else if (o->n == (allow_score ? 1u : QUERY_MAX_ORDER_KEYS)) {
		fail(c, "order_by has more than %d key%s", allow_score ? 1 : QUERY_MAX_ORDER_KEYS,
		     allow_score ? "" : "s");
	} else if (*dir && strcasecmp(dir, "asc") && strcasecmp(dir, "desc")) {
		fail(c, "order_by: expected asc or desc after '%s', found '%s'", quote(item, qk),
		     quote(dir, qb));
	} else if (!key_parse(c, item, allow_score, k)) {
		k->o.text = NULL; /* item is freed below */
		*dir_given = *dir;
		o->desc[o->n] = *dir && !strcasecmp(dir, "desc");
		if (k->ty == TY_MESSAGE || k->ty == TY_REPEATED || k->ty == TY_MAP)
			fail(c, "cannot order by '%s' (%s)", quote(item, qb), ty_names[k->ty]);
		for (unsigned i = 0; i < o->n && !c->rc; i++)
			if (same_key(&o->k[i], k))
				fail(c, "order_by names '%s' twice", quote(item, qb));
		o->n++;
	}
	free(item);
	return c->rc;
}

static int order_parse(cc *c, const char *s, bool allow_score, bool *dir_given, order *o)
{
	o->n = 0;
	*dir_given = false;
	size_t i = 0;
	while (s && is_ws(s[i]))
		i++;
	if (!s || !s[i])
		return 0;
	for (;;) {
		const char *comma = strchr(s, ',');
		size_t n = comma ? (size_t)(comma - s) : strlen(s);
		if (order_item(c, s, n, allow_score, dir_given, o))
			return c->rc;
		if (!comma)
			return 0;
		s = comma + 1;
	}
}

static void default_key(key *k, const char *col, bool score)
{
	memset(&k->o, 0, offsetof(opnd, p));
	k->o.col = score ? NULL : col;
	k->o.text = col;
	k->ty = score ? TY_NUMBER : TY_MICROS;
	k->score = score;
}

static void put_order_by(const cc *c, sb *b, const order *o)
{
	sb_add(b, " ORDER BY ");
	for (unsigned i = 0; i < o->n; i++) {
		put_key(c, b, &o->k[i]);
		sb_add(b, o->desc[i] ? " DESC, " : " ASC, ");
	}
	sb_add(b, o->desc[o->n - 1] ? "rid DESC" : "rid ASC");
}

/* ---- page tokens ---- */

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static char *b64_encode(const uint8_t *in, size_t n)
{
	char *out = malloc(4 * ((n + 2) / 3) + 1), *o = out;
	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < n)
			v |= in[i + 2];
		*o++ = b64url[v >> 18];
		*o++ = b64url[(v >> 12) & 63];
		if (i + 1 < n)
			*o++ = b64url[(v >> 6) & 63];
		if (i + 2 < n)
			*o++ = b64url[v & 63];
	}
	*o = '\0';
	return out;
}

static int b64_val(char ch)
{
	const char *p = ch ? strchr(b64url, ch) : NULL;
	return p ? (int)(p - b64url) : -1;
}

/* Strict: alphabet only, no padding, no leftover bits set (one spelling per token). */
static uint8_t *b64_decode(const char *s, size_t len, size_t *n)
{
	if (len % 4 == 1)
		return NULL;
	uint8_t *out = malloc(len * 3 / 4 + 1);
	if (!out)
		return NULL;
	size_t o = 0;
	uint32_t acc = 0;
	int bits = 0;
	for (size_t i = 0; i < len; i++) {
		int v = b64_val(s[i]);
		if (v < 0) {
			free(out);
			return NULL;
		}
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (uint8_t)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	if (acc) {
		free(out);
		return NULL;
	}
	*n = o;
	return out;
}

static void put_be64(sb *b, uint64_t v)
{
	uint8_t t[8];
	for (int i = 0; i < 8; i++)
		t[i] = (uint8_t)(v >> (56 - 8 * i));
	sb_put(b, t, 8);
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
	sb b = {0};
	sb_put(&b, payload, n);
	put_be64(&b, siphash(key, payload, n));
	*token = b.oom ? NULL : b64_encode((const uint8_t *)b.p, b.len);
	free(b.p);
	return *token ? 0 : -ENOMEM;
}

uint64_t query_hash(const void *data, size_t n) { return siphash(NULL, data, n); }

static void hash_binds(sb *h, const query *q)
{
	for (size_t i = 0; i < q->nbinds; i++) {
		const query_bindval *v = &q->binds[i];
		uint8_t t = (uint8_t)v->type;
		sb_put(h, &t, 1);
		if (v->type == QUERY_BIND_INT)
			put_be64(h, (uint64_t)v->u.i);
		else if (v->type == QUERY_BIND_REAL)
			sb_put(h, &v->u.d, sizeof v->u.d);
		else if (v->type == QUERY_BIND_TEXT) {
			put_be64(h, v->u.text.len);
			sb_put(h, v->u.text.p, v->u.text.len);
		}
	}
}

int query_token_open(const uint8_t *key, const char *token, size_t max_chars, uint8_t **payload,
		     size_t *n, const char **why)
{
	size_t len = strlen(token);
	*payload = NULL;
	if (len > max_chars) {
		*why = "page_token is too long";
		return -EINVAL;
	}
	uint8_t *t = b64_decode(token, len, n);
	if (!t) {
		*why = "page_token is not a token this node issued (bad encoding)";
		return -EINVAL;
	}
	if (*n < 8 || siphash(key, t, *n - 8) != get_be64(t + *n - 8)) {
		free(t);
		*why = "page_token is corrupt or was issued elsewhere";
		return -EINVAL;
	}
	*n -= 8;
	*payload = t;
	return 0;
}

/* Decodes and checks a token, then appends the keyset condition "after this row" to w. */
static void emit_after(cc *c, const char *token, const order *o, sb *w)
{
	const query *q = c->q;
	size_t n = 0;
	uint8_t *t;
	const char *why;
	if (query_token_open(q->key, token, TOKEN_MAX_CHARS, &t, &n, &why)) {
		fail(c, "%s", why);
		return;
	}
	query_bindval vals[QUERY_MAX_ORDER_KEYS];
	int params[QUERY_MAX_ORDER_KEYS];
	size_t at = TOKEN_HEADER;
	unsigned i;
	if (n < TOKEN_HEADER + 8 || t[0] != TOKEN_VERSION) {
		fail(c, "page_token is not a List token of this node (bad version)");
		goto out;
	}
	if (get_be64(t + 9) != q->scope_hash) {
		fail(c, "page_token belongs to another collection (or to one of this name deleted since)");
		goto out;
	}
	if (get_be64(t + 1) != q->qhash) {
		fail(c, "page_token belongs to another query (filter or order_by changed)");
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
				vals[i] = (query_bindval){.type = QUERY_BIND_INT, .u.i = (int64_t)u};
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
	if (n - at != 8)
		goto bad;
	int prid = bind_int(c, (int64_t)get_be64(t + at));
	for (i = 0; i < o->n; i++)
		params[i] = vals[i].type == QUERY_BIND_NULL ? 0 : bind_add(c, vals[i]);
	/* (k0 > v0) OR (k0 IS v0 AND k1 > v1) OR ... OR (all equal AND rid > r), where a
	 * missing key (NULL) sorts first ascending and last descending. */
	sb_add(w, "(");
	for (unsigned j = 0, first = 1; j <= o->n; j++) {
		bool desc = o->desc[j < o->n ? j : o->n - 1];
		if (j < o->n && desc && !params[j])
			continue; /* nothing sorts after NULL descending */
		sb_add(w, first ? "" : " OR ");
		first = 0;
		sb_add(w, "(");
		for (i = 0; i < j; i++) {
			put_key(c, w, &o->k[i]);
			if (params[i]) {
				sb_add(w, " IS ");
				sb_param(w, params[i]);
			} else {
				sb_add(w, " IS NULL");
			}
			sb_add(w, " AND ");
		}
		if (j == o->n) {
			sb_add(w, desc ? "rid < " : "rid > ");
			sb_param(w, prid);
		} else if (!params[j]) {
			put_key(c, w, &o->k[j]);
			sb_add(w, " IS NOT NULL");
		} else {
			sb_add(w, "(");
			put_key(c, w, &o->k[j]);
			sb_add(w, desc ? " < " : " > ");
			sb_param(w, params[j]);
			if (desc) {
				sb_add(w, " OR ");
				put_key(c, w, &o->k[j]);
				sb_add(w, " IS NULL");
			}
			sb_add(w, ")");
		}
		sb_add(w, ")");
	}
	sb_add(w, ")");
	goto out;
bad:
	fail(c, "page_token is malformed");
out:
	free(t);
}

int query_next_token(const query *q, sqlite3_stmt *st, char **token)
{
	sb b = {0};
	uint8_t ver = TOKEN_VERSION, nkeys = (uint8_t)q->nkeys;
	int rc = 0;
	*token = NULL;
	if (!q->list)
		return -EINVAL;
	sb_put(&b, &ver, 1);
	put_be64(&b, q->qhash);
	put_be64(&b, q->scope_hash);
	sb_put(&b, &nkeys, 1);
	for (unsigned i = 0; i < q->nkeys && !rc; i++) {
		int col = QUERY_COL_KEYS + (int)i;
		uint8_t tag;
		switch (sqlite3_column_type(st, col)) {
		case SQLITE_NULL:
			tag = TAG_NULL;
			sb_put(&b, &tag, 1);
			break;
		case SQLITE_INTEGER:
			tag = TAG_INT;
			sb_put(&b, &tag, 1);
			put_be64(&b, (uint64_t)sqlite3_column_int64(st, col));
			break;
		case SQLITE_FLOAT: {
			double d = sqlite3_column_double(st, col);
			uint64_t u;
			memcpy(&u, &d, 8);
			tag = TAG_REAL;
			sb_put(&b, &tag, 1);
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
				sb_put(&b, h, 5);
				sb_put(&b, s, l);
			}
			break;
		}
		default:
			rc = -EINVAL;
		}
	}
	put_be64(&b, (uint64_t)sqlite3_column_int64(st, QUERY_COL_RID));
	if (!rc)
		rc = b.oom ? -ENOMEM : query_token_seal(q->key, (uint8_t *)b.p, b.len, token);
	free(b.p);
	return rc;
}

/* ---- compiling ---- */

static int cc_init(cc *c, const query_schema *s, query_err *err)
{
	memset(c, 0, sizeof *c);
	c->s = s;
	c->err = err;
	if (err)
		err->msg[0] = '\0';
	c->q = calloc(1, sizeof *c->q);
	if (s->nindexed)
		c->indexed = calloc(s->nindexed, sizeof *c->indexed);
	if (!c->q || (s->nindexed && !c->indexed)) {
		fail_errno(c, -ENOMEM, "query");
		return c->rc;
	}
	if (s->token_key)
		memcpy(c->q->key, s->token_key, 16);
	if (s->scope)
		c->q->scope_hash = siphash(NULL, (const uint8_t *)s->scope, strlen(s->scope));
	for (size_t i = 0; i < s->nindexed; i++) {
		query_path p;
		const char *why;
		/* An entry that is not a path cannot have an index: never matches. */
		if (s->indexed[i] && !path_parse(s->indexed[i], strlen(s->indexed[i]), &p, &why))
			path_render(&p, c->indexed[c->nindexed++]);
	}
	return 0;
}

static void cc_done(cc *c)
{
	for (size_t i = 0; i < c->nleaves; i++)
		free(c->leaves[i].path);
	free(c->leaves);
	free(c->indexed);
	free(c->w.p);
}

static void put_from_where(const cc *c, sb *b, const char *cond)
{
	sb_add(b, c->fts ? " FROM records JOIN records_fts ON records_fts.rowid = records.rid"
			 : " FROM records");
	if (cond && *cond) {
		sb_add(b, " WHERE ");
		sb_add(b, cond);
	}
}

/* The query takes both statements, or fails for want of memory and frees them. */
static void set_statements(cc *c, sb *page, sb *count, bool oom)
{
	if (oom || page->oom || count->oom) {
		fail_errno(c, -ENOMEM, "query");
		free(page->p);
		free(count->p);
		return;
	}
	c->q->sql = page->p;
	c->q->count_sql = count->p;
}

/* Full text alone, ranked by score: FTS5 ranks and cuts the page by itself, and only the
 * rows kept are joined with `records` (whose data the general form would carry through
 * the sort of every match); the count needs no join at all. */
static void finish_fts_alone(cc *c, bool desc, int plimit, int poffset)
{
	sb page = {0}, count = {0};
	sb_add(&page, "SELECT rid, id, data, labels, created_at, updated_at, f.score AS score"
		      " FROM (SELECT rowid, -rank AS score FROM records_fts WHERE records_fts MATCH ");
	sb_param(&page, c->fts_param);
	/* The order of the general form: score, then rid in the same direction. */
	sb_add(&page, desc ? " ORDER BY rank ASC, rowid DESC LIMIT " : " ORDER BY rank DESC, rowid ASC LIMIT ");
	sb_param(&page, plimit);
	sb_add(&page, " OFFSET ");
	sb_param(&page, poffset);
	sb_add(&page, desc ? ") AS f JOIN records ON records.rid = f.rowid ORDER BY f.score DESC, rid DESC"
			   : ") AS f JOIN records ON records.rid = f.rowid ORDER BY f.score ASC, rid ASC");
	sb_add(&count, "SELECT count(*) FROM records_fts WHERE records_fts MATCH ");
	sb_param(&count, c->fts_param);
	set_statements(c, &page, &count, false);
}

/* Writes both statements. after: the keyset condition (List with a token), or NULL. */
static void finish(cc *c, const order *o, bool keys, const char *after, int plimit,
		   int poffset)
{
	sb page = {0}, count = {0}, where = {0};
	sb_add(&where, c->w.p ? c->w.p : "");
	if (after) {
		sb_add(&where, where.len ? " AND " : "");
		sb_add(&where, after);
	}
	sb_add(&page, "SELECT rid, id, data, labels, created_at, updated_at, ");
	sb_add(&page, c->fts ? "-bm25(records_fts)" : "0.0");
	sb_add(&page, " AS score");
	for (unsigned i = 0; keys && i < o->n; i++) {
		sb_add(&page, ", ");
		put_key(c, &page, &o->k[i]);
	}
	put_from_where(c, &page, where.p);
	put_order_by(c, &page, o);
	sb_add(&page, " LIMIT ");
	sb_param(&page, plimit);
	if (poffset) {
		sb_add(&page, " OFFSET ");
		sb_param(&page, poffset);
	}
	sb_add(&count, "SELECT count(*)");
	put_from_where(c, &count, c->w.p);
	free(where.p);
	set_statements(c, &page, &count, where.oom || c->w.oom);
}

static int cc_end(cc *c, query **out)
{
	int rc = c->rc;
	cc_done(c);
	if (rc) {
		query_free(c->q);
		return rc;
	}
	*out = c->q;
	return 0;
}

int query_compile_list(const query_schema *s, const query_list_params *p, query **out,
		       query_err *err)
{
	cc c;
	order o;
	bool dir_given;
	*out = NULL;
	if (cc_init(&c, s, err))
		return cc_end(&c, out);
	c.q->list = true;
	if (p->page_size < 0 || p->page_size > QUERY_MAX_PAGE) {
		fail(&c, "page_size must be between 0 (default %d) and %d, not %d",
		     QUERY_DEFAULT_PAGE, QUERY_MAX_PAGE, (int)p->page_size);
		return cc_end(&c, out);
	}
	c.q->page_size = p->page_size ? p->page_size : QUERY_DEFAULT_PAGE;
	if (p->filter && p->filter->type != QUERY_STRUCT)
		fail(&c, "filter must be a Struct");
	else if (p->filter)
		flatten(&c, NULL, p->filter, false, 0);
	emit_leaves(&c);
	if (!c.rc && !order_parse(&c, p->order_by, false, &dir_given, &o) && !o.n) {
		default_key(&o.k[0], "created_at", false);
		o.desc[0] = false;
		o.n = 1;
	}
	if (c.w.oom)
		fail_errno(&c, -ENOMEM, "query");
	if (c.rc)
		return cc_end(&c, out);
	c.q->nkeys = o.n;

	/* The query's identity: conditions, order and every value bound so far. */
	sb h = {0}, ob = {0};
	put_order_by(&c, &ob, &o);
	sb_add(&h, c.w.p ? c.w.p : "");
	sb_put(&h, "", 1);
	sb_add(&h, ob.p ? ob.p : "");
	sb_put(&h, "", 1);
	hash_binds(&h, c.q);
	if (h.oom || ob.oom)
		fail_errno(&c, -ENOMEM, "query");
	else
		c.q->qhash = siphash(NULL, (const uint8_t *)h.p, h.len);
	free(h.p);
	free(ob.p);

	sb after = {0};
	if (!c.rc && p->page_token && *p->page_token)
		emit_after(&c, p->page_token, &o, &after);
	if (after.oom)
		fail_errno(&c, -ENOMEM, "query");
	int plimit = bind_int(&c, (int64_t)c.q->page_size + 1);
	if (!c.rc)
		finish(&c, &o, true, after.p, plimit, 0);
	free(after.p);
	return cc_end(&c, out);
}

int query_compile_search(const query_schema *s, const query_search_params *p, query **out,
			 query_err *err)
{
	cc c;
	order o;
	bool dir_given = false;
	const char *text = p->full_text && *p->full_text ? p->full_text : NULL;
	*out = NULL;
	if (cc_init(&c, s, err))
		return cc_end(&c, out);
	if (p->limit < 0 || p->limit > QUERY_MAX_PAGE) {
		fail(&c, "limit must be between 0 (default %d) and %d, not %d", QUERY_DEFAULT_PAGE,
		     QUERY_MAX_PAGE, (int)p->limit);
		return cc_end(&c, out);
	}
	if (p->offset < 0 || p->offset > QUERY_MAX_OFFSET) {
		fail(&c, "offset must be between 0 and %d, not %d", QUERY_MAX_OFFSET,
		     (int)p->offset);
		return cc_end(&c, out);
	}
	c.q->page_size = p->limit ? p->limit : QUERY_DEFAULT_PAGE;
	if (p->query && p->query->type != QUERY_STRUCT) {
		fail(&c, "query must be a Struct");
		return cc_end(&c, out);
	}
	/* SearchCollections' "full_text" key; the other keys are filters. */
	query_value rest = {.type = QUERY_STRUCT};
	query_member *members = NULL;
	if (p->query) {
		size_t n = p->query->u.object.n;
		members = calloc(n ? n : 1, sizeof *members);
		if (!members) {
			fail_errno(&c, -ENOMEM, "query");
			return cc_end(&c, out);
		}
		for (size_t i = 0; i < n && !c.rc; i++) {
			const query_member *m = &p->query->u.object.members[i];
			if (!m->key || strcmp(m->key, "full_text")) {
				members[rest.u.object.n++] = *m;
			} else if (!m->value || m->value->type != QUERY_STRING) {
				fail(&c, "query: full_text must be a string");
			} else if (text) {
				fail(&c, "full_text given twice");
			} else {
				text = *m->value->u.string ? m->value->u.string : NULL;
			}
		}
		rest.u.object.members = members;
	}
	if (!c.rc && text)
		emit_fts(&c, text);
	for (size_t i = 0; i < p->nfilters && !c.rc; i++) {
		if (!p->filters[i].path) {
			fail(&c, "filter without a key");
			break;
		}
		leaf_add(&c, NULL, p->filters[i].path, p->filters[i].op, &p->filters[i].value);
	}
	if (!c.rc && rest.u.object.n)
		flatten(&c, NULL, &rest, true, 0);
	emit_leaves(&c);
	for (size_t i = 0; i < p->nlabels && !c.rc; i++)
		emit_label(&c, &p->labels[i]);
	free(members);
	if (!c.rc && !order_parse(&c, p->order_by, true, &dir_given, &o) && !o.n) {
		default_key(&o.k[0], c.fts ? "@score" : "created_at", c.fts);
		o.n = 1;
	}
	if (!dir_given)
		o.desc[0] = !p->ascending;
	int plimit = bind_int(&c, c.q->page_size);
	int poffset = bind_int(&c, p->offset);
	if (!c.rc && c.fts && c.w.len == c.fts_wlen && o.n == 1 && o.k[0].score)
		finish_fts_alone(&c, o.desc[0], plimit, poffset);
	else if (!c.rc)
		finish(&c, &o, false, NULL, plimit, poffset);
	return cc_end(&c, out);
}

void query_free(query *q)
{
	if (!q)
		return;
	for (size_t i = 0; i < q->nbinds; i++)
		if (q->binds[i].type == QUERY_BIND_TEXT)
			free((char *)q->binds[i].u.text.p);
	free(q->binds);
	free(q->sql);
	free(q->count_sql);
	free(q);
}

const char *query_sql(const query *q) { return q->sql; }

const char *query_count_sql(const query *q) { return q->count_sql; }

const query_bindval *query_binds(const query *q, size_t *n)
{
	*n = q->nbinds;
	return q->binds;
}

int32_t query_page_size(const query *q) { return q->page_size; }

int query_bind(sqlite3_stmt *st, const query *q)
{
	int n = sqlite3_bind_parameter_count(st), rc = SQLITE_OK;
	if ((size_t)n > q->nbinds)
		return -EINVAL;
	for (int i = 0; i < n && rc == SQLITE_OK; i++) {
		const query_bindval *v = &q->binds[i];
		switch (v->type) {
		case QUERY_BIND_NULL:
			rc = sqlite3_bind_null(st, i + 1);
			break;
		case QUERY_BIND_INT:
			rc = sqlite3_bind_int64(st, i + 1, v->u.i);
			break;
		case QUERY_BIND_REAL:
			rc = sqlite3_bind_double(st, i + 1, v->u.d);
			break;
		case QUERY_BIND_TEXT:
			rc = sqlite3_bind_text64(st, i + 1, v->u.text.p, v->u.text.len,
						 SQLITE_TRANSIENT, SQLITE_UTF8);
			break;
		}
	}
	return rc == SQLITE_OK ? 0 : rc == SQLITE_NOMEM ? -ENOMEM : rc == SQLITE_RANGE ? -EINVAL : -EIO;
}

int query_index_field(const char *field, char expr[QUERY_INDEX_EXPR_MAX],
		      char name[QUERY_INDEX_NAME_MAX], query_err *err)
{
	cc c = {.err = err};
	char qb[QUOTE_MAX];
	const char *why;
	opnd o = {0};
	sb b = {0};
	if (err)
		err->msg[0] = '\0';
	if (!field || !*field)
		return fail(&c, "indexed field is empty");
	if (field[0] == '@')
		return fail(&c, "indexed field '%s' must be a message field path, not a record column",
			    quote(field, qb));
	if (path_parse(field, strlen(field), &o.p, &why))
		return fail(&c, "invalid indexed field '%s': %s", quote(field, qb), why);
	size_t n = path_render(&o.p, o.path);
	put_e(&b, &o);
	if (b.oom) {
		free(b.p);
		return -ENOMEM;
	}
	memcpy(expr, b.p, b.len + 1);
	free(b.p);
	snprintf(name, QUERY_INDEX_NAME_MAX, "ix_%016llx",
		 (unsigned long long)siphash(NULL, (const uint8_t *)o.path, n));
	return 0;
}
