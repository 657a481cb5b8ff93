/* The query compiler on arbitrary input: path and order_by strings, page tokens (raw, and
 * well sealed around arbitrary payloads), and random filters, Structs, labels and full
 * text. Whatever the compiler accepts is executed against an in-memory database with the
 * shared schema and records of every JSON shape: any SQLite error, any failure other than
 * a clean -EINVAL (with a message), or any quoted literal in the SQL text that is not one
 * of the compiler's own is a crash.
 *
 * Input: a flags byte, then fields separated by 0x1f:
 *   path, order_by, page_token, full_text, program, string pool...
 * The program's bytes drive the choice of filters, operators and values; strings come
 * from the pool. Seeds: fuzz/corpus/fuzz_query/; a dictionary for longer runs:
 * fuzz/fuzz_query.dict. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "fuzz_check.h"
#include "store/query.h"
#include "store/records_schema.h"
#include "store/store_int.h"

static sqlite3 *db;
static const uint8_t token_key[16] = "fuzz-token-key!!";
static const char *const indexed[] = {"a", "b.c", "t[0]", "big"};

static const char *const records[] = {
	"{\"a\":\"x\",\"b\":{\"c\":1},\"big\":\"9007199254740993\",\"t\":[\"x\",\"y\"],"
	"\"when\":\"2024-01-01T00:00:00Z\",\"took\":\"1.500s\",\"flag\":true,\"e\":\"RED\","
	"\"raw\":\"AAE=\"}",
	"{\"a\":\"y z\",\"b\":{\"c\":2.5},\"big\":\"-3\",\"t\":[],\"when\":\"2024-01-01T00:00:00.500Z\","
	"\"took\":\"-1s\",\"flag\":false,\"e\":\"BLUE\",\"n\":[[1,2],[3]]}",
	"{\"a\":5,\"b\":[1,2],\"big\":7,\"t\":\"notarray\",\"when\":12,\"took\":null,"
	"\"m\":{\"k\":\"v\"}}",
	"{\"a\":null,\"b\":\"str\",\"v\":[{\"x\":1},{\"x\":\"1\"}]}",
	"{}",
	"{\"a\":\"%_'\\\"\",\"t\":[1,\"1\",true,null,[1],{\"a\":1}],\"big\":\"abc\"}",
	"{\"a\":\"100\",\"big\":\"18446744073709551615\",\"when\":\"garbage\",\"took\":\"1e3s\"}",
	"{\"a\":true,\"b\":{\"c\":{\"d\":[0,1,2]}},\"mp\":{\"k1\":\"v1\",\"we\\\"ird\":\"x\"},"
	"\"s\":\"\\u0000nul\"}",
	"{\"a\":-0.0,\"b\":{\"c\":1e308},\"t\":[\"x\"],\"big\":\"9223372036854775807\"}",
	"{\"a\":\"\xc3\xa9t\xc3\xa9\",\"t\":[\"\xc3\xa9\"],\"when\":\"2023-12-31T23:59:59.999999999Z\"}",
};

static const char *const labels[] = {
	"{\"env\":\"prod\",\"we\\\"ird.key\":\"x\",\"\":\"e\",\"$.a\":\"b\"}",
	"{\"env\":\"dev\"}",
	"{}",
	"{\"a'b\":\"z\",\"env\":\"prod\"}",
};

static void exec_or_die(const char *sql)
{
	char *msg = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		fprintf(stderr, "%s: %s\n", sql, msg);
		abort();
	}
}

static void setup(void)
{
	CHECK(sqlite3_open(":memory:", &db) == SQLITE_OK);
	exec_or_die(RECORDS_SCHEMA);
	sqlite3_stmt *st;
	CHECK(sqlite3_prepare_v2(db,
				 "INSERT INTO records(id, data, json, labels, created_at,"
				 " updated_at) VALUES(?, x'', ?, ?, ?, ?)",
				 -1, &st, NULL) == SQLITE_OK);
	for (size_t i = 0; i < sizeof records / sizeof records[0]; i++) {
		char id[16];
		snprintf(id, sizeof id, "r%zu", i);
		sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 2, records[i], -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, labels[i % 4], -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 4, 1000 + (int64_t)(i / 2));
		sqlite3_bind_int64(st, 5, 5000 - (int64_t)i);
		CHECK(sqlite3_step(st) == SQLITE_DONE);
		sqlite3_reset(st);
	}
	sqlite3_finalize(st);
	exec_or_die("INSERT INTO records_fts(rowid, text) SELECT rid, (SELECT"
		    " group_concat(value, ' ') FROM json_tree(records.json) WHERE type = 'text')"
		    " FROM records");
	/* The writer's current schema: the record count, the order index. */
	exec_or_die(SCHEMA_V1);
	for (size_t i = 0; i < sizeof indexed / sizeof indexed[0]; i++) {
		char expr[QUERY_INDEX_EXPR_MAX], name[QUERY_INDEX_NAME_MAX], sql[2048];
		CHECK(query_index_field(indexed[i], expr, name) == 0);
		/* The writer's form; name is the index's whole name (ix_...). */
		snprintf(sql, sizeof sql, FIELD_INDEX_SQL, name + 3, expr);
		exec_or_die(sql);
	}
}

