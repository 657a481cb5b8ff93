/* peer_dns_resolve as a command, for tests/e2e/test_peer_dns.py:
 *
 *   dns_probe [--server IP:PORT] [--timeout-ms N] [--tries N] [--total-ms N] NAME PORT
 *
 * prints one HOST:PORT a line (then "truncated" when the list was cut) and exits 0, or
 * prints the error to stderr and exits 1 (2 for bad usage). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "services/peer_dns.h"

static int usage(void)
{
	fprintf(stderr, "usage: dns_probe [--server IP:PORT] [--timeout-ms N] [--tries N] "
			"[--total-ms N] NAME PORT\n");
	return 2;
}

static int number(const char *s, long max, long *out)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (!*s || *end || v < 0 || v > max)
		return -1;
	*out = v;
	return 0;
}

int main(int argc, char **argv)
{
	peer_dns_opts o = {0};
	int i = 1;
	for (; i + 1 < argc && !strncmp(argv[i], "--", 2); i += 2) {
		long v = 0;
		if (!strcmp(argv[i], "--server"))
			o.server = argv[i + 1];
		else if (number(argv[i + 1], 600000, &v))
			return usage();
		else if (!strcmp(argv[i], "--timeout-ms"))
			o.timeout_ms = (int)v;
		else if (!strcmp(argv[i], "--tries"))
			o.tries = (int)v;
		else if (!strcmp(argv[i], "--total-ms"))
			o.total_ms = (int)v;
		else
			return usage();
	}
	long port;
	if (argc - i != 2 || number(argv[i + 1], 65535, &port))
		return usage();
	peer_dns_list list;
	char err[512];
	int rc = peer_dns_resolve(&o, argv[i], (uint16_t)port, &list, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "dns_probe: %s (%s)\n", err, strerror(-rc));
		return 1;
	}
	for (size_t k = 0; k < list.n; k++)
		printf("%s\n", list.addr[k]);
	if (list.truncated)
		printf("truncated\n");
	return 0;
}
