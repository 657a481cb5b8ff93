/* Attachments: the path grammar, put/get/list/delete, atomic replacement, size limits,
 * and that no path or planted link leads out of the files/ tree (with openat2 and with
 * the O_NOFOLLOW walk). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "store/coll.h"
#include "store/files.h"
#include "store/store.h"

static char dir[64];
static char files_dir[128];
static char outside[128];
static store *st;
static store_coll *coll;

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/test_files-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(files_dir, sizeof(files_dir), "%s/zoo/animals/files", dir);
	snprintf(outside, sizeof(outside), "%s/outside", dir);
	if (mkdir(outside, 0755))
		return -1;
	if (store_open(dir, NULL, &st))
		return -1;
	store_collection c = {.ns = "zoo", .name = "animals"};
	if (store_collection_create(st, &c, 0) || store_coll_acquire(st, "zoo", "animals", &coll))
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	store_coll_release(coll);
	store_close(st);
	files_use_openat2(true);
	return nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int put(const char *path, const char *content)
{
	files_writer *w;
	int rc = files_put_begin(coll, path, 0, &w);
	if (rc < 0)
		return rc;
	if ((rc = files_put_chunk(w, content, strlen(content))) < 0) {
		files_put_abort(w);
		return rc;
	}
	return files_put_commit(w);
}

/* The whole file as a string, or NULL with *rc set. */
static char *get(const char *path, int *rc)
{
	files_reader *r;
	uint64_t size;
	*rc = files_get_open(coll, path, &r, &size);
	if (*rc < 0)
		return NULL;
	char *buf = calloc(1, size + 1);
	assert_non_null(buf);
	assert_int_equal(files_get_read(r, 0, buf, size + 1), (ssize_t)size);
	files_get_close(r);
	return buf;
}

static void assert_content(const char *path, const char *want)
{
	int rc;
	char *got = get(path, &rc);
	assert_int_equal(rc, 0);
	assert_string_equal(got, want);
	free(got);
}

