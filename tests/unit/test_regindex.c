/* The registry's index (what the call gate reads) and the map under it. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "services/regindex.h"
#include "services/strmap.h"

static void strmap_grows_and_replaces(void **state)
{
	(void)state;
	strmap m = {0};
	static int values[1000];
	char key[32];
	for (int i = 0; i < 1000; i++) {
		int n = snprintf(key, sizeof(key), "k%d", i);
		assert_int_equal(strmap_put(&m, key, (size_t)n, &values[i], NULL), 0);
	}
	for (int i = 0; i < 1000; i++) {
		int n = snprintf(key, sizeof(key), "k%d", i);
		assert_ptr_equal(strmap_get(&m, key, (size_t)n), &values[i]);
	}
	assert_null(strmap_get(&m, "k1000", 5));
	/* Keys may hold NULs: "a\0b" and "a" differ. */
	assert_int_equal(strmap_put(&m, "a\0b", 3, &values[1], NULL), 0);
	assert_null(strmap_get(&m, "a", 1));
	void *old = NULL;
	assert_int_equal(strmap_put(&m, "a\0b", 3, &values[2], &old), 0);
	assert_ptr_equal(old, &values[1]);
	assert_ptr_equal(strmap_get(&m, "a\0b", 3), &values[2]);
	assert_int_equal(m.used, 1001);
	strmap_free(&m);
}

/* Deleting keeps every other key reachable, whichever probe chains the deleted keys sat
 * in: keys leave in a scrambled order, and after each deletion every key is looked up. */
static void strmap_deletes(void **state)
{
	(void)state;
	strmap m = {0};
	static int values[600];
	char key[32];
	for (int i = 0; i < 600; i++) {
		int n = snprintf(key, sizeof(key), "d%d", i);
		assert_int_equal(strmap_put(&m, key, (size_t)n, &values[i], NULL), 0);
	}
	bool gone[600] = {0};
	for (int step = 0; step < 600; step++) {
		int i = (step * 337) % 600;
		int n = snprintf(key, sizeof(key), "d%d", i);
		assert_ptr_equal(strmap_del(&m, key, (size_t)n), &values[i]);
		assert_null(strmap_del(&m, key, (size_t)n));
		gone[i] = true;
		for (int k = 0; k < 600; k++) {
			n = snprintf(key, sizeof(key), "d%d", k);
			assert_ptr_equal(strmap_get(&m, key, (size_t)n),
					 gone[k] ? NULL : &values[k]);
		}
	}
	assert_int_equal(m.used, 0);
	assert_null(strmap_del(&m, "nothing", 7));
	/* Emptied, the map takes keys again. */
	assert_int_equal(strmap_put(&m, "again", 5, &values[0], NULL), 0);
	assert_ptr_equal(strmap_get(&m, "again", 5), &values[0]);
	strmap_free(&m);
	assert_null(strmap_del(&m, "again", 5));
}

static int count(void *ctx, const char *ns, const char *name, const uint8_t *rec, size_t len)
{
	(void)ns, (void)rec, (void)len;
	char *seen = ctx;
	strcat(seen, name);
	strcat(seen, ";");
	return 0;
}

static bool has(regindex *x, const char *ns, const char *path)
{
	return regindex_has_method(x, ns, strlen(ns), path, strlen(path));
}

