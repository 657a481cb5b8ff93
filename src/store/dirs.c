#include "store/dirs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Twice the deepest tree the attachments allow (files.h): deep enough for anything the
 * store made, and a bound on the recursion for anything planted. */
#define STAT_DEPTH_MAX 64

int dirs_open(int dfd, const char *name, int flags, DIR **out)
{
	int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | flags);
	*out = fd >= 0 ? fdopendir(fd) : NULL;
	if (*out)
		return 0;
	int e = errno;
	if (fd >= 0)
		close(fd);
	return -e;
}

static int tree_remove(int parent, const char *name, int64_t *count)
{
	struct stat sb;
	if (fstatat(parent, name, &sb, AT_SYMLINK_NOFOLLOW))
		return -errno;
	if (!S_ISDIR(sb.st_mode)) {
		if (unlinkat(parent, name, 0))
			return -errno;
		*count += S_ISREG(sb.st_mode);
		return 0;
	}
	DIR *d;
	int rc = dirs_open(parent, name, O_NOFOLLOW, &d);
	if (rc)
		return rc;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		int r = tree_remove(dirfd(d), e->d_name, count);
		if (r < 0 && r != -ENOENT && rc == 0)
			rc = r;
	}
	closedir(d);
	if (rc == 0 && unlinkat(parent, name, AT_REMOVEDIR))
		rc = -errno;
	return rc;
}

int dirs_tree_remove(int dirfd, const char *name, int64_t *count)
{
	int64_t n = 0;
	int rc = tree_remove(dirfd, name, &n);
	if (count)
		*count = n;
	return rc;
}

static int tree_stat(int dfd, int64_t *count, int64_t *bytes, int depth)
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
			continue;
		if (S_ISREG(sb.st_mode)) {
			*count += 1;
			*bytes += sb.st_size;
		} else if (S_ISDIR(sb.st_mode) && depth < STAT_DEPTH_MAX) {
			int sub = openat(dfd, e->d_name,
					 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub >= 0) {
				rc = tree_stat(sub, count, bytes, depth + 1);
				close(sub);
			}
		}
	}
	closedir(d);
	return rc;
}

int dirs_tree_stat(int dirfd, int64_t *count, int64_t *bytes)
{
	*count = *bytes = 0;
	return tree_stat(dirfd, count, bytes, 0);
}

void dirs_clear(int dirfd)
{
	DIR *d;
	if (dirs_open(dirfd, ".", 0, &d))
		return;
	struct dirent *e;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			tree_remove(dirfd, e->d_name, &(int64_t){0});
	closedir(d);
}
