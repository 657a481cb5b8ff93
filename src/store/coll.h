/* An open collection: its records.db with one writer and a few readers.
 *
 * Writes go through one connection driven by one writer thread per open collection.
 * A thread per collection rather than a shared set: a slow commit (fsync) of one
 * collection never holds up another, the writer needs no scheduling of its own, and the
 * number of threads is bounded by the open-collection cap (idle writers only sleep).
 *
 * Group commit: the writer takes every request queued while it was committing and runs
 * them in one transaction (BEGIN IMMEDIATE ... COMMIT); a failing request rolls back
 * alone (an op that fails changes nothing; an atomic request of several ops runs inside a
 * SAVEPOINT). Completions are called after COMMIT returns; if the commit fails, every
 * request of the group gets the error. Reads use separate connections and never wait for
 * the writer (WAL). */
#ifndef STORE_COLL_H
#define STORE_COLL_H
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/json.h"
#include "store/jsonbuf.h"
#include "store/store.h"

/* The shared schema of records.db. */
#define COLL_SCHEMA                                                                    \
	"CREATE TABLE records (rid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,"      \
	" data BLOB NOT NULL, json TEXT NOT NULL, labels TEXT NOT NULL DEFAULT '{}',"   \
	" created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);"                   \
	"CREATE VIRTUAL TABLE records_fts USING fts5(text);"

/* How a new records.db is laid out, beside the schema; costs per insert of a ~1 KB record
 * in groups of 500 (SQLite 3.40, measured at 4 KiB pages and automerge 4: ~85 us).
 * 16 KiB pages: a record row (its bytes, its JSON: ~2.2 KB) fits a 4 KiB page alone, half
 * empty, so every insert wrote a page of its own to the WAL; 16 KiB pages hold seven
 * (~-25 us). FTS5 automerge 8: segments merge eight at a level instead of four, which
 * rewrites every posting fewer times (~-10 us), for a few more segments to read per
 * search term. */
#define COLL_PAGE_SIZE 16384
#define COLL_FTS_AUTOMERGE 8

/* The FTS text of a record (records_fts.text, rowid = records.rid): the string values of
 * its JSON, not the keys, unescaped, in document order, joined by single spaces. The same
 * as SELECT coalesce(group_concat(value, ' '), '') FROM json_tree(json) WHERE type =
 * 'text', built in C because json_tree makes a row for every node. Replaces out's
 * contents (NUL-terminated, the NUL not counted); 0, -EINVAL for malformed JSON, -ENOMEM.
 * The JSON is the node's own rendering of a record: nested as deep as its message
 * (JSON_MAX_DEPTH), with an object and an array per level at most. */
#define COLL_JSON_MAX_DEPTH (2 * JSON_MAX_DEPTH + 2)
int coll_fts_text(const char *json, size_t len, jbuf *out);

typedef struct store_row {
	const void *data;
	size_t data_len;
	const char *json;   /* proto3 JSON of data, original field names */
	const char *labels; /* JSON object text; NULL: "{}" on insert, unchanged on update */
} store_row;

/* Runs on the writer thread inside the transaction. old's buffers are valid during the
 * call only; out may point into them or into the caller's memory: the writer copies out
 * as soon as apply returns. 0, or a negative errno that fails the op. */
typedef int (*store_apply_fn)(void *ctx, const store_row *old, store_row *out);

enum store_op_kind { STORE_OP_INSERT, STORE_OP_UPDATE, STORE_OP_DELETE };

typedef struct store_op {
	enum store_op_kind kind;
	const char *id;
	store_row row;       /* INSERT, and UPDATE without apply (replaces data and json) */
	store_apply_fn apply; /* UPDATE: computes the new row from the old one */
	void *apply_ctx;
	/* In: INSERT times to keep (0: now; clone and restore keep the source's). Out: the
	 * times written by INSERT and UPDATE. */
	int64_t created_at, updated_at;
	int rc; /* out: 0, -EEXIST, -ENOENT, -EINVAL, -ECANCELED (atomic request failed) */
} store_op;

typedef struct store_write_req store_write_req;
struct store_write_req {
	store_op *ops;
	size_t nops;
	bool atomic; /* all ops or none */
	/* Called on the writer thread once the outcome is durable (or known to have failed).
	 * rc: 0 when every op succeeded; else the first failing op's code (the other ops'
	 * rc tell which applied), or the transaction's error, then set on every op. */
	void (*done)(store_write_req *req, int rc);
	void *ctx;             /* the caller's */
	store_write_req *next; /* internal */
	int status;            /* internal */
};

/* Queues req; the caller keeps req and everything it points to alive until done.
 * 0, -EAGAIN when the queue is full, -ESHUTDOWN when the collection is closing,
 * -EINVAL on a malformed request (no op, no id, no data). */
int store_write(store_coll *c, store_write_req *req);

/* A read connection for the duration of one read, inside a read transaction (one
 * snapshot from the first statement on). Reads never wait for the writer. Statements
 * from store_reader_prepare stay cached on the connection: they are reset (not
 * finalized) by read_end, and one is handed out once per read. Statements prepared
 * directly on store_reader_db are the caller's to finalize before read_end. */
typedef struct store_reader store_reader;
int store_coll_read_begin(store_coll *c, store_reader **out);
sqlite3 *store_reader_db(store_reader *r);
int store_reader_prepare(store_reader *r, const char *sql, sqlite3_stmt **st);
void store_coll_read_end(store_reader *r);

/* Makes ix_<names[i]> the set of indexes named ix_* on records: creates the missing ones
 * ON records(<exprs[i]>) and drops the others, on the writer between groups; waits for
 * it. names are [A-Za-z0-9_]{1,64}; exprs come trusted from the query module (canonical
 * text like json_extract(json,'$.a.b')) and are only screened for stray characters. */
int store_coll_set_indexes(store_coll *c, size_t n, const char *const names[],
			   const char *const exprs[]);

/* Records, and bytes on disk: records.db, its WAL, and the attachments. */
int store_coll_stats(store_coll *c, int64_t *records, int64_t *bytes);
/* Transactions committed and requests acknowledged since the collection was opened. */
void store_coll_group_stats(store_coll *c, uint64_t *commits, uint64_t *requests);
const char *store_coll_ns(const store_coll *c);
const char *store_coll_name(const store_coll *c);

#endif
