#include "store/coll.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/clock.h"
#include "io/log.h"
#include "store/dirs.h"
#include "store/jsonbuf.h"
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
	[ST_UPDATE] = "UPDATE records SET data = ?2, json = ?3, labels = coalesce(json(?4), labels),"
		      " updated_at = ?5 WHERE id = ?1 RETURNING rid, created_at",
	[ST_FTS_UPDATE] = "UPDATE records_fts SET text = ?2 WHERE rowid = ?1",
	[ST_DELETE] = "DELETE FROM records WHERE id = ?1 RETURNING rid",
	[ST_FTS_DELETE] = "DELETE FROM records_fts WHERE rowid = ?1",
};

#define READER_CACHE 32

struct store_reader {
	store_coll *c;
	sqlite3 *db;
	sqlite3_stmt *begin, *commit; /* prepared once: every read runs both */
	struct {
		sqlite3_stmt *st;
		bool used;
	} cache[READER_CACHE];
	size_t ncache;
};

typedef struct idx_job {
	size_t n;
	const char *const *names, *const *exprs;
	int rc;
	bool done;
	char err[256];
} idx_job;

struct store_coll {
	char ns[STORE_NAME_MAX + 1], name[STORE_NAME_MAX + 1];
	char *db_path;
	void *owner;
	coll_options o;
	int files_fd, staging_fd;

	sqlite3 *wdb; /* the writer's, used by the writer thread only */
	sqlite3_stmt *st[ST_COUNT];
	jbuf text; /* the writer's: the FTS text of the op at hand */
	pthread_t thread;
	bool thread_started;

	pthread_mutex_t mu; /* queue, stopping, idx */
	pthread_cond_t cv;  /* wakes the writer */
	pthread_cond_t idx_cv;
	store_write_req *head, *tail;
	size_t queued;
	bool stopping;
	idx_job *idx;
	size_t want;		/* queued requests that wake the writer */
	size_t last_n;		/* the writer's: requests of the last group */
	int64_t last_ns;	/* and how long it took */
	pthread_mutex_t idx_mu; /* one set_indexes at a time */
	atomic_uint_least64_t commits, acked;

