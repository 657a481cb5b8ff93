/* collectorctl: the node's admin client. Any unary method of the Collector API as JSON,
 * and commands for workflows and backups. Exit status: 0, or the gRPC status code of the
 * call that failed (1-16); 64 for a command line it does not understand. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/buf.h"
#include "base/clock.h"
#include "base/jsonstr.h"
#include "base/mem.h"
#include "cli/cli_call.h"
#include "cli/cli_progress.h"
#include "cli/cli_transfer.h"
#include "h2/status.h"
#include "store/jdoc.h"

#define EXIT_USAGE 64
#define DEFAULT_NODE "127.0.0.1:50051"
#define WORKER "CollectiveWorker/"
#define REPO "CollectionRepo/"
#define INPUT_MAX (64u << 20)
#define WAIT_POLL_NS (100 * NS_PER_MS)

static const char usage_text[] =
	"usage: collectorctl [--node HOST:PORT] [--namespace NS] [--token T] [--tls-ca FILE]\n"
	"                    [--timeout S] COMMAND ...\n"
	"  call METHOD [JSON|-]          any unary method (Service/Method) of the Collector API:\n"
	"                                the request as JSON (default {}), the answer as JSON\n"
	"  workflow register FILE|-      a RegisterWorkflowRequest in JSON\n"
	"  workflow start NAME [--input JSON] [--type T] [--key K]\n"
	"                                input: JSON of message T (default\n"
	"                                google.protobuf.Struct); K: an idempotency key\n"
	"  workflow status|history|wait|cancel|pause|resume ID\n"
	"  workflow list                 newest first\n"
	"  backup NS/NAME [--files]      back a collection up\n"
	"  backups NS/NAME               its backups, newest first\n"
	"  restore ID [--to NS/NAME] [--overwrite]\n"
	"  verify ID | delete-backup ID\n"
	"  clone NS/NAME --to NS/NAME [--endpoint HOST:PORT] [--files]   (to another node)\n"
	"  fetch HOST:PORT NS/NAME [--to NS/NAME] [--files]   (from another node)\n"
	"  pull NS/NAME FILE [--files]   the collection into a file (PullCollection)\n"
	"  push FILE NS/NAME             a pulled file into the node (PushCollection)\n"
	"  token create NAME NS:SCOPE[+SCOPE...]...   e.g. shop:read+write '*:read'; the token is\n"
	"                                shown this once\n"
	"  token list | token revoke ID | audit [LIMIT]\n"
	"--node defaults to $COLLECTOR_NODE, else " DEFAULT_NODE "; --token to $COLLECTOR_TOKEN.\n"
	"Exit status: 0, the gRPC code of a failed call, 64 for a bad command line; workflow\n"
	"wait: 0 when it succeeded, 10 (ABORTED) when it failed, 1 (CANCELLED) when cancelled.\n";

static int usage(const char *why)
{
	if (why)
		fprintf(stderr, "collectorctl: %s\n", why);
	fputs(usage_text, stderr);
	return EXIT_USAGE;
}

/* Reports a failed call; its code is the exit status. */
static int failed(int code, const char *msg)
{
	if (code < 0) {
		fprintf(stderr, "collectorctl: %s\n", msg);
		return GRPC_UNAVAILABLE;
	}
	fprintf(stderr, "collectorctl: %s: %s\n", grpc_code_name(code), msg);
	return code;
}

/* Calls method with the JSON request; prints the answer's JSON on success. */
static int call_print(cli_conn *c, const char *method, const char *json)
{
	buf out = BUF_INIT;
	char msg[1024];
	int code = cli_unary_json(c, method, json, &out, msg, sizeof(msg));
	if (code == GRPC_OK)
		printf("%.*s\n", (int)out.len, out.text ? out.text : "");
	buf_free(&out);
	return code == GRPC_OK ? 0 : failed(code, msg);
}

