/* How long a writer stalls while a collection is snapshotted, for each way SQLite offers:
 * the online backup API stepping N pages per step (the source lock is let go between
 * steps), the same API in one step from a read transaction (with SQLite's syncs of the
 * copy, and with synchronous=OFF and one fsync at the end: what src/store/snapshot.c
 * does), and VACUUM INTO. A writer
 * thread commits one small transaction after another (WAL, synchronous=FULL, like the
 * store's writer) and records each commit's latency; the snapshot runs beside it.
 *
 *   snapshot_stall [DB_MB] [PAGES_PER_STEP]     (defaults 64 MiB, 64 pages)
 *
 * Prints, per method: the writer's commits, p50, p99 and longest commit during the
 * snapshot, the snapshot's time and (stepped) how many times it restarted. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void must(int rc, sqlite3 *db, const char *what)
{
	if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
		fprintf(stderr, "%s: %s\n", what, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
		exit(1);
	}
}

static const char *src_path;
static atomic_bool stop;

#define MAX_SAMPLES 2000000
static int64_t *lat;
static size_t nlat;

static void *writer(void *arg)
{
	(void)arg;
	sqlite3 *db;
	must(sqlite3_open(src_path, &db), db, "open writer");
	must(sqlite3_exec(db, "PRAGMA synchronous=FULL; PRAGMA busy_timeout=5000", 0, 0, 0), db,
	     "pragma");
	sqlite3_stmt *st;
	must(sqlite3_prepare_v2(db, "INSERT INTO t(v) VALUES (randomblob(200))", -1, &st, 0), db,
	     "prepare");
	while (!atomic_load(&stop)) {
		int64_t t0 = now_ns();
		must(sqlite3_exec(db, "BEGIN IMMEDIATE", 0, 0, 0), db, "begin");
		must(sqlite3_step(st), db, "insert");
		sqlite3_reset(st);
		must(sqlite3_exec(db, "COMMIT", 0, 0, 0), db, "commit");
		if (nlat < MAX_SAMPLES)
			lat[nlat++] = now_ns() - t0;
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	return NULL;
}

static int cmp64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

static void report(const char *name, int64_t took, int restarts)
{
	qsort(lat, nlat, sizeof(*lat), cmp64);
	double ms = 1e6;
	printf("%-22s commits %6zu  p50 %6.2f ms  p99 %6.2f ms  max %7.2f ms  snapshot %7.1f ms",
	       name, nlat, nlat ? lat[nlat / 2] / ms : 0, nlat ? lat[nlat * 99 / 100] / ms : 0,
	       nlat ? lat[nlat - 1] / ms : 0, took / ms);
	if (restarts >= 0)
		printf("  restarts %d", restarts);
	printf("\n");
}

/* Makes the copy durable in one fsync once it is complete, as src/store/snapshot.c does
 * (its copy runs with synchronous=OFF); timed with the snapshot. */
static void fsync_file(const char *path)
{
	int fd = open(path, O_RDWR);
	if (fd < 0)
		return;
	fsync(fd);
	close(fd);
}

enum method { BASELINE, STEPPED, ONE_STEP, ONE_STEP_NOSYNC, VACUUM_INTO };

