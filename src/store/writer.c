#include "store/writer.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/mem.h"
#include "store/jdoc.h"
#include "store/query_path.h"
#include "store/records_schema.h"
#include "store/store_int.h"

enum {
	ST_BEGIN,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_SP_REQ,
	ST_RELEASE_REQ,
	ST_UNDO_REQ,
	ST_INSERT,
	ST_FTS_INSERT,
	ST_SELECT,
	ST_UPDATE,
	ST_FTS_UPDATE,
	ST_DELETE,
	ST_FTS_DELETE,
	ST_MERGE,
	ST_COUNT
};

/* json(?4) refuses malformed labels (the op fails with -EINVAL) so that label filters
 * never meet bad JSON later. */
static const char *const writer_sql[ST_COUNT] = {
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	[ST_SP_REQ] = "SAVEPOINT req",
	[ST_RELEASE_REQ] = "RELEASE req",
	[ST_UNDO_REQ] = "ROLLBACK TO req",
	[ST_INSERT] = "INSERT INTO records (id, data, json, labels, created_at, updated_at)"
		      " VALUES (?1, ?2, ?3, json(?4), ?5, ?6)",
	[ST_FTS_INSERT] = "INSERT INTO records_fts (rowid, text) VALUES (?1, ?2)",
	[ST_SELECT] = "SELECT rid, data, json, labels FROM records WHERE id = ?1",
	[ST_UPDATE] =
		"UPDATE records SET data = ?2, json = ?3, labels = coalesce(json(?4), labels),"
		" updated_at = ?5 WHERE id = ?1 RETURNING rid, created_at",
	[ST_FTS_UPDATE] = "UPDATE records_fts SET text = ?2 WHERE rowid = ?1",
	[ST_DELETE] = "DELETE FROM records WHERE id = ?1 RETURNING rid",
	[ST_FTS_DELETE] = "DELETE FROM records_fts WHERE rowid = ?1",
	/* One path of a masked update: ?3's value in the new JSON ?2 replaces the one in the
	 * stored JSON ?1, or is removed from it when ?2 has none. */
	[ST_MERGE] = "SELECT CASE WHEN json_type(?2, ?3) IS NULL THEN json_remove(?1, ?3)"
		     " ELSE json_set(?1, ?3, json(?2 -> ?3)) END",
};

struct store_writer {
	sqlite3 *db;
	sqlite3_stmt *st[ST_COUNT];
	buf text; /* the FTS text of the op at hand */
};

#define STR_(x) #x
#define STR(x) STR_(x)

static int64_t now_us(void) { return clock_wall_ns() / 1000; }

/* Steps a statement that returns no rows, then resets it. The SQLite code. */
static int run(sqlite3_stmt *st)
{
	int src = sqlite3_step(st);
	sqlite3_reset(st);
	return src == SQLITE_DONE ? SQLITE_OK : src;
}

static void text_walk(const jdoc *d, uint32_t i, buf *out, size_t *n)
{
	const jdoc_node *j = &d->nodes[i];
	if (j->type == JDOC_STRING) {
		if ((*n)++)
			buf_putc(out, ' ');
		if (!buf_reserve(out, j->ulen)) {
			char *dst = out->text + out->len;
			jdoc_unescape(d, j, dst);
			/* As SQLite's JSON functions: an escaped NUL ends the string. */
			char *nul = j->esc ? memchr(dst, 0, j->ulen) : NULL;
			out->len += nul ? (size_t)(nul - dst) : j->ulen;
		}
	} else if (j->type == JDOC_ARRAY) {
		for (uint32_t k = i + 1; k < j->end; k = d->nodes[k].end)
			text_walk(d, k, out, n);
	} else if (j->type == JDOC_OBJECT) {
		/* Members alternate key and value: keys are not text. */
		for (uint32_t k = i + 1; k < j->end;) {
			uint32_t v = d->nodes[k].end;
			text_walk(d, v, out, n);
			k = d->nodes[v].end;
		}
	}
}

int store_writer_fts_text(const char *json, size_t len, buf *out)
{
	jdoc d;
	buf_reset(out);
	int rc = jdoc_parse(&d, json, len, STORE_WRITER_JSON_MAX_DEPTH);
	if (rc == 0) {
		size_t n = 0;
		text_walk(&d, 0, out, &n);
		buf_terminate(out);
		if (out->failed)
			rc = -ENOMEM;
	}
	jdoc_free(&d);
	if (rc == -EINVAL)
		return store_err_set(rc, "record JSON: %s", store_err_msg());
	return rc ? store_err_set(rc, "out of memory") : 0;
}

