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

#define DRAIN_CHECK_NS (50 * NS_PER_MS)

typedef struct reactor_slot {
	pthread_t thread;
	int listen_fd;
	h2_server *server;
	reactor *r;
	h2_endpoint *ep;
	int err;
	sem_t *ready;
	reactor_task shutdown_task;
	timer drain_timer;
	int64_t grace_deadline;
	bool closing_calls;
} reactor_slot;

static int grace_ns_cfg;

static void drain_check(timer *t)
{
	reactor_slot *s = (reactor_slot *)((char *)t - offsetof(reactor_slot, drain_timer));
	int64_t now = reactor_now(s->r);
	if (!s->closing_calls &&
	    (h2_endpoint_active_calls(s->ep) == 0 || now >= s->grace_deadline)) {
		/* Grace is over (or nothing is left): end what remains. */
		s->closing_calls = true;
		h2_endpoint_close_all(s->ep);
	}
	/* Pool jobs still out would complete onto a freed reactor: wait for them always. */
	bool conns_gone = h2_endpoint_conn_count(s->ep) == 0 ||
			  now >= s->grace_deadline + 2 * NS_PER_SEC;
	if (conns_gone && reactor_jobs_pending(s->r) == 0) {
		reactor_stop(s->r);
		return;
	}
	reactor_timer_arm(s->r, t, now + DRAIN_CHECK_NS, drain_check);
}

static void begin_shutdown(reactor_task *t)
{
	reactor_slot *s = (reactor_slot *)((char *)t - offsetof(reactor_slot, shutdown_task));
	reactor_close_listeners(s->r);
	health_notify(s->r);
	h2_endpoint_goaway(s->ep);
	s->grace_deadline = reactor_now(s->r) + (int64_t)grace_ns_cfg * NS_PER_SEC;
	reactor_timer_arm(s->r, &s->drain_timer, reactor_now(s->r) + DRAIN_CHECK_NS, drain_check);
}

static void *reactor_main(void *arg)
{
	reactor_slot *s = arg;
	s->r = reactor_new(&s->err);
	if (s->r) {
		s->ep = h2_endpoint_new(s->server, s->r);
		if (!s->ep)
			s->err = -ENOMEM;
		else
			s->err = reactor_listen(s->r, s->listen_fd, &h2_endpoint_listener_ops, s->ep);
	}
	sem_post(s->ready);
	if (s->err) {
		h2_endpoint_free(s->ep);
		reactor_free(s->r);
		return NULL;
	}
	int rc = reactor_run(s->r);
	if (rc < 0)
		log_error("reactor stopped: %s", strerror(-rc));
	h2_endpoint_free(s->ep);
	reactor_free(s->r);
	return NULL;
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

static const char *io_uring_hint(int err)
{
	if (err == -EPERM || err == -ENOSYS || err == -EACCES)
		return " (io_uring is disabled here: check sysctl kernel.io_uring_disabled, or the "
		       "container's seccomp profile)";
	return "";
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
	struct sockaddr_storage ss;
	socklen_t slen;
	if (sock_parse_addr(cfg->listen, &ss, &slen)) {
		fprintf(stderr, "collector: --listen: cannot parse '%s' (want HOST:PORT)\n",
			cfg->listen);
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
	reactor_slot *slots = calloc((size_t)nthreads, sizeof(*slots));
	for (int i = 0; i < nthreads; i++) {
		int fd = sock_listen((struct sockaddr *)&ss, slen, 4096);
		if (fd < 0) {
			fprintf(stderr, "collector: cannot listen on %s: %s\n", cfg->listen,
				strerror(-fd));
			return 1;
		}
		if (i == 0 && sock_local_port(fd) > 0) {
			int port = sock_local_port(fd);
			if (ss.ss_family == AF_INET6)
				((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)port);
			else
				((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)port);
		}
		slots[i].listen_fd = fd;
	}
	char addr[80];
	sock_format_addr((struct sockaddr *)&ss, addr, sizeof(addr));

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

	grace_ns_cfg = cfg->grace_seconds;
	sem_t ready;
	sem_init(&ready, 0, 0);
	int failed = 0, started = 0;
	for (int i = 0; i < nthreads; i++) {
		slots[i].server = server;
		slots[i].ready = &ready;
		if (pthread_create(&slots[i].thread, NULL, reactor_main, &slots[i])) {
			failed = -EAGAIN;
			close(slots[i].listen_fd);
			break;
		}
		started++;
		sem_wait(&ready);
		if (slots[i].err && !failed)
			failed = slots[i].err;
	}
	if (failed) {
		fprintf(stderr, "collector: cannot start a reactor: %s%s\n", strerror(-failed),
			io_uring_hint(failed));
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
	for (int i = 0; i < started; i++) {
		if (slots[i].err)
			continue;
		slots[i].shutdown_task.fn = begin_shutdown;
		reactor_post(slots[i].r, &slots[i].shutdown_task);
	}
	for (int i = 0; i < started; i++)
		pthread_join(slots[i].thread, NULL);
	sem_destroy(&ready);
	pool_free(blocking);
	registry_free(env.registry);
	store_close(st);
	typepool_free(types);
	h2_server_free(server);
	method_table_free(methods);
	free(slots);
	log_info("stopped");
	return failed ? 1 : 0;
}
