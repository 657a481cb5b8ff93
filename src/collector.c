#include "collector.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/uuid.h"
#include "console_assets.h"
#include "h2/reactor_group.h"
#include "h2/server.h"
#include "io/pool.h"
#include "io/sock.h"
#include "io/tls.h"
#include "services/auth.h"
#include "services/backup.h"
#include "services/collector_api.h"
#include "services/handler.h"
#include "services/health.h"
#include "services/mesh.h"
#include "services/mesh_link.h"
#include "services/peer_dns.h"
#include "services/proxy.h"
#include "services/registry.h"
#include "services/svc.h"
#include "services/web_json.h"
#include "services/wf_engine.h"
#include "store/store.h"
#include "store/typepool.h"

extern const uint8_t api_descriptor_set[];
extern const size_t api_descriptor_set_len;

/* The health status and the log level are process-wide (health.h, log.h). */
static atomic_bool node_open;
static void stop_from_console(void *ctx, int64_t grace_ns);

/* A reactor's timer marks each turn of its loop (collector_alive). */
#define COLLECTOR_MAX_REACTORS 256
#define ALIVE_TICK_NS (250 * NS_PER_MS)
typedef struct alive_slot {
	timer t;
	reactor *r;
	_Atomic int64_t last_ns;
} alive_slot;

struct collector {
	collector_config cfg;
	char id[64];
	char address[80];
	int threads, pool_threads;
	pool *pool;
	tp_pool *types;
	store *store;
	uint8_t token_key[SVC_TOKEN_KEY_LEN];
	svc_env env; /* the services keep a pointer to it */
	method_table *methods;
	h2_server *server;
	reactor_group *group;
	mesh *mesh;
	mesh_driver *mesh_driver;
	backup_sched *backup_sched;
	wf_engine *worker;
	auth *auth;
	char backup_dir[PATH_MAX]; /* --backup-dir, resolved */
	char advertise[128];
	char **services;
	size_t nservices;
	sem_t stop;
	atomic_bool stop_asked, reload_asked;
	_Atomic int64_t grace_ns;  /* the shutdown's grace: -1, the settings' */
	tls_ctx *tls, *tls_client; /* the server's; the node's own client's (calls to nodes) */
	alive_slot alive[COLLECTOR_MAX_REACTORS];
	_Atomic size_t nalive;
};

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

void collector_config_defaults(collector_config *c)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->listen, sizeof(c->listen), "127.0.0.1:50051");
	snprintf(c->data, sizeof(c->data), "./data");
	snprintf(c->default_namespace, sizeof(c->default_namespace), "default");
	c->pool_queue = 1024;
	c->max_message_bytes = 4 * 1024 * 1024;
	c->log_level = COLLECTOR_LOG_INFO;
	c->grace_seconds = 10;
	c->peers_dns_interval = 30;
	c->auth = true;
	snprintf(c->auth_open, sizeof(c->auth_open), "health,reflection");

	/* The wire's defaults live with the wire (h2_server_opts_default), the quotas' with the
	 * registry: copied, not restated. */
	h2_server_opts w;
	h2_server_opts_default(&w);
	c->max_concurrent_streams = w.max_concurrent_streams;
	c->max_calls_per_connection = w.max_calls_per_conn;
	c->max_header_list_bytes = w.max_header_list_bytes;
	c->max_connections = w.max_conns;
	c->max_connections_per_peer = w.max_conns_per_peer;
	c->conn_buffer_bytes = w.conn_buffer_bytes;
	c->max_buffered_bytes = w.max_buffered_bytes;
	c->body_timeout = (uint32_t)(w.body_timeout / NS_PER_SEC);
	c->stream_send_buffer_bytes = w.stream_send_high_water;
	c->reset_burst = w.reset_burst;
	c->reset_rate = w.reset_rate;
	c->max_continuations = w.max_continuations;
	c->flood_burst = w.flood_burst;
	c->flood_rate = w.flood_rate;
	c->handshake_timeout = (uint32_t)(w.handshake_timeout / NS_PER_SEC);
	c->max_tls_handshakes = w.max_tls_handshakes;
	c->header_timeout = (uint32_t)(w.header_timeout / NS_PER_SEC);
	c->idle_timeout = (uint32_t)(w.idle_timeout / NS_PER_SEC);
	c->keepalive_time = (uint32_t)(w.keepalive_time / NS_PER_SEC);
	c->keepalive_timeout = (uint32_t)(w.keepalive_timeout / NS_PER_SEC);
	c->ping_min_interval = (uint32_t)(w.ping_min_interval / NS_PER_SEC);
	c->ping_max_strikes = w.ping_max_strikes;
	c->send_stall_timeout = (uint32_t)(w.send_stall_timeout / NS_PER_SEC);
	c->require_te_trailers = w.require_te_trailers;
	regquota_limits q;
	regquota_limits_default(&q);
	c->registry_max_files = q.files;
	c->registry_max_versions = q.versions;
	c->registry_max_namespace_bytes = q.ns_bytes;
	c->registry_max_namespaces = q.namespaces;
	c->registry_max_total_bytes = q.total_bytes;
}