static void methods_per_namespace(void **state)
{
	(void)state;
	regindex *x = regindex_new();
	assert_non_null(x);
	char *const m1[] = {"Feed", "Watch"};
	assert_int_equal(
		regindex_put_service(x, "zoo", "zoo.Feeder", (const uint8_t *)"r1", 2, m1, 2), 0);
	assert_true(has(x, "zoo", "/zoo.Feeder/Feed"));
	assert_true(has(x, "zoo", "/zoo.Feeder/Watch"));
	assert_false(has(x, "farm", "/zoo.Feeder/Feed"));
	assert_false(has(x, "zoo", "/zoo.Feeder/Sleep"));

	/* Registering again replaces the method set. */
	char *const m2[] = {"Feed", "Sleep"};
	assert_int_equal(
		regindex_put_service(x, "zoo", "zoo.Feeder", (const uint8_t *)"r2", 2, m2, 2), 0);
	assert_true(has(x, "zoo", "/zoo.Feeder/Feed"));
	assert_true(has(x, "zoo", "/zoo.Feeder/Sleep"));
	assert_false(has(x, "zoo", "/zoo.Feeder/Watch"));
	size_t len;
	uint8_t *rec = regindex_get_service(x, "zoo", "zoo.Feeder", &len);
	assert_non_null(rec);
	assert_int_equal(len, 2);
	assert_memory_equal(rec, "r2", 2);
	free(rec);
	assert_null(regindex_get_service(x, "farm", "zoo.Feeder", &len));
	assert_int_equal(len, 0);

	char *const m3[] = {"Milk"};
	assert_int_equal(regindex_put_service(x, "farm", "farm.Cow", (const uint8_t *)"", 0, m3, 1),
			 0);
	assert_int_equal(regindex_put_service(x, "zoo", "zoo.Bird", (const uint8_t *)"", 0, m3, 1),
			 0);
	char seen[128] = "";
	assert_int_equal(regindex_each_service(x, NULL, count, seen), 0);
	assert_string_equal(seen, "farm.Cow;zoo.Bird;zoo.Feeder;");
	seen[0] = 0;
	assert_int_equal(regindex_each_service(x, "zoo", count, seen), 0);
	assert_string_equal(seen, "zoo.Bird;zoo.Feeder;");
	regindex_free(x);
}

static void remove_service(void **state)
{
	(void)state;
	regindex *x = regindex_new();
	assert_non_null(x);
	char *const m1[] = {"Feed", "Watch"}, *const m2[] = {"Milk"};
	assert_int_equal(
		regindex_put_service(x, "zoo", "zoo.Feeder", (const uint8_t *)"r", 1, m1, 2), 0);
	assert_int_equal(regindex_put_service(x, "zoo", "zoo.Bird", (const uint8_t *)"b", 1, m2, 1),
			 0);
	assert_int_equal(
		regindex_put_service(x, "farm", "zoo.Feeder", (const uint8_t *)"f", 1, m1, 2), 0);

	assert_int_equal(regindex_remove_service(x, "zoo", "zoo.Feeder"), 0);
	assert_false(has(x, "zoo", "/zoo.Feeder/Feed"));
	assert_false(has(x, "zoo", "/zoo.Feeder/Watch"));
	size_t len;
	assert_null(regindex_get_service(x, "zoo", "zoo.Feeder", &len));
	assert_int_equal(len, 0);
	assert_int_equal(regindex_remove_service(x, "zoo", "zoo.Feeder"), -ENOENT);
	/* The other service of the namespace, and the same service elsewhere, stay. */
	assert_true(has(x, "zoo", "/zoo.Bird/Milk"));
	assert_true(has(x, "farm", "/zoo.Feeder/Feed"));
	/* Its last service gone, the namespace lists nothing. */
	assert_int_equal(regindex_remove_service(x, "zoo", "zoo.Bird"), 0);
	char seen[128] = "";
	assert_int_equal(regindex_each_service(x, NULL, count, seen), 0);
	assert_string_equal(seen, "zoo.Feeder;");
	/* And it can come back. */
	assert_int_equal(
		regindex_put_service(x, "zoo", "zoo.Feeder", (const uint8_t *)"r", 1, m2, 1), 0);
	assert_true(has(x, "zoo", "/zoo.Feeder/Milk"));
	assert_false(has(x, "zoo", "/zoo.Feeder/Feed"));
	regindex_free(x);
}

static int resolve(regindex *x, const char *ns, const char *name, char *out, char *other)
{
	return regindex_resolve_service(x, ns, name, out, 64, other, 64);
}

/* Upstream's names: a bare registration stands for any package's service of that name, and
 * a bare name finds the one full name that ends in it; two candidates are ambiguous. */
