#include "store/wfstore.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

#include "base/mem.h"
#include "store/store_int.h"

#define SCHEMA                                                                                     \
	"CREATE TABLE IF NOT EXISTS defs (kind TEXT NOT NULL, ns TEXT NOT NULL, key TEXT NOT "     \
	"NULL, body BLOB NOT NULL, updated INTEGER NOT NULL, PRIMARY KEY (kind, ns, key));"        \
	"CREATE TABLE IF NOT EXISTS workflows (rid INTEGER PRIMARY KEY, id TEXT NOT NULL "         \
	"UNIQUE, ns TEXT NOT NULL, name TEXT NOT NULL, state INTEGER NOT NULL, def BLOB NOT "      \
	"NULL, input BLOB NOT NULL, output BLOB, meta BLOB NOT NULL, error TEXT NOT NULL, "        \
	"idem_key TEXT, created INTEGER NOT NULL, updated INTEGER NOT NULL);"                      \
	"CREATE UNIQUE INDEX IF NOT EXISTS workflows_idem ON workflows (ns, idem_key) WHERE "      \
	"idem_key IS NOT NULL;"                                                                    \
	"CREATE INDEX IF NOT EXISTS workflows_state ON workflows (state, rid);"                    \
	"CREATE INDEX IF NOT EXISTS workflows_ns ON workflows (ns, rid);"                          \
	"CREATE TABLE IF NOT EXISTS tasks (wf_id TEXT NOT NULL, task_id TEXT NOT NULL, state "     \
	"INTEGER NOT NULL, attempt INTEGER NOT NULL, iteration INTEGER NOT NULL, exec_id TEXT "    \
	"NOT NULL, output BLOB, next_at INTEGER NOT NULL, PRIMARY KEY (wf_id, task_id)) "          \
	"WITHOUT ROWID;"                                                                           \
	"CREATE TABLE IF NOT EXISTS executions (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT "   \
	"NOT NULL UNIQUE, wf_id TEXT NOT NULL, ns TEXT NOT NULL, state INTEGER NOT NULL, body "    \
	"BLOB NOT NULL);"                                                                          \
	"CREATE INDEX IF NOT EXISTS executions_wf ON executions (wf_id, seq);"

/* The writer's statements, prepared once. */
enum {
	ST_BEGIN,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_DEF_PUT,
	ST_WF_INSERT,
	ST_WF_UPDATE,
	ST_WF_UPDATE_KEEP,
	ST_WF_BY_KEY,
	ST_TASK_PUT,
	ST_EXEC_INSERT,
	ST_EXEC_COUNT,
	ST_COUNT
};

static const char *const writer_sql[ST_COUNT] = {
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	[ST_DEF_PUT] = "INSERT OR REPLACE INTO defs (kind, ns, key, body, updated) VALUES "
		       "(?1, ?2, ?3, ?4, ?5)",
	[ST_WF_INSERT] = "INSERT INTO workflows (id, ns, name, state, def, input, output, meta, "
			 "error, idem_key, created, updated) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, "
			 "?8, ?9, ?10, ?11, ?12)",
	[ST_WF_UPDATE] = "UPDATE workflows SET state = ?2, output = ?3, error = ?4, updated = ?5 "
			 "WHERE id = ?1",
	[ST_WF_UPDATE_KEEP] = "UPDATE workflows SET state = ?2, error = ?4, updated = ?5 WHERE "
			      "id = ?1",
	[ST_WF_BY_KEY] = "SELECT id FROM workflows WHERE ns = ?1 AND idem_key = ?2",
	[ST_TASK_PUT] = "INSERT OR REPLACE INTO tasks (wf_id, task_id, state, attempt, "
			"iteration, exec_id, output, next_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, "
			"?7, ?8)",
	[ST_EXEC_INSERT] = "INSERT INTO executions (id, wf_id, ns, state, body) VALUES (?1, ?2, "
			   "?3, ?4, ?5) ON CONFLICT (id) DO UPDATE SET state = excluded.state, "
			   "body = excluded.body",
	[ST_EXEC_COUNT] = "SELECT count(*) FROM executions WHERE wf_id = ?1",
};

struct wfstore {
	sqlite3 *w; /* the writer's */
	sqlite3_stmt *st[ST_COUNT];
	sqlite3 *r; /* the readers', one at a time */
	pthread_mutex_t rmu;
};

