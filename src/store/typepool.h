/* The type pool: protobuf descriptors (FileDescriptorProtos) turned into an immutable graph
 * of messages, fields and enums, looked up by full name per namespace.
 *
 * Namespaces: files added with ns NULL are global (the compiled-in API and the well-known
 * types) and visible from every namespace; a named namespace sees its own files and the
 * global ones. A symbol may not be defined twice where it would be visible twice.
 *
 * Lifetime: every object returned stays valid and unchanged until tp_free. A new
 * version of a file (same name, other contents, same namespace) is built as new objects
 * that take over its names in lookups; the old objects live on, so files resolved against
 * them earlier keep pointing at them. The same holds for a removed file
 * (tp_remove_file).
 *
 * Threads: any number of readers at once; adding takes a write lock. The objects need no
 * lock once found.
 *
 * Names: tp_ for everything here, the pool (tp_pool) and its objects (tp_message...). */
#ifndef STORE_TYPEPOOL_H
#define STORE_TYPEPOOL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "google/protobuf/descriptor.pb-c.h"
#include "store/err.h"

typedef struct tp_pool tp_pool;
typedef struct tp_message tp_message;
typedef struct tp_enum tp_enum;

/* google.protobuf.FieldDescriptorProto.Type, same numbers */
typedef enum {
	TP_DOUBLE = 1,
	TP_FLOAT = 2,
	TP_INT64 = 3,
	TP_UINT64 = 4,
	TP_INT32 = 5,
	TP_FIXED64 = 6,
	TP_FIXED32 = 7,
	TP_BOOL = 8,
	TP_STRING = 9,
	TP_GROUP = 10,
	TP_MESSAGE = 11,
	TP_BYTES = 12,
	TP_UINT32 = 13,
	TP_ENUM = 14,
	TP_SFIXED32 = 15,
	TP_SFIXED64 = 16,
	TP_SINT32 = 17,
	TP_SINT64 = 18,
} tp_type;

/* Well-known types whose JSON form is special. Empty is not among them: it is {}. */
typedef enum {
	TP_WKT_NONE,
	TP_WKT_ANY,
	TP_WKT_TIMESTAMP,
	TP_WKT_DURATION,
	TP_WKT_FIELD_MASK,
	TP_WKT_STRUCT,
	TP_WKT_VALUE,
	TP_WKT_LIST_VALUE,
	TP_WKT_WRAPPER, /* DoubleValue ... BytesValue: the bare value of field 1 */
} tp_wkt;

typedef struct tp_field {
	const char *name;      /* as in the .proto */
	const char *json_name; /* lowerCamel, or the json_name option */
	const tp_message *parent;
	const tp_message *message; /* TP_MESSAGE, TP_GROUP: the field's type */
	const tp_enum *enum_type;  /* TP_ENUM */
	uint32_t number;
	int32_t oneof; /* index of the containing oneof, -1 for none */
	uint8_t type;  /* tp_type */
	bool repeated;
	bool packed;	      /* repeated scalar written packed */
	bool is_map;	      /* repeated map entry: message has key=1, value=2 */
	bool proto3_optional; /* in a synthetic oneof of its own */
	bool has_presence;    /* set vs default is tracked: messages, oneofs, proto2 */
	bool closed_enum;     /* proto2: unknown enum numbers are not values */
} tp_field;

typedef struct tp_enum_value {
	const char *name;
	int32_t number;
} tp_enum_value;

typedef struct tp_oneof {
	const char *name;
	bool synthetic; /* the oneof of a proto3 optional field */
} tp_oneof;

typedef struct tp_service tp_service;

typedef struct tp_method {
	const char *name;
	const tp_message *input;
	const tp_message *output;
	bool client_streaming;
	bool server_streaming;
} tp_method;

typedef struct tp_file tp_file;

typedef struct tp_message_info {
	const char *full_name;	/* "pkg.Outer.Inner" */
	const char *name;	/* "Inner" */
	const char *file;	/* the .proto file name */
	const tp_field *fields; /* sorted by number */
	size_t n_fields;
	const tp_oneof *oneofs;
	size_t n_oneofs;
	bool map_entry;
	tp_wkt wkt;
} tp_message_info;

typedef struct tp_enum_info {
	const char *full_name;
	const tp_enum_value *values; /* in declaration order; values[0] is the default */
	size_t n_values;
	bool closed;	 /* declared in a proto2 file */
	bool null_value; /* google.protobuf.NullValue: JSON null */
} tp_enum_info;

typedef struct tp_service_info {
	const char *full_name;
	const char *file;
	const tp_method *methods; /* declaration order */
	size_t n_methods;
} tp_service_info;

tp_pool *tp_new(void);
void tp_free(tp_pool *tp);

/* Adds every file of a serialized FileDescriptorSet, in order (imports first, as protoc
 * writes them), all or nothing. Files already present with the same contents are skipped.
 * ns NULL is the global namespace; a name must be non-empty. Returns 0, -EINVAL (bad set,
 * unresolved type, duplicate symbol, invalid name or number, missing import) or -ENOMEM,
 * with what went wrong in store_err_msg(). */
