/* The storage core: names, the catalog, open collections, the group-committing writer,
 * readers, indexes, stats, and acknowledged writes surviving kill -9. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/clock.h"
#include "store/coll.h"
#include "store/files.h"
#include "store/query_path.h"
#include "store/store.h"
#include "store/store_int.h"

/* --- fixtures ---------------------------------------------------------------------------- */

static char dir[64];

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static int setup_dir(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/test_store-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown_dir(void **state)
{
	(void)state;
	return nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static bool path_exists(const char *fmt, ...)
{
	char p[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(p, sizeof(p), fmt, ap);
	va_end(ap);
	struct stat sb;
	return lstat(p, &sb) == 0;
}

static store *open_store(const store_options *o)
{
	store *s = NULL;
	int rc = store_open(dir, o, &s);
	if (rc)
		fprintf(stderr, "store_open: %s\n", store_err_msg());
	assert_int_equal(rc, 0);
	return s;
}

static void create(store *s, const char *ns, const char *name)
{
	store_collection c = {.ns = ns, .name = name, .def = "def", .def_len = 3};
	int rc = store_collection_create(s, &c, 0);
	if (rc)
		fprintf(stderr, "create: %s\n", store_err_msg());
	assert_int_equal(rc, 0);
}

static store_coll *acquire(store *s, const char *ns, const char *name)
{
	store_coll *c = NULL;
	assert_int_equal(store_coll_acquire(s, ns, name, &c), 0);
	return c;
}

/* --- synchronous writes ------------------------------------------------------------------ */

typedef struct treq {
	store_write_req r; /* first: done gets this pointer back */
	store_op ops[4];
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	int rc;
	atomic_int calls;
} treq;

static void treq_done(store_write_req *r, int rc)
{
	treq *t = (treq *)r;
	atomic_fetch_add(&t->calls, 1);
	pthread_mutex_lock(&t->mu);
	t->rc = rc;
	t->done = true;
	pthread_cond_broadcast(&t->cv);
	pthread_mutex_unlock(&t->mu);
}

static void treq_init(treq *t, size_t nops, bool atomic)
{
	memset(t, 0, sizeof(*t));
	pthread_mutex_init(&t->mu, NULL);
	pthread_cond_init(&t->cv, NULL);
	t->r.ops = t->ops;
	t->r.nops = nops;
	t->r.atomic = atomic;
	t->r.done = treq_done;
}

static int treq_wait(treq *t)
{
	pthread_mutex_lock(&t->mu);
	while (!t->done)
		pthread_cond_wait(&t->cv, &t->mu);
	pthread_mutex_unlock(&t->mu);
	assert_int_equal(atomic_load(&t->calls), 1);
	pthread_mutex_destroy(&t->mu);
	pthread_cond_destroy(&t->cv);
	return t->rc;
}

static void op_insert(store_op *op, const char *id, const char *json)
{
	*op = (store_op){.kind = STORE_OP_INSERT,
			 .id = id,
			 .row = {.data = id, .data_len = strlen(id), .json = json}};
}

static int write1(store_coll *c, store_op op)
{
	treq t;
	treq_init(&t, 1, false);
	t.ops[0] = op;
	int rc = store_coll_write(c, &t.r);
	if (rc)
		return rc;
	rc = treq_wait(&t);
	assert_int_equal(t.ops[0].rc, rc);
	return rc;
}

static int insert(store_coll *c, const char *id, const char *json)
{
	store_op op;
	op_insert(&op, id, json);
	return write1(c, op);
}

/* One integer from a query with one optional text parameter. */
static int64_t query_int(store_coll *c, const char *sql, const char *param)
{
	store_reader *r;
	assert_int_equal(store_coll_read_begin(c, &r), 0);
	sqlite3_stmt *st;
	assert_int_equal(store_reader_prepare(r, sql, &st), 0);
	if (param)
		sqlite3_bind_text(st, 1, param, -1, SQLITE_TRANSIENT);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	int64_t v = sqlite3_column_int64(st, 0);
	store_coll_read_end(r);
	return v;
}

static bool has_id(store_coll *c, const char *id)
{
	return query_int(c, "SELECT count(*) FROM records WHERE id = ?1", id) == 1;
}

static int64_t fts_hits(store_coll *c, const char *word)
{
	return query_int(c, "SELECT count(*) FROM records_fts WHERE records_fts MATCH ?1", word);
}

/* A gate that holds the writer inside a transaction (in an apply callback). */
static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool entered, open;
} gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false};

static int apply_gate(void *ctx, const store_row *old, store_row *out)
{
	(void)ctx;
	pthread_mutex_lock(&gate.mu);
	gate.entered = true;
	pthread_cond_broadcast(&gate.cv);
	while (!gate.open)
		pthread_cond_wait(&gate.cv, &gate.mu);
	pthread_mutex_unlock(&gate.mu);
	*out = *old;
	return 0;
}

static void gate_close(void)
{
	pthread_mutex_lock(&gate.mu);
	gate.entered = gate.open = false;
	pthread_mutex_unlock(&gate.mu);
}

static void gate_wait_entered(void)
{
	pthread_mutex_lock(&gate.mu);
	while (!gate.entered)
		pthread_cond_wait(&gate.cv, &gate.mu);
	pthread_mutex_unlock(&gate.mu);
}

static void gate_open(void)
{
	pthread_mutex_lock(&gate.mu);
	gate.open = true;
	pthread_cond_broadcast(&gate.cv);
	pthread_mutex_unlock(&gate.mu);
}

/* Queues a request whose apply holds the writer at the gate; returns once it is there. */
static void block_writer(store_coll *c, treq *t, const char *id)
{
	gate_close();
	treq_init(t, 1, false);
	t->ops[0] = (store_op){.kind = STORE_OP_UPDATE, .id = id, .apply = apply_gate};
	assert_int_equal(store_coll_write(c, &t->r), 0);
	gate_wait_entered();
}

/* --- names ------------------------------------------------------------------------------ */

static void test_names(void **state)
{
	(void)state;
	char max[STORE_NAME_MAX + 2];
	memset(max, 'a', STORE_NAME_MAX);
	max[STORE_NAME_MAX] = 0;
	const char *good[] = {"a", "Z", "0", "a-b", "a_b", "Abc-09_x", "9lives", max};
	for (size_t i = 0; i < sizeof(good) / sizeof(*good); i++)
		assert_true(store_name_valid(good[i]));
	max[STORE_NAME_MAX] = 'a';
	max[STORE_NAME_MAX + 1] = 0;
	const char *bad[] = {"",	 ".",	"..",	"../x",	 "a/b",	   "/a",   "a/",
			     "-a",	 "_a",	".a",	"a.b",	 "a b",	   "a\\b", "a\tb",
			     "\xc3\xa9", "a:b", "a..b", "~root", "%2e%2e", max};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		assert_false(store_name_valid(bad[i]));
	assert_false(store_name_valid(NULL));

	const char *reserved[] = {"system", "repo", "backups", "files", "SYSTEM", "Files"};
	for (size_t i = 0; i < sizeof(reserved) / sizeof(*reserved); i++)
		assert_true(store_ns_reserved(reserved[i]));
	assert_false(store_ns_reserved("systems"));
	assert_false(store_ns_reserved("zoo"));
}

static void test_names_enforced(void **state)
{
	(void)state;
	store *s = open_store(NULL);
	const char *escapes[][2] = {{"..", "x"},  {"zoo", ".."}, {"zoo", "../../etc"},
				    {"a/b", "c"}, {"zoo", ""},	 {"", "x"}};
	for (size_t i = 0; i < sizeof(escapes) / sizeof(*escapes); i++) {
		store_collection c = {.ns = escapes[i][0], .name = escapes[i][1]};
		assert_int_equal(store_collection_create(s, &c, 0), -EINVAL);
		assert_non_null(strstr(store_err_msg(), "invalid"));
		store_coll *h;
		assert_int_equal(store_coll_acquire(s, escapes[i][0], escapes[i][1], &h), -EINVAL);
		assert_int_equal(
			store_collection_delete(s, escapes[i][0], escapes[i][1], NULL, NULL),
			-EINVAL);
	}
	/* Reserved namespaces: refused to users, allowed to the node. */
	store_collection sys = {.ns = "system", .name = "protos"};
	assert_int_equal(store_collection_create(s, &sys, 0), -EINVAL);
	assert_non_null(strstr(store_err_msg(), "reserved"));
	assert_int_equal(store_collection_create(s, &sys, STORE_CREATE_RESERVED), 0);
	assert_true(path_exists("%s/system/protos/records.db", dir));
	assert_true(path_exists("%s/system/catalog.db", dir));
	store_close(s);
}

/* --- catalog ---------------------------------------------------------------------------- */

typedef struct listed {
	char names[16][140];
	size_t n;
} listed;

static int collect(void *ctx, const store_collection *c)
{
	listed *l = ctx;
	if (l->n < 16)
		snprintf(l->names[l->n++], sizeof(l->names[0]), "%s/%s", c->ns, c->name);
	return 0;
}

static void test_catalog(void **state)
{
	(void)state;
	store *s = open_store(NULL);
	store_collection a = {.ns = "zoo",
			      .name = "animals",
			      .def = "\x0a\x00\x01",
			      .def_len = 3,
			      .type_ns = "zoo",
			      .type_name = "zoo.Animal",
			      .labels = "{\"env\":\"prod\",\"team\":\"x\"}",
			      .indexed = "[\"name\"]"};
	assert_int_equal(store_collection_create(s, &a, 0), 0);
	assert_true(path_exists("%s/zoo/animals/records.db", dir));
	assert_true(path_exists("%s/zoo/animals/files", dir));
	assert_int_equal(store_collection_create(s, &a, 0), -EEXIST);
	assert_non_null(strstr(store_err_msg(), "exists"));

	store_collection *g = NULL;
	assert_int_equal(store_collection_get(s, "zoo", "animals", &g), 0);
	assert_string_equal(g->ns, "zoo");
	assert_string_equal(g->name, "animals");
	assert_int_equal(g->def_len, 3);
	assert_memory_equal(g->def, "\x0a\x00\x01", 3);
	assert_string_equal(g->type_ns, "zoo");
	assert_string_equal(g->type_name, "zoo.Animal");
	assert_string_equal(g->indexed, "[\"name\"]");
	assert_true(g->created_at > 0);
	assert_int_equal(g->created_at, g->updated_at);
	int64_t created = g->created_at;
	free(g);
	assert_int_equal(store_collection_get(s, "zoo", "plants", &g), -ENOENT);

	/* Defaults and more rows to list. */
	store_collection b = {.ns = "zoo", .name = "birds", .labels = "{\"env\":\"dev\"}"};
	store_collection c = {.ns = "farm",
			      .name = "cows",
			      .type_ns = "zoo",
			      .type_name = "zoo.Animal",
			      .labels = "{\"env\":\"prod\"}"};
	store_collection d = {.ns = "zoo",
			      .name = "cats",
			      .type_ns = "zoo",
			      .type_name = "zoo.Animal",
			      .labels = "{\"env\":\"prod\"}"};
	assert_int_equal(store_collection_create(s, &b, 0), 0);
	assert_int_equal(store_collection_create(s, &c, 0), 0);
	assert_int_equal(store_collection_create(s, &d, 0), 0);
	assert_int_equal(store_collection_get(s, "zoo", "birds", &g), 0);
	assert_int_equal(g->def_len, 0);
	assert_string_equal(g->type_name, "");
	assert_string_equal(g->indexed, "[]");
	free(g);

	/* Bad JSON is refused and leaves nothing behind. */
	store_collection bad = {.ns = "zoo", .name = "bad", .labels = "[1]"};
	assert_int_equal(store_collection_create(s, &bad, 0), -EINVAL);
	bad.labels = "{not json";
	assert_int_equal(store_collection_create(s, &bad, 0), -EINVAL);
	bad.labels = NULL;
	bad.indexed = "{}";
	assert_int_equal(store_collection_create(s, &bad, 0), -EINVAL);
	assert_false(path_exists("%s/zoo/bad", dir));

	listed l = {0};
	assert_int_equal(store_collection_list(s, &(store_list_filter){0}, collect, &l, NULL), 0);
	assert_int_equal(l.n, 4);
	assert_string_equal(l.names[0], "farm/cows");
	assert_string_equal(l.names[3], "zoo/cats");

	memset(&l, 0, sizeof(l));
	assert_int_equal(
		store_collection_list(s, &(store_list_filter){.ns = "zoo"}, collect, &l, NULL), 0);
	assert_int_equal(l.n, 3);

	const char *k[] = {"env", "team"}, *v[] = {"prod", "x"};
	memset(&l, 0, sizeof(l));
	store_list_filter f = {.nlabels = 1, .label_keys = k, .label_values = v};
	assert_int_equal(store_collection_list(s, &f, collect, &l, NULL), 0);
	assert_int_equal(l.n, 3); /* cows, animals, cats */
	f.nlabels = 2;
	memset(&l, 0, sizeof(l));
	assert_int_equal(store_collection_list(s, &f, collect, &l, NULL), 0);
	assert_int_equal(l.n, 1);
	assert_string_equal(l.names[0], "zoo/animals");

	memset(&l, 0, sizeof(l));
	f = (store_list_filter){.type_ns = "zoo", .type_name = "zoo.Animal", .ns = "zoo"};
	assert_int_equal(store_collection_list(s, &f, collect, &l, NULL), 0);
	assert_int_equal(l.n, 2);

	/* Keyset paging, two at a time. */
	bool more;
	memset(&l, 0, sizeof(l));
	f = (store_list_filter){.limit = 2};
	assert_int_equal(store_collection_list(s, &f, collect, &l, &more), 0);
	assert_int_equal(l.n, 2);
	assert_true(more);
	assert_string_equal(l.names[1], "zoo/animals");
	f.after_ns = "zoo";
	f.after_name = "animals";
	assert_int_equal(store_collection_list(s, &f, collect, &l, &more), 0);
	assert_int_equal(l.n, 4);
	assert_false(more);
	assert_string_equal(l.names[2], "zoo/birds");
	assert_string_equal(l.names[3], "zoo/cats");
	f.after_name = NULL;
	assert_int_equal(store_collection_list(s, &f, collect, &l, &more), -EINVAL);

	/* Modify: new definition and labels, same creation time. */
	store_collection m = a;
	m.def = "new";
	m.def_len = 3;
	m.indexed = "[\"name\",\"age\"]";
	assert_int_equal(store_collection_update_def(s, &m), 0);
	assert_int_equal(store_collection_get(s, "zoo", "animals", &g), 0);
	assert_memory_equal(g->def, "new", 3);
	assert_string_equal(g->indexed, "[\"name\",\"age\"]");
	assert_int_equal(g->created_at, created);
	assert_true(g->updated_at >= created);
	free(g);
	m.name = "nothing";
	assert_int_equal(store_collection_update_def(s, &m), -ENOENT);
	m.name = "animals";
	m.labels = "nope";
	assert_int_equal(store_collection_update_def(s, &m), -EINVAL);

	/* Delete reports what went away. */
	store_coll *h = acquire(s, "zoo", "animals");
	assert_int_equal(insert(h, "r1", "{\"a\":1}"), 0);
	assert_int_equal(insert(h, "r2", "{\"a\":2}"), 0);
	files_writer *w;
	assert_int_equal(files_put_begin(h, "docs/a.txt", 0, &w), 0);
	assert_int_equal(files_put_chunk(w, "hello", 5), 0);
	assert_int_equal(files_put_commit(w), 0);
	store_coll_release(h);
	int64_t nrec = -1, nfiles = -1;
	assert_int_equal(store_collection_delete(s, "zoo", "animals", &nrec, &nfiles), 0);
	assert_int_equal(nrec, 2);
	assert_int_equal(nfiles, 1);
	assert_false(path_exists("%s/zoo/animals", dir));
	assert_int_equal(store_collection_get(s, "zoo", "animals", &g), -ENOENT);
	assert_int_equal(store_coll_acquire(s, "zoo", "animals", &h), -ENOENT);
	assert_int_equal(store_collection_delete(s, "zoo", "animals", NULL, NULL), -ENOENT);
	/* Counts also come from a collection that was not open. */
	assert_int_equal(store_collection_delete(s, "farm", "cows", &nrec, &nfiles), 0);
	assert_int_equal(nrec, 0);
	assert_int_equal(nfiles, 0);
	assert_false(path_exists("%s/farm", dir)); /* the emptied namespace goes too */
	/* And the name can be used again, empty. */
	assert_int_equal(store_collection_create(s, &a, 0), 0);
	h = acquire(s, "zoo", "animals");
	assert_false(has_id(h, "r1"));
	store_coll_release(h);
	store_close(s);
}

/* The FTS text built in C is what the SQL definition gives (json_tree's text values). */
static void test_fts_text(void **state)
{
	(void)state;
	static const char *const docs[] = {
		"{}",
		"[]",
		"\"alone\"",
		"42",
		"{\"name\":\"striped zebra\",\"legs\":4,\"tags\":[\"wild\",\"\",\"fast\"]}",
		"{\"a\":{\"b\":{\"c\":\"deep\"},\"d\":[[\"x\"],{\"e\":\"y\"}]},\"f\":null,\"g\":true}",
		"{\"key only\":1,\"k2\":{\"inner key\":false}}",
		"{\"esc\":\"q\\\" b\\\\ s\\/ \\b\\f\\n\\r\\t\",\"u\":\"\\u00e9\\u4e2d\\ud83d\\ude00\"}",
		"{\"raw\":\"caf\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80\",\"n\":-1.5e3}",
		" { \"spaced\" : [ \"a\" , \"b\" ] } ",
		"{\"m\":{\"k1\":\"v1\",\"k2\":\"v2\"},\"l\":[1,\"two\",3.0,\"four\"]}",
		"{\"nul\":\"x\\u0000y\",\"b\":\"z\"}",
	};
	sqlite3 *db = NULL;
	assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
	sqlite3_stmt *st = NULL;
	assert_int_equal(sqlite3_prepare_v2(db,
					    "SELECT coalesce(group_concat(value, ' '), '') FROM"
					    " json_tree(?1) WHERE type = 'text'",
					    -1, &st, NULL),
			 SQLITE_OK);
	buf t = BUF_INIT;
	for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
		assert_int_equal(store_writer_fts_text(docs[i], strlen(docs[i]), &t), 0);
		sqlite3_bind_text(st, 1, docs[i], -1, SQLITE_STATIC);
		assert_int_equal(sqlite3_step(st), SQLITE_ROW);
		const char *want = (const char *)sqlite3_column_text(st, 0);
		size_t wlen = (size_t)sqlite3_column_bytes(st, 0);
		if (t.len != wlen || memcmp(t.data, want, wlen))
			fprintf(stderr, "doc %zu: C '%.*s', SQL '%s'\n", i, (int)t.len, t.data,
				want);
		assert_int_equal(t.len, wlen);
		assert_memory_equal(t.data, want, wlen);
		assert_int_equal(t.data[t.len], 0);
		sqlite3_reset(st);
	}
	assert_int_equal(store_writer_fts_text("{\"a\":\"b\" \"c\":1}", 15, &t), -EINVAL);
	assert_non_null(strstr(store_err_msg(), "JSON"));
	assert_int_equal(store_writer_fts_text("{nope", 5, &t), -EINVAL);
	assert_int_equal(store_writer_fts_text("", 0, &t), -EINVAL);
	/* Depth is bounded, not recursion without end. */
	char deep[2 * STORE_WRITER_JSON_MAX_DEPTH + 8];
	memset(deep, '[', STORE_WRITER_JSON_MAX_DEPTH + 1);
	memset(deep + STORE_WRITER_JSON_MAX_DEPTH + 1, ']', STORE_WRITER_JSON_MAX_DEPTH + 1);
	assert_int_equal(store_writer_fts_text(deep, 2 * STORE_WRITER_JSON_MAX_DEPTH + 2, &t),
			 -EINVAL);
	buf_free(&t);
	sqlite3_finalize(st);
	sqlite3_close(db);
}

