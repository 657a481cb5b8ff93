/* Attachment paths against a real files/ tree holding links that point out of it:
 * whatever the input, nothing outside the tree is created, read or removed. The input is
 * a series of records <op byte><path bytes>NUL: put, get, list, delete, delete -r. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/files.h"
#include "store/store.h"

static char root[] = "/dev/shm/fuzz_store_paths-XXXXXX";
static char outside[128], files_dir[128];
static store *st;
static store_coll *coll;

static const char secret[] = "secret";

static void plant_links(void)
{
	char p[256];
	snprintf(p, sizeof(p), "%s/evil", files_dir);
	if (symlink(outside, p) && errno != EEXIST)
		abort();
	snprintf(p, sizeof(p), "%s/up", files_dir);
	if (symlink("../../../..", p) && errno != EEXIST)
		abort();
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static void cleanup(void)
{
	store_coll_release(coll);
	store_close(st);
	nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (!mkdtemp(root))
		abort();
	char data[128], p[256];
	snprintf(outside, sizeof(outside), "%s/outside", root);
	snprintf(data, sizeof(data), "%s/data", root);
	snprintf(files_dir, sizeof(files_dir), "%s/zoo/f/files", data);
	snprintf(p, sizeof(p), "%s/secret", outside);
	if (mkdir(outside, 0755))
		abort();
	FILE *f = fopen(p, "w");
	if (!f || fputs(secret, f) < 0 || fclose(f))
		abort();
	store_collection c = {.ns = "zoo", .name = "f"};
	if (store_open(data, NULL, &st) || store_collection_create(st, &c, 0) ||
	    store_coll_acquire(st, "zoo", "f", &coll))
		abort();
	atexit(cleanup);
	return 0;
}

/* The outside directory holds its one file, unchanged. */
static void check_outside(void)
{
	DIR *d = opendir(outside);
	if (!d)
		abort();
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n += strcmp(e->d_name, "secret") ? 100 : 1;
	closedir(d);
	char p[256], buf[16] = {0};
	snprintf(p, sizeof(p), "%s/secret", outside);
	FILE *f = fopen(p, "r");
	if (n != 1 || !f || !fgets(buf, sizeof(buf), f) || strcmp(buf, secret))
		abort();
	fclose(f);
}

/* Every listed entry really lies beneath files/. */
static int on_entry(void *ctx, const files_entry *e)
{
	(void)ctx;
	char p[FILES_PATH_MAX + 256], real[PATH_MAX], base[PATH_MAX];
	snprintf(p, sizeof(p), "%s/%s", files_dir, e->path);
	if (!realpath(p, real) || !realpath(files_dir, base) || strncmp(real, base, strlen(base)) ||
	    real[strlen(base)] != '/')
		abort();
	return 0;
}

static void clear_tree(void)
{
	DIR *d = opendir(files_dir);
	if (!d)
		abort();
	struct dirent *e;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			files_delete(coll, e->d_name, true, NULL);
	closedir(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	plant_links();
	files_use_openat2(size && (data[0] & 0x80));
	char path[FILES_PATH_MAX + 64];
	size_t i = 0;
	while (i < size) {
		uint8_t op = data[i++] & 0x7f; /* the top bit of the first byte picks the mode */
		size_t n = 0;
		while (i < size && data[i] && n < sizeof(path) - 1)
			path[n++] = (char)data[i++];
		path[n] = 0;
		i++;
		switch (op % 5) {
		case 0: {
			files_writer *w;
			if (files_put_begin(coll, path, 8, &w) == 0) {
				if (files_put_chunk(w, "x", 1) == 0)
					files_put_commit(w);
				else
					files_put_abort(w);
			}
			break;
		}
		case 1: {
			files_reader *r;
			uint64_t len;
			if (files_get_open(coll, path, &r, &len) == 0) {
				char buf[16] = {0};
				if (files_get_read(r, 0, buf, sizeof(buf) - 1) >= 0 &&
				    !strcmp(buf, secret))
					abort(); /* read through a link */
				files_get_close(r);
			}
			break;
		}
		case 2:
			files_list(coll, path, on_entry, NULL);
			break;
		default:
			files_delete(coll, path, op % 5 == 4, NULL);
			break;
		}
		check_outside();
	}
	clear_tree();
	return 0;
}