	pthread_mutex_t rmu;
	pthread_cond_t rcv;
	store_reader **rfree; /* idle readers, readers_max slots */
	size_t nfree, nreaders;
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

static void text_walk(const jdoc *d, uint32_t i, jbuf *out, size_t *n)
{
	const jnode *j = &d->nodes[i];
	if (j->type == J_STRING) {
		if ((*n)++)
			jbuf_putc(out, ' ');
		char *dst = jbuf_reserve(out, j->ulen);
		if (dst) {
			jdoc_unescape(d, j, dst);
			/* As SQLite's JSON functions: an escaped NUL ends the string. */
			char *nul = j->esc ? memchr(dst, 0, j->ulen) : NULL;
			out->len += nul ? (size_t)(nul - dst) : j->ulen;
		}
	} else if (j->type == J_ARRAY) {
		for (uint32_t k = i + 1; k < j->end; k = d->nodes[k].end)
			text_walk(d, k, out, n);
	} else if (j->type == J_OBJECT) {
		/* Members alternate key and value: keys are not text. */
		for (uint32_t k = i + 1; k < j->end;) {
			uint32_t v = d->nodes[k].end;
			text_walk(d, v, out, n);
			k = d->nodes[v].end;
		}
	}
}

int coll_fts_text(const char *json, size_t len, jbuf *out)
{
	jdoc d;
	char err[128];
	out->len = 0;
	out->failed = false;
	int rc = jdoc_parse(&d, json, len, COLL_JSON_MAX_DEPTH, err, sizeof(err));
	if (rc == 0) {
		size_t n = 0;
		text_walk(&d, 0, out, &n);
		jbuf_terminate(out);
		if (out->failed)
			rc = -ENOMEM;
	}
	jdoc_free(&d);
	if (rc == -EINVAL)
		return store_seterr(rc, "record JSON: %s", err);
	return rc ? store_seterr(rc, "out of memory") : 0;
}

static int conn_pragmas(sqlite3 *db, const coll_options *o)
{
	sqlite3_extended_result_codes(db, 1);
	sqlite3_busy_timeout(db, o->busy_timeout_ms);
	return sqlite3_exec(db,
			    o->sync_normal ? "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
					     " PRAGMA journal_size_limit=67108864;"
					   : "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
					     " PRAGMA journal_size_limit=67108864;",
			    NULL, NULL, NULL);
}

int coll_create_db(const char *dir)
{
	char path[PATH_MAX];
	if (snprintf(path, sizeof(path), "%s/records.db", dir) >= (int)sizeof(path))
		return store_seterr(-ENAMETOOLONG, "path too long");
	sqlite3 *db = NULL;
	int src = sqlite3_open_v2(path, &db,
				  SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
				  NULL);
	if (src == SQLITE_OK)
		src = sqlite3_exec(db,
				   /* The page size first: it is fixed once the file has a page. */
				   "PRAGMA page_size=" STR(COLL_PAGE_SIZE) ";"
				   " PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
				   " BEGIN;" COLL_SCHEMA
				   " INSERT INTO records_fts (records_fts, rank)"
				   " VALUES ('automerge', " STR(COLL_FTS_AUTOMERGE) ");"
				   " COMMIT;",
				   NULL, NULL, NULL);
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
static int group_fail(store_coll *c, int src, const char *what, int *fatal)
{
	return *fatal = db_fail(c->wdb, src, what);
}

/* The op's error from its first statement: the op's alone, or the group's. */
static int op_fail(store_coll *c, int src, const char *what, int *fatal)
{
	if (op_error(c->wdb, src))
		return store_sqlite_errno(src);
	return group_fail(c, src, what, fatal);
}

/* c->text := the FTS text of json; -EINVAL for a malformed one fails the op. */
static int op_text(store_coll *c, const char *json, int *fatal)
{
	int rc = coll_fts_text(json, strlen(json), &c->text);
	if (rc == -ENOMEM)
		*fatal = rc;
	return rc;
}

/* 0, an op error (negative errno), or with *fatal set, the group's error. */
static int op_insert(store_coll *c, store_op *op, int *fatal)
{
	sqlite3_stmt *ins = c->st[ST_INSERT], *fts = c->st[ST_FTS_INSERT];
	int rc = op_text(c, op->row.json, fatal);
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
		return op_fail(c, src, "insert", fatal);
	sqlite3_bind_int64(fts, 1, sqlite3_last_insert_rowid(c->wdb));
	sqlite3_bind_text(fts, 2, c->text.data, (int)c->text.len, SQLITE_STATIC);
	src = run(fts);
	sqlite3_clear_bindings(fts);
	return src == SQLITE_OK ? 0 : group_fail(c, src, "insert text", fatal);
}

/* UPDATE with apply: reads the old row and binds what apply makes of it into up. */
static int apply_old(store_coll *c, store_op *op, sqlite3_stmt *up, int *fatal)
{
	sqlite3_stmt *sel = c->st[ST_SELECT];
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
		rc = old.json && old.labels ? op->apply(op->apply_ctx, &old, &out) : -ENOMEM;
		if (rc == 0 && (!out.json || (!out.data && out.data_len) || out.data_len > INT_MAX))
			rc = -EINVAL;
		if (rc == 0)
			rc = op_text(c, out.json, fatal);
		if (rc == 0) {
			/* Copies: out may point into old, which the reset below ends. */
			sqlite3_bind_blob(up, 2, blob_ptr(out.data), (int)out.data_len,
					  SQLITE_TRANSIENT);
			sqlite3_bind_text(up, 3, out.json, -1, SQLITE_TRANSIENT);
			if (out.labels)
				sqlite3_bind_text(up, 4, out.labels, -1, SQLITE_TRANSIENT);
		}
	} else if (src == SQLITE_DONE) {
		rc = -ENOENT;
	} else {
		rc = group_fail(c, src, "read for update", fatal);
	}
	sqlite3_reset(sel);
	sqlite3_clear_bindings(sel);
	return rc;
}

static int op_update(store_coll *c, store_op *op, int *fatal)
{
	sqlite3_stmt *up = c->st[ST_UPDATE], *fts = c->st[ST_FTS_UPDATE];
	sqlite3_bind_text(up, 1, op->id, -1, SQLITE_STATIC);
	int rc = 0;
	if (op->apply) {
		rc = apply_old(c, op, up, fatal);
	} else if ((rc = op_text(c, op->row.json, fatal)) == 0) {
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
		return op_fail(c, src, "update", fatal);
	sqlite3_bind_int64(fts, 1, rid);
	sqlite3_bind_text(fts, 2, c->text.data, (int)c->text.len, SQLITE_STATIC);
	src = run(fts);
	sqlite3_clear_bindings(fts);
	return src == SQLITE_OK ? 0 : group_fail(c, src, "update text", fatal);
}

static int op_delete(store_coll *c, store_op *op, int *fatal)
{
	sqlite3_stmt *del = c->st[ST_DELETE], *fts = c->st[ST_FTS_DELETE];
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
		return op_fail(c, src, "delete", fatal);
	sqlite3_bind_int64(fts, 1, rid);
	src = run(fts);
	return src == SQLITE_OK ? 0 : group_fail(c, src, "delete text", fatal);
}

static int run_op(store_coll *c, store_op *op, int *fatal)
{
	switch (op->kind) {
	case STORE_OP_INSERT:
		return op_insert(c, op, fatal);
	case STORE_OP_UPDATE:
		return op_update(c, op, fatal);
	case STORE_OP_DELETE:
		return op_delete(c, op, fatal);
	}
	return -EINVAL;
}

/* Runs a fixed statement (savepoints); its failure dooms the group. */
static int run_fixed(store_coll *c, int which, int *fatal)
{
	int src = run(c->st[which]);
	if (src != SQLITE_OK)
		*fatal = db_fail(c->wdb, src, writer_sql[which]);
	return *fatal;
}

/* Runs one request; sets req->status. Ops apply whole or not at all by themselves, so
 * only an atomic request of several ops takes a savepoint, to undo its earlier ops when a
 * later one fails. Savepoints are not cheap here: FTS5 writes its pending terms out as a
 * new segment at each one, which doubled the cost of an insert. */
static void run_request(store_coll *c, store_write_req *req, int *fatal)
{
	bool sp = req->atomic && req->nops > 1;
	int first = 0;
	if (sp && run_fixed(c, ST_SP_REQ, fatal))
		return;
	for (size_t i = 0; i < req->nops; i++) {
		store_op *op = &req->ops[i];
		int rc = run_op(c, op, fatal);
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
	if (sp && first && run_fixed(c, ST_UNDO_REQ, fatal))
		return;
	if (sp && run_fixed(c, ST_RELEASE_REQ, fatal))
		return;
	req->status = first;
}

static void run_group(store_coll *c, store_write_req *group)
{
	int fatal = 0;
	int src = run(c->st[ST_BEGIN]);
	if (src != SQLITE_OK)
		fatal = db_fail(c->wdb, src, "begin");
	for (store_write_req *r = group; r && !fatal; r = r->next)
		run_request(c, r, &fatal);
	if (!fatal) {
		src = run(c->st[ST_COMMIT]);
		if (src != SQLITE_OK)
			fatal = db_fail(c->wdb, src, "commit");
	}
	if (fatal) {
		log_warn("store: %s/%s: write group failed: %s", c->ns, c->name, store_errmsg());
		if (!sqlite3_get_autocommit(c->wdb))
			run(c->st[ST_ROLLBACK]);
	}
	if (!fatal) {
		/* Counted before the callbacks, so that an acknowledged writer sees its own. */
		size_t n = 0;
		for (store_write_req *r = group; r; r = r->next)
			n++;
		atomic_fetch_add(&c->commits, 1);
		atomic_fetch_add(&c->acked, n);
	}
	for (store_write_req *r = group, *next; r; r = next) {
		next = r->next; /* done may free r */
		if (fatal) {
			r->status = fatal;
			for (size_t i = 0; i < r->nops; i++)
				r->ops[i].rc = fatal;
		}
		r->done(r, r->status);
	}
}

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

static int idx_exec(store_coll *c, const char *sql)
{
	int src = sqlite3_exec(c->wdb, sql, NULL, NULL, NULL);
	return src == SQLITE_OK ? 0 : db_fail(c->wdb, src, "index");
}

/* On the writer thread, between groups. */
static int run_indexes(store_coll *c, idx_job *j)
{
	char sql[1200];
	int rc = idx_exec(c, "BEGIN IMMEDIATE");
	if (rc < 0)
		return rc;
	sqlite3_stmt *st = NULL;
	int src = sqlite3_prepare_v2(c->wdb,
				     "SELECT name, sql FROM sqlite_master WHERE type = 'index'"
				     " AND tbl_name = 'records' AND name LIKE 'ix\\_%' ESCAPE '\\'",
				     -1, &st, NULL);
	if (src != SQLITE_OK) {
		rc = db_fail(c->wdb, src, "index list");
		goto out;
	}
	/* Existing ix_* indexes, read in full before the schema changes under them. */
	char **have = NULL, **have_sql = NULL;
	size_t nhave = 0;
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		char **h = realloc(have, (nhave + 1) * sizeof(*h));
		char **hs = h ? realloc(have_sql, (nhave + 1) * sizeof(*hs)) : NULL;
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
		have[nhave] = strdup(nm);
		have_sql[nhave] = strdup(sq ? sq : "");
		nhave++;
		if (!have[nhave - 1] || !have_sql[nhave - 1]) {
			src = SQLITE_NOMEM;
			break;
		}
	}
	sqlite3_finalize(st);
	if (src != SQLITE_DONE) {
		rc = db_fail(c->wdb, src, "index list");
		goto free_have;
	}
	for (size_t k = 0; k < nhave && rc == 0; k++) {
		bool wanted = false;
		for (size_t i = 0; i < j->n && !wanted; i++) {
			snprintf(sql, sizeof(sql), "CREATE INDEX ix_%s ON records(%s)", j->names[i],
				 j->exprs[i]);
			wanted = !strcmp(have[k] + 3, j->names[i]) && !strcmp(have_sql[k], sql);
		}
		/* Only names we could have made are spliced back into SQL. */
		if (!wanted && index_name_ok(have[k] + 3)) {
			snprintf(sql, sizeof(sql), "DROP INDEX ix_%s", have[k] + 3);
			rc = idx_exec(c, sql);
		}
	}
	for (size_t i = 0; i < j->n && rc == 0; i++) {
		snprintf(sql, sizeof(sql), "CREATE INDEX IF NOT EXISTS ix_%s ON records(%s)",
			 j->names[i], j->exprs[i]);
		rc = idx_exec(c, sql);
	}
free_have:
	for (size_t k = 0; k < nhave; k++) {
		free(have ? have[k] : NULL);
		free(have_sql ? have_sql[k] : NULL);
	}
	free(have);
	free(have_sql);
out:
	if (rc == 0)
		rc = idx_exec(c, "COMMIT");
	if (rc < 0 && !sqlite3_get_autocommit(c->wdb))
		sqlite3_exec(c->wdb, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

#define GATHER_MIN 32
#define GATHER_MAX_NS (20 * NS_PER_MS)

/* Under a steady load requests come back in waves, as each group is answered, and a writer
 * starting on the first few of a wave splits it over two groups: twice the commits, and
 * per insert a commit costs as much as ~100 inserts (an fsync, the FTS segment). After a
 * big group the writer waits for as many requests as it had, at most as long as that group
 * took (and GATHER_MAX_NS): under lighter load it waits once, then groups are small and
 * nothing waits. Called with mu held. */
static void gather(store_coll *c)
{
	if (c->last_n < GATHER_MIN || c->queued >= c->last_n)
		return;
	int64_t wait = c->last_ns < GATHER_MAX_NS ? c->last_ns : GATHER_MAX_NS;
	int64_t deadline = clock_now_ns() + wait;
	struct timespec ts = {.tv_sec = deadline / NS_PER_SEC, .tv_nsec = deadline % NS_PER_SEC};
	c->want = c->last_n;
	while (c->queued < c->want && !c->stopping && !c->idx)
		if (pthread_cond_timedwait(&c->cv, &c->mu, &ts) == ETIMEDOUT)
			break;
	c->want = 1;
}

static void *writer_main(void *arg)
{
	store_coll *c = arg;
	pthread_mutex_lock(&c->mu);
	for (;;) {
		while (!c->head && !c->idx && !c->stopping)
			pthread_cond_wait(&c->cv, &c->mu);
		if (c->head && !c->idx && !c->stopping)
			gather(c);
		if (c->idx) {
			idx_job *j = c->idx;
			pthread_mutex_unlock(&c->mu);
			j->rc = run_indexes(c, j);
			if (j->rc < 0)
				snprintf(j->err, sizeof(j->err), "%s", store_errmsg());
			pthread_mutex_lock(&c->mu);
			j->done = true;
			c->idx = NULL;
			pthread_cond_broadcast(&c->idx_cv);
			continue;
		}
		if (!c->head)
			break; /* stopping, and every queued request has run */
		store_write_req *group = c->head, *last = group;
		size_t n = 1;
		while (last->next && (!c->o.group_max || n < c->o.group_max)) {
			last = last->next;
			n++;
		}
		c->head = last->next;
		if (!c->head)
			c->tail = NULL;
		last->next = NULL;
		c->queued -= n;
		pthread_mutex_unlock(&c->mu);
		int64_t t0 = clock_now_ns();
		run_group(c, group);
		c->last_ns = clock_now_ns() - t0;
		c->last_n = n;
		pthread_mutex_lock(&c->mu);
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

static bool op_valid(const store_op *op)
{
	if (!op->id || !op->id[0])
		return false;
	bool row_ok = op->row.json && (op->row.data || !op->row.data_len) &&
		      op->row.data_len <= INT_MAX;
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

int store_write(store_coll *c, store_write_req *req)
{
	if (!req->done || !req->nops || !req->ops)
		return store_seterr(-EINVAL, "empty write request");
	for (size_t i = 0; i < req->nops; i++) {
		if (!op_valid(&req->ops[i]))
			return store_seterr(-EINVAL, "write op %zu: missing id, data or json", i);
		req->ops[i].rc = 0;
	}
	req->next = NULL;
	req->status = 0;
	int rc = 0;
	pthread_mutex_lock(&c->mu);
	if (c->stopping)
		rc = store_seterr(-ESHUTDOWN, "collection %s/%s is closing", c->ns, c->name);
	else if (c->queued >= c->o.queue_max)
		rc = store_seterr(-EAGAIN, "write queue of %s/%s is full", c->ns, c->name);
	if (rc == 0) {
		if (c->tail)
			c->tail->next = req;
		else
			c->head = req;
		c->tail = req;
		if (++c->queued >= c->want)
			pthread_cond_signal(&c->cv);
	}
	pthread_mutex_unlock(&c->mu);
	return rc;
}

int store_coll_set_indexes(store_coll *c, size_t n, const char *const names[],
			   const char *const exprs[])
{
	for (size_t i = 0; i < n; i++) {
		if (!index_name_ok(names[i]))
			return store_seterr(-EINVAL, "index name must be [A-Za-z0-9_]{1,64}");
		if (!index_expr_ok(exprs[i]))
			return store_seterr(-EINVAL, "index expression has unexpected characters");
		for (size_t k = 0; k < i; k++)
			if (!strcmp(names[k], names[i]))
				return store_seterr(-EINVAL, "index name %s twice", names[i]);
	}
	idx_job j = {.n = n, .names = names, .exprs = exprs};
	pthread_mutex_lock(&c->idx_mu);
	pthread_mutex_lock(&c->mu);
	if (c->stopping) {
		j.rc = -ESHUTDOWN;
		snprintf(j.err, sizeof(j.err), "collection is closing");
	} else {
		c->idx = &j;
		pthread_cond_signal(&c->cv);
		while (!j.done)
			pthread_cond_wait(&c->idx_cv, &c->mu);
	}
	pthread_mutex_unlock(&c->mu);
	pthread_mutex_unlock(&c->idx_mu);
	return j.rc < 0 ? store_seterr(j.rc, "%s", j.err) : 0;
}

/* --- readers --------------------------------------------------------------------------- */

static int reader_open(store_coll *c, store_reader **out)
{
	store_reader *r = calloc(1, sizeof(*r));
	if (!r)
		return store_seterr(-ENOMEM, "out of memory");
	r->c = c;
	int src = sqlite3_open_v2(c->db_path, &r->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX,
				  NULL);
	if (src == SQLITE_OK) {
		sqlite3_extended_result_codes(r->db, 1);
		sqlite3_busy_timeout(r->db, c->o.busy_timeout_ms);
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
	sqlite3_finalize(r->begin);
	sqlite3_close(r->db);
	free(r);
	return rc;
}

static void reader_free(store_reader *r)
{
	for (size_t i = 0; i < r->ncache; i++)
		sqlite3_finalize(r->cache[i].st);
	sqlite3_finalize(r->begin);
	sqlite3_finalize(r->commit);
	sqlite3_close(r->db);
	free(r);
}

int store_coll_read_begin(store_coll *c, store_reader **out)
{
	store_reader *r = NULL;
	pthread_mutex_lock(&c->rmu);
	while (!c->nfree && c->nreaders >= c->o.readers_max)
		pthread_cond_wait(&c->rcv, &c->rmu);
	if (c->nfree)
		r = c->rfree[--c->nfree];
	else
		c->nreaders++;
	pthread_mutex_unlock(&c->rmu);
	int rc = 0;
	if (!r && (rc = reader_open(c, &r)) < 0) {
		pthread_mutex_lock(&c->rmu);
		c->nreaders--;
		pthread_cond_signal(&c->rcv);
		pthread_mutex_unlock(&c->rmu);
		return rc;
	}
	int src = run(r->begin);
	if (src != SQLITE_OK) {
		rc = db_fail(r->db, src, "begin read");
		store_coll_read_end(r);
		return rc;
	}
	*out = r;
	return 0;
}

sqlite3 *store_reader_db(store_reader *r) { return r->db; }

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
		return store_seterr(-E2BIG, "more than %d statements in one read", READER_CACHE);
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

void store_coll_read_end(store_reader *r)
{
	store_coll *c = r->c;
	for (size_t i = 0; i < r->ncache; i++) {
		sqlite3_clear_bindings(r->cache[i].st);
		r->cache[i].used = false;
	}
	/* Every statement, the caller's too: one left stepping would hold the snapshot. */
	for (sqlite3_stmt *st = sqlite3_next_stmt(r->db, NULL); st; st = sqlite3_next_stmt(r->db, st))
		sqlite3_reset(st);
	if (!sqlite3_get_autocommit(r->db))
		run(r->commit);
	bool stuck = !sqlite3_get_autocommit(r->db);
	if (stuck) {
		log_warn("store: %s/%s: dropping a reader stuck in its transaction", c->ns, c->name);
		reader_free(r);
	}
	pthread_mutex_lock(&c->rmu);
	if (stuck)
		c->nreaders--;
	else
		c->rfree[c->nfree++] = r;
	pthread_cond_signal(&c->rcv);
	pthread_mutex_unlock(&c->rmu);
}

/* --- open, close, stats ------------------------------------------------------------------ */

int coll_open(const char *dir, const char *ns, const char *name, const coll_options *o,
	      void *owner, store_coll **out)
{
	store_coll *c = calloc(1, sizeof(*c));
	if (!c)
		return store_seterr(-ENOMEM, "out of memory");
	snprintf(c->ns, sizeof(c->ns), "%s", ns);
	snprintf(c->name, sizeof(c->name), "%s", name);
	c->owner = owner;
	c->o = *o;
	c->files_fd = c->staging_fd = -1;
	pthread_mutex_init(&c->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* gather's deadline */
	pthread_cond_init(&c->cv, &ca);
	pthread_condattr_destroy(&ca);
	c->want = 1;
	pthread_cond_init(&c->idx_cv, NULL);
	pthread_mutex_init(&c->idx_mu, NULL);
	pthread_mutex_init(&c->rmu, NULL);
	pthread_cond_init(&c->rcv, NULL);
	int rc = 0;
	c->rfree = calloc(o->readers_max, sizeof(*c->rfree));
	size_t plen = strlen(dir) + sizeof("/records.db");
	c->db_path = malloc(plen);
	if (!c->rfree || !c->db_path) {
		rc = store_seterr(-ENOMEM, "out of memory");
		goto fail;
	}
	snprintf(c->db_path, plen, "%s/records.db", dir);

	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		c->files_fd = openat(dfd, "files", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (mkdirat(dfd, "staging", 0755) && errno != EEXIST)
			log_warn("store: %s/%s: staging: %s", ns, name, strerror(errno));
		c->staging_fd = openat(dfd, "staging", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		close(dfd);
	}
	if (c->files_fd < 0 || c->staging_fd < 0) {
		rc = store_seterr(-errno, "collection %s/%s: %s", ns, name, strerror(errno));
		goto fail;
	}
	/* Uploads that were in progress when the collection last closed are dead. */
	dirs_clear(c->staging_fd);

	int src = sqlite3_open_v2(c->db_path, &c->wdb, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
				  NULL);
	if (src == SQLITE_OK)
		src = conn_pragmas(c->wdb, o);
	for (int i = 0; i < ST_COUNT && src == SQLITE_OK; i++)
		src = sqlite3_prepare_v3(c->wdb, writer_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
					 &c->st[i], NULL);
	if (src != SQLITE_OK) {
		rc = db_fail(c->wdb, src, "open records.db");
		goto fail;
	}
	int err = pthread_create(&c->thread, NULL, writer_main, c);
	if (err) {
		rc = store_seterr(-err, "writer thread: %s", strerror(err));
		goto fail;
	}
	c->thread_started = true;
	char tname[16];
	snprintf(tname, sizeof(tname), "w:%s", name);
	pthread_setname_np(c->thread, tname);
	*out = c;
	return 0;
fail:
	coll_close(c);
	return rc;
}

void coll_close(store_coll *c)
{
	if (c->thread_started) {
		pthread_mutex_lock(&c->mu);
		c->stopping = true;
		pthread_cond_signal(&c->cv);
		pthread_mutex_unlock(&c->mu);
		pthread_join(c->thread, NULL);
	}
	if (c->nfree != c->nreaders)
		log_error("store: %s/%s closed with %zu reads in progress", c->ns, c->name,
			  c->nreaders - c->nfree);
	for (size_t i = 0; i < c->nfree; i++)
		reader_free(c->rfree[i]);
	for (int i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(c->st[i]);
	jbuf_free(&c->text);
	int src = sqlite3_close(c->wdb);
	if (src != SQLITE_OK)
		log_error("store: %s/%s: close: %s", c->ns, c->name, sqlite3_errstr(src));
	if (c->files_fd >= 0)
		close(c->files_fd);
	if (c->staging_fd >= 0)
		close(c->staging_fd);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
	pthread_cond_destroy(&c->idx_cv);
	pthread_mutex_destroy(&c->idx_mu);
	pthread_mutex_destroy(&c->rmu);
	pthread_cond_destroy(&c->rcv);
	free(c->rfree);
	free(c->db_path);
	free(c);
}

int store_coll_stats(store_coll *c, int64_t *records, int64_t *bytes)
{
	store_reader *r;
	int rc = store_coll_read_begin(c, &r);
	if (rc < 0)
		return rc;
	sqlite3_stmt *st;
	rc = store_reader_prepare(r, "SELECT count(*) FROM records", &st);
	if (rc == 0) {
		int src = sqlite3_step(st);
		if (src == SQLITE_ROW)
			*records = sqlite3_column_int64(st, 0);
		else
			rc = db_fail(r->db, src, "count");
	}
	store_coll_read_end(r);
	if (rc < 0)
		return rc;

	int64_t total = 0;
	const char *suffix[] = {"", "-wal"};
	char path[PATH_MAX];
	for (size_t i = 0; i < 2; i++) {
		struct stat sb;
		snprintf(path, sizeof(path), "%s%s", c->db_path, suffix[i]);
		if (stat(path, &sb) == 0)
			total += sb.st_size;
	}
	int64_t nfiles, fbytes;
	if ((rc = dirs_tree_stat(c->files_fd, &nfiles, &fbytes)) < 0)
		return store_seterr(rc, "attachments: %s", strerror(-rc));
	*bytes = total + fbytes;
	return 0;
}

void store_coll_group_stats(store_coll *c, uint64_t *commits, uint64_t *requests)
{
	*commits = atomic_load(&c->commits);
	*requests = atomic_load(&c->acked);
}

const char *store_coll_ns(const store_coll *c) { return c->ns; }
const char *store_coll_name(const store_coll *c) { return c->name; }
void *coll_owner(const store_coll *c) { return c->owner; }
int coll_files_fd(const store_coll *c) { return c->files_fd; }
int coll_staging_fd(const store_coll *c) { return c->staging_fd; }
