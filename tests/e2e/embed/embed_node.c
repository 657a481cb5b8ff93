/* A program that embeds a node through the installed library alone: test_embed.py builds
 * it with `pkg-config --cflags --libs collector` against a `meson install --destdir`.
 *
 *   embed_node DATA
 *
 * Serves on a free port of 127.0.0.1 with DATA as its data directory, prints "listening
 * on HOST:PORT", and stops gracefully on SIGTERM. */
#include <collector.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>

static collector *node;

static void on_term(int sig)
{
	(void)sig;
	collector_stop(node);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: embed_node DATA\n");
		return 2;
	}
	collector_config cfg;
	collector_config_defaults(&cfg);
	snprintf(cfg.listen, sizeof(cfg.listen), "127.0.0.1:0");
	snprintf(cfg.data, sizeof(cfg.data), "%s", argv[1]);
	cfg.threads = 1;
	cfg.pool_threads = 1;
	cfg.grace_seconds = 1;
	cfg.auth = false; /* the test's clients carry no token */
	char err[256];
	if (collector_open(&cfg, &node, err, sizeof(err))) {
		fprintf(stderr, "embed_node: %s\n", err);
		return 1;
	}
	collector *second;
	if (collector_open(&cfg, &second, err, sizeof(err)) != -EBUSY) {
		fprintf(stderr, "embed_node: a second node in the process was not refused\n");
		return 1;
	}
	signal(SIGTERM, on_term);
	printf("collector %s\nlistening on %s\n", collector_version(), collector_address(node));
	fflush(stdout);
	int rc = collector_serve(node);
	collector_close(node);
	return rc ? 1 : 0;
}