static void wire_opts(const collector_config *c, h2_server_opts *w)
{
	/* Whatever the wire grows before collector_config does keeps its default. */
	h2_server_opts_default(w);
	w->max_message_bytes = c->max_message_bytes;
	w->max_concurrent_streams = c->max_concurrent_streams;
	w->max_calls_per_conn = c->max_calls_per_connection;
	w->max_header_list_bytes = c->max_header_list_bytes;
	w->max_conns = c->max_connections;
	w->max_conns_per_peer = c->max_connections_per_peer;
	w->conn_buffer_bytes = c->conn_buffer_bytes;
	w->max_buffered_bytes = c->max_buffered_bytes;
	w->body_timeout = (int64_t)c->body_timeout * NS_PER_SEC;
	w->stream_send_high_water = c->stream_send_buffer_bytes;
	w->reset_burst = c->reset_burst;
	w->reset_rate = c->reset_rate;
	w->max_continuations = c->max_continuations;
	w->flood_burst = c->flood_burst;
	w->flood_rate = c->flood_rate;
	w->handshake_timeout = (int64_t)c->handshake_timeout * NS_PER_SEC;
	w->max_tls_handshakes = c->max_tls_handshakes;
	w->header_timeout = (int64_t)c->header_timeout * NS_PER_SEC;
	w->idle_timeout = (int64_t)c->idle_timeout * NS_PER_SEC;
	w->keepalive_time = (int64_t)c->keepalive_time * NS_PER_SEC;
	w->keepalive_timeout = (int64_t)c->keepalive_timeout * NS_PER_SEC;
	w->ping_min_interval = (int64_t)c->ping_min_interval * NS_PER_SEC;
	w->ping_max_strikes = c->ping_max_strikes;
	w->send_stall_timeout = (int64_t)c->send_stall_timeout * NS_PER_SEC;
	w->require_te_trailers = c->require_te_trailers;
	w->http1 = !c->no_http1;
	w->cors_origins = c->cors_origin;
	w->assets = c->no_console ? NULL : console_assets;
	w->n_assets = c->no_console ? 0 : console_assets_count;
}

/* ---- liveness: each reactor's loop turns (collector_alive) ---- */

static void alive_tick(timer *t)
{
	alive_slot *a = (alive_slot *)((char *)t - offsetof(alive_slot, t));
	int64_t now = reactor_now(a->r);
	atomic_store(&a->last_ns, clock_now_ns());
	if (reactor_timer_arm(a->r, &a->t, now + ALIVE_TICK_NS, alive_tick))
		atomic_store(&a->last_ns, INT64_MAX); /* no timer: not judged */
}

static void alive_start(collector *c, reactor *r)
{
	size_t i = atomic_fetch_add(&c->nalive, 1);
	if (i >= COLLECTOR_MAX_REACTORS)
		return;
	alive_slot *a = &c->alive[i];
	a->r = r;
	alive_tick(&a->t);
}

static void alive_drain(collector *c, reactor *r)
{
	for (size_t i = 0; i < atomic_load(&c->nalive) && i < COLLECTOR_MAX_REACTORS; i++)
		if (c->alive[i].r == r) {
			reactor_timer_disarm(r, &c->alive[i].t);
			atomic_store(&c->alive[i].last_ns, INT64_MAX); /* stopping: not judged */
		}
}

bool collector_alive(collector *c, int64_t within_ns)
{
	int64_t now = clock_now_ns();
	size_t n = atomic_load(&c->nalive);
	for (size_t i = 0; i < n && i < COLLECTOR_MAX_REACTORS; i++) {
		int64_t last = atomic_load(&c->alive[i].last_ns);
		if (last != INT64_MAX && now - last > within_ns)
			return false;
	}
	return n > 0;
}

