/* The registry's quotas: each limit reached, refused with its flag named, and given back
 * by removals (bytes of removed files only at a restart). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "services/regquota.h"

#define E REGQUOTA_ENTRY_BYTES

static regquota_limits big(void)
{
	return (regquota_limits){.files = 1000,
				 .versions = 1000,
				 .ns_bytes = 1 << 30,
				 .namespaces = 1000,
				 .total_bytes = 1 << 30};
}

static regquota_item file(const char *name, size_t bytes)
{
	return (regquota_item){.file = name, .bytes = bytes};
}

static regquota_item svc(const char *name, size_t bytes)
{
	return (regquota_item){.service = name, .bytes = bytes};
}

/* Adds the items when allowed; returns whether they were. msg gets the refusal. */
static bool try_add(regquota *q, const char *ns, const regquota_item *items, size_t n, char *msg)
{
	msg[0] = 0;
	if (!regquota_allows(q, ns, items, n, msg, 512))
		return false;
	assert_int_equal(regquota_add(q, ns, items, n), 0);
	return true;
}

static void refused_naming(regquota *q, const char *ns, const regquota_item *items, size_t n,
			   const char *flag)
{
	char msg[512];
	regquota_usage before, after;
	regquota_usage_get(q, ns, &before);
	assert_false(try_add(q, ns, items, n, msg));
	if (!strstr(msg, flag))
		fail_msg("refusal \"%s\" does not name %s", msg, flag);
	regquota_usage_get(q, ns, &after);
	assert_memory_equal(&before, &after, sizeof(before));
}

static void files_per_namespace(void **state)
{
	(void)state;
	regquota_limits l = big();
	l.files = 2;
	regquota *q = regquota_new(&l);
	char msg[512];
	regquota_item a = file("a.proto", 10), b = file("b.proto", 10), c = file("c.proto", 10);
	assert_true(try_add(q, "ns", &a, 1, msg));
	/* Two new files at once when one fits: neither. */
	regquota_item bc[] = {b, c};
	refused_naming(q, "ns", bc, 2, "--" REGQUOTA_FLAG_FILES " (2)");
	assert_true(try_add(q, "ns", &b, 1, msg));
	refused_naming(q, "ns", &c, 1, REGQUOTA_FLAG_FILES);
	/* A new version of a file it has is no new file; another namespace has its own. */
	assert_true(try_add(q, "ns", &a, 1, msg));
	assert_true(try_add(q, "other", &c, 1, msg));
	regquota_usage u;
	regquota_usage_get(q, "ns", &u);
	assert_int_equal(u.files, 2);
	assert_int_equal(u.bytes, 3 * (10 + E));
	/* Removing a file makes room. */
	assert_int_equal(regquota_drop_file(q, "ns", "a.proto"), 2);
	assert_int_equal(regquota_drop_file(q, "ns", "a.proto"), 0);
	assert_true(try_add(q, "ns", &c, 1, msg));
	regquota_free(q);
}

static void versions_per_file(void **state)
{
	(void)state;
	regquota_limits l = big();
	l.versions = 3;
	regquota *q = regquota_new(&l);
	char msg[512];
	regquota_item v = file("v.proto", 5);
	for (int i = 0; i < 3; i++)
		assert_true(try_add(q, "ns", &v, 1, msg));
	refused_naming(q, "ns", &v, 1, "--" REGQUOTA_FLAG_VERSIONS " (3)");
	/* Two versions in one registration count as two. */
	regquota *q2 = regquota_new(&l);
	regquota_item twice[] = {v, v, v, v};
	refused_naming(q2, "ns", twice, 4, REGQUOTA_FLAG_VERSIONS);
	assert_true(try_add(q2, "ns", twice, 3, msg));
	regquota_free(q2);
	assert_int_equal(regquota_drop_file(q, "ns", "v.proto"), 3);
	assert_true(try_add(q, "ns", &v, 1, msg));
	regquota_free(q);
}

