#include "node.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdbool.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "h2/reactor_group.h"
#include "h2/server.h"
#include "io/clock.h"
#include "io/log.h"
#include "io/pool.h"
#include "io/sock.h"
#include "io/uuid.h"
#include "services/collection.h"
#include "services/collector_api.h"
#include "services/files_svc.h"
#include "services/health.h"
#include "services/reflection.h"
#include "services/registry.h"
#include "services/repo.h"
#include "store/store.h"
#include "store/typepool.h"

extern const uint8_t api_descriptor_set[];
extern const size_t api_descriptor_set_len;

static void drain_health(reactor *r, void *ctx)
{
	(void)ctx;
	health_notify(r);
}

/* Reads DIR/node-id, or makes and keeps a new UUIDv7 there. */
static int load_node_id(const char *dir, char *id, size_t cap)
{
	char path[600];
	snprintf(path, sizeof(path), "%s/node-id", dir);
	FILE *f = fopen(path, "r");
	if (f) {
		char *ok = fgets(id, (int)cap, f);
		fclose(f);
		if (ok) {
			id[strcspn(id, "\r\n")] = 0;
			if (*id)
				return 0;
		}
	}
	char fresh[UUID_STR_LEN];
	int rc = uuid7_make(fresh);
	if (rc)
		return rc;
	snprintf(id, cap, "%s", fresh);
	char tmp[620];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (!f)
		return -errno;
	fprintf(f, "%s\n", id);
	if (fflush(f) || fsync(fileno(f))) {
		fclose(f);
		return -EIO;
	}
	fclose(f);
	return rename(tmp, path) ? -errno : 0;
}

/* DIR/token-key: 16 random bytes made once, that authenticate page tokens, so that a
 * token stays valid across restarts and cannot be forged by a client. */
static int load_token_key(const char *dir, uint8_t key[SVC_TOKEN_KEY_LEN])
{
	char path[600];
	snprintf(path, sizeof(path), "%s/token-key", dir);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		ssize_t n = read(fd, key, SVC_TOKEN_KEY_LEN);
		close(fd);
		if (n == SVC_TOKEN_KEY_LEN)
			return 0;
	}
	if (getrandom(key, SVC_TOKEN_KEY_LEN, 0) != SVC_TOKEN_KEY_LEN)
		return -EIO;
	char tmp[620];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	bool ok = write(fd, key, SVC_TOKEN_KEY_LEN) == SVC_TOKEN_KEY_LEN && fsync(fd) == 0;
	close(fd);
	if (!ok)
		return -EIO;
	return rename(tmp, path) ? -errno : 0;
}

static int make_dirs(const char *path)
{
	char p[512];
	snprintf(p, sizeof(p), "%s", path);
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = 0;
		if (mkdir(p, 0755) && errno != EEXIST)
			return -errno;
		*s = '/';
	}
	if (mkdir(p, 0755) && errno != EEXIST)
		return -errno;
	return 0;
}

static void print_service(const char *name, size_t len, void *arg)
{
	int *first = arg;
	printf("%s%.*s", *first ? "" : ", ", (int)len, name);
	*first = 0;
}