static int run(enum method m, int pages, const char *dest)
{
	unlink(dest);
	nlat = 0;
	atomic_store(&stop, false);
	pthread_t th;
	pthread_create(&th, NULL, writer, NULL);
	usleep(200000);
	nlat = 0; /* the writer's warm-up is not measured */
	int64_t t0 = now_ns();
	int restarts = -1;
	sqlite3 *src;
	must(sqlite3_open_v2(src_path, &src, SQLITE_OPEN_READONLY, NULL), src, "open source");
	sqlite3_busy_timeout(src, 5000);
	if (m == BASELINE) {
		usleep(1000000);
	} else if (m == VACUUM_INTO) {
		char sql[600];
		snprintf(sql, sizeof(sql), "VACUUM INTO '%s'", dest);
		must(sqlite3_exec(src, sql, 0, 0, 0), src, "vacuum into");
	} else {
		sqlite3 *dst;
		must(sqlite3_open(dest, &dst), dst, "open dest");
		/* Without SQLite's syncs while copying: fsynced once when done. */
		if (m == ONE_STEP_NOSYNC)
			must(sqlite3_exec(dst, "PRAGMA synchronous=OFF", 0, 0, 0), dst, "nosync");
		bool one = m == ONE_STEP || m == ONE_STEP_NOSYNC;
		if (one)
			must(sqlite3_exec(src, "BEGIN; SELECT count(*) FROM t", 0, 0, 0), src,
			     "begin");
		sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
		int rc, last_remaining = -1;
		restarts = 0;
		do {
			rc = sqlite3_backup_step(b, one ? -1 : pages);
			int rem = sqlite3_backup_remaining(b);
			if (last_remaining >= 0 && rem > last_remaining)
				restarts++;
			last_remaining = rem;
			if (rc == SQLITE_OK && now_ns() - t0 > 20LL * 1000000000) {
				printf("  (stepped backup gave up after 20 s)\n");
				break;
			}
		} while (rc == SQLITE_OK || rc == SQLITE_BUSY || rc == SQLITE_LOCKED);
		sqlite3_backup_finish(b);
		if (one)
			sqlite3_exec(src, "COMMIT", 0, 0, 0);
		sqlite3_close(dst);
		if (m == ONE_STEP_NOSYNC)
			fsync_file(dest);
	}
	int64_t took = now_ns() - t0;
	sqlite3_close(src);
	atomic_store(&stop, true);
	pthread_join(th, NULL);
	const char *names[] = {"no snapshot (1 s)", "backup, N pages/step", "backup, one step",
			       "one step, sync=OFF+fsync", "VACUUM INTO"};
	report(names[m], took, restarts);
	return 0;
}

int main(int argc, char **argv)
{
	int mb = argc > 1 ? atoi(argv[1]) : 64;
	int pages = argc > 2 ? atoi(argv[2]) : 64;
	char dir[] = "/tmp/snapstall.XXXXXX";
	if (!mkdtemp(dir))
		return 1;
	char src[256], dst[256];
	snprintf(src, sizeof(src), "%s/src.db", dir);
	snprintf(dst, sizeof(dst), "%s/dst.db", dir);
	src_path = src;
	lat = malloc(MAX_SAMPLES * sizeof(*lat));
	sqlite3 *db;
	must(sqlite3_open(src, &db), db, "create");
	must(sqlite3_exec(db,
			  "PRAGMA page_size=16384; PRAGMA journal_mode=WAL;"
			  "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);"
			  "BEGIN",
			  0, 0, 0),
	     db, "schema");
	char sql[200];
	snprintf(sql, sizeof(sql),
		 "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < %d)"
		 " INSERT INTO t(v) SELECT randomblob(1000) FROM c",
		 mb * 1024);
	must(sqlite3_exec(db, sql, 0, 0, 0), db, "fill");
	must(sqlite3_exec(db, "COMMIT; PRAGMA wal_checkpoint(TRUNCATE)", 0, 0, 0), db, "commit");
	sqlite3_close(db);
	printf("source %d MiB, WAL, synchronous=FULL writer; stepped backup: %d pages/step\n", mb,
	       pages);
	run(BASELINE, pages, dst);
	run(STEPPED, pages, dst);
	run(ONE_STEP, pages, dst);
	run(ONE_STEP_NOSYNC, pages, dst);
	run(VACUUM_INTO, pages, dst);
	unlink(src);
	unlink(dst);
	char p[300];
	snprintf(p, sizeof(p), "%s-wal", src);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", src);
	unlink(p);
	rmdir(dir);
	free(lat);
	return 0;
}
