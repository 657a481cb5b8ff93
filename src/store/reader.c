#include "store/reader.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "store/store_int.h"

#define READER_CACHE 32

/* The reads every reader runs are prepared once per connection, on first use, and kept
 * apart from the cache: a Get costs no lookup, and a vector search can read hit after hit
 * with the same statement. */
enum { RD_GET, RD_HIT, RD_VECTOR, RD_COUNT_KEPT, RD_COUNT_ALL, RD_ORDERED, RD_FIXED };

static const char *const fixed_sql[RD_FIXED] = {
	[RD_GET] = "SELECT data FROM records WHERE id = ?1",
	[RD_HIT] = "SELECT data, id FROM records WHERE rid = ?1",
	[RD_VECTOR] = "SELECT rid, json_extract(json, ?1) FROM records",
	/* The count the writer keeps (writer.c, schema version 1); a database of an older
	 * schema, which no writer has opened since, is counted. */
	[RD_COUNT_KEPT] = "SELECT n FROM records_count",
	[RD_COUNT_ALL] = "SELECT count(*) FROM records",
	[RD_ORDERED] = "SELECT ordered FROM records_count",
};

struct store_reader {
	sqlite3 *db;
	sqlite3_stmt *begin, *commit; /* prepared once: every read runs both */
	sqlite3_stmt *fixed[RD_FIXED];
	unsigned fixed_used; /* bit per fixed statement stepped since store_reader_end */
	struct {
		sqlite3_stmt *st;
		bool used;
	} cache[READER_CACHE];
	size_t ncache;
	void *owner;
	/* store_reader_query's page, for store_reader_page_token. */
	const query *q;
	sqlite3_stmt *page;
	int64_t total;
};

/* Steps a statement that returns no rows, then resets it. The SQLite code. */
static int run(sqlite3_stmt *st)
{
	int src = sqlite3_step(st);
	sqlite3_reset(st);
	return src == SQLITE_DONE ? SQLITE_OK : src;
}

int store_reader_open(const char *path, int busy_timeout_ms, store_reader **out)
{
	store_reader *r = mem_calloc(1, sizeof(*r));
	if (!r)
		return store_err_set(-ENOMEM, "out of memory");
	int src = db_open(path, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, &r->db);
	if (src == SQLITE_OK) {
		sqlite3_extended_result_codes(r->db, 1);
		sqlite3_busy_timeout(r->db, busy_timeout_ms);
		src = sqlite3_prepare_v3(r->db, "BEGIN", -1, SQLITE_PREPARE_PERSISTENT, &r->begin,
					 NULL);
	}
	if (src == SQLITE_OK)
		src = sqlite3_prepare_v3(r->db, "COMMIT", -1, SQLITE_PREPARE_PERSISTENT, &r->commit,
					 NULL);
	if (src == SQLITE_OK) {
		*out = r;
		return 0;
	}
	int rc = db_fail(r->db, src, "open reader");
	store_reader_close(r);
	return rc;
}

void store_reader_close(store_reader *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->ncache; i++)
		sqlite3_finalize(r->cache[i].st);
	for (int i = 0; i < RD_FIXED; i++)
		sqlite3_finalize(r->fixed[i]);
	sqlite3_finalize(r->begin);
	sqlite3_finalize(r->commit);
	sqlite3_close(r->db);
	mem_free(r);
}

void store_reader_set_owner(store_reader *r, void *owner) { r->owner = owner; }
void *store_reader_owner(const store_reader *r) { return r->owner; }

int store_reader_begin(store_reader *r)
{
	int src = run(r->begin);
	return src == SQLITE_OK ? 0 : db_fail(r->db, src, "begin read");
}