static int open_conn(const char *path, bool sync_normal, bool schema, sqlite3 **out)
{
	sqlite3 *db = NULL;
	int src = db_open(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
			  &db);
	if (src != SQLITE_OK) {
		int rc = db_fail(db, src, "open the workflow store");
		sqlite3_close(db);
		return rc;
	}
	sqlite3_extended_result_codes(db, 1);
	sqlite3_busy_timeout(db, 5000);
	src = sqlite3_exec(db,
			   sync_normal ? "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
				       : "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;",
			   NULL, NULL, NULL);
	if (src == SQLITE_OK && schema)
		src = sqlite3_exec(db, SCHEMA, NULL, NULL, NULL);
	if (src != SQLITE_OK) {
		int rc = db_fail(db, src, "the workflow store's schema");
		sqlite3_close(db);
		return rc;
	}
	*out = db;
	return 0;
}

int wfstore_open(const char *path, bool sync_normal, wfstore **out)
{
	wfstore *s = mem_calloc(1, sizeof(*s));
	if (!s)
		return store_err_set(-ENOMEM, "out of memory");
	pthread_mutex_init(&s->rmu, NULL);
	int rc = open_conn(path, sync_normal, true, &s->w);
	if (!rc)
		rc = open_conn(path, sync_normal, false, &s->r);
	for (int i = 0; !rc && i < ST_COUNT; i++) {
		int src = sqlite3_prepare_v3(s->w, writer_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
					     &s->st[i], NULL);
		if (src != SQLITE_OK)
			rc = db_fail(s->w, src, "prepare");
	}
	if (rc) {
		wfstore_close(s);
		return rc;
	}
	*out = s;
	return 0;
}

void wfstore_close(wfstore *s)
{
	if (!s)
		return;
	for (int i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(s->st[i]);
	sqlite3_close(s->w);
	sqlite3_close(s->r);
	pthread_mutex_destroy(&s->rmu);
	mem_free(s);
}

/* Runs a prepared writer statement to its end and resets it. */
static int run(wfstore *s, int which, const char *what)
{
	sqlite3_stmt *st = s->st[which];
	int src = sqlite3_step(st);
	int rc = src == SQLITE_DONE || src == SQLITE_ROW ? 0 : db_fail(s->w, src, what);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc;
}

int wfstore_begin(wfstore *s) { return run(s, ST_BEGIN, "begin"); }
int wfstore_commit(wfstore *s) { return run(s, ST_COMMIT, "commit"); }
void wfstore_rollback(wfstore *s)
{
	if (!sqlite3_get_autocommit(s->w))
		run(s, ST_ROLLBACK, "rollback");
}

static void bind_text(sqlite3_stmt *st, int i, const char *v)
{
	if (v)
		sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, i);
}

static void bind_blob(sqlite3_stmt *st, int i, const uint8_t *v, size_t len)
{
	if (v)
		sqlite3_bind_blob(st, i, len ? (const void *)v : "", (int)len, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, i);
}

/* ---- definitions ---- */

int wfstore_def_put(wfstore *s, char kind, const char *ns, const char *key, const uint8_t *body,
		    size_t len, int64_t now_us)
{
	sqlite3_stmt *st = s->st[ST_DEF_PUT];
	char k[2] = {kind, 0};
	sqlite3_bind_text(st, 1, k, 1, SQLITE_TRANSIENT);
	bind_text(st, 2, ns);
	bind_text(st, 3, key);
	bind_blob(st, 4, body, len);
	sqlite3_bind_int64(st, 5, now_us);
	return run(s, ST_DEF_PUT, "store a definition");
}

/* Prepares sql on db; the caller finalizes. */
static int prep(sqlite3 *db, const char *sql, sqlite3_stmt **st)
{
	int src = sqlite3_prepare_v2(db, sql, -1, st, NULL);
	return src == SQLITE_OK ? 0 : db_fail(db, src, "prepare");
}

/* Steps st to its end; row(ctx, st) for each row (its nonzero value stops the scan). */
static int each_row(sqlite3 *db, sqlite3_stmt *st, int (*row)(void *ctx, sqlite3_stmt *st),
		    void *ctx)
{
	int src, rc = 0;
	while ((src = sqlite3_step(st)) == SQLITE_ROW)
		if ((rc = row(ctx, st)))
			break;
	if (!rc && src != SQLITE_DONE)
		rc = db_fail(db, src, "read");
	return rc;
}

