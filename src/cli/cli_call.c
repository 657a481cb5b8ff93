#include "cli/cli_call.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/clock.h"
#include "base/mem.h"
#include "h2/client.h"
#include "h2/status.h"
#include "io/reactor.h"
#include "io/tls.h"
#include "store/json.h"

#define MAX_MESSAGE (64u << 20)
#define AUTH_PREFIX "Bearer "

extern const uint8_t api_descriptor_set[];
extern const size_t api_descriptor_set_len;

struct cli_conn {
	cli_opts o;
	reactor *r;
	client_channel *ch;
	tls_ctx *tls;
	tp_pool *tp;
	char auth[600];
};

cli_conn *cli_open(const cli_opts *o, char *err, size_t cap)
{
	cli_conn *c = mem_calloc(1, sizeof(*c));
	int rc = 0;
	if (!c) {
		snprintf(err, cap, "out of memory");
		return NULL;
	}
	c->o = *o;
	if (o->token)
		snprintf(c->auth, sizeof(c->auth), AUTH_PREFIX "%s", o->token);
	c->tp = tp_new();
	if (!c->tp || tp_add_set(c->tp, NULL, api_descriptor_set, api_descriptor_set_len)) {
		snprintf(err, cap, "the Collector API's descriptors do not load");
		cli_close(c);
		return NULL;
	}
	c->r = reactor_new(&rc);
	if (!c->r) {
		snprintf(err, cap, "no reactor: %s", strerror(-rc));
		cli_close(c);
		return NULL;
	}
	if (o->tls_ca) {
		tls_opts t = {.ca_file = o->tls_ca, .verify_peer = true, .alpn = "h2"};
		if (tls_ctx_new(&t, &c->tls, err, cap)) {
			cli_close(c);
			return NULL;
		}
		c->ch = client_channel_new_tls(c->r, o->node, MAX_MESSAGE, c->tls);
	} else {
		c->ch = client_channel_new(c->r, o->node, MAX_MESSAGE);
	}
	if (!c->ch) {
		snprintf(err, cap,
			 "'%s' is not an address the client can dial (HOST:PORT, a "
			 "numeric host or localhost)",
			 o->node);
		cli_close(c);
		return NULL;
	}
	return c;
}

void cli_close(cli_conn *c)
{
	if (!c)
		return;
	if (c->ch)
		client_channel_free(c->ch);
	for (int i = 0; c->r && i < 20; i++) /* the connection's last bytes */
		reactor_run_once(c->r, NS_PER_MS);
	if (c->r)
		reactor_free(c->r);
	tls_ctx_free(c->tls);
	if (c->tp)
		tp_free(c->tp);
	mem_free(c);
}

tp_pool *cli_types(cli_conn *c) { return c->tp; }

bool cli_method(cli_conn *c, const char *name, char *path, size_t cap, const tp_message **in,
		const tp_message **out, bool *server_streaming, char *err, size_t ecap)
{
	if (*name == '/')
		name++;
	const char *slash = strrchr(name, '/');
	if (!slash || slash == name || !slash[1]) {
		snprintf(err, ecap, "'%s' is not a method: give Service/Method", name);
		return false;
	}
	char svc[300];
	snprintf(svc, sizeof(svc), "%.*s", (int)(slash - name), name);
	const tp_service *s = tp_find_service(c->tp, NULL, svc);
	if (!s && !strchr(svc, '.')) {
		char full[320];
		snprintf(full, sizeof(full), "collector.%s", svc);
		s = tp_find_service(c->tp, NULL, full);
	}
	if (!s) {
		snprintf(err, ecap, "service %s is not one of the Collector API's", svc);
		return false;
	}
	const tp_service_info *si = tp_service_get(s);
	for (size_t i = 0; i < si->n_methods; i++) {
		if (strcmp(si->methods[i].name, slash + 1))
			continue;
		if (si->methods[i].client_streaming) {
			snprintf(err, ecap, "%s takes a stream: not callable with one JSON request",
				 slash + 1);
			return false;
		}
		snprintf(path, cap, "/%s/%s", si->full_name, slash + 1);
		*in = si->methods[i].input;
		*out = si->methods[i].output;
		*server_streaming = si->methods[i].server_streaming;
		return true;
	}
	snprintf(err, ecap, "%s has no method %s", si->full_name, slash + 1);
	return false;
}

/* ---- one call, driven to its end ---- */

/* The next request message of a client stream: 1 with *data and *len set, 0 at its end,
 * -1 to give up (the call is cancelled). */
typedef int (*next_fn)(void *ctx, const uint8_t **data, size_t *len);

typedef struct run {
	bool done, writable;
	int code;
	char *msg;
	size_t cap;
	buf *resp; /* unary: the one response */
	cli_message_fn on_message;
	void *ctx;
	bool stopped;
	client_call *call;
} run;

