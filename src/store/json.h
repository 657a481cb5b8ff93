/* Protobuf <-> proto3 JSON, driven by the type pool (the protobuf JSON mapping, as Python's
 * google.protobuf.json_format prints and parses it).
 *
 * To JSON: compact; int64-family as strings; NaN/Infinity/-Infinity as strings; enums by
 * name (unknown numbers of open enums as numbers); bytes as standard base64; fields without
 * presence omitted when default; unknown fields skipped; well-known types in their special
 * forms. Fields come in number order; a field repeated on the wire follows protobuf
 * (last value wins, messages merge, a map key's last entry wins, the last oneof member
 * wins), so equal messages give equal JSON.
 *
 * From JSON: JSON and .proto field names; numbers or numeric strings for numeric fields
 * (range checked); enums by name or number; null as the default; the well-known forms.
 * Unknown fields, wrong JSON types, out of range values, duplicate keys and two members of
 * one oneof are errors. The output is canonical: fields in number order, packed repeated
 * scalars, defaults of fields without presence left out.
 *
 * Messages may nest JSON_MAX_DEPTH deep, the node's one nesting limit (PB_MAX_DEPTH, map
 * entries and the innards of well-known types counted as messages); deeper input is an
 * error in both directions. */
#ifndef STORE_JSON_H
#define STORE_JSON_H
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/pbdecode.h"
#include "store/err.h"
#include "store/typepool.h"

#define JSON_MAX_DEPTH PB_MAX_DEPTH

enum {
	JSON_PROTO_NAMES = 1, /* keys are .proto field names instead of JSON names */
	/* For showing, not for reading back: an Any of a type the pool does not know is
	 * {"@type": url, "@bytes": base64 of its value} instead of an error. */
	JSON_OPAQUE_ANY = 2,
};

/* Appends the JSON of the message m encoded in bytes[0..len) to out and NUL-terminates it
 * (the NUL not counted in out->len). Any type URLs are resolved in ns. Returns 0; -EINVAL
 * for malformed or unrepresentable input, -ENOMEM, with what went wrong in
 * store_err_msg(). On failure out->len is as it was. */
int json_from_proto(tp_pool *tp, const char *ns, const tp_message *m, const uint8_t *bytes,
		    size_t len, int flags, buf *out);

/* Appends the protobuf encoding of the JSON text json[0..len) as a message m to out.
 * Returns as json_from_proto. */
int json_to_proto(tp_pool *tp, const char *ns, const tp_message *m, const char *json, size_t len,
		  buf *out);

#endif
