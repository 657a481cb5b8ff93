/* The query compiler: List and Search parameters to a page query and a count query over
 * the records (query.h). Its parts: the state of a compile (query_state.c), the values of
 * requests (query_value.c), the SQL of conditions (query_emit.c), the order
 * (query_order.c), page tokens (query_token.c). */
#include <errno.h>

#include "base/mem.h"
#include "store/query_int.h"

static int cc_init(cc *c, const query_schema *s)
{
	memset(c, 0, sizeof *c);
	c->s = s;
	c->q = mem_calloc(1, sizeof *c->q);
	if (s->nindexed)
		c->indexed = mem_calloc(s->nindexed, sizeof *c->indexed);
	if (!c->q || (s->nindexed && !c->indexed)) {
		query_fail_errno(c, -ENOMEM, "query");
		return c->rc;
	}
	c->q->carried = -1;
	if (s->token_key)
		memcpy(c->q->key, s->token_key, 16);
	if (s->scope)
		c->q->scope_hash =
			query_token_siphash(NULL, (const uint8_t *)s->scope, strlen(s->scope));
	for (size_t i = 0; i < s->nindexed; i++) {
		query_path p;
		/* An entry that is not a path cannot have an index: never matches. */
		if (s->indexed[i] && !query_path_parse(s->indexed[i], strlen(s->indexed[i]), &p))
			query_path_render(&p, c->indexed[c->nindexed++]);
	}
	return 0;
}

static void cc_done(cc *c)
{
	for (size_t i = 0; i < c->nleaves; i++)
		mem_free(c->leaves[i].path);
	mem_free(c->leaves);
	mem_free(c->indexed);
	buf_free(&c->w);
}

static void put_from_where(const cc *c, buf *b, const buf *cond)
{
	buf_puts(b, c->fts ? " FROM records JOIN records_fts ON records_fts.rowid = records.rid"
			   : " FROM records");
	if (cond->len) {
		buf_puts(b, " WHERE ");
		buf_append(b, cond->data, cond->len);
	}
}

/* The query takes both statements, or fails for want of memory and frees them. */
static void set_statements(cc *c, buf *page, buf *count, bool oom)
{
	if (oom || buf_terminate(page) || buf_terminate(count)) {
		query_fail_errno(c, -ENOMEM, "query");
		buf_free(page);
		buf_free(count);
		return;
	}
	c->q->sql = page->text;
	c->q->count_sql = count->text;
}

#define STR_(x) #x
#define STR(x) STR_(x)

/* Full text alone, ranked by score: FTS5 ranks and cuts the page by itself, and only the
 * rows kept are joined with `records` (whose data the general form would carry through
 * the sort of every match); the count needs no join at all. Ranking is O(matches): only
 * the newest QUERY_FTS_RANKED matches (by rid) are scored; when the page reaches past
 * them, the older matches follow them unranked (score 0), newest first (the reverse of
 * all this ascending). */
static void finish_fts_alone(cc *c, bool desc, int plimit, int poffset, bool past_cap)
{
	buf page = BUF_INIT, count = BUF_INIT;
	char cap[64];
	snprintf(cap, sizeof cap, " ORDER BY rowid DESC LIMIT -1 OFFSET %d", QUERY_FTS_RANKED);
	buf_puts(&page, "SELECT rid, id, data, labels, created_at, updated_at, f.score AS score"
			" FROM (SELECT rowid, score, grp FROM (SELECT rowid, -bm25(records_fts) AS"
			" score, 0 AS grp FROM records_fts WHERE records_fts MATCH ");
	query_put_param(&page, c->fts_param);
	buf_puts(&page, " ORDER BY rowid DESC LIMIT " STR(QUERY_FTS_RANKED) ")");
	if (past_cap) {
		buf_puts(&page,
			 " UNION ALL SELECT rowid, 0.0, 1 FROM (SELECT rowid FROM records_fts"
			 " WHERE records_fts MATCH ");
		query_put_param(&page, c->fts_param);
		buf_puts(&page, cap);
		buf_puts(&page, ")");
	}
	/* The order of the general form: score, then rid in the same direction. */
	buf_puts(&page, desc ? " ORDER BY grp ASC, score DESC, rowid DESC LIMIT "
			     : " ORDER BY grp DESC, score ASC, rowid ASC LIMIT ");
	query_put_param(&page, plimit);
	buf_puts(&page, " OFFSET ");
	query_put_param(&page, poffset);
	buf_puts(&page, desc ? ") AS f JOIN records ON records.rid = f.rowid"
			       " ORDER BY f.grp ASC, f.score DESC, rid DESC"
			     : ") AS f JOIN records ON records.rid = f.rowid"
			       " ORDER BY f.grp DESC, f.score ASC, rid ASC");
	buf_puts(&count, "SELECT count(*) FROM records_fts WHERE records_fts MATCH ");
	query_put_param(&count, c->fts_param);
	set_statements(c, &page, &count, false);
}

