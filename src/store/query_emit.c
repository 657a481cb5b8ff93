/* The SQL of conditions: operands (record columns, JSON paths, json_each rows), typed and
 * runtime comparisons for every operator, filter Structs flattened, labels, full text.
 * Values are always bound parameters; only fixed fragments and indexed paths (rendered
 * from a parsed path) become SQL text. */
#include <errno.h>
#include <math.h>

#include "base/mem.h"
#include "store/query_int.h"

#define MAX_FTS_TERMS 64

static const char *const op_names[] = {
	"EQUALS",     "NOT_EQUALS", "GREATER_THAN", "LESS_THAN", "GREATER_EQUAL",
	"LESS_EQUAL", "CONTAINS",   "IN",	    "EXISTS",	 "NOT_EXISTS",
};
static const char *const op_sql[] = {"=", "<>", ">", "<", ">=", "<="};

static enum ty ty_of(enum query_kind k)
{
	switch (k) {
	case QUERY_KIND_STRING:
		return TY_STRING;
	case QUERY_KIND_NUMBER:
		return TY_NUMBER;
	case QUERY_KIND_INT64:
		return TY_INT64;
	case QUERY_KIND_BOOL:
		return TY_BOOL;
	case QUERY_KIND_ENUM:
		return TY_ENUM;
	case QUERY_KIND_BYTES:
		return TY_BYTES;
	case QUERY_KIND_MESSAGE:
		return TY_MESSAGE;
	case QUERY_KIND_REPEATED:
		return TY_REPEATED;
	case QUERY_KIND_MAP:
		return TY_MAP;
	case QUERY_KIND_TIMESTAMP:
		return TY_TIMESTAMP;
	case QUERY_KIND_DURATION:
		return TY_DURATION;
	}
	return TY_RUNTIME;
}

/* ---- operands ---- */

static void put_path(buf *b, const opnd *o)
{
	if (o->param) {
		query_put_param(b, o->param);
	} else {
		buf_puts(b, "'");
		buf_puts(b, o->path);
		buf_puts(b, "'");
	}
}

/* The value at the operand. For a spliced path this is exactly query_index_field's
 * expression, so SQLite matches it with the expression index. */
void query_emit_operand(buf *b, const opnd *o)
{
	if (o->col) {
		buf_puts(b, o->col);
	} else if (o->each) {
		buf_puts(b, "value");
	} else {
		buf_puts(b, "json_extract(json,");
		put_path(b, o);
		buf_puts(b, ")");
	}
}

static void put_t(buf *b, const opnd *o)
{
	if (o->each) {
		buf_puts(b, "type");
	} else {
		buf_puts(b, "json_type(json,");
		put_path(b, o);
		buf_puts(b, ")");
	}
}

/* The operand as compared by type: int64 strings as integers, timestamps without their
 * "Z" (so that "...:05Z" sorts after "...:04.5Z"), durations as seconds. */
void query_emit_lhs(buf *b, const opnd *o, enum ty ty, bool ordering)
{
	if (ty == TY_INT64 && ordering) {
		buf_puts(b, "CAST(");
		query_emit_operand(b, o);
		buf_puts(b, " AS INTEGER)");
	} else if (ty == TY_TIMESTAMP && ordering) {
		buf_puts(b, "rtrim(");
		query_emit_operand(b, o);
		buf_puts(b, ",'Z')");
	} else if (ty == TY_DURATION) {
		buf_puts(b, "CAST(rtrim(");
		query_emit_operand(b, o);
		buf_puts(b, ",'s') AS REAL)");
	} else {
		query_emit_operand(b, o);
	}
}

/* Points o at path p: spliced when p is an indexed field, else bound. */
static void opnd_set_path(cc *c, opnd *o)
{
	size_t n = query_path_render(&o->p, o->path);
	o->col = NULL;
	o->each = false;
	for (size_t i = 0; i < c->nindexed; i++)
		if (!strcmp(c->indexed[i], o->path)) {
			o->param = 0;
			return;
		}
	o->param = query_param_text(c, o->path, n);
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
		query_fail_errno(c, rc, "field type lookup");
	else if (required)
		query_fail(c, "unknown field '%s'", query_quote(text, qb));
	return -ENOENT;
}