/* The whole of a file (or stdin for "-"); NULL with a message printed. */
static char *read_all(const char *path)
{
	FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
	if (!f) {
		fprintf(stderr, "collectorctl: %s: %s\n", path, strerror(errno));
		return NULL;
	}
	buf b = BUF_INIT;
	char chunk[65536];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0 && b.len < INPUT_MAX)
		buf_append(&b, chunk, n);
	bool err = ferror(f) || b.failed || b.len >= INPUT_MAX;
	if (f != stdin)
		fclose(f);
	if (err || buf_terminate(&b)) {
		fprintf(stderr, "collectorctl: %s: cannot read it (or larger than 64 MiB)\n", path);
		buf_free(&b);
		return NULL;
	}
	return b.text;
}

/* ---- JSON requests, built with every value escaped ---- */

static void jkey(buf *b, const char *k)
{
	if (b->len > 1)
		buf_putc(b, ',');
	jsonstr_put(b, k, strlen(k));
	buf_putc(b, ':');
}

static void jstr(buf *b, const char *k, const char *v)
{
	jkey(b, k);
	jsonstr_put(b, v, strlen(v));
}

/* "ns/name" as a NamespacedName member k. */
static bool jcoll(buf *b, const char *k, const char *arg)
{
	const char *slash = strchr(arg, '/');
	if (!slash || slash == arg || !slash[1])
		return false;
	jkey(b, k);
	buf_puts(b, "{\"namespace\":");
	jsonstr_put(b, arg, (size_t)(slash - arg));
	buf_puts(b, ",\"name\":");
	jsonstr_put(b, slash + 1, strlen(slash + 1));
	buf_putc(b, '}');
	return true;
}

/* "ns/name" as the members dest_namespace and dest_name (--to); false when malformed. */
static bool jdest(buf *b, const char *to)
{
	const char *slash = strchr(to, '/');
	if (!slash || slash == to || !slash[1])
		return false;
	jkey(b, "dest_namespace");
	jsonstr_put(b, to, (size_t)(slash - to));
	jstr(b, "dest_name", slash + 1);
	return true;
}

/* ---- workflows ---- */

/* The JSON of the workflow's namespace and id. */
static void wf_ref(buf *b, const cli_opts *o, const char *id)
{
	buf_putc(b, '{');
	if (o->ns)
		jstr(b, "namespace", o->ns);
	jstr(b, "workflow_id", id);
}

/* The value of member k of the object at node o of d, or -1. */
static long member(const jdoc *d, uint32_t o, const char *k)
{
	if (d->nodes[o].type != JDOC_OBJECT)
		return -1;
	for (uint32_t i = o + 1; i < d->nodes[o].end; i = d->nodes[i + 1].end)
		if (jdoc_string_eq(d, &d->nodes[i], k, strlen(k)))
			return (long)i + 1;
	return -1;
}

static void text_of(const jdoc *d, long at, char *out, size_t cap)
{
	out[0] = 0;
	if (at < 0 || d->nodes[at].type != JDOC_STRING || d->nodes[at].ulen >= cap)
		return;
	jdoc_unescape(d, &d->nodes[at], out);
	out[d->nodes[at].ulen] = 0;
}