/* Full text alone in created_at order, where created_at never decreases in rid order (so
 * that the order is the rid's): FTS5 walks its index in rid order and stops at the page,
 * whatever the number of matches; scores only the rows of the page. */
static void fts_in_rid_order(cc *c, bool desc, int plimit, int poffset)
{
	buf page = BUF_INIT;
	buf_puts(&page, "SELECT rid, id, data, labels, created_at, updated_at, f.score AS score"
			" FROM (SELECT rowid, -bm25(records_fts) AS score FROM records_fts"
			" WHERE records_fts MATCH ");
	query_put_param(&page, c->fts_param);
	buf_puts(&page, desc ? " ORDER BY rowid DESC LIMIT " : " ORDER BY rowid ASC LIMIT ");
	query_put_param(&page, plimit);
	buf_puts(&page, " OFFSET ");
	query_put_param(&page, poffset);
	buf_puts(&page, desc ? ") AS f JOIN records ON records.rid = f.rowid ORDER BY rid DESC"
			     : ") AS f JOIN records ON records.rid = f.rowid ORDER BY rid ASC");
	if (page.failed || buf_terminate(&page)) {
		buf_free(&page);
		query_fail_errno(c, -ENOMEM, "query");
		return;
	}
	c->q->fast_sql = page.text;
}