int store_writer_create(const char *dir)
{
	char path[PATH_MAX];
	if (snprintf(path, sizeof(path), "%s/records.db", dir) >= (int)sizeof(path))
		return store_err_set(-ENAMETOOLONG, "path too long");
	sqlite3 *db = NULL;
	int src = db_open(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
			  &db);
	/* clang-format would break the string literals pasted with STR() apart. */
	/* clang-format off */
	if (src == SQLITE_OK)
		src = sqlite3_exec(db,
				   /* The page size first: it is fixed once the file has a page. */
				   "PRAGMA page_size=" STR(STORE_WRITER_PAGE_SIZE) ";"
				   " PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
				   " BEGIN;" RECORDS_SCHEMA
				   " INSERT INTO records_fts (records_fts, rank)"
				   " VALUES ('automerge', " STR(STORE_WRITER_FTS_AUTOMERGE) ");"
				   " COMMIT;",
				   NULL, NULL, NULL);
	/* clang-format on */
	int rc = src == SQLITE_OK ? 0 : db_fail(db, src, "create records.db");
	/* Closing the last connection checkpoints the WAL into the (fsynced) database. */
	src = sqlite3_close(db);
	if (rc == 0 && src != SQLITE_OK)
		rc = db_fail(NULL, src, "close records.db");
	return rc;
}

/* --- the writer ------------------------------------------------------------------------ */

/* A statement error that concerns the op alone (the transaction goes on), as opposed to
 * one that dooms the whole group (disk full, I/O error, no memory...). */
static bool op_error(sqlite3 *db, int src)
{
	switch (src & 0xff) {
	case SQLITE_CONSTRAINT:
	case SQLITE_ERROR:
	case SQLITE_MISMATCH:
	case SQLITE_RANGE:
	case SQLITE_TOOBIG:
		return !sqlite3_get_autocommit(db);
	default:
		return false;
	}
}

static const void *blob_ptr(const void *p) { return p ? p : ""; }

/* An op either applies whole or changes nothing, without a savepoint of its own: the one
 * statement that can fail for the op alone (duplicate id, no such record, bad labels)
 * runs first and SQLite undoes a failing statement; what follows it (the FTS row) can
 * only fail for reasons that doom the group. A malformed JSON is refused before either. */

/* The group's error from a statement that must not fail on its own. */
static int group_fail(store_writer *w, int src, const char *what, int *fatal)
{
	return *fatal = db_fail(w->db, src, what);
}

/* The op's error from its first statement: the op's alone, or the group's. */
static int op_fail(store_writer *w, int src, const char *what, int *fatal)
{
	if (op_error(w->db, src))
		return store_sqlite_errno(src);
	return group_fail(w, src, what, fatal);
}

/* w->text := the FTS text of json; -EINVAL for a malformed one fails the op. */
static int op_text(store_writer *w, const char *json, int *fatal)
{
	int rc = store_writer_fts_text(json, strlen(json), &w->text);
	if (rc == -ENOMEM)
		*fatal = rc;
	return rc;
}

/* 0, an op error (negative errno), or with *fatal set, the group's error. */
static int op_insert(store_writer *w, store_op *op, int *fatal)
{
	sqlite3_stmt *ins = w->st[ST_INSERT], *fts = w->st[ST_FTS_INSERT];
	int rc = op_text(w, op->row.json, fatal);
	if (rc)
		return rc;
	int64_t now = now_us();
	op->created_at = op->created_at ? op->created_at : now;
	op->updated_at = op->updated_at ? op->updated_at : op->created_at;
	sqlite3_bind_text(ins, 1, op->id, -1, SQLITE_STATIC);
	sqlite3_bind_blob(ins, 2, blob_ptr(op->row.data), (int)op->row.data_len, SQLITE_STATIC);
	sqlite3_bind_text(ins, 3, op->row.json, -1, SQLITE_STATIC);
	sqlite3_bind_text(ins, 4, op->row.labels ? op->row.labels : "{}", -1, SQLITE_STATIC);
	sqlite3_bind_int64(ins, 5, op->created_at);
	sqlite3_bind_int64(ins, 6, op->updated_at);
	int src = run(ins);
	sqlite3_clear_bindings(ins);
	if (src != SQLITE_OK)
		return op_fail(w, src, "insert", fatal);
	sqlite3_bind_int64(fts, 1, sqlite3_last_insert_rowid(w->db));
	sqlite3_bind_text(fts, 2, w->text.text, (int)w->text.len, SQLITE_STATIC);
	src = run(fts);
	sqlite3_clear_bindings(fts);
	return src == SQLITE_OK ? 0 : group_fail(w, src, "insert text", fatal);
}

