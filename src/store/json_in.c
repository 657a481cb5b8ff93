/* Proto3 JSON -> protobuf bytes (json_to_proto).
 *
 * The text is parsed whole first (jdoc), so that an object's members can be taken in field
 * number order and an Any's "@type" found wherever it stands. Nested messages are written
 * after a one-byte length placeholder that grows in place when the body turns out longer
 * than 127 bytes. */
#include "store/json.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/arena.h"
#include "base/base64.h"
#include "base/mem.h"
#include "store/jdoc.h"
#include "store/json_int.h"
#include "store/pbwire.h"

typedef struct ictx {
	tp_pool *tp;
	const char *ns;
	jdoc doc;
	buf *out;
	arena scratch;
	json_err e;
	_Alignas(max_align_t) unsigned char scratch_inline[4096];
} ictx;

static int fail(ictx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(ictx *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = json_err_vfail(&c->e, fmt, ap);
	va_end(ap);
	return rc;
}

static int nomem(ictx *c) { return json_err_nomem(&c->e); }

static const jdoc_node *node(const ictx *c, uint32_t i) { return &c->doc.nodes[i]; }

static const char *msg_name(const tp_message *m) { return tp_message_get(m)->full_name; }

static const char *type_word(const jdoc_node *j)
{
	static const char *words[] = {"null",	  "false",    "true",	  "a number",
				      "a string", "an array", "an object"};
	return words[j->type];
}

/* The bytes of a string node, unescaped (pointing into the text when it has no escapes). */
static const char *str_of(ictx *c, const jdoc_node *j)
{
	if (!j->esc)
		return c->doc.src + j->off;
	char *s = arena_alloc(&c->scratch, j->ulen + 1);
	if (s) {
		jdoc_unescape(&c->doc, j, s);
		s[j->ulen] = '\0';
	}
	return s;
}

/* ---- writing ---- */

static void put_varint(buf *b, uint64_t v)
{
	if (!buf_reserve(b, 10))
		b->len += pb_put_varint(b->data + b->len, v);
}

static void put_tag(buf *b, uint32_t num, int wt)
{
	put_varint(b, (uint64_t)num << 3 | (uint64_t)wt);
}

static void put_raw(buf *b, uint8_t wt, uint64_t v)
{
	switch (wt) {
	case PB_FIXED64:
		if (!buf_reserve(b, 8)) {
			pb_put_le64(b->data + b->len, v);
			b->len += 8;
		}
		break;
	case PB_FIXED32:
		if (!buf_reserve(b, 4)) {
			pb_put_le32(b->data + b->len, (uint32_t)v);
			b->len += 4;
		}
		break;
	default:
		put_varint(b, v);
	}
}

static size_t begin_len(buf *b)
{
	size_t at = b->len;
	buf_putc(b, 0);
	return at;
}

static void end_len(buf *b, size_t at)
{
	if (b->failed)
		return;
	size_t n = b->len - at - 1;
	size_t k = pb_varint_size(n);
	if (k > 1) {
		if (buf_reserve(b, k - 1))
			return;
		memmove(b->data + at + k, b->data + at + 1, n);
		b->len += k - 1;
	}
	pb_put_varint(b->data + at, n);
}

/* ---- numbers ---- */

/* Whether s[0..n) is a JSON number; frac tells a fraction or exponent. */
static bool number_syntax(const char *s, size_t n, bool *frac)
{
	size_t i = 0;
	*frac = false;
	if (i < n && s[i] == '-')
		i++;
	if (i < n && s[i] == '0')
		i++;
	else if (i < n && s[i] >= '1' && s[i] <= '9')
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
	else
		return false;
	if (i < n && s[i] == '.') {
		*frac = true;
		size_t d = ++i;
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
		if (i == d)
			return false;
	}
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		*frac = true;
		if (++i < n && (s[i] == '+' || s[i] == '-'))
			i++;
		size_t d = i;
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
		if (i == d)
			return false;
	}
	return i == n;
}