/* ---- input ---- */

#define MAX_FIELDS 16
#define MAX_VALUES 256

typedef struct input {
	char *field[MAX_FIELDS];
	size_t nfield;
	const uint8_t *prog;
	size_t nprog, at;
	query_value vals[MAX_VALUES];
	query_member mems[MAX_VALUES];
	size_t nvals, nmems;
} input;

static unsigned next(input *in) { return in->at < in->nprog ? in->prog[in->at++] : 0; }

static const char *pool(input *in)
{
	size_t npool = in->nfield > 5 ? in->nfield - 5 : 0;
	unsigned b = next(in);
	if (!npool)
		return in->field[0];
	return in->field[5 + b % npool];
}

static query_value *new_value(input *in, int depth);

static query_value *alloc_value(input *in)
{
	if (in->nvals == MAX_VALUES)
		return NULL;
	query_value *v = &in->vals[in->nvals++];
	v->type = QUERY_NULL;
	return v;
}

static void fill_value(input *in, query_value *v, int depth)
{
	unsigned t = next(in) % 9;
	if (depth > 3 && t >= 5 && t <= 6)
		t = 0;
	switch (t) {
	case 0:
		v->type = QUERY_NULL;
		break;
	case 1:
		v->type = QUERY_NUMBER;
		v->u.number = (int8_t)next(in);
		break;
	case 2: {
		uint64_t u = 0;
		for (int i = 0; i < 8; i++)
			u = u << 8 | next(in);
		v->type = QUERY_NUMBER;
		memcpy(&v->u.number, &u, 8);
		break;
	}
	case 3:
		v->type = QUERY_STRING;
		v->u.string = pool(in);
		break;
	case 8:
		v->type = QUERY_ABSENT;
		break;
	case 4:
		v->type = QUERY_BOOL;
		v->u.boolean = next(in) & 1;
		break;
	case 5: {
		size_t n = next(in) % 6;
		if (n == 5)
			n = 40 + next(in) % 8;
		v->type = QUERY_LIST;
		v->u.list.items = &in->vals[in->nvals];
		v->u.list.n = 0;
		if (in->nvals + n > MAX_VALUES)
			n = MAX_VALUES - in->nvals;
		in->nvals += n;
		for (size_t i = 0; i < n; i++) {
			fill_value(in, (query_value *)&v->u.list.items[i], depth + 1);
			v->u.list.n++;
		}
		break;
	}
	case 6: {
		size_t n = next(in) % 4;
		v->type = QUERY_STRUCT;
		if (in->nmems + n > MAX_VALUES)
			n = MAX_VALUES - in->nmems;
		query_member *m = &in->mems[in->nmems];
		in->nmems += n;
		v->u.object.members = m;
		v->u.object.n = 0;
		for (size_t i = 0; i < n; i++) {
			m[i].key = pool(in);
			m[i].value = new_value(in, depth + 1);
			if (!m[i].value)
				break;
			v->u.object.n++;
		}
		break;
	}
	case 7: {
		/* An operator Struct, as SearchCollections takes. */
		if (in->nmems + 2 > MAX_VALUES) {
			v->type = QUERY_NULL;
			break;
		}
		query_member *m = &in->mems[in->nmems];
		query_value *op = alloc_value(in);
		if (!op) {
			v->type = QUERY_NULL;
			break;
		}
		in->nmems += 2;
		unsigned b = next(in);
		if (b & 1) {
			op->type = QUERY_NUMBER;
			op->u.number = (int)(b >> 1) % 12;
		} else {
			op->type = QUERY_STRING;
			op->u.string = pool(in);
		}
		m[0] = (query_member){"operator", op};
		m[1] = (query_member){"value", new_value(in, depth + 1)};
		v->type = QUERY_STRUCT;
		v->u.object.members = m;
		v->u.object.n = m[1].value && (b & 2) ? 2 : 1;
		break;
	}
	}
}