/* A masked update's merge, with SQLite's JSON functions on the writer's own connection
 * (inside the transaction, so that concurrent updates of one record cannot lose each
 * other's fields): *merged (malloc'd) is old with each path of the mask taken from json.
 * Paths were checked by store_writer_check. 0, or the op's error. */
static int merge_mask(store_writer *w, const store_op *op, const char *old, char **merged)
{
	sqlite3_stmt *st = w->st[ST_MERGE];
	char *m = mem_strdup(old);
	int rc = m ? 0 : -ENOMEM;
	for (size_t i = 0; i < op->nmask && !rc; i++) {
		query_path qp;
		char jp[QUERY_PATH_TEXT_MAX];
		query_path_parse(op->mask[i], strlen(op->mask[i]), &qp);
		query_path_render(&qp, jp);
		sqlite3_bind_text(st, 1, m, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, op->row.json, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, jp, -1, SQLITE_STATIC);
		char *next = NULL;
		int src = sqlite3_step(st);
		if (src != SQLITE_ROW)
			rc = db_fail(w->db, src, "merging the update mask");
		else if (!(next = mem_strdup((const char *)sqlite3_column_text(st, 0))))
			rc = -ENOMEM;
		sqlite3_reset(st);
		mem_free(m);
		m = next;
	}
	sqlite3_clear_bindings(st);
	if (rc)
		mem_free(m);
	else
		*merged = m;
	return rc;
}

/* UPDATE with apply: reads the old row (its JSON merged with the mask's paths when there
 * is a mask) and binds what apply makes of it into up. */
static int apply_old(store_writer *w, store_op *op, sqlite3_stmt *up, int *fatal)
{
	sqlite3_stmt *sel = w->st[ST_SELECT];
	sqlite3_bind_text(sel, 1, op->id, -1, SQLITE_STATIC);
	int src = sqlite3_step(sel);
	int rc = 0;
	if (src == SQLITE_ROW) {
		store_row old = {
			.data = sqlite3_column_blob(sel, 1),
			.data_len = (size_t)sqlite3_column_bytes(sel, 1),
			.json = (const char *)sqlite3_column_text(sel, 2),
			.labels = (const char *)sqlite3_column_text(sel, 3),
		};
		store_row out = {0};
		char *merged = NULL;
		rc = old.json && old.labels ? 0 : -ENOMEM;
		if (rc == 0 && op->nmask && (rc = merge_mask(w, op, old.json, &merged)) == 0)
			old.json = merged;
		if (rc == 0)
			rc = op->apply(op->apply_ctx, &old, &out);
		if (rc == 0 && (!out.json || (!out.data && out.data_len) || out.data_len > INT_MAX))
			rc = -EINVAL;
		if (rc == 0)
			rc = op_text(w, out.json, fatal);
		if (rc == 0) {
			/* Copies: out may point into old, which the reset below ends. */
			sqlite3_bind_blob(up, 2, blob_ptr(out.data), (int)out.data_len,
					  SQLITE_TRANSIENT);
			sqlite3_bind_text(up, 3, out.json, -1, SQLITE_TRANSIENT);
			if (out.labels)
				sqlite3_bind_text(up, 4, out.labels, -1, SQLITE_TRANSIENT);
		}
		mem_free(merged);
	} else if (src == SQLITE_DONE) {
		rc = -ENOENT;
	} else {
		rc = group_fail(w, src, "read for update", fatal);
	}
	sqlite3_reset(sel);
	sqlite3_clear_bindings(sel);
	return rc;
}