static int start_reactor(reactor *r, void *ctx)
{
	collector *c = ctx;
	alive_start(c, r);
	mesh_driver_start(c->mesh_driver, r);
	backup_sched_start(c->backup_sched, r);
	wf_engine_start(c->worker, r);
	return 0;
}

static void drain_reactor(reactor *r, void *ctx)
{
	collector *c = ctx;
	alive_drain(c, r);
	mesh_driver_drain(c->mesh_driver, r);
	backup_sched_drain(c->backup_sched, r);
	wf_engine_drain(c->worker, r);
	health_notify(r);
	proxy_reactor_drain(r); /* its outbound connections would keep the loop going */
}

static void exit_reactor(reactor *r, void *ctx)
{
	(void)ctx;
	proxy_reactor_exit(r);
}

static void count_service(const char *name, size_t len, void *arg)
{
	(void)name;
	(void)len;
	(*(size_t *)arg)++;
}

static void copy_service(const char *name, size_t len, void *arg)
{
	collector *c = arg;
	c->services[c->nservices++] = mem_strndup(name, len);
}

/* The settings a caller can get wrong, checked before anything is touched. */
static int check_settings(const collector_config *cfg, char *err, size_t cap)
{
	if (!store_name_valid(cfg->default_namespace) ||
	    store_ns_reserved(cfg->default_namespace)) {
		snprintf(err, cap,
			 "namespace: '%s' is not a valid namespace name (1 to 63 of "
			 "A-Z a-z 0-9 _ -, not system, repo, backups or files)",
			 cfg->default_namespace);
		return -EINVAL;
	}
	struct sockaddr_storage ss;
	socklen_t len;
	if (sock_parse_addr(cfg->listen, &ss, &len)) {
		snprintf(err, cap, "listen: cannot parse '%s' (want HOST:PORT)", cfg->listen);
		return -EINVAL;
	}
	/* Plaintext that the network can read and write, only when the operator says so. */
	if (!cfg->tls_cert[0] && !cfg->insecure && !sock_is_loopback((struct sockaddr *)&ss)) {
		snprintf(err, cap,
			 "listen: %s would serve plaintext to the network: give --tls-cert and "
			 "--tls-key, or --insecure to mean it",
			 cfg->listen);
		return -EINVAL;
	}
	char why[400];
	if (cfg->peers_dns[0] && peer_dns_check_name(cfg->peers_dns, why, sizeof(why))) {
		snprintf(err, cap, "peers-dns: %s", why);
		return -EINVAL;
	}
	if (cfg->dns_server[0] && peer_dns_check_server(cfg->dns_server, why, sizeof(why))) {
		snprintf(err, cap, "dns-server: %s", why);
		return -EINVAL;
	}
	if (cfg->peers_dns[0] && !cfg->peers_dns_interval) {
		snprintf(err, cap, "peers-dns-interval: at least 1 second");
		return -EINVAL;
	}
	if (cfg->io < COLLECTOR_IO_AUTO || cfg->io > COLLECTOR_IO_EPOLL) {
		snprintf(err, cap, "io: %d is not an enum collector_io", cfg->io);
		return -EINVAL;
	}
	return 0;
}

