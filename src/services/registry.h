/* collector.CollectorRegistry: protobuf types and gRPC services registered per namespace
 * while the node runs, kept in the system collections RegisteredProtos and
 * RegisteredServices, and the validation of every call against them.
 *
 * Types go into the node's type pool (visible from their namespace only); services into
 * an in-memory index (regindex.h) that the call gate reads. A file registered again with
 * changes is a new version: its record is added beside the earlier ones, so that the
 * history of every message's field numbers survives restarts and a number removed once
 * cannot come back with another meaning. */
#ifndef SERVICES_REGISTRY_H
#define SERVICES_REGISTRY_H
#include <stdbool.h>
#include <stddef.h>

#include "collector/registry.pb-c.h"
#include "h2/method.h"
#include "services/regquota.h"
#include "services/svc.h"

typedef struct registry registry;

/* Opens (creates) the system collections and loads every registration into env->types and
 * the index, within the quotas (limits; NULL: the defaults). Records that do not load (do
 * not decode, a type gone from the compiled-in API, beyond a quota) are logged and
 * skipped. env must outlive the registry. 0 or a negative errno. */
int registry_open(svc_env *env, const regquota_limits *limits, registry **out);
void registry_free(registry *r);

/* Registers the services of t (the node's own) in the default namespace. In memory only:
 * they are made again at every start, from the compiled-in descriptors. */
int registry_add_node_services(registry *r, const method_table *t);
/* The work of RegisterProto and RegisterService (pool thread) for a decoded request in
 * namespace ns: the answer or the failure lands in j (svc_job_answer, svc_job_fail). The
 * RPCs run them; so does the fuzz harness, with a bare job. */
void registry_register_proto(registry *r, svc_job *j, const char *ns,
			     const Collector__RegisterProtoRequest *req);
void registry_register_service(registry *r, svc_job *j, const char *ns,
			       const Collector__RegisterServiceRequest *req);
/* The work of UnregisterProto and UnregisterService (regremove.c), likewise. */
void registry_unregister_proto(registry *r, svc_job *j, const char *ns,
			       const Collector__UnregisterProtoRequest *req);
void registry_unregister_service(registry *r, svc_job *j, const char *ns,
				 const Collector__UnregisterServiceRequest *req);
/* The CollectorRegistry methods. */
int registry_register(method_table *t, svc_env *env);

/* The call gate (h2_call_gate): the call's namespace is its x-collector-namespace header,
 * else the default one; a method not registered there is UNIMPLEMENTED. */
int registry_gate(void *ctx, call *c, const char *path, size_t path_len, bool served, char *msg,
		  size_t cap);

/* For reflection, in the namespace of call c: the names of its services (malloc'd array of
 * malloc'd strings, *n of them; -ENOMEM), the file defining a symbol, and a file's bytes.
 * Files of the namespace itself only: the compiled-in ones are reflection's own. */
const char *registry_call_ns(registry *r, call *c);
int registry_service_names(registry *r, const char *ns, char ***names, size_t *n);
const char *registry_symbol_file(registry *r, const char *ns, const char *symbol);
bool registry_file(registry *r, const char *ns, const char *name, const uint8_t **bytes,
		   size_t *len);
/* The node's name of an API file that `name` names the upstream way ("common.proto" for
 * "collector/common.proto"), or NULL when it names none, or a file of ns (NULL: no
 * namespace) or of the node by that name exists. The name lives as long as the node. */
const char *registry_file_alias(registry *r, const char *ns, const char *name);

#endif
