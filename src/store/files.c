#include "store/files.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/mem.h"
#include "base/uuid.h"
#include "store/dirs.h"
#include "store/store_int.h"

static atomic_bool have_openat2 = true;

void files_use_openat2(bool on) { atomic_store(&have_openat2, on); }

int files_path_check(const char *path)
{
	if (!path || !*path)
		return store_err_set(-EINVAL, "empty file path");
	size_t depth = 0, seg = 0;
	const char *p = path;
	for (;; p++) {
		if (*p == '/' || !*p) {
			if (seg == 0)
				return store_err_set(-EINVAL, "empty segment in file path");
			const char *s = p - seg;
			if ((seg == 1 && s[0] == '.') || (seg == 2 && s[0] == '.' && s[1] == '.'))
				return store_err_set(-EINVAL, "'.' or '..' in file path");
			if (++depth > FILES_DEPTH_MAX)
				return store_err_set(-EINVAL, "file path deeper than %d",
						     FILES_DEPTH_MAX);
			seg = 0;
			if (!*p)
				break;
			continue;
		}
		if (*p == '\\')
			return store_err_set(-EINVAL, "backslash in file path");
		if (++seg > FILES_SEGMENT_MAX)
			return store_err_set(-EINVAL, "file path segment longer than %d",
					     FILES_SEGMENT_MAX);
	}
	if ((size_t)(p - path) > FILES_PATH_MAX)
		return store_err_set(-EINVAL, "file path longer than %d", FILES_PATH_MAX);
	return 0;
}

/* Opens a checked path beneath root, following no link on the way or at the end. With
 * mkdirs, every segment is made a directory where missing (a failed mkdir shows in the
 * open that follows). -errno. */
static int open_walk(int root, const char *path, int flags, bool mkdirs)
{
	char buf[FILES_PATH_MAX + 1];
	snprintf(buf, sizeof(buf), "%s", path);
	int fd = dup(root);
	if (fd < 0)
		return -errno;
	char *seg = buf;
	for (;;) {
		char *slash = strchr(seg, '/');
		if (slash)
			*slash = 0;
		if (mkdirs && mkdirat(fd, seg, 0755) == 0 && fsync(fd)) {
			int e = errno;
			close(fd);
			return -e;
		}
		int next = openat(
			fd, seg, (slash ? O_RDONLY | O_DIRECTORY : flags) | O_NOFOLLOW | O_CLOEXEC);
		int e = errno;
		close(fd);
		if (next < 0)
			return -e;
		if (!slash)
			return next;
		fd = next;
		seg = slash + 1;
	}
}

static int open_beneath(int root, const char *path, int flags)
{
	if (atomic_load(&have_openat2)) {
		struct open_how how = {
			.flags = (uint64_t)(flags | O_NOFOLLOW | O_CLOEXEC),
			.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
		};
		long fd = syscall(SYS_openat2, root, path, &how, sizeof(how));
		if (fd >= 0)
			return (int)fd;
		if (errno != ENOSYS)
			return -errno;
		atomic_store(&have_openat2, false);
	}
	return open_walk(root, path, flags, false);
}

/* Opens the directory holding path's last segment and points *leaf at that segment. */
static int open_parent(int root, const char *path, const char **leaf, bool mkdirs)
{
	const char *slash = strrchr(path, '/');
	if (!slash) {
		*leaf = path;
		int fd = dup(root);
		return fd < 0 ? -errno : fd;
	}
	*leaf = slash + 1;
	char dir[FILES_PATH_MAX + 1];
	snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	int fd = open_beneath(root, dir, O_RDONLY | O_DIRECTORY);
	if (fd == -ENOENT && mkdirs)
		fd = open_walk(root, dir, O_RDONLY | O_DIRECTORY, true);
	if (fd == -ELOOP || fd == -EXDEV)
		store_err_set(fd, "file path leads through a link");
	return fd;
}

static int fail_errno(int rc, const char *what, const char *path)
{
	return store_err_set(rc, "%s %s: %s", what, path, strerror(-rc));
}

/* --- put ------------------------------------------------------------------------------- */