/* The text of a number, or of a string holding one, NUL-terminated. */
static int numeric_text(ictx *c, const tp_field *f, const jdoc_node *j, const char **s, size_t *n,
			bool *frac)
{
	if (j->type == JDOC_NUMBER) {
		*n = j->len;
		*frac = j->esc;
	} else if (j->type == JDOC_STRING) {
		*n = j->ulen;
	} else {
		return fail(c, "%s.%s: expected a number, got %s", msg_name(f->parent), f->name,
			    type_word(j));
	}
	char *t = arena_alloc(&c->scratch, *n + 1);
	if (!t)
		return nomem(c);
	if (j->type == JDOC_STRING)
		jdoc_unescape(&c->doc, j, t);
	else
		memcpy(t, c->doc.src + j->off, *n);
	t[*n] = '\0';
	*s = t;
	if (j->type == JDOC_STRING && !number_syntax(t, *n, frac))
		return fail(c, "%s.%s: \"%.32s\" is not a number", msg_name(f->parent), f->name, t);
	return 0;
}

/* An integer in [min, max] (signed) or [0, max] (unsigned), as its 64-bit two's complement.
 * A fraction or exponent is accepted when the value is integral. */
static int parse_int(ictx *c, const tp_field *f, const jdoc_node *j, bool is_signed, int64_t min,
		     uint64_t max, uint64_t *out)
{
	arena_mark mark = arena_get_mark(&c->scratch);
	/* Set by numeric_text when it succeeds; initialized for -O3's flow analysis. */
	const char *s = "";
	size_t n = 0;
	bool frac = false;
	int rc = numeric_text(c, f, j, &s, &n, &frac);
	if (rc)
		return rc;
	bool neg = s[0] == '-', range = false;
	uint64_t mag = 0;
	if (!frac) {
		for (size_t i = neg; i < n; i++) {
			unsigned d = (unsigned)(s[i] - '0');
			if (mag > (UINT64_MAX - d) / 10) {
				range = true;
				break;
			}
			mag = mag * 10 + d;
		}
	} else {
		double d = strtod(s, NULL);
		if (!isfinite(d) || d != trunc(d)) {
			arena_release(&c->scratch, mark);
			return fail(c, "%s.%s: %.32s is not an integer", msg_name(f->parent),
				    f->name, s);
		}
		neg = d < 0;
		if (fabs(d) >= 18446744073709551616.0)
			range = true;
		else
			mag = (uint64_t)fabs(d);
	}
	if (!range && neg && mag)
		range = !is_signed || mag - 1 > (uint64_t)(-(min + 1));
	else if (!range && !neg)
		range = mag > max;
	if (range) {
		rc = fail(c, "%s.%s: %.32s is out of range", msg_name(f->parent), f->name, s);
	} else {
		*out = neg ? 0 - mag : mag;
	}
	arena_release(&c->scratch, mark);
	return rc;
}

static int parse_double(ictx *c, const tp_field *f, const jdoc_node *j, bool as_float, double *out)
{
	if (j->type == JDOC_STRING) {
		if (jdoc_string_eq(&c->doc, j, "NaN", 3)) {
			*out = NAN;
			return 0;
		}
		if (jdoc_string_eq(&c->doc, j, "Infinity", 8)) {
			*out = INFINITY;
			return 0;
		}
		if (jdoc_string_eq(&c->doc, j, "-Infinity", 9)) {
			*out = -INFINITY;
			return 0;
		}
	}
	arena_mark mark = arena_get_mark(&c->scratch);
	/* Set by numeric_text when it succeeds; initialized for -O3's flow analysis. */
	const char *s = "";
	size_t n = 0;
	bool frac = false;
	int rc = numeric_text(c, f, j, &s, &n, &frac);
	if (rc)
		return rc;
	double d = strtod(s, NULL);
	/* A float may be given a little past FLT_MAX: what rounds to it is its shortest form. */
	if (isinf(d) || (as_float && isinf((float)d)))
		rc = fail(c, "%s.%s: %.32s is out of range", msg_name(f->parent), f->name, s);
	*out = d;
	arena_release(&c->scratch, mark);
	return rc;
}