/* The mesh: the address told to peers, the links kept in system/links, --peer. */
static int mesh_build(collector *c, char *err, size_t cap)
{
	const collector_config *cfg = &c->cfg;
	char host_any[96];
	if (cfg->advertise[0])
		snprintf(c->advertise, sizeof(c->advertise), "%s", cfg->advertise);
	else if (!strncmp(c->address, "0.0.0.0:", 8) || !strncmp(c->address, "[::]:", 5)) {
		snprintf(host_any, sizeof(host_any), "%s", strrchr(c->address, ':') + 1);
		snprintf(c->advertise, sizeof(c->advertise), "127.0.0.1:%s", host_any);
		log_warn("mesh: listening on every address; peers are told %s (set --advertise)",
			 c->advertise);
	} else
		snprintf(c->advertise, sizeof(c->advertise), "%s", c->address);
	char list[sizeof(cfg->mesh_namespaces)];
	snprintf(list, sizeof(list), "%s", cfg->mesh_namespaces);
	const char *ns[64];
	size_t nns = 0;
	for (char *save, *t = strtok_r(list, ", ", &save); t && nns < 64;
	     t = strtok_r(NULL, ", ", &save))
		ns[nns++] = t;
	mesh_opts mo = {.self_id = c->id,
			.advertise = c->advertise,
			.namespaces = ns,
			.nns = nns,
			.max_outstanding = cfg->mesh_max_outstanding};
	c->mesh = mesh_new(&mo);
	c->mesh_driver = c->mesh ? mesh_driver_new(c->mesh, &c->env) : NULL;
	if (!c->mesh_driver) {
		snprintf(err, cap, "out of memory");
		return -ENOMEM;
	}
	c->env.mesh = c->mesh;
	mesh_set_services(c->mesh, handler_each_served, handler_served_generation, &c->env);
	int rc = mesh_links_load(c->mesh, &c->env);
	if (rc) {
		snprintf(err, cap, "cannot read the stored links: %s", store_err_msg());
		return rc;
	}
	if (cfg->peers_dns[0]) {
		const char *colon = strrchr(c->advertise, ':');
		mesh_driver_set_dns(c->mesh_driver, cfg->peers_dns, cfg->dns_server,
				    (uint16_t)atoi(colon ? colon + 1 : "0"),
				    (int64_t)cfg->peers_dns_interval * NS_PER_SEC);
	}
	for (int i = 0; i < cfg->npeers; i++) {
		struct sockaddr_storage ss;
		socklen_t len;
		if (sock_parse_addr(cfg->peers[i], &ss, &len)) {
			snprintf(err, cap, "peer: cannot parse '%s' (want HOST:PORT)",
				 cfg->peers[i]);
			return -EINVAL;
		}
		if ((rc = mesh_add_outbound(c->mesh, cfg->peers[i], NULL, 0, MESH_CONFIGURED))) {
			snprintf(err, cap, "peer: %s: %s", cfg->peers[i], strerror(-rc));
			return rc;
		}
	}
	return 0;
}

/* The TLS context, when the settings ask for one: its files are read now, so that a bad
 * one is the caller's error (-EINVAL) before anything else starts. */
static int tls_build(collector *c, char *err, size_t cap)
{
	const collector_config *cfg = &c->cfg;
	if (!cfg->tls_cert[0] && !cfg->tls_key[0] && !cfg->tls_client_ca[0]) {
		proxy_set_node_tls(NULL);
		proxy_set_node_credential(NULL);
		auth_free(c->auth);
		if (cfg->tls_peer_ca[0]) {
			snprintf(err, cap, "tls: --tls-peer-ca needs --tls-cert and --tls-key");
			return -EINVAL;
		}
		return 0;
	}
	tls_opts to = {.server = true,
		       .cert_file = cfg->tls_cert[0] ? cfg->tls_cert : NULL,
		       .key_file = cfg->tls_key[0] ? cfg->tls_key : NULL,
		       .ca_file = cfg->tls_client_ca[0] ? cfg->tls_client_ca : NULL,
		       .min_version = cfg->tls_min_version,
		       .alpn = cfg->no_http1 ? "h2" : "h2,http/1.1"};
	char why[400];
	if (tls_ctx_new(&to, &c->tls, why, sizeof(why))) {
		snprintf(err, cap, "tls: %s", why);
		return -EINVAL;
	}
	/* Calls to nodes (this one over loopback, peers) speak TLS when the node does: a
	 * mesh is TLS or plaintext throughout. They present the node's certificate. */
	const char *peer_ca = cfg->tls_peer_ca[0]     ? cfg->tls_peer_ca
			      : cfg->tls_client_ca[0] ? cfg->tls_client_ca
						      : NULL;
	tls_opts co = {.cert_file = to.cert_file,
		       .key_file = to.key_file,
		       .ca_file = peer_ca,
		       .verify_peer = peer_ca != NULL,
		       .min_version = cfg->tls_min_version,
		       .alpn = "h2"};
	if (tls_ctx_new(&co, &c->tls_client, why, sizeof(why))) {
		snprintf(err, cap, "tls (the node's own client): %s", why);
		return -EINVAL;
	}
	if (!peer_ca)
		log_warn("tls: calls to other nodes do not check their certificates (set "
			 "--tls-peer-ca)");
	proxy_set_node_tls(c->tls_client);
	return 0;
}