/* An open collection answers store_collection_get from the row it keeps; the row and its
 * version follow every update, a delete and a create again. */
static void test_kept_rows(void **state)
{
	(void)state;
	store *s = open_store(NULL);
	store_collection a = {.ns = "zoo",
			      .name = "kept",
			      .def = "one",
			      .def_len = 3,
			      .type_name = "zoo.Animal",
			      .indexed = "[\"a\"]"};
	assert_int_equal(store_collection_create(s, &a, 0), 0);
	store_collection *g = NULL;
	assert_int_equal(store_collection_get(s, "zoo", "kept", &g), 0);
	assert_int_equal(g->version, 0); /* not open: from the catalog */
	free(g);
	assert_int_equal(store_collection_version(s, "zoo", "kept"), 0);

	store_coll *c = acquire(s, "zoo", "kept");
	uint64_t v1 = store_collection_version(s, "zoo", "kept");
	assert_true(v1 != 0);
	assert_int_equal(store_collection_get(s, "zoo", "kept", &g), 0);
	assert_int_equal(g->version, v1);
	assert_string_equal(g->type_name, "zoo.Animal");
	assert_memory_equal(g->def, "one", 3);
	int64_t created = g->created_at;
	assert_int_equal(store_coll_created_at(c), created);
	free(g);

	store_collection u = a;
	u.def = "two!";
	u.def_len = 4;
	u.type_name = "zoo.Plant";
	u.indexed = "[\"b\"]";
	assert_int_equal(store_collection_update_def(s, &u), 0);
	uint64_t v2 = store_collection_version(s, "zoo", "kept");
	assert_true(v2 != 0 && v2 != v1);
	assert_int_equal(store_collection_get(s, "zoo", "kept", &g), 0);
	assert_int_equal(g->version, v2);
	assert_int_equal(g->def_len, 4);
	assert_memory_equal(g->def, "two!", 4);
	assert_string_equal(g->type_name, "zoo.Plant");
	assert_string_equal(g->indexed, "[\"b\"]");
	assert_int_equal(g->created_at, created);
	free(g);
	/* A failed update changes nothing. */
	u.labels = "[1]";
	assert_int_equal(store_collection_update_def(s, &u), -EINVAL);
	assert_int_equal(store_collection_version(s, "zoo", "kept"), v2);
	u.labels = NULL;
	store_coll_release(c);

	assert_int_equal(store_collection_delete(s, "zoo", "kept", NULL, NULL), 0);
	assert_int_equal(store_collection_version(s, "zoo", "kept"), 0);
	assert_int_equal(store_collection_get(s, "zoo", "kept", &g), -ENOENT);
	store_collection b = {.ns = "zoo",
			      .name = "kept",
			      .def = "three",
			      .def_len = 5,
			      .type_name = "zoo.Fungus"};
	assert_int_equal(store_collection_create(s, &b, 0), 0);
	assert_int_equal(store_collection_get(s, "zoo", "kept", &g), 0);
	assert_string_equal(g->type_name, "zoo.Fungus");
	free(g);
	c = acquire(s, "zoo", "kept");
	uint64_t v3 = store_collection_version(s, "zoo", "kept");
	assert_true(v3 != 0 && v3 != v1 && v3 != v2);
	assert_int_equal(store_collection_get(s, "zoo", "kept", &g), 0);
	assert_int_equal(g->version, v3);
	assert_memory_equal(g->def, "three", 5);
	assert_string_equal(g->type_name, "zoo.Fungus");
	assert_string_equal(g->indexed, "[]");
	/* Another incarnation of the name. */
	assert_int_equal(store_coll_created_at(c), g->created_at);
	assert_true(g->created_at != created);
	free(g);
	store_coll_release(c);
	store_close(s);

	/* Versions are unique in the process, across stores. */
	s = open_store(NULL);
	c = acquire(s, "zoo", "kept");
	uint64_t v4 = store_collection_version(s, "zoo", "kept");
	assert_true(v4 > v3);
	store_coll_release(c);
	store_close(s);
}

