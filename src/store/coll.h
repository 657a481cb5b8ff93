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
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/reader.h"
#include "store/store.h"
#include "store/writer.h"

/* Queues req; the caller keeps req and everything it points to alive until done.
 * 0, -EAGAIN when the queue is full, -ESHUTDOWN when the collection is closing,
 * -EINVAL on a malformed request (no op, no id, no data). */
int store_coll_write(store_coll *c, store_write_req *req);

/* Lends out one of the collection's readers (reader.h) for one read, inside a read
 * transaction: one snapshot from the first read on. At most readers_max are out at once;
 * begin waits for one. Every begin is paired with one end. */
int store_coll_read_begin(store_coll *c, store_reader **out);
void store_coll_read_end(store_reader *r);

/* store_writer_set_indexes on the writer thread, between groups; waits for it. */
int store_coll_set_indexes(store_coll *c, size_t n, const char *const names[],
			   const char *const exprs[]);

/* Records, and bytes on disk: records.db, its WAL, and the attachments. */
int store_coll_stats(store_coll *c, int64_t *records, int64_t *bytes);
/* Transactions committed and requests acknowledged since the collection was opened. */
void store_coll_group_stats(store_coll *c, uint64_t *commits, uint64_t *requests);
const char *store_coll_ns(const store_coll *c);
const char *store_coll_name(const store_coll *c);

#endif