/* Polls the workflow until it ends, showing tasks done of all. */
static int wf_wait(cli_conn *c, const cli_opts *o, const char *id)
{
	buf req = BUF_INIT;
	wf_ref(&req, o, id);
	buf_putc(&req, '}');
	buf_terminate(&req);
	cli_progress p;
	cli_progress_start(&p, stderr, "tasks", false);
	int rc = 0;
	for (;;) {
		buf out = BUF_INIT;
		char msg[1024], state[64] = "", err[512] = "";
		int code = cli_unary_json(c, WORKER "GetWorkflowStatus", req.text, &out, msg,
					  sizeof(msg));
		jdoc d = {0};
		if (code != GRPC_OK || jdoc_parse(&d, out.text, out.len, 64)) {
			buf_free(&out);
			rc = failed(code == GRPC_OK ? GRPC_INTERNAL : code, msg);
			break;
		}
		long w = member(&d, 0, "workflow");
		text_of(&d, w < 0 ? -1 : member(&d, (uint32_t)w, "state"), state, sizeof(state));
		long tasks = w < 0 ? -1 : member(&d, (uint32_t)w, "taskExecutions");
		int64_t total = 0, done = 0;
		for (uint32_t i = tasks < 0 ? 0 : (uint32_t)tasks + 1;
		     tasks >= 0 && i < d.nodes[tasks].end; i = d.nodes[i + 1].end) {
			char ts[64];
			text_of(&d, member(&d, i + 1, "state"), ts, sizeof(ts));
			total++;
			done += !strcmp(ts, "EXECUTION_SUCCEEDED");
		}
		long meta = w < 0 ? -1 : member(&d, (uint32_t)w, "metadata");
		long labels = meta < 0 ? -1 : member(&d, (uint32_t)meta, "labels");
		text_of(&d, labels < 0 ? -1 : member(&d, (uint32_t)labels, "error"), err,
			sizeof(err));
		jdoc_free(&d);
		bool over = strcmp(state, "WORKFLOW_RUNNING") &&
			    strcmp(state, "WORKFLOW_PENDING") && strcmp(state, "WORKFLOW_PAUSED");
		if (over) {
			cli_progress_end(&p, done, total, state);
			if (strcmp(state, "WORKFLOW_SUCCEEDED")) {
				fprintf(stderr, "collectorctl: workflow %s: %s %s\n", id, state,
					err);
				rc = strcmp(state, "WORKFLOW_CANCELLED") ? GRPC_ABORTED
									 : GRPC_CANCELLED;
			} else {
				printf("%.*s\n", (int)out.len, out.text);
			}
			buf_free(&out);
			break;
		}
		buf_free(&out);
		cli_progress_update(&p, done, total, state);
		struct timespec ts = {0, WAIT_POLL_NS};
		nanosleep(&ts, NULL);
	}
	buf_free(&req);
	return rc;
}

/* Every page of a listing: each item of member `items` printed as one JSON line. */
static int pages(cli_conn *c, const char *method, const char *base_json, const char *items)
{
	char token[256] = "";
	for (;;) {
		buf req = BUF_INIT, out = BUF_INIT;
		buf_append(&req, base_json, strlen(base_json) - 1); /* without its '}' */
		if (token[0])
			jstr(&req, "page_token", token);
		buf_putc(&req, '}');
		buf_terminate(&req);
		char msg[1024];
		int code = cli_unary_json(c, method, req.text, &out, msg, sizeof(msg));
		buf_free(&req);
		jdoc d = {0};
		if (code != GRPC_OK || jdoc_parse(&d, out.text, out.len, 64)) {
			buf_free(&out);
			return failed(code == GRPC_OK ? GRPC_INTERNAL : code, msg);
		}
		long list = member(&d, 0, items);
		for (uint32_t i = list < 0 ? 0 : (uint32_t)list + 1;
		     list >= 0 && i < d.nodes[list].end; i = d.nodes[i].end) {
			buf one = BUF_INIT;
			jdoc_write(&one, &d, i);
			printf("%.*s\n", (int)one.len, one.text ? one.text : "");
			buf_free(&one);
		}
		text_of(&d, member(&d, 0, "nextPageToken"), token, sizeof(token));
		jdoc_free(&d);
		buf_free(&out);
		if (!token[0])
			return 0;
	}
}