static void test_reopen(void **state)
{
	(void)state;
	store *s = open_store(NULL);
	create(s, "zoo", "animals");
	store_coll *c = acquire(s, "zoo", "animals");
	assert_int_equal(insert(c, "r1", "{\"name\":\"zebra\"}"), 0);
	store_coll_release(c);
	store_close(s);

	s = open_store(&(store_options){.sync_normal = true});
	assert_string_equal(store_data_dir(s), dir);
	store_collection *g;
	assert_int_equal(store_collection_get(s, "zoo", "animals", &g), 0);
	assert_memory_equal(g->def, "def", 3);
	free(g);
	c = acquire(s, "zoo", "animals");
	assert_true(has_id(c, "r1"));
	assert_int_equal(fts_hits(c, "zebra"), 1);
	assert_int_equal(insert(c, "r1", "{}"), -EEXIST);
	store_coll_release(c);
	store_close(s);
}

/* What an interrupted create or delete leaves is cleaned up, never shown as a collection. */
static void test_leftovers(void **state)
{
	(void)state;
	store *s = open_store(NULL);
	create(s, "zoo", "animals");
	store_close(s);
	char p[512];
	snprintf(p, sizeof(p), "%s/zoo/.new-0000", dir);
	assert_int_equal(mkdir(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/zoo/.del-0000", dir);
	assert_int_equal(mkdir(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/zoo/.del-0000/junk", dir);
	assert_int_equal(mkdir(p, 0755), 0);
	/* A renamed-into-place directory whose catalog row was never committed. */
	snprintf(p, sizeof(p), "%s/zoo/orphan", dir);
	assert_int_equal(mkdir(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/zoo/orphan/records.db", dir);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fputs("garbage", f);
	fclose(f);

	s = open_store(NULL);
	assert_false(path_exists("%s/zoo/.new-0000", dir));
	assert_false(path_exists("%s/zoo/.del-0000", dir));
	store_coll *c;
	assert_int_equal(store_coll_acquire(s, "zoo", "orphan", &c), -ENOENT);
	listed l = {0};
	assert_int_equal(store_collection_list(s, &(store_list_filter){0}, collect, &l, NULL), 0);
	assert_int_equal(l.n, 1);
	create(s, "zoo", "orphan");
	c = acquire(s, "zoo", "orphan");
	assert_int_equal(insert(c, "x", "{}"), 0);
	assert_int_equal(query_int(c, "SELECT count(*) FROM records", NULL), 1);
	store_coll_release(c);
	store_close(s);
}

/* --- writes --------------------------------------------------------------------------------- */

static void test_write_ops(void **state)
{
	(void)state;
	store *s = open_store(NULL);
	create(s, "zoo", "animals");
	store_coll *c = acquire(s, "zoo", "animals");
	/* The layout of a new records.db. */
	assert_int_equal(query_int(c, "SELECT page_size FROM pragma_page_size()", NULL),
			 STORE_WRITER_PAGE_SIZE);
	assert_int_equal(
		query_int(c, "SELECT v FROM records_fts_config WHERE k = 'automerge'", NULL),
		STORE_WRITER_FTS_AUTOMERGE);

	store_op op = {
		.kind = STORE_OP_INSERT,
		.id = "r1",
		.row = {.data = "\x08\x01",
			.data_len = 2,
			.json = "{\"name\":\"striped zebra\",\"legs\":4,\"tags\":[\"wild\"]}",
			.labels = "{\"k\":\"v\"}"}};
	treq t;
	treq_init(&t, 1, false);
	t.ops[0] = op;
	assert_int_equal(store_coll_write(c, &t.r), 0);
	assert_int_equal(treq_wait(&t), 0);
	int64_t created = t.ops[0].created_at;
	assert_true(created > 0);
	assert_int_equal(t.ops[0].updated_at, created);
	assert_true(has_id(c, "r1"));
	assert_int_equal(fts_hits(c, "zebra"), 1);
	assert_int_equal(fts_hits(c, "wild"), 1);
	assert_int_equal(fts_hits(c, "legs"), 0); /* keys are not text */
	assert_int_equal(insert(c, "r1", "{}"), -EEXIST);

	/* An empty message is zero bytes of data. */
	store_op empty = {.kind = STORE_OP_INSERT, .id = "empty", .row = {.json = "{}"}};
	assert_int_equal(write1(c, empty), 0);
	assert_int_equal(query_int(c, "SELECT length(data) FROM records WHERE id = ?1", "empty"),
			 0);

	/* Kept times (clone, restore). */
	store_op kept = {.kind = STORE_OP_INSERT,
			 .id = "old",
			 .row = {.json = "{}"},
			 .created_at = 1000,
			 .updated_at = 2000};
	assert_int_equal(write1(c, kept), 0);
	assert_int_equal(query_int(c, "SELECT created_at FROM records WHERE id = ?1", "old"), 1000);
	assert_int_equal(query_int(c, "SELECT updated_at FROM records WHERE id = ?1", "old"), 2000);

	/* Replace: new data and text, labels kept when not given, created_at kept. */
	store_op up = {.kind = STORE_OP_UPDATE,
		       .id = "r1",
		       .row = {.data = "\x08\x02", .data_len = 2, .json = "{\"name\":\"okapi\"}"}};
	treq_init(&t, 1, false);
	t.ops[0] = up;
	assert_int_equal(store_coll_write(c, &t.r), 0);
	assert_int_equal(treq_wait(&t), 0);
	assert_int_equal(t.ops[0].created_at, created);
	assert_true(t.ops[0].updated_at >= created);
	assert_int_equal(query_int(c, "SELECT created_at FROM records WHERE id = ?1", "r1"),
			 created);
	assert_int_equal(query_int(c, "SELECT hex(data) = '0802' FROM records WHERE id = ?1", "r1"),
			 1);
	assert_int_equal(
		query_int(c, "SELECT labels = '{\"k\":\"v\"}' FROM records WHERE id = ?1", "r1"),
		1);
	assert_int_equal(fts_hits(c, "zebra"), 0);
	assert_int_equal(fts_hits(c, "okapi"), 1);
	up.row.labels = "{}";
	assert_int_equal(write1(c, up), 0);
	assert_int_equal(query_int(c, "SELECT labels = '{}' FROM records WHERE id = ?1", "r1"), 1);
	up.id = "missing";
	assert_int_equal(write1(c, up), -ENOENT);

	/* Bad JSON fails the op alone. */
	assert_int_equal(insert(c, "badjson", "{nope"), -EINVAL);
	assert_false(has_id(c, "badjson"));
	store_op badlabels = {.kind = STORE_OP_INSERT,
			      .id = "badlabels",
			      .row = {.json = "{}", .labels = "{\"k\":"}};
	assert_int_equal(write1(c, badlabels), -EINVAL);
	assert_false(has_id(c, "badlabels"));
	badlabels.kind = STORE_OP_UPDATE;
	badlabels.id = "empty";
	assert_int_equal(write1(c, badlabels), -EINVAL);
	assert_int_equal(query_int(c, "SELECT labels = '{}' FROM records WHERE id = ?1", "empty"),
			 1);

	store_op del = {.kind = STORE_OP_DELETE, .id = "r1"};
	assert_int_equal(write1(c, del), 0);
	assert_false(has_id(c, "r1"));
	assert_int_equal(fts_hits(c, "okapi"), 0);
	assert_int_equal(query_int(c, "SELECT count(*) FROM records_fts", NULL), 2);
	assert_int_equal(write1(c, del), -ENOENT);

	/* Malformed requests are refused at once. */
	treq_init(&t, 0, false);
	assert_int_equal(store_coll_write(c, &t.r), -EINVAL);
	treq_init(&t, 1, false);
	t.ops[0] = (store_op){.kind = STORE_OP_INSERT, .id = "x"};
	assert_int_equal(store_coll_write(c, &t.r), -EINVAL);
	t.ops[0] = (store_op){.kind = STORE_OP_INSERT, .row = {.json = "{}"}};
	assert_int_equal(store_coll_write(c, &t.r), -EINVAL);
	t.ops[0] = (store_op){.kind = STORE_OP_INSERT,
			      .id = "x",
			      .row = {.json = "{}", .data_len = 3}};
	assert_int_equal(store_coll_write(c, &t.r), -EINVAL);
	store_coll_release(c);
	store_close(s);
}

typedef struct merge {
	char json[128];
	int fail;
	bool bad_json;
	int calls;
} merge;

/* Read-modify-write: appends "!" to the old JSON's name by building a new document. */
static int apply_merge(void *ctx, const store_row *old, store_row *out)
{
	merge *m = ctx;
	m->calls++;
	if (m->fail)
		return m->fail;
	snprintf(m->json, sizeof(m->json), "{\"was\":%s,\"n\":%zu}", old->json, old->data_len);
	out->data = old->data; /* points into old: the writer must copy it */
	out->data_len = old->data_len;
	out->json = m->json;
	out->labels = "{\"merged\":\"yes\"}";
	if (m->bad_json)
		out->json = "{\"was\":";
	return 0;
}

static void test_apply(void **state)
{
	(void)state;
	store *s = open_store(NULL);
	create(s, "zoo", "animals");
	store_coll *c = acquire(s, "zoo", "animals");
	assert_int_equal(insert(c, "r1", "{\"name\":\"lynx\"}"), 0);

	merge m = {0};
	store_op op = {.kind = STORE_OP_UPDATE, .id = "r1", .apply = apply_merge, .apply_ctx = &m};
	assert_int_equal(write1(c, op), 0);
	assert_int_equal(m.calls, 1);
	assert_int_equal(
		query_int(
			c,
			"SELECT json = '{\"was\":{\"name\":\"lynx\"},\"n\":2}' FROM records WHERE id = ?1",
			"r1"),
		1);
	assert_int_equal(
		query_int(c, "SELECT data = CAST('r1' AS BLOB) FROM records WHERE id = ?1", "r1"),
		1);
	assert_int_equal(
		query_int(c, "SELECT labels = '{\"merged\":\"yes\"}' FROM records WHERE id = ?1",
			  "r1"),
		1);
	assert_int_equal(fts_hits(c, "lynx"), 1);

	/* A failing apply fails the op and changes nothing. */
	m.fail = -EPERM;
	assert_int_equal(write1(c, op), -EPERM);
	assert_int_equal(
		query_int(c, "SELECT json LIKE '{\"was\":{\"name%' FROM records WHERE id = ?1",
			  "r1"),
		1);

	/* A malformed result fails the op alone, before anything is written. */
	m.fail = 0;
	m.bad_json = true;
	assert_int_equal(write1(c, op), -EINVAL);
	assert_int_equal(
		query_int(c, "SELECT json LIKE '{\"was\":{\"name%' FROM records WHERE id = ?1",
			  "r1"),
		1);
	assert_int_equal(fts_hits(c, "lynx"), 1);
	m.bad_json = false;

	/* No row: apply is not called. */
	m.calls = 0;
	op.id = "missing";
	assert_int_equal(write1(c, op), -ENOENT);
	assert_int_equal(m.calls, 0);
	store_coll_release(c);
	store_close(s);
}

/* The merge of a masked update as the service ran it before the writer did: SQLite's JSON
 * functions, one path at a time, on a private in-memory connection. */
static char *merge_reference(const char *old, const char *new, const char *const *mask, size_t n)
{
	sqlite3 *db = NULL;
	assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
	sqlite3_stmt *st = NULL;
	assert_int_equal(
		sqlite3_prepare_v2(
			db,
			"SELECT CASE WHEN json_type(?2, ?3) IS NULL THEN json_remove(?1, ?3)"
			" ELSE json_set(?1, ?3, json(?2 -> ?3)) END",
			-1, &st, NULL),
		SQLITE_OK);
	char *merged = strdup(old);
	for (size_t i = 0; i < n; i++) {
		query_path qp;
		char jp[QUERY_PATH_TEXT_MAX];
		assert_int_equal(query_path_parse(mask[i], strlen(mask[i]), &qp), 0);
		query_path_render(&qp, jp);
		sqlite3_reset(st);
		sqlite3_bind_text(st, 1, merged, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 2, new, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, jp, -1, SQLITE_STATIC);
		assert_int_equal(sqlite3_step(st), SQLITE_ROW);
		char *next = strdup((const char *)sqlite3_column_text(st, 0));
		free(merged);
		merged = next;
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	return merged;
}

typedef struct merged_seen {
	char json[1024];
	int calls;
} merged_seen;

/* Writes the merged row as the writer hands it over, and remembers its JSON. */
static int apply_keep(void *ctx, const store_row *merged, store_row *out)
{
	merged_seen *m = ctx;
	m->calls++;
	snprintf(m->json, sizeof(m->json), "%s", merged->json);
	*out = (store_row){.data = merged->data,
			   .data_len = merged->data_len,
			   .json = merged->json};
	return 0;
}

typedef struct stored_json {
	const char *id;
	char json[1024];
} stored_json;

static int keep_json(void *ctx, const store_record *rec)
{
	stored_json *sj = ctx;
	if (strcmp(rec->id, sj->id))
		return 0;
	snprintf(sj->json, sizeof(sj->json), "%s", rec->json);
	return 1;
}

static void stored(store_coll *c, const char *id, char json[1024])
{
	store_reader *r;
	assert_int_equal(store_coll_read_begin(c, &r), 0);
	stored_json sj = {.id = id};
	assert_int_equal(store_reader_scan(r, NULL, 0, STORE_SCAN_JSON, keep_json, &sj), 1);
	store_coll_read_end(r);
	memcpy(json, sj.json, sizeof(sj.json));
}

/* A masked update merges on the writer's connection, inside its transaction, exactly as
 * the private in-memory connection of the service did before. */
static void test_update_mask(void **state)
{
	(void)state;
	store *s = open_store(NULL);
	create(s, "zoo", "animals");
	store_coll *c = acquire(s, "zoo", "animals");
	const char *old =
		"{\"name\":\"orig\",\"namespace\":\"ns0\",\"message_type\":{\"namespace\":"
		"\"tns\",\"message_name\":\"m.Orig\"},\"indexed_fields\":[\"a\",\"b\"],"
		"\"metadata\":{\"labels\":{\"k\":\"v\",\"x y\":\"w\"}},\"server_endpoint\":"
		"\"h:1\",\"items\":[{\"n\":1},{\"n\":2}]}";
	const char *new =
		"{\"name\":\"new\",\"namespace\":\"ns1\",\"message_type\":{\"namespace\":"
		"\"tns2\",\"message_name\":\"m.New\"},\"indexed_fields\":[\"z\"],\"metadata\":"
		"{\"labels\":{\"k2\":\"v2\"}},\"items\":[{\"n\":7}],\"deep\":{\"a\":{\"b\":1}}}";
	static const char *const masks[][4] = {
		{"name", "message_type.message_name", "indexed_fields", "server_endpoint"},
		{"metadata.labels"},
		{"message_type"},
		{"namespace", "metadata"},
		{"metadata.labels.k2", "metadata.labels.k"},
		{"deep.a.b", "missing.field"},
		{"items[0].n", "items[1]"},
	};
	const size_t nmask[] = {4, 1, 1, 2, 2, 2, 2};
	for (size_t i = 0; i < sizeof(nmask) / sizeof(nmask[0]); i++) {
		char id[16];
		snprintf(id, sizeof(id), "m%zu", i);
		assert_int_equal(insert(c, id, old), 0);
		merged_seen m = {0};
		store_op op = {.kind = STORE_OP_UPDATE,
			       .id = id,
			       .row = {.json = new},
			       .mask = masks[i],
			       .nmask = nmask[i],
			       .apply = apply_keep,
			       .apply_ctx = &m};
		assert_int_equal(write1(c, op), 0);
		assert_int_equal(m.calls, 1);
		char *want = merge_reference(old, new, masks[i], nmask[i]);
		assert_string_equal(m.json, want);
		char json[1024];
		stored(c, id, json);
		assert_string_equal(json, want);
		free(want);
	}
	/* What the first mask makes: its fields from the new JSON, server_endpoint (which the
	 * new JSON lacks) removed, the rest kept. */
	char json[1024];
	stored(c, "m0", json);
	assert_non_null(strstr(json, "\"name\":\"new\""));
	assert_non_null(strstr(json, "\"namespace\":\"ns0\""));
	assert_non_null(strstr(json, "\"message_name\":\"m.New\""));
	assert_non_null(strstr(json, "\"namespace\":\"tns\""));
	assert_null(strstr(json, "server_endpoint"));

	/* A mask needs apply and valid paths; no record: apply is not called. */
	merged_seen m = {0};
	const char *bad[] = {"name; DROP TABLE records"};
	store_op op = {.kind = STORE_OP_UPDATE,
		       .id = "m0",
		       .row = {.json = new},
		       .mask = bad,
		       .nmask = 1,
		       .apply = apply_keep,
		       .apply_ctx = &m};
	assert_int_equal(write1(c, op), -EINVAL);
	op.mask = masks[0];
	op.apply = NULL;
	assert_int_equal(write1(c, op), -EINVAL);
	op.apply = apply_keep;
	op.id = "missing";
	assert_int_equal(write1(c, op), -ENOENT);
	assert_int_equal(m.calls, 0);
	stored(c, "m0", json);
	assert_non_null(strstr(json, "\"name\":\"new\""));
	store_coll_release(c);
	store_close(s);
}

typedef struct collected {
	char ids[16][16];
	size_t n;
} collected;

static int collect_id(void *ctx, const store_record *rec)
{
	collected *cl = ctx;
	snprintf(cl->ids[cl->n++], sizeof(cl->ids[0]), "%s", rec->id);
	assert_null(rec->json);
	return cl->n == 16;
}

/* The reads the services use: by id, scans (in the order written, with matches, served by
 * an index), vector search, the count. */
static void test_reads(void **state)
{
	(void)state;
	store *s = open_store(NULL);
	create(s, "zoo", "animals");
	store_coll *c = acquire(s, "zoo", "animals");
	assert_int_equal(insert(c, "z", "{\"ns\":\"a\",\"f\":{\"n\":\"x\"},\"v\":[1,0]}"), 0);
	assert_int_equal(insert(c, "y", "{\"ns\":\"b\",\"f\":{\"n\":\"x\"},\"v\":[0,1]}"), 0);
	assert_int_equal(insert(c, "x", "{\"ns\":\"a\",\"f\":{\"n\":\"y\"},\"v\":[1,1]}"), 0);
	assert_int_equal(insert(c, "w", "{\"ns\":\"a\",\"f\":{\"n\":\"x\"},\"v\":\"no\"}"), 0);
	char expr[QUERY_INDEX_EXPR_MAX], name[QUERY_INDEX_NAME_MAX];
	assert_int_equal(query_index_field("ns", expr, name), 0);
	const char *names[] = {name + 3}, *exprs[] = {expr};
	assert_int_equal(store_coll_set_indexes(c, 1, names, exprs), 0);

	store_reader *r;
	assert_int_equal(store_coll_read_begin(c, &r), 0);
	store_record rec;
	assert_int_equal(store_reader_get(r, "y", &rec), 0);
	assert_int_equal(rec.data_len, 1);
	assert_memory_equal(rec.data, "y", 1);
	assert_int_equal(store_reader_get(r, "x", &rec), 0); /* again in the same read */
	assert_memory_equal(rec.data, "x", 1);
	assert_int_equal(store_reader_get(r, "nope", &rec), -ENOENT);
	int64_t n = 0;
	assert_int_equal(store_reader_count(r, &n), 0);
	assert_int_equal(n, 4);

	collected all = {0}, some = {0}, none = {0};
	assert_int_equal(store_reader_scan(r, NULL, 0, 0, collect_id, &all), 0);
	assert_int_equal(all.n, 4);
	assert_string_equal(all.ids[0], "z");
	assert_string_equal(all.ids[3], "w");
	const store_match where[] = {{"ns", "a"}, {"f.n", "x"}};
	assert_int_equal(store_reader_scan(r, where, 2, 0, collect_id, &some), 0);
	assert_int_equal(some.n, 2);
	assert_string_equal(some.ids[0], "z");
	assert_string_equal(some.ids[1], "w");
	const store_match odd[] = {{"ns", "a' OR 1=1 --"}};
	assert_int_equal(store_reader_scan(r, odd, 1, 0, collect_id, &none), 0);
	assert_int_equal(none.n, 0);
	const store_match bad[] = {{"@id", "z"}};
	assert_int_equal(store_reader_scan(r, bad, 1, 0, collect_id, &none), -EINVAL);
	sqlite3_stmt *plan;
	assert_int_equal(
		store_reader_prepare(r,
				     "EXPLAIN QUERY PLAN SELECT id, data FROM records WHERE "
				     "json_extract(json,'$.ns') = ?1 ORDER BY rid",
				     &plan),
		0);
	assert_int_equal(sqlite3_step(plan), SQLITE_ROW);
	assert_non_null(strstr((const char *)sqlite3_column_text(plan, 3), name));

	query_path vp;
	assert_int_equal(query_path_parse("v", 1, &vp), 0);
	const float v[] = {1, 0};
	store_hit *hits = NULL;
	size_t nhits = 0;
	assert_int_equal(store_reader_vector(r, &vp, v, 2, 0.5, &hits, &nhits), 0);
	assert_int_equal(nhits, 2);
	assert_true(hits[0].similarity > 0.99 && hits[1].similarity < 0.71);
	assert_int_equal(store_reader_get_hit(r, &hits[0], &rec), 0);
	assert_memory_equal(rec.data, "z", 1);
	assert_string_equal(store_reader_hit_id(r), "z");
	assert_int_equal(store_reader_get_hit(r, &hits[1], &rec), 0);
	assert_string_equal(store_reader_hit_id(r), "x");
	free(hits);
	store_coll_read_end(r);
	store_coll_release(c);
	store_close(s);
}

/* group_max caps the requests of one transaction: 1 commits each request alone (the
 * node's --store-group-max 1), 2 takes the queue two by two. */
static void test_group_max(void **state)
{
	(void)state;
	enum { N = 5 };
	const size_t caps[] = {1, 2};
	const uint64_t want[] = {N, (N + 1) / 2};
	for (size_t k = 0; k < 2; k++) {
		store_options o = {.group_max = caps[k]};
		store *s = open_store(&o);
		char name[16];
		snprintf(name, sizeof(name), "g%zu", caps[k]);
		create(s, "zoo", name);
		store_coll *c = acquire(s, "zoo", name);
		assert_int_equal(insert(c, "base", "{}"), 0);
		uint64_t commits0, acked0, commits, acked;
		store_coll_group_stats(c, &commits0, &acked0);
		treq blocker, t[N];
		char ids[N][8];
		block_writer(c, &blocker, "base");
		for (int i = 0; i < N; i++) {
			snprintf(ids[i], sizeof(ids[i]), "r%d", i);
			treq_init(&t[i], 1, false);
			op_insert(&t[i].ops[0], ids[i], "{}");
			assert_int_equal(store_coll_write(c, &t[i].r), 0);
		}
		gate_open();
		assert_int_equal(treq_wait(&blocker), 0);
		for (int i = 0; i < N; i++)
			assert_int_equal(treq_wait(&t[i]), 0);
		store_coll_group_stats(c, &commits, &acked);
		assert_int_equal(acked - acked0, 1 + N);
		/* The blocker's own transaction, then the queued ones. */
		assert_int_equal(commits - commits0, 1 + want[k]);
		store_coll_release(c);
		store_close(s);
	}
}

static int apply_slow(void *ctx, const store_row *old, store_row *out)
{
	(void)ctx;
	struct timespec ts = {0, 100 * 1000 * 1000};
	nanosleep(&ts, NULL);
	*out = *old;
	return 0;
}

static void submit(store_coll *c, treq *t, const char *id)
{
	treq_init(t, 1, false);
	op_insert(&t->ops[0], id, "{}");
	assert_int_equal(store_coll_write(c, &t->r), 0);
}

/* After a big group the writer waits for as many requests before it begins the next (at
 * most as long as that group took): a wave of requests arriving in parts shares one
 * commit. After small groups nothing waits. */
static void test_gather(void **state)
{
	(void)state;
	store *s = open_store(NULL);
	create(s, "zoo", "animals");
	store_coll *c = acquire(s, "zoo", "animals");
	assert_int_equal(insert(c, "base", "{}"), 0);
	enum { N = 40 };
	treq blocker, t[N];
	char ids[N][16];
	/* A big group that takes 100 ms: N requests queued behind the held writer. */
	block_writer(c, &blocker, "base");
	treq_init(&t[0], 1, false);
	t[0].ops[0] = (store_op){.kind = STORE_OP_UPDATE, .id = "base", .apply = apply_slow};
	assert_int_equal(store_coll_write(c, &t[0].r), 0);
	for (int i = 1; i < N; i++) {
		snprintf(ids[i], sizeof(ids[i]), "a%d", i);
		submit(c, &t[i], ids[i]);
	}
	gate_open();
	assert_int_equal(treq_wait(&blocker), 0);
	for (int i = 0; i < N; i++)
		assert_int_equal(treq_wait(&t[i]), 0);

	/* The next wave in two halves 3 ms apart: one commit. */
	uint64_t commits0, acked0, commits, acked;
	store_coll_group_stats(c, &commits0, &acked0);
	for (int i = 0; i < N; i++) {
		if (i == N / 2) {
			struct timespec ts = {0, 3 * 1000 * 1000};
			nanosleep(&ts, NULL);
		}
		snprintf(ids[i], sizeof(ids[i]), "b%d", i);
		submit(c, &t[i], ids[i]);
	}
	for (int i = 0; i < N; i++)
		assert_int_equal(treq_wait(&t[i]), 0);
	store_coll_group_stats(c, &commits, &acked);
	assert_int_equal(acked - acked0, N);
	assert_int_equal(commits - commits0, 1);

	/* Load gone: a lone request waits once, at most as long as the last group took. */
	int64_t t0 = clock_now_ns();
	assert_int_equal(insert(c, "lone1", "{}"), 0);
	assert_true(clock_now_ns() - t0 < NS_PER_SEC);
	/* Then groups are small: requests in parts commit apart. */
	store_coll_group_stats(c, &commits0, &acked0);
	for (int i = 0; i < N; i++) {
		if (i == N / 2) {
			struct timespec ts = {0, 30 * 1000 * 1000};
			nanosleep(&ts, NULL);
		}
		snprintf(ids[i], sizeof(ids[i]), "c%d", i);
		submit(c, &t[i], ids[i]);
	}
	for (int i = 0; i < N; i++)
		assert_int_equal(treq_wait(&t[i]), 0);
	store_coll_group_stats(c, &commits, &acked);
	assert_true(commits - commits0 >= 2);
	store_coll_release(c);
	store_close(s);
}

/* Requests queued while the writer is busy share the next transaction, and each one's
 * failure stays its own. */
static void test_group_isolation(void **state)
{
	(void)state;
	store *s = open_store(NULL);
	create(s, "zoo", "animals");
	store_coll *c = acquire(s, "zoo", "animals");
	assert_int_equal(insert(c, "base", "{}"), 0);
	assert_int_equal(insert(c, "e", "{}"), 0);
	uint64_t commits0, acked0;
	store_coll_group_stats(c, &commits0, &acked0);

	treq blocker;
	block_writer(c, &blocker, "base");
	enum { N = 6 };
	treq t[N];
	treq_init(&t[0], 1, false);
	op_insert(&t[0].ops[0], "x1", "{}");
	treq_init(&t[1], 1, false);
	op_insert(&t[1].ops[0], "e", "{}"); /* duplicate */
	treq_init(&t[2], 1, false);
	op_insert(&t[2].ops[0], "x2", "{}");
	treq_init(&t[3], 3, true); /* atomic: all or nothing */
	op_insert(&t[3].ops[0], "y1", "{}");
	op_insert(&t[3].ops[1], "e", "{}");
	op_insert(&t[3].ops[2], "y2", "{}");
	treq_init(&t[4], 3, false); /* not atomic: each op on its own */
	op_insert(&t[4].ops[0], "z1", "{}");
	op_insert(&t[4].ops[1], "e", "{}");
	op_insert(&t[4].ops[2], "z2", "{}");
	treq_init(&t[5], 2, true);
	op_insert(&t[5].ops[0], "w1", "{}");
	t[5].ops[1] = (store_op){.kind = STORE_OP_DELETE, .id = "e"};
	for (int i = 0; i < N; i++)
		assert_int_equal(store_coll_write(c, &t[i].r), 0);
	/* Nothing is acknowledged before its commit. */
	for (int i = 0; i < N; i++)
		assert_int_equal(atomic_load(&t[i].calls), 0);
	gate_open();
	assert_int_equal(treq_wait(&blocker), 0);
	int rc[N];
	for (int i = 0; i < N; i++)
		rc[i] = treq_wait(&t[i]);

	uint64_t commits, acked;
	store_coll_group_stats(c, &commits, &acked);
	assert_int_equal(commits - commits0, 2); /* the blocker's, then one for all six */
	assert_int_equal(acked - acked0, 1 + N);

	assert_int_equal(rc[0], 0);
	assert_int_equal(rc[1], -EEXIST);
	assert_int_equal(rc[2], 0);
	assert_int_equal(rc[3], -EEXIST);
	assert_int_equal(t[3].ops[0].rc, -ECANCELED);
	assert_int_equal(t[3].ops[1].rc, -EEXIST);
	assert_int_equal(t[3].ops[2].rc, -ECANCELED);
	assert_int_equal(rc[4], -EEXIST);
	assert_int_equal(t[4].ops[0].rc, 0);
	assert_int_equal(t[4].ops[1].rc, -EEXIST);
	assert_int_equal(t[4].ops[2].rc, 0);
	assert_int_equal(rc[5], 0);
	assert_true(has_id(c, "x1"));
	assert_true(has_id(c, "x2"));
	assert_false(has_id(c, "y1"));
	assert_false(has_id(c, "y2"));
	assert_true(has_id(c, "z1"));
	assert_true(has_id(c, "z2"));
	assert_true(has_id(c, "w1"));
	assert_false(has_id(c, "e"));
	assert_int_equal(query_int(c, "SELECT count(*) FROM records_fts", NULL),
			 query_int(c, "SELECT count(*) FROM records", NULL));
	store_coll_release(c);
	store_close(s);
}

static void test_queue_full(void **state)
{
	(void)state;
	store *s = open_store(&(store_options){.queue_max = 4});
	create(s, "zoo", "animals");
	store_coll *c = acquire(s, "zoo", "animals");
	assert_int_equal(insert(c, "base", "{}"), 0);
	treq blocker;
	block_writer(c, &blocker, "base");
	treq t[5];
	char ids[5][8];
	for (int i = 0; i < 5; i++) {
		snprintf(ids[i], sizeof(ids[i]), "q%d", i);
		treq_init(&t[i], 1, false);
		op_insert(&t[i].ops[0], ids[i], "{}");
	}
	for (int i = 0; i < 4; i++)
		assert_int_equal(store_coll_write(c, &t[i].r), 0);
	assert_int_equal(store_coll_write(c, &t[4].r), -EAGAIN);
	assert_non_null(strstr(store_err_msg(), "full"));
	gate_open();
	assert_int_equal(treq_wait(&blocker), 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(treq_wait(&t[i]), 0);
	assert_int_equal(store_coll_write(c, &t[4].r), 0);
	assert_int_equal(treq_wait(&t[4]), 0);
	assert_int_equal(query_int(c, "SELECT count(*) FROM records", NULL), 6);
	store_coll_release(c);
	store_close(s);
}

/* --- many submitters ---------------------------------------------------------------------- */

enum { SUBMITTERS = 8, PER_THREAD = 150 };

typedef struct submitter {
	store_coll *c;
	int k;
	int failures;
} submitter;

static void *submit_main(void *arg)
{
	submitter *sb = arg;
	for (int n = 0; n < PER_THREAD; n++) {
		char id[32], json[64];
		snprintf(id, sizeof(id), "t%d-%d", sb->k, n);
		snprintf(json, sizeof(json), "{\"k\":%d,\"n\":%d}", sb->k, n);
		int rc;
		while ((rc = insert(sb->c, id, json)) == -EAGAIN)
			sched_yield();
		sb->failures += rc != 0;
	}
	return NULL;
}

static void test_many_submitters(void **state)
{
	(void)state;
	store *s = open_store(NULL);
	create(s, "zoo", "animals");
	store_coll *c = acquire(s, "zoo", "animals");
	pthread_t th[SUBMITTERS];
	submitter sb[SUBMITTERS];
	for (int k = 0; k < SUBMITTERS; k++) {
		sb[k] = (submitter){.c = c, .k = k};
		assert_int_equal(pthread_create(&th[k], NULL, submit_main, &sb[k]), 0);
	}
	for (int k = 0; k < SUBMITTERS; k++) {
		pthread_join(th[k], NULL);
		assert_int_equal(sb[k].failures, 0);
	}
	assert_int_equal(query_int(c, "SELECT count(*) FROM records", NULL),
			 SUBMITTERS * PER_THREAD);
	for (int k = 0; k < SUBMITTERS; k++)
		for (int n = 0; n < PER_THREAD; n += 37) {
			char id[32];
			snprintf(id, sizeof(id), "t%d-%d", k, n);
			assert_true(has_id(c, id));
		}
	uint64_t commits, acked;
	store_coll_group_stats(c, &commits, &acked);
	assert_int_equal(acked, SUBMITTERS * PER_THREAD);
	print_message("      %d submitters: %llu requests in %llu commits (%.1f per commit)\n",
		      SUBMITTERS, (unsigned long long)acked, (unsigned long long)commits,
		      (double)acked / (double)commits);
	store_coll_release(c);
	store_close(s);
}

/* --- readers ------------------------------------------------------------------------------- */

static void test_readers(void **state)
{
	(void)state;
	store *s = open_store(&(store_options){.readers_max = 2});
	create(s, "zoo", "animals");
	store_coll *c = acquire(s, "zoo", "animals");
	assert_int_equal(insert(c, "base", "{}"), 0);

	/* The writer sits inside a transaction that has already inserted a row. */
	gate_close();
	treq t;
	treq_init(&t, 2, false);
	op_insert(&t.ops[0], "pending", "{}");
	t.ops[1] = (store_op){.kind = STORE_OP_UPDATE, .id = "base", .apply = apply_gate};
	assert_int_equal(store_coll_write(c, &t.r), 0);
	gate_wait_entered();

	/* Reads go on, and see the last commit only. Were they waiting for the writer, this
	 * would never return. */
	store_reader *r1, *r2;
	assert_int_equal(store_coll_read_begin(c, &r1), 0);
	assert_int_equal(store_coll_read_begin(c, &r2), 0);
	sqlite3_stmt *a, *b, *a2;
	assert_int_equal(store_reader_prepare(r1, "SELECT count(*) FROM records", &a), 0);
	assert_int_equal(sqlite3_step(a), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(a, 0), 1);
	/* The same text twice in one read: two statements. */
	assert_int_equal(store_reader_prepare(r1, "SELECT count(*) FROM records", &a2), 0);
	assert_ptr_not_equal(a, a2);
	assert_int_equal(store_reader_prepare(r2, "SELECT id FROM records", &b), 0);
	assert_int_equal(sqlite3_step(b), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(b, 0), "base");
	store_coll_read_end(r2);
	store_coll_read_end(r1);
	/* The connection returned last is reused first, and its cache hands back the
	 * prepared statement, reset. */
	assert_int_equal(store_coll_read_begin(c, &r1), 0);
	sqlite3_stmt *again;
	assert_int_equal(store_reader_prepare(r1, "SELECT count(*) FROM records", &again), 0);
	assert_true(again == a || again == a2);
	assert_int_equal(sqlite3_stmt_busy(again), 0);
	assert_int_equal(store_reader_prepare(r1, "SELEC nonsense", &again), -EINVAL);
	store_coll_read_end(r1);

	gate_open();
	assert_int_equal(treq_wait(&t), 0);
	assert_true(has_id(c, "pending"));
	store_coll_release(c);
	store_close(s);
}

/* --- indexes -------------------------------------------------------------------------------- */

static bool index_sql(store_coll *c, const char *name, const char *sql)
{
	store_reader *r;
	assert_int_equal(store_coll_read_begin(c, &r), 0);
	sqlite3_stmt *st;
	assert_int_equal(
		store_reader_prepare(
			r, "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?1", &st),
		0);
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	bool ok = sqlite3_step(st) == SQLITE_ROW &&
		  (!sql || !strcmp((const char *)sqlite3_column_text(st, 0), sql));
	store_coll_read_end(r);
	return ok;
}

static void test_indexes(void **state)
{
	(void)state;
	store *s = open_store(NULL);
	create(s, "zoo", "animals");
	store_coll *c = acquire(s, "zoo", "animals");
	assert_int_equal(insert(c, "r1", "{\"a\":{\"b\":1},\"c\":\"x\"}"), 0);

	const char *names[] = {"a_b", "c"};
	const char *exprs[] = {"json_extract(json,'$.a.b')", "json_extract(json,'$.c')"};
	assert_int_equal(store_coll_set_indexes(c, 2, names, exprs), 0);
	assert_true(index_sql(
		c, "ix_a_b",
		"CREATE INDEX ix_a_b ON records(json_extract(json,'$.a.b'), created_at)"));
	assert_true(index_sql(c, "ix_c", NULL));
	assert_int_equal(
		query_int(c, "SELECT count(*) FROM records WHERE json_extract(json,'$.a.b') = 1",
			  NULL),
		1);
	/* The planner uses it. */
	store_reader *r;
	assert_int_equal(store_coll_read_begin(c, &r), 0);
	sqlite3_stmt *st;
	assert_int_equal(
		store_reader_prepare(
			r,
			"EXPLAIN QUERY PLAN SELECT id FROM records WHERE json_extract(json,'$.c') = 'x'",
			&st),
		0);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_non_null(strstr((const char *)sqlite3_column_text(st, 3), "ix_c"));
	store_coll_read_end(r);

	/* Same set again: nothing changes. Then one dropped, one changed. */
	assert_int_equal(store_coll_set_indexes(c, 2, names, exprs), 0);
	const char *exprs2[] = {"json_extract(json,'$.c[0]')"};
	assert_int_equal(store_coll_set_indexes(c, 1, &names[1], exprs2), 0);
	assert_false(index_sql(c, "ix_a_b", NULL));
	assert_true(
		index_sql(c, "ix_c",
			  "CREATE INDEX ix_c ON records(json_extract(json,'$.c[0]'), created_at)"));
	/* Indexes that are not ours stay. */
	assert_int_equal(
		query_int(c,
			  "SELECT count(*) FROM sqlite_master WHERE name LIKE 'sqlite_autoindex%'",
			  NULL),
		1);
	assert_int_equal(store_coll_set_indexes(c, 0, NULL, NULL), 0);
	assert_false(index_sql(c, "ix_c", NULL));
	assert_int_equal(
		query_int(c,
			  "SELECT count(*) FROM sqlite_master WHERE name LIKE 'sqlite_autoindex%'",
			  NULL),
		1);

	const char *bad_names[] = {"a;b", "", "x y"};
	for (int i = 0; i < 3; i++)
		assert_int_equal(store_coll_set_indexes(c, 1, &bad_names[i], exprs), -EINVAL);
	const char *bad_exprs[] = {"1); DROP TABLE records; --", "json_extract(json,\"$.a\")",
				   "x -- y", ""};
	for (int i = 0; i < 4; i++)
		assert_int_equal(store_coll_set_indexes(c, 1, names, &bad_exprs[i]), -EINVAL);
	const char *twice[] = {"c", "c"};
	assert_int_equal(store_coll_set_indexes(c, 2, twice, exprs), -EINVAL);
	/* An expression SQLite refuses leaves the previous set. */
	assert_int_equal(store_coll_set_indexes(c, 1, names, exprs), 0);
	const char *nondet[] = {"random()"};
	assert_int_equal(store_coll_set_indexes(c, 1, &names[1], nondet), -EINVAL);
	assert_true(index_sql(c, "ix_a_b", NULL));
	assert_false(index_sql(c, "ix_c", NULL));
	/* Writes go on after index work. */
	assert_int_equal(insert(c, "r2", "{\"a\":{\"b\":2}}"), 0);
	store_coll_release(c);
	store_close(s);
}

/* --- stats, eviction, delete while in use --------------------------------------------------- */

static int64_t kept_count(store_coll *c)
{
	int64_t n = -1, bytes;
	assert_int_equal(store_coll_stats(c, &n, &bytes), 0);
	assert_int_equal(n, query_int(c, "SELECT count(*) FROM records", NULL));
	return n;
}

/* A collection made by the schema before version 1 (no order index, no kept count, field
 * indexes on the field alone) gets them when opened, and its count is right from then
 * on through every kind of write. */
static void test_migration(void **state)
{
	(void)state;
	store *s = open_store(NULL);
	create(s, "zoo", "animals");
	store_coll *c = acquire(s, "zoo", "animals");
	char id[16];
	for (int i = 0; i < 5; i++) {
		snprintf(id, sizeof(id), "r%d", i);
		assert_int_equal(insert(c, id, "{\"a\":{\"b\":1}}"), 0);
	}
	const char *names[] = {"a_b"};
	const char *exprs[] = {"json_extract(json,'$.a.b')"};
	assert_int_equal(store_coll_set_indexes(c, 1, names, exprs), 0);
	assert_int_equal(kept_count(c), 5);
	assert_int_equal(query_int(c, "PRAGMA user_version", NULL), 1);
	store_coll_release(c);
	store_close(s);

	/* Back to version 0, with a row the old schema counted only by scanning. */
	char path[512];
	snprintf(path, sizeof(path), "%s/zoo/animals/records.db", dir);
	sqlite3 *db;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(
		sqlite3_exec(db,
			     "DROP TRIGGER records_count_ins; DROP TRIGGER records_count_del;"
			     " DROP TABLE records_count; DROP INDEX records_by_created;"
			     " DROP INDEX ix_a_b;"
			     " CREATE INDEX ix_a_b ON records(json_extract(json,'$.a.b'));"
			     " INSERT INTO records (id, data, json, created_at, updated_at)"
			     " VALUES ('old', x'00', '{}', 1, 1);"
			     " PRAGMA user_version = 0;",
			     NULL, NULL, NULL),
		SQLITE_OK);
	sqlite3_close(db);

	s = open_store(NULL);
	c = acquire(s, "zoo", "animals");
	assert_int_equal(query_int(c, "PRAGMA user_version", NULL), 1);
	assert_int_equal(kept_count(c), 6);
	assert_true(index_sql(c, "records_by_created",
			      "CREATE INDEX records_by_created ON records(created_at)"));
	assert_true(index_sql(
		c, "ix_a_b",
		"CREATE INDEX ix_a_b ON records(json_extract(json,'$.a.b'), created_at)"));
	/* Every kind of write keeps it: insert, update, delete, an atomic request undone. */
	assert_int_equal(insert(c, "n1", "{}"), 0);
	assert_int_equal(kept_count(c), 7);
	assert_int_equal(insert(c, "n1", "{}"), -EEXIST);
	assert_int_equal(kept_count(c), 7);
	assert_int_equal(write1(c, (store_op){.kind = STORE_OP_UPDATE,
					      .id = "n1",
					      .row = {.data = "x", .data_len = 1, .json = "{}"}}),
			 0);
	assert_int_equal(kept_count(c), 7);
	assert_int_equal(write1(c, (store_op){.kind = STORE_OP_DELETE, .id = "old"}), 0);
	assert_int_equal(write1(c, (store_op){.kind = STORE_OP_DELETE, .id = "old"}), -ENOENT);
	assert_int_equal(kept_count(c), 6);
	treq t;
	treq_init(&t, 3, true);
	op_insert(&t.ops[0], "a1", "{}");
	op_insert(&t.ops[1], "a2", "{}");
	op_insert(&t.ops[2], "n1", "{}"); /* exists: the request is undone */
	assert_int_equal(store_coll_write(c, &t.r), 0);
	assert_int_equal(treq_wait(&t), -EEXIST);
	assert_int_equal(kept_count(c), 6);
	treq_init(&t, 3, false);
	op_insert(&t.ops[0], "a1", "{}");
	op_insert(&t.ops[1], "a2", "{}");
	op_insert(&t.ops[2], "n1", "{}"); /* exists: the others stay */
	assert_int_equal(store_coll_write(c, &t.r), 0);
	assert_int_equal(treq_wait(&t), -EEXIST);
	assert_int_equal(kept_count(c), 8);
	store_coll_release(c);
	store_close(s);
}

static void test_stats(void **state)
{
	(void)state;
	store *s = open_store(NULL);
	create(s, "zoo", "animals");
	store_coll *c = acquire(s, "zoo", "animals");
	int64_t n, bytes0, bytes;
	assert_int_equal(store_coll_stats(c, &n, &bytes0), 0);
	assert_int_equal(n, 0);
	assert_true(bytes0 > 0);
	char id[16];
	for (int i = 0; i < 20; i++) {
		snprintf(id, sizeof(id), "r%d", i);
		assert_int_equal(insert(c, id, "{\"text\":\"some words to index\"}"), 0);
	}
	assert_int_equal(store_coll_stats(c, &n, &bytes), 0);
	assert_int_equal(n, 20);
	assert_true(bytes > bytes0);
	int64_t before = bytes;
	files_writer *w;
	static char blob[10000];
	assert_int_equal(files_put_begin(c, "a/b.bin", 0, &w), 0);
	assert_int_equal(files_put_chunk(w, blob, sizeof(blob)), 0);
	assert_int_equal(files_put_commit(w), 0);
	assert_int_equal(store_coll_stats(c, &n, &bytes), 0);
	assert_int_equal(bytes - before, (int64_t)sizeof(blob));
	store_coll_release(c);
	store_close(s);
}

static void test_eviction(void **state)
{
	(void)state;
	store *s = open_store(&(store_options){.max_open = 2});
	const char *names[] = {"c0", "c1", "c2", "c3"};
	for (int i = 0; i < 4; i++)
		create(s, "zoo", names[i]);
	/* A held handle is never closed, whatever the cap. */
	store_coll *held = acquire(s, "zoo", "c0");
	for (int round = 0; round < 2; round++)
		for (int i = 1; i < 4; i++) {
			store_coll *c = acquire(s, "zoo", names[i]);
			char id[16];
			snprintf(id, sizeof(id), "r%d", round);
			assert_int_equal(insert(c, id, "{}"), 0);
			store_coll_release(c);
		}
	assert_int_equal(insert(held, "still", "{}"), 0);
	/* An open collection keeps its WAL file; closing the last connection removes it. */
	int open = 0;
	for (int i = 0; i < 4; i++)
		open += path_exists("%s/zoo/%s/records.db-wal", dir, names[i]);
	assert_int_equal(open, 2);
	assert_true(path_exists("%s/zoo/c0/records.db-wal", dir));
	store_coll_release(held);
	for (int i = 0; i < 4; i++) {
		store_coll *c = acquire(s, "zoo", names[i]);
		assert_int_equal(query_int(c, "SELECT count(*) FROM records", NULL), i ? 2 : 1);
		store_coll_release(c);
	}
	store_close(s);
}

typedef struct deleter {
	store *s;
	atomic_bool finished;
	int rc;
	int64_t records;
} deleter;

static void *delete_main(void *arg)
{
	deleter *d = arg;
	d->rc = store_collection_delete(d->s, "zoo", "animals", &d->records, NULL);
	atomic_store(&d->finished, true);
	return NULL;
}

static void test_delete_waits_for_handles(void **state)
{
	(void)state;
	store *s = open_store(NULL);
	create(s, "zoo", "animals");
	store_coll *c = acquire(s, "zoo", "animals");
	assert_int_equal(insert(c, "r1", "{}"), 0);
	deleter d = {.s = s};
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, delete_main, &d), 0);
	/* Once the delete has begun, new handles are refused. */
	store_coll *other;
	int rc;
	while ((rc = store_coll_acquire(s, "zoo", "animals", &other)) == 0)
		store_coll_release(other);
	assert_int_equal(rc, -ENOENT);
	/* The held handle still works, and the delete waits for it. */
	assert_int_equal(insert(c, "r2", "{}"), 0);
	assert_false(atomic_load(&d.finished));
	store_coll_release(c);
	pthread_join(th, NULL);
	assert_int_equal(d.rc, 0);
	assert_int_equal(d.records, 2);
	assert_false(path_exists("%s/zoo/animals", dir));
	store_close(s);
}

typedef struct opener {
	store *s;
	store_coll *c;
} opener;

static void *open_main(void *arg)
{
	opener *o = arg;
	assert_int_equal(store_coll_acquire(o->s, "zoo", "animals", &o->c), 0);
	return NULL;
}

static void test_concurrent_acquire(void **state)
{
	(void)state;
	store *s = open_store(NULL);
	create(s, "zoo", "animals");
	enum { N = 6 };
	opener o[N];
	pthread_t th[N];
	for (int i = 0; i < N; i++) {
		o[i] = (opener){.s = s};
		assert_int_equal(pthread_create(&th[i], NULL, open_main, &o[i]), 0);
	}
	for (int i = 0; i < N; i++)
		pthread_join(th[i], NULL);
	for (int i = 1; i < N; i++)
		assert_ptr_equal(o[i].c, o[0].c);
	assert_string_equal(store_coll_ns(o[0].c), "zoo");
	assert_string_equal(store_coll_name(o[0].c), "animals");
	for (int i = 0; i < N; i++)
		store_coll_release(o[i].c);
	store_coll *c;
	assert_int_equal(store_coll_acquire(s, "zoo", "nothing", &c), -ENOENT);
	store_close(s);
}

/* --- disk full ------------------------------------------------------------------------------ */

/* In a child (the limit is per process): with the file size capped, a write that cannot fit
 * fails with an error, is not acknowledged, and the collection goes on working. Exit code:
 * 0, or the step that went wrong. */
static int disk_full_child(void)
{
	store *s;
	store_coll *c;
	if (store_open(dir, NULL, &s) || store_coll_acquire(s, "zoo", "full", &c))
		return 10;
	if (insert(c, "before", "{}"))
		return 11;
	signal(SIGXFSZ, SIG_IGN);
	struct rlimit rl = {.rlim_cur = 1 << 20, .rlim_max = 1 << 20};
	if (setrlimit(RLIMIT_FSIZE, &rl))
		return 12;
	static char big[4 << 20];
	memset(big, 'x', sizeof(big));
	store_op op = {.kind = STORE_OP_INSERT,
		       .id = "big",
		       .row = {.data = big, .data_len = sizeof(big), .json = "{}"}};
	int rc = write1(c, op);
	if (rc != -EIO && rc != -ENOSPC)
		return 13;
	if (has_id(c, "big"))
		return 14;
	if (insert(c, "after", "{}"))
		return 15;
	store_coll_release(c);
	store_close(s);
	return 0;
}

static void test_disk_full(void **state)
{
	(void)state;
	store *s = open_store(NULL);
	create(s, "zoo", "full");
	store_close(s);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(disk_full_child());
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	s = open_store(NULL);
	store_coll *c = acquire(s, "zoo", "full");
	assert_true(has_id(c, "before"));
	assert_true(has_id(c, "after"));
	assert_false(has_id(c, "big"));
	store_coll_release(c);
	store_close(s);
}

/* --- kill -9 --------------------------------------------------------------------------------- */

/* A record's content follows from its id, so the parent can check it after the crash. */
static void crash_json(const char *id, char *json, size_t n)
{
	snprintf(json, n, "{\"id\":\"%s\",\"pad\":\"%0*d\"}", id, 40, (int)strlen(id));
}

typedef struct crash_writer {
	store_coll *c;
	int round, k, fd;
	pthread_mutex_t *mu;
} crash_writer;

static void *crash_main(void *arg)
{
	crash_writer *w = arg;
	for (int n = 0;; n++) {
		char id[32], json[128];
		snprintf(id, sizeof(id), "r%d-k%d-%d", w->round, w->k, n);
		crash_json(id, json, sizeof(json));
		store_op op;
		op_insert(&op, id, json);
		int rc = write1(w->c, op);
		if (rc == 0) {
			char line[40];
			int len = snprintf(line, sizeof(line), "%s\n", id);
			pthread_mutex_lock(w->mu);
			if (write(w->fd, line, (size_t)len) != len)
				_exit(3);
			pthread_mutex_unlock(w->mu);
		} else if (rc != -EAGAIN) {
			fprintf(stderr, "crash child: %s: %s\n", id, strerror(-rc));
			_exit(2);
		}
	}
	return NULL;
}

static void crash_child(int round, int fd)
{
	store *s;
	if (store_open(dir, NULL, &s))
		_exit(1);
	store_coll *c;
	if (store_coll_acquire(s, "zoo", "crash", &c))
		_exit(1);
	pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	enum { W = 4 };
	crash_writer w[W];
	pthread_t th[W];
	for (int k = 0; k < W; k++) {
		w[k] = (crash_writer){.c = c, .round = round, .k = k, .fd = fd, .mu = &mu};
		pthread_create(&th[k], NULL, crash_main, &w[k]);
	}
	for (;;)
		pause();
}

static void test_crash(void **state)
{
	(void)state;
	store *s = open_store(NULL);
	create(s, "zoo", "crash");
	store_close(s);
	srand((unsigned)clock_now_ns());
	size_t total = 0;
	for (int round = 0; round < 3; round++) {
		int p[2];
		assert_int_equal(pipe(p), 0);
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			close(p[0]);
			crash_child(round, p[1]);
		}
		close(p[1]);
		/* From its first acknowledgement, let it run 20 to 250 ms more, then kill it. */
		static char buf[1 << 20];
		size_t len = 0;
		fcntl(p[0], F_SETFL, O_NONBLOCK);
		int64_t start = clock_now_ns(), kill_at = INT64_MAX;
		while (clock_now_ns() < kill_at && clock_now_ns() - start < 30 * NS_PER_SEC) {
			ssize_t n = read(p[0], buf + len, sizeof(buf) - len - 1);
			if (n > 0)
				len += (size_t)n;
			else
				usleep(1000);
			if (kill_at == INT64_MAX && memchr(buf, '\n', len))
				kill_at = clock_now_ns() + (20 + rand() % 230) * NS_PER_MS;
		}
		kill(pid, SIGKILL);
		int status;
		assert_int_equal(waitpid(pid, &status, 0), pid);
		if (!WIFSIGNALED(status))
			fail_msg("child ended by itself: status %d", status);
		fcntl(p[0], F_SETFL, 0);
		ssize_t n;
		while ((n = read(p[0], buf + len, sizeof(buf) - len - 1)) > 0)
			len += (size_t)n;
		close(p[0]);
		buf[len] = 0;

		s = open_store(NULL);
		store_coll *c = acquire(s, "zoo", "crash");
		size_t acked = 0;
		for (char *line = buf, *nl; (nl = strchr(line, '\n')); line = nl + 1) {
			*nl = 0;
			char json[128];
			crash_json(line, json, sizeof(json));
			store_reader *r;
			assert_int_equal(store_coll_read_begin(c, &r), 0);
			sqlite3_stmt *st;
			assert_int_equal(
				store_reader_prepare(
					r, "SELECT data, json FROM records WHERE id = ?1", &st),
				0);
			sqlite3_bind_text(st, 1, line, -1, SQLITE_STATIC);
			if (sqlite3_step(st) != SQLITE_ROW)
				fail_msg("acknowledged %s is missing after kill -9", line);
			assert_int_equal(sqlite3_column_bytes(st, 0), (int)strlen(line));
			assert_memory_equal(sqlite3_column_blob(st, 0), line, strlen(line));
			assert_string_equal((const char *)sqlite3_column_text(st, 1), json);
			store_coll_read_end(r);
			acked++;
		}
		/* The kept count is the rows' count after a kill -9 too. */
		kept_count(c);
		assert_true(acked > 0);
		assert_int_equal(query_int(c,
					   "SELECT count(*) FROM pragma_integrity_check"
					   " WHERE integrity_check = 'ok'",
					   NULL),
				 1);
		total += acked;
		store_coll_release(c);
		store_close(s);
	}
	print_message("      %zu acknowledged writes checked after 3 kills\n", total);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test_setup_teardown(test_names_enforced, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_catalog, setup_dir, teardown_dir),
		cmocka_unit_test(test_fts_text),
		cmocka_unit_test_setup_teardown(test_kept_rows, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_reopen, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_leftovers, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_write_ops, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_apply, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_update_mask, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_reads, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_group_isolation, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_group_max, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_gather, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_queue_full, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_many_submitters, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_readers, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_indexes, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_stats, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_migration, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_eviction, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_delete_waits_for_handles, setup_dir,
						teardown_dir),
		cmocka_unit_test_setup_teardown(test_concurrent_acquire, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_disk_full, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_crash, setup_dir, teardown_dir),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