/* Parses a filter or order key. */
int query_emit_key(cc *c, const char *s, bool allow_score, key *k)
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
		return query_fail(
			c, "unknown record column '%s' (use @id, @created_at, @updated_at%s)",
			query_quote(s, qb), allow_score ? " or @score" : "");
	}
	if (query_path_parse(s, strlen(s), &k->o.p))
		return query_fail(c, "invalid field path '%s': %s", query_quote(s, qb),
				  store_err_msg());
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

static void put_rhs(buf *b, rhs r)
{
	if (r.dur) {
		buf_puts(b, "CAST(rtrim(");
		query_put_param(b, r.param);
		buf_puts(b, ",'s') AS REAL)");
	} else {
		query_put_param(b, r.param);
	}
}

static int bind_num(cc *c, double d)
{
	int64_t i;
	return query_value_to_i64(d, &i) ? query_param_int(c, i) : query_param_real(c, d);
}

static int bind_i64_text(cc *c, int64_t i)
{
	char t[24];
	return query_param_text(c, t, (size_t)snprintf(t, sizeof t, "%lld", (long long)i));
}

static const char *vtype_name(const query_value *v)
{
	static const char *const names[] = {"null",   "a number", "a string", "a bool",
					    "a list", "a Struct", "no value"};
	return (unsigned)v->type <= QUERY_ABSENT ? names[v->type] : "an invalid value";
}

/* Also refuses NaN and infinities, which JSON cannot hold (SQLite would bind NaN as NULL).
 * An absent value was refused by emit_filter with its key; this is the backstop. */
static bool bad_value(cc *c, const query_value *v)
{
	if ((unsigned)v->type >= QUERY_ABSENT)
		query_fail(c, "invalid value type %d", (int)v->type);
	else if (v->type == QUERY_NUMBER && !isfinite(v->u.number))
		query_fail(c, "filter value %g is not a finite number", v->u.number);
	else
		return false;
	return true;
}

static int type_mismatch(cc *c, const opnd *o, enum ty ty, enum query_op op, const query_value *v)
{
	char qb[QUOTE_MAX];
	return query_fail(c, "%s on '%s' (%s) cannot take %s", op_names[op],
			  query_quote(o->text, qb), query_ty_names[ty], vtype_name(v));
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
		out[0].param = query_param_text(c, v->u.string, strlen(v->u.string));
		return out[0].param ? 1 : 0;
	case TY_BOOL:
		if (ordering || v->type != QUERY_BOOL)
			break;
		out[0].param = query_param_int(c, v->u.boolean);
		return out[0].param ? 1 : 0;
	case TY_NUMBER:
		if (v->type == QUERY_NUMBER)
			d = v->u.number;
		else if (v->type != QUERY_STRING)
			break;
		else if (!query_value_parse_number(v->u.string, &d)) {
			query_fail(c, "'%s' is a number field: '%s' is not a number",
				   query_quote(o->text, qb), query_quote(v->u.string, qv));
			return 0;
		}
		out[0].param = bind_num(c, d);
		return out[0].param ? 1 : 0;
	case TY_INT64:
	case TY_MICROS:
		if (v->type == QUERY_NUMBER) {
			d = v->u.number;
			if (!query_value_to_i64(d, &i)) {
				if (!ordering) {
					query_fail(c,
						   "'%s' is an integer field: %g is not an integer",
						   query_quote(o->text, qb), d);
					return 0;
				}
				out[0].param = query_param_real(c, d);
				return out[0].param ? 1 : 0;
			}
		} else if (v->type != QUERY_STRING) {
			break;
		} else if (!query_value_parse_int(v->u.string, false, &i)) {
			int64_t secs;
			int32_t ns;
			if (ty == TY_MICROS && query_value_parse_ts(v->u.string, &secs, &ns)) {
				i = secs * 1000000 + ns / 1000;
			} else if (ordering && query_value_parse_number(v->u.string, &d)) {
				out[0].param = query_param_real(c, d);
				return out[0].param ? 1 : 0;
			} else {
				query_fail(c, "'%s' is an integer field: '%s' is not an integer%s",
					   query_quote(o->text, qb), query_quote(v->u.string, qv),
					   ty == TY_MICROS ? " or an RFC 3339 time" : "");
				return 0;
			}
		}
		if (ty == TY_MICROS || ordering) {
			out[0].param = query_param_int(c, i);
			return out[0].param ? 1 : 0;
		}
		/* An int64 field of a typed record is a decimal string in its JSON, always: the
		 * JSON is rendered from the binary (json_out, as proto3 JSON renders 64-bit
		 * ints), and the registry refuses a change of a field's type. So equality is
		 * with that text alone: a plain `=`, which an index on the field serves in
		 * order, where `IN (int, text)` made SQLite sort every match. */
		out[0].param = bind_i64_text(c, i);
		return out[0].param ? 1 : 0;
	case TY_TIMESTAMP: {
		int64_t secs;
		int32_t ns;
		char t[40];
		if (v->type != QUERY_STRING)
			break;
		if (!query_value_parse_ts(v->u.string, &secs, &ns)) {
			query_fail(c, "'%s' is a timestamp field: '%s' is not an RFC 3339 time",
				   query_quote(o->text, qb), query_quote(v->u.string, qv));
			return 0;
		}
		size_t n = query_value_format_ts(secs, ns, t);
		out[0].param = query_param_text(c, t, ordering ? n - 1 : n);
		return out[0].param ? 1 : 0;
	}
	case TY_DURATION:
		if (v->type == QUERY_NUMBER) {
			out[0].param = query_param_real(c, v->u.number);
			return out[0].param ? 1 : 0;
		}
		if (v->type != QUERY_STRING)
			break;
		if (!query_value_duration_ok(v->u.string)) {
			query_fail(c,
				   "'%s' is a duration field: '%s' is not a duration like \"1.5s\"",
				   query_quote(o->text, qb), query_quote(v->u.string, qv));
			return 0;
		}
		out[0] = (rhs){query_param_text(c, v->u.string, strlen(v->u.string)), true};
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
		*integral = query_value_to_i64(*d, i);
		return true;
	}
	if (v->type == QUERY_STRING && query_value_parse_int(v->u.string, true, i)) {
		*integral = true;
		return true;
	}
	return false;
}

