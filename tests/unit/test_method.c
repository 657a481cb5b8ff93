/* The method table: lookups by path, refusal of duplicates and malformed paths, and the
 * service list that health and reflection are built from. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "h2/method.h"

static method mk(const char *path, method_kind kind, void *ctx)
{
	return (method){.path = path, .kind = kind, .ctx = ctx};
}

static const method *find(const method_table *t, const char *path)
{
	return method_table_find(t, path, strlen(path));
}

static void test_add_find(void **state)
{
	(void)state;
	method_table *t = method_table_new();
	assert_non_null(t);
	int ctx_a, ctx_b;
	method a = mk("/pkg.Svc/Unary", METHOD_UNARY, &ctx_a);
	method b = mk("/pkg.Svc/Bidi", METHOD_BIDI, &ctx_b);
	assert_int_equal(method_table_add(t, &a), 0);
	assert_int_equal(method_table_add(t, &b), 0);
	/* The table keeps its own copy of the struct. */
	a.kind = METHOD_SERVER_STREAM;
	assert_int_equal(method_table_count(t), 2);
	const method *m = find(t, "/pkg.Svc/Unary");
	assert_non_null(m);
	assert_int_equal(m->kind, METHOD_UNARY);
	assert_ptr_equal(m->ctx, &ctx_a);
	m = find(t, "/pkg.Svc/Bidi");
	assert_non_null(m);
	assert_ptr_equal(m->ctx, &ctx_b);
	assert_null(find(t, "/pkg.Svc/Unar"));
	assert_null(find(t, "/pkg.Svc/UnaryX"));
	assert_null(find(t, "/pkg.svc/Unary"));
	assert_null(find(t, ""));
	assert_null(find(t, "/"));
	/* The path need not be NUL-terminated: a slice of a longer header value. */
	const char *hdr = "/pkg.Svc/UnaryTRAILING";
	m = method_table_find(t, hdr, 14);
	assert_non_null(m);
	assert_ptr_equal(m->ctx, &ctx_a);
	assert_ptr_equal(method_table_at(t, 0), find(t, "/pkg.Svc/Unary"));
	assert_ptr_equal(method_table_at(t, 1), find(t, "/pkg.Svc/Bidi"));
	assert_null(method_table_at(t, 2));
	method_table_free(t);
}

static void test_empty(void **state)
{
	(void)state;
	method_table *t = method_table_new();
	assert_non_null(t);
	assert_int_equal(method_table_count(t), 0);
	assert_null(find(t, "/a/b"));
	assert_null(method_table_at(t, 0));
	method_table_free(t);
	method_table_free(NULL);
}

static void test_duplicates(void **state)
{
	(void)state;
	method_table *t = method_table_new();
	method a = mk("/pkg.Svc/M", METHOD_UNARY, NULL);
	assert_int_equal(method_table_add(t, &a), 0);
	/* Same path from another string, and another kind: still a duplicate. */
	char copy[] = "/pkg.Svc/M";
	method b = mk(copy, METHOD_BIDI, NULL);
	assert_int_equal(method_table_add(t, &b), -EEXIST);
	assert_int_equal(method_table_count(t), 1);
	assert_int_equal(find(t, "/pkg.Svc/M")->kind, METHOD_UNARY);
	method_table_free(t);
}

static void test_malformed(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"",	"/",	   "//",      "///",	 "/a/",	   "//m",    "a/b",
		"/a",	"a",	   "/a/b/c",  "/a//b",	 "/a b/c", "/a/b\n", "/a/b/",
		"a/b/", "/a\tb/c", "/\x7f/b", "/a/\x80", " /a/b",
	};
	method_table *t = method_table_new();
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		method m = mk(bad[i], METHOD_UNARY, NULL);
		int rc = method_table_add(t, &m);
		if (rc != -EINVAL)
			fail_msg("path \"%s\" added with rc %d", bad[i], rc);
	}
	method m = mk(NULL, METHOD_UNARY, NULL);
	assert_int_equal(method_table_add(t, &m), -EINVAL);
	assert_int_equal(method_table_count(t), 0);
	/* The shortest well-formed path, and one without a package. */
	m = mk("/a/b", METHOD_UNARY, NULL);
	assert_int_equal(method_table_add(t, &m), 0);
	m = mk("/Greeter/SayHello", METHOD_UNARY, NULL);
	assert_int_equal(method_table_add(t, &m), 0);
	assert_non_null(find(t, "/a/b"));
	method_table_free(t);
}