static const uint8_t *col_blob(sqlite3_stmt *st, int i, size_t *len)
{
	*len = (size_t)sqlite3_column_bytes(st, i);
	const uint8_t *b = sqlite3_column_blob(st, i);
	return b ? b : (const uint8_t *)"";
}

static const char *col_text(sqlite3_stmt *st, int i)
{
	const char *t = (const char *)sqlite3_column_text(st, i);
	return t ? t : "";
}

typedef struct def_scan {
	wfstore_def_fn fn;
	void *ctx;
} def_scan;

static int def_row(void *ctx, sqlite3_stmt *st)
{
	def_scan *d = ctx;
	size_t len;
	const uint8_t *body = col_blob(st, 3, &len);
	return d->fn(d->ctx, col_text(st, 0)[0], col_text(st, 1), col_text(st, 2), body, len);
}

/* The connection a read uses: the reader's (locked by the caller) or the writer's. */
static sqlite3 *conn(wfstore *s, bool reader)
{
	if (reader)
		pthread_mutex_lock(&s->rmu);
	return reader ? s->r : s->w;
}

static void unconn(wfstore *s, bool reader)
{
	if (reader)
		pthread_mutex_unlock(&s->rmu);
}

int wfstore_def_each(wfstore *s, bool reader, const char *ns, wfstore_def_fn fn, void *ctx)
{
	sqlite3 *db = conn(s, reader);
	sqlite3_stmt *st;
	int rc = prep(db,
		      "SELECT kind, ns, key, body FROM defs WHERE ?1 IS NULL OR ns = ?1 ORDER BY "
		      "kind, ns, key",
		      &st);
	if (!rc) {
		bind_text(st, 1, ns);
		def_scan d = {fn, ctx};
		rc = each_row(db, st, def_row, &d);
		sqlite3_finalize(st);
	}
	unconn(s, reader);
	return rc;
}

/* ---- workflows ---- */

int wfstore_wf_insert(wfstore *s, const wfstore_wf *w)
{
	sqlite3_stmt *st = s->st[ST_WF_INSERT];
	bind_text(st, 1, w->id);
	bind_text(st, 2, w->ns);
	bind_text(st, 3, w->name);
	sqlite3_bind_int(st, 4, w->state);
	bind_blob(st, 5, w->def, w->def_len);
	bind_blob(st, 6, w->input ? w->input : (const uint8_t *)"", w->input_len);
	bind_blob(st, 7, w->output, w->output_len);
	bind_blob(st, 8, w->meta ? w->meta : (const uint8_t *)"", w->meta_len);
	bind_text(st, 9, w->error ? w->error : "");
	bind_text(st, 10, w->idem_key);
	sqlite3_bind_int64(st, 11, w->created_us);
	sqlite3_bind_int64(st, 12, w->updated_us);
	return run(s, ST_WF_INSERT, "store a workflow");
}

int wfstore_wf_update(wfstore *s, const char *id, int state, const uint8_t *output,
		      size_t output_len, const char *error, int64_t now_us)
{
	int which = output ? ST_WF_UPDATE : ST_WF_UPDATE_KEEP;
	sqlite3_stmt *st = s->st[which];
	bind_text(st, 1, id);
	sqlite3_bind_int(st, 2, state);
	bind_blob(st, 3, output, output_len);
	bind_text(st, 4, error ? error : "");
	sqlite3_bind_int64(st, 5, now_us);
	return run(s, which, "update a workflow");
}

