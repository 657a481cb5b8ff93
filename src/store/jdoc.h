/* A strict JSON reader that parses a whole document into a flat node array, for the
 * JSON -> protobuf transcoder and the writer's full-text extraction, which run on every
 * record write: one array per document, no allocation per value. */
#ifndef STORE_JDOC_H
#define STORE_JDOC_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

typedef enum {
	JDOC_NULL,
	JDOC_FALSE,
	JDOC_TRUE,
	JDOC_NUMBER,
	JDOC_STRING,
	JDOC_ARRAY,
	JDOC_OBJECT,
} jdoc_type;

/* One value. Arrays and objects are followed by their children in document order (an
 * object's children alternate key, value), and `end` is the index just past the node's
 * subtree, so siblings are reached by jumping to `end`. */
typedef struct jdoc_node {
	uint8_t type;
	bool esc;      /* string: contains escapes; number: has a fraction or exponent */
	uint32_t off;  /* string: first byte after the quote; number: first byte */
	uint32_t len;  /* string, number: source bytes; array: elements; object: members */
	uint32_t ulen; /* string: length once unescaped */
	uint32_t end;
} jdoc_node;

typedef struct jdoc {
	const char *src;  /* borrowed: the text parsed */
	jdoc_node *nodes; /* nodes[0] is the root */
	uint32_t n;
	uint32_t cap;
} jdoc;

/* Parses text as one JSON value (RFC 8259, no extensions: strict numbers, no control
 * characters in strings, valid UTF-8, escapes with paired surrogates) nested at most
 * max_depth arrays/objects deep. Returns 0, -EINVAL (store_err_msg() naming the byte
 * offset), or -ENOMEM. The document borrows text; free with jdoc_free. */
int jdoc_parse(jdoc *d, const char *text, size_t len, int max_depth);
void jdoc_free(jdoc *d);

/* Writes the unescaped bytes of string node j (j->ulen of them) to dst. */
void jdoc_unescape(const jdoc *d, const jdoc_node *j, char *dst);

/* Appends the JSON text of node at and its subtree to b (strings as written, escapes
 * and all). 0 or -ENOMEM. */
int jdoc_write(buf *b, const jdoc *d, uint32_t at);

/* True when string node j equals s[0..n). */
bool jdoc_string_eq(const jdoc *d, const jdoc_node *j, const char *s, size_t n);

#endif
