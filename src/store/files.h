/* A collection's attachments: a tree of plain files under <coll>/files/.
 *
 * Paths are relative, '/'-separated segments; a segment is 1..255 bytes, not "." or "..",
 * without NUL or backslash; at most 1024 bytes and 32 segments in all. Every path is
 * opened beneath the files/ directory without following any symbolic link
 * (openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, or an O_NOFOLLOW walk where openat2 is
 * missing), so neither a path nor a link planted in the tree can lead out of it.
 *
 * An upload is written under staging/ and renamed into place on commit, so readers see
 * the old file or the new one, never a part. The caller holds its collection handle until
 * each writer and reader is closed. Functions return 0 or a negative errno. */
#ifndef STORE_FILES_H
#define STORE_FILES_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "store/coll.h"

#define FILES_PATH_MAX 1024
#define FILES_SEGMENT_MAX 255
#define FILES_DEPTH_MAX 32

/* 0 or -EINVAL. */
int files_path_check(const char *path);

typedef struct files_writer files_writer;
/* Starts an upload to path (its directories are created). max_size: bytes accepted in
 * all, 0 for no limit. */
int files_put_begin(store_coll *c, const char *path, uint64_t max_size, files_writer **out);
/* -EFBIG past max_size (the upload is then only good for abort). */
int files_put_chunk(files_writer *w, const void *data, size_t len);
/* Makes the file durable and visible under its path; frees w whatever the outcome.
 * -EISDIR when a directory has that path. */
int files_put_commit(files_writer *w);
void files_put_abort(files_writer *w);

typedef struct files_reader files_reader;
int files_get_open(store_coll *c, const char *path, files_reader **out, uint64_t *size);
/* Bytes read (0 at the end) or a negative errno. */
ssize_t files_get_read(files_reader *r, uint64_t offset, void *buf, size_t len);
void files_get_close(files_reader *r);

typedef struct files_entry {
	const char *path; /* relative to files/ */
	uint64_t size;
	int64_t mtime; /* unix microseconds */
	bool is_dir;
} files_entry;
/* Calls cb for every file and directory under under ("" or NULL: everything), depth
 * first, a directory before its contents. Links and special files are skipped. A
 * nonzero return of cb stops the walk and is returned. */
int files_list(store_coll *c, const char *under, int (*cb)(void *ctx, const files_entry *e),
	       void *ctx);
/* Removes a file, or a directory: an empty one, or with recursive its whole tree.
 * *removed (optional): files removed. -ENOTEMPTY for a non-empty directory. */
int files_delete(store_coll *c, const char *path, bool recursive, int64_t *removed);

/* Tests: walk with O_NOFOLLOW even where openat2 exists. */
void files_use_openat2(bool on);

#endif