static int op_update(store_writer *w, store_op *op, int *fatal)
{
	sqlite3_stmt *up = w->st[ST_UPDATE], *fts = w->st[ST_FTS_UPDATE];
	sqlite3_bind_text(up, 1, op->id, -1, SQLITE_STATIC);
	int rc = 0;
	if (op->apply) {
		rc = apply_old(w, op, up, fatal);
	} else if ((rc = op_text(w, op->row.json, fatal)) == 0) {
		sqlite3_bind_blob(up, 2, blob_ptr(op->row.data), (int)op->row.data_len,
				  SQLITE_STATIC);
		sqlite3_bind_text(up, 3, op->row.json, -1, SQLITE_STATIC);
		if (op->row.labels)
			sqlite3_bind_text(up, 4, op->row.labels, -1, SQLITE_STATIC);
	}
	if (rc) {
		sqlite3_clear_bindings(up);
		return rc;
	}
	op->updated_at = now_us();
	sqlite3_bind_int64(up, 5, op->updated_at);
	int src = sqlite3_step(up);
	int64_t rid = 0;
	bool found = src == SQLITE_ROW;
	if (found) {
		rid = sqlite3_column_int64(up, 0);
		op->created_at = sqlite3_column_int64(up, 1);
		src = sqlite3_step(up);
	}
	sqlite3_reset(up);
	sqlite3_clear_bindings(up);
	if (src == SQLITE_DONE && !found)
		return -ENOENT;
	if (src != SQLITE_DONE)
		return op_fail(w, src, "update", fatal);
	sqlite3_bind_int64(fts, 1, rid);
	sqlite3_bind_text(fts, 2, w->text.text, (int)w->text.len, SQLITE_STATIC);
	src = run(fts);
	sqlite3_clear_bindings(fts);
	return src == SQLITE_OK ? 0 : group_fail(w, src, "update text", fatal);
}

static int op_delete(store_writer *w, store_op *op, int *fatal)
{
	sqlite3_stmt *del = w->st[ST_DELETE], *fts = w->st[ST_FTS_DELETE];
	sqlite3_bind_text(del, 1, op->id, -1, SQLITE_STATIC);
	int src = sqlite3_step(del);
	int64_t rid = 0;
	bool found = src == SQLITE_ROW;
	if (found) {
		rid = sqlite3_column_int64(del, 0);
		src = sqlite3_step(del);
	}
	sqlite3_reset(del);
	sqlite3_clear_bindings(del);
	if (src == SQLITE_DONE && !found)
		return -ENOENT;
	if (src != SQLITE_DONE)
		return op_fail(w, src, "delete", fatal);
	sqlite3_bind_int64(fts, 1, rid);
	src = run(fts);
	return src == SQLITE_OK ? 0 : group_fail(w, src, "delete text", fatal);
}

static int run_op(store_writer *w, store_op *op, int *fatal)
{
	switch (op->kind) {
	case STORE_OP_INSERT:
		return op_insert(w, op, fatal);
	case STORE_OP_UPDATE:
		return op_update(w, op, fatal);
	case STORE_OP_DELETE:
		return op_delete(w, op, fatal);
	}
	return -EINVAL;
}

/* Runs a fixed statement (savepoints); its failure dooms the group. */
static int run_fixed(store_writer *w, int which, int *fatal)
{
	int src = run(w->st[which]);
	if (src != SQLITE_OK)
		*fatal = db_fail(w->db, src, writer_sql[which]);
	return *fatal;
}

/* Runs one request; sets req->status. Ops apply whole or not at all by themselves, so
 * only an atomic request of several ops takes a savepoint, to undo its earlier ops when a
 * later one fails. Savepoints are not cheap here: FTS5 writes its pending terms out as a
 * new segment at each one, which doubled the cost of an insert. */
static void run_request(store_writer *w, store_write_req *req, int *fatal)
{
	bool sp = req->atomic && req->nops > 1;
	int first = 0;
	if (sp && run_fixed(w, ST_SP_REQ, fatal))
		return;
	for (size_t i = 0; i < req->nops; i++) {
		store_op *op = &req->ops[i];
		int rc = run_op(w, op, fatal);
		if (*fatal)
			return;
		op->rc = rc;
		if (rc && !first)
			first = rc;
		if (rc && req->atomic) {
			for (size_t k = 0; k < req->nops; k++)
				if (k != i)
					req->ops[k].rc = -ECANCELED;
			break;
		}
	}
	if (sp && first && run_fixed(w, ST_UNDO_REQ, fatal))
		return;
	if (sp && run_fixed(w, ST_RELEASE_REQ, fatal))
		return;
	req->status = first;
}

