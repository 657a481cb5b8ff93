/* What only the store's own files share: SQLite, and the pieces of one module that another
 * store module drives (the collection table in store.c opens and closes collections,
 * files.c works in a collection's directories). Nothing outside src/store/ includes this
 * header: the rest of the node sees the store through its other headers, which name no
 * SQLite type. It includes no more than the query module needs, so that a harness can
 * build that module alone. */
#ifndef STORE_STORE_INT_H
#define STORE_STORE_INT_H
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/err.h"
#include "store/query.h"
#include "store/reader.h"
#include "store/store.h"

/* ---- SQLite (db.c) ---- */

/* A SQLite result code as a negative errno (0 for OK, ROW and DONE). */
int store_sqlite_errno(int sqlite_rc);
/* Sets this thread's message to what: and db's message (the code's when db is NULL);
 * returns the code as a negative errno (-EIO when it is no error). */
int db_fail(sqlite3 *db, int src, const char *what);
/* sqlite3_open_v2 without a VFS name, after SQLite was set (once) to allocate through
 * base/mem.h: every connection of the store opens here. */
int db_open(const char *path, int flags, sqlite3 **db);

/* ---- an open collection, as store.c and files.c drive it (coll.c) ---- */

typedef struct coll_options {
	bool sync_normal;
	size_t queue_max, group_max, readers_max;
	int busy_timeout_ms;
} coll_options;

/* Opens the collection in dir; owner is the store's table entry (coll_owner). */
int coll_open(const char *dir, const char *ns, const char *name, const coll_options *o, void *owner,
	      store_coll **out);
/* Lets queued writes finish, stops the writer and closes every connection. */
void coll_close(store_coll *c);
void *coll_owner(const store_coll *c);
int coll_files_fd(const store_coll *c);	       /* files/, O_DIRECTORY */
int coll_staging_fd(const store_coll *c);      /* staging/, uploads in progress */
const char *coll_db_path(const store_coll *c); /* its records.db */

/* ---- a reader, as coll.c lends it out and as store's tests read through it (reader.c) ---- */

/* The collection a reader belongs to (coll.c's), NULL for a tool's. */
void store_reader_set_owner(store_reader *r, void *owner);
void *store_reader_owner(const store_reader *r);
/* A statement for sql on the reader's connection, from its cache: reset (not finalized)
 * by store_reader_end, and handed out once per read. */
int store_reader_prepare(store_reader *r, const char *sql, sqlite3_stmt **st);

/* ---- a compiled query as SQL, for the reader that runs it (query.c, query_token.c) ---- */

enum query_bind_type { QUERY_BIND_NULL, QUERY_BIND_INT, QUERY_BIND_REAL, QUERY_BIND_TEXT };

typedef struct query_bindval {
	enum query_bind_type type;
	union {
		int64_t i;
		double d;
		struct {
			const char *p; /* owned by the query; may hold NUL bytes */
			size_t len;
		} text;
	} u;
} query_bindval;

/* Result columns of the page query, then one column per order key. */
enum {
	QUERY_COL_RID,
	QUERY_COL_ID,
	QUERY_COL_DATA,
	QUERY_COL_LABELS,
	QUERY_COL_CREATED_AT,
	QUERY_COL_UPDATED_AT,
	QUERY_COL_SCORE,
	QUERY_COL_KEYS,
};

/* The page query and the count query (one row: count(*) with the same conditions). */
const char *query_sql(const query *q);
const char *query_count_sql(const query *q);
/* NULL, or a page query that gives what query_sql gives where created_at never decreases
 * in rid order (records_count.ordered), faster. */
const char *query_fast_sql(const query *q);
/* All parameter values, ?1 first. The count query uses a prefix of them. */
const query_bindval *query_binds(const query *q, size_t *n);
/* Binds every parameter st has (st was prepared from query_sql or query_count_sql).
 * 0, -EINVAL (st wants more than q has), -ENOMEM or -EIO. */
int query_bind(sqlite3_stmt *st, const query *q);
/* Next-page token from the row st is on (the last row returned to the user), List only.
 * 0 with *token (mem_free()), -EOVERFLOW when an order-key string is longer than
 * QUERY_MAX_TOKEN_TEXT, -EINVAL (not a List query), -ENOMEM. */
int query_token_next(const query *q, sqlite3_stmt *st, char **token);
/* The same, carrying total (the query's count, -1 for none) when the query carries one. */
int query_token_next_total(const query *q, sqlite3_stmt *st, int64_t total, char **token);
/* The count a page token brought (a filtered List's after its first page), or -1. */
int64_t query_carried_total(const query *q);

#endif