/* The operand as a number when its JSON is a number or an integer string, else NULL. */
static void put_rt_num(buf *b, const opnd *o)
{
	buf_puts(b, "CASE ");
	put_t(b, o);
	buf_puts(b, " WHEN 'integer' THEN ");
	query_emit_operand(b, o);
	buf_puts(b, " WHEN 'real' THEN ");
	query_emit_operand(b, o);
	buf_puts(b, " WHEN 'text' THEN iif(CAST(CAST(");
	query_emit_operand(b, o);
	buf_puts(b, " AS INTEGER) AS TEXT) = ");
	query_emit_operand(b, o);
	buf_puts(b, ", CAST(");
	query_emit_operand(b, o);
	buf_puts(b, " AS INTEGER), NULL) END");
}

static void emit_eq(cc *c, buf *b, const opnd *o, enum ty ty, const query_value *v);

/* Items lo..hi-1 joined by op as a balanced tree: a flat chain of 1000 terms would exceed
 * SQLite's expression depth limit. */
typedef void (*item_fn)(cc *c, buf *b, size_t i, const void *arg);

static void emit_tree(cc *c, buf *b, size_t lo, size_t hi, const char *op, item_fn item,
		      const void *arg)
{
	if (hi - lo == 1) {
		item(c, b, lo, arg);
		return;
	}
	size_t mid = lo + (hi - lo) / 2;
	buf_puts(b, "(");
	emit_tree(c, b, lo, mid, op, item, arg);
	buf_puts(b, op);
	emit_tree(c, b, mid, hi, op, item, arg);
	buf_puts(b, ")");
}

typedef struct elems {
	const opnd *o;
	enum ty ty;
	const query_value *v;
} elems;

/* Element i of the array at o equals element i of the list. */
static void elem_eq(cc *c, buf *b, size_t i, const void *arg)
{
	const elems *x = arg;
	char qb[QUOTE_MAX];
	opnd *e = mem_alloc(sizeof *e);
	if (!e) {
		query_fail_errno(c, -ENOMEM, "query");
		return;
	}
	*e = *x->o;
	if (query_path_append_index(&e->p, (uint32_t)i)) {
		query_fail(c, "list value for '%s' is nested too deeply",
			   query_quote(x->o->text, qb));
	} else {
		opnd_set_path(c, e);
		enum ty et = TY_RUNTIME;
		if (x->ty == TY_REPEATED)
			resolve(c, &e->p, x->o->text, false, &et);
		emit_eq(c, b, e, et, &x->v->u.list.items[i]);
	}
	mem_free(e);
}

