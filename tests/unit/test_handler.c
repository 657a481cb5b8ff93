/* Handler endpoints (handler_endpoint_valid): what RegisterService accepts as the address of
 * a registered service's handler, which the node's client then dials. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "services/handler.h"

static void accepts_dialable_addresses(void **state)
{
	(void)state;
	const char *ok[] = {"127.0.0.1:50051", "localhost:1", "[::1]:65535", "10.1.2.3:8080",
			    "[fe80::1]:443"};
	char why[200];
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		assert_true(handler_endpoint_valid(ok[i], why, sizeof(why)));
}

static void refuses_the_rest_saying_why(void **state)
{
	(void)state;
	char long_host[HANDLER_ENDPOINT_MAX + 8];
	memset(long_host, 'a', sizeof(long_host));
	memcpy(long_host + sizeof(long_host) - 3, ":1", 3);
	const char *bad[] = {"",
			     "127.0.0.1",
			     "127.0.0.1:",
			     "127.0.0.1:0",
			     "127.0.0.1:65536",
			     "127.0.0.1:-1",
			     "127.0.0.1:80x",
			     ":80",
			     "example.com:80",
			     "0.0.0.0:80",
			     "[::]:80",
			     "*:80",
			     "[::1:80",
			     "1.2.3.4.5:80",
			     "127.0.0.1:99999999999",
			     long_host};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char why[200] = "";
		assert_false(handler_endpoint_valid(bad[i], why, sizeof(why)));
		assert_true(strlen(why) > 8);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(accepts_dialable_addresses),
		cmocka_unit_test(refuses_the_rest_saying_why),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
