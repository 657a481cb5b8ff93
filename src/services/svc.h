/* What the services share (svc_): the node's environment, namespaces and names, decoding
 * what the node stored, type URLs, indexes, statuses, and a unary call run as a job. A
 * collection's definition is coll_def.h's, the jobs themselves svc_job.h's. */
#ifndef SERVICES_SVC_H
#define SERVICES_SVC_H
#include <stdbool.h>
#include <stddef.h>

#include "collector/collection.pb-c.h"
#include "collector/common.pb-c.h"
#include "google/protobuf/any.pb-c.h"
#include "h2/call.h"
#include "io/pool.h"
#include "services/svc_job.h"
#include "store/query.h"
#include "store/query_path.h"
#include "store/store.h"
#include "store/typepool.h"

#define SVC_NAMESPACE_HEADER "x-collector-namespace"
#define SVC_TYPE_URL_PREFIX "type.googleapis.com/"
#define SVC_TOKEN_KEY_LEN 16

struct registry;
struct mesh;
struct wf_engine;
struct auth;

/* svc_env.auth_open: the standard services that need no credential (--auth-open). */
#define SVC_OPEN_HEALTH 1u
#define SVC_OPEN_REFLECTION 2u

typedef struct svc_env {
	pool *pool;
	store *store;
	tp_pool *types;
	const char *default_ns;	  /* --namespace */
	const char *endpoint;	  /* host:port this node serves on */
	const uint8_t *token_key; /* SVC_TOKEN_KEY_LEN bytes authenticating page tokens */
	size_t max_message_bytes;
	struct registry *registry;   /* the node's registry (registry.h) */
	const char *node_id;	     /* this node's collector id */
	const method_table *methods; /* every method the node serves (set once built) */
	struct mesh *mesh;	     /* the node's links (mesh.h); NULL: none */
	const char *version;	     /* the node's version */
	bool admin;		     /* --admin: Stop and Reset allowed */
	/* Stops the node (the console's Stop): GOAWAY, calls in flight get grace_ns. Thread
	 * safe; returns at once. */
	void (*stop_node)(void *ctx, int64_t grace_ns);
	void *stop_ctx;
	int64_t started_ns;	  /* when it started (monotonic clock) */
	const char *backup_dir;	  /* --backup-dir, resolved; NULL: none */
	struct wf_engine *worker; /* the workflow engine (wf_engine.h); NULL: none */
	struct auth *auth;	  /* tokens and the audit log (auth.h) */
	unsigned auth_open;	  /* SVC_OPEN_* */
} svc_env;

/* The namespace a request means (reactor thread): its own field when set, else the
 * caller's x-collector-namespace header, else the node's default. Lives as long as c. */
const char *svc_namespace(call *c, const svc_env *env, const char *requested);
/* Whether ns, from svc_namespace, is the default because nothing named a namespace (it is
 * then env->default_ns itself): for the methods where that means every namespace. */
static inline bool svc_ns_unnamed(const svc_env *env, const char *ns)
{
	return ns == env->default_ns;
}
/* Decodes bytes the node stored itself (a definition, a registration) with the bounds of
 * every decode (base/pbdecode.h): a damaged or hostile row is refused, never trusted to
 * protobuf-c alone. NULL when it does not decode. */
void *svc_decode(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t len);
/* Copies s (NULL: "") into a new allocation; NULL when out of memory. */

/* A record id: 1 to SVC_ID_MAX bytes, none of them a control character; fails j with
 * INVALID_ARGUMENT. */
#define SVC_ID_MAX 256
bool svc_check_id(svc_job *j, const char *id);

/* Namespace and collection names (store_name_valid); fails j with INVALID_ARGUMENT. */
bool svc_check_name(svc_job *j, const char *what, const char *name);

/* A namespace a client may use: a valid name, not one of the node's own (system...);
 * fails j with INVALID_ARGUMENT. */
bool svc_check_user_ns(svc_job *j, const char *ns);
/* The message a MessageTypeRef names, seen from ns (the ref's own namespace when set):
 * a full name, with or without a leading dot, or a bare name that exactly one visible
 * message has. NULL when unknown or ambiguous. */
const tp_message *svc_find_type(const svc_env *env, const char *ns,
				const Collector__MessageTypeRef *ref);
/* Whether paths into records of m (NULL: untyped) are JSON paths, checked against no
 * message: untyped records, google.protobuf.Struct and Value. */
bool svc_schemaless(const tp_message *m);
/* The field a query path reaches in m: segments are .proto field names; a repeated
 * field's element is reached with one [N]; a map with string keys takes the key as the
 * next segment and stands for its value. NULL when the path reaches nothing. *whole
 * tells that the path ends on a repeated field itself (no index) or a map. */
const tp_field *svc_field_at(const tp_message *m, const query_path *p, bool *whole);
/* A collection's indexed_fields, checked against its message and rendered as index
 * expressions (query_index_field). */
#define SVC_MAX_INDEXES 64
typedef struct svc_indexes {
	size_t n;
	char (*exprs)[QUERY_INDEX_EXPR_MAX];
	char (*names)[QUERY_INDEX_NAME_MAX];
} svc_indexes;
/* Fails j with INVALID_ARGUMENT naming the first bad field; m NULL or schemaless takes
 * any path (svc_schemaless). *out is always to be freed. */
bool svc_indexes_check(svc_job *j, const tp_message *m, char *const *fields, size_t n,
		       svc_indexes *out);
/* Makes exactly these the collection's indexes (creates, drops). */
int svc_indexes_apply(store_coll *c, const svc_indexes *ix);
void svc_indexes_free(svc_indexes *ix);

/* Whether an Any's type URL names m (anything before the last '/' is accepted). */
bool svc_type_url_is(const char *url, const tp_message *m);
/* The type URL of m in buf (cap bytes) when it fits, else malloc'd (*heap, for the caller
 * to free). NULL when out of memory. Built once per call, not per record. */
char *svc_type_url(const tp_message *m, char *buf, size_t cap, char **heap);
/* An Any from a record's bytes (borrowed: lives as long as url and data). */
void svc_record_any(Google__Protobuf__Any *any, char *url, const void *data, size_t len);

/* collector.Status.Code for a gRPC code: the API's enum leaves out DEADLINE_EXCEEDED
 * (reported as UNAVAILABLE) and UNAUTHENTICATED (PERMISSION_DENIED), so the numbers after
 * them differ from gRPC's. */
Collector__Status__Code svc_status_code(int grpc_code);

/* Maps a store error to a gRPC status on j, with the store's message. */
void svc_fail_store(svc_job *j, int rc, const char *doing);

/* A unary call's job: the request (valid while the job holds the call) and the namespace
 * it means. */
typedef struct svc_req_job {
	svc_job j;
	const svc_env *env;
	const void *req;
	const char *ns;
} svc_req_job;

/* on_request side: runs work(j) for c on the pool with req, in the namespace req_ns
 * means (svc_namespace). */
void svc_start(call *c, const void *req, const char *req_ns, void (*work)(svc_job *j));

/* The namespace a collection records for its message type: "" for the global types. */
const char *svc_type_ns(const svc_env *env, const char *ns, const tp_message *m);

/* JSON text for the catalog: an object of string labels, an array of strings. malloc'd,
 * NULL when out of memory. */
char *svc_labels_json(Collector__Metadata__LabelsEntry *const *labels, size_t n);
char *svc_strings_json(char *const *v, size_t n);

#endif