/* The operand equals list element i. */
static void any_eq(cc *c, buf *b, size_t i, const void *arg)
{
	const elems *x = arg;
	emit_eq(c, b, x->o, x->ty, &x->v->u.list.items[i]);
}

/* The element type of a repeated field: the resolver's answer for path[0]. */
static enum ty elem_ty(cc *c, const opnd *o)
{
	query_path elem = o->p;
	enum ty et = TY_RUNTIME;
	if (!query_path_append_index(&elem, 0))
		resolve(c, &elem, o->text, false, &et);
	return et;
}

/* Same length, and each element equal in order. */
static void emit_list_eq(cc *c, buf *b, const opnd *o, enum ty ty, const query_value *v)
{
	char qb[QUOTE_MAX];
	size_t n = v->u.list.n;
	if (o->col || o->each || (ty != TY_RUNTIME && ty != TY_REPEATED)) {
		type_mismatch(c, o, ty, QUERY_EQUALS, v);
		return;
	}
	if (n > QUERY_MAX_IN) {
		query_fail(c, "list value for '%s' has more than %d elements",
			   query_quote(o->text, qb), QUERY_MAX_IN);
		return;
	}
	if (n == 0 && ty == TY_REPEATED) {
		/* proto3 JSON leaves empty repeated fields out. */
		buf_puts(b, "(IFNULL(json_array_length(json,");
		put_path(b, o);
		buf_puts(b, "),0) = 0)");
		return;
	}
	buf_puts(b, "(");
	put_t(b, o);
	buf_puts(b, " = 'array' AND json_array_length(json,");
	put_path(b, o);
	buf_puts(b, ") = ");
	query_put_param(b, query_param_int(c, (int64_t)n));
	if (n) {
		elems x = {o, ty, v};
		buf_puts(b, " AND ");
		emit_tree(c, b, 0, n, " AND ", elem_eq, &x);
	}
	buf_puts(b, ")");
}

static void emit_rt_eq(cc *c, buf *b, const opnd *o, const query_value *v)
{
	double d;
	int64_t i;
	bool integral;
	if (v->type == QUERY_BOOL) {
		buf_puts(b, "(");
		put_t(b, o);
		buf_puts(b, v->u.boolean ? " = 'true')" : " = 'false')");
	} else if (rt_numeric(v, &d, &i, &integral)) {
		buf_puts(b, "(");
		query_emit_operand(b, o);
		if (integral) {
			/* A JSON number, or the integer string proto3 writes for int64; not a
			 * bool, which json_extract also reads as 0 or 1. */
			int pi = query_param_int(c, i), pt = bind_i64_text(c, i);
			buf_puts(b, " IN (");
			query_put_param(b, pi);
			buf_puts(b, ",");
			query_put_param(b, pt);
			buf_puts(b, ") AND ");
			put_t(b, o);
			buf_puts(b, " NOT IN ('true','false'))");
		} else {
			buf_puts(b, " = ");
			query_put_param(b, query_param_real(c, d));
			buf_puts(b, ")");
		}
	} else {
		/* json_extract gives a JSON string's text, a number as a number (never equal to
		 * text), and an array's or object's JSON text: only a string that starts like
		 * one needs the type checked, which reads the record's JSON once more for every
		 * row that an expression index on the path found. */
		const char *str = v->u.string;
		buf_puts(b, "(");
		if (str[0] == '{' || str[0] == '[') {
			put_t(b, o);
			buf_puts(b, " = 'text' AND ");
		}
		query_emit_operand(b, o);
		buf_puts(b, " = ");
		query_put_param(b, query_param_text(c, str, strlen(str)));
		buf_puts(b, ")");
	}
}

