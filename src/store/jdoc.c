#include "store/jdoc.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/hex.h"
#include "base/jsonstr.h"
#include "base/mem.h"
#include "base/utf8.h"
#include "store/err.h"

typedef struct jparser {
	jdoc *d;
	const char *s;
	size_t len;
	size_t pos;
	int max_depth;
} jparser;

static int perr(jparser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int perr(jparser *p, const char *fmt, ...)
{
	char what[96];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	return store_err_set(-EINVAL, "invalid JSON: %s at byte %zu", what, p->pos);
}

static int new_node(jparser *p, jdoc_type t, uint32_t *idx)
{
	jdoc *d = p->d;
	if (d->n == d->cap) {
		uint32_t cap = d->cap ? d->cap * 2 : 64;
		jdoc_node *nn = mem_realloc(d->nodes, (size_t)cap * sizeof *nn);
		if (!nn)
			return -ENOMEM;
		d->nodes = nn;
		d->cap = cap;
	}
	*idx = d->n++;
	d->nodes[*idx] = (jdoc_node){.type = (uint8_t)t, .off = (uint32_t)p->pos};
	return 0;
}

static void skip_ws(jparser *p)
{
	while (p->pos < p->len) {
		char c = p->s[p->pos];
		if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
			break;
		p->pos++;
	}
}

static int hex4(const char *s, uint32_t *out)
{
	uint32_t v = 0;
	for (int i = 0; i < 4; i++) {
		int d = hex_value((unsigned char)s[i]);
		if (d < 0)
			return -1;
		v = v << 4 | (uint32_t)d;
	}
	*out = v;
	return 0;
}

static uint32_t utf8_len(uint32_t cp)
{
	return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
}

/* At the opening quote. */
static int parse_string(jparser *p)
{
	uint32_t idx;
	int rc = new_node(p, JDOC_STRING, &idx);
	if (rc)
		return rc;
	const unsigned char *s = (const unsigned char *)p->s;
	size_t i = ++p->pos;
	uint32_t ulen = 0;
	bool esc = false;
	for (;;) {
		while (i < p->len && jsonstr_plain(s[i])) {
			i++;
			ulen++;
		}
		if (i >= p->len) {
			p->pos = i;
			return perr(p, "unterminated string");
		}
		unsigned char c = s[i];
		if (c == '"')
			break;
		if (c < 0x20) {
			p->pos = i;
			return perr(p, "control character in string");
		}
		if (c >= 0x80) {
			size_t k = utf8_seq_len(s + i, p->len - i);
			if (!k) {
				p->pos = i;
				return perr(p, "invalid UTF-8");
			}
			i += k;
			ulen += (uint32_t)k;
			continue;
		}
		/* a backslash */
		esc = true;
		p->pos = i;
		if (i + 1 >= p->len)
			return perr(p, "unterminated string");
		c = s[i + 1];
		if (c != 'u') {
			if (!strchr("\"\\/bfnrt", c) || !c)
				return perr(p, "bad escape");
			i += 2;
			ulen++;
			continue;
		}
		uint32_t cp;
		if (i + 6 > p->len || hex4(p->s + i + 2, &cp))
			return perr(p, "bad \\u escape");
		i += 6;
		if (cp >= 0xdc00 && cp <= 0xdfff)
			return perr(p, "unpaired surrogate");
		if (cp >= 0xd800 && cp <= 0xdbff) {
			uint32_t lo;
			if (i + 6 > p->len || s[i] != '\\' || s[i + 1] != 'u' ||
			    hex4(p->s + i + 2, &lo) || lo < 0xdc00 || lo > 0xdfff)
				return perr(p, "unpaired surrogate");
			i += 6;
			cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
		}
		ulen += utf8_len(cp);
	}
	jdoc_node *n = &p->d->nodes[idx];
	n->esc = esc;
	n->len = (uint32_t)(i - n->off - 1);
	n->off++;
	n->ulen = ulen;
	p->pos = i + 1;
	n->end = p->d->n;
	return 0;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

static int parse_number(jparser *p)
{
	uint32_t idx;
	int rc = new_node(p, JDOC_NUMBER, &idx);
	if (rc)
		return rc;
	const char *s = p->s;
	size_t i = p->pos;
	bool frac = false;
	if (s[i] == '-')
		i++;
	if (i < p->len && s[i] == '0') {
		i++;
	} else if (i < p->len && is_digit(s[i])) {
		while (i < p->len && is_digit(s[i]))
			i++;
	} else {
		p->pos = i;
		return perr(p, "bad number");
	}
	if (i < p->len && s[i] == '.') {
		frac = true;
		if (++i >= p->len || !is_digit(s[i])) {
			p->pos = i;
			return perr(p, "bad number");
		}
		while (i < p->len && is_digit(s[i]))
			i++;
	}
	if (i < p->len && (s[i] == 'e' || s[i] == 'E')) {
		frac = true;
		i++;
		if (i < p->len && (s[i] == '+' || s[i] == '-'))
			i++;
		if (i >= p->len || !is_digit(s[i])) {
			p->pos = i;
			return perr(p, "bad number");
		}
		while (i < p->len && is_digit(s[i]))
			i++;
	}
	jdoc_node *n = &p->d->nodes[idx];
	n->esc = frac;
	n->len = (uint32_t)(i - p->pos);
	n->end = p->d->n;
	p->pos = i;
	return 0;
}

static int parse_value(jparser *p, int depth);

static int parse_container(jparser *p, int depth, bool object)
{
	if (depth >= p->max_depth)
		return perr(p, "nesting deeper than %d", p->max_depth);
	uint32_t idx;
	int rc = new_node(p, object ? JDOC_OBJECT : JDOC_ARRAY, &idx);
	if (rc)
		return rc;
	char close = object ? '}' : ']';
	uint32_t count = 0;
	p->pos++;
	skip_ws(p);
	if (p->pos < p->len && p->s[p->pos] == close) {
		p->pos++;
	} else {
		for (;;) {
			skip_ws(p);
			if (object) {
				if (p->pos >= p->len || p->s[p->pos] != '"')
					return perr(p, "expected a member name");
				if ((rc = parse_string(p)))
					return rc;
				skip_ws(p);
				if (p->pos >= p->len || p->s[p->pos] != ':')
					return perr(p, "expected ':'");
				p->pos++;
			}
			if ((rc = parse_value(p, depth + 1)))
				return rc;
			count++;
			skip_ws(p);
			if (p->pos < p->len && p->s[p->pos] == ',') {
				p->pos++;
				continue;
			}
			if (p->pos < p->len && p->s[p->pos] == close) {
				p->pos++;
				break;
			}
			return perr(p, "expected ',' or '%c'", close);
		}
	}
	jdoc_node *n = &p->d->nodes[idx];
	n->len = count;
	n->end = p->d->n;
	return 0;
}

static int parse_literal(jparser *p, const char *word, jdoc_type t)
{
	size_t n = strlen(word);
	if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0)
		return perr(p, "unexpected character");
	uint32_t idx;
	int rc = new_node(p, t, &idx);
	if (rc)
		return rc;
	p->pos += n;
	p->d->nodes[idx].len = (uint32_t)n;
	p->d->nodes[idx].end = p->d->n;
	return 0;
}

static int parse_value(jparser *p, int depth)
{
	skip_ws(p);
	if (p->pos >= p->len)
		return perr(p, "unexpected end");
	char c = p->s[p->pos];
	switch (c) {
	case '{':
		return parse_container(p, depth, true);
	case '[':
		return parse_container(p, depth, false);
	case '"':
		return parse_string(p);
	case 't':
		return parse_literal(p, "true", JDOC_TRUE);
	case 'f':
		return parse_literal(p, "false", JDOC_FALSE);
	case 'n':
		return parse_literal(p, "null", JDOC_NULL);
	default:
		if (c == '-' || is_digit(c))
			return parse_number(p);
		return perr(p, "unexpected character");
	}
}

int jdoc_parse(jdoc *d, const char *text, size_t len, int max_depth)
{
	*d = (jdoc){.src = text};
	jparser p = {.d = d, .s = text, .len = len, .max_depth = max_depth};
	if (len >= UINT32_MAX)
		return perr(&p, "document larger than 4 GiB");
	int rc = parse_value(&p, 0);
	if (!rc) {
		skip_ws(&p);
		if (p.pos != len)
			rc = perr(&p, "trailing characters");
	}
	return rc == -ENOMEM ? store_err_set(rc, "out of memory") : rc;
}

void jdoc_free(jdoc *d)
{
	mem_free(d->nodes);
	d->nodes = NULL;
	d->n = d->cap = 0;
}

static size_t put_utf8(char *dst, uint32_t cp)
{
	if (cp < 0x80) {
		dst[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		dst[0] = (char)(0xc0 | cp >> 6);
		dst[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		dst[0] = (char)(0xe0 | cp >> 12);
		dst[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		dst[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	dst[0] = (char)(0xf0 | cp >> 18);
	dst[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	dst[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	dst[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* Walks the unescaped bytes of j in chunks: copies them to dst, or when cmp is set compares
 * them with cmp instead (returns false at the first difference). */
static bool unescape_walk(const jdoc *d, const jdoc_node *j, char *dst, const char *cmp)
{
	const char *s = d->src + j->off, *end = s + j->len;
	char one[4];
	while (s < end) {
		const char *chunk = s;
		size_t n;
		const char *bs = j->esc ? memchr(s, '\\', (size_t)(end - s)) : NULL;
		if (bs == s) {
			char c = s[1];
			s += 2;
			chunk = one;
			n = 1;
			switch (c) {
			case 'b':
				one[0] = '\b';
				break;
			case 'f':
				one[0] = '\f';
				break;
			case 'n':
				one[0] = '\n';
				break;
			case 'r':
				one[0] = '\r';
				break;
			case 't':
				one[0] = '\t';
				break;
			case 'u': {
				/* The parser validated the escape; the zeros only spare -O3's
				 * flow analysis a path where hex4 fails. */
				uint32_t cp = 0, lo = 0xdc00;
				hex4(s, &cp);
				s += 4;
				if (cp >= 0xd800 && cp <= 0xdbff) {
					hex4(s + 2, &lo);
					s += 6;
					cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
				}
				n = put_utf8(one, cp);
				break;
			}
			default:
				one[0] = c; /* '"', '\\', '/' */
			}
		} else {
			n = (size_t)((bs ? bs : end) - s);
			s += n;
		}
		if (cmp) {
			if (memcmp(cmp, chunk, n) != 0)
				return false;
			cmp += n;
		} else {
			memcpy(dst, chunk, n);
			dst += n;
		}
	}
	return true;
}

void jdoc_unescape(const jdoc *d, const jdoc_node *j, char *dst) { unescape_walk(d, j, dst, NULL); }

bool jdoc_string_eq(const jdoc *d, const jdoc_node *j, const char *s, size_t n)
{
	return j->ulen == n && unescape_walk(d, j, NULL, s);
}

int jdoc_write(buf *b, const jdoc *d, uint32_t at)
{
	const jdoc_node *j = &d->nodes[at];
	switch (j->type) {
	case JDOC_NULL:
		return buf_puts(b, "null");
	case JDOC_FALSE:
		return buf_puts(b, "false");
	case JDOC_TRUE:
		return buf_puts(b, "true");
	case JDOC_NUMBER:
		return buf_append(b, d->src + j->off, j->len);
	case JDOC_STRING: /* as written, escapes and quotes included */
		return buf_append(b, d->src + j->off - 1, j->len + 2);
	default:
		break;
	}
	bool obj = j->type == JDOC_OBJECT;
	buf_putc(b, obj ? '{' : '[');
	for (uint32_t i = at + 1, k = 0; i < j->end; k++) {
		if (k)
			buf_putc(b, ',');
		jdoc_write(b, d, i);
		i = d->nodes[i].end;
		if (obj) {
			buf_putc(b, ':');
			jdoc_write(b, d, i);
			i = d->nodes[i].end;
		}
	}
	return buf_putc(b, obj ? '}' : ']');
}