/* The limits of the worker: the flags', or their defaults. */
static size_t or_default(size_t v, size_t dflt) { return v ? v : dflt; }

static int worker_open(collector *c, char *err, size_t cap)
{
	const collector_config *cfg = &c->cfg;
	wf_limits l = {
		.max_active = or_default(cfg->workflow_max_active, 10000),
		.max_tasks = or_default(cfg->workflow_max_tasks, 256),
		.max_history = or_default(cfg->workflow_max_history, 10000),
		.max_running = or_default(cfg->workflow_max_running, 1024),
		.per_workflow = or_default(cfg->workflow_concurrency, 16),
		.max_defs = or_default(cfg->workflow_max_definitions, 10000),
		.task_timeout_ns = (int64_t)or_default(cfg->workflow_task_timeout, 60) * NS_PER_SEC,
		.retention_us = cfg->workflow_retention < 0
					? 0
					: (cfg->workflow_retention ? cfg->workflow_retention
								   : 30LL * 86400) *
						  1000000LL,
	};
	int rc = wf_engine_open(&c->env, &l, false, &c->worker, err, cap);
	c->env.worker = c->worker;
	return rc;
}

/* Everything but the reactors, in the order it is built; each step undone by
 * collector_free_parts. */
static int node_build(collector *c, char *err, size_t cap)
{
	const collector_config *cfg = &c->cfg;
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	if (cores < 1)
		cores = 1;
	c->threads = cfg->threads > 0 ? cfg->threads : (int)cores;
	c->pool_threads = cfg->pool_threads > 0 ? cfg->pool_threads : 2 * (int)cores;
	/* Listening sockets first, before any thread and before the data directory is
	 * touched, so that a bad address fails at once and port 0 resolves to one port that
	 * the services can name. */
	reactor_group_opts gopts = {.listen = cfg->listen,
				    .threads = c->threads,
				    .backlog = 4096,
				    .io = cfg->io == COLLECTOR_IO_EPOLL	  ? REACTOR_IO_EPOLL
					  : cfg->io == COLLECTOR_IO_URING ? REACTOR_IO_URING
									  : REACTOR_IO_AUTO,
				    .on_start = start_reactor,
				    .on_drain = drain_reactor,
				    .on_exit = exit_reactor,
				    .ctx = c};
	int rc = reactor_group_open(&gopts, &c->group, err, cap);
	if (rc)
		return rc;
	snprintf(c->address, sizeof(c->address), "%s", reactor_group_address(c->group));

	if ((rc = fs_mkdir_p(cfg->data))) {
		snprintf(err, cap, "cannot create data directory %s: %s", cfg->data, strerror(-rc));
		return rc;
	}
	if (cfg->id[0])
		snprintf(c->id, sizeof(c->id), "%s", cfg->id);
	else if ((rc = load_node_id(cfg->data, c->id, sizeof(c->id)))) {
		snprintf(err, cap, "cannot keep the node id in %s: %s", cfg->data, strerror(-rc));
		return rc;
	}
	c->pool = pool_new((size_t)c->pool_threads, (size_t)cfg->pool_queue);
	c->types = tp_new();
	if (!c->pool || !c->types) {
		snprintf(err, cap, "out of memory");
		return -ENOMEM;
	}
	if ((rc = tp_add_set(c->types, NULL, api_descriptor_set, api_descriptor_set_len))) {
		snprintf(err, cap, "the compiled-in descriptors do not load: %s", store_err_msg());
		return rc;
	}
	if ((rc = load_token_key(cfg->data, c->token_key))) {
		snprintf(err, cap, "cannot keep the token key in %s: %s", cfg->data, strerror(-rc));
		return rc;
	}
	store_options so = {.group_max = (size_t)cfg->store_group_max};
	if ((rc = store_open(cfg->data, &so, &c->store))) {
		snprintf(err, cap, "cannot open the store in %s: %s", cfg->data, store_err_msg());
		return rc;
	}
	c->env = (svc_env){.pool = c->pool,
			   .store = c->store,
			   .types = c->types,
			   .default_ns = cfg->default_namespace,
			   .endpoint = c->address,
			   .node_id = c->id,
			   .token_key = c->token_key,
			   .version = COLLECTOR_VERSION,
			   /* With auth on, the admin scope guards Stop and Reset. */
			   .admin = cfg->admin || cfg->auth,
			   .stop_node = stop_from_console,
			   .stop_ctx = c,
			   .started_ns = clock_now_ns(),
			   .max_message_bytes = cfg->max_message_bytes};
	regquota_limits quotas = {.files = cfg->registry_max_files,
				  .versions = cfg->registry_max_versions,
				  .ns_bytes = cfg->registry_max_namespace_bytes,
				  .namespaces = cfg->registry_max_namespaces,
				  .total_bytes = cfg->registry_max_total_bytes};
	if ((rc = registry_open(&c->env, &quotas, &c->env.registry))) {
		snprintf(err, cap, "cannot load the registry: %s", store_err_msg());
		return rc;
	}
	if ((rc = mesh_build(c, err, cap)))
		return rc;
	if (cfg->backup_dir[0]) {
		/* Resolved once: dest_path is compared with the real path, links and all. */
		if ((rc = fs_mkdir_p(cfg->backup_dir)) ||
		    !realpath(cfg->backup_dir, c->backup_dir)) {
			rc = rc ? rc : -errno;
			snprintf(err, cap, "--backup-dir %s: %s", cfg->backup_dir, strerror(-rc));
			return rc;
		}
		c->env.backup_dir = c->backup_dir;
	}
	backup_sweep(&c->env);
	c->backup_sched = backup_sched_new(&c->env);
	if (!c->backup_sched) {
		snprintf(err, cap, "out of memory");
		return -ENOMEM;
	}
	auth_opts ao = {.on = cfg->auth,
			.data_dir = cfg->data,
			.admin_token_file = cfg->admin_token_file[0] ? cfg->admin_token_file : NULL,
			.mesh_token_file = cfg->mesh_token_file[0] ? cfg->mesh_token_file : NULL};
	if ((rc = auth_open(&c->env, &ao, &c->auth, err, cap)))
		return rc;
	c->env.auth = c->auth;
	c->env.auth_open = (strstr(cfg->auth_open, "health") ? SVC_OPEN_HEALTH : 0) |
			   (strstr(cfg->auth_open, "reflection") ? SVC_OPEN_REFLECTION : 0);
	proxy_set_node_credential(auth_node_credential(c->auth));
	if ((rc = worker_open(c, err, cap)))
		return rc;
	c->methods = method_table_new();
	c->env.methods = c->methods;
	if (!c->methods || collector_api_register_all(c->methods, &c->env) ||
	    registry_add_node_services(c->env.registry, c->methods)) {
		snprintf(err, cap, "cannot build the method table");
		return -ENOMEM;
	}
	size_t n = 0;
	method_table_each_service(c->methods, count_service, &n);
	c->services = mem_calloc(n + 1, sizeof(*c->services));
	if (c->services)
		method_table_each_service(c->methods, copy_service, c);
	bool named = c->services != NULL;
	for (size_t i = 0; named && i < n; i++)
		named = c->services[i] != NULL;
	h2_server_opts opts;
	wire_opts(cfg, &opts);
	opts.tls = c->tls;
	c->server = named ? h2_server_new(c->methods, &opts) : NULL;
	if (!c->server) {
		snprintf(err, cap, "out of memory");
		return -ENOMEM;
	}
	h2_server_set_pool(c->server, c->pool);
	if (!cfg->no_validation)
		h2_server_set_gate(c->server, registry_gate, c->env.registry);
	h2_server_set_auth(c->server, auth_check, c->auth);
	/* Registered services served by other processes (handler_endpoint). */
	h2_server_set_fallback(c->server, handler_fallback, &c->env);
	h2_web_hooks web;
	web_json_hooks(&c->env, &web);
	h2_server_set_web(c->server, &web);
	return 0;
}