int store_writer_run(store_writer *w, store_write_req *group)
{
	int fatal = 0;
	int src = run(w->st[ST_BEGIN]);
	if (src != SQLITE_OK)
		fatal = db_fail(w->db, src, "begin");
	for (store_write_req *r = group; r && !fatal; r = r->next)
		run_request(w, r, &fatal);
	if (!fatal) {
		src = run(w->st[ST_COMMIT]);
		if (src != SQLITE_OK)
			fatal = db_fail(w->db, src, "commit");
	}
	if (!fatal)
		return 0;
	char why[256];
	snprintf(why, sizeof(why), "%s", store_err_msg());
	if (!sqlite3_get_autocommit(w->db))
		run(w->st[ST_ROLLBACK]);
	for (store_write_req *r = group; r; r = r->next) {
		r->status = fatal;
		for (size_t i = 0; i < r->nops; i++)
			r->ops[i].rc = fatal;
	}
	return store_err_set(fatal, "%s", why);
}

/* --- indexes -------------------------------------------------------------------------- */

static bool index_name_ok(const char *s)
{
	size_t n = 0;
	for (; s[n]; n++)
		if (!(s[n] == '_' || (s[n] >= 'a' && s[n] <= 'z') || (s[n] >= 'A' && s[n] <= 'Z') ||
		      (s[n] >= '0' && s[n] <= '9')))
			return false;
	return n > 0 && n <= 64;
}

/* A screen, not a parser: the expressions come from the query module, which renders
 * them from validated paths. This keeps a mistake there from becoming SQL of any kind. */
static bool index_expr_ok(const char *s)
{
	size_t n = 0;
	for (; s[n]; n++) {
		if (strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_ .,()'$[]#-",
			   s[n]) == NULL)
			return false;
		if (s[n] == '-' && s[n + 1] == '-')
			return false;
	}
	return n > 0 && n <= 1024;
}

static int idx_exec(store_writer *w, const char *sql)
{
	int src = sqlite3_exec(w->db, sql, NULL, NULL, NULL);
	return src == SQLITE_OK ? 0 : db_fail(w->db, src, "index");
}

int store_writer_check_indexes(size_t n, const char *const names[], const char *const exprs[])
{
	for (size_t i = 0; i < n; i++) {
		if (!index_name_ok(names[i]))
			return store_err_set(-EINVAL, "index name must be [A-Za-z0-9_]{1,64}");
		if (!index_expr_ok(exprs[i]))
			return store_err_set(-EINVAL, "index expression has unexpected characters");
		for (size_t k = 0; k < i; k++)
			if (!strcmp(names[k], names[i]))
				return store_err_set(-EINVAL, "index name %s twice", names[i]);
	}
	return 0;
}

int store_writer_set_indexes(store_writer *w, size_t n, const char *const names[],
			     const char *const exprs[])
{
	int rc = store_writer_check_indexes(n, names, exprs);
	if (rc < 0)
		return rc;
	char sql[1200];
	rc = idx_exec(w, "BEGIN IMMEDIATE");
	if (rc < 0)
		return rc;
	sqlite3_stmt *st = NULL;
	int src = sqlite3_prepare_v2(w->db,
				     "SELECT name, sql FROM sqlite_master WHERE type = 'index'"
				     " AND tbl_name = 'records' AND name LIKE 'ix\\_%' ESCAPE '\\'",
				     -1, &st, NULL);
	if (src != SQLITE_OK) {
		rc = db_fail(w->db, src, "index list");
		goto out;
	}
	/* Existing ix_* indexes, read in full before the schema changes under them. */
	char **have = NULL, **have_sql = NULL;
	size_t nhave = 0;
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		char **h = mem_realloc(have, (nhave + 1) * sizeof(*h));
		char **hs = h ? mem_realloc(have_sql, (nhave + 1) * sizeof(*hs)) : NULL;
		if (h)
			have = h;
		if (hs)
			have_sql = hs;
		const char *nm = (const char *)sqlite3_column_text(st, 0);
		const char *sq = (const char *)sqlite3_column_text(st, 1);
		if (!h || !hs || !nm) {
			src = SQLITE_NOMEM;
			break;
		}
		have[nhave] = mem_strdup(nm);
		have_sql[nhave] = mem_strdup(sq ? sq : "");
		nhave++;
		if (!have[nhave - 1] || !have_sql[nhave - 1]) {
			src = SQLITE_NOMEM;
			break;
		}
	}
	sqlite3_finalize(st);
	if (src != SQLITE_DONE) {
		rc = db_fail(w->db, src, "index list");
		goto free_have;
	}
	for (size_t k = 0; k < nhave && rc == 0; k++) {
		bool wanted = false;
		for (size_t i = 0; i < n && !wanted; i++) {
			snprintf(sql, sizeof(sql), FIELD_INDEX_SQL, names[i], exprs[i]);
			wanted = !strcmp(have[k] + 3, names[i]) && !strcmp(have_sql[k], sql);
		}
		/* Only names we could have made are spliced back into SQL. */
		if (!wanted && index_name_ok(have[k] + 3)) {
			snprintf(sql, sizeof(sql), "DROP INDEX ix_%s", have[k] + 3);
			rc = idx_exec(w, sql);
		}
	}
	for (size_t i = 0; i < n && rc == 0; i++) {
		snprintf(sql, sizeof(sql),
			 "CREATE INDEX IF NOT EXISTS ix_%s ON records(%s, created_at)", names[i],
			 exprs[i]);
		rc = idx_exec(w, sql);
	}