bool store_reader_end(store_reader *r)
{
	for (size_t i = 0; i < r->ncache; i++) {
		sqlite3_clear_bindings(r->cache[i].st);
		r->cache[i].used = false;
	}
	r->q = NULL;
	r->page = NULL;
	r->fixed_used = 0;
	/* Every statement, the fixed ones too: one left stepping would hold the snapshot. */
	for (sqlite3_stmt *st = sqlite3_next_stmt(r->db, NULL); st;
	     st = sqlite3_next_stmt(r->db, st))
		sqlite3_reset(st);
	if (!sqlite3_get_autocommit(r->db))
		run(r->commit);
	return sqlite3_get_autocommit(r->db);
}

int store_reader_prepare(store_reader *r, const char *sql, sqlite3_stmt **st)
{
	size_t spare = READER_CACHE;
	for (size_t i = 0; i < r->ncache; i++) {
		if (r->cache[i].used)
			continue;
		if (!strcmp(sqlite3_sql(r->cache[i].st), sql)) {
			r->cache[i].used = true;
			*st = r->cache[i].st;
			return 0;
		}
		spare = i;
	}
	size_t slot = r->ncache < READER_CACHE ? r->ncache : spare;
	if (slot == READER_CACHE)
		return store_err_set(-E2BIG, "more than %d statements in one read", READER_CACHE);
	sqlite3_stmt *p = NULL;
	int src = sqlite3_prepare_v3(r->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &p, NULL);
	if (src != SQLITE_OK)
		return db_fail(r->db, src, "prepare");
	if (slot == r->ncache)
		r->ncache++;
	else
		sqlite3_finalize(r->cache[slot].st);
	r->cache[slot].st = p;
	r->cache[slot].used = true;
	*st = p;
	return 0;
}

/* One of the reader's own statements, ready to bind: store_reader_end resets them all, so
 * only a second use in one read resets it here. */
static int fixed(store_reader *r, int which, sqlite3_stmt **st)
{
	if (!r->fixed[which]) {
		int src = sqlite3_prepare_v3(r->db, fixed_sql[which], -1, SQLITE_PREPARE_PERSISTENT,
					     &r->fixed[which], NULL);
		if (src != SQLITE_OK)
			return db_fail(r->db, src, "prepare");
	} else if (r->fixed_used & 1u << which) {
		sqlite3_reset(r->fixed[which]);
	}
	r->fixed_used |= 1u << which;
	*st = r->fixed[which];
	return 0;
}

int store_reader_get(store_reader *r, const char *id, store_record *out)
{
	sqlite3_stmt *st = NULL;
	int rc = fixed(r, RD_GET, &st);
	if (rc)
		return rc;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	int src = sqlite3_step(st);
	if (src == SQLITE_DONE)
		return store_err_set(-ENOENT, "no record '%.200s'", id);
	if (src != SQLITE_ROW)
		return db_fail(r->db, src, "get");
	*out = (store_record){.id = id,
			      .data = sqlite3_column_blob(st, 0),
			      .data_len = (size_t)sqlite3_column_bytes(st, 0)};
	return 0;
}

int store_reader_get_hit(store_reader *r, const store_hit *h, store_record *out)
{
	sqlite3_stmt *st = NULL;
	int rc = fixed(r, RD_HIT, &st);
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, h->rid);
	int src = sqlite3_step(st);
	if (src == SQLITE_DONE)
		return store_err_set(-ENOENT, "record of row %lld is gone", (long long)h->rid);
	if (src != SQLITE_ROW)
		return db_fail(r->db, src, "get");
	size_t len = (size_t)sqlite3_column_bytes(st, 0);
	*out = (store_record){.data = sqlite3_column_blob(st, 0),
			      .data_len = len,
			      .score = h->similarity};
	return 0;
}

const char *store_reader_hit_id(store_reader *r)
{
	const char *id =
		r->fixed[RD_HIT] ? (const char *)sqlite3_column_text(r->fixed[RD_HIT], 1) : NULL;
	return id ? id : "";
}

