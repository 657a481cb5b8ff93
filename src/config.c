#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/log.h"

void config_defaults(node_config *c)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->listen, sizeof(c->listen), "127.0.0.1:50051");
	snprintf(c->data, sizeof(c->data), "./data");
	c->pool_queue = 1024;
	c->max_message_bytes = 4 * 1024 * 1024;
	snprintf(c->ns, sizeof(c->ns), "default");
	c->log_level = LOG_INFO;
	c->grace_seconds = 10;
}

void config_usage(const char *prog)
{
	printf("usage: %s [flags]\n"
	       "\n"
	       "A Collector node: one gRPC server for the whole Collector API.\n"
	       "Every flag may also be set in a config file as `name = value` (flags win).\n"
	       "\n"
	       "  --listen HOST:PORT         address to serve on (default 127.0.0.1:50051;\n"
	       "                             port 0 picks a free port)\n"
	       "  --data DIR                 data directory (default ./data)\n"
	       "  --threads N                reactor threads (default: one per core)\n"
	       "  --pool-threads N           blocking pool threads (default: two per core)\n"
	       "  --pool-queue N             blocking pool queue bound; when full, calls get\n"
	       "                             RESOURCE_EXHAUSTED (default 1024)\n"
	       "  --max-message-bytes N      largest request or response message\n"
	       "                             (default 4194304 = 4 MiB)\n"
	       "  --namespace NS             default namespace (default \"default\")\n"
	       "  --id ID                    node id (default: a UUIDv7 made once and kept in\n"
	       "                             DIR/node-id)\n"
	       "  --log-level LEVEL          error, warn, info or debug (default info)\n"
	       "  --grace-seconds N          on SIGTERM/SIGINT, time given to calls in flight\n"
	       "                             after GOAWAY (default 10)\n"
	       "  --config FILE              read settings from FILE\n"
	       "  --help                     print this help\n",
	       prog);
}

static int parse_int(const char *name, const char *v, long min, long max, long *out)
{
	char *end;
	errno = 0;
	long n = strtol(v, &end, 10);
	if (errno || !*v || *end || n < min || n > max) {
		fprintf(stderr, "collector: --%s: expected an integer in [%ld, %ld], got '%s'\n",
			name, min, max, v);
		return -1;
	}
	*out = n;
	return 0;
}

static int copy_str(const char *name, char *dst, size_t cap, const char *v)
{
	if (!*v || strlen(v) >= cap) {
		fprintf(stderr, "collector: --%s: value empty or too long\n", name);
		return -1;
	}
	memcpy(dst, v, strlen(v) + 1);
	return 0;
}

static int set_option(node_config *c, const char *name, const char *v)
{
	long n;
	if (!strcmp(name, "listen"))
		return copy_str(name, c->listen, sizeof(c->listen), v);
	if (!strcmp(name, "data"))
		return copy_str(name, c->data, sizeof(c->data), v);
	if (!strcmp(name, "namespace"))
		return copy_str(name, c->ns, sizeof(c->ns), v);
	if (!strcmp(name, "id"))
		return copy_str(name, c->id, sizeof(c->id), v);
	if (!strcmp(name, "threads")) {
		if (parse_int(name, v, 0, 256, &n))
			return -1;
		c->threads = (int)n;
		return 0;
	}
	if (!strcmp(name, "pool-threads")) {
		if (parse_int(name, v, 0, 1024, &n))
			return -1;
		c->pool_threads = (int)n;
		return 0;
	}
	if (!strcmp(name, "pool-queue")) {
		if (parse_int(name, v, 1, 1000000, &n))
			return -1;
		c->pool_queue = (int)n;
		return 0;
	}
	if (!strcmp(name, "max-message-bytes")) {
		if (parse_int(name, v, 1024, 1L << 30, &n))
			return -1;
		c->max_message_bytes = (size_t)n;
		return 0;
	}
	if (!strcmp(name, "grace-seconds")) {
		if (parse_int(name, v, 0, 3600, &n))
			return -1;
		c->grace_seconds = (int)n;
		return 0;
	}
	if (!strcmp(name, "log-level")) {
		int l = log_parse_level(v);
		if (l < 0) {
			fprintf(stderr, "collector: --log-level: expected error, warn, info or debug\n");
			return -1;
		}
		c->log_level = l;
		return 0;
	}
	fprintf(stderr, "collector: unknown option '%s' (see --help)\n", name);
	return -1;
}

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	char *e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = 0;
	return s;
}

static int read_config_file(node_config *c, const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		fprintf(stderr, "collector: cannot read config file %s: %s\n", path, strerror(errno));
		return -1;
	}
	char line[1024];
	int lineno = 0, rc = 0;
	while (!rc && fgets(line, sizeof(line), f)) {
		lineno++;
		char *hash = strchr(line, '#');
		if (hash)
			*hash = 0;
		char *s = trim(line);
		if (!*s)
			continue;
		char *eq = strchr(s, '=');
		if (!eq) {
			fprintf(stderr, "collector: %s:%d: expected name = value\n", path, lineno);
			rc = -1;
			break;
		}
		*eq = 0;
		char *name = trim(s), *value = trim(eq + 1);
		if (!strncmp(name, "--", 2))
			name += 2;
		rc = set_option(c, name, value);
	}
	fclose(f);
	return rc;
}

/* Splits "--name=value" or "--name value"; advances *i past what it used. */
static int next_flag(int argc, char **argv, int *i, char *name, size_t cap, const char **value)
{
	const char *a = argv[*i];
	if (strncmp(a, "--", 2)) {
		fprintf(stderr, "collector: unexpected argument '%s' (see --help)\n", a);
		return -1;
	}
	a += 2;
	const char *eq = strchr(a, '=');
	size_t n = eq ? (size_t)(eq - a) : strlen(a);
	if (n >= cap) {
		fprintf(stderr, "collector: unknown option '%s'\n", argv[*i]);
		return -1;
	}
	memcpy(name, a, n);
	name[n] = 0;
	if (eq) {
		*value = eq + 1;
	} else if (!strcmp(name, "help")) {
		*value = NULL;
	} else if (*i + 1 < argc) {
		*value = argv[++*i];
	} else {
		fprintf(stderr, "collector: --%s needs a value\n", name);
		return -1;
	}
	return 0;
}

int config_parse(node_config *c, int argc, char **argv)
{
	char name[64];
	const char *value;
	/* The config file first, so that flags given beside it override it. */
	for (int i = 1; i < argc; i++) {
		if (next_flag(argc, argv, &i, name, sizeof(name), &value))
			return -1;
		if (!strcmp(name, "help")) {
			config_usage(argv[0]);
			return 1;
		}
		if (!strcmp(name, "config") && read_config_file(c, value))
			return -1;
	}
	for (int i = 1; i < argc; i++) {
		next_flag(argc, argv, &i, name, sizeof(name), &value);
		if (strcmp(name, "config") && set_option(c, name, value))
			return -1;
	}
	return 0;
}