/* The graceful shutdown (collector.h, collector_serve); the group's reactors end once
 * their connections and their pool jobs are gone. */
static void node_shut_down(collector *c)
{
	if (!c->group)
		return;
	int64_t grace = atomic_load(&c->grace_ns);
	if (grace < 0)
		grace = (int64_t)c->cfg.grace_seconds * NS_PER_SEC;
	log_info("stopping: GOAWAY, %lld ms grace for calls in flight",
		 (long long)(grace / 1000000));
	health_set_serving(false);
	reactor_group_stop(c->group, grace);
	reactor_group_free(c->group);
	c->group = NULL;
	log_info("stopped");
}

static void collector_free_parts(collector *c)
{
	reactor_group_free(c->group);
	pool_free(c->pool);
	registry_free(c->env.registry);
	mesh_driver_free(c->mesh_driver);
	backup_sched_free(c->backup_sched);
	wf_engine_free(c->worker);
	mesh_free(c->mesh);
	store_close(c->store);
	tp_free(c->types);
	h2_server_free(c->server);
	proxy_set_node_tls(NULL);
	proxy_set_node_credential(NULL);
	auth_free(c->auth);
	tls_ctx_free(c->tls);
	tls_ctx_free(c->tls_client);
	method_table_free(c->methods);
	for (size_t i = 0; i < c->nservices; i++)
		mem_free(c->services[i]);
	mem_free(c->services);
	sem_destroy(&c->stop);
	mem_free(c);
	atomic_store(&node_open, false);
}