static int workflow(cli_conn *c, const cli_opts *o, int argc, char **argv)
{
	if (argc < 1)
		return usage("workflow: what? (register, start, status, ...)");
	const char *what = argv[0];
	buf b = BUF_INIT;
	int rc;
	if (!strcmp(what, "register") && argc == 2) {
		char *json = read_all(argv[1]);
		if (!json)
			return EXIT_USAGE;
		rc = call_print(c, WORKER "RegisterWorkflow", json);
		mem_free(json);
		return rc;
	}
	if (!strcmp(what, "start") && argc >= 2) {
		const char *input = NULL, *type = "google.protobuf.Struct", *key = NULL;
		for (int i = 2; i < argc; i++) {
			if (!strcmp(argv[i], "--input") && i + 1 < argc)
				input = argv[++i];
			else if (!strcmp(argv[i], "--type") && i + 1 < argc)
				type = argv[++i];
			else if (!strcmp(argv[i], "--key") && i + 1 < argc)
				key = argv[++i];
			else
				return usage("workflow start: unknown option");
		}
		buf_putc(&b, '{');
		if (o->ns)
			jstr(&b, "namespace", o->ns);
		jstr(&b, "workflow_name", argv[1]);
		if (input) {
			/* An Any in JSON: its type, and the message's members (a Struct's value
			 * is under "value"). */
			jkey(&b, "input");
			buf_puts(&b, "{\"@type\":");
			char url[400];
			snprintf(url, sizeof(url), "type.googleapis.com/%s", type);
			jsonstr_put(&b, url, strlen(url));
			buf_puts(&b, ",\"value\":");
			buf_puts(&b, input);
			buf_putc(&b, '}');
			if (strcmp(type, "google.protobuf.Struct") &&
			    strcmp(type, "google.protobuf.Value")) {
				buf_free(&b);
				return usage(
					"workflow start: --type takes google.protobuf.Struct or Value "
					"(other types: `call CollectiveWorker/StartWorkflow`)");
			}
		}
		if (key) {
			jkey(&b, "metadata");
			buf_puts(&b, "{\"idempotency_key\":");
			jsonstr_put(&b, key, strlen(key));
			buf_putc(&b, '}');
		}
		buf_putc(&b, '}');
	} else if (!strcmp(what, "list") && argc == 1) {
		buf_putc(&b, '{');
		if (o->ns)
			jstr(&b, "namespace", o->ns);
		buf_putc(&b, '}');
		buf_terminate(&b);
		rc = pages(c, WORKER "ListWorkflows", b.text, "workflows");
		buf_free(&b);
		return rc;
	} else if (argc >= 2 &&
		   (!strcmp(what, "status") || !strcmp(what, "history") || !strcmp(what, "wait") ||
		    !strcmp(what, "cancel") || !strcmp(what, "pause") || !strcmp(what, "resume"))) {
		wf_ref(&b, o, argv[1]);
		if (!strcmp(what, "cancel") && argc == 3)
			jstr(&b, "reason", argv[2]);
		buf_putc(&b, '}');
		buf_terminate(&b);
		if (!strcmp(what, "wait"))
			rc = wf_wait(c, o, argv[1]);
		else if (!strcmp(what, "history"))
			rc = pages(c, WORKER "GetWorkflowHistory", b.text, "executions");
		else
			rc = call_print(c,
					!strcmp(what, "status")	  ? WORKER "GetWorkflowStatus"
					: !strcmp(what, "cancel") ? WORKER "CancelWorkflow"
					: !strcmp(what, "pause")  ? WORKER "PauseWorkflow"
								  : WORKER "ResumeWorkflow",
					b.text);
		buf_free(&b);
		return rc;
	} else {
		return usage("workflow: unknown command or arguments");
	}
	buf_terminate(&b);
	rc = b.failed ? failed(-1, "out of memory") : call_print(c, WORKER "StartWorkflow", b.text);
	buf_free(&b);
	return rc;
}

/* ---- backups ---- */

