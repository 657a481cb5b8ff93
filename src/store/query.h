/* The query compiler for collection reads: List and Search parameters (and
 * SearchCollections' query Struct) become SQL over the shared `records` schema. Every user
 * value, field path and label key is bound as a parameter; the only things spliced into SQL
 * text are fixed fragments and, for indexed fields, the index expression re-rendered from
 * a parsed path (identifier characters and digits only). The caller decodes protobuf into
 * the plain structs below; anything outside the grammar fails with -EINVAL and a message
 * naming the offending input (for INVALID_ARGUMENT).
 *
 * Keys (filter keys and order keys):
 *   - a field path (store/query_path.h), compared inside the record's JSON;
 *   - `@id`, `@created_at`, `@updated_at`: the record's own columns (times are unix
 *     microseconds; a filter value may also be an RFC 3339 string for them);
 *   - `@score`: Search order only, the full-text relevance (-bm25, higher is better);
 *   - the bare names `id`, `created_at`, `updated_at` are the message field when the
 *     resolver knows such a field, else the record column (always the column without a
 *     resolver).
 *
 * Order:
 *   List:   order_by = key [asc|desc] ("," key [asc|desc]){0,3}; spaces around items are
 *           allowed, directions are case-insensitive, a key may appear once. Empty means
 *           "@created_at asc".
 *   Search: order_by = key [asc|desc]; without a direction `ascending` decides. Empty
 *           means @score when full_text is given, else @created_at, in the direction that
 *           `ascending` gives (false, the default, is best first / newest first).
 *   Ties are broken by rid in the direction of the last key, so every order is total.
 *   Rows missing an order key sort first ascending, last descending.
 *
 * Typed comparisons. The resolver gives the kind of a path in the collection's message
 * (for a repeated field it must also answer for the path with an index appended, giving
 * the element kind). What each kind accepts (anything else is -EINVAL):
 *   STRING      string: =, <, >, CONTAINS (substring, case-sensitive; '%' '_' literal)
 *   NUMBER      number or numeric string: =, <, > (numerically)
 *   INT64       number or integer string (exact beyond 2^53): =, <, > (numerically; the
 *               JSON holds a decimal string; uint64 above INT64_MAX is not supported)
 *   BOOL, ENUM  bool / enum name string: = only
 *   BYTES       base64 string: = only (compared as text)
 *   TIMESTAMP   RFC 3339 string, normalized to UTC: =, <, >
 *   DURATION    "1.5s" string or number of seconds: =, <, > (as seconds, double)
 *   REPEATED    list: = (same length, each element equal in order); CONTAINS scalar
 *               (any element equals it)
 *   MESSAGE,MAP null only (compare their fields through a longer path)
 * A null value is "missing or JSON null" for = and != on any kind.
 * Without a resolver (no descriptor known) the runtime JSON type decides: a number, or a
 * string that is a canonical integer ("-12", as proto3 renders int64), compares
 * numerically with JSON numbers and integer strings; any other string compares as text
 * with JSON strings only; bool matches true/false; a list compares element-wise; CONTAINS
 * is substring on a string and membership on an array.
 * Operators: NOT_EQUALS is the negation of EQUALS, so a record missing the field IS "not
 * equal" and matches. IN needs a list (at most 1000 values, empty matches nothing) and is
 * EQUALS to any of them. EXISTS is true when the path is present (even as JSON null),
 * NOT_EXISTS when it is absent; their value is ignored. Every other operator needs a value:
 * QUERY_ABSENT there, or anywhere inside its lists, is -EINVAL naming the key (a filter
 * with no value is a client's mistake, not a comparison with null).
 *
 * List's filter Struct: every key is EQUALS; a nested Struct extends the path
 * ({"address": {"city": "x"}} is address.city = "x"); a list value compares the whole
 * array. Keys may themselves be paths ("a.b", "items[0]") or @columns.
 * Search label_filters: the label with that key (any string) equals the value.
 * SearchCollections' query Struct (query_search_params.query):
 *   "full_text": string  - the full-text query;
 *   key: {"operator": OP, "value": v} - an operator filter on key, OP being the
 *        FilterOperator's name ("OP_GREATER_THAN" or "GREATER_THAN") or its number; a
 *        Struct whose keys are exactly "operator" and optionally "value" is always read
 *        this way (reach a message field named "operator" with a dotted key);
 *   any other key - as in List's filter Struct.
 * Full text: whitespace-separated terms, each searched as a quoted phrase (so FTS5 syntax
 * in the text is literal), all required. Terms made only of ASCII punctuation are dropped
 * (the tokenizer ignores them); if nothing is left of non-blank text, nothing matches.
 *
 * Paging. List: page_size 0 means 50, 1..1000 allowed, anything else -EINVAL. The page
 * query returns up to page_size + 1 rows: when the extra row arrives there is a next
 * page; make its token from the page_size-th row (store_reader_page_token). Tokens are
 * keyset positions (order-key values and rid), so rows inserted or deleted between pages
 * never make a row that existed throughout appear twice or be skipped (a row whose own
 * order key is updated may move). A token names the query it belongs to (filter, order,
 * resolver types, indexed set) and the schema's scope: used with another query, or in
 * another scope, it is -EINVAL saying which. Tokens are base64url, versioned and
 * authenticated with SipHash-2-4 under the schema's token key.
 * Search: limit 0 means 50, 1..1000; offset 0..100000.
 * Ranked full text (@score order, full text alone) scores the newest QUERY_FTS_RANKED
 * matches (by rid) only, so that a search is bounded whatever the number of matches; the
 * older ones follow them unranked (score 0), newest first; ascending reverses it all.
 */
