#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "services/regquota.h"

/* The wire's limits: numbers with a range, printed in --help with their defaults. */
enum limit_type { L_SIZE, L_U32, L_BOOL };
typedef struct limit_flag {
	const char *name;
	enum limit_type type;
	size_t offset; /* in collector_config */
	long min, max;
	const char *help;
} limit_flag;

#define CFG(f) offsetof(collector_config, f)
static const limit_flag limits[] = {
	{"max-concurrent-streams", L_U32, CFG(max_concurrent_streams), 1, 1 << 20,
	 "SETTINGS_MAX_CONCURRENT_STREAMS per connection"},
	{"max-calls-per-connection", L_U32, CFG(max_calls_per_connection), 1, 1 << 20,
	 "calls alive per connection, reset ones whose work still runs included;\n"
	 "over it new calls get RESOURCE_EXHAUSTED"},
	{"max-header-list-bytes", L_U32, CFG(max_header_list_bytes), 1024, 1 << 24,
	 "SETTINGS_MAX_HEADER_LIST_SIZE, enforced (name + value + 32 per field);\n"
	 "over it the call gets RESOURCE_EXHAUSTED"},
	{"max-connections", L_SIZE, CFG(max_connections), 0, 10000000,
	 "connections in total (0: no cap); over it: GOAWAY ENHANCE_YOUR_CALM"},
	{"max-connections-per-peer", L_SIZE, CFG(max_connections_per_peer), 0, 10000000,
	 "connections from one IP address (0: no cap)"},
	{"conn-buffer-bytes", L_SIZE, CFG(conn_buffer_bytes), 65536, 1L << 32,
	 "bytes buffered per connection for receiving, and again for sending\n"
	 "(raised to one message + 64 KiB if smaller)"},
	{"max-buffered-bytes", L_SIZE, CFG(max_buffered_bytes), 0, 1L << 40,
	 "message bytes buffered by all connections together, both directions\n"
	 "(0: no budget; default a sixteenth of RAM within 64 MiB..1 GiB); over it\n"
	 "big messages get RESOURCE_EXHAUSTED and the connections holding the most\n"
	 "without progress are closed"},
	{"body-timeout", L_U32, CFG(body_timeout), 0, 3600,
	 "seconds a request message may stop arriving part way before its call\n"
	 "is ended (0: never)"},
	{"stream-send-buffer-bytes", L_SIZE, CFG(stream_send_buffer_bytes), 4096, 1L << 30,
	 "response bytes buffered per call before its handler is told to wait"},
	{"reset-burst", L_U32, CFG(reset_burst), 1, 1 << 30,
	 "RST_STREAM frames a peer may send at once (rapid reset)"},
	{"reset-rate", L_U32, CFG(reset_rate), 1, 1 << 30,
	 "RST_STREAM frames per second on average; over it: GOAWAY"},
	{"max-continuations", L_U32, CFG(max_continuations), 1, 1 << 20,
	 "CONTINUATION frames per header block; over it: GOAWAY"},
	{"flood-burst", L_U32, CFG(flood_burst), 1, 1 << 30,
	 "frames that carry no request (empty DATA, PRIORITY, SETTINGS, PING,\n"
	 "unknown types) a peer may send at once"},
	{"flood-rate", L_U32, CFG(flood_rate), 0, 1 << 30,
	 "such frames per second on average (0: no limit); over it:\n"
	 "GOAWAY ENHANCE_YOUR_CALM"},
	{"handshake-timeout", L_U32, CFG(handshake_timeout), 0, 3600,
	 "seconds for the client preface, its SETTINGS and the ACK of ours"},
	{"max-tls-handshakes", L_U32, CFG(max_tls_handshakes), 0, 1 << 20,
	 "TLS handshakes in progress per reactor; beyond it a new connection\n"
	 "is closed at once (0: no bound)"},
	{"header-timeout", L_U32, CFG(header_timeout), 0, 3600,
	 "seconds for a header block to complete (HEADERS to END_HEADERS)"},
	{"idle-timeout", L_U32, CFG(idle_timeout), 0, 30 * 86400,
	 "seconds without calls before GOAWAY and close (0: never)"},
	{"keepalive-time", L_U32, CFG(keepalive_time), 0, 30 * 86400,
	 "seconds of silence from the peer before we PING it (0: never)"},
	{"keepalive-timeout", L_U32, CFG(keepalive_timeout), 1, 3600,
	 "seconds for our PING's ACK before the connection is closed"},
	{"ping-min-interval", L_U32, CFG(ping_min_interval), 0, 30 * 86400,
	 "gRPC ping policy: pings closer than this (2 h without calls) with no\n"
	 "data from us in between are strikes (0: no policy)"},
	{"ping-max-strikes", L_U32, CFG(ping_max_strikes), 0, 1000,
	 "strikes allowed; one more: GOAWAY ENHANCE_YOUR_CALM \"too_many_pings\""},
	{"send-stall-timeout", L_U32, CFG(send_stall_timeout), 0, 3600,
	 "seconds output may wait on a peer that reads nothing before it is\n"
	 "dropped (0: never)"},
	{"require-te-trailers", L_BOOL, CFG(require_te_trailers), 0, 1,
	 "1: requests without 'te: trailers' get INTERNAL"},
};