int store_reader_count(store_reader *r, int64_t *n)
{
	sqlite3_stmt *st = NULL;
	int rc = fixed(r, RD_COUNT_KEPT, &st);
	if (rc && (rc = fixed(r, RD_COUNT_ALL, &st)))
		return rc;
	int src = sqlite3_step(st);
	if (src != SQLITE_ROW)
		return db_fail(r->db, src, "count");
	*n = sqlite3_column_int64(st, 0);
	return 0;
}

/* ---- compiled queries ---- */

static int query_stmt(store_reader *r, const char *sql, const query *q, sqlite3_stmt **st)
{
	int rc = store_reader_prepare(r, sql, st);
	if (!rc && (rc = query_bind(*st, q)))
		store_err_set(rc, "binding the query: %s", strerror(-rc));
	return rc;
}

/* The query's fast page query when the records allow it (query_fast_sql), else its own. */
static const char *page_sql(store_reader *r, const query *q)
{
	sqlite3_stmt *st = NULL;
	if (!query_fast_sql(q) || fixed(r, RD_ORDERED, &st) || sqlite3_step(st) != SQLITE_ROW ||
	    !sqlite3_column_int(st, 0))
		return query_sql(q);
	return query_fast_sql(q);
}

int store_reader_query(store_reader *r, const query *q, store_record_fn fn, void *ctx, bool *more,
		       int64_t *total)
{
	sqlite3_stmt *st, *count;
	*more = false;
	/* The count first: a filtered List's next-page token carries it (query.h). */
	int64_t carried = query_carried_total(q);
	int rc, src;
	if (carried >= 0) {
		*total = carried;
	} else {
		if ((rc = query_stmt(r, query_count_sql(q), q, &count)))
			return rc;
		src = sqlite3_step(count);
		if (src != SQLITE_ROW)
			return db_fail(r->db, src, "count");
		*total = sqlite3_column_int64(count, 0);
	}
	r->total = *total;
	if ((rc = query_stmt(r, page_sql(r, q), q, &st)))
		return rc;
	r->q = q;
	r->page = st;
	int32_t page = query_page_size(q);
	int n = 0;
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		if (n == page) {
			*more = true;
			break;
		}
		store_record rec = {.data_len = (size_t)sqlite3_column_bytes(st, QUERY_COL_DATA),
				    .data = sqlite3_column_blob(st, QUERY_COL_DATA),
				    .id = (const char *)sqlite3_column_text(st, QUERY_COL_ID),
				    .score = sqlite3_column_double(st, QUERY_COL_SCORE)};
		rc = fn(ctx, &rec);
		if (rc > 0) {
			*more = true;
			break;
		}
		if (rc)
			return rc;
		n++;
	}
	if (src != SQLITE_ROW && src != SQLITE_DONE)
		return db_fail(r->db, src, "query");
	return 0;
}

int store_reader_page_token(store_reader *r, char **token)
{
	if (!r->q)
		return store_err_set(-EINVAL, "no query at hand");
	return query_token_next_total(r->q, r->page, r->total, token);
}

/* ---- scans ---- */

