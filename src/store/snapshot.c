#include "store/snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/mem.h"
#include "store/dirs.h"
#include "store/files.h"
#include "store/store_int.h"

#define COPY_CHUNK (256 * 1024)

static int fsync_path(const char *path, int flags)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | flags);
	if (fd < 0)
		return -errno;
	int rc = fsync(fd) ? -errno : 0;
	close(fd);
	return rc;
}

/* --- hashing and copying files ----------------------------------------------------------- */

typedef struct hasher {
	EVP_MD_CTX *md;
} hasher;

static int hasher_init(hasher *h)
{
	h->md = EVP_MD_CTX_new();
	if (!h->md || EVP_DigestInit_ex(h->md, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(h->md);
		return store_err_set(-ENOMEM, "sha256: out of memory");
	}
	return 0;
}

static void hasher_final(hasher *h, uint8_t out[SNAPSHOT_SHA256_LEN])
{
	unsigned n = 0;
	EVP_DigestFinal_ex(h->md, out, &n);
	EVP_MD_CTX_free(h->md);
}

/* Reads fd to its end, hashing, and writing to out_fd when it is >= 0. */
static int pump(int fd, int out_fd, uint8_t sha[SNAPSHOT_SHA256_LEN], int64_t *size)
{
	hasher h;
	int rc = hasher_init(&h);
	if (rc)
		return rc;
	uint8_t *b = mem_alloc(COPY_CHUNK);
	if (!b) {
		uint8_t dummy[SNAPSHOT_SHA256_LEN];
		hasher_final(&h, dummy);
		return store_err_set(-ENOMEM, "out of memory");
	}
	int64_t total = 0;
	for (;;) {
		ssize_t n = read(fd, b, COPY_CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = store_err_set(-errno, "read: %s", strerror(errno));
			break;
		}
		if (n == 0)
			break;
		EVP_DigestUpdate(h.md, b, (size_t)n);
		total += n;
		for (ssize_t off = 0; out_fd >= 0 && off < n;) {
			ssize_t w = write(out_fd, b + off, (size_t)(n - off));
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0) {
				rc = store_err_set(-errno, "write: %s", strerror(errno));
				break;
			}
			off += w;
		}
		if (rc)
			break;
	}
	mem_free(b);
	hasher_final(&h, sha);
	if (size)
		*size = total;
	return rc;
}

