/* A whole call forwarded to another gRPC server (proxy.h, proxy_forward_method): the server
 * call c (h2/call.h) on one side, a client call on the reactor's cached channel to the
 * target (h2/client.h) on the other, messages passed on as raw bytes. Flow control is the
 * two sides' own: when one side's output is over its high-water mark, input from the other
 * side is paused (its HTTP/2 window is not given back), and resumed from the side's
 * on_writable, so a slow client or a slow handler holds the node to a bounded amount. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "h2/client.h"
#include "services/auth.h"
#include "services/proxy.h"
#include "services/route.h"
#include "services/svc.h"

/* Where c goes, set by proxy_forward_method (in c's arena) and read at on_start. */
typedef struct fwd_target {
	const char *target, *path, *ns;
	size_t max_message_bytes;
	bool node; /* the target is a Collector node (proxy_args.node) */
} fwd_target;

/* One forwarded call in flight: both sides alive until the client call's on_done. */
typedef struct fwd {
	call *c;	 /* a reference held until on_done */
	client_call *cc; /* NULL once it is over */
	const char *target;
	bool got_messages; /* a response message came: the handler was reached */
} fwd;

/* Request metadata passed on: the client's custom headers (the h2 layer leaves out the
 * pseudo, hop-by-hop and grpc- ones), not its user-agent (the node's client sends its
 * own) nor the hop count and namespace (replaced), nor its token: this node's token means
 * nothing to a handler or another node, and is not theirs to see (a node gets the node
 * credential instead). */
static bool md_passed(const call_md *m)
{
	return strcmp(m->name, "user-agent") && strcmp(m->name, DISPATCH_HOPS_HEADER) &&
	       strcmp(m->name, SVC_NAMESPACE_HEADER) && strcmp(m->name, "authorization");
}

static void fwd_end(fwd *f)
{
	call_set_user(f->c, NULL);
	call_unref(f->c);
	mem_free(f);
}

/* ---- the handler's side (client call) ---- */

static void copy_md(fwd *f, client_call *cc, bool from_trailing, bool to_trailing)
{
	for (size_t i = 0; i < client_call_md_count(cc, from_trailing); i++) {
		const call_md *m = client_call_md_at(cc, from_trailing, i);
		/* A value the server call refuses (not printable) is dropped, not fatal. */
		if (to_trailing)
			call_add_trailing_md(f->c, m->name, m->value, m->value_len);
		else
			call_add_initial_md(f->c, m->name, m->value, m->value_len);
	}
}

static void cc_headers(client_call *cc)
{
	fwd *f = client_call_user(cc);
	/* A trailers-only response's metadata is trailing: on_done passes it. */
	if (!client_call_trailers_only(cc))
		copy_md(f, cc, false, false);
}