static int backups(cli_conn *c, const char *cmd, int argc, char **argv)
{
	buf b = BUF_INIT;
	const char *method = NULL;
	buf_putc(&b, '{');
	bool ok = argc >= 1;
	if (ok && !strcmp(cmd, "backup")) {
		method = REPO "BackupCollection";
		ok = jcoll(&b, "collection", argv[0]);
		for (int i = 1; ok && i < argc; i++) {
			ok = !strcmp(argv[i], "--files");
			if (ok) {
				jkey(&b, "include_files");
				buf_puts(&b, "true");
			}
		}
	} else if (ok && !strcmp(cmd, "backups")) {
		method = REPO "ListBackups";
		ok = argc == 1 && jcoll(&b, "collection", argv[0]);
	} else if (ok && !strcmp(cmd, "restore")) {
		method = REPO "RestoreBackup";
		jstr(&b, "backup_id", argv[0]);
		for (int i = 1; ok && i < argc; i++) {
			if (!strcmp(argv[i], "--overwrite")) {
				jkey(&b, "overwrite");
				buf_puts(&b, "true");
			} else if (!strcmp(argv[i], "--to") && i + 1 < argc) {
				ok = jdest(&b, argv[++i]);
			} else {
				ok = false;
			}
		}
	} else if (ok && (!strcmp(cmd, "clone") || !strcmp(cmd, "fetch"))) {
		/* clone NS/NAME ...; fetch HOST:PORT NS/NAME ... */
		bool fetch = !strcmp(cmd, "fetch");
		method = fetch ? REPO "Fetch" : REPO "Clone";
		int at = fetch ? 2 : 1;
		if (fetch) {
			ok = argc >= 2;
			if (ok)
				jstr(&b, "source_endpoint", argv[0]);
		}
		ok = ok && jcoll(&b, "source_collection", argv[at - 1]);
		for (int i = at; ok && i < argc; i++) {
			if (!strcmp(argv[i], "--files")) {
				jkey(&b, "include_files");
				buf_puts(&b, "true");
			} else if (!strcmp(argv[i], "--endpoint") && !fetch && i + 1 < argc) {
				jstr(&b, "dest_endpoint", argv[++i]);
			} else if (!strcmp(argv[i], "--to") && i + 1 < argc) {
				ok = jdest(&b, argv[++i]);
			} else {
				ok = false;
			}
		}
	} else if (ok && (!strcmp(cmd, "verify") || !strcmp(cmd, "delete-backup"))) {
		method = !strcmp(cmd, "verify") ? REPO "VerifyBackup" : REPO "DeleteBackup";
		ok = argc == 1;
		jstr(&b, "backup_id", argv[0]);
	} else {
		ok = false;
	}
	buf_putc(&b, '}');
	buf_terminate(&b);
	int rc = ok ? call_print(c, method, b.text)
		    : usage("backup commands: NS/NAME for a collection, an id for a backup");
	buf_free(&b);
	return rc;
}

/* ---- pull and push, through a file ---- */

/* "ns/name" split into ns (cap bytes) and a pointer to the name; false when malformed. */
static bool split_coll(const char *arg, char *ns, size_t cap, const char **name)
{
	const char *slash = strchr(arg, '/');
	if (!slash || slash == arg || !slash[1] || (size_t)(slash - arg) >= cap)
		return false;
	snprintf(ns, cap, "%.*s", (int)(slash - arg), arg);
	*name = slash + 1;
	return true;
}

static int transfer(cli_conn *c, const char *cmd, int argc, char **argv)
{
	char ns[128];
	const char *name;
	if (!strcmp(cmd, "pull") && (argc == 2 || (argc == 3 && !strcmp(argv[2], "--files"))) &&
	    split_coll(argv[0], ns, sizeof(ns), &name))
		return cli_pull(c, ns, name, argc == 3, argv[1]);
	if (!strcmp(cmd, "push") && argc == 2 && split_coll(argv[1], ns, sizeof(ns), &name))
		return cli_push(c, argv[0], ns, name);
	return usage("pull NS/NAME FILE [--files], push FILE NS/NAME");
}

/* ---- tokens (collector.CollectorAuth) ---- */

/* "ns:scope+scope" as an AuthGrant member of a list. */
static bool jgrant(buf *b, const char *arg, bool first)
{
	const char *colon = strrchr(arg, ':');
	if (!colon || colon == arg || !colon[1])
		return false;
	if (!first)
		buf_putc(b, ',');
	buf_puts(b, "{\"namespace\":");
	jsonstr_put(b, arg, (size_t)(colon - arg));
	buf_puts(b, ",\"scopes\":[");
	for (const char *p = colon + 1; *p;) {
		const char *plus = strchr(p, '+');
		size_t n = plus ? (size_t)(plus - p) : strlen(p);
		if (!n)
			return false;
		if (p != colon + 1)
			buf_putc(b, ',');
		jsonstr_put(b, p, n);
		p += n + (plus ? 1 : 0);
	}
	buf_puts(b, "]}");
	return true;
}

