/* The order of a query: order_by parsed into keys (each ascending or descending) and
 * written as the ORDER BY, and as the result columns a page token is made from. */
#include <errno.h>
#include <strings.h>

#include "base/mem.h"
#include "store/query_int.h"

void query_order_key(const cc *c, buf *b, const key *k)
{
	if (k->score)
		buf_puts(b, c->fts ? "-bm25(records_fts)" : "0.0");
	else if (k->o.col || k->ty == TY_RUNTIME)
		query_emit_operand(b, &k->o);
	else
		query_emit_lhs(b, &k->o, k->ty, true);
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

static int order_item(cc *c, const char *s, size_t len, bool allow_score, bool *dir_given, order *o)
{
	char qb[QUOTE_MAX], qk[QUOTE_MAX];
	size_t a = 0, e;
	while (a < len && is_ws(s[a]))
		a++;
	while (len > a && is_ws(s[len - 1]))
		len--;
	char *item = mem_strndup(s + a, len - a);
	if (!item) {
		query_fail_errno(c, -ENOMEM, "query");
		return c->rc;
	}
	/* The key ends at the first blank outside a quoted segment. */
	bool quoted = false;
	for (e = 0; item[e] && (quoted || !is_ws(item[e])); e++)
		quoted ^= item[e] == '"';
	const char *dir = item + e;
	while (is_ws(*dir))
		dir++;
	item[e] = '\0';
	key *k = &o->k[o->n];
	if (!item[0]) {
		query_fail(c, "empty key in order_by");
	} else if (o->n == (allow_score ? 1u : QUERY_MAX_ORDER_KEYS)) {
		query_fail(c, "order_by has more than %d key%s",
			   allow_score ? 1 : QUERY_MAX_ORDER_KEYS, allow_score ? "" : "s");
	} else if (*dir && strcasecmp(dir, "asc") && strcasecmp(dir, "desc")) {
		query_fail(c, "order_by: expected asc or desc after '%s', found '%s'",
			   query_quote(item, qk), query_quote(dir, qb));
	} else if (!query_emit_key(c, item, allow_score, k)) {
		k->o.text = NULL; /* item is freed below */
		*dir_given = *dir;
		o->desc[o->n] = *dir && !strcasecmp(dir, "desc");
		if (k->ty == TY_MESSAGE || k->ty == TY_REPEATED || k->ty == TY_MAP)
			query_fail(c, "cannot order by '%s' (%s)", query_quote(item, qb),
				   query_ty_names[k->ty]);
		for (unsigned i = 0; i < o->n && !c->rc; i++)
			if (same_key(&o->k[i], k))
				query_fail(c, "order_by names '%s' twice", query_quote(item, qb));
		o->n++;
	}
	mem_free(item);
	return c->rc;
}

/* The first ',' outside a quoted segment (a JSON key may hold one), or NULL. */
static const char *next_comma(const char *s)
{
	bool quoted = false;
	for (; *s; s++) {
		if (*s == ',' && !quoted)
			return s;
		quoted ^= *s == '"';
	}
	return NULL;
}

int query_order_parse(cc *c, const char *s, bool allow_score, bool *dir_given, order *o)
{
	o->n = 0;
	*dir_given = false;
	size_t i = 0;
	while (s && is_ws(s[i]))
		i++;
	if (!s || !s[i])
		return 0;
	for (;;) {
		const char *comma = next_comma(s);
		size_t n = comma ? (size_t)(comma - s) : strlen(s);
		if (order_item(c, s, n, allow_score, dir_given, o))
			return c->rc;
		if (!comma)
			return 0;
		s = comma + 1;
	}
}

void query_order_default(key *k, const char *col, bool score)
{
	memset(&k->o, 0, offsetof(opnd, p));
	k->o.col = score ? NULL : col;
	k->o.text = col;
	k->ty = score ? TY_NUMBER : TY_MICROS;
	k->score = score;
}

void query_order_by(const cc *c, buf *b, const order *o)
{
	buf_puts(b, " ORDER BY ");
	for (unsigned i = 0; i < o->n; i++) {
		query_order_key(c, b, &o->k[i]);
		buf_puts(b, o->desc[i] ? " DESC, " : " ASC, ");
	}
	buf_puts(b, o->desc[o->n - 1] ? "rid DESC" : "rid ASC");
}