static query_value *new_value(input *in, int depth)
{
	query_value *v = alloc_value(in);
	if (v)
		fill_value(in, v, depth);
	return v;
}

/* ---- checks ---- */

static bool path_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       ch == '_' || ch == '.' || ch == '[' || ch == ']' || ch == '$';
}

/* Every quoted literal in the SQL is one of the compiler's fixed words or a rendered JSON
 * path: no user text ever reaches SQL. */
static void check_sql_text(const char *sql)
{
	static const char *const words[] = {"text",    "array", "true", "false",
					    "integer", "real",	"s",	"Z"};
	CHECK(!strchr(sql, ';'));
	CHECK(!strstr(sql, "--"));
	for (const char *p = sql; (p = strchr(p, '\'')) != NULL;) {
		const char *e = strchr(p + 1, '\'');
		CHECK(e);
		size_t n = (size_t)(e - p - 1);
		bool ok = false;
		for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
			ok |= strlen(words[i]) == n && !memcmp(words[i], p + 1, n);
		if (!ok) {
			CHECK(n >= 3 && p[1] == '$' && p[2] == '.');
			for (size_t i = 1; i <= n; i++)
				CHECK(path_char(p[i]));
		}
		p = e + 1;
	}
}

static void run_sql(const query *q, const char *sql, bool page, char **token)
{
	sqlite3_stmt *st;
	check_sql_text(sql);
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		fprintf(stderr, "prepare: %s\n%s\n", sqlite3_errmsg(db), sql);
		abort();
	}
	CHECK(query_bind(st, q) == 0);
	size_t nbinds;
	query_binds(q, &nbinds);
	CHECK((size_t)sqlite3_bind_parameter_count(st) <= nbinds && nbinds <= QUERY_MAX_BINDS);
	int rc, rows = 0;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		rows++;
		if (page && token && !*token && rows == 1) {
			int t = query_token_next(q, st, token);
			CHECK(t == 0 || t == -EOVERFLOW);
		}
	}
	if (rc != SQLITE_DONE) {
		fprintf(stderr, "step: %s\n%s\n", sqlite3_errmsg(db), sql);
		abort();
	}
	CHECK(!page || rows <= query_page_size(q) + 1);
	sqlite3_finalize(st);
}

static void run(const query *q, char **token)
{
	run_sql(q, query_sql(q), true, token);
	run_sql(q, query_count_sql(q), false, NULL);
}

/* The store's message (store_err_msg()), cleared before each call that may fail so that a
 * failure is seen to say why. */
static void err_clear(void) { store_err_set(0, "%s", ""); }
static bool err_said(void) { return strcmp(store_err_msg(), "no error") != 0; }

static void check_rc(int rc)
{
	if (rc == -EINVAL)
		CHECK(err_said());
	else
		CHECK(rc == 0 || rc == -EIO);
}

