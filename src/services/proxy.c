/* Forwarding a unary call: the request goes out on the reactor's channel to the target,
 * the one response message (or the status) comes back to the caller's done. */
#include "services/proxy.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "base/mem.h"
#include "h2/client.h"
#include "h2/status.h"

/* Targets a reactor keeps a channel to at once; beyond it the least recently used one
 * closes (its calls end CANCELLED). The mesh's peers are few; a node forwarding to more
 * targets than this pays a reconnect. */
#define PROXY_CHANNELS 64
/* Metadata entries of a unary forward (route.c sends three). */
#define PROXY_MAX_MD 8

typedef struct channel_slot {
	char target[128];
	bool tls;
	client_channel *ch;
	uint64_t used; /* the reactor's use count when last used */
} channel_slot;

/* One per reactor thread: channels live on their reactor. */
typedef struct proxy_local {
	reactor *r;
	channel_slot slots[PROXY_CHANNELS];
	uint64_t uses;
	bool draining;
} proxy_local;

static __thread proxy_local *local;

struct proxy_call {
	client_call *c;
	proxy_done_fn done;
	void *user;
	bool *unprocessed;
	uint8_t *resp; /* the response message, when one came */
	size_t len;
	int extra; /* messages beyond the first (a unary call has one) */
	/* Inside proxy_start: a call that ends there (a cancel after a failed send) is
	 * reported by proxy_start's NULL, not by done. */
	bool starting, ended;
};

static proxy_local *local_of(reactor *r)
{
	if (!local) {
		local = mem_calloc(1, sizeof(*local));
		if (local)
			local->r = r;
	}
	return local && local->r == r && !local->draining ? local : NULL;
}

static client_channel *channel_for(proxy_local *l, const char *target, size_t max_message,
				   struct tls_ctx *tls)
{
	channel_slot *free_slot = NULL, *oldest = NULL;
	for (size_t i = 0; i < PROXY_CHANNELS; i++) {
		channel_slot *s = &l->slots[i];
		if (s->ch && s->tls == (tls != NULL) && !strcmp(s->target, target)) {
			s->used = ++l->uses;
			return s->ch;
		}
		if (!s->ch && !free_slot)
			free_slot = s;
		if (s->ch && (!oldest || s->used < oldest->used))
			oldest = s;
	}
	if (strlen(target) >= sizeof(free_slot->target))
		return NULL;
	channel_slot *s = free_slot;
	if (!s) {
		client_channel_free(oldest->ch);
		oldest->ch = NULL;
		s = oldest;
	}
	s->ch = client_channel_new_tls(l->r, target, max_message, tls);
	if (!s->ch)
		return NULL;
	s->tls = tls != NULL;
	memcpy(s->target, target, strlen(target) + 1);
	s->used = ++l->uses;
	return s->ch;
}

static void on_message(client_call *c, const uint8_t *data, size_t len)
{
	proxy_call *p = client_call_user(c);
	if (p->resp || p->extra) {
		p->extra++;
		return;
	}
	p->resp = mem_alloc(len ? len : 1);
	if (!p->resp) {
		p->extra = -1; /* out of memory: reported at the end */
		return;
	}
	memcpy(p->resp, data, len);
	p->len = len;
}

static void on_done(client_call *c, int code, const char *message)
{
	proxy_call *p = client_call_user(c);
	if (p->starting) {
		p->ended = true;
		return;
	}
	if (p->unprocessed)
		*p->unprocessed = code != GRPC_OK && client_call_unprocessed(c);
	if (code == GRPC_OK && p->extra < 0)
		p->done(p->user, GRPC_RESOURCE_EXHAUSTED, "out of memory keeping the response",
			NULL, 0);
	else if (code == GRPC_OK && (p->extra || !p->resp))
		p->done(p->user, GRPC_INTERNAL,
			p->extra ? "the forwarded call answered more than one message"
				 : "the forwarded call answered no message",
			NULL, 0);
	else
		p->done(p->user, code, message, code == GRPC_OK ? p->resp : NULL,
			code == GRPC_OK ? p->len : 0);
	mem_free(p->resp);
	mem_free(p);
}

static const client_call_ops ops = {.on_message = on_message, .on_done = on_done};

static struct tls_ctx *node_tls;
static const char *node_credential;

void proxy_set_node_credential(const char *authorization) { node_credential = authorization; }

/* md with the node credential added for a call to a node (in extra, which the caller
 * gives room for n + 1 entries), or md itself. */
const call_md *proxy_md_for_node(const call_md *md, size_t n, bool node, call_md *extra,
				 size_t *nout)
{
	*nout = n;
	if (!node || !node_credential)
		return md;
	for (size_t i = 0; i < n; i++)
		if (!strcmp(md[i].name, "authorization"))
			return md;
	if (n)
		memcpy(extra, md, n * sizeof(*md));
	extra[n] = (call_md){"authorization", 13, (const uint8_t *)node_credential,
			     strlen(node_credential)};
	*nout = n + 1;
	return extra;
}

void proxy_set_node_tls(struct tls_ctx *t) { node_tls = t; }

client_channel *proxy_channel(reactor *r, const char *target, size_t max_message_bytes, bool node)
{
	proxy_local *l = local_of(r);
	return l ? channel_for(l, target, max_message_bytes, node ? node_tls : NULL) : NULL;
}

proxy_call *proxy_start(reactor *r, const proxy_args *a)
{
	client_channel *ch = proxy_channel(r, a->target, a->max_message_bytes, a->node);
	if (!ch)
		return NULL;
	int64_t timeout = 0;
	if (a->deadline_ns != INT64_MAX) {
		timeout = a->deadline_ns - reactor_now(r);
		if (timeout < 1)
			timeout = 1; /* already due: the far side answers DEADLINE_EXCEEDED */
	}
	proxy_call *p = mem_calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->done = a->done;
	p->user = a->user;
	p->unprocessed = a->unprocessed;
	call_md extra[PROXY_MAX_MD + 1];
	size_t nmd = a->nmd;
	const call_md *md = a->md;
	if (nmd <= PROXY_MAX_MD)
		md = proxy_md_for_node(a->md, a->nmd, a->node, extra, &nmd);
	client_call_args ca = {.path = a->path,
			       .timeout_ns = timeout,
			       .md = md,
			       .nmd = nmd,
			       .ops = &ops,
			       .user = p};
	p->c = client_call_start(ch, &ca);
	if (!p->c) {
		mem_free(p);
		return NULL;
	}
	p->starting = true;
	if (client_call_send(p->c, a->request, a->request_len))
		client_call_cancel(p->c); /* on_done runs now, seeing starting */
	else
		client_call_half_close(p->c);
	p->starting = false;
	if (p->ended) {
		mem_free(p->resp);
		mem_free(p);
		return NULL;
	}
	/* From here every end comes through on_done. */
	return p;
}

void proxy_cancel(proxy_call *p) { client_call_cancel(p->c); }

void proxy_reactor_drain(reactor *r)
{
	if (!local || local->r != r)
		return;
	local->draining = true;
	for (size_t i = 0; i < PROXY_CHANNELS; i++)
		if (local->slots[i].ch) {
			client_channel_free(local->slots[i].ch);
			local->slots[i].ch = NULL;
		}
}

void proxy_reactor_exit(reactor *r)
{
	if (!local || local->r != r)
		return;
	proxy_reactor_drain(r);
	mem_free(local);
	local = NULL;
}
