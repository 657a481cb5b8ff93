/* The reactor group: listeners before threads (port 0 resolved once), the owner's hooks on
 * every reactor, a start that fails leaves nothing running, and a stop ends the threads
 * even with a client connected. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/clock.h"
#include "h2/method.h"
#include "h2/reactor_group.h"
#include "h2/server.h"

typedef struct hooks {
	atomic_int started, drained, exited;
	int fail_at; /* the on_start call that fails (1-based); 0: none */
} hooks;

static int on_start(reactor *r, void *ctx)
{
	(void)r;
	hooks *h = ctx;
	int n = atomic_fetch_add(&h->started, 1) + 1;
	return n == h->fail_at ? -ENOMEM : 0;
}

static void on_drain(reactor *r, void *ctx)
{
	(void)r;
	atomic_fetch_add(&((hooks *)ctx)->drained, 1);
}

static void on_exit_hook(reactor *r, void *ctx)
{
	(void)r;
	atomic_fetch_add(&((hooks *)ctx)->exited, 1);
}

static reactor_group_opts opts_for(const char *listen, int threads, hooks *h)
{
	return (reactor_group_opts){.listen = listen,
				    .threads = threads,
				    .backlog = 16,
				    .on_start = on_start,
				    .on_drain = on_drain,
				    .on_exit = on_exit_hook,
				    .ctx = h};
}

static int port_of(const char *address)
{
	const char *colon = strrchr(address, ':');
	return colon ? atoi(colon + 1) : -1;
}

static void test_bad_address_fails_before_any_thread(void **state)
{
	(void)state;
	hooks h = {0};
	reactor_group_opts o = opts_for("nowhere", 2, &h);
	reactor_group *g = (void *)&h;
	char err[256] = "";
	assert_int_equal(reactor_group_open(&o, &g, err, sizeof(err)), -EINVAL);
	assert_null(g);
	assert_non_null(strstr(err, "nowhere"));
	assert_int_equal(atomic_load(&h.started), 0);
}

/* Listening sockets of this machine on port (the kernel's table: st 0A is LISTEN). */
static int listeners_on(int port, bool v6)
{
	FILE *f = fopen(v6 ? "/proc/net/tcp6" : "/proc/net/tcp", "r");
	if (!f)
		return -1;
	char line[512];
	int n = 0;
	while (fgets(line, sizeof(line), f)) {
		char local[64];
		unsigned st;
		if (sscanf(line, "%*d: %63s %*s %x", local, &st) != 2 || st != 0x0A)
			continue;
		const char *colon = strrchr(local, ':');
		if (colon && strtol(colon + 1, NULL, 16) == port)
			n++;
	}
	fclose(f);
	return n;
}

/* Every reactor binds the port the first one got, IPv6 as well as IPv4. */
static void test_port_zero_resolves_once(void **state)
{
	(void)state;
	const char *addrs[] = {"127.0.0.1:0", "[::1]:0"};
	for (size_t i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++) {
		hooks h = {0};
		reactor_group_opts o = opts_for(addrs[i], 3, &h);
		reactor_group *g = NULL;
		char err[256] = "";
		int rc = reactor_group_open(&o, &g, err, sizeof(err));
		if (rc == -EADDRNOTAVAIL || rc == -EAFNOSUPPORT)
			continue; /* no IPv6 on this machine */
		assert_int_equal(rc, 0);
		const char *a = reactor_group_address(g);
		assert_true(port_of(a) > 0);
		assert_int_equal(a[0] == '[', i == 1);
		assert_int_equal(listeners_on(port_of(a), i == 1), 3);
		reactor_group_free(g);
		assert_int_equal(atomic_load(&h.started), 0);
	}
}

static void test_serve_and_stop(void **state)
{
	(void)state;
	method_table *t = method_table_new();
	h2_server_opts so;
	h2_server_opts_default(&so);
	h2_server *s = h2_server_new(t, &so);
	assert_non_null(s);
	hooks h = {0};
	reactor_group_opts o = opts_for("127.0.0.1:0", 2, &h);
	reactor_group *g = NULL;
	char err[256] = "";
	assert_int_equal(reactor_group_open(&o, &g, err, sizeof(err)), 0);
	int port = port_of(reactor_group_address(g));
	assert_true(port > 0);
	if (reactor_group_start(g, s, err, sizeof(err)))
		fail_msg("cannot start the group: %s", err);
	assert_int_equal(atomic_load(&h.started), 2);

	/* A client that says nothing: GOAWAY and close end it at the stop. */
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);

	reactor_group_stop(g, 10 * NS_PER_SEC);
	int64_t t0 = clock_now_ns();
	reactor_group_free(g);
	/* Well inside the grace period: nothing was in flight. */
	assert_true(clock_now_ns() - t0 < 5 * NS_PER_SEC);
	assert_int_equal(atomic_load(&h.drained), 2);
	assert_int_equal(atomic_load(&h.exited), 2);
	close(fd);
	h2_server_free(s);
	method_table_free(t);
}

static void test_failed_start_stops_the_others(void **state)
{
	(void)state;
	method_table *t = method_table_new();
	h2_server_opts so;
	h2_server_opts_default(&so);
	h2_server *s = h2_server_new(t, &so);
	assert_non_null(s);
	hooks h = {.fail_at = 2};
	reactor_group_opts o = opts_for("127.0.0.1:0", 3, &h);
	reactor_group *g = NULL;
	char err[256] = "";
	assert_int_equal(reactor_group_open(&o, &g, err, sizeof(err)), 0);
	assert_int_equal(reactor_group_start(g, s, err, sizeof(err)), -ENOMEM);
	assert_non_null(strstr(err, "reactor"));
	/* The first reactor ran and was stopped again; the third never started. */
	assert_int_equal(atomic_load(&h.started), 2);
	assert_int_equal(atomic_load(&h.exited), 1);
	reactor_group_free(g);
	assert_int_equal(atomic_load(&h.exited), 1);
	h2_server_free(s);
	method_table_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_address_fails_before_any_thread),
		cmocka_unit_test(test_port_zero_resolves_once),
		cmocka_unit_test(test_serve_and_stop),
		cmocka_unit_test(test_failed_start_stops_the_others),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