/* Kinds for the fields the records have; others get one from their name, or none. */
static int resolver(void *ctx, const query_path *p, enum query_kind *kind)
{
	static const struct {
		const char *shape;
		enum query_kind kind;
	} known[] = {
		{"a", QUERY_KIND_STRING},      {"b", QUERY_KIND_MESSAGE},
		{"b.c", QUERY_KIND_NUMBER},    {"big", QUERY_KIND_INT64},
		{"t", QUERY_KIND_REPEATED},    {"t[]", QUERY_KIND_STRING},
		{"n", QUERY_KIND_REPEATED},    {"n[]", QUERY_KIND_REPEATED},
		{"n[][]", QUERY_KIND_INT64},   {"when", QUERY_KIND_TIMESTAMP},
		{"took", QUERY_KIND_DURATION}, {"flag", QUERY_KIND_BOOL},
		{"e", QUERY_KIND_ENUM},	       {"raw", QUERY_KIND_BYTES},
		{"m", QUERY_KIND_MAP},	       {"mp", QUERY_KIND_MAP},
		{"v", QUERY_KIND_REPEATED},    {"v[]", QUERY_KIND_MESSAGE},
		{"v[].x", QUERY_KIND_NUMBER},
	};
	char shape[1200];
	size_t n = 0;
	uint32_t h = 2166136261u;
	(void)ctx;
	for (unsigned i = 0; i < p->nseg; i++) {
		n += (size_t)snprintf(shape + n, sizeof shape - n, "%s%s", i ? "." : "",
				      p->seg[i].name);
		for (unsigned k = 0; k < p->seg[i].nidx; k++)
			n += (size_t)snprintf(shape + n, sizeof shape - n, "[]");
	}
	for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
		if (!strcmp(known[i].shape, shape)) {
			*kind = known[i].kind;
			return 0;
		}
	if (!strcmp(shape, "fail"))
		return -EIO;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)shape[i]) * 16777619u;
	if (h % 16 > QUERY_KIND_DURATION)
		return -ENOENT;
	*kind = (enum query_kind)(h % 16);
	return 0;
}

