/* The in-process limit of the Collections benchmark: the node's SQL run straight on SQLite,
 * with the same schema (store/coll.h) and durability (WAL, synchronous=FULL), and no RPC:
 *
 *   store_inproc create --src DB --dir DIR [--batch B] [--rows N] [--existing] [-t T] [-s S]
 *   store_inproc get    --src DB                                     [--threads T] [--seconds S]
 *   store_inproc search --src DB --queries FILE [--limit L] [--indexed PATH] [-t T] [-s S]
 *
 * create: inserts the first N records of DB (their data and json) again under new UUIDv7
 *   ids into a new DIR/records.db, as the collection's writer does: BEGIN IMMEDIATE, per
 *   request the FTS text of the JSON (coll_fts_text), the INSERT and the FTS insert, then
 *   COMMIT after B requests (1: one transaction per insert); --existing: into the
 *   DIR/records.db that is there (a copy of a collection's), not a new one. T threads take
 *   turns on one connection, as the node's requests do on the collection's writer:
 *   connections taking turns would each find their page cache stale after the other's
 *   commit.
 * get: the node's Get, SELECT data FROM records WHERE id = ?1 (prepared), for random ids of
 *   DB on T read-only connections.
 * search: the node's Search, its page and count queries in one read transaction, compiled
 *   by store/query.c with every path a string field (as collector.Collection's are) and
 *   PATH as the indexed field. FILE lines: "text WORDS" or "eq PATH VALUE"; each call takes
 *   the next line in turn.
 *
 * Prints one JSON line: {"ops":N,"errors":E,"seconds":S,"ops_s":R,"p50_us":..,"p99_us":..,
 * "matches":M}, a latency being one transaction (create: B inserts) or one read, and M the
 * mean count(*) of a search. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/clock.h"
#include "io/uuid.h"
#include "store/coll.h"
#include "store/query.h"

#define MAX_QUERIES 1024
#define STMT_CACHE 4

static struct {
	const char *mode, *src, *dir, *queries, *indexed;
	int threads, batch, rows, limit;
	bool existing;
	double seconds;
} opt = {.threads = 4, .batch = 1, .rows = 20000, .limit = 20, .seconds = 4};

static int64_t deadline;
static atomic_int failures;

/* create: the rows to insert, and the one writer connection with its statements (used
 * under write_lock). */
static struct {
	void **data;
	int *data_len;
	char **json;
	size_t n;
} rows;
static atomic_size_t next_row;
static pthread_mutex_t write_lock = PTHREAD_MUTEX_INITIALIZER;
static sqlite3 *wdb;

/* get: every id of DB. */
static char **ids;
static size_t nids;

/* search: the compiled queries. */
static query *queries[MAX_QUERIES];
static size_t nqueries;

typedef struct worker {
	pthread_t thread;
	unsigned k;
	sqlite3 *db;
	int64_t *lat; /* ns, one per op */
	size_t nlat, cap;
	uint64_t ops, matches;
	struct {
		sqlite3_stmt *st;
	} cache[STMT_CACHE];
} worker;

static void fail(const char *what, sqlite3 *db)
{
	fprintf(stderr, "store_inproc: %s: %s\n", what, db ? sqlite3_errmsg(db) : "failed");
	atomic_fetch_add(&failures, 1);
}

static void lat_add(worker *w, int64_t ns)
{
	if (w->nlat == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 65536;
		int64_t *l = realloc(w->lat, cap * sizeof(*l));
		if (!l)
			return;
		w->lat = l;
		w->cap = cap;
	}
	w->lat[w->nlat++] = ns;
}