static int parse_enum(ictx *c, const tp_field *f, const jdoc_node *j, int32_t *out)
{
	const tp_enum *e = f->enum_type;
	if (j->type == JDOC_STRING) {
		arena_mark mark = arena_get_mark(&c->scratch);
		const char *s = str_of(c, j);
		if (!s)
			return nomem(c);
		bool found = tp_enum_number_of(e, s, j->ulen, out);
		bool frac;
		bool numeric = !found && number_syntax(s, j->ulen, &frac);
		arena_release(&c->scratch, mark);
		if (found)
			return 0;
		if (!numeric)
			return fail(c, "%s.%s: \"%.*s\" is not a value of %s", msg_name(f->parent),
				    f->name, (int)(j->ulen > 64 ? 64 : j->ulen),
				    c->doc.src + j->off, tp_enum_get(e)->full_name);
	}
	uint64_t v;
	int rc = parse_int(c, f, j, true, INT32_MIN, INT32_MAX, &v);
	if (rc)
		return rc;
	*out = (int32_t)(int64_t)v;
	if (f->closed_enum && !tp_enum_name_of(e, *out))
		return fail(c, "%s.%s: %d is not a value of %s", msg_name(f->parent), f->name, *out,
			    tp_enum_get(e)->full_name);
	return 0;
}

/* A scalar (numbers, bool, enum) as its wire value. */
static int parse_scalar(ictx *c, const tp_field *f, const jdoc_node *j, uint64_t *raw)
{
	uint64_t v;
	double d;
	int rc = 0;
	switch (f->type) {
	case TP_DOUBLE:
		if (!(rc = parse_double(c, f, j, false, &d)))
			*raw = pb_double_bits(d);
		return rc;
	case TP_FLOAT:
		if (!(rc = parse_double(c, f, j, true, &d)))
			*raw = pb_float_bits((float)d);
		return rc;
	case TP_INT32:
	case TP_SFIXED32:
	case TP_SINT32:
		if ((rc = parse_int(c, f, j, true, INT32_MIN, INT32_MAX, &v)))
			return rc;
		if (f->type == TP_SINT32)
			*raw = (uint32_t)pb_zigzag((int64_t)v);
		else
			*raw = f->type == TP_SFIXED32 ? (uint32_t)v : v;
		return 0;
	case TP_INT64:
	case TP_SFIXED64:
	case TP_SINT64:
		if ((rc = parse_int(c, f, j, true, INT64_MIN, INT64_MAX, &v)))
			return rc;
		*raw = f->type == TP_SINT64 ? pb_zigzag((int64_t)v) : v;
		return 0;
	case TP_UINT32:
	case TP_FIXED32:
		return parse_int(c, f, j, false, 0, UINT32_MAX, raw);
	case TP_UINT64:
	case TP_FIXED64:
		return parse_int(c, f, j, false, 0, UINT64_MAX, raw);
	case TP_BOOL:
		if (j->type != JDOC_TRUE && j->type != JDOC_FALSE)
			return fail(c, "%s.%s: expected true or false, got %s", msg_name(f->parent),
				    f->name, type_word(j));
		*raw = j->type == JDOC_TRUE;
		return 0;
	case TP_ENUM: {
		int32_t e = 0;
		if (j->type != JDOC_NULL && (rc = parse_enum(c, f, j, &e)))
			return rc;
		*raw = (uint64_t)(int64_t)e;
		return 0;
	}
	}
	return fail(c, "%s.%s: not a scalar", msg_name(f->parent), f->name);
}

static bool scalar_default(const tp_field *f, uint64_t raw)
{
	switch (json_wire_type(f->type)) {
	case PB_FIXED32:
		return (uint32_t)raw == 0;
	default:
		return raw == 0;
	}
}

/* ---- values and messages ---- */

static int enc_message(ictx *c, const tp_message *m, uint32_t j, int depth);

/* A string field with its tag; an empty one only when keep. */
static int put_string(ictx *c, const tp_field *f, const jdoc_node *j, bool keep)
{
	if (j->type != JDOC_STRING)
		return fail(c, "%s.%s: expected a string, got %s", msg_name(f->parent), f->name,
			    type_word(j));
	if (!j->ulen && !keep)
		return 0;
	put_tag(c->out, f->number, PB_LEN);
	put_varint(c->out, j->ulen);
	if (!buf_reserve(c->out, j->ulen)) {
		jdoc_unescape(&c->doc, j, c->out->text + c->out->len);
		c->out->len += j->ulen;
	}
	return 0;
}