static void on_message(client_call *cc, const uint8_t *data, size_t len)
{
	run *r = client_call_user(cc);
	if (r->resp) {
		buf_reset(r->resp);
		buf_append(r->resp, data, len);
	} else if (!r->stopped && r->on_message(r->ctx, data, len)) {
		r->stopped = true;
		client_call_cancel(cc);
	}
}

static void on_done(client_call *cc, int code, const char *message)
{
	(void)cc;
	run *r = client_call_user(cc);
	r->done = true;
	r->code = code;
	r->call = NULL;
	snprintf(r->msg, r->cap, "%s", message ? message : "");
}

static void on_writable(client_call *cc)
{
	run *r = client_call_user(cc);
	r->writable = true;
}

static const client_call_ops ops = {
	.on_message = on_message, .on_done = on_done, .on_writable = on_writable};

/* Starts the call with the request messages next gives (one: req), sent only as fast as
 * the server takes them, and runs the reactor until the call ends. */
static int drive_stream(cli_conn *c, const char *path, next_fn next, void *ctx, run *r)
{
	call_md md[1];
	size_t n = 0;
	if (c->auth[0])
		md[n++] = (call_md){"authorization", 13, (const uint8_t *)c->auth, strlen(c->auth)};
	client_call_args a = {.path = path,
			      .timeout_ns = c->o.timeout_ns,
			      .md = md,
			      .nmd = n,
			      .ops = &ops,
			      .user = r};
	r->call = client_call_start(c->ch, &a);
	if (!r->call) {
		snprintf(r->msg, r->cap, "the call could not start");
		return -1;
	}
	bool sending = true;
	while (!r->done) {
		while (sending && r->call && !client_call_send_would_block(r->call)) {
			const uint8_t *data;
			size_t len;
			int more = next(ctx, &data, &len);
			if (more < 0) {
				snprintf(r->msg, r->cap, "the request stream could not be read");
				client_call_cancel(r->call);
				return -1;
			}
			if (!more) {
				client_call_half_close(r->call);
				sending = false;
			} else if (client_call_send(r->call, data, len)) {
				sending = false; /* the call ended: on_done says how */
			}
		}
		r->writable = false;
		reactor_run_once(c->r, 50 * NS_PER_MS);
	}
	return r->code;
}

typedef struct one_req {
	const uint8_t *data;
	size_t len;
	bool sent;
} one_req;

static int next_one(void *ctx, const uint8_t **data, size_t *len)
{
	one_req *o = ctx;
	if (o->sent)
		return 0;
	o->sent = true;
	*data = o->data;
	*len = o->len;
	return 1;
}

static int drive(cli_conn *c, const char *path, const uint8_t *req, size_t len, run *r)
{
	one_req o = {req, len, false};
	return drive_stream(c, path, next_one, &o, r);
}

int cli_client_stream(cli_conn *c, const char *path,
		      int (*next)(void *, const uint8_t **, size_t *), void *ctx, buf *resp,
		      char *msg, size_t cap)
{
	run r = {.msg = msg, .cap = cap, .resp = resp};
	return drive_stream(c, path, next, ctx, &r);
}

int cli_unary(cli_conn *c, const char *path, const uint8_t *req, size_t len, buf *resp, char *msg,
	      size_t cap)
{
	run r = {.msg = msg, .cap = cap, .resp = resp};
	return drive(c, path, req, len, &r);
}

int cli_stream(cli_conn *c, const char *path, const uint8_t *req, size_t len, cli_message_fn on_msg,
	       void *ctx, char *msg, size_t cap)
{
	run r = {.msg = msg, .cap = cap, .on_message = on_msg, .ctx = ctx};
	return drive(c, path, req, len, &r);
}

int cli_unary_json(cli_conn *c, const char *method, const char *json, buf *out, char *msg,
		   size_t cap)
{
	char path[600];
	const tp_message *in, *resp_type;
	bool streaming;
	if (!cli_method(c, method, path, sizeof(path), &in, &resp_type, &streaming, msg, cap))
		return GRPC_INVALID_ARGUMENT;
	if (streaming) {
		snprintf(msg, cap, "%s answers a stream: not a unary method", path);
		return GRPC_INVALID_ARGUMENT;
	}
	buf req = BUF_INIT, resp = BUF_INIT;
	int code;
	if (json_to_proto(c->tp, c->o.ns, in, json, strlen(json), &req)) {
		snprintf(msg, cap, "the request is not a %s: %s", tp_message_get(in)->full_name,
			 store_err_msg());
		code = GRPC_INVALID_ARGUMENT;
	} else {
		code = cli_unary(c, path, req.data, req.len, &resp, msg, cap);
		if (code == GRPC_OK && json_from_proto(c->tp, c->o.ns, resp_type, resp.data,
						       resp.len, JSON_OPAQUE_ANY, out)) {
			snprintf(msg, cap, "the answer does not render as JSON: %s",
				 store_err_msg());
			code = GRPC_INTERNAL;
		}
	}
	buf_free(&req);
	buf_free(&resp);
	return code;
}