int snapshot_hash_file(int dirfd, const char *path, uint8_t sha256[SNAPSHOT_SHA256_LEN],
		       int64_t *size)
{
	int fd = openat(dirfd, path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return store_err_set(-errno, "%s: %s", path, strerror(errno));
	struct stat sb;
	int rc = 0;
	if (fstat(fd, &sb) || !S_ISREG(sb.st_mode))
		rc = store_err_set(-EINVAL, "%s: not a regular file", path);
	if (!rc)
		rc = pump(fd, -1, sha256, size);
	close(fd);
	return rc;
}

/* Copies name in sfd to name in dfd (a new file), fsynced, with its hash. */
static int copy_file(int sfd, const char *name, int dfd, uint8_t sha[SNAPSHOT_SHA256_LEN],
		     int64_t *size)
{
	int in = openat(sfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (in < 0)
		return store_err_set(-errno, "open %s: %s", name, strerror(errno));
	int out = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (out < 0) {
		int e = errno;
		close(in);
		return store_err_set(-e, "create %s: %s", name, strerror(e));
	}
	int rc = pump(in, out, sha, size);
	if (!rc && fsync(out))
		rc = store_err_set(-errno, "fsync %s: %s", name, strerror(errno));
	close(in);
	close(out);
	return rc;
}

/* --- trees ---------------------------------------------------------------------------------- */

typedef struct tree_walk {
	bool link;
	snapshot_file_fn fn;
	void *ctx;
	int64_t count, bytes;
	char path[FILES_PATH_MAX + 1];
} tree_walk;

static int tree_dir(tree_walk *w, int sfd, int dfd, size_t len, int depth)
{
	DIR *d;
	int rc = dirs_open(sfd, ".", 0, &d);
	if (rc)
		return store_err_set(rc, "list %s: %s", len ? w->path : "files", strerror(-rc));
	struct dirent *e;
	while (rc == 0 && (e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		struct stat sb;
		if (fstatat(sfd, e->d_name, &sb, AT_SYMLINK_NOFOLLOW))
			continue; /* removed meanwhile */
		bool dir = S_ISDIR(sb.st_mode);
		if (!dir && !S_ISREG(sb.st_mode))
			continue;
		size_t n = (size_t)snprintf(w->path + len, sizeof(w->path) - len, "%s%s",
					    len ? "/" : "", e->d_name);
		if (len + n >= sizeof(w->path))
			continue; /* not a path the API could have made */
		if (dir) {
			if (depth >= FILES_DEPTH_MAX)
				goto next;
			if (mkdirat(dfd, e->d_name, 0755)) {
				rc = store_err_set(-errno, "mkdir %s: %s", w->path,
						   strerror(errno));
				break;
			}
			int s2 = openat(sfd, e->d_name,
					O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			int d2 = openat(dfd, e->d_name,
					O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (s2 >= 0 && d2 >= 0)
				rc = tree_dir(w, s2, d2, len + n, depth + 1);
			if (!rc && d2 >= 0 && fsync(d2))
				rc = store_err_set(-errno, "fsync %s: %s", w->path,
						   strerror(errno));
			if (s2 >= 0)
				close(s2);
			if (d2 >= 0)
				close(d2);
			goto next;
		}
		uint8_t sha[SNAPSHOT_SHA256_LEN];
		int64_t size = 0;
		bool linked = w->link && linkat(sfd, e->d_name, dfd, e->d_name, 0) == 0;
		if (linked) {
			/* Hashed from the link: the inode is the one the source renamed in
			 * whole, so these are the bytes the backup keeps. */
			rc = snapshot_hash_file(dfd, e->d_name, sha, &size);
		} else {
			rc = copy_file(sfd, e->d_name, dfd, sha, &size);
			if (rc == -ENOENT) {
				rc = 0; /* deleted meanwhile: not in the snapshot */
				goto next;
			}
			if (rc)
				store_err_set(rc, "copy %s: %s", w->path, store_err_msg());
		}
		if (rc)
			goto next;
		w->count++;
		w->bytes += size;
		if (w->fn)
			rc = w->fn(w->ctx, w->path, (uint64_t)size, sha);
	next:
		w->path[len] = 0;
	}
	closedir(d);
	return rc;
}

int snapshot_tree(int src_fd, int dest_fd, bool link, snapshot_file_fn fn, void *ctx,
		  int64_t *count, int64_t *bytes)
{
	tree_walk *w = mem_calloc(1, sizeof(*w));
	if (!w)
		return store_err_set(-ENOMEM, "out of memory");
	*w = (tree_walk){.link = link, .fn = fn, .ctx = ctx};
	int rc = tree_dir(w, src_fd, dest_fd, 0, 0);
	if (!rc && fsync(dest_fd))
		rc = store_err_set(-errno, "fsync: %s", strerror(errno));
	if (count)
		*count = w->count;
	if (bytes)
		*bytes = w->bytes;
	mem_free(w);
	return rc;
}

int snapshot_coll_files(store_coll *c, int dest_fd, snapshot_file_fn fn, void *ctx, int64_t *count,
			int64_t *bytes)
{
	return snapshot_tree(coll_files_fd(c), dest_fd, true, fn, ctx, count, bytes);
}

/* --- databases -------------------------------------------------------------------------- */

/* Leaves dest (a fresh copy) in rollback-journal mode, so that it is one file that a
 * read-only open can check, then closes it. */
static int finish_dest(sqlite3 *dst, int rc)
{
	if (!rc) {
		int src = sqlite3_exec(dst, "PRAGMA journal_mode=DELETE", NULL, NULL, NULL);
		if (src != SQLITE_OK)
			rc = db_fail(dst, src, "snapshot journal mode");
	}
	int src = sqlite3_close(dst);
	if (!rc && src != SQLITE_OK)
		rc = db_fail(NULL, src, "close snapshot");
	return rc;
}

static int backup_all(sqlite3 *src, sqlite3 *dst)
{
	sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
	if (!b)
		return db_fail(dst, sqlite3_errcode(dst), "snapshot");
	int step = sqlite3_backup_step(b, -1);
	int fin = sqlite3_backup_finish(b);
	if (step != SQLITE_DONE)
		return db_fail(NULL, step, "snapshot");
	if (fin != SQLITE_OK)
		return db_fail(dst, fin, "snapshot");
	return 0;
}

static int open_dest(const char *dest_path, sqlite3 **dst)
{
	struct stat sb;
	if (lstat(dest_path, &sb) == 0)
		return store_err_set(-EEXIST, "%s exists", dest_path);
	int src = db_open(dest_path,
			  SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, dst);
	/* A copy being made is nobody's yet: it is fsynced once when complete (hash_db),
	 * not at each of SQLite's commits, which only add flushes for the writer to queue
	 * behind. */
	if (src == SQLITE_OK)
		src = sqlite3_exec(*dst, "PRAGMA synchronous=OFF", NULL, NULL, NULL);
	if (src != SQLITE_OK) {
		int rc = db_fail(*dst, src, "create snapshot");
		sqlite3_close(*dst);
		*dst = NULL;
		return rc;
	}
	return 0;
}

static int open_ro(const char *path, sqlite3 **db)
{
	char uri[PATH_MAX + 32];
	if (snprintf(uri, sizeof(uri), "file:%s?mode=ro", path) >= (int)sizeof(uri))
		return store_err_set(-ENAMETOOLONG, "path too long");
	int src = db_open(uri, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX, db);
	if (src != SQLITE_OK) {
		int rc = db_fail(*db, src, "open");
		sqlite3_close(*db);
		*db = NULL;
		return rc;
	}
	sqlite3_busy_timeout(*db, 5000);
	return 0;
}

static int count_records(sqlite3 *db, int64_t *n)
{
	sqlite3_stmt *st = NULL;
	int src = sqlite3_prepare_v2(db, "SELECT count(*) FROM records", -1, &st, NULL);
	if (src == SQLITE_OK && (src = sqlite3_step(st)) == SQLITE_ROW)
		*n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return src == SQLITE_ROW ? 0 : db_fail(db, src, "count records");
}

static int hash_db(const char *path, snapshot_db_info *info)
{
	int rc = fsync_path(path, 0);
	if (rc)
		return store_err_set(rc, "fsync %s: %s", path, strerror(-rc));
	return snapshot_hash_file(AT_FDCWD, path, info->sha256, &info->bytes);
}

int snapshot_db(store_coll *c, const char *dest_path, snapshot_db_info *info)
{
	char path[PATH_MAX];
	if (snprintf(path, sizeof(path), "%s", coll_db_path(c)) >= (int)sizeof(path))
		return store_err_set(-ENAMETOOLONG, "path too long");
	sqlite3 *src = NULL, *dst = NULL;
	int rc = open_ro(path, &src);
	if (!rc)
		rc = open_dest(dest_path, &dst);
	if (rc) {
		sqlite3_close(src);
		return rc;
	}
	/* The read transaction starts at its first read (the count); whatever was
	 * acknowledged before the clock is read is committed, hence in it. */
	info->taken_at_us = clock_wall_ns() / 1000;
	int sq = sqlite3_exec(src, "BEGIN", NULL, NULL, NULL);
	rc = sq == SQLITE_OK ? count_records(src, &info->records) : db_fail(src, sq, "begin");
	if (!rc)
		rc = backup_all(src, dst);
	sqlite3_exec(src, "COMMIT", NULL, NULL, NULL);
	sqlite3_close(src);
	rc = finish_dest(dst, rc);
	if (!rc)
		rc = hash_db(dest_path, info);
	if (rc)
		unlink(dest_path);
	return rc;
}

int snapshot_copy_db(const char *src_path, const char *dest_path)
{
	int in = open(src_path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (in < 0)
		return store_err_set(-errno, "open %s: %s", src_path, strerror(errno));
	int out = open(dest_path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (out < 0) {
		int e = errno;
		close(in);
		return store_err_set(-e, "create %s: %s", dest_path, strerror(e));
	}
	uint8_t sha[SNAPSHOT_SHA256_LEN];
	int rc = pump(in, out, sha, NULL);
	if (!rc && fsync(out))
		rc = store_err_set(-errno, "fsync %s: %s", dest_path, strerror(errno));
	close(in);
	close(out);
	if (rc)
		unlink(dest_path);
	return rc;
}

int snapshot_db_check(const char *path)
{
	sqlite3 *db = NULL;
	int rc = open_ro(path, &db);
	if (rc)
		return rc;
	sqlite3_stmt *st = NULL;
	int src = sqlite3_prepare_v2(db, "PRAGMA integrity_check(1)", -1, &st, NULL);
	if (src == SQLITE_OK)
		src = sqlite3_step(st);
	if (src == SQLITE_ROW) {
		const char *r = (const char *)sqlite3_column_text(st, 0);
		rc = r && !strcmp(r, "ok")
			     ? 0
			     : store_err_set(-EBADMSG, "integrity check: %.200s", r ? r : "?");
	} else {
		rc = store_sqlite_errno(src);
		store_err_set(rc ? rc : -EIO, "integrity check: %s", sqlite3_errmsg(db));
		rc = -EBADMSG;
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	return rc;
}

int snapshot_db_count(const char *path, int64_t *records)
{
	sqlite3 *db = NULL;
	int rc = open_ro(path, &db);
	if (!rc)
		rc = count_records(db, records);
	sqlite3_close(db);
	return rc;
}