static void emit_eq(cc *c, buf *b, const opnd *o, enum ty ty, const query_value *v)
{
	char qb[QUOTE_MAX];
	rhs r[2];
	if (bad_value(c, v))
		return;
	switch (v->type) {
	case QUERY_NULL:
		if (o->col) {
			buf_puts(b, "0");
		} else {
			buf_puts(b, "(");
			query_emit_operand(b, o);
			buf_puts(b, " IS NULL)");
		}
		return;
	case QUERY_STRUCT:
		query_fail(
			c,
			"'%s' cannot be compared with a Struct: compare its fields with longer paths",
			query_quote(o->text, qb));
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
	buf_puts(b, "(");
	query_emit_lhs(b, o, ty, false);
	buf_puts(b, n == 1 ? " = " : " IN (");
	put_rhs(b, r[0]);
	if (n == 2) {
		buf_puts(b, ",");
		put_rhs(b, r[1]);
		buf_puts(b, ")");
	}
	buf_puts(b, ")");
}

static void emit_in(cc *c, buf *b, const opnd *o, enum ty ty, const query_value *v)
{
	char qb[QUOTE_MAX];
	if (bad_value(c, v))
		return;
	if (v->type != QUERY_LIST) {
		query_fail(c, "IN on '%s' needs a list value, not %s", query_quote(o->text, qb),
			   vtype_name(v));
		return;
	}
	size_t n = v->u.list.n;
	if (n > QUERY_MAX_IN) {
		query_fail(c, "IN on '%s' has more than %d values", query_quote(o->text, qb),
			   QUERY_MAX_IN);
		return;
	}
	if (n == 0) {
		buf_puts(b, "0");
		return;
	}
	const query_value *items = v->u.list.items;
	if (typed_scalar(ty)) {
		/* One IN list, which an expression index can serve. */
		bool nulls = false, first = true;
		buf_puts(b, "(");
		query_emit_lhs(b, o, ty, false);
		buf_puts(b, " IN (");
		for (size_t i = 0; i < n && !c->rc; i++) {
			rhs r[2];
			if (items[i].type == QUERY_NULL) {
				nulls = true;
				continue;
			}
			int k = typed_rhs(c, o, ty, QUERY_IN, &items[i], r);
			for (int j = 0; j < k; j++) {
				buf_puts(b, first ? "" : ",");
				put_rhs(b, r[j]);
				first = false;
			}
		}
		buf_puts(b, ")");
		if (nulls && !o->col) {
			buf_puts(b, " OR ");
			query_emit_operand(b, o);
			buf_puts(b, " IS NULL");
		}
		buf_puts(b, ")");
		return;
	}
	elems x = {o, ty, v};
	buf_puts(b, "(");
	emit_tree(c, b, 0, n, " OR ", any_eq, &x);
	buf_puts(b, ")");
}

static void emit_order_cmp(cc *c, buf *b, const opnd *o, enum ty ty, enum query_op op,
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
		buf_puts(b, "(");
		query_emit_lhs(b, o, ty, true);
		buf_puts(b, " ");
		buf_puts(b, op_sql[op]);
		buf_puts(b, " ");
		put_rhs(b, r[0]);
		buf_puts(b, ")");
	} else if (rt_numeric(v, &d, &i, &integral)) {
		int p = integral ? query_param_int(c, i) : query_param_real(c, d);
		buf_puts(b, "(");
		put_rt_num(b, o);
		buf_puts(b, " ");
		buf_puts(b, op_sql[op]);
		buf_puts(b, " ");
		query_put_param(b, p);
		buf_puts(b, ")");
	} else if (v->type == QUERY_STRING) {
		buf_puts(b, "(");
		put_t(b, o);
		buf_puts(b, " = 'text' AND ");
		query_emit_operand(b, o);
		buf_puts(b, " ");
		buf_puts(b, op_sql[op]);
		buf_puts(b, " ");
		query_put_param(b, query_param_text(c, v->u.string, strlen(v->u.string)));
		buf_puts(b, ")");
	} else {
		type_mismatch(c, o, ty, op, v);
	}
}

/* EXISTS over the elements of the array at o, each compared for equality with v. */
static void emit_any(cc *c, buf *b, const opnd *o, enum ty et, const query_value *v)
{
	opnd *e = mem_alloc(sizeof *e);
	if (!e) {
		query_fail_errno(c, -ENOMEM, "query");
		return;
	}
	*e = *o;
	e->each = true;
	buf_puts(b, "EXISTS (SELECT 1 FROM json_each(records.json,");
	put_path(b, o);
	buf_puts(b, ") WHERE ");
	emit_eq(c, b, e, et, v);
	buf_puts(b, ")");
	mem_free(e);
}

