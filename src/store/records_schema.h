/* The schema of a collection's records.db, shared by the writer (which makes and migrates
 * it) and by the harnesses that run the query compiler's SQL against it (fuzz/fuzz_query.c),
 * so that both see the same tables. */
#ifndef STORE_RECORDS_SCHEMA_H
#define STORE_RECORDS_SCHEMA_H

/* The shared schema of records.db: a record's row, and its full-text row (rowid = rid). */
#define RECORDS_SCHEMA                                                                             \
	"CREATE TABLE records (rid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,"                  \
	" data BLOB NOT NULL, json TEXT NOT NULL, labels TEXT NOT NULL DEFAULT '{}',"              \
	" created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);"                              \
	"CREATE VIRTUAL TABLE records_fts USING fts5(text);"

/* Schema version 1 (PRAGMA user_version), added to a database of version 0 when the writer
 * opens it, so that collections made before it get it too:
 * - records_by_created serves the default order (created_at, rid: an index holds the rid
 *   after its columns), so that a page of List is a range of it, not a sort of every row;
 * - records_count holds the exact number of records, kept by triggers in the transaction
 *   of every insert and delete, whoever runs it (the writer, a restore's or a clone's copy
 *   carries it whole), so that Describe and an unfiltered total_count read one row; and
 *   `ordered`, whether created_at never decreases in rid order (true while records are
 *   written as they are made; a record written with an older time, as a transfer may,
 *   clears it for good), which lets full text in created_at order walk the full-text
 *   index in rid order and stop at the page (query.c);
 * - ix_* field indexes end with created_at (then the rid), so that an equality on the
 *   field serves its matches in the default order (see store_writer_set_indexes). */
#define SCHEMA_VERSION 1
#define SCHEMA_V1                                                                                  \
	"CREATE INDEX IF NOT EXISTS records_by_created ON records(created_at);"                    \
	"CREATE TABLE IF NOT EXISTS records_count (one INTEGER PRIMARY KEY CHECK (one = 1),"       \
	" n INTEGER NOT NULL, ordered INTEGER NOT NULL);"                                          \
	"INSERT OR REPLACE INTO records_count (one, n, ordered) SELECT 1, count(*),"               \
	" NOT EXISTS (SELECT 1 FROM (SELECT created_at,"                                           \
	" lag(created_at) OVER (ORDER BY rid) AS prev FROM records) WHERE created_at < prev)"      \
	" FROM records;"                                                                           \
	"CREATE TRIGGER IF NOT EXISTS records_count_ins AFTER INSERT ON records"                   \
	" BEGIN UPDATE records_count SET n = n + 1, ordered = ordered AND NEW.created_at >="       \
	" coalesce((SELECT created_at FROM records WHERE rid < NEW.rid ORDER BY rid DESC"          \
	" LIMIT 1), NEW.created_at); END;"                                                         \
	"CREATE TRIGGER IF NOT EXISTS records_count_del AFTER DELETE ON records"                   \
	" BEGIN UPDATE records_count SET n = n - 1; END;"

/* The SQL of a field index, as sqlite_master keeps it (name, then the field's expression). */
#define FIELD_INDEX_SQL "CREATE INDEX ix_%s ON records(%s, created_at)"

#endif