struct files_writer {
	store_coll *c;
	int fd;
	char tmp[64]; /* its name in staging/ */
	char path[FILES_PATH_MAX + 1];
	uint64_t written, max;
	int failed;
};

int files_put_begin(store_coll *c, const char *path, uint64_t max_size, files_writer **out)
{
	int rc = files_path_check(path);
	if (rc < 0)
		return rc;
	files_writer *w = mem_calloc(1, sizeof(*w));
	if (!w)
		return store_err_set(-ENOMEM, "out of memory");
	char uuid[UUID_STR_LEN];
	if ((rc = uuid7_make(uuid)) < 0) {
		mem_free(w);
		return store_err_set(rc, "no randomness");
	}
	w->c = c;
	w->max = max_size;
	snprintf(w->tmp, sizeof(w->tmp), "put-%s", uuid);
	snprintf(w->path, sizeof(w->path), "%s", path);
	w->fd = openat(coll_staging_fd(c), w->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (w->fd < 0) {
		rc = fail_errno(-errno, "upload", path);
		mem_free(w);
		return rc;
	}
	*out = w;
	return 0;
}

int files_put_chunk(files_writer *w, const void *data, size_t len)
{
	if (w->failed)
		return store_err_set(w->failed, "upload failed earlier");
	if (w->max && (len > w->max || w->written > w->max - len))
		return w->failed = store_err_set(-EFBIG, "file larger than %llu bytes",
						 (unsigned long long)w->max);
	const char *p = data;
	while (len) {
		ssize_t n = write(w->fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return w->failed = fail_errno(-errno, "write", w->path);
		p += n;
		len -= (size_t)n;
		w->written += (uint64_t)n;
	}
	return 0;
}

void files_put_abort(files_writer *w)
{
	if (!w)
		return;
	close(w->fd);
	unlinkat(coll_staging_fd(w->c), w->tmp, 0);
	mem_free(w);
}

int files_put_commit(files_writer *w)
{
	int rc = w->failed;
	if (rc == 0 && fsync(w->fd))
		rc = fail_errno(-errno, "fsync", w->path);
	const char *leaf;
	int pfd = -1;
	if (rc == 0 && (pfd = open_parent(coll_files_fd(w->c), w->path, &leaf, true)) < 0)
		rc = fail_errno(pfd, "directory of", w->path);
	if (rc == 0 && renameat(coll_staging_fd(w->c), w->tmp, pfd, leaf))
		rc = fail_errno(-errno, "put", w->path);
	if (rc == 0 && fsync(pfd))
		rc = fail_errno(-errno, "fsync directory of", w->path);
	if (pfd >= 0)
		close(pfd);
	if (rc < 0) {
		files_put_abort(w);
		return rc;
	}
	close(w->fd);
	mem_free(w);
	return 0;
}

/* --- get ------------------------------------------------------------------------------- */

struct files_reader {
	int fd;
};

int files_get_open(store_coll *c, const char *path, files_reader **out, uint64_t *size)
{
	int rc = files_path_check(path);
	if (rc < 0)
		return rc;
	/* O_NONBLOCK: a FIFO planted in the tree must not hang the opener. */
	int fd = open_beneath(coll_files_fd(c), path, O_RDONLY | O_NONBLOCK);
	if (fd < 0)
		return fd == -ELOOP || fd == -EXDEV
			       ? store_err_set(fd, "file path leads through a link")
			       : fail_errno(fd, "open", path);
	struct stat sb;
	if (fstat(fd, &sb) || !S_ISREG(sb.st_mode)) {
		rc = fstat(fd, &sb) ? -errno : S_ISDIR(sb.st_mode) ? -EISDIR : -EINVAL;
		close(fd);
		return fail_errno(rc, "open", path);
	}
	files_reader *r = mem_alloc(sizeof(*r));
	if (!r) {
		close(fd);
		return store_err_set(-ENOMEM, "out of memory");
	}
	r->fd = fd;
	*size = (uint64_t)sb.st_size;
	*out = r;
	return 0;
}

ssize_t files_get_read(files_reader *r, uint64_t offset, void *buf, size_t len)
{
	for (;;) {
		ssize_t n = pread(r->fd, buf, len, (off_t)offset);
		if (n >= 0)
			return n;
		if (errno != EINTR)
			return store_err_set(-errno, "read: %s", strerror(errno));
	}
}

void files_get_close(files_reader *r)
{
	if (!r)
		return;
	close(r->fd);
	mem_free(r);
}

/* --- list, delete, trees ------------------------------------------------------------------ */

typedef struct walk {
	int (*cb)(void *ctx, const files_entry *e);
	void *ctx;
	char path[FILES_PATH_MAX + 1];
} walk;

static int list_dir(walk *w, int dfd, size_t len, int depth)
{
	DIR *d;
	int rc = dirs_open(dfd, ".", 0, &d);
	if (rc)
		return rc;
	struct dirent *e;
	while (rc == 0 && (e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		struct stat sb;
		if (fstatat(dfd, e->d_name, &sb, AT_SYMLINK_NOFOLLOW))
			continue; /* removed meanwhile */
		bool dir = S_ISDIR(sb.st_mode);
		if (!dir && !S_ISREG(sb.st_mode))
			continue;
		size_t n = (size_t)snprintf(w->path + len, sizeof(w->path) - len, "%s%s",
					    len ? "/" : "", e->d_name);
		if (len + n >= sizeof(w->path))
			continue; /* not a path this API could have made */
		files_entry fe = {
			.path = w->path,
			.size = dir ? 0 : (uint64_t)sb.st_size,
			.mtime = (int64_t)sb.st_mtim.tv_sec * 1000000 + sb.st_mtim.tv_nsec / 1000,
			.is_dir = dir,
		};
		rc = w->cb(w->ctx, &fe);
		if (rc == 0 && dir && depth < FILES_DEPTH_MAX) {
			int sub = openat(dfd, e->d_name,
					 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub >= 0) {
				rc = list_dir(w, sub, len + n, depth + 1);
				close(sub);
			}
		}
		w->path[len] = 0;
	}
	closedir(d);
	return rc;
}

int files_list(store_coll *c, const char *under, int (*cb)(void *ctx, const files_entry *e),
	       void *ctx)
{
	walk w = {.cb = cb, .ctx = ctx};
	int fd, depth = 0;
	if (under && *under) {
		int rc = files_path_check(under);
		if (rc < 0)
			return rc;
		fd = open_beneath(coll_files_fd(c), under, O_RDONLY | O_DIRECTORY);
		if (fd < 0)
			return fail_errno(fd, "list", under);
		snprintf(w.path, sizeof(w.path), "%s", under);
		for (const char *p = under; *p; p++)
			depth += *p == '/';
		depth++;
	} else {
		fd = dup(coll_files_fd(c));
		if (fd < 0)
			return fail_errno(-errno, "list", "/");
	}
	int rc = list_dir(&w, fd, strlen(w.path), depth);
	close(fd);
	if (rc < 0)
		store_err_set(rc, "list: %s", strerror(-rc));
	return rc;
}

/* Removes name in dirfd (a whole tree), counting regular files removed. */
int files_delete(store_coll *c, const char *path, bool recursive, int64_t *removed)
{
	int rc = files_path_check(path);
	if (rc < 0)
		return rc;
	const char *leaf;
	int pfd = open_parent(coll_files_fd(c), path, &leaf, false);
	if (pfd < 0)
		return pfd == -ELOOP || pfd == -EXDEV ? pfd : fail_errno(pfd, "delete", path);
	int64_t n = 0;
	struct stat sb;
	if (fstatat(pfd, leaf, &sb, AT_SYMLINK_NOFOLLOW))
		rc = -errno;
	else if (S_ISDIR(sb.st_mode) && recursive)
		rc = dirs_tree_remove(pfd, leaf, &n);
	else if (S_ISDIR(sb.st_mode))
		rc = unlinkat(pfd, leaf, AT_REMOVEDIR) ? -errno : 0;
	else if (unlinkat(pfd, leaf, 0))
		rc = -errno;
	else
		n = S_ISREG(sb.st_mode);
	if (rc == 0 && fsync(pfd))
		rc = -errno;
	close(pfd);
	if (rc < 0)
		return fail_errno(rc == -EEXIST ? -ENOTEMPTY : rc, "delete", path);
	if (removed)
		*removed = n;
	return 0;
}