static long limit_get(const collector_config *c, const limit_flag *f)
{
	const char *p = (const char *)c + f->offset;
	switch (f->type) {
	case L_SIZE:
		return (long)*(const size_t *)p;
	case L_U32:
		return (long)*(const uint32_t *)p;
	case L_BOOL:
		return *(const bool *)p;
	}
	return 0;
}

static void limit_set(collector_config *c, const limit_flag *f, long v)
{
	char *p = (char *)c + f->offset;
	switch (f->type) {
	case L_SIZE:
		*(size_t *)p = (size_t)v;
		break;
	case L_U32:
		*(uint32_t *)p = (uint32_t)v;
		break;
	case L_BOOL:
		*(bool *)p = v != 0;
		break;
	}
}

static void print_limits(void)
{
	collector_config d;
	collector_config_defaults(&d);
	printf("\nLimits and timeouts (README, Security):\n");
	for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
		const limit_flag *f = &limits[i];
		char flag[64];
		snprintf(flag, sizeof(flag), "--%s N", f->name);
		/* Names longer than the column get a line of their own. */
		if (printf("  %-27s", flag) > 29)
			printf("\n%29s", "");
		for (const char *h = f->help; *h; h++) {
			putchar(*h);
			if (*h == '\n')
				printf("%29s", "");
		}
		printf(" (default %ld)\n", limit_get(&d, f));
	}
}

/* ---- the registry's quotas (README, Registry), apart from the wire's limits ---- */

typedef struct quota_flag {
	const char *name;
	size_t offset; /* of a size_t in collector_config */
	long max;
	const char *help;
} quota_flag;

static const quota_flag quotas[] = {
	{REGQUOTA_FLAG_FILES, CFG(registry_max_files), 100000000,
	 "distinct files registered per namespace"},
	{REGQUOTA_FLAG_VERSIONS, CFG(registry_max_versions), 100000000,
	 "versions kept per file (each change of a file is one)"},
	{REGQUOTA_FLAG_NS_BYTES, CFG(registry_max_namespace_bytes), 1L << 40,
	 "bytes of descriptors per namespace: every kept version's serialized\n"
	 "FileDescriptorProto and every service record, each plus 1 KiB"},
	{REGQUOTA_FLAG_NAMESPACES, CFG(registry_max_namespaces), 100000000,
	 "namespaces holding registrations"},
	{REGQUOTA_FLAG_TOTAL_BYTES, CFG(registry_max_total_bytes), 1L << 40,
	 "bytes of descriptors in every namespace, those unregistered since the\n"
	 "start included (their memory is freed at a restart)"},
};
#undef CFG

