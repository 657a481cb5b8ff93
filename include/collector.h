/* libcollector: a Collector node inside another program.
 *
 *   collector_config cfg;
 *   collector_config_defaults(&cfg);
 *   snprintf(cfg.listen, sizeof(cfg.listen), "127.0.0.1:0");
 *   collector *node;
 *   char err[256];
 *   if (collector_open(&cfg, &node, err, sizeof(err)) == 0) {
 *           printf("serving on %s\n", collector_address(node));
 *           collector_serve(node);  // until collector_stop, from a signal handler or a thread
 *           collector_close(node);
 *   }
 *
 * The node is the `collector` program's (README): the same services, data directory
 * layout, limits and graceful shutdown. It runs its own threads (reactors, a blocking
 * pool, storage writers) with the process's asynchronous signals blocked, so that those
 * reach the application's threads. One node at a time per process: the health status
 * and the log level are process-wide. Link with `pkg-config --cflags --libs collector`. */
#ifndef COLLECTOR_H
#define COLLECTOR_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct collector collector;

enum collector_log_level {
	COLLECTOR_LOG_ERROR,
	COLLECTOR_LOG_WARN,
	COLLECTOR_LOG_INFO,
	COLLECTOR_LOG_DEBUG,
};

/* The reactors' I/O backend (`--io`): io_uring by default; epoll where io_uring is refused
 * (containers' seccomp profiles, sysctl kernel.io_uring_disabled). AUTO tries io_uring and
 * falls back to epoll when the kernel refuses it, saying so in the log. */
enum collector_io {
	COLLECTOR_IO_AUTO,
	COLLECTOR_IO_URING,
	COLLECTOR_IO_EPOLL,
};

/* The node's settings; each field is the `collector` flag of the same name (README,
 * Running and Security): `--max-calls-per-connection` is max_calls_per_connection, and so
 * on. Start from collector_config_defaults. Times are whole seconds; 0 turns a timeout or
 * a cap off where the README says so. */
typedef struct collector_config {
	char listen[128];	     /* HOST:PORT; port 0 picks a free port */
	char data[512];		     /* data directory, created when missing */
	char default_namespace[128]; /* `--namespace` */
	char id[64];		     /* node id; empty: a UUIDv7 made once, kept in data */
	int threads;		     /* reactors; 0: one per core */
	int pool_threads;	     /* blocking pool threads; 0: two per core */
	int pool_queue;		     /* blocking pool queue bound */
	int store_group_max;	     /* write requests per transaction; 0: all queued */
	size_t max_message_bytes;    /* largest request or response message */
	bool no_validation;	     /* calls are not checked against the registry */
	bool admin;		     /* the console's Stop and Reset are allowed */
	bool insecure;		     /* plaintext on an address other than the loopback */
	bool no_http1;		     /* HTTP/1.1 (curl, browsers, probes) not on the port */
	bool no_console;	     /* GET / answers 404: no web console */
	char cors_origin[512];	     /* origins allowed to call from a browser, comma-separated */
	int log_level;		     /* enum collector_log_level */
	int grace_seconds;	     /* for calls in flight when the node stops */

	/* The wire's limits and timeouts (README, Security). */
	uint32_t max_concurrent_streams;
	uint32_t max_calls_per_connection;
	uint32_t max_header_list_bytes;
	size_t max_connections;
	size_t max_connections_per_peer;
	size_t conn_buffer_bytes;
	size_t max_buffered_bytes;
	uint32_t body_timeout;
	size_t stream_send_buffer_bytes;
	uint32_t reset_burst;
	uint32_t reset_rate;
	uint32_t max_continuations;
	uint32_t flood_burst;
	uint32_t flood_rate;
	uint32_t handshake_timeout;
	uint32_t max_tls_handshakes; /* per reactor, in progress */
	uint32_t header_timeout;
	uint32_t idle_timeout;
	uint32_t keepalive_time;
	uint32_t keepalive_timeout;
	uint32_t ping_min_interval;
	uint32_t ping_max_strikes;
	uint32_t send_stall_timeout;
	bool require_te_trailers;

	/* Peers found by DNS (README, Mesh): SRV records _grpc._tcp.NAME, else NAME's A and
	 * AAAA records with the node's own port, resolved again every interval. */
	char peers_dns[256];	     /* `--peers-dns NAME`; empty: no discovery */
	uint32_t peers_dns_interval; /* seconds between two resolutions */
	char dns_server[128];	     /* `--dns-server IP:PORT`; empty: resolv.conf's */

	/* The registry's quotas (README, Registry). */
	size_t registry_max_files;
	size_t registry_max_versions;
	size_t registry_max_namespace_bytes;
	size_t registry_max_namespaces;
	size_t registry_max_total_bytes;

	/* TLS (README, Security): with a certificate, every connection is TLS (ALPN h2). */
	char tls_cert[512];	 /* PEM chain */
	char tls_key[512];	 /* PEM private key */
	char tls_client_ca[512]; /* mTLS: clients must present a certificate it signed */
	char tls_peer_ca[512];	 /* the node's own client: the CA that signs other nodes */
	int tls_min_version;	 /* 12 or 13 */

	/* The mesh (README, Mesh). */
#define COLLECTOR_PEERS_MAX 16
	char peers[COLLECTOR_PEERS_MAX][128]; /* `--peer`, repeatable: linked at start */
	int npeers;
	char advertise[128];	     /* host:port peers reach this node at; "": the listener's */
	char mesh_namespaces[512];   /* comma-separated namespaces shared; "": every one */
	size_t mesh_max_outstanding; /* forwarded calls in flight per peer; 0: 1024 */

	/* Backups (README, Backups): the directory below which BackupCollection's dest_path
	 * may name a directory; "": dest_path must be empty. */
	char backup_dir[512];

	/* The worker (README, Workflows); 0 takes the default. */
	size_t workflow_max_active;	 /* workflows running at once; 10000 */
	size_t workflow_max_tasks;	 /* tasks per definition; 256 */
	size_t workflow_max_history;	 /* executions kept per workflow; 10000 */
	size_t workflow_max_running;	 /* task calls in flight on the node; 1024 */
	size_t workflow_concurrency;	 /* task calls in flight per workflow; 16 */
	size_t workflow_max_definitions; /* definitions and continuations; 10000 */
	uint32_t workflow_task_timeout;	 /* seconds a task call may take; 60 */
	/* seconds an ended workflow is kept; 0: the default (30 days); -1: for ever */
	int64_t workflow_retention;
	/* Who may do what (README, Security). */
	bool auth;		    /* `--auth on|off`; on by default */
	char admin_token_file[512]; /* the first admin token, read or made there */
	char mesh_token_file[512];  /* the credential of calls between nodes */
	char auth_open[128];	    /* services open without a token: "health,reflection" */
	int io;			    /* enum collector_io: `--io auto|uring|epoll` */
} collector_config;

