/* Protobuf bytes -> proto3 JSON (json_from_proto).
 *
 * A message is read in one pass into a list of field occurrences (the stack `occ`, shared
 * by all nesting levels), which is then put in field-number order and cleared of the
 * occurrences protobuf's merge rules discard. Emitting from that list makes the JSON
 * canonical however the bytes were ordered, without a second parse. */
#include "store/json.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/arena.h"
#include "base/base64.h"
#include "base/jsonstr.h"
#include "base/mem.h"
#include "base/utf8.h"
#include "store/json_int.h"
#include "store/pbwire.h"

typedef struct occ {
	const uint8_t *ptr; /* LEN payload, group body or packed run; NULL for a scalar */
	uint64_t v;	    /* the scalar, or the payload length */
	uint32_t field;	    /* index in the message's fields */
	uint32_t seq;	    /* order on the wire within the message */
} occ;

typedef struct ctx {
	tp_pool *tp;
	const char *ns;
	int flags;
	buf *out;
	occ *occ;
	size_t n_occ;
	size_t cap_occ;
	arena scratch;
	json_err e;
	occ occ_inline[128];
	_Alignas(max_align_t) unsigned char scratch_inline[4096];
} ctx;

typedef struct pbfield {
	uint32_t num;
	uint8_t wt;
	uint64_t v;	    /* varint or fixed value; LEN or group: payload length */
	const uint8_t *ptr; /* LEN payload or group body */
} pbfield;

/* Where an absent payload points: never NULL, since NULL + 0 is undefined. */
static const uint8_t empty[1];

static void append_u64(buf *b, uint64_t v)
{
	char tmp[20];
	size_t i = sizeof tmp;
	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	buf_append(b, tmp + i, sizeof tmp - i);
}

static void append_i64(buf *b, int64_t v)
{
	if (v < 0) {
		buf_putc(b, '-');
		append_u64(b, -(uint64_t)v);
	} else {
		append_u64(b, (uint64_t)v);
	}
}

/* The shortest decimal form that reads back as the same double, or as the same float when
 * as_float (the value is then a float widened to double). Finite values only. */
static void append_double(buf *b, double v, bool as_float)
{
	/* Fewest digits that read back exactly: what Python's repr (doubles) and protobuf's
	 * ToShortestFloat (floats, from 6 digits) produce, so both agree on the value. A
	 * normal double's shortest form never has fewer than 15 digits once %g drops trailing
	 * zeros; a subnormal's may. */
	char tmp[40];
	int n = 0;
	int start = as_float ? 6 : fabs(v) < DBL_MIN ? 1 : 15;
	for (int prec = start; prec <= 17; prec++) {
		n = snprintf(tmp, sizeof tmp, "%.*g", prec, v);
		double r = strtod(tmp, NULL);
		if (as_float ? (float)r == (float)v : r == v)
			break;
	}
	buf_append(b, tmp, (size_t)n);
}