static void print_quotas(void)
{
	collector_config d;
	collector_config_defaults(&d);
	printf("\nRegistry quotas (README, Registry); over one, a registration gets\n"
	       "RESOURCE_EXHAUSTED and changes nothing:\n");
	for (size_t i = 0; i < sizeof(quotas) / sizeof(quotas[0]); i++) {
		const quota_flag *f = &quotas[i];
		printf("  --%s N\n%29s", f->name, "");
		for (const char *h = f->help; *h; h++) {
			putchar(*h);
			if (*h == '\n')
				printf("%29s", "");
		}
		printf(" (default %zu)\n", *(const size_t *)((const char *)&d + f->offset));
	}
}

static int parse_int(const char *name, const char *v, long min, long max, long *out);

/* Flags that take no value on the command line (and 0 or 1 in a config file). */
static const struct {
	const char *name;
	size_t offset;
} switches[] = {
	{"admin", offsetof(collector_config, admin)},
	{"insecure", offsetof(collector_config, insecure)},
	{"no-console", offsetof(collector_config, no_console)},
	{"no-http1", offsetof(collector_config, no_http1)},
	{"no-validation", offsetof(collector_config, no_validation)},
};

/* 1 when name is no quota flag, else set_option's answer. */
static int set_quota(collector_config *c, const char *name, const char *v)
{
	for (size_t i = 0; i < sizeof(quotas) / sizeof(quotas[0]); i++) {
		long n;
		if (strcmp(name, quotas[i].name))
			continue;
		if (parse_int(name, v, 1, quotas[i].max, &n))
			return -1;
		*(size_t *)((char *)c + quotas[i].offset) = (size_t)n;
		return 0;
	}
	return 1;
}