free_have:
	for (size_t k = 0; k < nhave; k++) {
		mem_free(have ? have[k] : NULL);
		mem_free(have_sql ? have_sql[k] : NULL);
	}
	mem_free(have);
	mem_free(have_sql);
out:
	if (rc == 0)
		rc = idx_exec(w, "COMMIT");
	if (rc < 0 && !sqlite3_get_autocommit(w->db))
		sqlite3_exec(w->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

/* --- schema migration ------------------------------------------------------------------ */

/* A field index of version 0, ON records(<expr>), made again in the form of version 1. The
 * expression is taken back from the index's own SQL and screened as set_indexes does. */
static int migrate_field_index(store_writer *w, const char *name, const char *sql)
{
	static const char on[] = " ON records(";
	const char *a = strstr(sql, on);
	size_t len = strlen(sql);
	if (!a || len < 2 || sql[len - 1] != ')' || !index_name_ok(name + 3))
		return 0; /* not one of ours: left alone */
	a += sizeof(on) - 1;
	char expr[1100], q[1200];
	size_t n = (size_t)(sql + len - 1 - a);
	if (n >= sizeof(expr))
		return 0;
	memcpy(expr, a, n);
	expr[n] = 0;
	if (strstr(expr, ", created_at") || !index_expr_ok(expr))
		return 0;
	snprintf(q, sizeof(q), "DROP INDEX %s", name);
	int rc = idx_exec(w, q);
	if (!rc) {
		snprintf(q, sizeof(q), FIELD_INDEX_SQL, name + 3, expr);
		rc = idx_exec(w, q);
	}
	return rc;
}

static int user_version(sqlite3 *db, int *v)
{
	sqlite3_stmt *st = NULL;
	int src = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL);
	if (src == SQLITE_OK && (src = sqlite3_step(st)) == SQLITE_ROW)
		*v = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return src == SQLITE_ROW ? 0 : db_fail(db, src, "schema version");
}