static int put_bytes(ictx *c, const tp_field *f, const jdoc_node *j, bool keep)
{
	if (j->type != JDOC_STRING)
		return fail(c, "%s.%s: expected a base64 string, got %s", msg_name(f->parent),
			    f->name, type_word(j));
	arena_mark mark = arena_get_mark(&c->scratch);
	const char *s = str_of(c, j);
	uint8_t *dst = arena_alloc(&c->scratch, base64_decoded_max(j->ulen));
	if (!s || !dst)
		return nomem(c);
	long n = base64_decode(dst, s, j->ulen, BASE64_EITHER);
	int rc = 0;
	if (n < 0) {
		rc = fail(c, "%s.%s: invalid base64", msg_name(f->parent), f->name);
	} else if (n || keep) {
		put_tag(c->out, f->number, PB_LEN);
		put_varint(c->out, (uint64_t)n);
		buf_append(c->out, dst, (size_t)n);
	}
	arena_release(&c->scratch, mark);
	return rc;
}

/* Whether a JSON null stands for a value of f rather than for "not set". */
static bool null_is_value(const tp_field *f)
{
	return (f->type == TP_MESSAGE && tp_message_get(f->message)->wkt == TP_WKT_VALUE) ||
	       (f->type == TP_ENUM && tp_enum_get(f->enum_type)->null_value);
}

/* One value of f with its tag. keep: write it even when it is the default. */
static int enc_single(ictx *c, const tp_field *f, uint32_t ji, int depth, bool keep)
{
	const jdoc_node *j = node(c, ji);
	buf *b = c->out;
	int rc = 0;
	switch (f->type) {
	case TP_MESSAGE: {
		put_tag(b, f->number, PB_LEN);
		size_t at = begin_len(b);
		if ((rc = enc_message(c, f->message, ji, depth)))
			return rc;
		end_len(b, at);
		return 0;
	}
	case TP_GROUP:
		put_tag(b, f->number, PB_SGROUP);
		if ((rc = enc_message(c, f->message, ji, depth)))
			return rc;
		put_tag(b, f->number, PB_EGROUP);
		return 0;
	case TP_STRING:
		return put_string(c, f, j, keep);
	case TP_BYTES:
		return put_bytes(c, f, j, keep);
	default: {
		uint64_t raw;
		if ((rc = parse_scalar(c, f, j, &raw)))
			return rc;
		if (!keep && scalar_default(f, raw))
			return 0;
		put_tag(b, f->number, json_wire_type(f->type));
		put_raw(b, json_wire_type(f->type), raw);
		return 0;
	}
	}
}

/* A map field: a JSON object whose members become entries {key = 1, value = 2}. */
typedef struct mkey {
	const char *s;
	size_t n;
	uint64_t v;
} mkey;

static int cmp_mkey(const void *a, const void *b)
{
	const mkey *x = a, *y = b;
	if (x->s) {
		size_t n = x->n < y->n ? x->n : y->n;
		int r = n ? memcmp(x->s, y->s, n) : 0;
		if (r)
			return r;
		return (x->n > y->n) - (x->n < y->n);
	}
	return (x->v > y->v) - (x->v < y->v);
}

static int map_key(ictx *c, const tp_field *kf, const jdoc_node *k, mkey *key)
{
	const char *s = str_of(c, k);
	if (!s)
		return nomem(c);
	*key = (mkey){0};
	int shown = (int)(k->ulen > 32 ? 32 : k->ulen);
	if (kf->type == TP_STRING) {
		key->s = s;
		key->n = k->ulen;
		return 0;
	}
	if (kf->type == TP_BOOL) {
		if (k->ulen == 4 && !memcmp(s, "true", 4))
			key->v = 1;
		else if (!(k->ulen == 5 && !memcmp(s, "false", 5)))
			return fail(c, "%s: map key \"%.*s\" is not true or false",
				    msg_name(kf->parent), shown, s);
		return 0;
	}
	bool frac;
	if (!number_syntax(s, k->ulen, &frac) || frac)
		return fail(c, "%s: map key \"%.*s\" is not an integer", msg_name(kf->parent),
			    shown, s);
	/* The key is a string node; parse_int reads its digits. */
	return parse_scalar(c, kf, k, &key->v);
}