#define MAX_SEEN 16
typedef struct seen {
	char name[MAX_SEEN][64];
	size_t n;
} seen;

static void record_service(const char *service, size_t len, void *arg)
{
	seen *s = arg;
	assert_true(s->n < MAX_SEEN);
	assert_true(len < sizeof(s->name[0]));
	memcpy(s->name[s->n], service, len);
	s->name[s->n][len] = '\0';
	s->n++;
}

static void test_each_service(void **state)
{
	(void)state;
	static const char *const paths[] = {
		"/p.A/x", "/p.B/y", "/p.A/z", "/q.C/w", "/p.B/v", "/p.AB/u", "/p/A",
	};
	method_table *t = method_table_new();
	seen s = {0};
	method_table_each_service(t, record_service, &s);
	assert_int_equal(s.n, 0);
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		method m = mk(paths[i], METHOD_UNARY, NULL);
		assert_int_equal(method_table_add(t, &m), 0);
	}
	/* A refused method names no service. */
	method dup = mk("/r.D/x", METHOD_UNARY, NULL);
	assert_int_equal(method_table_add(t, &dup), 0);
	dup.path = "/r.D/x";
	assert_int_equal(method_table_add(t, &dup), -EEXIST);
	method bad = mk("/s.E/", METHOD_UNARY, NULL);
	assert_int_equal(method_table_add(t, &bad), -EINVAL);

	method_table_each_service(t, record_service, &s);
	static const char *const want[] = {"p.A", "p.B", "q.C", "p.AB", "p", "r.D"};
	assert_int_equal(s.n, sizeof(want) / sizeof(want[0]));
	for (size_t i = 0; i < s.n; i++)
		assert_string_equal(s.name[i], want[i]);
	method_table_free(t);
}

/* Services of test_many come as svc0.S, svc1.S, ... in that order, each once. */
static void count_service(const char *service, size_t len, void *arg)
{
	size_t *next = arg;
	char want[32];
	int n = snprintf(want, sizeof(want), "svc%zu.S", *next);
	assert_int_equal(len, (size_t)n);
	assert_memory_equal(service, want, len);
	(*next)++;
}

static void test_many(void **state)
{
	(void)state;
	enum { N = 5000 };
	char(*paths)[48] = calloc(N, sizeof(*paths));
	assert_non_null(paths);
	method_table *t = method_table_new();
	for (int i = 0; i < N; i++) {
		snprintf(paths[i], sizeof(paths[i]), "/svc%d.S/M%d", i % 37, i);
		method m = mk(paths[i], (method_kind)(i % 4), &paths[i]);
		assert_int_equal(method_table_add(t, &m), 0);
	}
	assert_int_equal(method_table_count(t), N);
	for (int i = 0; i < N; i++) {
		const method *m = find(t, paths[i]);
		assert_non_null(m);
		assert_ptr_equal(m->ctx, &paths[i]);
		assert_int_equal(m->kind, i % 4);
		assert_ptr_equal(method_table_at(t, (size_t)i), m);
		char miss[64];
		snprintf(miss, sizeof(miss), "/svc%d.S/M%d", i % 37, i + N);
		assert_null(find(t, miss));
	}
	size_t next = 0;
	method_table_each_service(t, count_service, &next);
	assert_int_equal(next, 37);
	method_table_free(t);
	free(paths);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_add_find),     cmocka_unit_test(test_empty),
		cmocka_unit_test(test_duplicates),   cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_each_service), cmocka_unit_test(test_many),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