/* Writes both statements. after: the keyset condition (List with a token), or NULL. */
static void finish(cc *c, const order *o, bool keys, const buf *after, int plimit, int poffset)
{
	buf page = BUF_INIT, count = BUF_INIT, where = BUF_INIT;
	buf_append(&where, c->w.data, c->w.len);
	if (after && after->len) {
		buf_puts(&where, where.len ? " AND " : "");
		buf_append(&where, after->data, after->len);
	}
	buf_puts(&page, "SELECT rid, id, data, labels, created_at, updated_at, ");
	buf_puts(&page, c->fts ? "-bm25(records_fts)" : "0.0");
	buf_puts(&page, " AS score");
	for (unsigned i = 0; keys && i < o->n; i++) {
		buf_puts(&page, ", ");
		query_order_key(c, &page, &o->k[i]);
	}
	put_from_where(c, &page, &where);
	query_order_by(c, &page, o);
	buf_puts(&page, " LIMIT ");
	query_put_param(&page, plimit);
	if (poffset) {
		buf_puts(&page, " OFFSET ");
		query_put_param(&page, poffset);
	}
	/* Without conditions, the count the writer keeps (writer.c): one row, not a scan; full
	 * text alone counts in its own index (a records row for each of its rows), not
	 * joined with the records. */
	if (!c->fts && !c->w.len) {
		buf_puts(&count, "SELECT n FROM records_count");
	} else if (c->fts && c->w.len == c->fts_wlen) {
		buf_puts(&count, "SELECT count(*) FROM records_fts WHERE records_fts MATCH ");
		query_put_param(&count, c->fts_param);
	} else {
		buf_puts(&count, "SELECT count(*)");
		put_from_where(c, &count, &c->w);
	}
	bool oom = where.failed || c->w.failed;
	buf_free(&where);
	set_statements(c, &page, &count, oom);
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

int query_compile_list(const query_schema *s, const query_list_params *p, query **out)
{
	cc c;
	order o;
	bool dir_given;
	*out = NULL;
	if (cc_init(&c, s))
		return cc_end(&c, out);
	c.q->list = true;
	if (p->page_size < 0 || p->page_size > QUERY_MAX_PAGE) {
		query_fail(&c, "page_size must be between 0 (default %d) and %d, not %d",
			   QUERY_DEFAULT_PAGE, QUERY_MAX_PAGE, (int)p->page_size);
		return cc_end(&c, out);
	}
	c.q->page_size = p->page_size ? p->page_size : QUERY_DEFAULT_PAGE;
	if (p->filter && p->filter->type != QUERY_STRUCT)
		query_fail(&c, "filter must be a Struct");
	else if (p->filter)
		query_emit_struct(&c, NULL, p->filter, false, 0);
	query_emit_leaves(&c);
	if (!c.rc && !query_order_parse(&c, p->order_by, false, &dir_given, &o) && !o.n) {
		query_order_default(&o.k[0], "created_at", false);
		o.desc[0] = false;
		o.n = 1;
	}
	if (c.w.failed)
		query_fail_errno(&c, -ENOMEM, "query");
	if (c.rc)
		return cc_end(&c, out);
	c.q->nkeys = o.n;

	/* The query's identity: conditions, order and every value bound so far. */
	buf h = BUF_INIT, ob = BUF_INIT;
	query_order_by(&c, &ob, &o);
	buf_append(&h, c.w.data, c.w.len);
	buf_append(&h, "", 1);
	buf_append(&h, ob.data, ob.len);
	buf_append(&h, "", 1);
	query_token_hash_binds(&h, c.q);
	if (h.failed || ob.failed)
		query_fail_errno(&c, -ENOMEM, "query");
	else
		c.q->qhash = query_token_siphash(NULL, h.data, h.len);
	buf_free(&h);
	buf_free(&ob);

	c.q->carry = c.w.len > 0;
	buf after = BUF_INIT;
	if (!c.rc && p->page_token && *p->page_token)
		query_token_after(&c, p->page_token, &o, &after);
	if (after.failed)
		query_fail_errno(&c, -ENOMEM, "query");
	int plimit = query_param_int(&c, (int64_t)c.q->page_size + 1);
	if (!c.rc)
		finish(&c, &o, true, &after, plimit, 0);
	buf_free(&after);
	return cc_end(&c, out);
}

int query_compile_search(const query_schema *s, const query_search_params *p, query **out)
{
	cc c;
	order o;
	bool dir_given = false;
	const char *text = p->full_text && *p->full_text ? p->full_text : NULL;
	*out = NULL;
	if (cc_init(&c, s))
		return cc_end(&c, out);
	if (p->limit < 0 || p->limit > QUERY_MAX_PAGE) {
		query_fail(&c, "limit must be between 0 (default %d) and %d, not %d",
			   QUERY_DEFAULT_PAGE, QUERY_MAX_PAGE, (int)p->limit);
		return cc_end(&c, out);
	}
	if (p->offset < 0 || p->offset > QUERY_MAX_OFFSET) {
		query_fail(&c, "offset must be between 0 and %d, not %d", QUERY_MAX_OFFSET,
			   (int)p->offset);
		return cc_end(&c, out);
	}
	c.q->page_size = p->limit ? p->limit : QUERY_DEFAULT_PAGE;
	if (p->query && p->query->type != QUERY_STRUCT) {
		query_fail(&c, "query must be a Struct");
		return cc_end(&c, out);
	}
	/* SearchCollections' "full_text" key; the other keys are filters. */
	query_value rest = {.type = QUERY_STRUCT};
	query_member *members = NULL;
	if (p->query) {
		size_t n = p->query->u.object.n;
		members = mem_calloc(n ? n : 1, sizeof *members);
		if (!members) {
			query_fail_errno(&c, -ENOMEM, "query");
			return cc_end(&c, out);
		}
		for (size_t i = 0; i < n && !c.rc; i++) {
			const query_member *m = &p->query->u.object.members[i];
			if (!m->key || strcmp(m->key, "full_text")) {
				members[rest.u.object.n++] = *m;
			} else if (!m->value || m->value->type != QUERY_STRING) {
				query_fail(&c, "query: full_text must be a string");
			} else if (text) {
				query_fail(&c, "full_text given twice");
			} else {
				text = *m->value->u.string ? m->value->u.string : NULL;
			}
		}
		rest.u.object.members = members;
	}
	if (!c.rc && text)
		query_emit_fts(&c, text);
	for (size_t i = 0; i < p->nfilters && !c.rc; i++) {
		if (!p->filters[i].path) {
			query_fail(&c, "filter without a key");
			break;
		}
		query_emit_leaf(&c, NULL, p->filters[i].path, p->filters[i].op,
				&p->filters[i].value);
	}
	if (!c.rc && rest.u.object.n)
		query_emit_struct(&c, NULL, &rest, true, 0);
	query_emit_leaves(&c);
	for (size_t i = 0; i < p->nlabels && !c.rc; i++)
		query_emit_label(&c, &p->labels[i]);
	mem_free(members);
	if (!c.rc && !query_order_parse(&c, p->order_by, true, &dir_given, &o) && !o.n) {
		query_order_default(&o.k[0], c.fts ? "@score" : "created_at", c.fts);
		o.n = 1;
	}
	if (!dir_given)
		o.desc[0] = !p->ascending;
	int plimit = query_param_int(&c, c.q->page_size);
	int poffset = query_param_int(&c, p->offset);
	bool past_cap = (int64_t)p->offset + c.q->page_size > QUERY_FTS_RANKED;
	if (!c.rc && c.fts && c.w.len == c.fts_wlen && o.n == 1 && o.k[0].score)
		finish_fts_alone(&c, o.desc[0], plimit, poffset, past_cap);
	else if (!c.rc)
		finish(&c, &o, false, NULL, plimit, poffset);
	if (!c.rc && c.fts && c.w.len == c.fts_wlen && o.n == 1 && o.k[0].o.col &&
	    !strcmp(o.k[0].o.col, "created_at"))
		fts_in_rid_order(&c, o.desc[0], plimit, poffset);
	return cc_end(&c, out);
}

void query_free(query *q)
{
	if (!q)
		return;
	for (size_t i = 0; i < q->nbinds; i++)
		if (q->binds[i].type == QUERY_BIND_TEXT)
			mem_free((char *)q->binds[i].u.text.p);
	mem_free(q->binds);
	mem_free(q->sql);
	mem_free(q->count_sql);
	mem_free(q->fast_sql);
	mem_free(q);
}

const char *query_sql(const query *q) { return q->sql; }

const char *query_count_sql(const query *q) { return q->count_sql; }

const char *query_fast_sql(const query *q) { return q->fast_sql; }

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
	return rc == SQLITE_OK	    ? 0
	       : rc == SQLITE_NOMEM ? -ENOMEM
	       : rc == SQLITE_RANGE ? -EINVAL
				    : -EIO;
}