int collector_open(const collector_config *cfg, collector **out, char *err, size_t cap)
{
	*out = NULL;
	if (atomic_exchange(&node_open, true)) {
		snprintf(err, cap, "another node is open in this process");
		return -EBUSY;
	}
	collector *c = mem_calloc(1, sizeof(*c));
	if (!c) {
		atomic_store(&node_open, false);
		snprintf(err, cap, "out of memory");
		return -ENOMEM;
	}
	c->cfg = *cfg;
	atomic_store(&c->grace_ns, -1);
	sem_init(&c->stop, 0, 0);
	log_set_level((enum log_level)cfg->log_level);
	health_set_serving(true);

	/* Every thread started from here on (reactors, the pool, the store's writers, and
	 * those they start) inherits this mask: the application's signals reach its own
	 * threads. Faults stay deliverable, or they would kill without a report. */
	static const int faults[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS};
	sigset_t block, saved;
	sigfillset(&block);
	for (size_t i = 0; i < sizeof(faults) / sizeof(faults[0]); i++)
		sigdelset(&block, faults[i]);
	pthread_sigmask(SIG_BLOCK, &block, &saved);
	int rc = check_settings(cfg, err, cap);
	if (!rc)
		rc = tls_build(c, err, cap);
	if (!rc) {
		rc = node_build(c, err, cap);
		if (!rc)
			rc = reactor_group_start(c->group, c->server, err, cap);
		/* -EINVAL is kept for the settings above, the caller's to fix. */
		if (rc == -EINVAL)
			rc = -EIO;
	}
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
	if (rc) {
		collector_free_parts(c);
		return rc;
	}
	log_info("serving on %s with %d reactor(s) on %s, pool %d threads / queue %d", c->address,
		 c->threads, reactor_group_io(c->group) == REACTOR_IO_EPOLL ? "epoll" : "io_uring",
		 c->pool_threads, cfg->pool_queue);
	*out = c;
	return 0;
}

int collector_serve(collector *c)
{
	for (;;) {
		while (sem_wait(&c->stop) && errno == EINTR)
			;
		if (atomic_load(&c->stop_asked))
			break;
		if (atomic_exchange(&c->reload_asked, false) && c->tls) {
			char why[400];
			if (tls_ctx_reload(c->tls, why, sizeof(why)) ||
			    tls_ctx_reload(c->tls_client, why, sizeof(why)))
				log_error(
					"tls: the certificate was not reloaded, the old one stays: %s",
					why);
			else
				log_info("tls: certificate, key and client CA read again");
		}
	}
	node_shut_down(c);
	return 0;
}

void collector_reload(collector *c)
{
	atomic_store(&c->reload_asked, true);
	sem_post(&c->stop);
}

/* The console's Stop (svc_env.stop_node): as collector_stop, with its own grace. */
static void stop_from_console(void *ctx, int64_t grace_ns)
{
	collector *c = ctx;
	atomic_store(&c->grace_ns, grace_ns);
	collector_stop(c);
}

void collector_stop(collector *c)
{
	if (!atomic_exchange(&c->stop_asked, true))
		sem_post(&c->stop);
}

void collector_close(collector *c)
{
	if (!c)
		return;
	node_shut_down(c);
	collector_free_parts(c);
}

const char *collector_address(const collector *c) { return c->address; }
const char *collector_id(const collector *c) { return c->id; }

const char *collector_service(const collector *c, size_t i)
{
	return i < c->nservices ? c->services[i] : NULL;
}

const char *collector_version(void) { return COLLECTOR_VERSION; }