static sqlite3 *open_db(const char *path, bool writer)
{
	sqlite3 *db = NULL;
	int flags = (writer ? SQLITE_OPEN_READWRITE : SQLITE_OPEN_READONLY) | SQLITE_OPEN_NOMUTEX;
	if (sqlite3_open_v2(path, &db, flags, NULL) != SQLITE_OK) {
		fail(path, db);
		sqlite3_close(db);
		return NULL;
	}
	sqlite3_busy_timeout(db, 5000);
	/* The writer's pragmas (coll.c conn_pragmas); readers set none, as the node's. */
	if (writer && sqlite3_exec(db,
				   "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
				   " PRAGMA journal_size_limit=67108864;",
				   NULL, NULL, NULL) != SQLITE_OK) {
		fail("pragmas", db);
		sqlite3_close(db);
		return NULL;
	}
	return db;
}

static sqlite3_stmt *prepare(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK)
		fail(sql, db);
	return st;
}

static int step_done(sqlite3_stmt *st)
{
	int src = sqlite3_step(st);
	sqlite3_reset(st);
	return src == SQLITE_DONE ? 0 : -EIO;
}

/* ---- create ---- */

/* The writer's statements (coll.c writer_sql) for a Create, in the order it runs them. */
enum { W_BEGIN, W_COMMIT, W_INSERT, W_FTS, W_COUNT };
static const char *const write_sql[W_COUNT] = {
	[W_BEGIN] = "BEGIN IMMEDIATE",
	[W_COMMIT] = "COMMIT",
	[W_INSERT] = "INSERT INTO records (id, data, json, labels, created_at, updated_at)"
		     " VALUES (?1, ?2, ?3, json(?4), ?5, ?6)",
	[W_FTS] = "INSERT INTO records_fts (rowid, text) VALUES (?1, ?2)",
};

static sqlite3_stmt *wst[W_COUNT];
static jbuf text; /* under write_lock */

static int insert_one(sqlite3_stmt *const st[W_COUNT])
{
	size_t i = atomic_fetch_add(&next_row, 1) % rows.n;
	char id[UUID_STR_LEN];
	if (uuid7_make(id) || coll_fts_text(rows.json[i], strlen(rows.json[i]), &text))
		return -EIO;
	int64_t now = clock_wall_ns() / 1000;
	sqlite3_bind_text(st[W_INSERT], 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st[W_INSERT], 2, rows.data[i], rows.data_len[i], SQLITE_STATIC);
	sqlite3_bind_text(st[W_INSERT], 3, rows.json[i], -1, SQLITE_STATIC);
	sqlite3_bind_text(st[W_INSERT], 4, "{}", -1, SQLITE_STATIC);
	sqlite3_bind_int64(st[W_INSERT], 5, now);
	sqlite3_bind_int64(st[W_INSERT], 6, now);
	if (step_done(st[W_INSERT]))
		return -EIO;
	sqlite3_bind_int64(st[W_FTS], 1, sqlite3_last_insert_rowid(wdb));
	sqlite3_bind_text(st[W_FTS], 2, text.data, (int)text.len, SQLITE_STATIC);
	return step_done(st[W_FTS]) ? -EIO : 0;
}

static void create_run(worker *w)
{
	while (clock_now_ns() < deadline) {
		int64_t t0 = clock_now_ns();
		pthread_mutex_lock(&write_lock);
		int rc = step_done(wst[W_BEGIN]);
		for (int b = 0; b < opt.batch && !rc; b++)
			rc = insert_one(wst);
		if (!rc)
			rc = step_done(wst[W_COMMIT]);
		if (rc) {
			fail("insert", wdb);
			sqlite3_exec(wdb, "ROLLBACK", NULL, NULL, NULL);
		}
		pthread_mutex_unlock(&write_lock);
		if (rc)
			break;
		lat_add(w, clock_now_ns() - t0);
		w->ops += (uint64_t)opt.batch;
	}
}

