/* Requests on the node's port that are not calls: GET /healthz for plain HTTP probes,
 * GET /metrics for Prometheus and the built-in files (the web console), over HTTP/2 and
 * HTTP/1.1 alike. */
#include <string.h>

#include "h2/metrics.h"
#include "h2/server_int.h"

const char *web_reason(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 304:
		return "Not Modified";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 408:
		return "Request Timeout";
	case 409:
		return "Conflict";
	case 413:
		return "Content Too Large";
	case 415:
		return "Unsupported Media Type";
	case 429:
		return "Too Many Requests";
	case 431:
		return "Request Header Fields Too Large";
	case 499:
		return "Client Closed Request";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	case 505:
		return "HTTP Version Not Supported";
	default:
		return "Unknown";
	}
}

static bool origin_allowed(const h2_server *s, const uint8_t *o, size_t n)
{
	for (const char *p = s->o.cors_origins; p && *p;) {
		p += strspn(p, ", ");
		size_t len = strcspn(p, ", ");
		if ((len == 1 && *p == '*') || (len && len == n && !memcmp(p, o, n)))
			return true;
		p += len;
	}
	return false;
}

/* The request's allowed Origin (NUL-terminated in c's arena), NULL when none. */
static const char *cors_origin(call *c)
{
	const call_md *o = call_md_get(c, "origin");
	if (!o || !c->conn || !origin_allowed(c->conn->e->s, o->value, o->value_len))
		return NULL;
	return arena_strndup(&c->arena, o->value, o->value_len);
}

void web_cors_headers(call *c, void (*add)(void *arg, const char *name, const char *value),
		      void *arg)
{
	const char *origin = cors_origin(c);
	if (!origin)
		return;
	add(arg, "access-control-allow-origin", origin);
	add(arg, "vary", "Origin");
	add(arg, "access-control-expose-headers",
	    "grpc-status, grpc-message, grpc-status-details-bin, content-type");
	if (!c->is_options)
		return;
	/* A preflight: whatever headers the page asks to send are metadata to us. */
	const call_md *rh = call_md_get(c, "access-control-request-headers");
	const char *headers = rh ? arena_strndup(&c->arena, rh->value, rh->value_len) : NULL;
	add(arg, "access-control-allow-methods", "POST, GET, OPTIONS");
	add(arg, "access-control-allow-headers",
	    headers ? headers
		    : "content-type, x-grpc-web, x-user-agent, grpc-timeout, "
		      "connect-protocol-version, connect-timeout-ms, x-collector-namespace");
	add(arg, "access-control-max-age", "7200");
}

/* The path without its query string. */
static bool path_is(const call *c, const char *want)
{
	size_t n = strlen(want);
	return c->path && c->path_len >= n && !memcmp(c->path, want, n) &&
	       (c->path_len == n || c->path[n] == '?');
}

static void answer(call *c, int status, const char *ctype, const char *text)
{
	c->http_status = status;
	c->resp_ctype = ctype;
	buf_reset(&c->body_out);
	if (text)
		buf_puts(&c->body_out, text);
}

static void metrics_page(h2_endpoint *e, call *c)
{
	h2_server *s = e->s;
	buf *out = &c->body_out;
	buf_reset(out);
	if (s->metrics)
		metrics_render(s->metrics, out);
	if (s->pool)
		buf_printf(
			out,
			"# HELP collector_pool_queue_depth Jobs waiting for a pool thread.\n"
			"# TYPE collector_pool_queue_depth gauge\n"
			"collector_pool_queue_depth %zu\n"
			"# HELP collector_pool_jobs_cancelled_total Jobs dropped from the queue.\n"
			"# TYPE collector_pool_jobs_cancelled_total counter\n"
			"collector_pool_jobs_cancelled_total %zu\n",
			pool_queued(s->pool), pool_skipped(s->pool));
	buf_printf(out,
		   "# HELP collector_buffered_bytes Message bytes the connections hold now.\n"
		   "# TYPE collector_buffered_bytes gauge\n"
		   "collector_buffered_bytes %zu\n",
		   atomic_load_explicit(&s->held, memory_order_relaxed));
	if (s->web.metrics)
		s->web.metrics(s->web.ctx, out);
	c->http_status = out->failed ? 500 : 200;
	c->resp_ctype = "text/plain; version=0.0.4; charset=utf-8";
	if (out->failed)
		answer(c, 500, "text/plain", NULL);
}

