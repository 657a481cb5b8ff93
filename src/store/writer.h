/* A collection's records.db as its writer sees it: the schema, one write connection with
 * its statements prepared once, and the requests it runs in one transaction. No thread
 * here: coll.c drives a writer from the collection's writer thread (group commit), and the
 * in-process benchmark (bench/store_inproc.c) drives one directly, so that both run the
 * same statements. */
#ifndef STORE_WRITER_H
#define STORE_WRITER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/json.h"

/* How a new records.db is laid out; costs per insert of a ~1 KB record in groups of 500
 * (SQLite 3.40, measured at 4 KiB pages and automerge 4: ~85 us). 16 KiB pages: a record
 * row (its bytes, its JSON: ~2.2 KB) fits a 4 KiB page alone, half empty, so every insert
 * wrote a page of its own to the WAL; 16 KiB pages hold seven (~-25 us). FTS5 automerge 8:
 * segments merge eight at a level instead of four, which rewrites every posting fewer
 * times (~-10 us), for a few more segments to read per search term. */
#define STORE_WRITER_PAGE_SIZE 16384
#define STORE_WRITER_FTS_AUTOMERGE 8

/* The FTS text of a record (its full-text row): the string values of its JSON, not the
 * keys, unescaped, in document order, joined by single spaces. The same as SQLite's
 * group_concat of json_tree's text values, built in C because json_tree makes a row for
 * every node. Replaces out's contents (NUL-terminated, the NUL not counted); 0, -EINVAL
 * for malformed JSON, -ENOMEM. The JSON is the node's own rendering of a record: nested
 * as deep as its message (JSON_MAX_DEPTH), with an object and an array per level at most. */
#define STORE_WRITER_JSON_MAX_DEPTH (2 * JSON_MAX_DEPTH + 2)
int store_writer_fts_text(const char *json, size_t len, buf *out);

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
	store_row row;	      /* INSERT, and UPDATE without apply (replaces data and json) */
	store_apply_fn apply; /* UPDATE: computes the new row from the old one */
	void *apply_ctx;
	/* UPDATE with apply: field paths (store/query_path.h) to take from row.json, the rest of
	 * the record being kept. Before apply, for each path, the value row.json has there
	 * replaces the stored JSON's, or the stored one is removed when row.json has none;
	 * apply gets the stored row with that merged JSON as old. */
	const char *const *mask;
	size_t nmask;
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
	void *ctx;	       /* the caller's */
	store_write_req *next; /* internal */
	int status;	       /* internal */
};

/* Whether req can be run: ops with ids, rows where they need them. 0 or -EINVAL. */
int store_writer_check(store_write_req *req);

typedef struct store_writer store_writer;

/* Creates dir/records.db with the schema (dir exists). */
int store_writer_create(const char *dir);
/* Opens the write connection on the records.db at path. synchronous=NORMAL with
 * sync_normal, else FULL. */
int store_writer_open(const char *path, bool sync_normal, int busy_timeout_ms, store_writer **out);
void store_writer_close(store_writer *w);
/* Runs group (requests linked by next, checked by store_writer_check) in one transaction:
 * BEGIN IMMEDIATE, each request (an atomic one of several ops inside a savepoint),
 * COMMIT. Sets every request's status and its ops' rc, and returns 0; or returns the
 * error that failed the whole group, set on every request and op (nothing of the group
 * was written). Calls no done: the caller does, once it has counted the group. */
int store_writer_run(store_writer *w, store_write_req *group);
/* Makes ix_<names[i]> the set of indexes named ix_* on the records: creates the missing
 * ones ON records(<exprs[i]>) and drops the others, in one transaction. names are
 * [A-Za-z0-9_]{1,64}; exprs come trusted from the query module (canonical text like
 * json_extract(json,'$.a.b')) and are only screened for stray characters. */
int store_writer_set_indexes(store_writer *w, size_t n, const char *const names[],
			     const char *const exprs[]);
/* Checks what store_writer_set_indexes would refuse, without a writer. 0 or -EINVAL. */
int store_writer_check_indexes(size_t n, const char *const names[], const char *const exprs[]);

#endif
