/* Field paths of the collection query language: the strict grammar that filter keys,
 * order keys and indexed_fields share, and its rendering as an SQLite JSON path.
 *
 * Grammar (nothing else is accepted: no '$', '*', '..', empty segments):
 *   path    = segment ("." segment){0,15}
 *   segment = (ident | quoted) ("[" index "]"){0,4}
 *   ident   = [A-Za-z_][A-Za-z0-9_]{0,63}
 *   quoted  = '"' 1 to 64 bytes of UTF-8, none below 0x20, '"' or '\' '"'
 *   index   = [0-9]{1,6}                     (so below 1000000)
 * e.g. `a.b.c`, `items[2].name`, rendered as `$.a.b.c`, `$.items[2].name`. A quoted
 * segment reaches a JSON key that is no identifier (`"first-name".x`, rendered
 * `$."first-name".x`; SQLite compares it with the key as the JSON text writes it); one
 * that holds an identifier renders as that identifier, so `"a"` and `a` are one path.
 * Without quoted segments a rendering holds only identifier characters, digits and
 * `$.[]`, so it is safe to place between single quotes in SQL text (index expressions,
 * which refuse the others: query_path_plain). */
#ifndef STORE_QUERY_PATH_H
#define STORE_QUERY_PATH_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QUERY_PATH_MAX_SEGMENTS 16
#define QUERY_PATH_MAX_NAME 64
#define QUERY_PATH_MAX_INDICES 4
#define QUERY_PATH_MAX_INDEX 999999
/* Longest rendering ("$" + 16 x (".\"name\"" + 4 x "[999999]")) plus its NUL. */
#define QUERY_PATH_TEXT_MAX                                                                        \
	(1 + QUERY_PATH_MAX_SEGMENTS * (3 + QUERY_PATH_MAX_NAME + QUERY_PATH_MAX_INDICES * 8) + 1)

typedef struct query_path_seg {
	char name[QUERY_PATH_MAX_NAME + 1]; /* a quoted segment without its quotes */
	bool quoted;			    /* and not an identifier: rendered in quotes */
	unsigned nidx;
	uint32_t idx[QUERY_PATH_MAX_INDICES];
} query_path_seg;

typedef struct query_path {
	unsigned nseg;
	query_path_seg seg[QUERY_PATH_MAX_SEGMENTS];
} query_path;

/* Parses s[0..len). 0, or -EINVAL with what is wrong in store_err_msg(). */
int query_path_parse(const char *s, size_t len, query_path *p);

/* Writes the JSON path ("$.a.b[2]") into out (QUERY_PATH_TEXT_MAX bytes); returns its length. */
size_t query_path_render(const query_path *p, char out[QUERY_PATH_TEXT_MAX]);

/* Whether no segment of p renders in quotes. */
bool query_path_plain(const query_path *p);

/* Appends an index to the last segment (the element of a repeated field). 0 or -EINVAL
 * when the segment already has QUERY_PATH_MAX_INDICES indices. */
int query_path_append_index(query_path *p, uint32_t idx);

#endif