static void resolve_bare_names(void **state)
{
	(void)state;
	regindex *x = regindex_new();
	assert_non_null(x);
	char *const m[] = {"Get"};
	char out[64], other[64];
	assert_int_equal(
		regindex_put_service(x, "ns", "CollectionService", (const uint8_t *)"", 0, m, 1),
		0);
	assert_int_equal(resolve(x, "ns", "CollectionService", out, other), REGINDEX_FOUND);
	assert_string_equal(out, "CollectionService");
	assert_int_equal(resolve(x, "ns", "collector.CollectionService", out, other),
			 REGINDEX_FOUND);
	assert_string_equal(out, "CollectionService");
	assert_int_equal(resolve(x, "other", "collector.CollectionService", out, other),
			 REGINDEX_NONE);
	assert_int_equal(resolve(x, "ns", "ollectionService", out, other), REGINDEX_NONE);

	/* A full name: found by its own name and its bare one. */
	assert_int_equal(regindex_put_service(x, "ns", "shop.Orders", (const uint8_t *)"", 0, m, 1),
			 0);
	assert_int_equal(resolve(x, "ns", "Orders", out, other), REGINDEX_FOUND);
	assert_string_equal(out, "shop.Orders");
	assert_int_equal(resolve(x, "ns", "farm.Orders", out, other), REGINDEX_NONE);

	/* A second ".Orders": the bare name is ambiguous, the full ones are not. */
	assert_int_equal(regindex_put_service(x, "ns", "farm.Orders", (const uint8_t *)"", 0, m, 1),
			 0);
	assert_int_equal(resolve(x, "ns", "Orders", out, other), REGINDEX_AMBIGUOUS);
	assert_true(strcmp(out, other) != 0);
	assert_true(!strcmp(out, "shop.Orders") || !strcmp(out, "farm.Orders"));
	assert_true(!strcmp(other, "shop.Orders") || !strcmp(other, "farm.Orders"));
	assert_int_equal(resolve(x, "ns", "farm.Orders", out, other), REGINDEX_FOUND);

	/* Bare "Orders" registered too: it wins by its exact name; another package is
	 * ambiguous between it and the full ones. */
	assert_int_equal(regindex_put_service(x, "ns", "Orders", (const uint8_t *)"", 0, m, 1), 0);
	assert_int_equal(resolve(x, "ns", "Orders", out, other), REGINDEX_FOUND);
	assert_string_equal(out, "Orders");
	assert_int_equal(resolve(x, "ns", "zoo.Orders", out, other), REGINDEX_AMBIGUOUS);
	assert_string_equal(out, "Orders");
	assert_true(!strcmp(other, "shop.Orders") || !strcmp(other, "farm.Orders"));

	/* Removals count down: with the full ones gone, the bare one stands alone. */
	assert_int_equal(regindex_remove_service(x, "ns", "shop.Orders"), 0);
	assert_int_equal(regindex_remove_service(x, "ns", "farm.Orders"), 0);
	assert_int_equal(resolve(x, "ns", "zoo.Orders", out, other), REGINDEX_FOUND);
	assert_string_equal(out, "Orders");
	/* Registering again (a replacement) counts once. */
	assert_int_equal(regindex_put_service(x, "ns", "Orders", (const uint8_t *)"", 0, m, 1), 0);
	assert_int_equal(resolve(x, "ns", "zoo.Orders", out, other), REGINDEX_FOUND);
	assert_int_equal(regindex_remove_service(x, "ns", "Orders"), 0);
	assert_int_equal(resolve(x, "ns", "zoo.Orders", out, other), REGINDEX_NONE);
	assert_int_equal(resolve(x, "ns", "Orders", out, other), REGINDEX_NONE);
	regindex_free(x);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(strmap_grows_and_replaces), cmocka_unit_test(strmap_deletes),
		cmocka_unit_test(methods_per_namespace),     cmocka_unit_test(remove_service),
		cmocka_unit_test(resolve_bare_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