static int create_load(void)
{
	sqlite3 *db = open_db(opt.src, false);
	sqlite3_stmt *st = db ? prepare(db, "SELECT data, json FROM records ORDER BY rid LIMIT ?1")
			      : NULL;
	if (!st) {
		sqlite3_close(db);
		return -1;
	}
	rows.data = calloc((size_t)opt.rows, sizeof(*rows.data));
	rows.data_len = calloc((size_t)opt.rows, sizeof(*rows.data_len));
	rows.json = calloc((size_t)opt.rows, sizeof(*rows.json));
	sqlite3_bind_int(st, 1, opt.rows);
	while (rows.data && rows.data_len && rows.json && sqlite3_step(st) == SQLITE_ROW) {
		int len = sqlite3_column_bytes(st, 0);
		rows.data[rows.n] = malloc((size_t)len + 1);
		rows.json[rows.n] = strdup((const char *)sqlite3_column_text(st, 1));
		if (!rows.data[rows.n] || !rows.json[rows.n])
			break;
		memcpy(rows.data[rows.n], sqlite3_column_blob(st, 0), (size_t)len);
		rows.data_len[rows.n++] = len;
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	if (!rows.n) {
		fprintf(stderr, "store_inproc: no rows in %s\n", opt.src);
		return -1;
	}
	if (mkdir(opt.dir, 0755) && errno != EEXIST) {
		perror(opt.dir);
		return -1;
	}
	char path[4096];
	snprintf(path, sizeof(path), "%s/records.db", opt.dir);
	if (!opt.existing && coll_create_db(opt.dir)) {
		fprintf(stderr, "store_inproc: %s\n", store_errmsg());
		return -1;
	}
	if (!(wdb = open_db(path, true)))
		return -1;
	for (int i = 0; i < W_COUNT; i++)
		if (!(wst[i] = prepare(wdb, write_sql[i])))
			return -1;
	return 0;
}

/* ---- get ---- */

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void get_run(worker *w)
{
	sqlite3_stmt *st = prepare(w->db, "SELECT data FROM records WHERE id = ?1");
	uint64_t seed = 0x9e3779b97f4a7c15ull * (w->k + 1);
	while (st && clock_now_ns() < deadline) {
		int64_t t0 = clock_now_ns();
		sqlite3_bind_text(st, 1, ids[xorshift(&seed) % nids], -1, SQLITE_STATIC);
		bool found = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_bytes(st, 0) > 0;
		sqlite3_reset(st);
		if (!found) {
			fail("get", w->db);
			break;
		}
		lat_add(w, clock_now_ns() - t0);
		w->ops++;
	}
	sqlite3_finalize(st);
}

static int get_load(void)
{
	sqlite3 *db = open_db(opt.src, false);
	sqlite3_stmt *st = db ? prepare(db, "SELECT id FROM records") : NULL;
	size_t cap = 0;
	while (st && sqlite3_step(st) == SQLITE_ROW) {
		if (nids == cap) {
			char **n = realloc(ids, (cap = cap ? cap * 2 : 1024) * sizeof(*n));
			if (!n)
				break;
			ids = n;
		}
		if (!(ids[nids] = strdup((const char *)sqlite3_column_text(st, 0))))
			break;
		nids++;
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	if (!nids)
		fprintf(stderr, "store_inproc: no ids in %s\n", opt.src);
	return nids ? 0 : -1;
}

/* ---- search ---- */

/* collector.Collection's fields used here are all strings. */
static int resolve_string(void *ctx, const query_path *p, enum query_kind *kind)
{
	(void)ctx;
	(void)p;
	*kind = QUERY_KIND_STRING;
	return 0;
}

/* A statement for sql, prepared once per connection (queries of one shape share it). */
static sqlite3_stmt *cached(worker *w, const char *sql)
{
	for (int i = 0; i < STMT_CACHE && w->cache[i].st; i++)
		if (!strcmp(sqlite3_sql(w->cache[i].st), sql))
			return w->cache[i].st;
	for (int i = 0; i < STMT_CACHE; i++)
		if (!w->cache[i].st)
			return w->cache[i].st = prepare(w->db, sql);
	fail("more query shapes than the statement cache holds", NULL);
	return NULL;
}

static int search_one(worker *w, const query *q)
{
	sqlite3_stmt *page = cached(w, query_sql(q)), *count = cached(w, query_count_sql(q));
	if (!page || !count || query_bind(page, q) || query_bind(count, q) ||
	    sqlite3_exec(w->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
		return -EIO;
	/* As the node: up to limit rows and one more (is there more?), each row's data read. */
	int n = 0, src = SQLITE_DONE;
	size_t bytes = 0;
	while (n <= query_page_size(q) && (src = sqlite3_step(page)) == SQLITE_ROW) {
		bytes += (size_t)sqlite3_column_bytes(page, QUERY_COL_DATA);
		n++;
	}
	bool ok = (src == SQLITE_ROW || src == SQLITE_DONE) && sqlite3_step(count) == SQLITE_ROW;
	if (ok)
		w->matches += (uint64_t)sqlite3_column_int64(count, 0);
	sqlite3_reset(page);
	sqlite3_reset(count);
	sqlite3_exec(w->db, "COMMIT", NULL, NULL, NULL);
	return ok && (n == 0 || bytes > 0) ? 0 : -EIO;
}

static void search_run(worker *w)
{
	size_t i = w->k;
	while (clock_now_ns() < deadline) {
		int64_t t0 = clock_now_ns();
		if (search_one(w, queries[i++ % nqueries])) {
			fail("search", w->db);
			break;
		}
		lat_add(w, clock_now_ns() - t0);
		w->ops++;
	}
	for (int k = 0; k < STMT_CACHE; k++)
		sqlite3_finalize(w->cache[k].st);
}

static int search_load(void)
{
	FILE *f = fopen(opt.queries, "r");
	if (!f) {
		perror(opt.queries);
		return -1;
	}
	const char *indexed[1] = {opt.indexed};
	query_schema schema = {.resolve = resolve_string, .indexed = indexed,
			       .nindexed = opt.indexed ? 1 : 0};
	char line[1024];
	int rc = 0;
	while (!rc && nqueries < MAX_QUERIES && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		char *arg = strchr(line, ' ');
		if (!arg)
			continue;
		*arg++ = 0;
		query_search_params p = {.limit = opt.limit};
		query_filter flt = {.op = QUERY_EQUALS, .value = {.type = QUERY_STRING}};
		if (!strcmp(line, "text")) {
			p.full_text = arg;
		} else if (!strcmp(line, "eq") && strchr(arg, ' ')) {
			flt.path = arg;
			*strchr(arg, ' ') = 0;
			flt.value.u.string = arg + strlen(arg) + 1;
			p.filters = &flt;
			p.nfilters = 1;
		} else {
			fprintf(stderr, "store_inproc: %s: bad line '%s'\n", opt.queries, line);
			rc = -1;
			break;
		}
		query_err err;
		if (query_compile_search(&schema, &p, &queries[nqueries], &err)) {
			fprintf(stderr, "store_inproc: query '%s': %s\n", arg, err.msg);
			rc = -1;
		} else {
			nqueries++;
		}
	}
	fclose(f);
	if (!rc && !nqueries)
		fprintf(stderr, "store_inproc: no query in %s\n", opt.queries);
	return rc || !nqueries ? -1 : 0;
}

/* ---- process ---- */

static void *worker_main(void *arg)
{
	worker *w = arg;
	if (!strcmp(opt.mode, "create"))
		create_run(w);
	else if (!strcmp(opt.mode, "get"))
		get_run(w);
	else
		search_run(w);
	return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

static int usage(void)
{
	fprintf(stderr,
		"usage: store_inproc create --src DB --dir DIR [--batch B] [--rows N] [--existing]"
		" [opts]\n"
		"       store_inproc get --src DB [opts]\n"
		"       store_inproc search --src DB --queries FILE [--limit L] [--indexed PATH] "
		"[opts]\n"
		"opts: [--threads T] [--seconds S]\n");
	return 2;
}

int main(int argc, char **argv)
{
	static const struct option longs[] = {
		{"src", required_argument, NULL, 'i'},	  {"dir", required_argument, NULL, 'd'},
		{"batch", required_argument, NULL, 'b'},   {"rows", required_argument, NULL, 'n'},
		{"threads", required_argument, NULL, 't'}, {"seconds", required_argument, NULL, 's'},
		{"queries", required_argument, NULL, 'q'}, {"limit", required_argument, NULL, 'l'},
		{"indexed", required_argument, NULL, 'x'}, {"existing", no_argument, NULL, 'e'},
		{0},
	};
	if (argc < 2)
		return usage();
	opt.mode = argv[1];
	int c;
	optind = 2;
	while ((c = getopt_long(argc, argv, "t:s:", longs, NULL)) != -1) {
		switch (c) {
		case 'i': opt.src = optarg; break;
		case 'd': opt.dir = optarg; break;
		case 'b': opt.batch = atoi(optarg); break;
		case 'n': opt.rows = atoi(optarg); break;
		case 't': opt.threads = atoi(optarg); break;
		case 's': opt.seconds = atof(optarg); break;
		case 'q': opt.queries = optarg; break;
		case 'l': opt.limit = atoi(optarg); break;
		case 'x': opt.indexed = optarg; break;
		case 'e': opt.existing = true; break;
		default: return usage();
		}
	}
	bool create = !strcmp(opt.mode, "create"), get = !strcmp(opt.mode, "get");
	bool search = !strcmp(opt.mode, "search");
	if (!opt.src || (!create && !get && !search) || (create && !opt.dir) ||
	    (search && !opt.queries) || opt.threads < 1 || opt.batch < 1 || opt.rows < 1 ||
	    !(opt.seconds > 0))
		return usage();
	if ((create && create_load()) || (get && get_load()) || (search && search_load()))
		return 1;

	worker *ws = calloc((size_t)opt.threads, sizeof(*ws));
	for (int k = 0; ws && k < opt.threads; k++) {
		ws[k].k = (unsigned)k;
		if (!create && !(ws[k].db = open_db(opt.src, false)))
			return 1;
	}
	if (!ws)
		return 1;
	int64_t t0 = clock_now_ns();
	deadline = t0 + (int64_t)(opt.seconds * NS_PER_SEC);
	for (int k = 0; k < opt.threads; k++)
		if (pthread_create(&ws[k].thread, NULL, worker_main, &ws[k]))
			return 1;
	size_t nlat = 0;
	uint64_t ops = 0, matches = 0;
	for (int k = 0; k < opt.threads; k++) {
		pthread_join(ws[k].thread, NULL);
		nlat += ws[k].nlat;
		ops += ws[k].ops;
		matches += ws[k].matches;
	}
	double secs = (double)(clock_now_ns() - t0) / NS_PER_SEC;
	int64_t *lat = malloc((nlat ? nlat : 1) * sizeof(*lat));
	if (!lat)
		return 1;
	size_t at = 0;
	for (int k = 0; k < opt.threads; k++) {
		memcpy(lat + at, ws[k].lat, ws[k].nlat * sizeof(*lat));
		at += ws[k].nlat;
		free(ws[k].lat);
		sqlite3_close(ws[k].db);
	}
	qsort(lat, nlat, sizeof(*lat), cmp_i64);
	double p50 = nlat ? (double)lat[nlat / 2] / 1000 : 0;
	double p99 = nlat ? (double)lat[(size_t)((double)nlat * 0.99)] / 1000 : 0;
	printf("{\"ops\":%llu,\"errors\":%d,\"seconds\":%.3f,\"ops_s\":%.1f,\"p50_us\":%.1f,"
	       "\"p99_us\":%.1f,\"matches\":%.1f}\n",
	       (unsigned long long)ops, atomic_load(&failures), secs, (double)ops / secs, p50, p99,
	       nlat ? (double)matches / (double)nlat : 0.0);
	free(lat);
	free(ws);
	for (size_t i = 0; i < nqueries; i++)
		query_free(queries[i]);
	for (int i = 0; i < W_COUNT; i++)
		sqlite3_finalize(wst[i]);
	sqlite3_close(wdb);
	jbuf_free(&text);
	return atomic_load(&failures) ? 1 : 0;
}