int store_reader_scan(store_reader *r, const store_match *where, size_t n, int flags,
		      store_record_fn fn, void *ctx)
{
	if (n > STORE_SCAN_MATCH_MAX)
		return store_err_set(-EINVAL, "at most %d matches", STORE_SCAN_MATCH_MAX);
	/* Paths are spliced in as the query module renders index expressions (from a parsed
	 * path: identifier characters and digits), so that an index on the path serves the
	 * scan; values are bound. */
	char sql[128 + STORE_SCAN_MATCH_MAX * (QUERY_INDEX_EXPR_MAX + 16)];
	size_t len = (size_t)snprintf(sql, sizeof(sql), "SELECT id, data%s FROM records",
				      flags & STORE_SCAN_JSON ? ", json" : "");
	for (size_t i = 0; i < n; i++) {
		char expr[QUERY_INDEX_EXPR_MAX], name[QUERY_INDEX_NAME_MAX];
		if (query_index_field(where[i].path, expr, name))
			return store_err_set(-EINVAL, "scan path '%.100s': %s", where[i].path,
					     store_err_msg());
		len += (size_t)snprintf(sql + len, sizeof(sql) - len, "%s %s = ?%zu",
					i ? " AND" : " WHERE", expr, i + 1);
	}
	snprintf(sql + len, sizeof(sql) - len, " ORDER BY rid");
	sqlite3_stmt *st;
	int rc = store_reader_prepare(r, sql, &st);
	if (rc)
		return rc;
	for (size_t i = 0; i < n; i++)
		sqlite3_bind_text(st, (int)i + 1, where[i].value, -1, SQLITE_STATIC);
	int src = SQLITE_DONE;
	while (!rc && (src = sqlite3_step(st)) == SQLITE_ROW) {
		store_record rec = {.id = (const char *)sqlite3_column_text(st, 0),
				    .data = sqlite3_column_blob(st, 1),
				    .data_len = (size_t)sqlite3_column_bytes(st, 1)};
		if (flags & STORE_SCAN_JSON)
			rec.json = (const char *)sqlite3_column_text(st, 2);
		rc = fn(ctx, &rec);
	}
	if (!rc && src != SQLITE_DONE)
		rc = db_fail(r->db, src, "scan");
	sqlite3_reset(st);
	return rc;
}

/* ---- vector search: an exact scan ranked by cosine similarity ---- */

static int hit_cmp(const void *a, const void *b)
{
	const store_hit *x = a, *y = b;
	return x->similarity < y->similarity   ? 1
	       : x->similarity > y->similarity ? -1
					       : (x->rid > y->rid) - (x->rid < y->rid);
}

/* Cosine similarity of v with the JSON array of numbers in text; false when text is not
 * such an array of v's length (or has no norm). */
static bool cosine(const float *v, size_t n, double vnorm, const char *text, double *sim)
{
	const char *p = text;
	char *end;
	if (!p || *p != '[')
		return false;
	p++;
	double dot = 0, norm = 0;
	for (size_t i = 0; i < n; i++) {
		double x = strtod(p, &end);
		if (end == p)
			return false;
		dot += x * v[i];
		norm += x * x;
		p = end;
		if (*p != (i + 1 == n ? ']' : ','))
			return false;
		p++;
	}
	if (norm <= 0 || vnorm <= 0)
		return false;
	*sim = dot / (sqrt(norm) * vnorm);
	return true;
}

int store_reader_vector(store_reader *r, const query_path *path, const float *v, size_t n,
			double threshold, store_hit **hits, size_t *nhits)
{
	char jp[QUERY_PATH_TEXT_MAX];
	query_path_render(path, jp);
	double vnorm = 0;
	for (size_t i = 0; i < n; i++)
		vnorm += (double)v[i] * v[i];
	vnorm = sqrt(vnorm);
	sqlite3_stmt *st = NULL;
	int rc = fixed(r, RD_VECTOR, &st);
	if (rc)
		return rc;
	store_hit *h = NULL;
	size_t nh = 0, cap = 0;
	int src;
	sqlite3_bind_text(st, 1, jp, -1, SQLITE_TRANSIENT);
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		double sim;
		const char *text = (const char *)sqlite3_column_text(st, 1);
		if (!cosine(v, n, vnorm, text, &sim) || sim < threshold)
			continue;
		if (nh == cap) {
			cap = cap ? 2 * cap : 256;
			store_hit *more = mem_realloc(h, cap * sizeof(*more));
			if (!more) {
				mem_free(h);
				return store_err_set(-ENOMEM, "out of memory");
			}
			h = more;
		}
		h[nh++] = (store_hit){sim, sqlite3_column_int64(st, 0)};
	}
	if (src != SQLITE_DONE) {
		mem_free(h);
		return db_fail(r->db, src, "vector scan");
	}
	qsort(h, nh, sizeof(*h), hit_cmp);
	*hits = h;
	*nhits = nh;
	return 0;
}