static void config_usage(const char *prog)
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
	       "  --io auto|uring|epoll      the reactors' I/O: io_uring, or epoll where io_uring\n"
	       "                             is refused (containers' seccomp profiles, sysctl\n"
	       "                             kernel.io_uring_disabled); auto tries io_uring and\n"
	       "                             falls back to epoll, saying so (default auto)\n"
	       "  --pool-queue N             blocking pool queue bound; when full, calls get\n"
	       "                             RESOURCE_EXHAUSTED (default 1024)\n"
	       "  --store-group-max N        write requests committed in one transaction\n"
	       "                             (0: all that are queued; 1: one transaction per\n"
	       "                             request, for comparison) (default 0)\n"
	       "  --max-message-bytes N      largest request or response message\n"
	       "                             (default 4194304 = 4 MiB)\n"
	       "  --namespace NS             default namespace (default \"default\")\n"
	       "  --no-validation            do not check calls against the registry (by\n"
	       "                             default a method not registered in the call's\n"
	       "                             namespace answers UNIMPLEMENTED)\n"
	       "  --admin                    with --auth off: allow the console's admin\n"
	       "                             operations (Stop, Reset) to any caller (refused\n"
	       "                             without it); with auth on the admin scope does\n"
	       "  --auth on|off              check bearer tokens on every call (default on);\n"
	       "                             off: any caller may do anything (local development)\n"
	       "  --admin-token-file FILE    the first admin token: read from FILE, or made and\n"
	       "                             written there (0600) when missing (default: made\n"
	       "                             at first start, printed once, DIR/system/admin-token)\n"
	       "  --mesh-token-file FILE     the credential of calls between nodes: the same\n"
	       "                             file on every node of a mesh (made when missing)\n"
	       "  --auth-open LIST           services callable without a token: health,\n"
	       "                             reflection, or none (default health,reflection)\n"
	       "  --insecure                 serve plaintext on an address other than the\n"
	       "                             loopback (without it, such an address needs\n"
	       "                             --tls-cert and --tls-key)\n"
	       "  --no-http1                 serve HTTP/2 alone on the port: no HTTP/1.1\n"
	       "                             (by default the port also answers HTTP/1.1:\n"
	       "                             /healthz, /metrics, Connect JSON and binary)\n"
	       "  --no-console               no web console: GET / answers 404 (by default the\n"
	       "                             node serves it on GET /, see the README)\n"
	       "  --cors-origin LIST         origins whose pages may call the node (gRPC-Web,\n"
	       "                             Connect, /metrics): comma-separated, * for any\n"
	       "                             (default: none)\n"
	       "  --id ID                    node id (default: a UUIDv7 made once and kept in\n"
	       "                             DIR/node-id)\n"
	       "  --tls-cert FILE            serve TLS (1.2, 1.3; ALPN h2, http/1.1) with this PEM\n"
	       "                             certificate chain (with --tls-key); SIGHUP reads\n"
	       "                             it again\n"
	       "  --tls-key FILE             the certificate's PEM private key\n"
	       "  --tls-client-ca FILE       mTLS: clients must present a certificate this CA\n"
	       "                             signed\n"
	       "  --tls-min-version V        1.2 or 1.3 (default 1.2)\n"
	       "  --tls-peer-ca FILE         with --tls-cert: calls to other nodes (links,\n"
	       "                             Dispatch) check their certificate against this CA\n"
	       "                             and present this node's (default: --tls-client-ca;\n"
	       "                             neither: not checked, logged)\n"
	       "  --peer HOST:PORT           link to this node at start (repeatable, at most\n"
	       "                             16; see also the Link RPC)\n"
	       "  --advertise HOST:PORT      address other nodes reach this one at (default:\n"
	       "                             the listener's; a wildcard host is told as the\n"
	       "                             loopback)\n"
	       "  --mesh-namespaces A,B      namespaces shared with linked nodes (default:\n"
	       "                             every one)\n"
	       "  --mesh-max-outstanding N   calls forwarded to one node at once; beyond it\n"
	       "                             RESOURCE_EXHAUSTED (default 1024)\n"
	       "  --backup-dir DIR           BackupCollection's dest_path may name a directory\n"
	       "                             below DIR only (default: none; backups go to\n"
	       "                             DATA/backups)\n"
	       "  --workflow-max-active N    workflows running at once (default 10000)\n"
	       "  --workflow-max-tasks N     tasks per workflow definition (default 256)\n"
	       "  --workflow-max-history N   executions kept per workflow (default 10000)\n"
	       "  --workflow-max-running N   task calls in flight on the node (default 1024)\n"
	       "  --workflow-concurrency N   task calls in flight per workflow (default 16)\n"
	       "  --workflow-max-definitions N  workflow definitions and continuations kept\n"
	       "                             (default 10000)\n"
	       "  --workflow-task-timeout S  deadline of each task call (default 60)\n"
	       "  --workflow-retention-seconds S  an ended workflow and its history are\n"
	       "                             deleted S after they ended (default 30 days;\n"
	       "                             -1: kept for ever)\n"
	       "  --log-level LEVEL          error, warn, info or debug (default info)\n"
	       "  --grace-seconds N          on SIGTERM/SIGINT, time given to calls in flight\n"
	       "                             after GOAWAY (default 10)\n"
	       "  --peers-dns NAME           find peers by DNS: SRV records _grpc._tcp.NAME,\n"
	       "                             else NAME's A and AAAA records with this node's\n"
	       "                             port (default: none)\n"
	       "  --peers-dns-interval N     seconds between two resolutions of --peers-dns\n"
	       "                             (default 30)\n"
	       "  --dns-server IP:PORT       DNS server for --peers-dns ([IPv6]:PORT; default:\n"
	       "                             those of /etc/resolv.conf)\n"
	       "  --config FILE              read settings from FILE\n"
	       "  --help                     print this help\n",
	       prog);
	print_limits();
	print_quotas();
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

/* Indexed by enum collector_log_level. */
static const char *const log_levels[] = {"error", "warn", "info", "debug"};