#ifndef STORE_QUERY_H
#define STORE_QUERY_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/err.h"
#include "store/query_path.h"

#define QUERY_DEFAULT_PAGE 50
#define QUERY_MAX_PAGE 1000
#define QUERY_MAX_OFFSET 100000
#define QUERY_MAX_ORDER_KEYS 4
#define QUERY_MAX_FILTERS 64	   /* conditions after flattening Structs, labels included */
#define QUERY_MAX_IN 1000	   /* values of one IN list */
#define QUERY_MAX_BINDS 8192	   /* bound parameters of one query */
#define QUERY_MAX_TEXT 4096	   /* full_text length */
#define QUERY_MAX_TOKEN_TEXT 65536 /* an order-key string value a page token can carry */
#define QUERY_FTS_RANKED 10000	   /* full-text matches ranked by score: the newest ones */

/* Same numbers as collector.FilterOperator. */
enum query_op {
	QUERY_EQUALS = 0,
	QUERY_NOT_EQUALS = 1,
	QUERY_GREATER_THAN = 2,
	QUERY_LESS_THAN = 3,
	QUERY_GREATER_EQUAL = 4,
	QUERY_LESS_EQUAL = 5,
	QUERY_CONTAINS = 6,
	QUERY_IN = 7,
	QUERY_EXISTS = 8,
	QUERY_NOT_EXISTS = 9,
};

enum query_kind {
	QUERY_KIND_STRING,
	QUERY_KIND_NUMBER, /* 32-bit ints, float, double: JSON numbers */
	QUERY_KIND_INT64,  /* 64-bit ints: JSON decimal strings */
	QUERY_KIND_BOOL,
	QUERY_KIND_ENUM,      /* JSON string: the value's name */
	QUERY_KIND_BYTES,     /* JSON string: base64 */
	QUERY_KIND_MESSAGE,   /* JSON object */
	QUERY_KIND_REPEATED,  /* JSON array */
	QUERY_KIND_MAP,	      /* JSON object */
	QUERY_KIND_TIMESTAMP, /* JSON string: RFC 3339, UTC, "Z" */
	QUERY_KIND_DURATION,  /* JSON string: "1.5s" */
};

/* Kind of path p in the collection's message: 0, or -ENOENT when there is no such field
 * (any other negative errno is passed on). */
typedef int (*query_resolve_fn)(void *ctx, const query_path *p, enum query_kind *kind);

/* A google.protobuf.Value. Strings are NUL-terminated. Borrowed: nothing here is freed or
 * kept by the compiler beyond the call. QUERY_ABSENT is a Value that is not there, or one
 * with none of its kinds set: unlike QUERY_NULL (JSON null) it is no value at all. */