int node_run(const node_config *cfg)
{
	/* Every thread (pool, reactors) inherits this mask: signals reach only the sigwait
	 * below, and a second SIGTERM during the grace period stays pending. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	int rc = make_dirs(cfg->data);
	if (rc) {
		fprintf(stderr, "collector: cannot create data directory %s: %s\n", cfg->data,
			strerror(-rc));
		return 1;
	}
	char id[64];
	if (cfg->id[0])
		snprintf(id, sizeof(id), "%s", cfg->id);
	else if ((rc = load_node_id(cfg->data, id, sizeof(id)))) {
		fprintf(stderr, "collector: cannot keep the node id in %s: %s\n", cfg->data,
			strerror(-rc));
		return 1;
	}
	if (!store_name_valid(cfg->ns) || store_ns_reserved(cfg->ns)) {
		fprintf(stderr, "collector: --namespace: '%s' is not a valid namespace name (1 to 63 "
			"of A-Z a-z 0-9 _ -, not system, repo, backups or files)\n", cfg->ns);
		return 2;
	}
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	int nthreads = cfg->threads > 0 ? cfg->threads : (int)(cores > 0 ? cores : 1);
	int pool_threads = cfg->pool_threads > 0 ? cfg->pool_threads : 2 * (int)(cores > 0 ? cores : 1);

	pool *blocking = pool_new((size_t)pool_threads, (size_t)cfg->pool_queue);
	typepool *types = typepool_new();
	if (!blocking || !types) {
		fprintf(stderr, "collector: out of memory\n");
		return 1;
	}
	char *err = NULL;
	if (typepool_add_set(types, NULL, api_descriptor_set, api_descriptor_set_len, &err)) {
		fprintf(stderr, "collector: the compiled-in descriptors do not load: %s\n",
			err ? err : "out of memory");
		return 1;
	}
	uint8_t token_key[SVC_TOKEN_KEY_LEN];
	if ((rc = load_token_key(cfg->data, token_key))) {
		fprintf(stderr, "collector: cannot keep the token key in %s: %s\n", cfg->data,
			strerror(-rc));
		return 1;
	}
	store *st = NULL;
	store_options so = {.group_max = (size_t)cfg->store_group_max};
	if ((rc = store_open(cfg->data, &so, &st))) {
		fprintf(stderr, "collector: cannot open the store in %s: %s\n", cfg->data,
			store_errmsg());
		return 1;
	}

	/* Listening sockets are made here, before any thread, so that a bad address fails
	 * at once and port 0 resolves to one port shared by every reactor. */
	reactor_group_opts gopts = {.listen = cfg->listen,
				    .threads = nthreads,
				    .backlog = 4096,
				    .on_drain = drain_health};
	reactor_group *group = NULL;
	char gerr[256];
	rc = reactor_group_open(&gopts, &group, gerr, sizeof(gerr));
	if (rc) {
		fprintf(stderr, "collector: --listen: %s\n", gerr);
		return rc == -EINVAL ? 2 : 1;
	}
	const char *addr = reactor_group_address(group);

	svc_env env = {.pool = blocking,
		       .store = st,
		       .types = types,
		       .default_ns = cfg->ns,
		       .endpoint = addr,
		       .token_key = token_key,
		       .max_message_bytes = cfg->max_message_bytes};
	if ((rc = registry_open(&env, &cfg->registry, &env.registry))) {
		fprintf(stderr, "collector: cannot load the registry: %s\n", store_errmsg());
		return 1;
	}
	method_table *methods = method_table_new();
	if (!methods || collector_api_register_all(methods, &env) ||
	    registry_add_node_services(env.registry, methods)) {
		fprintf(stderr, "collector: cannot build the method table\n");
		return 1;
	}
	h2_server_opts opts = cfg->wire;
	opts.max_message_bytes = cfg->max_message_bytes;
	h2_server *server = h2_server_new(methods, &opts);
	if (!server) {
		fprintf(stderr, "collector: out of memory\n");
		return 1;
	}
	h2_server_set_pool(server, blocking);
	if (!cfg->no_validation)
		h2_server_set_gate(server, registry_gate, env.registry);

	int failed = reactor_group_start(group, server, gerr, sizeof(gerr));
	if (failed) {
		fprintf(stderr, "collector: %s\n", gerr);
	} else {
		printf("collector %s\nid %s\nnamespace %s\nvalidation %s\nlistening on %s\n"
		       "services: ",
		       "0.1.0", id, cfg->ns, cfg->no_validation ? "off" : "on", addr);
		int first = 1;
		method_table_each_service(methods, print_service, &first);
		printf("\n");
		fflush(stdout);
		log_info("serving on %s with %d reactor(s), pool %d threads / queue %d", addr,
			 nthreads, pool_threads, cfg->pool_queue);
		int sig = 0;
		sigwait(&sigs, &sig);
		log_info("signal %d: GOAWAY, %d s grace for calls in flight", sig, cfg->grace_seconds);
	}
	health_set_serving(false);
	reactor_group_stop(group, (int64_t)cfg->grace_seconds * NS_PER_SEC);
	reactor_group_free(group);
	pool_free(blocking);
	registry_free(env.registry);
	store_close(st);
	typepool_free(types);
	h2_server_free(server);
	method_table_free(methods);
	log_info("stopped");
	return failed ? 1 : 0;
}