static void emit_contains(cc *c, buf *b, const opnd *o, enum ty ty, const query_value *v)
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
		buf_puts(b, "(instr(");
		query_emit_operand(b, o);
		buf_puts(b, ",");
		query_put_param(b, query_param_text(c, v->u.string, strlen(v->u.string)));
		buf_puts(b, ") > 0)");
	} else if (ty == TY_REPEATED) {
		buf_puts(b, "(");
		emit_any(c, b, o, elem_ty(c, o), v);
		buf_puts(b, ")");
	} else if (ty == TY_RUNTIME) {
		buf_puts(b, "(CASE ");
		put_t(b, o);
		if (v->type == QUERY_STRING) {
			buf_puts(b, " WHEN 'text' THEN instr(");
			query_emit_operand(b, o);
			buf_puts(b, ",");
			query_put_param(b, query_param_text(c, v->u.string, strlen(v->u.string)));
			buf_puts(b, ") > 0");
		}
		buf_puts(b, " WHEN 'array' THEN ");
		emit_any(c, b, o, TY_RUNTIME, v);
		buf_puts(b, " ELSE 0 END)");
	} else {
		query_fail(c, "CONTAINS needs a string or repeated field; '%s' is %s",
			   query_quote(o->text, qb), query_ty_names[ty]);
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
		query_fail(c, "too many filters (at most %d)", QUERY_MAX_FILTERS);
		return;
	}
	if ((unsigned)op > QUERY_NOT_EXISTS) {
		query_fail(c, "unknown operator %d on '%s'", (int)op, query_quote(path, qb));
		return;
	}
	if (op != QUERY_EXISTS && op != QUERY_NOT_EXISTS && value_absent(v)) {
		query_fail(c, "%s on '%s' needs a value%s (only EXISTS and NOT_EXISTS take none)",
			   op_names[op], query_quote(path, qb),
			   v->type == QUERY_ABSENT ? "" : " in every element of its list");
		return;
	}
	if (query_emit_key(c, path, false, &k))
		return;
	buf *b = &c->w;
	if (b->len)
		buf_puts(b, " AND ");
	switch (op) {
	case QUERY_EQUALS:
		emit_eq(c, b, &k.o, k.ty, v);
		break;
	case QUERY_NOT_EQUALS:
		buf_puts(b, "(");
		emit_eq(c, b, &k.o, k.ty, v);
		buf_puts(b, " IS NOT 1)");
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
			buf_puts(b, op == QUERY_EXISTS ? "1" : "0");
		} else {
			buf_puts(b, "(");
			put_t(b, &k.o);
			buf_puts(b, op == QUERY_EXISTS ? " IS NOT NULL)" : " IS NULL)");
		}
		break;
	}
}

/* ---- filter sets: Structs flattened to (path, op, value) leaves ---- */

/* "prefix.key" (or key), malloc'd. */
static char *join_path(cc *c, const char *prefix, const char *key)
{
	size_t pl = prefix ? strlen(prefix) + 1 : 0, kl = strlen(key);
	char *path = mem_alloc(pl + kl + 1);
	if (!path) {
		query_fail_errno(c, -ENOMEM, "query");
		return NULL;
	}
	if (prefix) {
		memcpy(path, prefix, pl - 1);
		path[pl - 1] = '.';
	}
	memcpy(path + pl, key, kl + 1);
	return path;
}

