/* Records of untyped collections (a collection created without a message type, as the
 * original Collector's clients make them): any google.protobuf.Any per record, kept as the
 * Any itself (its type_url and value serialized as protobuf) so that a read returns
 * exactly what was written, beside the JSON that filters, order keys and full-text search
 * read. What that JSON is depends on the record:
 *   - a type_url naming a message known in the namespace (or compiled in), with a value of
 *     that message: its proto3 JSON (proto field names), as a typed collection has it;
 *   - a value that is a JSON object's text (UTF-8): that object, as sent;
 *   - anything else: opaque bytes, JSON `null` (no field matches; found by id and labels).
 * A value that claims to be a JSON object (its first and last bytes other than blanks
 * are '{' and '}') but is not valid JSON, or is nested deeper than JSON_MAX_DEPTH, is
 * refused rather than kept opaque, and so is a value of a known type that is neither
 * that message nor a JSON object: a client that meant fields gets an error, not a record
 * that no filter finds. */
#ifndef SERVICES_COLL_ANY_H
#define SERVICES_COLL_ANY_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "google/protobuf/any.pb-c.h"
#include "store/typepool.h"

enum coll_any_kind {
	COLL_ANY_TYPED,	 /* a message of a known type */
	COLL_ANY_JSON,	 /* a JSON object */
	COLL_ANY_OPAQUE, /* bytes */
};

/* The JSON an opaque record keeps: no path reaches anything in it. */
#define COLL_ANY_OPAQUE_JSON "null"

/* Classifies item for an untyped collection of namespace ns: its kind (>= 0), its JSON
 * into json (replaced, NUL-terminated) and, COLL_ANY_TYPED, its message into *m. -EINVAL
 * with the reason in why[0..cap) (for INVALID_ARGUMENT), or -ENOMEM. */
int coll_any_classify(tp_pool *types, const char *ns, const Google__Protobuf__Any *item, buf *json,
		      const tp_message **m, char *why, size_t cap);

/* Whether value[0..len) is a JSON object's text: 1 with the text (NUL-terminated) in json
 * (replaced), 0 when it does not look like one, -EINVAL when it looks like one and is
 * none (why says where), -ENOMEM. */
int coll_any_json_object(const uint8_t *value, size_t len, buf *json, char *why, size_t cap);

/* The stored form of a record: the Any serialized, replacing out's contents. 0, -ENOMEM. */
int coll_any_pack(const char *type_url, const uint8_t *value, size_t len, buf *out);

/* The parts of a stored record (borrowed from data): 0, or -EINVAL when data is not one
 * (a damaged row). The type URL is not NUL-terminated. */
typedef struct coll_any_parts {
	const char *url;
	size_t url_len;
	const uint8_t *value;
	size_t value_len;
} coll_any_parts;
int coll_any_split(const void *data, size_t len, coll_any_parts *out);

/* A stored record as a reply's Any, in one allocation (*block, for the caller to
 * mem_free) holding the value and the NUL-terminated type URL. 0, -EINVAL (not a stored
 * record), -ENOMEM. */
int coll_any_unpack(const void *data, size_t len, Google__Protobuf__Any *any, uint8_t **block);

#endif
