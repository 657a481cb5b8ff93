/* Bounded decoding of protobuf bytes that come from outside (requests, stored records,
 * peers' responses) into protobuf-c messages.
 *
 * protobuf-c's own unpacking has two weaknesses that one small input can turn into a
 * crash or a stall: it recurses without a depth limit (a Struct nested a few thousand deep
 * overflows the stack), and it merges a singular message field sent N times by copying
 * what it holds each time (N^2 work). pbdecode walks the wire bytes first, refusing what
 * is nested deeper than PB_MAX_DEPTH, malformed, or carries a string that is not UTF-8;
 * when a singular message field occurs more than once it rewrites the bytes so that each
 * occurs once, holding the concatenation of its occurrences (which is what protobuf's
 * merge means: parsing a concatenation merges), in one linear pass. Only then does
 * protobuf-c run, on input it can no longer be made to misbehave on.
 *
 * Pure computation on bytes: safe on any thread. */
#ifndef BASE_PBDECODE_H
#define BASE_PBDECODE_H
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The one limit on message nesting for every decode of peer bytes in the node: the wire
 * (here), protobuf <-> JSON (store/json.h) and the type pool's descriptors. The top-level
 * message is depth 0; map entries and the innards of well-known types count as messages
 * (a JSON object inside a Struct is three message levels: Value, Struct, map entry). */
#define PB_MAX_DEPTH 64

/* What the walk found. */
typedef struct pbdecode_info {
	bool merges; /* some singular message field occurs more than once */
} pbdecode_info;

/* Walks data[0..len) as a message of type d without decoding it. Returns 0; -EBADMSG when
 * the wire format is broken (truncated, a group, a message field with a scalar wire
 * type); -ELOOP when messages nest deeper than PB_MAX_DEPTH; -EILSEQ when a string field
 * is not UTF-8 or holds a NUL byte (which protobuf-c's C strings would silently cut).
 * On failure err[0..cap) says what and where (a field name). info may be NULL. */
int pbdecode_check(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t len,
		   pbdecode_info *info, char *err, size_t cap);

/* pbdecode_check, the merge rewrite when needed, then protobuf-c's unpack (allocating
 * through base/mem.h). Returns 0 and *out (freed with protobuf_c_message_free_unpacked, its
 * default allocator); the errors of pbdecode_check, -EBADMSG when protobuf-c refuses the
 * bytes, -ENOMEM. */
int pbdecode(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t len,
	     ProtobufCMessage **out, char *err, size_t cap);

/* Whether data, read as a message of type d, holds at most max_fields fields at all depths
 * (what decoding costs, beside copying bytes): a cheap look, for deciding where to decode,
 * that stops as soon as it counts past max_fields. Malformed or too deep input counts as
 * cheap: decoding refuses it at once. */
bool pbdecode_fields_within(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t len,
			    size_t max_fields);

#endif
