/* The in-process limit of the Collections benchmark: the store's own reads and writes
 * (store/writer.h, store/reader.h) run straight on a records.db, with the node's schema
 * and durability (WAL, synchronous=FULL), without RPC, threads of the store or its queues:
 *
 *   store_inproc create --src DB --dir DIR [--batch B] [--rows N] [--existing] [-t T] [-s S]
 *   store_inproc get    --src DB                                     [--threads T] [--seconds S]
 *   store_inproc search --src DB --queries FILE [--limit L] [--indexed PATH] [-t T] [-s S]
 *
 * create: inserts the first N records of DB (their data and json) again under new UUIDv7
 *   ids into a new DIR/records.db, as the collection's writer does (store_writer_run): B
 *   requests of one insert each in one transaction (1: one transaction per insert);
 *   --existing: into the DIR/records.db that is there (a copy of a collection's), not a new
 *   one. T threads take turns on one writer, as the node's requests do on the collection's:
 *   connections taking turns would each find their page cache stale after the other's
 *   commit.
 * get: the node's Get (store_reader_get), each its own read, for random ids of DB on T
 *   readers.
 * search: the node's Search (store_reader_query: its page and count in one read
 *   transaction), compiled by store/query.c with every path a string field (as
 *   collector.Collection's are) and PATH as the indexed field. FILE lines: "text WORDS" or
 *   "eq PATH VALUE"; each call takes the next line in turn.
 *
 * Prints one JSON line: {"ops":N,"errors":E,"seconds":S,"ops_s":R,"p50_us":..,"p99_us":..,
 * "matches":M}, a latency being one transaction (create: B inserts) or one read, and M the
 * mean count(*) of a search. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/clock.h"
#include "base/uuid.h"
#include "store/err.h"
#include "store/query.h"
#include "store/reader.h"
#include "store/writer.h"

#define MAX_QUERIES 1024
#define BUSY_TIMEOUT_MS 5000

static struct {
	const char *mode, *src, *dir, *queries, *indexed;
	int threads, batch, rows, limit;
	bool existing;
	double seconds;
} opt = {.threads = 4, .batch = 1, .rows = 20000, .limit = 20, .seconds = 4};

static int64_t deadline;
static atomic_int failures;

/* create: the rows to insert, and the one writer (used under write_lock). */
static struct {
	void **data;
	size_t *data_len;
	char **json;
	size_t n;
} rows;
static atomic_size_t next_row;
static pthread_mutex_t write_lock = PTHREAD_MUTEX_INITIALIZER;
static store_writer *writer;

/* get: every id of DB. */
static char **ids;
static size_t nids;

/* search: the compiled queries. */
static query *queries[MAX_QUERIES];
static size_t nqueries;

typedef struct worker {
	pthread_t thread;
	unsigned k;
	store_reader *rd;
	int64_t *lat; /* ns, one per op */
	size_t nlat, cap;
	uint64_t ops, matches;
} worker;