/* Thread and signal safe (a SIGHUP handler may call it): asks the node to read its TLS
 * certificate, key and client CA again; connections made after it use them, those running
 * keep theirs. collector_serve does the work and logs the outcome. */
void collector_reload(collector *c);

/* The defaults of the `collector` program. */
void collector_config_defaults(collector_config *cfg);

/* Opens the data directory, the store and the registry, binds the listeners and starts
 * the reactors: the node serves calls when this returns 0. cfg is copied. On failure,
 * nothing is left running or open, *out is NULL, err[0..cap) says why, and the return is
 * -EINVAL for a setting that is wrong (address, namespace), -EBUSY while another node is
 * open in this process, or another negative errno. */
int collector_open(const collector_config *cfg, collector **out, char *err, size_t cap);

/* Blocks until collector_stop, then shuts down gracefully: health turns NOT_SERVING, every
 * connection gets GOAWAY, calls in flight get grace_seconds, the blocking pool's work
 * still out completes. Returns 0. Call it once, from one thread. */
int collector_serve(collector *c);

/* Makes collector_serve begin the shutdown. Thread-safe and async-signal-safe (a SIGTERM
 * handler may call it); later calls do nothing. */
void collector_stop(collector *c);

/* Frees the node after collector_serve returned; a node that was never served is shut
 * down first, as collector_serve does. NULL is ignored. */
void collector_close(collector *c);

/* Whether every reactor's loop turned within the last within_ns (a stuck reactor makes it
 * false; so does a node not serving yet). Thread-safe: for a watchdog. */
bool collector_alive(collector *c, int64_t within_ns);

/* HOST:PORT the node listens on, port 0 resolved. Valid until collector_close. */
const char *collector_address(const collector *c);
/* The node id (cfg.id, or the one kept in the data directory). */
const char *collector_id(const collector *c);
/* The i-th gRPC service the node serves (full name), NULL past the last. */
const char *collector_service(const collector *c, size_t i);
/* The library's version, "MAJOR.MINOR.PATCH". */
const char *collector_version(void);

#ifdef __cplusplus
}
#endif

#endif