static void check_path(const char *s)
{
	query_path p, p2;
	char out[QUERY_PATH_TEXT_MAX], out2[QUERY_PATH_TEXT_MAX];
	char expr[QUERY_INDEX_EXPR_MAX], name[QUERY_INDEX_NAME_MAX];
	err_clear();
	int rc = query_path_parse(s, strlen(s), &p);
	CHECK(rc == 0 || (rc == -EINVAL && err_said()));
	err_clear();
	int irc = query_index_field(s, expr, name);
	CHECK(irc == 0 || err_said());
	/* Quoted segments parse but are never indexed (an index expression is SQL text). */
	CHECK((rc == 0 && query_path_plain(&p)) == (irc == 0));
	if (rc)
		return;
	/* The rendering parses back to itself, and without quoted segments it is safe text. */
	size_t n = query_path_render(&p, out);
	CHECK(n == strlen(out) && n < QUERY_PATH_TEXT_MAX && out[0] == '$' && out[1] == '.');
	CHECK(query_path_parse(out + 2, n - 2, &p2) == 0);
	query_path_render(&p2, out2);
	CHECK(!strcmp(out, out2));
	if (irc)
		return;
	for (size_t i = 0; i < n; i++)
		CHECK(path_char(out[i]));
	char want[QUERY_INDEX_EXPR_MAX];
	snprintf(want, sizeof want, "json_extract(json,'%s')", out);
	CHECK(!strcmp(expr, want));
	CHECK(strlen(name) == 19 && !memcmp(name, "ix_", 3));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static input in;
	if (!db)
		setup();
	if (size < 1 || size > 65536)
		return 0;
	unsigned flags = data[0];
	char *copy = malloc(size);
	memcpy(copy, data + 1, size - 1);
	copy[size - 1] = '\0';
	/* NUL ends every field early, as it would a protobuf string in C. */
	in.nfield = 0;
	for (char *p = copy; in.nfield < MAX_FIELDS;) {
		in.field[in.nfield++] = p;
		char *sep = memchr(p, 0x1f, (size_t)(copy + size - 1 - p));
		if (!sep)
			break;
		*sep = '\0';
		p = sep + 1;
	}
	while (in.nfield < 5)
		in.field[in.nfield++] = "";
	in.prog = (const uint8_t *)in.field[4];
	in.nprog = strlen(in.field[4]);
	in.at = 0;
	in.nvals = in.nmems = 0;

	for (size_t i = 0; i < in.nfield; i++)
		if (i != 4)
			check_path(in.field[i]);

	query_schema s = {
		.resolve = flags & 1 ? resolver : NULL,
		.indexed = flags & 2 ? indexed : NULL,
		.nindexed = flags & 2 ? sizeof indexed / sizeof indexed[0] : 0,
		.token_key = flags & 4 ? token_key : NULL,
		.scope = flags & 4 ? "fuzz/c/1" : NULL,
	};
	query *q;
	char *token = NULL;

	/* List: a filter Struct, the order, the raw token. */
	query_value *filter = new_value(&in, 0);
	query_list_params lp = {
		.filter = filter && filter->type == QUERY_STRUCT ? filter : NULL,
		.order_by = in.field[1],
		.page_size = flags & 8 ? (int32_t)(next(&in) % 8) : (int32_t)(int8_t)next(&in) * 9,
		.page_token = in.field[2],
	};
	int rc = (err_clear(), query_compile_list(&s, &lp, &q));
	check_rc(rc);
	if (!rc) {
		run(q, &token);
		query_free(q);
	}
	/* The same List from the first page's token, which must be accepted. */
	lp.page_token = NULL;
	if (!rc && !token && !(err_clear(), query_compile_list(&s, &lp, &q))) {
		run(q, &token);
		query_free(q);
	}
	if (token) {
		lp.page_token = token;
		rc = (err_clear(), query_compile_list(&s, &lp, &q));
		CHECK(rc == 0);
		run(q, NULL);
		query_free(q);
		free(token);
		token = NULL;
	}
	/* A well-sealed token around arbitrary bytes reaches the payload parser. */
	lp.page_token = NULL;
	if (!query_token_seal(s.token_key, (const uint8_t *)in.field[2], strlen(in.field[2]),
			      &token)) {
		lp.page_token = token;
		rc = (err_clear(), query_compile_list(&s, &lp, &q));
		check_rc(rc);
		if (!rc) {
			run(q, NULL);
			query_free(q);
		}
		free(token);
	}

	/* Search: filters, labels, full text, a SearchCollections Struct. */
	query_filter filters[6];
	query_label lbl[3];
	size_t nf = next(&in) % 7, nl = next(&in) % 4;
	if (nf > 6)
		nf = 6;
	for (size_t i = 0; i < nf; i++) {
		filters[i].path = next(&in) & 1 ? in.field[0] : pool(&in);
		filters[i].op = (enum query_op)(next(&in) % 11);
		query_value *v = new_value(&in, 0);
		filters[i].value = v ? *v : (query_value){.type = QUERY_NULL};
	}
	if (nl > 3)
		nl = 3;
	for (size_t i = 0; i < nl; i++)
		lbl[i] = (query_label){pool(&in), pool(&in)};
	query_value *qs = flags & 16 ? new_value(&in, 0) : NULL;
	query_search_params sp = {
		.full_text = in.field[3],
		.filters = filters,
		.nfilters = nf,
		.labels = lbl,
		.nlabels = nl,
		.query = qs && qs->type == QUERY_STRUCT ? qs : NULL,
		.limit = flags & 32 ? (int32_t)(int8_t)next(&in) * 9 : (int32_t)(next(&in) % 8),
		.offset = flags & 64 ? (int32_t)(int8_t)next(&in) * 1000 : (int32_t)(next(&in) % 4),
		.order_by = in.field[1],
		.ascending = flags & 128,
	};
	rc = (err_clear(), query_compile_search(&s, &sp, &q));
	check_rc(rc);
	if (!rc) {
		run(q, NULL);
		query_free(q);
	}
	free(copy);
	return 0;
}
