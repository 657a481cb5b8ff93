/* Reads of a collection's records.db, on a read connection of its own: a record by id, a
 * compiled List or Search (query.h) with its count, every record in the order written, and
 * an exact vector scan. The collection lends its readers out (store_coll_read_begin in
 * coll.h); a tool may open one on a records.db path (the in-process benchmark does).
 *
 * Inside store_reader_begin .. store_reader_end every read sees one snapshot; outside,
 * each read is a snapshot of its own. Reads never wait for the writer (WAL). A record a
 * read hands out is borrowed from the reader: valid until the reader's next read or
 * store_reader_end. Functions return 0 or a negative errno (the message in
 * store_err_msg()). */
#ifndef STORE_READER_H
#define STORE_READER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/query.h"
#include "store/query_path.h"

typedef struct store_reader store_reader;

/* A record as a read hands it out. */
typedef struct store_record {
	const char *id;
	const void *data; /* its protobuf bytes */
	size_t data_len;
	const char *json; /* store_reader_scan with STORE_SCAN_JSON; else NULL */
	double score;	  /* store_reader_query: the full-text relevance, higher is better */
} store_record;

/* Called for each record of a query or a scan. 0 goes on; another value stops the read
 * (store_reader_query: a positive one means the caller's page is full). */
typedef int (*store_record_fn)(void *ctx, const store_record *rec);

/* A reader outside any collection, on the records.db at path (a tool's). */
int store_reader_open(const char *path, int busy_timeout_ms, store_reader **out);
void store_reader_close(store_reader *r);
/* Starts a read transaction: the reads up to store_reader_end see one snapshot. */
int store_reader_begin(store_reader *r);
/* Resets every statement and ends the read transaction, if any. false when the
 * connection cannot leave it: the reader is then only good for store_reader_close. */
bool store_reader_end(store_reader *r);

/* The record with this id (its id is the one given): 0, -ENOENT, or an error. */
int store_reader_get(store_reader *r, const char *id, store_record *out);

/* Runs q: its page, up to query_page_size(q) records, each given to fn (id, data, score),
 * then its count into *total. *more: the query had a record after the page, or fn
 * stopped the page with a positive value. 0, fn's negative value, or an error. */
int store_reader_query(store_reader *r, const query *q, store_record_fn fn, void *ctx, bool *more,
		       int64_t *total);
/* Inside fn of a List's store_reader_query: the page token that continues right after the
 * record at hand (query_token_next). 0 with *token (mem_free()), -EOVERFLOW, -ENOMEM. */
int store_reader_page_token(store_reader *r, char **token);

/* A string field of the records' JSON (a field path, store/query_path.h) equal to value. */
typedef struct store_match {
	const char *path;
	const char *value;
} store_match;
#define STORE_SCAN_MATCH_MAX 8
#define STORE_SCAN_JSON 1 /* records carry their JSON */

/* Every record matching all of where (none: every record), in the order they were first
 * written, given to fn (id, data; json with STORE_SCAN_JSON). An index on a path of where
 * (store_coll_set_indexes with its query_index_field expression) serves the scan. 0 at
 * the end, fn's nonzero value, -EINVAL for a bad path, or an error. */
int store_reader_scan(store_reader *r, const store_match *where, size_t n, int flags,
		      store_record_fn fn, void *ctx);

/* Vector search: the records whose JSON holds, at path, an array of n numbers whose cosine
 * similarity with v is at least threshold, best first (equal ones in the order written).
 * *hits (malloc'd, the caller frees it) and *nhits. An exact scan of every record. */
typedef struct store_hit {
	double similarity;
	int64_t rid; /* the record's row */
} store_hit;
int store_reader_vector(store_reader *r, const query_path *path, const float *v, size_t n,
			double threshold, store_hit **hits, size_t *nhits);
/* A hit's record: its data and similarity (score), not its id, which a search rarely
 * needs: store_reader_hit_id reads it. */
int store_reader_get_hit(store_reader *r, const store_hit *h, store_record *out);
/* The id of the record store_reader_get_hit read last, valid as long as that record. */
const char *store_reader_hit_id(store_reader *r);

/* The number of records. */
int store_reader_count(store_reader *r, int64_t *n);

#endif