static int tokens(cli_conn *c, const char *cmd, int argc, char **argv)
{
	buf b = BUF_INIT;
	const char *method = NULL;
	bool ok = true;
	buf_putc(&b, '{');
	if (!strcmp(cmd, "audit")) {
		method = "CollectorAuth/ListAudit";
		if (argc == 1 && strspn(argv[0], "0123456789") == strlen(argv[0]) && *argv[0]) {
			jkey(&b, "limit");
			buf_puts(&b, argv[0]);
		} else {
			ok = argc == 0;
		}
	} else if (argc >= 1 && !strcmp(argv[0], "list")) {
		method = "CollectorAuth/ListTokens";
		ok = argc == 1;
	} else if (argc == 2 && !strcmp(argv[0], "revoke")) {
		method = "CollectorAuth/RevokeToken";
		jstr(&b, "id", argv[1]);
	} else if (argc >= 3 && !strcmp(argv[0], "create")) {
		method = "CollectorAuth/CreateToken";
		jstr(&b, "name", argv[1]);
		jkey(&b, "grants");
		buf_putc(&b, '[');
		for (int i = 2; ok && i < argc; i++)
			ok = jgrant(&b, argv[i], i == 2);
		buf_putc(&b, ']');
	} else {
		ok = false;
	}
	buf_putc(&b, '}');
	buf_terminate(&b);
	int rc = ok ? call_print(c, method, b.text)
		    : usage("token create NAME NS:SCOPE[+SCOPE]..., token list, token revoke ID, "
			    "audit [LIMIT]");
	buf_free(&b);
	return rc;
}

int main(int argc, char **argv)
{
	cli_opts o = {.node = getenv("COLLECTOR_NODE"),
		      .token = getenv("COLLECTOR_TOKEN"),
		      .timeout_ns = 30 * NS_PER_SEC};
	if (!o.node || !*o.node)
		o.node = DEFAULT_NODE;
	int i = 1;
	while (i < argc && !strncmp(argv[i], "--", 2)) {
		const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(f, "--help"))
			return usage(NULL), 0;
		if (!v)
			return usage("an option without its value");
		if (!strcmp(f, "--node"))
			o.node = v;
		else if (!strcmp(f, "--namespace"))
			o.ns = v;
		else if (!strcmp(f, "--token"))
			o.token = v;
		else if (!strcmp(f, "--tls-ca"))
			o.tls_ca = v;
		else if (!strcmp(f, "--timeout")) {
			char *end;
			long s = strtol(v, &end, 10);
			if (*end || s < 0 || s > 86400)
				return usage("--timeout: seconds, 0 to 86400 (0: none)");
			o.timeout_ns = s * NS_PER_SEC;
		} else
			return usage("unknown option");
		i += 2;
	}
	if (i >= argc)
		return usage("no command");
	char err[512];
	cli_conn *c = cli_open(&o, err, sizeof(err));
	if (!c)
		return failed(-1, err);
	const char *cmd = argv[i];
	int rc;
	if (!strcmp(cmd, "call") && (argc - i == 2 || argc - i == 3)) {
		char *json =
			argc - i == 3 ? (strcmp(argv[i + 2], "-") ? NULL : read_all("-")) : NULL;
		const char *req = argc - i == 3 ? (json ? json : argv[i + 2]) : "{}";
		rc = call_print(c, argv[i + 1], req);
		mem_free(json);
	} else if (!strcmp(cmd, "pull") || !strcmp(cmd, "push")) {
		rc = transfer(c, cmd, argc - i - 1, argv + i + 1);
	} else if (!strcmp(cmd, "token") || !strcmp(cmd, "audit")) {
		rc = tokens(c, cmd, argc - i - 1, argv + i + 1);
	} else if (!strcmp(cmd, "workflow")) {
		rc = workflow(c, &o, argc - i - 1, argv + i + 1);
	} else if (!strcmp(cmd, "backup") || !strcmp(cmd, "backups") || !strcmp(cmd, "restore") ||
		   !strcmp(cmd, "verify") || !strcmp(cmd, "delete-backup") ||
		   !strcmp(cmd, "clone") || !strcmp(cmd, "fetch")) {
		rc = backups(c, cmd, argc - i - 1, argv + i + 1);
	} else {
		rc = usage("unknown command");
	}
	cli_close(c);
	return rc;
}