int wfstore_wf_by_key(wfstore *s, const char *ns, const char *key, char *id, size_t cap)
{
	sqlite3_stmt *st = s->st[ST_WF_BY_KEY];
	bind_text(st, 1, ns);
	bind_text(st, 2, key);
	int src = sqlite3_step(st);
	int rc = -ENOENT;
	if (src == SQLITE_ROW) {
		snprintf(id, cap, "%s", col_text(st, 0));
		rc = 0;
	} else if (src != SQLITE_DONE) {
		rc = db_fail(s->w, src, "find an idempotency key");
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc;
}

#define WF_COLUMNS                                                                                 \
	"id, ns, name, state, def, input, output, meta, error, idem_key, created, updated, rid"

typedef struct wf_scan {
	wfstore_wf_fn fn;
	void *ctx;
	int64_t last;
	bool found;
} wf_scan;

static int wf_row(void *ctx, sqlite3_stmt *st)
{
	wf_scan *w = ctx;
	wfstore_wf r = {.id = col_text(st, 0),
			.ns = col_text(st, 1),
			.name = col_text(st, 2),
			.state = sqlite3_column_int(st, 3),
			.error = col_text(st, 8),
			.idem_key =
				sqlite3_column_type(st, 9) == SQLITE_NULL ? NULL : col_text(st, 9),
			.created_us = sqlite3_column_int64(st, 10),
			.updated_us = sqlite3_column_int64(st, 11)};
	r.def = col_blob(st, 4, &r.def_len);
	r.input = col_blob(st, 5, &r.input_len);
	if (sqlite3_column_type(st, 6) != SQLITE_NULL)
		r.output = col_blob(st, 6, &r.output_len);
	r.meta = col_blob(st, 7, &r.meta_len);
	w->found = true;
	int rc = w->fn(w->ctx, &r);
	if (!rc)
		w->last = sqlite3_column_int64(st, 12); /* the last row taken */
	return rc;
}

int wfstore_wf_get(wfstore *s, bool reader, const char *id, wfstore_wf_fn fn, void *ctx)
{
	sqlite3 *db = conn(s, reader);
	sqlite3_stmt *st;
	int rc = prep(db, "SELECT " WF_COLUMNS " FROM workflows WHERE id = ?1", &st);
	wf_scan w = {.fn = fn, .ctx = ctx};
	if (!rc) {
		bind_text(st, 1, id);
		rc = each_row(db, st, wf_row, &w);
		sqlite3_finalize(st);
	}
	unconn(s, reader);
	return rc ? rc : w.found ? 0 : -ENOENT;
}

int wfstore_wf_each_in_state(wfstore *s, int state, wfstore_wf_fn fn, void *ctx)
{
	sqlite3_stmt *st;
	int rc = prep(s->w, "SELECT " WF_COLUMNS " FROM workflows WHERE state = ?1 ORDER BY rid",
		      &st);
	if (rc)
		return rc;
	sqlite3_bind_int(st, 1, state);
	wf_scan w = {.fn = fn, .ctx = ctx};
	rc = each_row(s->w, st, wf_row, &w);
	sqlite3_finalize(st);
	return rc;
}

int wfstore_wf_page(wfstore *s, const char *ns, unsigned state_mask, int64_t before_rowid,
		    size_t limit, wfstore_wf_fn fn, void *ctx, int64_t *last)
{
	pthread_mutex_lock(&s->rmu);
	sqlite3_stmt *st;
	int rc = prep(
		s->r,
		"SELECT " WF_COLUMNS " FROM workflows WHERE (?1 IS NULL OR ns = ?1) AND "
		"(?2 = 0 OR (?2 >> state) & 1) AND (?3 = 0 OR rid < ?3) ORDER BY rid DESC LIMIT ?4",
		&st);
	wf_scan w = {.fn = fn, .ctx = ctx};
	if (!rc) {
		bind_text(st, 1, ns);
		sqlite3_bind_int64(st, 2, state_mask);
		sqlite3_bind_int64(st, 3, before_rowid);
		sqlite3_bind_int64(st, 4, (int64_t)limit);
		rc = each_row(s->r, st, wf_row, &w);
		sqlite3_finalize(st);
	}
	pthread_mutex_unlock(&s->rmu);
	*last = w.last;
	return rc;
}

int wfstore_wf_counts(wfstore *s, const char *ns, int64_t counts[6])
{
	memset(counts, 0, 6 * sizeof(counts[0]));
	pthread_mutex_lock(&s->rmu);
	sqlite3_stmt *st;
	int rc = prep(s->r,
		      "SELECT state, count(*) FROM workflows WHERE ?1 IS NULL OR ns = ?1 GROUP BY "
		      "state",
		      &st);
	if (!rc) {
		bind_text(st, 1, ns);
		int src;
		while ((src = sqlite3_step(st)) == SQLITE_ROW) {
			int k = sqlite3_column_int(st, 0);
			if (k >= 0 && k < 6)
				counts[k] = sqlite3_column_int64(st, 1);
		}
		if (src != SQLITE_DONE)
			rc = db_fail(s->r, src, "count workflows");
		sqlite3_finalize(st);
	}
	pthread_mutex_unlock(&s->rmu);
	return rc;
}

/* Runs sql (binding ns to ?1) on the writer; *changes the rows it changed. */
static int exec_ns(wfstore *s, const char *sql, const char *ns, int64_t *changes)
{
	sqlite3_stmt *st;
	int rc = prep(s->w, sql, &st);
	if (rc)
		return rc;
	bind_text(st, 1, ns);
	int src = sqlite3_step(st);
	rc = src == SQLITE_DONE ? 0 : db_fail(s->w, src, "delete");
	if (changes)
		*changes = sqlite3_changes64(s->w);
	sqlite3_finalize(st);
	return rc;
}

int wfstore_wf_delete_ns(wfstore *s, const char *ns, int64_t *n, int64_t *execs)
{
	int rc = exec_ns(s,
			 "DELETE FROM tasks WHERE wf_id IN (SELECT id FROM workflows WHERE ?1 IS "
			 "NULL OR ns = ?1)",
			 ns, NULL);
	if (!rc)
		rc = exec_ns(s, "DELETE FROM executions WHERE ?1 IS NULL OR ns = ?1", ns, execs);
	if (!rc)
		rc = exec_ns(s, "DELETE FROM workflows WHERE ?1 IS NULL OR ns = ?1", ns, n);
	return rc;
}

#define ENDED_BEFORE                                                                               \
	"(SELECT id FROM workflows WHERE state NOT IN (0, 1, 5) AND updated < ?1 ORDER BY rid "    \
	"LIMIT ?2)"

int wfstore_wf_delete_ended_before(wfstore *s, int64_t before_us, size_t limit, int64_t *n)
{
	static const char *const sql[] = {
		"DELETE FROM tasks WHERE wf_id IN " ENDED_BEFORE,
		"DELETE FROM executions WHERE wf_id IN " ENDED_BEFORE,
		"DELETE FROM workflows WHERE id IN " ENDED_BEFORE,
	};
	int rc = 0;
	for (size_t i = 0; !rc && i < sizeof(sql) / sizeof(sql[0]); i++) {
		sqlite3_stmt *st;
		if ((rc = prep(s->w, sql[i], &st)))
			break;
		sqlite3_bind_int64(st, 1, before_us);
		sqlite3_bind_int64(st, 2, (int64_t)limit);
		int src = sqlite3_step(st);
		rc = src == SQLITE_DONE ? 0 : db_fail(s->w, src, "delete ended workflows");
		*n = sqlite3_changes64(s->w);
		sqlite3_finalize(st);
	}
	return rc;
}

int wfstore_exec_delete_ended(wfstore *s, const char *ns, int64_t *n)
{
	return exec_ns(s,
		       "DELETE FROM executions WHERE wf_id IN (SELECT id FROM workflows WHERE (?1 "
		       "IS NULL OR ns = ?1) AND state NOT IN (0, 1, 5))",
		       ns, n);
}

/* ---- tasks ---- */

int wfstore_task_put(wfstore *s, const wfstore_task *t)
{
	sqlite3_stmt *st = s->st[ST_TASK_PUT];
	bind_text(st, 1, t->wf_id);
	bind_text(st, 2, t->task_id);
	sqlite3_bind_int(st, 3, t->state);
	sqlite3_bind_int(st, 4, t->attempt);
	sqlite3_bind_int(st, 5, t->iteration);
	bind_text(st, 6, t->exec_id ? t->exec_id : "");
	bind_blob(st, 7, t->output, t->output_len);
	sqlite3_bind_int64(st, 8, t->next_at_us);
	return run(s, ST_TASK_PUT, "store a task's state");
}

typedef struct task_scan {
	wfstore_task_fn fn;
	void *ctx;
} task_scan;

static int task_row(void *ctx, sqlite3_stmt *st)
{
	task_scan *t = ctx;
	wfstore_task r = {.wf_id = col_text(st, 0),
			  .task_id = col_text(st, 1),
			  .state = sqlite3_column_int(st, 2),
			  .attempt = sqlite3_column_int(st, 3),
			  .iteration = sqlite3_column_int(st, 4),
			  .exec_id = col_text(st, 5),
			  .next_at_us = sqlite3_column_int64(st, 7)};
	if (sqlite3_column_type(st, 6) != SQLITE_NULL)
		r.output = col_blob(st, 6, &r.output_len);
	return t->fn(t->ctx, &r);
}

int wfstore_task_each(wfstore *s, bool reader, const char *wf_id, wfstore_task_fn fn, void *ctx)
{
	sqlite3 *db = conn(s, reader);
	sqlite3_stmt *st;
	int rc = prep(db,
		      "SELECT wf_id, task_id, state, attempt, iteration, exec_id, output, next_at "
		      "FROM tasks WHERE wf_id = ?1",
		      &st);
	if (!rc) {
		bind_text(st, 1, wf_id);
		task_scan t = {fn, ctx};
		rc = each_row(db, st, task_row, &t);
		sqlite3_finalize(st);
	}
	unconn(s, reader);
	return rc;
}

/* ---- executions ---- */

int wfstore_exec_put(wfstore *s, const char *id, const char *wf_id, const char *ns, int state,
		     const uint8_t *body, size_t len)
{
	sqlite3_stmt *st = s->st[ST_EXEC_INSERT];
	bind_text(st, 1, id);
	bind_text(st, 2, wf_id);
	bind_text(st, 3, ns);
	sqlite3_bind_int(st, 4, state);
	bind_blob(st, 5, body ? body : (const uint8_t *)"", len);
	return run(s, ST_EXEC_INSERT, "store an execution");
}

int wfstore_exec_count(wfstore *s, const char *wf_id, int64_t *n)
{
	sqlite3_stmt *st = s->st[ST_EXEC_COUNT];
	bind_text(st, 1, wf_id);
	int src = sqlite3_step(st);
	int rc = 0;
	if (src == SQLITE_ROW)
		*n = sqlite3_column_int64(st, 0);
	else
		rc = db_fail(s->w, src, "count executions");
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc;
}

typedef struct exec_scan {
	wfstore_exec_fn fn;
	void *ctx;
} exec_scan;

static int exec_row(void *ctx, sqlite3_stmt *st)
{
	exec_scan *e = ctx;
	size_t len;
	const uint8_t *body = col_blob(st, 1, &len);
	return e->fn(e->ctx, sqlite3_column_int64(st, 0), body, len);
}

int wfstore_exec_get(wfstore *s, const char *id, wfstore_exec_fn fn, void *ctx)
{
	sqlite3_stmt *st;
	int rc = prep(s->w, "SELECT seq, body FROM executions WHERE id = ?1", &st);
	if (rc)
		return rc;
	bind_text(st, 1, id);
	exec_scan e = {fn, ctx};
	int src = sqlite3_step(st);
	if (src == SQLITE_ROW)
		rc = exec_row(&e, st);
	else
		rc = src == SQLITE_DONE ? -ENOENT : db_fail(s->w, src, "read an execution");
	sqlite3_finalize(st);
	return rc;
}

int wfstore_exec_page(wfstore *s, const char *wf_id, int64_t after, size_t limit,
		      wfstore_exec_fn fn, void *ctx)
{
	pthread_mutex_lock(&s->rmu);
	sqlite3_stmt *st;
	int rc = prep(s->r,
		      "SELECT seq, body FROM executions WHERE wf_id = ?1 AND seq > ?2 ORDER BY seq "
		      "LIMIT ?3",
		      &st);
	if (!rc) {
		bind_text(st, 1, wf_id);
		sqlite3_bind_int64(st, 2, after);
		sqlite3_bind_int64(st, 3, (int64_t)limit);
		exec_scan e = {fn, ctx};
		rc = each_row(s->r, st, exec_row, &e);
		sqlite3_finalize(st);
	}
	pthread_mutex_unlock(&s->rmu);
	return rc;
}

int wfstore_exec_recent(wfstore *s, const char *ns, size_t limit, wfstore_exec_fn fn, void *ctx)
{
	pthread_mutex_lock(&s->rmu);
	sqlite3_stmt *st;
	int rc = prep(s->r,
		      "SELECT seq, body FROM executions WHERE ?1 IS NULL OR ns = ?1 ORDER BY seq "
		      "DESC LIMIT ?2",
		      &st);
	if (!rc) {
		bind_text(st, 1, ns);
		sqlite3_bind_int64(st, 2, (int64_t)limit);
		exec_scan e = {fn, ctx};
		rc = each_row(s->r, st, exec_row, &e);
		sqlite3_finalize(st);
	}
	pthread_mutex_unlock(&s->rmu);
	return rc;
}