static void fail(const char *what)
{
	fprintf(stderr, "store_inproc: %s: %s\n", what, store_err_msg());
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

/* ---- create ---- */

/* One transaction's requests: one insert each, as Create makes them. */
typedef struct create_req {
	store_write_req req;
	store_op op;
	char id[UUID_STR_LEN];
} create_req;

static void create_run(worker *w)
{
	create_req *reqs = calloc((size_t)opt.batch, sizeof(*reqs));
	while (reqs && clock_now_ns() < deadline) {
		int64_t t0 = clock_now_ns();
		int rc = 0;
		for (int b = 0; b < opt.batch && !rc; b++) {
			create_req *c = &reqs[b];
			size_t i = atomic_fetch_add(&next_row, 1) % rows.n;
			rc = uuid7_make(c->id);
			c->op = (store_op){.kind = STORE_OP_INSERT,
					   .id = c->id,
					   .row = {.data = rows.data[i],
						   .data_len = rows.data_len[i],
						   .json = rows.json[i]}};
			c->req = (store_write_req){.ops = &c->op,
						   .nops = 1,
						   .next = b + 1 < opt.batch ? &reqs[b + 1].req
									     : NULL};
			if (!rc)
				rc = store_writer_check(&c->req);
		}
		pthread_mutex_lock(&write_lock);
		if (!rc)
			rc = store_writer_run(writer, &reqs[0].req);
		for (int b = 0; b < opt.batch && !rc; b++)
			rc = reqs[b].req.status;
		pthread_mutex_unlock(&write_lock);
		if (rc) {
			fail("insert");
			break;
		}
		lat_add(w, clock_now_ns() - t0);
		w->ops += (uint64_t)opt.batch;
	}
	free(reqs);
}

static int keep_row(void *ctx, const store_record *rec)
{
	(void)ctx;
	rows.data[rows.n] = malloc(rec->data_len + 1);
	rows.json[rows.n] = strdup(rec->json ? rec->json : "");
	if (!rows.data[rows.n] || !rows.json[rows.n])
		return -ENOMEM;
	memcpy(rows.data[rows.n], rec->data, rec->data_len);
	rows.data_len[rows.n++] = rec->data_len;
	return rows.n == (size_t)opt.rows;
}

static int create_load(void)
{
	store_reader *rd;
	if (store_reader_open(opt.src, BUSY_TIMEOUT_MS, &rd)) {
		fail(opt.src);
		return -1;
	}
	rows.data = calloc((size_t)opt.rows, sizeof(*rows.data));
	rows.data_len = calloc((size_t)opt.rows, sizeof(*rows.data_len));
	rows.json = calloc((size_t)opt.rows, sizeof(*rows.json));
	if (rows.data && rows.data_len && rows.json)
		store_reader_scan(rd, NULL, 0, STORE_SCAN_JSON, keep_row, NULL);
	store_reader_close(rd);
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
	if ((!opt.existing && store_writer_create(opt.dir)) ||
	    store_writer_open(path, false, BUSY_TIMEOUT_MS, &writer)) {
		fail(path);
		return -1;
	}
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
	uint64_t seed = 0x9e3779b97f4a7c15ull * (w->k + 1);
	while (clock_now_ns() < deadline) {
		int64_t t0 = clock_now_ns();
		store_record rec;
		bool found = store_reader_get(w->rd, ids[xorshift(&seed) % nids], &rec) == 0 &&
			     rec.data_len > 0;
		store_reader_end(w->rd);
		if (!found) {
			fail("get");
			break;
		}
		lat_add(w, clock_now_ns() - t0);
		w->ops++;
	}
}

static int keep_id(void *ctx, const store_record *rec)
{
	size_t *cap = ctx;
	if (nids == *cap) {
		char **n = realloc(ids, (*cap = *cap ? *cap * 2 : 1024) * sizeof(*n));
		if (!n)
			return -ENOMEM;
		ids = n;
	}
	if (!(ids[nids] = strdup(rec->id ? rec->id : "")))
		return -ENOMEM;
	nids++;
	return 0;
}

static int get_load(void)
{
	store_reader *rd;
	size_t cap = 0;
	if (store_reader_open(opt.src, BUSY_TIMEOUT_MS, &rd) == 0) {
		store_reader_scan(rd, NULL, 0, 0, keep_id, &cap);
		store_reader_close(rd);
	}
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

/* As the node: each record of the page read, its bytes counted. */
static int count_bytes(void *ctx, const store_record *rec)
{
	*(size_t *)ctx += rec->data_len;
	return 0;
}

static int search_one(worker *w, const query *q)
{
	size_t bytes = 0;
	bool more;
	int64_t total = 0;
	int rc = store_reader_begin(w->rd);
	if (!rc)
		rc = store_reader_query(w->rd, q, count_bytes, &bytes, &more, &total);
	store_reader_end(w->rd);
	if (rc)
		return rc;
	w->matches += (uint64_t)total;
	return total == 0 || bytes > 0 ? 0 : -EIO;
}

static void search_run(worker *w)
{
	size_t i = w->k;
	while (clock_now_ns() < deadline) {
		int64_t t0 = clock_now_ns();
		if (search_one(w, queries[i++ % nqueries])) {
			fail("search");
			break;
		}
		lat_add(w, clock_now_ns() - t0);
		w->ops++;
	}
}

static int search_load(void)
{
	FILE *f = fopen(opt.queries, "r");
	if (!f) {
		perror(opt.queries);
		return -1;
	}
	const char *indexed[1] = {opt.indexed};
	query_schema schema = {.resolve = resolve_string,
			       .indexed = indexed,
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
		if (query_compile_search(&schema, &p, &queries[nqueries])) {
			fprintf(stderr, "store_inproc: query '%s': %s\n", arg, store_err_msg());
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
		{"src", required_argument, NULL, 'i'},
		{"dir", required_argument, NULL, 'd'},
		{"batch", required_argument, NULL, 'b'},
		{"rows", required_argument, NULL, 'n'},
		{"threads", required_argument, NULL, 't'},
		{"seconds", required_argument, NULL, 's'},
		{"queries", required_argument, NULL, 'q'},
		{"limit", required_argument, NULL, 'l'},
		{"indexed", required_argument, NULL, 'x'},
		{"existing", no_argument, NULL, 'e'},
		{0},
	};
	if (argc < 2)
		return usage();
	opt.mode = argv[1];
	int c;
	optind = 2;
	while ((c = getopt_long(argc, argv, "t:s:", longs, NULL)) != -1) {
		switch (c) {
		case 'i':
			opt.src = optarg;
			break;
		case 'd':
			opt.dir = optarg;
			break;
		case 'b':
			opt.batch = atoi(optarg);
			break;
		case 'n':
			opt.rows = atoi(optarg);
			break;
		case 't':
			opt.threads = atoi(optarg);
			break;
		case 's':
			opt.seconds = atof(optarg);
			break;
		case 'q':
			opt.queries = optarg;
			break;
		case 'l':
			opt.limit = atoi(optarg);
			break;
		case 'x':
			opt.indexed = optarg;
			break;
		case 'e':
			opt.existing = true;
			break;
		default:
			return usage();
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
		if (!create && store_reader_open(opt.src, BUSY_TIMEOUT_MS, &ws[k].rd)) {
			fail(opt.src);
			return 1;
		}
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
		store_reader_close(ws[k].rd);
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
	store_writer_close(writer);
	return atomic_load(&failures) ? 1 : 0;
}
