/* The response budget: its field sizes match protobuf-c's encoding, and a page counted
 * with it packs within the limit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "collector/collection_server.pb-c.h"
#include "services/budget.h"

static void field_sizes_match_protobuf_c(void **state)
{
	(void)state;
	static uint8_t bytes[1 << 21];
	const size_t lens[] = {0, 1, 127, 128, 16383, 16384, (1 << 21) - 1, 1 << 21};
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		/* An Any holding only bytes is that one field: its packed size is the field's. */
		Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
		any.value.data = bytes;
		any.value.len = lens[i];
		size_t want = lens[i] ? google__protobuf__any__get_packed_size(&any) : 2;
		assert_int_equal(budget_field(lens[i]), want);
	}
}

static void takes_until_full(void **state)
{
	(void)state;
	budget b;
	budget_init(&b, 100, 10);
	assert_true(budget_take(&b, 50, 40));
	assert_false(budget_take(&b, 30, 11)); /* 90 + 11 > 100: the reserve counts */
	assert_true(b.full);
	assert_false(budget_take(&b, 1, 0)); /* full stays full: a response is a prefix */
	assert_false(budget_take_bytes(&b, 1));
	assert_int_equal(b.used, 60);
	assert_int_equal(b.items, 1);
	assert_true(budget_fits_alone(&b, 80, 10));
	assert_false(budget_fits_alone(&b, 80, 11));
	assert_false(budget_fits_alone(&b, SIZE_MAX, 0));
	budget_init(&b, 10, 11);
	assert_true(b.full);
	assert_false(budget_fits_alone(&b, 0, 0));
}

/* A List page gathered with the budget, then packed: never over the limit, and cut only
 * when the next item would not have fitted. */
static void list_page_packs_within_limit(void **state)
{
	(void)state;
	static uint8_t data[5000];
	const size_t limit = 20000, sizes[] = {3000, 10, 4999, 5000, 120, 4000, 4500, 7};
	const size_t n = sizeof(sizes) / sizeof(sizes[0]);
	Google__Protobuf__Any any[8], *ptrs[8];
	char token[] = "AW8-F72tfYV6AQEABmIK7XMJMwAAAAAAAAACDdE-u74OBp8";
	budget b;
	budget_init(&b, limit, 2 + BUDGET_INT64_FIELD);
	size_t kept = 0;
	for (; kept < n; kept++) {
		any[kept] = (Google__Protobuf__Any)GOOGLE__PROTOBUF__ANY__INIT;
		any[kept].type_url = "type.googleapis.com/grpc.testing.SimpleRequest";
		any[kept].value.data = data;
		any[kept].value.len = sizes[kept];
		ptrs[kept] = &any[kept];
		size_t cost = budget_field(google__protobuf__any__get_packed_size(&any[kept]));
		if (!budget_take(&b, cost, budget_field(strlen(token))))
			break;
	}
	assert_true(kept > 1 && kept < n);
	Collector__Status ok = COLLECTOR__STATUS__INIT;
	Collector__ListResponse resp = COLLECTOR__LIST_RESPONSE__INIT;
	resp.status = &ok;
	resp.items = ptrs;
	resp.n_items = kept;
	resp.next_page_token = token;
	resp.total_count = INT64_MIN; /* the longest varint */
	size_t packed = collector__list_response__get_packed_size(&resp);
	assert_true(packed <= limit);
	assert_int_equal(packed, b.used + budget_field(strlen(token)));
	resp.n_items = kept + 1;
	assert_true(collector__list_response__get_packed_size(&resp) > limit);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(field_sizes_match_protobuf_c),
		cmocka_unit_test(takes_until_full),
		cmocka_unit_test(list_page_packs_within_limit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