static int enc_map(ictx *c, const tp_field *f, uint32_t ji, int depth)
{
	const jdoc_node *j = node(c, ji);
	if (j->type != JDOC_OBJECT)
		return fail(c, "%s.%s: expected an object, got %s", msg_name(f->parent), f->name,
			    type_word(j));
	if (depth + 1 > JSON_MAX_DEPTH)
		return fail(c, "nesting deeper than %d", JSON_MAX_DEPTH);
	const tp_message_info *em = tp_message_get(f->message);
	const tp_field *kf = &em->fields[0], *vf = &em->fields[1];
	arena_mark mark = arena_get_mark(&c->scratch);
	mkey *keys = arena_alloc(&c->scratch, (j->len + 1) * sizeof *keys);
	if (!keys)
		return nomem(c);
	buf *b = c->out;
	uint32_t k = ji + 1;
	for (uint32_t i = 0; i < j->len; i++) {
		uint32_t v = k + 1;
		int rc = map_key(c, kf, node(c, k), &keys[i]);
		if (rc)
			return rc;
		if (node(c, v)->type == JDOC_NULL && !null_is_value(vf))
			return fail(c, "%s.%s: null map value", msg_name(f->parent), f->name);
		put_tag(b, f->number, PB_LEN);
		size_t at = begin_len(b);
		put_tag(b, 1, json_wire_type(kf->type));
		if (kf->type == TP_STRING) {
			put_varint(b, keys[i].n);
			buf_append(b, keys[i].s, keys[i].n);
		} else {
			put_raw(b, json_wire_type(kf->type), keys[i].v);
		}
		if ((rc = enc_single(c, vf, v, depth + 2, true)))
			return rc;
		end_len(b, at);
		k = node(c, v)->end;
	}
	qsort(keys, j->len, sizeof *keys, cmp_mkey);
	for (uint32_t i = 1; i < j->len; i++)
		if (!cmp_mkey(&keys[i - 1], &keys[i]))
			return fail(c, "%s.%s: duplicate map key", msg_name(f->parent), f->name);
	arena_release(&c->scratch, mark);
	return 0;
}

/* The value of field f from node ji (not null, unless null_is_value). */
static int enc_field(ictx *c, const tp_field *f, uint32_t ji, int depth)
{
	if (f->is_map)
		return enc_map(c, f, ji, depth);
	if (!f->repeated)
		return enc_single(c, f, ji, depth + 1, f->has_presence);
	const jdoc_node *j = node(c, ji);
	if (j->type != JDOC_ARRAY)
		return fail(c, "%s.%s: expected an array, got %s", msg_name(f->parent), f->name,
			    type_word(j));
	buf *b = c->out;
	size_t undo = b->len, at = 0;
	if (f->packed) {
		put_tag(b, f->number, PB_LEN);
		at = begin_len(b);
	}
	for (uint32_t e = ji + 1; e < j->end; e = node(c, e)->end) {
		int rc;
		if (node(c, e)->type == JDOC_NULL && !null_is_value(f))
			return fail(c, "%s.%s: null in a repeated field", msg_name(f->parent),
				    f->name);
		if (f->packed) {
			uint64_t raw;
			if ((rc = parse_scalar(c, f, node(c, e), &raw)))
				return rc;
			put_raw(b, json_wire_type(f->type), raw);
		} else if ((rc = enc_single(c, f, e, depth + 1, true))) {
			return rc;
		}
	}
	if (f->packed) {
		if (j->len)
			end_len(b, at);
		else
			b->len = undo;
	}
	return 0;
}

typedef struct member {
	uint32_t field; /* index in the message's fields */
	uint32_t value; /* node */
} member;

static int cmp_member(const void *a, const void *b)
{
	uint32_t x = ((const member *)a)->field, y = ((const member *)b)->field;
	return (x > y) - (x < y);
}

/* The members of object ji as fields of m, in number order. skip_type: leave out "@type"
 * (the fields of a message inside an Any). */