int query_index_field(const char *field, char expr[QUERY_INDEX_EXPR_MAX],
		      char name[QUERY_INDEX_NAME_MAX])
{
	cc c = {0};
	char qb[QUOTE_MAX];
	opnd o = {0};
	buf b = BUF_INIT;
	if (!field || !*field)
		return query_fail(&c, "indexed field is empty");
	if (field[0] == '@')
		return query_fail(
			&c, "indexed field '%s' must be a message field path, not a record column",
			query_quote(field, qb));
	if (query_path_parse(field, strlen(field), &o.p))
		return query_fail(&c, "invalid indexed field '%s': %s", query_quote(field, qb),
				  store_err_msg());
	/* Index expressions are SQL text: only what renders without quotes goes there. */
	if (!query_path_plain(&o.p))
		return query_fail(&c, "indexed field '%s' has a quoted segment: index plain names",
				  query_quote(field, qb));
	size_t n = query_path_render(&o.p, o.path);
	query_emit_operand(&b, &o);
	if (b.failed) {
		buf_free(&b);
		return -ENOMEM;
	}
	memcpy(expr, b.data, b.len);
	expr[b.len] = 0;
	buf_free(&b);
	snprintf(name, QUERY_INDEX_NAME_MAX, "ix_%016llx",
		 (unsigned long long)query_token_siphash(NULL, (const uint8_t *)o.path, n));
	return 0;
}
