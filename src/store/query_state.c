/* The state of a compile: the parameters it binds, and its first failure with a message
 * naming the offending input. */
#include <errno.h>
#include <stdarg.h>

#include "base/hex.h"
#include "base/mem.h"
#include "store/query_int.h"

const char *const query_ty_names[] = {
	"untyped", "string",   "number", "int64",     "bool",	  "enum",	 "bytes",
	"message", "repeated", "map",	 "timestamp", "duration", "time column",
};

const char *query_quote(const char *s, char out[QUOTE_MAX])
{
	size_t o = 0;
	for (size_t i = 0; s[i]; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (o > QUOTE_MAX - 8) {
			memcpy(out + o, "...", 4);
			return out;
		}
		if (ch >= 0x20 && ch < 0x7f && ch != '\\') {
			out[o++] = (char)ch;
		} else {
			memcpy(out + o, "\\x", 2);
			out[o + 2] = hex_lower(ch >> 4);
			out[o + 3] = hex_lower(ch);
			o += 4;
		}
	}
	out[o] = '\0';
	return out;
}

__attribute__((format(printf, 2, 3))) int query_fail(cc *c, const char *fmt, ...)
{
	if (c->rc)
		return c->rc;
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	return c->rc = store_err_set(-EINVAL, "%s", msg);
}

void query_fail_errno(cc *c, int rc, const char *what)
{
	if (c->rc)
		return;
	c->rc = store_err_set(rc, "%s: %s", what, strerror(-rc));
}

/* Appends a parameter value and returns its number (?N), or 0 after a failure. */
int query_param(cc *c, query_bindval v)
{
	query *q = c->q;
	if (c->rc)
		return 0;
	if (q->nbinds == QUERY_MAX_BINDS) {
		query_fail(c, "query too large: more than %d parameters", QUERY_MAX_BINDS);
		return 0;
	}
	if (q->nbinds == q->cap) {
		size_t cap = q->cap ? 2 * q->cap : 16;
		query_bindval *nb = mem_realloc(q->binds, cap * sizeof *nb);
		if (!nb) {
			query_fail_errno(c, -ENOMEM, "query");
			return 0;
		}
		q->binds = nb;
		q->cap = cap;
	}
	if (v.type == QUERY_BIND_TEXT) {
		char *t = mem_alloc(v.u.text.len + 1);
		if (!t) {
			query_fail_errno(c, -ENOMEM, "query");
			return 0;
		}
		memcpy(t, v.u.text.p, v.u.text.len);
		t[v.u.text.len] = '\0';
		v.u.text.p = t;
	}
	q->binds[q->nbinds++] = v;
	return (int)q->nbinds;
}

int query_param_text(cc *c, const char *s, size_t len)
{
	return query_param(c, (query_bindval){.type = QUERY_BIND_TEXT, .u.text = {s, len}});
}

int query_param_int(cc *c, int64_t i)
{
	return query_param(c, (query_bindval){.type = QUERY_BIND_INT, .u.i = i});
}

int query_param_real(cc *c, double d)
{
	return query_param(c, (query_bindval){.type = QUERY_BIND_REAL, .u.d = d});
}