void query_emit_leaf(cc *c, const char *prefix, const char *key, enum query_op op,
		     const query_value *v)
{
	if (c->rc)
		return;
	if (c->nleaves == QUERY_MAX_FILTERS) {
		query_fail(c, "too many filters (at most %d)", QUERY_MAX_FILTERS);
		return;
	}
	if (c->nleaves == c->capleaves) {
		size_t cap = c->capleaves ? 2 * c->capleaves : 8;
		leaf *nl = mem_realloc(c->leaves, cap * sizeof *nl);
		if (!nl) {
			query_fail_errno(c, -ENOMEM, "query");
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
		if (!query_value_to_i64(v->u.number, &i) || i < 0 || i > QUERY_NOT_EXISTS)
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
		return query_fail(c,
				  "unknown operator for '%s' (use a FilterOperator name or number)",
				  query_quote(key, qb));
	query_emit_leaf(c, prefix, key, op, val);
	return 1;
}

/* Every key of a Struct an equality, nested Structs extending the path. */
void query_emit_struct(cc *c, const char *prefix, const query_value *st, bool operators,
		       unsigned depth)
{
	char qb[QUOTE_MAX];
	if (depth > QUERY_PATH_MAX_SEGMENTS) {
		query_fail(c, "filter Struct nested too deeply at '%s'", query_quote(prefix, qb));
		return;
	}
	for (size_t i = 0; i < st->u.object.n && !c->rc; i++) {
		const query_member *m = &st->u.object.members[i];
		const query_value *v = m->value;
		if (!m->key || !v) {
			query_fail(c, "filter Struct has an entry without a key or value");
			return;
		}
		if (v->type != QUERY_STRUCT) {
			query_emit_leaf(c, prefix, m->key, QUERY_EQUALS, v);
			continue;
		}
		if (operators && operator_struct(c, prefix, m->key, v))
			continue;
		if (v->u.object.n == 0) {
			query_fail(c, "empty Struct for '%s': nothing to compare",
				   query_quote(m->key, qb));
			return;
		}
		char *sub = join_path(c, prefix, m->key);
		if (!sub)
			return;
		if (strlen(sub) >= QUERY_PATH_TEXT_MAX)
			query_fail(c, "filter path starting '%s' is too long",
				   query_quote(sub, qb));
		else
			query_emit_struct(c, sub, v, operators, depth + 1);
		mem_free(sub);
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
void query_emit_leaves(cc *c)
{
	if (c->nleaves)
		qsort(c->leaves, c->nleaves, sizeof *c->leaves, leaf_cmp);
	for (size_t i = 0; i < c->nleaves && !c->rc; i++)
		emit_filter(c, c->leaves[i].path, c->leaves[i].op, c->leaves[i].v);
}

void query_emit_label(cc *c, const query_label *l)
{
	buf *b = &c->w;
	if (!l->key || !l->value) {
		query_fail(c, "label filter without a key or value");
		return;
	}
	if (++c->nconds > QUERY_MAX_FILTERS) {
		query_fail(c, "too many filters (at most %d)", QUERY_MAX_FILTERS);
		return;
	}
	/* json_each rather than a JSON path: a label key may hold any character. */
	int pk = query_param_text(c, l->key, strlen(l->key));
	int pv = query_param_text(c, l->value, strlen(l->value));
	if (b->len)
		buf_puts(b, " AND ");
	buf_puts(b, "EXISTS (SELECT 1 FROM json_each(records.labels) WHERE key = ");
	query_put_param(b, pk);
	buf_puts(b, " AND value = ");
	query_put_param(b, pv);
	buf_puts(b, ")");
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
		if (ch >= 0x80 || (ch >= '0' && ch <= '9') ||
		    ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z'))
			return true;
	}
	return false;
}

/* Each term a quoted FTS5 string ('"' doubled), terms ANDed. */
void query_emit_fts(cc *c, const char *text)
{
	size_t len = strlen(text), i = 0;
	unsigned terms = 0;
	bool blank = true;
	buf f = BUF_INIT;
	if (len > QUERY_MAX_TEXT) {
		query_fail(c, "full_text longer than %d bytes", QUERY_MAX_TEXT);
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
			query_fail(c, "full_text has more than %d terms", MAX_FTS_TERMS);
			break;
		}
		buf_puts(&f, terms > 1 ? " AND \"" : "\"");
		for (size_t j = start; j < i; j++)
			buf_append(&f, text[j] == '"' ? "\"\"" : text + j, text[j] == '"' ? 2 : 1);
		buf_puts(&f, "\"");
	}
	if (blank || c->rc) {
		buf_free(&f);
		return;
	}
	if (!terms)
		buf_puts(&f, "\"\""); /* an empty phrase: matches nothing */
	if (f.failed) {
		query_fail_errno(c, -ENOMEM, "query");
	} else {
		c->fts = true;
		int p = query_param_text(c, f.text, f.len);
		if (c->w.len)
			buf_puts(&c->w, " AND ");
		buf_puts(&c->w, "records_fts MATCH ");
		query_put_param(&c->w, p);
		c->fts_param = p;
		c->fts_wlen = c->w.len;
	}
	buf_free(&f);
}