static const h2_asset *find_asset(const h2_server *s, const call *c)
{
	for (size_t i = 0; i < s->o.n_assets; i++)
		if (path_is(c, s->o.assets[i].path))
			return &s->o.assets[i];
	return NULL;
}

/* Whether If-None-Match names etag (a list, or *): the browser's copy is current. */
static bool etag_matches(call *c, const char *etag)
{
	const call_md *m = call_md_get(c, "if-none-match");
	if (!m)
		return false;
	size_t n = strlen(etag);
	for (size_t i = 0; i < m->value_len;) {
		while (i < m->value_len && (m->value[i] == ' ' || m->value[i] == ','))
			i++;
		size_t j = i;
		while (j < m->value_len && m->value[j] != ',')
			j++;
		size_t k = j;
		while (k > i && m->value[k - 1] == ' ')
			k--;
		const uint8_t *v = m->value + i;
		size_t len = k - i;
		if (len > 2 && !memcmp(v, "W/", 2)) {
			v += 2;
			len -= 2;
		}
		if ((len == 1 && *v == '*') || (len == n && !memcmp(v, etag, n)))
			return true;
		i = j;
	}
	return false;
}

/* The page runs the node's own script and style alone: no inline script, nothing from
 * another origin, calls to this origin only, never framed. */
#define ASSET_CSP                                                                                  \
	"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "          \
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

static void asset_answer(call *c, const h2_asset *a)
{
	static const struct {
		const char *name, *value;
	} hdrs[] = {
		{"cache-control", "no-cache"}, /* revalidated each time: cheap with the ETag */
		{"content-security-policy", ASSET_CSP},
		{"x-content-type-options", "nosniff"},
		{"referrer-policy", "no-referrer"},
	};
	int rc = call_add_initial_md(c, "etag", a->etag, strlen(a->etag));
	for (size_t i = 0; !rc && i < sizeof(hdrs) / sizeof(hdrs[0]); i++)
		rc = call_add_initial_md(c, hdrs[i].name, hdrs[i].value, strlen(hdrs[i].value));
	if (rc) {
		answer(c, 503, "text/plain", "out of memory\n");
		return;
	}
	if (etag_matches(c, a->etag)) {
		answer(c, 304, a->content_type, NULL);
		return;
	}
	answer(c, 200, a->content_type, NULL);
	if (buf_append(&c->body_out, a->data, a->len) || c->body_out.failed)
		answer(c, 503, "text/plain", "out of memory\n");
}

void web_answer(h2_endpoint *e, call *c)
{
	c->wire = WIRE_PLAIN;
	c->out_off = 0;
	bool healthz = path_is(c, "/healthz"), metrics = path_is(c, "/metrics");
	const h2_asset *asset = c->is_get ? find_asset(e->s, c) : NULL;
	if ((healthz || metrics) && !c->is_get) {
		answer(c, 405, "text/plain", "method not allowed\n");
	} else if (healthz) {
		bool serving =
			!e->goaway && (!e->s->web.serving || e->s->web.serving(e->s->web.ctx));
		if (serving)
			answer(c, 200, "text/plain", "ok\n");
		else
			answer(c, 503, "text/plain", "draining\n");
	} else if (metrics) {
		metrics_page(e, c);
	} else if (asset) {
		asset_answer(c, asset);
	} else if (c->is_options) {
		/* A browser's CORS preflight (its headers: web_cors_headers). */
		if (call_md_get(c, "origin") && cors_origin(c))
			answer(c, 204, "text/plain", NULL);
		else
			answer(c, 403, "text/plain", "origin not allowed (--cors-origin)\n");
	} else if (c->is_post) {
		answer(c, 415, "text/plain",
		       "unsupported content-type: application/grpc, application/grpc-web, "
		       "application/json or application/proto\n");
	} else if (c->is_get) {
		answer(c, 404, "text/plain", "not found\n");
	} else {
		answer(c, 405, "text/plain", "method not allowed\n");
	}
}