enum query_vtype {
	QUERY_NULL,
	QUERY_NUMBER,
	QUERY_STRING,
	QUERY_BOOL,
	QUERY_LIST,
	QUERY_STRUCT,
	QUERY_ABSENT,
};

typedef struct query_value query_value;
typedef struct query_member {
	const char *key;
	const query_value *value;
} query_member;

struct query_value {
	enum query_vtype type;
	union {
		double number;
		const char *string;
		bool boolean;
		struct {
			const query_value *items;
			size_t n;
		} list;
		struct {
			const query_member *members;
			size_t n;
		} object;
	} u;
};

typedef struct query_filter {
	const char *path; /* the filters map key */
	enum query_op op;
	query_value value;
} query_filter;

typedef struct query_label {
	const char *key, *value;
} query_label;

/* What the compiler knows of the collection. All borrowed for the call. */
typedef struct query_schema {
	query_resolve_fn resolve; /* NULL: no descriptor known, compare by runtime JSON type */
	void *resolve_ctx;
	const char *const *indexed; /* the collection's indexed_fields (validated ones) */
	size_t nindexed;
	const uint8_t *token_key; /* 16 bytes authenticating page tokens; NULL = all zero */
	/* The collection the query reads, as the caller names it (namespace, name and what
	 * tells a collection from one deleted and made again under its name): a page token
	 * belongs to its scope as it belongs to its query. NULL: no scope. */
	const char *scope;
} query_schema;

typedef struct query_list_params {
	const query_value *filter; /* a QUERY_STRUCT, or NULL */
	const char *order_by;	   /* NULL or "" for the default */
	int32_t page_size;
	const char *page_token; /* NULL or "" for the first page */
} query_list_params;

typedef struct query_search_params {
	const char *full_text; /* NULL or "" for none */
	const query_filter *filters;
	size_t nfilters;
	const query_label *labels;
	size_t nlabels;
	const query_value *query; /* SearchCollections' Struct, or NULL */
	int32_t limit, offset;
	const char *order_by;
	bool ascending;
} query_search_params;

typedef struct query query;

/* Compile a List or Search. 0 with *out (free with query_free), -EINVAL with what is wrong
 * in store_err_msg() (naming the offending input), -ENOMEM, or the resolver's own error. */
int query_compile_list(const query_schema *s, const query_list_params *p, query **out);
int query_compile_search(const query_schema *s, const query_search_params *p, query **out);
void query_free(query *q);

/* Rows the caller returns: List's page_size (the query asks one more), Search's limit. */
int32_t query_page_size(const query *q);

/* Seals payload as a page token (payload, SipHash-2-4 MAC under key, base64url): how
 * a List's next-page token is made; exposed for the other paged APIs (Discover), and so that
 * tests and the fuzzer can reach the token parser with payloads of their own. 0 with
 * *token (mem_free()) or -ENOMEM. */
int query_token_seal(const uint8_t *key, const uint8_t *payload, size_t n, char **token);
/* The payload of a token sealed under key, at most max_chars long: 0 with *payload
 * (mem_free()) and its length *n, -EINVAL (store_err_msg() naming page_token) when the
 * token is too long, not base64url or not sealed under key, or -ENOMEM. The caller checks
 * what is inside: a version of its own first, so that the tokens of one API are refused by
 * another. */
int query_token_open(const uint8_t *key, const char *token, size_t max_chars, uint8_t **payload,
		     size_t *n);
/* An unkeyed 64-bit hash (SipHash-2-4, zero key) for binding a token to its query. */
uint64_t query_token_hash(const void *data, size_t n);

/* Validates an indexed_fields entry (a field path; no @columns) and renders the index
 * expression `json_extract(json,'$.a.b')` and a stable index name `ix_<16 hex>`, which the
 * compiler then emits literally for that path. 0 or -EINVAL (store_err_msg()). */
#define QUERY_INDEX_EXPR_MAX (QUERY_PATH_TEXT_MAX + 24)
#define QUERY_INDEX_NAME_MAX 20
int query_index_field(const char *field, char expr[QUERY_INDEX_EXPR_MAX],
		      char name[QUERY_INDEX_NAME_MAX]);

#endif