static int set_option(collector_config *c, const char *name, const char *v)
{
	long n;
	if (!strcmp(name, "listen"))
		return copy_str(name, c->listen, sizeof(c->listen), v);
	if (!strcmp(name, "data"))
		return copy_str(name, c->data, sizeof(c->data), v);
	if (!strcmp(name, "namespace"))
		return copy_str(name, c->default_namespace, sizeof(c->default_namespace), v);
	for (size_t i = 0; i < sizeof(switches) / sizeof(switches[0]); i++) {
		if (strcmp(name, switches[i].name))
			continue;
		/* Bare on the command line; "= 1" or "= 0" in a config file. */
		if (v && parse_int(name, v, 0, 1, &n))
			return -1;
		*(bool *)((char *)c + switches[i].offset) = v ? n != 0 : true;
		return 0;
	}
	if (!strcmp(name, "cors-origin"))
		return copy_str(name, c->cors_origin, sizeof(c->cors_origin), v);
	if (!strcmp(name, "id"))
		return copy_str(name, c->id, sizeof(c->id), v);
	if (!strcmp(name, "peer")) {
		if (c->npeers >= COLLECTOR_PEERS_MAX) {
			fprintf(stderr, "collector: --peer: at most %d\n", COLLECTOR_PEERS_MAX);
			return -1;
		}
		return copy_str(name, c->peers[c->npeers++], sizeof(c->peers[0]), v);
	}
	if (!strcmp(name, "tls-cert"))
		return copy_str(name, c->tls_cert, sizeof(c->tls_cert), v);
	if (!strcmp(name, "tls-key"))
		return copy_str(name, c->tls_key, sizeof(c->tls_key), v);
	if (!strcmp(name, "tls-client-ca"))
		return copy_str(name, c->tls_client_ca, sizeof(c->tls_client_ca), v);
	if (!strcmp(name, "tls-peer-ca"))
		return copy_str(name, c->tls_peer_ca, sizeof(c->tls_peer_ca), v);
	if (!strcmp(name, "tls-min-version")) {
		if (strcmp(v, "1.2") && strcmp(v, "1.3")) {
			fprintf(stderr, "collector: --tls-min-version: expected 1.2 or 1.3\n");
			return -1;
		}
		c->tls_min_version = v[2] == '3' ? 13 : 12;
		return 0;
	}
	if (!strcmp(name, "advertise"))
		return copy_str(name, c->advertise, sizeof(c->advertise), v);
	if (!strcmp(name, "mesh-namespaces"))
		return copy_str(name, c->mesh_namespaces, sizeof(c->mesh_namespaces), v);
	if (!strcmp(name, "backup-dir"))
		return copy_str(name, c->backup_dir, sizeof(c->backup_dir), v);
	static const struct {
		const char *flag;
		size_t offset;
		long max;
	} wf_flags[] = {
		{"workflow-max-active", offsetof(collector_config, workflow_max_active), 10000000},
		{"workflow-max-tasks", offsetof(collector_config, workflow_max_tasks), 10000},
		{"workflow-max-history", offsetof(collector_config, workflow_max_history),
		 100000000},
		{"workflow-max-running", offsetof(collector_config, workflow_max_running), 1000000},
		{"workflow-concurrency", offsetof(collector_config, workflow_concurrency), 10000},
		{"workflow-max-definitions", offsetof(collector_config, workflow_max_definitions),
		 10000000},
	};
	for (size_t i = 0; i < sizeof(wf_flags) / sizeof(wf_flags[0]); i++) {
		if (strcmp(name, wf_flags[i].flag))
			continue;
		if (parse_int(name, v, 1, wf_flags[i].max, &n))
			return -1;
		*(size_t *)((char *)c + wf_flags[i].offset) = (size_t)n;
		return 0;
	}
	if (!strcmp(name, "workflow-retention-seconds")) {
		if (parse_int(name, v, -1, 100LL * 365 * 86400, &n) || !n) {
			fprintf(stderr, "collector: --workflow-retention-seconds: 1 or more, or -1 "
					"(for ever)\n");
			return -1;
		}
		c->workflow_retention = n;
		return 0;
	}
	if (!strcmp(name, "workflow-task-timeout")) {
		if (parse_int(name, v, 1, 86400 * 7, &n))
			return -1;
		c->workflow_task_timeout = (uint32_t)n;
		return 0;
	}
	if (!strcmp(name, "io")) {
		static const char *const names[] = {[COLLECTOR_IO_AUTO] = "auto",
						    [COLLECTOR_IO_URING] = "uring",
						    [COLLECTOR_IO_EPOLL] = "epoll"};
		for (int i = 0; i < (int)(sizeof(names) / sizeof(names[0])); i++)
			if (!strcmp(v, names[i])) {
				c->io = i;
				return 0;
			}
		fprintf(stderr, "collector: --io: expected auto, uring or epoll, not '%s'\n", v);
		return -1;
	}
	if (!strcmp(name, "auth")) {
		if (strcmp(v, "on") && strcmp(v, "off")) {
			fprintf(stderr, "collector: --auth: expected on or off\n");
			return -1;
		}
		c->auth = !strcmp(v, "on");
		return 0;
	}
	if (!strcmp(name, "admin-token-file"))
		return copy_str(name, c->admin_token_file, sizeof(c->admin_token_file), v);
	if (!strcmp(name, "mesh-token-file"))
		return copy_str(name, c->mesh_token_file, sizeof(c->mesh_token_file), v);
	if (!strcmp(name, "auth-open")) {
		/* Checked here so that a typo does not quietly close (or open) a service. */
		char list[sizeof(c->auth_open)];
		if (copy_str(name, list, sizeof(list), v))
			return -1;
		for (char *save, *w = strtok_r(list, ",", &save); w; w = strtok_r(NULL, ",", &save))
			if (strcmp(w, "health") && strcmp(w, "reflection") && strcmp(w, "none")) {
				fprintf(stderr,
					"collector: --auth-open: health, reflection or none\n");
				return -1;
			}
		return copy_str(name, c->auth_open, sizeof(c->auth_open), v);
	}
	if (!strcmp(name, "mesh-max-outstanding")) {
		if (parse_int(name, v, 1, 1000000, &n))
			return -1;
		c->mesh_max_outstanding = (size_t)n;
		return 0;
	}
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
	if (!strcmp(name, "store-group-max")) {
		if (parse_int(name, v, 0, 1000000, &n))
			return -1;
		c->store_group_max = (int)n;
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
	if (!strcmp(name, "peers-dns"))
		return copy_str(name, c->peers_dns, sizeof(c->peers_dns), v);
	if (!strcmp(name, "peers-dns-interval")) {
		if (parse_int(name, v, 1, 86400, &n))
			return -1;
		c->peers_dns_interval = (uint32_t)n;
		return 0;
	}
	if (!strcmp(name, "dns-server"))
		return copy_str(name, c->dns_server, sizeof(c->dns_server), v);
	if (!strcmp(name, "log-level")) {
		for (int l = COLLECTOR_LOG_ERROR; l <= COLLECTOR_LOG_DEBUG; l++) {
			if (!strcmp(v, log_levels[l])) {
				c->log_level = l;
				return 0;
			}
		}
		fprintf(stderr, "collector: --log-level: expected error, warn, info or debug\n");
		return -1;
	}
	for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
		if (strcmp(name, limits[i].name))
			continue;
		if (parse_int(name, v, limits[i].min, limits[i].max, &n))
			return -1;
		limit_set(c, &limits[i], n);
		return 0;
	}
	int quota = set_quota(c, name, v);
	if (quota <= 0)
		return quota;
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

static int read_config_file(collector_config *c, const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		fprintf(stderr, "collector: cannot read config file %s: %s\n", path,
			strerror(errno));
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

static bool is_switch(const char *name)
{
	for (size_t i = 0; i < sizeof(switches) / sizeof(switches[0]); i++)
		if (!strcmp(name, switches[i].name))
			return true;
	return false;
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
	} else if (!strcmp(name, "help") || is_switch(name)) {
		*value = NULL;
	} else if (*i + 1 < argc) {
		*value = argv[++*i];
	} else {
		fprintf(stderr, "collector: --%s needs a value\n", name);
		return -1;
	}
	return 0;
}

int config_parse(collector_config *c, int argc, char **argv)
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