static void bytes_per_namespace(void **state)
{
	(void)state;
	regquota_limits l = big();
	l.ns_bytes = 3 * (100 + E);
	regquota *q = regquota_new(&l);
	char msg[512];
	regquota_item f = file("f.proto", 100), g = file("g.proto", 101), s = svc("p.S", 100);
	assert_true(try_add(q, "ns", &f, 1, msg));
	assert_true(try_add(q, "ns", &s, 1, msg));
	refused_naming(q, "ns", &g, 1, "--" REGQUOTA_FLAG_NS_BYTES);
	assert_true(try_add(q, "ns", &f, 1, msg)); /* exactly at the limit */
	/* A service registered again replaces its record: a smaller one is fine at the limit,
	 * a larger one is not. */
	regquota_item smaller = svc("p.S", 50), larger = svc("p.S", 60);
	assert_true(try_add(q, "ns", &smaller, 1, msg));
	assert_true(try_add(q, "ns", &larger, 1, msg));
	regquota_item largest = svc("p.S", 101);
	refused_naming(q, "ns", &largest, 1, REGQUOTA_FLAG_NS_BYTES);
	regquota_usage u;
	regquota_usage_get(q, "ns", &u);
	assert_int_equal(u.services, 1);
	assert_int_equal(u.bytes, 2 * (100 + E) + 60 + E);
	/* A removed service gives its bytes back at once. */
	regquota_drop_service(q, "ns", "p.S");
	assert_false(try_add(q, "ns", &g, 1, msg));
	regquota_item small = file("h.proto", 60);
	assert_true(try_add(q, "ns", &small, 1, msg));
	regquota_free(q);
}

static void namespaces(void **state)
{
	(void)state;
	regquota_limits l = big();
	l.namespaces = 2;
	regquota *q = regquota_new(&l);
	char msg[512];
	regquota_item f = file("f.proto", 1), s = svc("p.S", 1);
	assert_true(try_add(q, "a", &f, 1, msg));
	assert_true(try_add(q, "b", &s, 1, msg));
	refused_naming(q, "c", &f, 1, "--" REGQUOTA_FLAG_NAMESPACES " (2)");
	/* The namespaces that hold something may still grow. */
	regquota_item g = file("g.proto", 1);
	assert_true(try_add(q, "a", &g, 1, msg));
	/* A namespace emptied no longer counts. */
	regquota_drop_service(q, "b", "p.S");
	regquota_usage u;
	regquota_usage_get(q, NULL, &u);
	assert_int_equal(u.namespaces, 1);
	assert_true(try_add(q, "c", &f, 1, msg));
	regquota_free(q);
}

static void total_bytes_count_removed_files(void **state)
{
	(void)state;
	regquota_limits l = big();
	l.total_bytes = 3 * (100 + E);
	regquota *q = regquota_new(&l);
	char msg[512];
	regquota_item f = file("f.proto", 100);
	assert_true(try_add(q, "a", &f, 1, msg));
	assert_true(try_add(q, "b", &f, 1, msg));
	assert_int_equal(regquota_drop_file(q, "a", "f.proto"), 1);
	assert_true(try_add(q, "c", &f, 1, msg));
	/* a's bytes are still in memory: the fourth does not fit, and the refusal says why. */
	refused_naming(q, "a", &f, 1, "--" REGQUOTA_FLAG_TOTAL_BYTES);
	assert_false(try_add(q, "a", &f, 1, msg));
	assert_non_null(strstr(msg, "unregistered"));
	regquota_usage u;
	regquota_usage_get(q, "a", &u);
	assert_int_equal(u.files, 0);
	assert_int_equal(u.retired, 100 + E);
	assert_int_equal(u.total_bytes, 3 * (100 + E));
	/* A removed service's memory is freed: its bytes come back. */
	regquota_drop_file(q, "b", "f.proto");
	regquota_drop_file(q, "c", "f.proto");
	regquota_item s = svc("p.S", 100);
	refused_naming(q, "a", &s, 1, REGQUOTA_FLAG_TOTAL_BYTES);
	regquota_free(q);
}

static void defaults(void **state)
{
	(void)state;
	regquota_limits l;
	regquota_limits_default(&l);
	assert_int_equal(l.files, 1000);
	assert_int_equal(l.versions, 100);
	assert_int_equal(l.namespaces, 1000);
	assert_true(l.ns_bytes <= l.total_bytes);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(files_per_namespace),
		cmocka_unit_test(versions_per_file),
		cmocka_unit_test(bytes_per_namespace),
		cmocka_unit_test(namespaces),
		cmocka_unit_test(total_bytes_count_removed_files),
		cmocka_unit_test(defaults),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
