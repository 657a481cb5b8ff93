/* Consistent copies of a collection while it serves: its records.db as of one moment, its
 * attachment tree, the SHA-256 of what was copied, and the checks a backup is verified by.
 *
 * The database is copied by SQLite's online backup API in one step (all pages) from a read
 * connection of its own inside one read transaction: the copy is that transaction's
 * snapshot, page for page, and in WAL mode the writer goes on committing meanwhile (only a
 * checkpoint waits for the reader). A stepped backup lets the source go between steps and
 * restarts whenever the writer commits, so on a busy collection it may never finish;
 * VACUUM INTO also snapshots without blocking the writer but rewrites every page.
 * bench/snapshot_stall.c measures the three (README, Backups).
 *
 * Attachments are linked (hard links) where the file system allows, else copied. A link is
 * safe because the store never writes into a file in place: an upload is written beside
 * the tree and renamed over the old name (files.h), so a later upload makes a new inode and
 * the backup's link keeps the old bytes. Functions return 0 or a negative errno with
 * store_err_msg() set; they block (pool threads only). */
#ifndef STORE_SNAPSHOT_H
#define STORE_SNAPSHOT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/coll.h"

#define SNAPSHOT_SHA256_LEN 32
#define SNAPSHOT_DB_NAME "records.db"
#define SNAPSHOT_FILES_DIR "files"

typedef struct snapshot_db_info {
	int64_t records;
	int64_t bytes;
	int64_t taken_at_us; /* unix time just before the snapshot's read transaction began */
	uint8_t sha256[SNAPSHOT_SHA256_LEN];
} snapshot_db_info;

/* Copies c's records.db as of one moment to dest_path (a new file: -EEXIST otherwise),
 * made self-contained (rollback journal, no WAL beside it), fsynced, and hashed. Every
 * write acknowledged before info->taken_at_us is in the copy, every write is wholly in it
 * or not at all. */
int snapshot_db(store_coll *c, const char *dest_path, snapshot_db_info *info);

/* Copies the database file at src_path (a snapshot) to dest_path, fsynced. */
int snapshot_copy_db(const char *src_path, const char *dest_path);

/* Called for each regular file copied; path is relative to the tree's root. A nonzero
 * return stops the copy and is returned. */
typedef int (*snapshot_file_fn)(void *ctx, const char *path, uint64_t size,
				const uint8_t sha256[SNAPSHOT_SHA256_LEN]);

/* Copies the tree under the directory src_fd into the (existing, empty) directory dest_fd:
 * directories made, regular files hard-linked when link is true and the file system allows
 * it, else copied; links and special files are skipped; every file and directory made is
 * fsynced. fn (optional) gets each file with its SHA-256. *count and *bytes: the files. */
int snapshot_tree(int src_fd, int dest_fd, bool link, snapshot_file_fn fn, void *ctx,
		  int64_t *count, int64_t *bytes);
/* The attachment tree of c, as snapshot_tree does from its files/ directory. */
int snapshot_coll_files(store_coll *c, int dest_fd, snapshot_file_fn fn, void *ctx, int64_t *count,
			int64_t *bytes);

/* SHA-256 and size of the regular file path inside dirfd (no link followed). */
int snapshot_hash_file(int dirfd, const char *path, uint8_t sha256[SNAPSHOT_SHA256_LEN],
		       int64_t *size);

/* PRAGMA integrity_check on a read-only open of the database at path (no copy made, no
 * journal or WAL created): 0 when it answers ok, -EBADMSG (the first problem in
 * store_err_msg()) when not, or another error. */
int snapshot_db_check(const char *path);

/* Record count of the database at path, read-only. */
int snapshot_db_count(const char *path, int64_t *records);

#endif
