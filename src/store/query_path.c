#include "store/query_path.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "store/err.h"

static bool ident_start(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

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
		if (i == len || s[i] == '.')
			return store_err_set(-EINVAL, "empty segment");
		if (!ident_start(s[i]))
			return store_err_set(-EINVAL, "a segment must start with a letter or '_'");
		while (i < len && (ident_start(s[i]) || is_digit(s[i])))
			i++;
		if (i - start > QUERY_PATH_MAX_NAME)
			return store_err_set(-EINVAL, "segment longer than 64 characters");
		memcpy(seg->name, s + start, i - start);
		seg->name[i - start] = '\0';
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
			return store_err_set(
				-EINVAL, "only letters, digits, '_', '.' and [index] are allowed");
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
		memcpy(out + n, p->seg[s].name, l);
		n += l;
		for (unsigned k = 0; k < p->seg[s].nidx; k++)
			n += (size_t)snprintf(out + n, QUERY_PATH_TEXT_MAX - n, "[%u]",
					      p->seg[s].idx[k]);
	}
	out[n] = '\0';
	return n;
}

int query_path_append_index(query_path *p, uint32_t idx)
{
	query_path_seg *seg = &p->seg[p->nseg - 1];
	if (seg->nidx == QUERY_PATH_MAX_INDICES || idx > QUERY_PATH_MAX_INDEX)
		return -EINVAL;
	seg->idx[seg->nidx++] = idx;
	return 0;
}