static int fail(ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(ctx *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = json_err_vfail(&c->e, fmt, ap);
	va_end(ap);
	return rc;
}

static int nomem(ctx *c) { return json_err_nomem(&c->e); }

static void *scratch_alloc(ctx *c, size_t n) { return arena_alloc(&c->scratch, n); }

static int push_occ(ctx *c, occ o)
{
	if (c->n_occ == c->cap_occ) {
		size_t cap = c->cap_occ * 2;
		occ *n;
		if (c->occ == c->occ_inline) {
			n = mem_alloc(cap * sizeof *n);
			if (n)
				memcpy(n, c->occ, c->n_occ * sizeof *n);
		} else {
			n = mem_realloc(c->occ, cap * sizeof *n);
		}
		if (!n)
			return nomem(c);
		c->occ = n;
		c->cap_occ = cap;
	}
	c->occ[c->n_occ++] = o;
	return 0;
}

static const char *key_of(const ctx *c, const tp_field *f)
{
	return c->flags & JSON_PROTO_NAMES ? f->name : f->json_name;
}

static const char *msg_name(const tp_message *m) { return tp_message_get(m)->full_name; }

/* ---- the wire ---- */

static int skip_group(ctx *c, const uint8_t **pp, const uint8_t *end, uint32_t num, int depth,
		      const uint8_t **body_end);

/* Reads the field at *pp and moves past it. */
static int next_field(ctx *c, const uint8_t **pp, const uint8_t *end, pbfield *f, int depth)
{
	const uint8_t *p = *pp;
	uint64_t tag;
	size_t k = pb_get_varint(p, end, &tag);
	if (!k)
		return fail(c, "truncated tag");
	p += k;
	if ((tag >> 3) == 0 || (tag >> 3) > PB_MAX_FIELD)
		return fail(c, "invalid field number %llu", (unsigned long long)(tag >> 3));
	f->num = (uint32_t)(tag >> 3);
	f->wt = (uint8_t)(tag & 7);
	f->ptr = NULL;
	switch (f->wt) {
	case PB_VARINT:
		if (!(k = pb_get_varint(p, end, &f->v)))
			return fail(c, "field %u: truncated varint", f->num);
		p += k;
		break;
	case PB_FIXED64:
		if (end - p < 8)
			return fail(c, "field %u: truncated fixed64", f->num);
		f->v = pb_get_le64(p);
		p += 8;
		break;
	case PB_FIXED32:
		if (end - p < 4)
			return fail(c, "field %u: truncated fixed32", f->num);
		f->v = pb_get_le32(p);
		p += 4;
		break;
	case PB_LEN:
		if (!(k = pb_get_varint(p, end, &f->v)))
			return fail(c, "field %u: truncated length", f->num);
		p += k;
		if (f->v > (uint64_t)(end - p))
			return fail(c, "field %u: length past the end", f->num);
		f->ptr = p;
		p += f->v;
		break;
	case PB_SGROUP: {
		const uint8_t *body = p, *body_end = p;
		int rc = skip_group(c, &p, end, f->num, depth + 1, &body_end);
		if (rc)
			return rc;
		f->ptr = body;
		f->v = (uint64_t)(body_end - body);
		break;
	}
	case PB_EGROUP:
		return fail(c, "field %u: unexpected end of group", f->num);
	default:
		return fail(c, "field %u: invalid wire type %u", f->num, f->wt);
	}
	*pp = p;
	return 0;
}

static int skip_group(ctx *c, const uint8_t **pp, const uint8_t *end, uint32_t num, int depth,
		      const uint8_t **body_end)
{
	if (depth > JSON_MAX_DEPTH)
		return fail(c, "nesting deeper than %d", JSON_MAX_DEPTH);
	const uint8_t *p = *pp;
	while (p < end) {
		uint64_t tag;
		size_t k = pb_get_varint(p, end, &tag);
		if (k && (tag & 7) == PB_EGROUP) {
			if (tag >> 3 != num)
				return fail(c, "group %u ended by tag %llu", num,
					    (unsigned long long)(tag >> 3));
			*body_end = p;
			*pp = p + k;
			return 0;
		}
		pbfield f;
		int rc = next_field(c, &p, end, &f, depth);
		if (rc)
			return rc;
	}
	return fail(c, "group %u not ended", num);
}

static bool scalar_type(uint8_t type)
{
	return type != TP_STRING && type != TP_BYTES && type != TP_MESSAGE && type != TP_GROUP;
}

static int check_wire(ctx *c, const tp_field *f, uint8_t wt)
{
	if (wt == json_wire_type(f->type) || (wt == PB_LEN && f->repeated && scalar_type(f->type)))
		return 0;
	return fail(c, "%s.%s: wire type %u does not fit the field", msg_name(f->parent), f->name,
		    wt);
}

/* ---- collecting a message's fields ---- */

/* Pushes the known fields of m found in p[0..n) onto the occ stack, in field order, with
 * the occurrences that protobuf would discard left out: for a oneof, everything but the
 * last member set and what that member had before another member replaced it. */
static int collect(ctx *c, const tp_message *m, const uint8_t *p, size_t n, int depth)
{
	const tp_message_info *mi = tp_message_get(m);
	const uint8_t *end = p + n;
	size_t base = c->n_occ;
	uint32_t seq = 0;
	bool sorted = true, oneofs = false;
	uint32_t last = 0;
	while (p < end) {
		pbfield pf;
		int rc = next_field(c, &p, end, &pf, depth);
		if (rc)
			return rc;
		const tp_field *f = tp_message_field_by_number(m, pf.num);
		if (!f)
			continue;
		if ((rc = check_wire(c, f, pf.wt)))
			return rc;
		uint32_t idx = (uint32_t)(f - mi->fields);
		sorted &= idx >= last;
		last = idx;
		oneofs |= f->oneof >= 0;
		if ((rc = push_occ(c, (occ){.ptr = pf.ptr, .v = pf.v, .field = idx, .seq = seq++})))
			return rc;
	}
	size_t k = c->n_occ - base;
	if (!k || (sorted && !oneofs))
		return 0;
	arena_mark mark = arena_get_mark(&c->scratch);
	if (!sorted) {
		/* Counting sort: stable, so each field keeps its wire order. */
		uint32_t *start = scratch_alloc(c, (mi->n_fields + 1) * sizeof *start);
		occ *tmp = scratch_alloc(c, k * sizeof *tmp);
		if (!start || !tmp)
			return nomem(c);
		memset(start, 0, (mi->n_fields + 1) * sizeof *start);
		for (size_t i = base; i < c->n_occ; i++)
			start[c->occ[i].field + 1]++;
		for (size_t i = 1; i <= mi->n_fields; i++)
			start[i] += start[i - 1];
		for (size_t i = base; i < c->n_occ; i++)
			tmp[start[c->occ[i].field]++] = c->occ[i];
		memcpy(c->occ + base, tmp, k * sizeof *tmp);
	}
	if (oneofs) {
		/* Per oneof: the member that was set last, and when any other member was last
		 * set (stored +1, 0 for never). */
		uint32_t *winner = scratch_alloc(c, mi->n_oneofs * sizeof *winner);
		uint32_t *win_seq = scratch_alloc(c, mi->n_oneofs * sizeof *win_seq);
		uint32_t *other = scratch_alloc(c, mi->n_oneofs * sizeof *other);
		if (!winner || !win_seq || !other)
			return nomem(c);
		memset(win_seq, 0, mi->n_oneofs * sizeof *win_seq);
		memset(other, 0, mi->n_oneofs * sizeof *other);
		for (size_t i = base; i < c->n_occ; i++) {
			int32_t o = mi->fields[c->occ[i].field].oneof;
			if (o >= 0 && c->occ[i].seq + 1 > win_seq[o]) {
				win_seq[o] = c->occ[i].seq + 1;
				winner[o] = c->occ[i].field;
			}
		}
		for (size_t i = base; i < c->n_occ; i++) {
			int32_t o = mi->fields[c->occ[i].field].oneof;
			if (o >= 0 && c->occ[i].field != winner[o] && c->occ[i].seq + 1 > other[o])
				other[o] = c->occ[i].seq + 1;
		}
		size_t w = base;
		for (size_t i = base; i < c->n_occ; i++) {
			int32_t o = mi->fields[c->occ[i].field].oneof;
			if (o < 0 || (c->occ[i].field == winner[o] && c->occ[i].seq + 1 > other[o]))
				c->occ[w++] = c->occ[i];
		}
		c->n_occ = w;
	}
	arena_release(&c->scratch, mark);
	return 0;
}

static size_t group_end(const ctx *c, size_t i, size_t end)
{
	uint32_t field = c->occ[i].field;
	while (i < end && c->occ[i].field == field)
		i++;
	return i;
}

/* ---- values ---- */

static int emit_message(ctx *c, const tp_message *m, const uint8_t *p, size_t n, int depth);
static int emit_fields(ctx *c, const tp_message *m, const uint8_t *p, size_t n, int depth,
		       bool *first);

static int put_string(ctx *c, const tp_field *f, const uint8_t *s, size_t n)
{
	if (jsonstr_put(c->out, (const char *)s, n) == -EILSEQ)
		return fail(c, "%s.%s: invalid UTF-8", msg_name(f->parent), f->name);
	return 0;
}

static int put_double(ctx *c, double d, bool as_float)
{
	if (isnan(d))
		buf_puts(c->out, "\"NaN\"");
	else if (isinf(d))
		buf_puts(c->out, d > 0 ? "\"Infinity\"" : "\"-Infinity\"");
	else
		append_double(c->out, d, as_float);
	return 0;
}

static void put_quoted_i64(buf *b, int64_t v)
{
	buf_putc(b, '"');
	append_i64(b, v);
	buf_putc(b, '"');
}

static void put_quoted_u64(buf *b, uint64_t v)
{
	buf_putc(b, '"');
	append_u64(b, v);
	buf_putc(b, '"');
}

/* Whether a scalar holds its type's default (what a field without presence leaves out). */
static bool scalar_default(const tp_field *f, uint64_t v)
{
	switch (f->type) {
	case TP_DOUBLE:
	case TP_INT64:
	case TP_UINT64:
	case TP_FIXED64:
	case TP_SFIXED64:
	case TP_SINT64:
	case TP_BOOL:
		return v == 0;
	case TP_ENUM:
		/* A NullValue field is null whatever its number: all of them print alike. */
		return tp_enum_get(f->enum_type)->null_value || (uint32_t)v == 0;
	default:
		return (uint32_t)v == 0;
	}
}

/* A closed enum drops numbers it does not declare, as if they were unknown fields. */
static bool scalar_kept(const tp_field *f, uint64_t v)
{
	return !f->closed_enum || tp_enum_name_of(f->enum_type, (int32_t)v);
}

static void put_scalar(ctx *c, const tp_field *f, uint64_t v)
{
	buf *b = c->out;
	switch (f->type) {
	case TP_DOUBLE:
		put_double(c, pb_bits_double(v), false);
		break;
	case TP_FLOAT:
		put_double(c, pb_bits_float((uint32_t)v), true);
		break;
	case TP_INT64:
	case TP_SFIXED64:
		put_quoted_i64(b, (int64_t)v);
		break;
	case TP_SINT64:
		put_quoted_i64(b, pb_unzigzag(v));
		break;
	case TP_UINT64:
	case TP_FIXED64:
		put_quoted_u64(b, v);
		break;
	case TP_INT32:
	case TP_SFIXED32:
		append_i64(b, (int32_t)(uint32_t)v);
		break;
	case TP_SINT32:
		append_i64(b, (int32_t)pb_unzigzag((uint32_t)v));
		break;
	case TP_UINT32:
	case TP_FIXED32:
		append_u64(b, (uint32_t)v);
		break;
	case TP_BOOL:
		buf_puts(b, v ? "true" : "false");
		break;
	case TP_ENUM: {
		const char *name = tp_enum_name_of(f->enum_type, (int32_t)v);
		if (tp_enum_get(f->enum_type)->null_value)
			buf_puts(b, "null");
		else if (name)
			jsonstr_put(b, name, strlen(name));
		else
			append_i64(b, (int32_t)v);
		break;
	}
	}
}

/* One element of a packed run at *pp. */
static int packed_next(ctx *c, const tp_field *f, const uint8_t **pp, const uint8_t *end,
		       uint64_t *v)
{
	switch (json_wire_type(f->type)) {
	case PB_FIXED64:
		if (end - *pp < 8)
			break;
		*v = pb_get_le64(*pp);
		*pp += 8;
		return 0;
	case PB_FIXED32:
		if (end - *pp < 4)
			break;
		*v = pb_get_le32(*pp);
		*pp += 4;
		return 0;
	default: {
		size_t k = pb_get_varint(*pp, end, v);
		if (!k)
			break;
		*pp += k;
		return 0;
	}
	}
	return fail(c, "%s.%s: truncated packed value", msg_name(f->parent), f->name);
}

/* Whether p[0..n) is a whole sequence of fields: before occurrences of a message are
 * concatenated, so that no field may straddle two of them. */
static int whole_fields(ctx *c, const uint8_t *p, size_t n, int depth)
{
	const uint8_t *end = p + n;
	while (p < end) {
		pbfield pf;
		int rc = next_field(c, &p, end, &pf, depth);
		if (rc)
			return rc;
	}
	return 0;
}

/* The payload of occurrences [from, to) of a message field as one buffer: protobuf merges
 * repeated occurrences of a message, which is what parsing their concatenation does. */
static int merged(ctx *c, size_t from, size_t to, int depth, const uint8_t **p, size_t *n)
{
	if (to - from == 1) {
		*p = c->occ[from].ptr;
		*n = (size_t)c->occ[from].v;
		return 0;
	}
	size_t total = 0;
	for (size_t i = from; i < to; i++) {
		int rc = whole_fields(c, c->occ[i].ptr, (size_t)c->occ[i].v, depth);
		if (rc)
			return rc;
		total += (size_t)c->occ[i].v;
	}
	uint8_t *buf = scratch_alloc(c, total ? total : 1);
	if (!buf)
		return nomem(c);
	size_t at = 0;
	for (size_t i = from; i < to; i++) {
		memcpy(buf + at, c->occ[i].ptr, (size_t)c->occ[i].v);
		at += (size_t)c->occ[i].v;
	}
	*p = buf;
	*n = total;
	return 0;
}

typedef struct mentry {
	uint64_t key;	   /* an integer or bool key, normalized */
	const uint8_t *kp; /* a string key */
	size_t klen;
	const uint8_t *vp; /* a message or string value (NULL: absent) */
	size_t vlen;
	uint64_t v; /* a scalar value */
	uint32_t idx;
	bool drop;
} mentry;

static uint64_t norm_key(uint8_t type, uint64_t v)
{
	switch (type) {
	case TP_INT32:
	case TP_SFIXED32:
		return (uint64_t)(int64_t)(int32_t)(uint32_t)v;
	case TP_SINT32:
		return (uint64_t)(int64_t)(int32_t)pb_unzigzag((uint32_t)v);
	case TP_SINT64:
		return (uint64_t)pb_unzigzag(v);
	case TP_UINT32:
	case TP_FIXED32:
		return (uint32_t)v;
	case TP_BOOL:
		return v != 0;
	default:
		return v;
	}
}

static int cmp_mentry(const void *a, const void *b, void *is_string)
{
	const mentry *x = a, *y = b;
	if (is_string) {
		size_t n = x->klen < y->klen ? x->klen : y->klen;
		int r = n ? memcmp(x->kp, y->kp, n) : 0;
		if (r)
			return r;
		if (x->klen != y->klen)
			return x->klen < y->klen ? -1 : 1;
	} else if (x->key != y->key) {
		return x->key < y->key ? -1 : 1;
	}
	return x->idx < y->idx ? -1 : 1;
}

/* Reads one map entry (a message with key = 1, value = 2) into e. */
static int read_entry(ctx *c, const tp_field *mf, const uint8_t *p, size_t n, int depth, mentry *e)
{
	const tp_message_info *em = tp_message_get(mf->message);
	const tp_field *kf = &em->fields[0], *vf = &em->fields[1];
	const uint8_t *end = p + n, *q = p;
	size_t nvals = 0, vtotal = 0;
	*e = (mentry){0};
	if (vf->type == TP_ENUM) /* absent: the enum's default, its first value */
		e->v = (uint64_t)(int64_t)tp_enum_get(vf->enum_type)->values[0].number;
	if (kf->type == TP_STRING)
		e->kp = (const uint8_t *)"";
	while (q < end) {
		pbfield pf;
		int rc = next_field(c, &q, end, &pf, depth);
		if (rc)
			return rc;
		const tp_field *f = pf.num == 1 ? kf : pf.num == 2 ? vf : NULL;
		if (!f)
			continue;
		if (pf.wt != json_wire_type(f->type))
			return check_wire(c, f, pf.wt);
		if (f == kf) {
			if (pf.ptr) {
				e->kp = pf.ptr;
				e->klen = (size_t)pf.v;
			} else {
				e->key = norm_key(kf->type, pf.v);
			}
		} else if (vf->type == TP_MESSAGE) {
			nvals++;
			vtotal += (size_t)pf.v;
			e->vp = pf.ptr;
			e->vlen = (size_t)pf.v;
		} else if (pf.ptr) {
			e->vp = pf.ptr;
			e->vlen = (size_t)pf.v;
		} else {
			e->v = pf.v;
		}
	}
	if (nvals > 1) {
		/* A message value given more than once merges, like any message field. */
		uint8_t *buf = scratch_alloc(c, vtotal);
		if (!buf)
			return nomem(c);
		size_t at = 0;
		for (q = p; q < end;) {
			pbfield pf;
			next_field(c, &q, end, &pf, depth);
			if (pf.num == 2) {
				int rc = whole_fields(c, pf.ptr, (size_t)pf.v, depth + 1);
				if (rc)
					return rc;
				memcpy(buf + at, pf.ptr, (size_t)pf.v);
				at += (size_t)pf.v;
			}
		}
		e->vp = buf;
		e->vlen = vtotal;
	}
	e->drop = vf->type == TP_ENUM && !scalar_kept(vf, e->v);
	return 0;
}

static int put_value(ctx *c, const tp_field *f, const uint8_t *p, size_t n, uint64_t v, int depth);

/* A map field's occurrences [from, to) as a JSON object. Returns 1 when written, 0 when
 * every entry was dropped. */
static int emit_map(ctx *c, const tp_field *f, size_t from, size_t to, int depth)
{
	if (depth + 1 > JSON_MAX_DEPTH)
		return fail(c, "nesting deeper than %d", JSON_MAX_DEPTH);
	const tp_message_info *em = tp_message_get(f->message);
	const tp_field *kf = &em->fields[0], *vf = &em->fields[1];
	size_t k = to - from, kept = 0;
	arena_mark mark = arena_get_mark(&c->scratch);
	mentry *es = scratch_alloc(c, k * sizeof *es);
	if (!es)
		return nomem(c);
	for (size_t i = 0; i < k; i++) {
		int rc = read_entry(c, f, c->occ[from + i].ptr, (size_t)c->occ[from + i].v,
				    depth + 1, &es[i]);
		if (rc)
			return rc;
		es[i].idx = (uint32_t)i;
	}
	if (k > 1) {
		/* The last entry of a key wins: sort a copy by (key, position), keep run ends. */
		mentry *sorted = scratch_alloc(c, k * sizeof *sorted);
		if (!sorted)
			return nomem(c);
		size_t m = 0;
		for (size_t i = 0; i < k; i++)
			if (!es[i].drop)
				sorted[m++] = es[i];
		void *is_string = kf->type == TP_STRING ? (void *)1 : NULL;
		qsort_r(sorted, m, sizeof *sorted, cmp_mentry, is_string);
		for (size_t i = 0; i + 1 < m; i++) {
			mentry a = sorted[i], b = sorted[i + 1];
			bool same = is_string ? a.klen == b.klen &&
							(!a.klen || !memcmp(a.kp, b.kp, a.klen))
					      : a.key == b.key;
			if (same)
				es[a.idx].drop = true;
		}
	}
	buf_putc(c->out, '{');
	for (size_t i = 0; i < k; i++) {
		mentry *e = &es[i];
		if (e->drop)
			continue;
		if (kept++)
			buf_putc(c->out, ',');
		int rc = 0;
		if (kf->type == TP_STRING) {
			rc = put_string(c, kf, e->kp, e->klen);
		} else if (kf->type == TP_BOOL) {
			buf_puts(c->out, e->key ? "\"true\"" : "\"false\"");
		} else if (kf->type == TP_INT32 || kf->type == TP_SINT32 ||
			   kf->type == TP_SFIXED32 || kf->type == TP_INT64 ||
			   kf->type == TP_SINT64 || kf->type == TP_SFIXED64) {
			put_quoted_i64(c->out, (int64_t)e->key);
		} else {
			put_quoted_u64(c->out, e->key);
		}
		buf_putc(c->out, ':');
		if (!rc)
			rc = put_value(c, vf, e->vp, e->vlen, e->v, depth + 2);
		if (rc)
			return rc;
	}
	buf_putc(c->out, '}');
	arena_release(&c->scratch, mark);
	return kept > 0;
}

/* A single value of field f: p/n for strings, bytes and messages (p NULL: absent, the
 * default), v for scalars. */
static int put_value(ctx *c, const tp_field *f, const uint8_t *p, size_t n, uint64_t v, int depth)
{
	switch (f->type) {
	case TP_MESSAGE:
	case TP_GROUP:
		return emit_message(c, f->message, p ? p : empty, p ? n : 0, depth);
	case TP_STRING:
		return put_string(c, f, p ? p : empty, p ? n : 0);
	case TP_BYTES:
		buf_putc(c->out, '"');
		base64_put(c->out, p ? p : empty, p ? n : 0, 0);
		buf_putc(c->out, '"');
		return 0;
	default:
		put_scalar(c, f, v);
		return 0;
	}
}

/* The value of field f from its occurrences [from, to). Returns 1 when written, 0 when the
 * field counts as absent (nothing written), or an error. With force, a singular field is
 * written even when it holds the default. */
static int emit_field_value(ctx *c, const tp_field *f, size_t from, size_t to, int depth,
			    bool force)
{
	if (f->is_map)
		return emit_map(c, f, from, to, depth);
	if (f->repeated) {
		size_t count = 0;
		buf_putc(c->out, '[');
		for (size_t i = from; i < to; i++) {
			occ o = c->occ[i];
			if (scalar_type(f->type) && o.ptr) {
				const uint8_t *p = o.ptr, *end = p + o.v;
				while (p < end) {
					uint64_t v = 0;
					int rc = packed_next(c, f, &p, end, &v);
					if (rc)
						return rc;
					if (!scalar_kept(f, v))
						continue;
					if (count++)
						buf_putc(c->out, ',');
					put_scalar(c, f, v);
				}
				continue;
			}
			if (scalar_type(f->type) && !scalar_kept(f, o.v))
				continue;
			if (count++)
				buf_putc(c->out, ',');
			int rc = put_value(c, f, o.ptr, (size_t)o.v, o.v, depth + 1);
			if (rc)
				return rc;
		}
		buf_putc(c->out, ']');
		return count > 0;
	}
	if (f->type == TP_MESSAGE || f->type == TP_GROUP) {
		arena_mark mark = arena_get_mark(&c->scratch);
		/* Set by merged when it succeeds; initialized for the compiler's flow analysis. */
		const uint8_t *p = NULL;
		size_t n = 0;
		int rc = merged(c, from, to, depth + 1, &p, &n);
		if (!rc)
			rc = emit_message(c, f->message, p, n, depth + 1);
		arena_release(&c->scratch, mark);
		return rc ? rc : 1;
	}
	/* The last occurrence wins; a dropped enum number leaves the one before it. */
	size_t i = to;
	while (i > from && scalar_type(f->type) && !scalar_kept(f, c->occ[i - 1].v))
		i--;
	if (i == from) {
		if (!force)
			return 0;
		int rc = put_value(c, f, NULL, 0, 0, depth + 1);
		return rc ? rc : 1;
	}
	occ o = c->occ[i - 1];
	if (!force && !f->has_presence && (o.ptr ? o.v == 0 : scalar_default(f, o.v)))
		return 0;
	int rc = put_value(c, f, o.ptr, (size_t)o.v, o.v, depth + 1);
	return rc ? rc : 1;
}

/* ---- well-known types ---- */

/* Days since 1970-01-01 -> civil date (proleptic Gregorian). */
static void civil(int64_t days, int64_t *y, unsigned *m, unsigned *d)
{
	days += 719468;
	int64_t era = (days >= 0 ? days : days - 146096) / 146097;
	unsigned doe = (unsigned)(days - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;
	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = (int64_t)yoe + era * 400 + (*m <= 2);
}

/* ".123", ".123456" or ".123456789": the fewest groups of three that hold nanos exactly. */
static size_t frac(char *dst, uint32_t nanos)
{
	if (!nanos)
		return 0;
	int digits = nanos % 1000000 == 0 ? 3 : nanos % 1000 == 0 ? 6 : 9;
	uint32_t v = digits == 3 ? nanos / 1000000 : digits == 6 ? nanos / 1000 : nanos;
	dst[0] = '.';
	for (int i = digits; i > 0; i--) {
		dst[i] = (char)('0' + v % 10);
		v /= 10;
	}
	return (size_t)digits + 1;
}

/* The last value of fields 1 and 2 (both varints) of a Timestamp or Duration. */
static int seconds_nanos(ctx *c, const tp_message *m, const uint8_t *p, size_t n, int depth,
			 int64_t *s, int32_t *ns)
{
	const tp_message_info *mi = tp_message_get(m);
	const uint8_t *end = p + n;
	*s = 0;
	*ns = 0;
	while (p < end) {
		pbfield pf;
		int rc = next_field(c, &p, end, &pf, depth);
		if (rc)
			return rc;
		if (pf.num != 1 && pf.num != 2)
			continue;
		if (pf.wt != PB_VARINT)
			return check_wire(c, &mi->fields[pf.num - 1], pf.wt);
		if (pf.num == 1)
			*s = (int64_t)pf.v;
		else
			*ns = (int32_t)(uint32_t)pf.v;
	}
	return 0;
}

#define TS_MIN -62135596800LL /* 0001-01-01T00:00:00Z */
#define TS_MAX 253402300799LL /* 9999-12-31T23:59:59Z */
#define DUR_MAX 315576000000LL

static int emit_timestamp(ctx *c, const tp_message *m, const uint8_t *p, size_t n, int depth)
{
	int64_t s;
	int32_t ns;
	int rc = seconds_nanos(c, m, p, n, depth, &s, &ns);
	if (rc)
		return rc;
	if (s < TS_MIN || s > TS_MAX || ns < 0 || ns > 999999999)
		return fail(c, "Timestamp out of range (seconds %lld, nanos %d)", (long long)s, ns);
	int64_t days = s / 86400, rem = s % 86400;
	if (rem < 0) {
		rem += 86400;
		days--;
	}
	int64_t y;
	unsigned mo, d;
	civil(days, &y, &mo, &d);
	char buf[48];
	int k = snprintf(buf, sizeof buf, "\"%04lld-%02u-%02uT%02u:%02u:%02u", (long long)y, mo, d,
			 (unsigned)(rem / 3600), (unsigned)(rem / 60 % 60), (unsigned)(rem % 60));
	k += (int)frac(buf + k, (uint32_t)ns);
	memcpy(buf + k, "Z\"", 2);
	buf_append(c->out, buf, (size_t)k + 2);
	return 0;
}

static int emit_duration(ctx *c, const tp_message *m, const uint8_t *p, size_t n, int depth)
{
	int64_t s;
	int32_t ns;
	int rc = seconds_nanos(c, m, p, n, depth, &s, &ns);
	if (rc)
		return rc;
	if (s < -DUR_MAX || s > DUR_MAX || ns < -999999999 || ns > 999999999 || (s > 0 && ns < 0) ||
	    (s < 0 && ns > 0))
		return fail(c, "Duration out of range (seconds %lld, nanos %d)", (long long)s, ns);
	char buf[48];
	bool neg = s < 0 || ns < 0;
	int k = snprintf(buf, sizeof buf, "\"%s%lld", neg ? "-" : "", (long long)(neg ? -s : s));
	k += (int)frac(buf + k, (uint32_t)(neg ? -ns : ns));
	memcpy(buf + k, "s\"", 2);
	buf_append(c->out, buf, (size_t)k + 2);
	return 0;
}

static int emit_field_mask(ctx *c, const tp_message *m, const uint8_t *p, size_t n, int depth)
{
	const tp_message_info *mi = tp_message_get(m);
	const uint8_t *end = p + n, *q;
	size_t total = 0;
	for (q = p; q < end;) {
		pbfield pf;
		int rc = next_field(c, &q, end, &pf, depth);
		if (rc)
			return rc;
		if (pf.num == 1 && pf.wt != PB_LEN)
			return check_wire(c, &mi->fields[0], pf.wt);
		if (pf.num == 1)
			total += (size_t)pf.v + 1;
	}
	arena_mark mark = arena_get_mark(&c->scratch);
	char *buf = scratch_alloc(c, total + 1);
	if (!buf)
		return nomem(c);
	size_t at = 0;
	bool first = true;
	for (q = p; q < end;) {
		pbfield pf;
		next_field(c, &q, end, &pf, depth);
		if (pf.num != 1)
			continue;
		if (!first)
			buf[at++] = ',';
		first = false;
		/* snake_case -> lowerCamelCase, refusing paths that would not come back the same */
		bool up = false;
		for (size_t i = 0; i < pf.v; i++) {
			char ch = (char)pf.ptr[i];
			if ((ch >= 'A' && ch <= 'Z') || ch == ',' ||
			    (up && !(ch >= 'a' && ch <= 'z')))
				return fail(c, "FieldMask path \"%.*s\" has no JSON form",
					    (int)(pf.v > 64 ? 64 : pf.v), (const char *)pf.ptr);
			if (ch == '_') {
				up = true;
				continue;
			}
			buf[at++] = up ? (char)(ch - 'a' + 'A') : ch;
			up = false;
		}
		if (up)
			return fail(c, "FieldMask path \"%.*s\" ends with '_'",
				    (int)(pf.v > 64 ? 64 : pf.v), (const char *)pf.ptr);
	}
	int rc = put_string(c, &mi->fields[0], (const uint8_t *)buf, at);
	arena_release(&c->scratch, mark);
	return rc;
}

static int emit_any(ctx *c, const tp_message *m, const uint8_t *p, size_t n, int depth)
{
	const tp_message_info *mi = tp_message_get(m);
	const uint8_t *end = p + n, *url = NULL, *val = empty;
	size_t url_len = 0, val_len = 0;
	while (p < end) {
		pbfield pf;
		int rc = next_field(c, &p, end, &pf, depth);
		if (rc)
			return rc;
		if (pf.num != 1 && pf.num != 2)
			continue;
		if (pf.wt != PB_LEN)
			return check_wire(c, &mi->fields[pf.num - 1], pf.wt);
		if (pf.num == 1) {
			url = pf.ptr;
			url_len = (size_t)pf.v;
		} else {
			val = pf.ptr;
			val_len = (size_t)pf.v;
		}
	}
	if (!url_len) {
		if (val_len)
			return fail(c, "Any with a value but no type URL");
		buf_puts(c->out, "{}");
		return 0;
	}
	if (!utf8_valid(url, url_len, false))
		return fail(c, "Any type URL is not valid UTF-8");
	const tp_message *inner = tp_find_type_url(c->tp, c->ns, (const char *)url, url_len);
	if (!inner && (c->flags & JSON_OPAQUE_ANY)) {
		/* Shown, not transcoded: the type and its bytes in base64. */
		buf_puts(c->out, "{\"@type\":");
		jsonstr_put(c->out, (const char *)url, url_len);
		buf_puts(c->out, ",\"@bytes\":\"");
		base64_put(c->out, val, val_len, 0);
		buf_puts(c->out, "\"}");
		return 0;
	}
	if (!inner)
		return fail(c, "Any type \"%.*s\" is not known",
			    (int)(url_len > 128 ? 128 : url_len), (const char *)url);
	buf_puts(c->out, "{\"@type\":");
	jsonstr_put(c->out, (const char *)url, url_len);
	int rc;
	if (tp_message_get(inner)->wkt != TP_WKT_NONE) {
		buf_puts(c->out, ",\"value\":");
		rc = emit_message(c, inner, val, val_len, depth + 1);
	} else {
		bool first = false;
		rc = depth + 1 > JSON_MAX_DEPTH
			     ? fail(c, "nesting deeper than %d", JSON_MAX_DEPTH)
			     : emit_fields(c, inner, val, val_len, depth + 1, &first);
	}
	buf_putc(c->out, '}');
	return rc;
}

/* Struct, ListValue, Value and the wrappers: the value of their (winning) field, or the
 * empty form when absent. */
static int emit_wrapped(ctx *c, const tp_message *m, const uint8_t *p, size_t n, int depth)
{
	const tp_message_info *mi = tp_message_get(m);
	size_t base = c->n_occ;
	int rc = collect(c, m, p, n, depth);
	if (rc)
		return rc;
	const tp_field *f = c->n_occ > base ? &mi->fields[c->occ[base].field] : NULL;
	switch (mi->wkt) {
	case TP_WKT_STRUCT:
	case TP_WKT_LIST_VALUE:
		/* A map or a repeated field always writes its brackets, empty or not. */
		if (f)
			rc = emit_field_value(c, f, base, c->n_occ, depth, true);
		else
			buf_puts(c->out, mi->wkt == TP_WKT_STRUCT ? "{}" : "[]");
		break;
	case TP_WKT_VALUE:
		if (!f || f->number == 1) {
			buf_puts(c->out, "null");
			break;
		}
		if (f->number == 2) {
			double d = pb_bits_double(c->occ[c->n_occ - 1].v);
			if (!isfinite(d)) {
				rc = fail(c, "Value number %g has no JSON form", d);
				break;
			}
		}
		rc = emit_field_value(c, f, base, c->n_occ, depth, true);
		break;
	default:
		rc = emit_field_value(c, f ? f : &mi->fields[0], base, c->n_occ, depth, true);
	}
	c->n_occ = base;
	return rc < 0 ? rc : 0;
}

/* ---- messages ---- */

static int emit_fields(ctx *c, const tp_message *m, const uint8_t *p, size_t n, int depth,
		       bool *first)
{
	const tp_message_info *mi = tp_message_get(m);
	size_t base = c->n_occ;
	int rc = collect(c, m, p, n, depth);
	for (size_t i = base; !rc && i < c->n_occ;) {
		size_t j = group_end(c, i, c->n_occ);
		const tp_field *f = &mi->fields[c->occ[i].field];
		size_t undo = c->out->len;
		if (!*first)
			buf_putc(c->out, ',');
		buf_putc(c->out, '"');
		buf_puts(c->out, key_of(c, f));
		buf_append(c->out, "\":", 2);
		rc = emit_field_value(c, f, i, j, depth, false);
		if (rc == 0) {
			c->out->len = undo;
		} else if (rc > 0) {
			*first = false;
			rc = 0;
		}
		i = j;
	}
	c->n_occ = base;
	return rc;
}

static int emit_message(ctx *c, const tp_message *m, const uint8_t *p, size_t n, int depth)
{
	if (depth > JSON_MAX_DEPTH)
		return fail(c, "nesting deeper than %d", JSON_MAX_DEPTH);
	switch (tp_message_get(m)->wkt) {
	case TP_WKT_ANY:
		return emit_any(c, m, p, n, depth);
	case TP_WKT_TIMESTAMP:
		return emit_timestamp(c, m, p, n, depth);
	case TP_WKT_DURATION:
		return emit_duration(c, m, p, n, depth);
	case TP_WKT_FIELD_MASK:
		return emit_field_mask(c, m, p, n, depth);
	case TP_WKT_NONE:
		break;
	default:
		return emit_wrapped(c, m, p, n, depth);
	}
	bool first = true;
	buf_putc(c->out, '{');
	int rc = emit_fields(c, m, p, n, depth, &first);
	buf_putc(c->out, '}');
	return rc;
}

int json_from_proto(tp_pool *tp, const char *ns, const tp_message *m, const uint8_t *bytes,
		    size_t len, int flags, buf *out)
{
	ctx cs, *c = &cs;
	c->tp = tp;
	c->ns = ns;
	c->flags = flags;
	c->out = out;
	c->occ = c->occ_inline;
	c->n_occ = 0;
	c->cap_occ = sizeof c->occ_inline / sizeof *c->occ_inline;
	arena_init_on(&c->scratch, c->scratch_inline, sizeof c->scratch_inline, 8192);
	c->e.set = false;
	size_t start = out->len;
	int rc = emit_message(c, m, bytes ? bytes : empty, len, 1);
	buf_terminate(out);
	if (!rc && out->failed)
		rc = nomem(c);
	if (rc) {
		buf_truncate(out, start);
		store_err_set(rc, "%s", c->e.msg);
	}
	arena_free(&c->scratch);
	if (c->occ != c->occ_inline)
		mem_free(c->occ);
	return rc;
}
