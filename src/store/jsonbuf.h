/* JSON numbers written to a byte buffer (jbuf_*; strings are base/jsonstr.h's, bytes
 * base/base64.h's), and a strict JSON reader that parses a whole document into a flat node
 * array (jdoc). Both serve the protobuf <-> JSON transcoder, which runs on every record
 * write: no allocation per value, one buffer that is reused across calls. */
#ifndef STORE_JSONBUF_H
#define STORE_JSONBUF_H
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/buf.h"

/* The first error of a transcoding call: later ones are dropped, the first says most. */
typedef struct jerr {
	char msg[256];
	bool set;
} jerr;

/* Record the error (if none yet); they return -EINVAL and -ENOMEM. */
int jerr_vfail(jerr *e, const char *fmt, va_list ap);
int jerr_nomem(jerr *e);

void jbuf_put_u64(buf *b, uint64_t v);
void jbuf_put_i64(buf *b, int64_t v);
/* The shortest decimal form that reads back as the same double, or as the same float when
 * as_float (the value is then a float widened to double). Finite values only. */
void jbuf_put_double(buf *b, double v, bool as_float);

typedef enum {
	J_NULL,
	J_FALSE,
	J_TRUE,
	J_NUMBER,
	J_STRING,
	J_ARRAY,
	J_OBJECT,
} jtype;

/* One value. Arrays and objects are followed by their children in document order (an
 * object's children alternate key, value), and `end` is the index just past the node's
 * subtree, so siblings are reached by jumping to `end`. */
typedef struct jnode {
	uint8_t type;
	bool esc;	/* string: contains escapes; number: has a fraction or exponent */
	uint32_t off;	/* string: first byte after the quote; number: first byte */
	uint32_t len;	/* string, number: source bytes; array: elements; object: members */
	uint32_t ulen;	/* string: length once unescaped */
	uint32_t end;
} jnode;

typedef struct jdoc {
	const char *src; /* borrowed: the text parsed */
	jnode *nodes;	 /* nodes[0] is the root */
	uint32_t n;
	uint32_t cap;
} jdoc;

/* Parses text as one JSON value (RFC 8259, no extensions: strict numbers, no control
 * characters in strings, valid UTF-8, escapes with paired surrogates) nested at most
 * max_depth arrays/objects deep. Returns 0, -EINVAL with a message in err (errlen bytes,
 * naming the byte offset), or -ENOMEM. The document borrows text; free with jdoc_free. */
int jdoc_parse(jdoc *d, const char *text, size_t len, int max_depth, char *err, size_t errlen);
void jdoc_free(jdoc *d);

/* Writes the unescaped bytes of string node j (j->ulen of them) to dst. */
void jdoc_unescape(const jdoc *d, const jnode *j, char *dst);

/* True when string node j equals s[0..n). */
bool jdoc_string_eq(const jdoc *d, const jnode *j, const char *s, size_t n);

#endif
