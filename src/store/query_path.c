#include "store/query_path.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "base/utf8.h"
#include "store/err.h"

static bool ident_start(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

static bool ident(const char *s, size_t n)
{
	if (!n || !ident_start(s[0]))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!ident_start(s[i]) && !is_digit(s[i]))
			return false;
	return true;
}

/* A quoted segment's name, from the byte after its opening quote; *i ends past the closing
 * one. What SQLite's JSON path cannot hold in quotes ('"'), and what would be read
 * differently from the JSON text it is compared with (escapes, control characters), is
 * refused. */
static int parse_quoted(const char *s, size_t len, size_t *i, query_path_seg *seg)
{
	size_t start = *i;
	while (*i < len && s[*i] != '"') {
		unsigned char ch = (unsigned char)s[*i];
		if (ch < 0x20 || ch == '\\')
			return store_err_set(-EINVAL, "a quoted segment cannot hold control "
						      "characters or '\\'");
		if (*i - start == QUERY_PATH_MAX_NAME)
			return store_err_set(-EINVAL, "quoted segment longer than 64 bytes");
		(*i)++;
	}
	if (*i == len)
		return store_err_set(-EINVAL, "a quoted segment needs its closing '\"'");
	size_t n = *i - start;
	(*i)++;
	if (!n)
		return store_err_set(-EINVAL, "empty quoted segment");
	if (!utf8_valid(s + start, n, true))
		return store_err_set(-EINVAL, "a quoted segment must be UTF-8");
	memcpy(seg->name, s + start, n);
	seg->name[n] = '\0';
	seg->quoted = !ident(seg->name, n);
	return 0;
}

int query_path_parse(const char *s, size_t len, query_path *p)
{
	size_t i = 0;
	p->nseg = 0;
	if (len == 0)
		return store_err_set(-EINVAL, "empty path");
	for (;;) {
		if (p->nseg == QUERY_PATH_MAX_SEGMENTS)
			return store_err_set(-EINVAL, "more than 16 segments");
		query_path_seg *seg = &p->seg[p->nseg++];
		size_t start = i;
		seg->quoted = false;
		if (i == len || s[i] == '.')
			return store_err_set(-EINVAL, "empty segment");
		if (s[i] == '"') {
			i++;
			int rc = parse_quoted(s, len, &i, seg);
			if (rc)
				return rc;
		} else {
			if (!ident_start(s[i]))
				return store_err_set(
					-EINVAL,
					"a segment must start with a letter, '_' or a '\"'");
			while (i < len && (ident_start(s[i]) || is_digit(s[i])))
				i++;
			if (i - start > QUERY_PATH_MAX_NAME)
				return store_err_set(-EINVAL, "segment longer than 64 characters");
			memcpy(seg->name, s + start, i - start);
			seg->name[i - start] = '\0';
		}
		seg->nidx = 0;
		while (i < len && s[i] == '[') {
			if (seg->nidx == QUERY_PATH_MAX_INDICES)
				return store_err_set(-EINVAL, "more than 4 indices on a segment");
			size_t d = ++i;
			uint32_t v = 0;
			while (i < len && is_digit(s[i]) && i - d < 7)
				v = v * 10 + (uint32_t)(s[i++] - '0');
			if (i == d)
				return store_err_set(-EINVAL, "an index must be a decimal number");
			if (i - d > 6)
				return store_err_set(
					-EINVAL,
					"an index must be below 1000000 (at most 6 digits)");
			if (i == len || s[i] != ']')
				return store_err_set(-EINVAL, "expected ']' after an index");
			i++;
			seg->idx[seg->nidx++] = v;
		}
		if (i == len)
			return 0;
		if (s[i] != '.')
			return store_err_set(-EINVAL, "only letters, digits, '_', '.', [index] and "
						      "quoted segments are allowed");
		i++;
	}
}

size_t query_path_render(const query_path *p, char out[QUERY_PATH_TEXT_MAX])
{
	size_t n = 0;
	out[n++] = '$';
	for (unsigned s = 0; s < p->nseg; s++) {
		size_t l = strlen(p->seg[s].name);
		out[n++] = '.';
		if (p->seg[s].quoted)
			out[n++] = '"';
		memcpy(out + n, p->seg[s].name, l);
		n += l;
		if (p->seg[s].quoted)
			out[n++] = '"';
		for (unsigned k = 0; k < p->seg[s].nidx; k++)
			n += (size_t)snprintf(out + n, QUERY_PATH_TEXT_MAX - n, "[%u]",
					      p->seg[s].idx[k]);
	}
	out[n] = '\0';
	return n;
}

bool query_path_plain(const query_path *p)
{
	for (unsigned s = 0; s < p->nseg; s++)
		if (p->seg[s].quoted)
			return false;
	return true;
}

int query_path_append_index(query_path *p, uint32_t idx)
{
	query_path_seg *seg = &p->seg[p->nseg - 1];
	if (seg->nidx == QUERY_PATH_MAX_INDICES || idx > QUERY_PATH_MAX_INDEX)
		return -EINVAL;
	seg->idx[seg->nidx++] = idx;
	return 0;
}
