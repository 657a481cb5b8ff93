/* Snapshots (store/snapshot.h), manifests (store/manifest.h) and installing a staged
 * collection (store_collection_install): a snapshot holds what was committed, a hard-linked
 * attachment keeps its bytes when the collection's file is replaced, a manifest survives
 * its round trip and refuses what it must, and an install with overwrite swaps the whole
 * collection. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
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

#include "base/buf.h"
#include "store/coll.h"
#include "store/files.h"
#include "store/manifest.h"
#include "store/snapshot.h"
#include "store/store.h"

static char dir[64];
static store *st;

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
	snprintf(dir, sizeof(dir), "/tmp/test_snapshot-XXXXXX");
	if (!mkdtemp(dir) || store_open(dir, NULL, &st))
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	store_close(st);
	return nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

typedef struct waiter {
	pthread_mutex_t m;
	pthread_cond_t cv;
	bool done;
	int rc;
} waiter;

static void done(store_write_req *req, int rc)
{
	waiter *w = req->ctx;
	pthread_mutex_lock(&w->m);
	w->done = true;
	w->rc = rc;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->m);
}

static void insert(store_coll *c, const char *id)
{
	waiter w = {.m = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
	store_op op = {.kind = STORE_OP_INSERT, .id = id, .row = {"x", 1, "{\"a\":\"b\"}", NULL}};
	store_write_req req = {.ops = &op, .nops = 1, .done = done, .ctx = &w};
	assert_int_equal(store_coll_write(c, &req), 0);
	pthread_mutex_lock(&w.m);
	while (!w.done)
		pthread_cond_wait(&w.cv, &w.m);
	pthread_mutex_unlock(&w.m);
	assert_int_equal(w.rc, 0);
}

static void put_file(store_coll *c, const char *path, const char *content)
{
	files_writer *w;
	assert_int_equal(files_put_begin(c, path, 0, &w), 0);
	assert_int_equal(files_put_chunk(w, content, strlen(content)), 0);
	assert_int_equal(files_put_commit(w), 0);
}

static store_coll *make(const char *name)
{
	store_collection row = {.ns = "zoo", .name = name};
	assert_int_equal(store_collection_create(st, &row, 0), 0);
	store_coll *c;
	assert_int_equal(store_coll_acquire(st, "zoo", name, &c), 0);
	return c;
}

static void test_snapshot_db_and_files(void **state)
{
	(void)state;
	store_coll *c = make("snap");
	insert(c, "a");
	insert(c, "b");
	put_file(c, "d/f.txt", "old bytes");
	char out[256], db[300];
	snprintf(out, sizeof(out), "%s/out", dir);
	assert_int_equal(mkdir(out, 0755), 0);
	snprintf(db, sizeof(db), "%s/records.db", out);
	snapshot_db_info info;
	assert_int_equal(snapshot_db(c, db, &info), 0);
	assert_int_equal(info.records, 2);
	assert_true(info.bytes > 0 && info.taken_at_us > 0);
	assert_int_equal(snapshot_db(c, db, &info), -EEXIST); /* never over a file */
	insert(c, "c");					      /* after: not in the copy */
	int64_t n = 0;
	assert_int_equal(snapshot_db_count(db, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(snapshot_db_check(db), 0);
	uint8_t sha[SNAPSHOT_SHA256_LEN];
	int64_t size;
	assert_int_equal(snapshot_hash_file(AT_FDCWD, db, sha, &size), 0);
	assert_int_equal(size, info.bytes);
	assert_memory_equal(sha, info.sha256, SNAPSHOT_SHA256_LEN);

	char files[300];
	snprintf(files, sizeof(files), "%s/files", out);
	assert_int_equal(mkdir(files, 0755), 0);
	int fd = open(files, O_RDONLY | O_DIRECTORY);
	int64_t count, bytes;
	assert_int_equal(snapshot_coll_files(c, fd, NULL, NULL, &count, &bytes), 0);
	assert_int_equal(count, 1);
	assert_int_equal(bytes, 9);
	/* The collection's upload renames a new inode in: the linked copy keeps its bytes. */
	put_file(c, "d/f.txt", "new bytes, longer");
	char buf[64] = {0};
	int f = openat(fd, "d/f.txt", O_RDONLY);
	assert_true(f >= 0);
	assert_int_equal(read(f, buf, sizeof(buf) - 1), 9);
	assert_string_equal(buf, "old bytes");
	close(f);
	close(fd);
	store_coll_release(c);
}

static void test_manifest_round_trip_and_refusals(void **state)
{
	(void)state;
	manifest m;
	memset(&m, 0, sizeof(m));
	snprintf(m.backup_id, sizeof(m.backup_id), "id-1");
	snprintf(m.ns, sizeof(m.ns), "zoo");
	snprintf(m.name, sizeof(m.name), "animals");
	m.timestamp_us = 123;
	m.records = 7;
	m.db_size = 4096;
	m.db_sha256[0] = 0xab;
	m.include_files = true;
	uint8_t sha[SNAPSHOT_SHA256_LEN] = {1, 2, 3};
	assert_int_equal(manifest_add_file(&m, "a/\"quoted\".txt", 5, sha), 0);
	m.file_count = 1;
	m.file_bytes = 5;
	m.definition.data = (uint8_t *)strdup("\x0a\x03zoo");
	m.definition.len = 5;
	buf text = BUF_INIT;
	assert_int_equal(manifest_write(&m, &text), 0);
	manifest back;
	assert_int_equal(manifest_parse(text.text, text.len, &back), 0);
	assert_string_equal(back.files[0].path, "a/\"quoted\".txt");
	assert_int_equal(back.records, 7);
	assert_memory_equal(back.db_sha256, m.db_sha256, SNAPSHOT_SHA256_LEN);
	assert_int_equal(back.definition.len, 5);
	manifest_free(&back);
	/* A path leading out of the tree, a missing member, a wrong count: refused. */
	const char *bad[] = {
		"{\"files\":[{\"path\":\"../x\",\"size\":1,\"sha256\":\"00\"}]}",
		"{\"format\":1}",
		"[]",
		"{\"format\":2}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(manifest_parse(bad[i], strlen(bad[i]), &back), -EINVAL);
		manifest_free(&back);
	}
	/* The text with file_count off by one. */
	char *p = strstr(text.text, "\"file_count\":1");
	assert_non_null(p);
	p[13] = '2';
	assert_int_equal(manifest_parse(text.text, text.len, &back), -EINVAL);
	manifest_free(&back);
	buf_free(&text);
	free(m.definition.data);
	m.definition.data = NULL;
	manifest_free(&m);
}

static void test_install_overwrite_swaps(void **state)
{
	(void)state;
	store_coll *src = make("src");
	insert(src, "only-in-src");
	store_coll *old = make("target");
	insert(old, "old-1");
	insert(old, "old-2");
	store_coll_release(old);

	char path[512], tmp[STORE_TMP_MAX], db[600];
	assert_int_equal(store_stage_begin(st, "zoo", path, sizeof(path), tmp), 0);
	snprintf(db, sizeof(db), "%s/records.db", path);
	snapshot_db_info info;
	assert_int_equal(snapshot_db(src, db, &info), 0);
	store_coll_release(src);
	store_collection row = {.ns = "zoo", .name = "target", .labels = "{\"v\":\"2\"}"};
	assert_int_equal(store_collection_install(st, &row, tmp, 0), -EEXIST);
	assert_int_equal(store_collection_install(st, &row, tmp, STORE_INSTALL_OVERWRITE), 0);

	store_coll *c;
	assert_int_equal(store_coll_acquire(st, "zoo", "target", &c), 0);
	int64_t n = 0, bytes = 0;
	assert_int_equal(store_coll_stats(c, &n, &bytes), 0);
	assert_int_equal(n, 1);
	insert(c, "writable");
	store_coll_release(c);
	store_collection *got;
	assert_int_equal(store_collection_get(st, "zoo", "target", &got), 0);
	assert_string_equal(got->labels, "{\"v\":\"2\"}");
	free(got);

	/* A stage that is not installed leaves nothing. */
	assert_int_equal(store_stage_begin(st, "zoo", path, sizeof(path), tmp), 0);
	store_stage_abort(st, "zoo", tmp);
	struct stat sb;
	assert_int_equal(stat(path, &sb), -1);
}

static void write_mark(const char *coll_dir, long long created, const char *tmp)
{
	char p[600], text[128];
	snprintf(p, sizeof(p), "%s/.swap", coll_dir);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	snprintf(text, sizeof(text), "%lld %s\n", created, tmp);
	fputs(text, f);
	fclose(f);
}

static int64_t count_of(const char *name)
{
	store_coll *c;
	assert_int_equal(store_coll_acquire(st, "zoo", name, &c), 0);
	int64_t n = -1, bytes;
	assert_int_equal(store_coll_stats(c, &n, &bytes), 0);
	store_coll_release(c);
	return n;
}

/* A crash between the swap of the trees and the catalog's commit: the next open swaps
 * them back (the row is still the old one); after the commit, only the mark is left. */
static void test_interrupted_swap_undone(void **state)
{
	(void)state;
	store_coll *src = make("two");
	insert(src, "a");
	insert(src, "b");
	store_coll *old = make("victim");
	insert(old, "only");
	store_coll_release(old);
	char path[512], tmp[STORE_TMP_MAX], db[600], ns[300], live[400];
	assert_int_equal(store_stage_begin(st, "zoo", path, sizeof(path), tmp), 0);
	snprintf(db, sizeof(db), "%s/records.db", path);
	snapshot_db_info info;
	assert_int_equal(snapshot_db(src, db, &info), 0);
	store_coll_release(src);
	store_close(st);
	st = NULL;
	/* The state the crash leaves: the new tree, marked, under the name. */
	write_mark(path, 123, tmp);
	snprintf(ns, sizeof(ns), "%s/zoo", dir);
	int nsfd = open(ns, O_RDONLY | O_DIRECTORY);
	assert_int_equal(renameat2(nsfd, tmp, nsfd, "victim", RENAME_EXCHANGE), 0);
	close(nsfd);
	assert_int_equal(store_open(dir, NULL, &st), 0);
	assert_int_equal(count_of("victim"), 1);
	struct stat sb;
	assert_int_equal(stat(path, &sb), -1); /* the new tree, swept */
	snprintf(live, sizeof(live), "%s/victim/.swap", ns);
	assert_int_equal(stat(live, &sb), -1);

	/* Committed before the crash: the row's own created_at is in the mark. */
	store_collection *row;
	assert_int_equal(store_collection_get(st, "zoo", "victim", &row), 0);
	long long created = row->created_at;
	free(row);
	store_close(st);
	st = NULL;
	snprintf(live, sizeof(live), "%s/victim", ns);
	write_mark(live, created, ".new-gone");
	assert_int_equal(store_open(dir, NULL, &st), 0);
	assert_int_equal(count_of("victim"), 1);
	snprintf(live, sizeof(live), "%s/victim/.swap", ns);
	assert_int_equal(stat(live, &sb), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_snapshot_db_and_files, setup, teardown),
		cmocka_unit_test(test_manifest_round_trip_and_refusals),
		cmocka_unit_test_setup_teardown(test_install_overwrite_swaps, setup, teardown),
		cmocka_unit_test_setup_teardown(test_interrupted_swap_undone, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