static int enc_members(ictx *c, const tp_message *m, uint32_t ji, int depth, bool skip_type)
{
	const tp_message_info *mi = tp_message_get(m);
	const jdoc_node *j = node(c, ji);
	arena_mark mark = arena_get_mark(&c->scratch);
	member *ms = arena_alloc(&c->scratch, (j->len + 1) * sizeof *ms);
	uint8_t *oneof_set = arena_alloc(&c->scratch, mi->n_oneofs + 1);
	if (!ms || !oneof_set)
		return nomem(c);
	memset(oneof_set, 0, mi->n_oneofs + 1);
	size_t n = 0;
	bool sorted = true;
	for (uint32_t k = ji + 1; k < j->end; k = node(c, k + 1)->end) {
		const jdoc_node *key = node(c, k);
		if (skip_type && jdoc_string_eq(&c->doc, key, "@type", 5))
			continue;
		const char *name = str_of(c, key);
		if (!name)
			return nomem(c);
		const tp_field *f = tp_message_field_by_any_name(m, name, key->ulen);
		if (!f)
			return fail(c, "%s has no field \"%.*s\"", mi->full_name,
				    (int)(key->ulen > 64 ? 64 : key->ulen), name);
		ms[n] = (member){(uint32_t)(f - mi->fields), k + 1};
		sorted &= !n || ms[n].field >= ms[n - 1].field;
		n++;
	}
	if (!sorted)
		qsort(ms, n, sizeof *ms, cmp_member);
	for (size_t i = 0; i < n; i++) {
		const tp_field *f = &mi->fields[ms[i].field];
		if (i && ms[i].field == ms[i - 1].field)
			return fail(c, "%s.%s is given twice", mi->full_name, f->name);
		if (node(c, ms[i].value)->type == JDOC_NULL && !null_is_value(f))
			continue; /* null: not set */
		if (f->oneof >= 0) {
			if (oneof_set[f->oneof])
				return fail(c, "%s: more than one field of oneof %s is set",
					    mi->full_name, mi->oneofs[f->oneof].name);
			oneof_set[f->oneof] = 1;
		}
		int rc = enc_field(c, f, ms[i].value, depth);
		if (rc)
			return rc;
	}
	arena_release(&c->scratch, mark);
	return 0;
}

/* ---- well-known types ---- */

/* How much of an unterminated string of n bytes an error message shows. */
#define SHOWN(n) ((int)((n) > 40 ? 40 : (n)))