static bool exists(const char *fmt, ...)
{
	char p[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(p, sizeof(p), fmt, ap);
	va_end(ap);
	struct stat sb;
	return lstat(p, &sb) == 0;
}

static size_t staging_entries(void)
{
	char p[256];
	snprintf(p, sizeof(p), "%s/zoo/animals/staging", dir);
	int fd = open(p, O_RDONLY | O_DIRECTORY);
	assert_true(fd >= 0);
	DIR *d = fdopendir(fd);
	size_t n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

static void test_path_check(void **state)
{
	(void)state;
	char seg255[256], seg256[257], deep[100], deeper[200], long_path[1100];
	memset(seg255, 'a', 255);
	seg255[255] = 0;
	memset(seg256, 'a', 256);
	seg256[256] = 0;
	deep[0] = deeper[0] = 0;
	for (int i = 0; i < 32; i++)
		strcat(deep, i ? "/d" : "d");
	snprintf(deeper, sizeof(deeper), "%s/d", deep);
	snprintf(long_path, sizeof(long_path), "%s/%s/%s/%s/%s", seg255, seg255, seg255, seg255,
		 "abcd");
	const char *good[] = {"a",	 "a/b/c.txt",	      "..a",  "a..", ".hidden", "a b",
			      "x/.../y", "\xc3\xa9t\xc3\xa9", seg255, deep};
	for (size_t i = 0; i < sizeof(good) / sizeof(*good); i++)
		assert_int_equal(files_path_check(good[i]), 0);
	const char *bad[] = {"",     "/a",  "a/",   "a//b",  ".",    "..",   "a/../b", "a/./b",
			     "../x", "./x", "a\\b", "..\\x", seg256, deeper, long_path};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		assert_int_equal(files_path_check(bad[i]), -EINVAL);
	assert_int_equal(files_path_check(NULL), -EINVAL);
	/* Every entry point checks. */
	files_writer *w;
	assert_int_equal(files_put_begin(coll, "../escape", 0, &w), -EINVAL);
	int rc;
	assert_null(get("../../system/catalog.db", &rc));
	assert_int_equal(rc, -EINVAL);
	assert_int_equal(files_delete(coll, "..", true, NULL), -EINVAL);
	assert_int_equal(files_list(coll, "a/../..", NULL, NULL), -EINVAL);
}

static void test_put_get(void **state)
{
	(void)state;
	files_writer *w;
	assert_int_equal(files_put_begin(coll, "docs/2024/readme.txt", 0, &w), 0);
	assert_int_equal(files_put_chunk(w, "hello ", 6), 0);
	assert_int_equal(files_put_chunk(w, "", 0), 0);
	assert_int_equal(files_put_chunk(w, "world", 5), 0);
	assert_int_equal(files_put_commit(w), 0);
	assert_true(exists("%s/docs/2024/readme.txt", files_dir));
	assert_int_equal(staging_entries(), 0);

	files_reader *r;
	uint64_t size;
	assert_int_equal(files_get_open(coll, "docs/2024/readme.txt", &r, &size), 0);
	assert_int_equal(size, 11);
	char buf[16] = {0};
	assert_int_equal(files_get_read(r, 6, buf, sizeof(buf)), 5);
	assert_string_equal(buf, "world");
	assert_int_equal(files_get_read(r, 11, buf, sizeof(buf)), 0);
	assert_int_equal(files_get_read(r, 1000, buf, sizeof(buf)), 0);
	files_get_close(r);

	/* Replacing is atomic: until commit, readers see the old file. */
	assert_int_equal(files_put_begin(coll, "docs/2024/readme.txt", 0, &w), 0);
	assert_int_equal(files_put_chunk(w, "new", 3), 0);
	assert_content("docs/2024/readme.txt", "hello world");
	assert_int_equal(files_put_commit(w), 0);
	assert_content("docs/2024/readme.txt", "new");

	/* Empty files exist. */
	assert_int_equal(put("empty", ""), 0);
	assert_content("empty", "");

	int rc;
	assert_null(get("docs/missing", &rc));
	assert_int_equal(rc, -ENOENT);
	assert_null(get("docs", &rc));
	assert_int_equal(rc, -EISDIR);
	assert_non_null(strstr(store_err_msg(), "docs"));
	/* A directory cannot be replaced by a file, nor a file used as a directory. */
	assert_int_equal(put("docs/2024", "x"), -EISDIR);
	assert_int_equal(put("docs/2024/readme.txt/x", "x"), -ENOTDIR);
	assert_int_equal(staging_entries(), 0);
	assert_content("docs/2024/readme.txt", "new");
}

static void test_put_limits(void **state)
{
	(void)state;
	files_writer *w;
	assert_int_equal(files_put_begin(coll, "small", 10, &w), 0);
	assert_int_equal(files_put_chunk(w, "123456", 6), 0);
	assert_int_equal(files_put_chunk(w, "7890", 4), 0);
	assert_int_equal(files_put_chunk(w, "x", 1), -EFBIG);
	assert_int_equal(files_put_chunk(w, "", 0), -EFBIG);
	assert_int_equal(files_put_commit(w), -EFBIG);
	assert_false(exists("%s/small", files_dir));
	assert_int_equal(staging_entries(), 0);

	assert_int_equal(files_put_begin(coll, "small", 10, &w), 0);
	assert_int_equal(files_put_chunk(w, "0123456789", 10), 0);
	assert_int_equal(files_put_commit(w), 0);
	assert_content("small", "0123456789");

	/* Abort leaves neither the file nor its upload behind. */
	assert_int_equal(files_put_begin(coll, "aborted", 0, &w), 0);
	assert_int_equal(files_put_chunk(w, "zzz", 3), 0);
	assert_int_equal(staging_entries(), 1);
	files_put_abort(w);
	assert_false(exists("%s/aborted", files_dir));
	assert_int_equal(staging_entries(), 0);
}

typedef struct seen {
	char path[16][64];
	uint64_t size[16];
	bool is_dir[16];
	size_t n;
	size_t stop_after;
} seen;

static int on_entry(void *ctx, const files_entry *e)
{
	seen *s = ctx;
	assert_true(s->n < 16);
	snprintf(s->path[s->n], sizeof(s->path[0]), "%s", e->path);
	s->size[s->n] = e->size;
	s->is_dir[s->n] = e->is_dir;
	assert_true(e->mtime > 0);
	s->n++;
	return s->stop_after && s->n == s->stop_after ? 42 : 0;
}

static ssize_t find(const seen *s, const char *path)
{
	for (size_t i = 0; i < s->n; i++)
		if (!strcmp(s->path[i], path))
			return (ssize_t)i;
	return -1;
}

static void test_list(void **state)
{
	(void)state;
	assert_int_equal(put("a/one.txt", "1"), 0);
	assert_int_equal(put("a/b/two.txt", "22"), 0);
	assert_int_equal(put("top.txt", "333"), 0);
	char p[256];
	snprintf(p, sizeof(p), "%s/emptydir", files_dir);
	assert_int_equal(mkdir(p, 0755), 0);

	seen s = {0};
	assert_int_equal(files_list(coll, NULL, on_entry, &s), 0);
	assert_int_equal(s.n, 6);
	ssize_t i = find(&s, "a/b/two.txt");
	assert_true(i >= 0);
	assert_int_equal(s.size[i], 2);
	assert_false(s.is_dir[i]);
	i = find(&s, "a/b");
	assert_true(i >= 0 && s.is_dir[i]);
	assert_true(find(&s, "a") < i); /* a directory comes before its contents */
	assert_true(find(&s, "emptydir") >= 0);
	assert_int_equal(s.size[find(&s, "top.txt")], 3);

	memset(&s, 0, sizeof(s));
	assert_int_equal(files_list(coll, "a", on_entry, &s), 0);
	assert_int_equal(s.n, 3);
	assert_true(find(&s, "a/b/two.txt") >= 0);
	assert_true(find(&s, "a/one.txt") >= 0);

	memset(&s, 0, sizeof(s));
	assert_int_equal(files_list(coll, "", on_entry, &s), 0);
	assert_int_equal(s.n, 6);
	memset(&s, 0, sizeof(s));
	s.stop_after = 2;
	assert_int_equal(files_list(coll, NULL, on_entry, &s), 42);
	assert_int_equal(s.n, 2);

	assert_int_equal(files_list(coll, "top.txt", on_entry, &s), -ENOTDIR);
	assert_int_equal(files_list(coll, "nowhere", on_entry, &s), -ENOENT);
}

static void test_delete(void **state)
{
	(void)state;
	assert_int_equal(put("a/one.txt", "1"), 0);
	assert_int_equal(put("a/b/two.txt", "22"), 0);
	assert_int_equal(put("a/b/c/three.txt", "333"), 0);
	int64_t n = -1;
	assert_int_equal(files_delete(coll, "a/one.txt", false, &n), 0);
	assert_int_equal(n, 1);
	assert_false(exists("%s/a/one.txt", files_dir));
	assert_int_equal(files_delete(coll, "a/one.txt", false, &n), -ENOENT);
	assert_int_equal(files_delete(coll, "zz/one.txt", false, &n), -ENOENT);
	assert_int_equal(files_delete(coll, "a/b", false, &n), -ENOTEMPTY);
	assert_true(exists("%s/a/b/two.txt", files_dir));
	assert_int_equal(files_delete(coll, "a/b", true, &n), 0);
	assert_int_equal(n, 2);
	assert_false(exists("%s/a/b", files_dir));
	assert_int_equal(files_delete(coll, "a", false, NULL), 0); /* empty now */
	assert_false(exists("%s/a", files_dir));
}

/* Links planted inside files/ lead nowhere, whichever way paths are opened. */
static void symlink_escapes(void)
{
	char p[256], q[256];
	snprintf(p, sizeof(p), "%s/secret", outside);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fputs("secret", f);
	fclose(f);
	snprintf(p, sizeof(p), "%s/evil", files_dir);
	assert_int_equal(symlink(outside, p), 0);
	snprintf(p, sizeof(p), "%s/link.txt", files_dir);
	snprintf(q, sizeof(q), "%s/secret", outside);
	assert_int_equal(symlink(q, p), 0);
	snprintf(p, sizeof(p), "%s/up", files_dir);
	assert_int_equal(symlink("../../..", p), 0);
	assert_int_equal(put("real/inner.txt", "in"), 0);
	snprintf(p, sizeof(p), "%s/real/back", files_dir);
	assert_int_equal(symlink("../evil", p), 0);

	const char *via_link[] = {"evil/secret", "link.txt", "up/system/catalog.db",
				  "real/back/secret", "evil"};
	for (size_t i = 0; i < sizeof(via_link) / sizeof(*via_link); i++) {
		int rc;
		char *got = get(via_link[i], &rc);
		if (got)
			fail_msg("%s was read through a link", via_link[i]);
		assert_true(rc == -ELOOP || rc == -EXDEV || rc == -ENOTDIR);
	}
	/* Writing through a link is refused, and nothing appears outside. */
	assert_true(put("evil/new.txt", "x") < 0);
	assert_true(put("evil/sub/new.txt", "x") < 0);
	assert_true(put("real/back/new.txt", "x") < 0);
	assert_false(exists("%s/new.txt", outside));
	assert_false(exists("%s/sub", outside));
	assert_int_equal(staging_entries(), 0);
	/* Replacing a link swaps the link itself, never writes its target. */
	assert_int_equal(put("link.txt", "mine"), 0);
	assert_content("link.txt", "mine");
	char buf[16] = {0};
	f = fopen(q, "r");
	assert_non_null(f);
	assert_non_null(fgets(buf, sizeof(buf), f));
	fclose(f);
	assert_string_equal(buf, "secret");
	/* Listing shows no link and nothing behind one. */
	seen s = {0};
	assert_int_equal(files_list(coll, NULL, on_entry, &s), 0);
	for (size_t i = 0; i < s.n; i++)
		assert_null(strstr(s.path[i], "secret"));
	assert_true(find(&s, "evil") < 0);
	assert_int_equal(files_list(coll, "evil", on_entry, &s) < 0, 1);
	/* Deleting through a link is refused; deleting the link removes the link only. */
	assert_true(files_delete(coll, "evil/secret", false, NULL) < 0);
	assert_true(exists("%s/secret", outside));
	assert_int_equal(files_delete(coll, "evil", true, NULL), 0);
	assert_false(exists("%s/evil", files_dir));
	assert_true(exists("%s/secret", outside));
}

static void test_symlinks_openat2(void **state)
{
	(void)state;
	files_use_openat2(true);
	symlink_escapes();
}

static void test_symlinks_walk(void **state)
{
	(void)state;
	files_use_openat2(false);
	symlink_escapes();
	/* The walk creates directories like openat2's path does. */
	assert_int_equal(put("w/x/y.txt", "walked"), 0);
	assert_content("w/x/y.txt", "walked");
}

static void test_special_files(void **state)
{
	(void)state;
	char p[256];
	snprintf(p, sizeof(p), "%s/fifo", files_dir);
	assert_int_equal(mkfifo(p, 0644), 0);
	int rc;
	assert_null(get("fifo", &rc)); /* and does not hang */
	assert_int_equal(rc, -EINVAL);
	seen s = {0};
	assert_int_equal(files_list(coll, NULL, on_entry, &s), 0);
	assert_int_equal(s.n, 0);
}

static void test_staging_swept(void **state)
{
	(void)state;
	files_writer *w;
	assert_int_equal(files_put_begin(coll, "left", 0, &w), 0);
	assert_int_equal(files_put_chunk(w, "zzz", 3), 0);
	/* As if the node died mid-upload: the staging file stays until the next open. */
	char p[256];
	snprintf(p, sizeof(p), "%s/zoo/animals/staging/put-stale", dir);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fclose(f);
	files_put_abort(w);
	assert_int_equal(staging_entries(), 1);
	store_coll_release(coll);
	store_close(st);
	assert_int_equal(store_open(dir, NULL, &st), 0);
	assert_int_equal(store_coll_acquire(st, "zoo", "animals", &coll), 0);
	assert_int_equal(staging_entries(), 0);
	assert_false(exists("%s/left", files_dir));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_path_check, setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_get, setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_list, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_symlinks_openat2, setup, teardown),
		cmocka_unit_test_setup_teardown(test_symlinks_walk, setup, teardown),
		cmocka_unit_test_setup_teardown(test_special_files, setup, teardown),
		cmocka_unit_test_setup_teardown(test_staging_swept, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