/* Brings a database of an older schema to SCHEMA_VERSION, in one transaction. */
static int migrate(store_writer *w)
{
	int v = 0;
	int rc = user_version(w->db, &v);
	if (rc || v >= SCHEMA_VERSION)
		return rc;
	if ((rc = idx_exec(w, "BEGIN IMMEDIATE")))
		return rc;
	rc = idx_exec(w, SCHEMA_V1);
	sqlite3_stmt *st = NULL;
	int src = rc ? SQLITE_OK
		     : sqlite3_prepare_v2(
			       w->db,
			       "SELECT name, sql FROM sqlite_master WHERE type = 'index'"
			       " AND tbl_name = 'records' AND name LIKE 'ix\\_%' ESCAPE '\\'",
			       -1, &st, NULL);
	if (src != SQLITE_OK)
		rc = db_fail(w->db, src, "index list");
	/* Names and SQL copied out first: the schema changes under the statement. */
	typedef struct {
		char name[80], sql[1200];
	} ixdef;
	enum { MIGRATE_MAX = 64 };
	ixdef *ix = rc ? NULL : mem_calloc(MIGRATE_MAX, sizeof(*ix));
	size_t n = 0;
	if (!rc && !ix)
		rc = store_err_set(-ENOMEM, "out of memory");
	while (!rc && (src = sqlite3_step(st)) == SQLITE_ROW && n < MIGRATE_MAX) {
		const char *nm = (const char *)sqlite3_column_text(st, 0);
		const char *sq = (const char *)sqlite3_column_text(st, 1);
		if (nm && sq && strlen(nm) < sizeof(ix->name) && strlen(sq) < sizeof(ix->sql)) {
			snprintf(ix[n].name, sizeof(ix->name), "%s", nm);
			snprintf(ix[n].sql, sizeof(ix->sql), "%s", sq);
			n++;
		}
	}
	if (!rc && src != SQLITE_DONE && src != SQLITE_ROW)
		rc = db_fail(w->db, src, "index list");
	sqlite3_finalize(st);
	for (size_t i = 0; i < n && !rc; i++)
		rc = migrate_field_index(w, ix[i].name, ix[i].sql);
	mem_free(ix);
	if (!rc)
		rc = idx_exec(w, "PRAGMA user_version = " STR(SCHEMA_VERSION));
	if (!rc)
		rc = idx_exec(w, "COMMIT");
	if (rc) {
		char why[256];
		snprintf(why, sizeof(why), "%s", store_err_msg());
		if (!sqlite3_get_autocommit(w->db))
			sqlite3_exec(w->db, "ROLLBACK", NULL, NULL, NULL);
		return store_err_set(rc, "schema migration: %s", why);
	}
	return 0;
}

/* --- checks, open, close ------------------------------------------------------------- */

static bool mask_valid(const store_op *op)
{
	if (op->nmask && (op->kind != STORE_OP_UPDATE || !op->apply || !op->mask || !op->row.json))
		return false;
	for (size_t i = 0; i < op->nmask; i++) {
		query_path qp;
		if (!op->mask[i] || query_path_parse(op->mask[i], strlen(op->mask[i]), &qp))
			return false;
	}
	return true;
}

static bool op_valid(const store_op *op)
{
	if (!op->id || !op->id[0] || !mask_valid(op))
		return false;
	bool row_ok =
		op->row.json && (op->row.data || !op->row.data_len) && op->row.data_len <= INT_MAX;
	switch (op->kind) {
	case STORE_OP_INSERT:
		return row_ok;
	case STORE_OP_UPDATE:
		return op->apply || row_ok;
	case STORE_OP_DELETE:
		return true;
	}
	return false;
}

int store_writer_check(store_write_req *req)
{
	if (!req->nops || !req->ops)
		return store_err_set(-EINVAL, "empty write request");
	for (size_t i = 0; i < req->nops; i++) {
		if (!op_valid(&req->ops[i]))
			return store_err_set(
				-EINVAL, "write op %zu: missing id, data or json, or a bad mask",
				i);
		req->ops[i].rc = 0;
	}
	req->status = 0;
	return 0;
}

int store_writer_open(const char *path, bool sync_normal, int busy_timeout_ms, store_writer **out)
{
	store_writer *w = mem_calloc(1, sizeof(*w));
	if (!w)
		return store_err_set(-ENOMEM, "out of memory");
	int src = db_open(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, &w->db);
	if (src == SQLITE_OK) {
		sqlite3_extended_result_codes(w->db, 1);
		sqlite3_busy_timeout(w->db, busy_timeout_ms);
		src = sqlite3_exec(w->db,
				   sync_normal
					   ? "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
					     " PRAGMA journal_size_limit=67108864;"
					   : "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
					     " PRAGMA journal_size_limit=67108864;",
				   NULL, NULL, NULL);
	}
	int mrc = src == SQLITE_OK ? migrate(w) : 0;
	if (mrc) {
		store_writer_close(w);
		return mrc;
	}
	for (int i = 0; i < ST_COUNT && src == SQLITE_OK; i++)
		src = sqlite3_prepare_v3(w->db, writer_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
					 &w->st[i], NULL);
	if (src != SQLITE_OK) {
		int rc = db_fail(w->db, src, "open records.db");
		store_writer_close(w);
		return rc;
	}
	*out = w;
	return 0;
}

void store_writer_close(store_writer *w)
{
	if (!w)
		return;
	for (int i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(w->st[i]);
	buf_free(&w->text);
	int src = sqlite3_close(w->db);
	if (src != SQLITE_OK)
		log_error("store: close records.db: %s", sqlite3_errstr(src));
	mem_free(w);
}