static bool digits(const char *s, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

/* Fraction digits after a '.' at s[*i] as nanoseconds (at most 9 digits). */
static bool nanos_of(const char *s, size_t n, size_t *i, int32_t *nanos)
{
	*nanos = 0;
	if (*i >= n || s[*i] != '.')
		return true;
	size_t start = ++*i;
	int32_t scale = 100000000;
	while (*i < n && s[*i] >= '0' && s[*i] <= '9') {
		if (*i - start >= 9)
			return false;
		*nanos += (s[*i] - '0') * scale;
		scale /= 10;
		++*i;
	}
	return *i > start;
}

static void put_seconds_nanos(buf *b, int64_t s, int32_t ns)
{
	if (s) {
		put_tag(b, 1, PB_VARINT);
		put_varint(b, (uint64_t)s);
	}
	if (ns) {
		put_tag(b, 2, PB_VARINT);
		put_varint(b, (uint64_t)(int64_t)ns);
	}
}

static int enc_timestamp(ictx *c, const tp_message *m, const jdoc_node *j)
{
	if (j->type != JDOC_STRING)
		return fail(c, "%s: expected a string, got %s", msg_name(m), type_word(j));
	const char *s = str_of(c, j);
	if (!s)
		return nomem(c);
	size_t n = j->ulen, i = 19;
	int y, mo, d, h, mi, sec, oh = 0, om = 0;
	int32_t nanos;
	static const unsigned char mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	bool ok = n >= 20 && digits(s, 4, &y) && s[4] == '-' && digits(s + 5, 2, &mo) &&
		  s[7] == '-' && digits(s + 8, 2, &d) && s[10] == 'T' && digits(s + 11, 2, &h) &&
		  s[13] == ':' && digits(s + 14, 2, &mi) && s[16] == ':' &&
		  digits(s + 17, 2, &sec) && nanos_of(s, n, &i, &nanos);
	int sign = 0;
	if (ok && i < n && s[i] == 'Z') {
		ok = i + 1 == n;
	} else if (ok && i < n && (s[i] == '+' || s[i] == '-')) {
		sign = s[i] == '+' ? 1 : -1;
		ok = i + 6 == n && digits(s + i + 1, 2, &oh) && s[i + 3] == ':' &&
		     digits(s + i + 4, 2, &om) && oh <= 23 && om <= 59;
	} else {
		ok = false;
	}
	ok = ok && y >= 1 && mo >= 1 && mo <= 12 && d >= 1 && d <= mdays[mo - 1] && h <= 23 &&
	     mi <= 59 && sec <= 59 && !(mo == 2 && d == 29 && (y % 4 || (y % 100 == 0 && y % 400)));
	if (!ok)
		return fail(c, "%s: \"%.*s\" is not an RFC 3339 time", msg_name(m), SHOWN(n), s);
	int64_t secs = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 +
		       sec - sign * (oh * 3600 + om * 60);
	if (secs < -62135596800LL || secs > 253402300799LL)
		return fail(c, "%s: \"%.*s\" is out of range", msg_name(m), SHOWN(n), s);
	put_seconds_nanos(c->out, secs, nanos);
	return 0;
}

static int enc_duration(ictx *c, const tp_message *m, const jdoc_node *j)
{
	if (j->type != JDOC_STRING)
		return fail(c, "%s: expected a string, got %s", msg_name(m), type_word(j));
	const char *s = str_of(c, j);
	if (!s)
		return nomem(c);
	size_t n = j->ulen, i = 0;
	bool neg = n && s[0] == '-';
	i = neg;
	int64_t secs = 0;
	size_t start = i;
	while (i < n && s[i] >= '0' && s[i] <= '9' && i - start < 13)
		secs = secs * 10 + (s[i++] - '0');
	int32_t nanos = 0;
	bool ok = i > start && nanos_of(s, n, &i, &nanos) && i + 1 == n && s[i] == 's' &&
		  secs <= 315576000000LL;
	if (!ok)
		return fail(c, "%s: \"%.*s\" is not a duration", msg_name(m), SHOWN(n), s);
	put_seconds_nanos(c->out, neg ? -secs : secs, neg ? -nanos : nanos);
	return 0;
}

static int enc_field_mask(ictx *c, const tp_message *m, const jdoc_node *j)
{
	if (j->type != JDOC_STRING)
		return fail(c, "%s: expected a string, got %s", msg_name(m), type_word(j));
	arena_mark mark = arena_get_mark(&c->scratch);
	const char *s = str_of(c, j);
	char *path = arena_alloc(&c->scratch, 2 * (size_t)j->ulen + 1);
	if (!s || !path)
		return nomem(c);
	size_t n = j->ulen;
	for (size_t i = 0; n && i <= n;) {
		size_t k = 0;
		for (; i < n && s[i] != ','; i++) {
			if (s[i] == '_')
				return fail(c, "%s: path in \"%.*s\" contains '_'", msg_name(m),
					    SHOWN(n), s);
			if (s[i] >= 'A' && s[i] <= 'Z') {
				path[k++] = '_';
				path[k++] = (char)(s[i] - 'A' + 'a');
			} else {
				path[k++] = s[i];
			}
		}
		put_tag(c->out, 1, PB_LEN);
		put_varint(c->out, k);
		buf_append(c->out, path, k);
		i++;
	}
	arena_release(&c->scratch, mark);
	return 0;
}

static int enc_value(ictx *c, const tp_message *m, uint32_t ji, int depth)
{
	const tp_message_info *mi = tp_message_get(m);
	const jdoc_node *j = node(c, ji);
	buf *b = c->out;
	switch (j->type) {
	case JDOC_NULL:
		put_tag(b, 1, PB_VARINT);
		put_varint(b, 0);
		return 0;
	case JDOC_TRUE:
	case JDOC_FALSE:
		put_tag(b, 4, PB_VARINT);
		put_varint(b, j->type == JDOC_TRUE);
		return 0;
	case JDOC_NUMBER: {
		double d;
		int rc = parse_double(c, &mi->fields[1], j, false, &d);
		if (rc)
			return rc;
		put_tag(b, 2, PB_FIXED64);
		put_raw(b, PB_FIXED64, pb_double_bits(d));
		return 0;
	}
	case JDOC_STRING:
		return enc_single(c, &mi->fields[2], ji, depth + 1, true);
	default:
		return enc_single(c, &mi->fields[j->type == JDOC_OBJECT ? 4 : 5], ji, depth + 1,
				  true);
	}
}

static int enc_any(ictx *c, const tp_message *m, uint32_t ji, int depth)
{
	const jdoc_node *j = node(c, ji);
	if (j->type != JDOC_OBJECT)
		return fail(c, "%s: expected an object, got %s", msg_name(m), type_word(j));
	if (!j->len)
		return 0;
	uint32_t type = 0, value = 0, types = 0;
	for (uint32_t k = ji + 1; k < j->end; k = node(c, k + 1)->end) {
		if (jdoc_string_eq(&c->doc, node(c, k), "@type", 5)) {
			type = k + 1;
			types++;
		} else if (jdoc_string_eq(&c->doc, node(c, k), "value", 5)) {
			value = k + 1;
		}
	}
	if (types > 1)
		return fail(c, "%s: \"@type\" is given twice", msg_name(m));
	if (!type || node(c, type)->type != JDOC_STRING)
		return fail(c, "%s: \"@type\" is missing or not a string", msg_name(m));
	const jdoc_node *t = node(c, type);
	const char *url = str_of(c, t);
	if (!url)
		return nomem(c);
	const tp_message *inner = tp_find_type_url(c->tp, c->ns, url, t->ulen);
	if (!inner)
		return fail(c, "Any type \"%.*s\" is not known",
			    (int)(t->ulen > 128 ? 128 : t->ulen), url);
	buf *b = c->out;
	put_tag(b, 1, PB_LEN);
	put_varint(b, t->ulen);
	buf_append(b, url, t->ulen);
	size_t undo = b->len;
	put_tag(b, 2, PB_LEN);
	size_t at = begin_len(b);
	int rc;
	if (tp_message_get(inner)->wkt != TP_WKT_NONE) {
		if (!value || j->len != 2)
			return fail(c, "%s: a %s needs exactly \"@type\" and \"value\"",
				    msg_name(m), msg_name(inner));
		rc = enc_message(c, inner, value, depth + 1);
	} else if (depth + 1 > JSON_MAX_DEPTH) {
		rc = fail(c, "nesting deeper than %d", JSON_MAX_DEPTH);
	} else {
		rc = enc_members(c, inner, ji, depth + 1, true);
	}
	if (rc)
		return rc;
	if (b->len == at + 1)
		b->len = undo; /* an empty value is left out */
	else
		end_len(b, at);
	return 0;
}

static int enc_message(ictx *c, const tp_message *m, uint32_t ji, int depth)
{
	if (depth > JSON_MAX_DEPTH)
		return fail(c, "nesting deeper than %d", JSON_MAX_DEPTH);
	const tp_message_info *mi = tp_message_get(m);
	const jdoc_node *j = node(c, ji);
	switch (mi->wkt) {
	case TP_WKT_ANY:
		return enc_any(c, m, ji, depth);
	case TP_WKT_TIMESTAMP:
		return enc_timestamp(c, m, j);
	case TP_WKT_DURATION:
		return enc_duration(c, m, j);
	case TP_WKT_FIELD_MASK:
		return enc_field_mask(c, m, j);
	case TP_WKT_VALUE:
		return enc_value(c, m, ji, depth);
	case TP_WKT_STRUCT:
	case TP_WKT_LIST_VALUE:
		return enc_field(c, &mi->fields[0], ji, depth);
	case TP_WKT_WRAPPER:
		return enc_single(c, &mi->fields[0], ji, depth + 1, false);
	default:
		break;
	}
	if (j->type != JDOC_OBJECT)
		return fail(c, "%s: expected an object, got %s", mi->full_name, type_word(j));
	return enc_members(c, m, ji, depth, false);
}

int json_to_proto(tp_pool *tp, const char *ns, const tp_message *m, const char *json, size_t len,
		  buf *out)
{
	ictx cs, *c = &cs;
	c->tp = tp;
	c->ns = ns;
	c->out = out;
	c->e.set = false;
	arena_init_on(&c->scratch, c->scratch_inline, sizeof c->scratch_inline, 8192);
	size_t start = out->len;
	/* Each message level adds at most two levels of JSON (a repeated field's array and
	 * the element's object), so this limit never refuses what the message limit allows. */
	int rc = jdoc_parse(&c->doc, json, len, 2 * JSON_MAX_DEPTH + 2);
	if (rc) {
		/* The reader's message, shortened as the transcoder's own are. */
		snprintf(c->e.msg, sizeof c->e.msg, "%s", store_err_msg());
		c->e.set = true;
	} else {
		rc = enc_message(c, m, 0, 1);
	}
	if (!rc && out->failed)
		rc = nomem(c);
	if (rc) {
		buf_truncate(out, start);
		store_err_set(rc, "%s", c->e.msg);
	}
	jdoc_free(&c->doc);
	arena_free(&c->scratch);
	return rc;
}