int tp_add_set(tp_pool *tp, const char *ns, const uint8_t *bytes, size_t len);
/* Adds one file, as tp_add_set. */
int tp_add_file(tp_pool *tp, const char *ns, const Google__Protobuf__FileDescriptorProto *fdp);

/* Checks the files being added, before anything is visible: msgs are every message of one
 * file (nested ones included), fully built. Runs under the pool's write lock: it must not
 * call into the pool. Returns 0, or nonzero with a message in err[0..cap) to refuse the
 * add (-EINVAL then, or the negative errno returned), which becomes the add's message. */
typedef int (*tp_check_fn)(void *ctx, const tp_message *const *msgs, size_t n, char *err,
			   size_t cap);
#define TP_CHECK_ONLY 1 /* build and check, then drop: nothing is added */
/* tp_add_set for parsed files, with an optional check (NULL: none). */
int tp_add_files(tp_pool *tp, const char *ns,
		 const Google__Protobuf__FileDescriptorProto *const *files, size_t n, int flags,
		 tp_check_fn check, void *check_ctx);
/* tp_add_files in two steps, for a caller that makes the files durable in between
 * (the registry): staging builds, checks and makes room for them, and fails as
 * tp_add_files does; publishing makes them visible and cannot fail, so that nothing
 * saved is left unapplied for want of memory. Between the two no other add or removal
 * may run in the pool (the caller serializes them); lookups go on. Every staged add is
 * published or unstaged. */
typedef struct tp_staged tp_staged;
int tp_stage_files(tp_pool *tp, const char *ns,
		   const Google__Protobuf__FileDescriptorProto *const *files, size_t n,
		   tp_check_fn check, void *check_ctx, tp_staged **out);
void tp_publish(tp_staged *s);
void tp_unstage(tp_staged *s);

/* Removes the file `name` of ns (not a global one) from lookups: its symbols, its bytes,
 * and its packages that no other file of ns is in. Like a replaced version, its objects
 * stay valid (and in memory) until tp_free: a caller may still hold them. Files of
 * ns that import it keep the objects they resolved. 0, or -ENOENT when ns has no such
 * file. */
int tp_remove_file(tp_pool *tp, const char *ns, const char *name);

/* The file defining a symbol (message, enum, service, field, method, value...) of ns
 * itself, not of the global files it sees (NULL: the global ones only); NULL when none.
 * The name lives as long as the pool. */
const char *tp_symbol_file(tp_pool *tp, const char *ns, const char *full_name);
/* The serialized FileDescriptorProto of a file of ns itself (NULL: global), as added;
 * valid as long as the pool. false when there is none. */
bool tp_file_bytes(tp_pool *tp, const char *ns, const char *name, const uint8_t **bytes,
		   size_t *len);
/* The pool's own copy of the name of file `name` of ns itself (NULL: global), which lives
 * as long as the file; NULL when there is no such file. */
const char *tp_file_name(tp_pool *tp, const char *ns, const char *name);

/* Lookups by full name, with or without a leading dot, as seen from ns (NULL: global only).
 * NULL when unknown. */
const tp_message *tp_find_message(tp_pool *tp, const char *ns, const char *full_name);
const tp_enum *tp_find_enum(tp_pool *tp, const char *ns, const char *full_name);
/* A message by its bare name ("Animal" for zoo.Animal), seen from ns: the message when
 * exactly one visible message has that name, else NULL; *matches says how many do. A
 * linear scan: for requests that name a type once, not for hot paths. */
const tp_message *tp_find_bare(tp_pool *tp, const char *ns, const char *name, size_t *matches);
const tp_service *tp_find_service(tp_pool *tp, const char *ns, const char *full_name);
/* The message of a type URL ("type.googleapis.com/pkg.Msg": the part after the last '/'),
 * len bytes long. */
const tp_message *tp_find_type_url(tp_pool *tp, const char *ns, const char *url, size_t len);

const tp_message_info *tp_message_get(const tp_message *m);
const tp_enum_info *tp_enum_get(const tp_enum *e);
const tp_service_info *tp_service_get(const tp_service *s);

const tp_field *tp_message_field_by_number(const tp_message *m, uint32_t number);
/* By the .proto name, or by either that or the JSON name (s need not be NUL-terminated). */
const tp_field *tp_message_field_by_name(const tp_message *m, const char *s, size_t n);
const tp_field *tp_message_field_by_any_name(const tp_message *m, const char *s, size_t n);

/* The name of a number (the first declared for it), NULL when it has none. */
const char *tp_enum_name_of(const tp_enum *e, int32_t number);
bool tp_enum_number_of(const tp_enum *e, const char *s, size_t n, int32_t *number);

/* Follows a path of .proto field names from m: each segment but the last must be a singular
 * message field, or a map field with string keys, whose next segment is then a key and
 * whose value field stands for it. Returns the last field, NULL when a segment is none. */
const tp_field *tp_resolve_path(const tp_message *m, const char *const *segs, size_t n);

#endif
