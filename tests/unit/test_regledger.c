/* The registry's ledger of field numbers: a number keeps its first meaning, per message and
 * namespace, until the messages are forgotten. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "descbuild.h"
#include "services/regledger.h"

enum { T_INT32 = 5, T_STRING = 9 };

/* The file p.proto of package p: message `msg` with one field (name, number, type). */
static db_file *one_field(const char *file, const char *msg, const char *name, int number, int type)
{
	db_file *f = db_file_new(file, "p", "proto3");
	db_field_add(db_message(f, msg), name, number, 1, type, NULL);
	return f;
}

/* Adds f to ns when the ledger allows it, and records its message; returns the check's
 * answer (0, or 1 with the reason in store_err_msg()). */
static int add(tp_pool *tp, regledger *l, const char *ns, db_file *f, const char *msg)
{
	regledger_check cc = {.l = l, .ns = ns};
	const Google__Protobuf__FileDescriptorProto *fp = f;
	int rc = tp_add_files(tp, ns, &fp, 1, 0, regledger_check_fn, &cc);
	if (rc) {
		assert_true(cc.refused);
		return 1;
	}
	char full[64];
	snprintf(full, sizeof(full), "p.%s", msg);
	regledger_record(l, ns, tp_find_message(tp, ns, full));
	return 0;
}

static void first_meaning_stays_until_forgotten(void **state)
{
	(void)state;
	tp_pool *tp = tp_new();
	regledger l = {0};
	assert_int_equal(add(tp, &l, "a", one_field("p.proto", "M", "legs", 1, T_INT32), "M"), 0);
	assert_int_equal(add(tp, &l, "a", one_field("q.proto", "N", "legs", 1, T_INT32), "N"), 0);
	/* Field 1 of p.M back as a string, or renamed: refused, naming message and number. */
	assert_int_equal(add(tp, &l, "a", one_field("p.proto", "M", "legs", 1, T_STRING), "M"), 1);
	assert_non_null(strstr(store_err_msg(), "p.M"));
	assert_non_null(strstr(store_err_msg(), "field number 1"));
	assert_int_equal(add(tp, &l, "a", one_field("p.proto", "M", "count", 1, T_INT32), "M"), 1);
	/* Another namespace has its own history. */
	assert_int_equal(add(tp, &l, "b", one_field("p.proto", "M", "legs", 1, T_STRING), "M"), 0);

	char *gone[] = {"p.M"};
	assert_true(regledger_forget(&l, "a", gone, 1));
	assert_int_equal(add(tp, &l, "a", one_field("p.proto", "M", "legs", 1, T_STRING), "M"), 0);
	/* Only that message of that namespace was forgotten. */
	assert_int_equal(add(tp, &l, "a", one_field("q.proto", "N", "legs", 1, T_STRING), "N"), 1);
	assert_int_equal(add(tp, &l, "b", one_field("p.proto", "M", "legs", 1, T_INT32), "M"), 1);
	/* A message whose name is a prefix of another's is another message. */
	char *prefix[] = {"p.N", "p"};
	assert_true(regledger_forget(&l, "a", prefix, 2));
	assert_int_equal(add(tp, &l, "a", one_field("p.proto", "M", "legs", 1, T_INT32), "M"), 1);
	regledger_free(&l);
	tp_free(tp);
	db_free();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(first_meaning_stays_until_forgotten),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