static void cc_message(client_call *cc, const uint8_t *data, size_t len)
{
	fwd *f = client_call_user(cc);
	f->got_messages = true;
	int rc = call_send_raw(f->c, data, len);
	if (rc) {
		if (rc == -EMSGSIZE)
			call_finish(
				f->c, GRPC_RESOURCE_EXHAUSTED,
				"the handler's response is larger than the node's message limit");
		else if (rc == -ENOMEM)
			call_finish(f->c, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		client_call_cancel(cc); /* on_done follows */
		return;
	}
	/* The client reads slower than the handler writes: stop reading the handler until
	 * the client took some (c_writable). */
	if (call_send_would_block(f->c))
		client_call_pause(cc);
}

static void cc_writable(client_call *cc)
{
	fwd *f = client_call_user(cc);
	call_resume_input(f->c);
}

static void cc_done(client_call *cc, int code, const char *message)
{
	fwd *f = client_call_user(cc);
	f->cc = NULL;
	call *c = f->c;
	if (!call_done(c)) {
		if (client_call_trailers_only(cc))
			copy_md(f, cc, false, true);
		copy_md(f, cc, true, true);
		bool reached = f->got_messages || client_call_md_count(cc, false) ||
			       client_call_trailers_only(cc) || client_call_md_count(cc, true);
		/* The status of a handler that never answered is the node's to explain. */
		if (code == GRPC_UNAVAILABLE && !reached)
			call_finishf(c, code, "the handler at %s is unavailable: %s", f->target,
				     message ? message : "no answer");
		else
			call_finish(c, code, message);
	}
	fwd_end(f);
}

static const client_call_ops cc_ops = {
	.on_headers = cc_headers,
	.on_message = cc_message,
	.on_done = cc_done,
	.on_writable = cc_writable,
};

/* ---- the client's side (server call) ---- */

static void c_start(call *c)
{
	const fwd_target *t = call_user(c);
	call_set_user(c, NULL);
	long hops = route_hops_of(c);
	if (hops < 0) {
		call_finish(c, GRPC_INVALID_ARGUMENT, DISPATCH_HOPS_HEADER " must be a number");
		return;
	}
	if (hops >= DISPATCH_HOP_LIMIT) {
		call_finishf(c, GRPC_FAILED_PRECONDITION,
			     "the call went through %ld nodes or nested runs, the limit", hops);
		return;
	}
	size_t n = 0, count = call_md_count(c);
	call_md *md = call_alloc(c, (count + 3) * sizeof(*md));
	call_md *with = call_alloc(c, (count + 3) * sizeof(*md));
	char *next = call_alloc(c, 12);
	fwd *f = mem_calloc(1, sizeof(*f));
	if (!md || !with || !next || !f) {
		mem_free(f);
		call_finish(c, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	for (size_t i = 0; i < count; i++)
		if (md_passed(call_md_at(c, i)))
			md[n++] = *call_md_at(c, i);
	snprintf(next, 12, "%ld", hops + 1);
	md[n++] = (call_md){DISPATCH_HOPS_HEADER, strlen(DISPATCH_HOPS_HEADER),
			    (const uint8_t *)next, strlen(next)};
	md[n++] = (call_md){SVC_NAMESPACE_HEADER, strlen(SVC_NAMESPACE_HEADER),
			    (const uint8_t *)t->ns, strlen(t->ns)};
	int64_t timeout = 0, deadline = call_deadline(c);
	if (deadline != INT64_MAX) {
		timeout = deadline - reactor_now(call_reactor(c));
		if (timeout < 1)
			timeout = 1; /* already due: the handler answers DEADLINE_EXCEEDED */
	}
	client_channel *ch =
		proxy_channel(call_reactor(c), t->target, t->max_message_bytes, t->node);
	const call_md *out = proxy_md_for_node(md, n, t->node, with, &n);
	client_call_args a = {.path = t->path,
			      .timeout_ns = timeout,
			      .md = out,
			      .nmd = n,
			      .ops = &cc_ops,
			      .user = f};
	f->c = c;
	f->target = t->target;
	f->cc = ch ? client_call_start(ch, &a) : NULL;
	if (!f->cc) {
		mem_free(f);
		call_finishf(c, GRPC_UNAVAILABLE,
			     "the handler at %s cannot be called from this node (shutting down, "
			     "or out of memory)",
			     t->target);
		return;
	}
	call_ref(c);
	call_set_user(c, f);
}

/* One request message (a unary or server-streaming call's only one, after the client's
 * half-close; each message of a client stream). */
static void c_raw(call *c, const uint8_t *data, size_t len)
{
	fwd *f = call_user(c);
	if (!f || !f->cc)
		return;
	if (client_call_send(f->cc, data, len)) {
		call_finish(c, GRPC_RESOURCE_EXHAUSTED, "the request could not be passed on");
		client_call_cancel(f->cc); /* on_done follows, with c done */
		return;
	}
	method_kind k = call_method(c)->kind;
	if (k == METHOD_UNARY || k == METHOD_SERVER_STREAM)
		client_call_half_close(f->cc);
	else if (client_call_send_would_block(f->cc))
		call_pause_input(c); /* the handler reads slower: until cc_writable */
}

static void c_half_close(call *c)
{
	fwd *f = call_user(c);
	if (f && f->cc)
		client_call_half_close(f->cc);
}

static void c_writable(call *c)
{
	fwd *f = call_user(c);
	if (f && f->cc)
		client_call_resume(f->cc);
}

static void c_cancel(call *c)
{
	fwd *f = call_user(c);
	if (f && f->cc)
		client_call_cancel(f->cc); /* cc_done follows at once */
}

#define FWD_HANDLERS                                                                               \
	{                                                                                          \
		.on_start = c_start, .on_raw = c_raw, .on_half_close = c_half_close,               \
		.on_writable = c_writable, .on_cancel = c_cancel                                   \
	}

/* Who may call a registered service: a writer of the call's namespace (the metadata's,
 * which is where the fallback found the service), or a linked node passing a call on. */
#define FWD_ACCESS                                                                                 \
	{                                                                                          \
		.scopes = AUTH_WRITE | AUTH_NODE                                                   \
	}

/* Paths vary per call: the method's path is left empty, the call keeps its own. */
static const method fwd_methods[] = {
	{"", METHOD_UNARY, NULL, NULL, FWD_HANDLERS, NULL, FWD_ACCESS},
	{"", METHOD_CLIENT_STREAM, NULL, NULL, FWD_HANDLERS, NULL, FWD_ACCESS},
	{"", METHOD_SERVER_STREAM, NULL, NULL, FWD_HANDLERS, NULL, FWD_ACCESS},
	{"", METHOD_BIDI, NULL, NULL, FWD_HANDLERS, NULL, FWD_ACCESS},
};

const method *proxy_forward_method(call *c, method_kind kind, const char *target, const char *path,
				   const char *ns, size_t max_message_bytes, bool node)
{
	fwd_target *t = call_alloc(c, sizeof(*t));
	size_t tl = strlen(target) + 1, pl = strlen(path) + 1, nl = strlen(ns) + 1;
	char *s = call_alloc(c, tl + pl + nl);
	if (!t || !s || (unsigned)kind > METHOD_BIDI)
		return NULL;
	memcpy(s, target, tl);
	memcpy(s + tl, path, pl);
	memcpy(s + tl + pl, ns, nl);
	*t = (fwd_target){s, s + tl, s + tl + pl, max_message_bytes, node};
	call_set_user(c, t);
	return &fwd_methods[kind];
}
