/* What registry.c shares with regservice.c (RegisterService), regremove.c (the removals),
 * regsynth.c (the file made for a service) and handler.c (the routes of calls to services
 * with a handler, read from the index): the registry's state and the helpers they use. For
 * these files only. */
#ifndef SERVICES_REGISTRY_PRIV_H
#define SERVICES_REGISTRY_PRIV_H
#include <pthread.h>

#include "services/regindex.h"
#include "services/registry.h"
#include "services/regledger.h"
#include "services/regquota.h"
#include "services/strmap.h"
#include "services/strvec.h"
#include "store/coll.h"

/* The file the registry makes for a service that no file declares (%s: its full name). */
#define REGISTRY_SYNTH_FILE "registry/%s.proto"

/* RegisteredProtos is indexed on this field of its records (RegisteredProto.namespace). */
#define REGISTRY_NS_FIELD "namespace"

typedef Google__Protobuf__FileDescriptorProto file_proto;
typedef Google__Protobuf__DescriptorProto message_proto;
typedef Google__Protobuf__ServiceDescriptorProto service_proto;

struct registry {
	svc_env *env;
	regindex *ix;
	regquota *quota;
	store_coll *protos, *services; /* held open for the node's life */
	const method_table *served;
	pthread_mutex_t lock; /* one registration or removal at a time: check, persist, apply */
	regledger ledger;     /* the history of every message's field numbers */
	strmap file_ids;      /* "ns\0file" -> id of its newest RegisteredProto (char *) */
};

/* Full names are refused beyond this: it bounds the scratch buffers of resolution. */
#define REGISTRY_NAME_MAX 512
/* Files a RegisterProto may bring along as dependencies. */
#define REGISTRY_MAX_DEPENDENCIES 64

/* The files of one registration, imports first. */
typedef struct registry_file_set {
	const file_proto *v[REGISTRY_MAX_DEPENDENCIES + 1];
	size_t n;
	bool changed[REGISTRY_MAX_DEPENDENCIES +
		     1]; /* not yet in the namespace with these contents */
	/* Names of the request replaced by ours (regalias.c), to put back before it is
	 * freed: where each was, and what. */
	char ***renamed_at;
	char **renamed_was;
	size_t n_renamed, renamed_cap;
} registry_file_set;

/* ---- regalias.c: upstream's names for the node's API files ---- */

/* In the files of fs (parts of the request), the names and imports that are upstream's
 * names of the node's API files are replaced by ours: a file that is upstream's copy of
 * one (package collector) then stands for the compiled-in file, and imports resolve to it.
 * A name the namespace or the set gives a file of its own is kept. Fails j
 * (RESOURCE_EXHAUSTED) and changes nothing when it cannot. */
bool registry_alias_files(svc_job *j, registry *r, const char *ns, registry_file_set *fs);
/* Puts the request's own names back; fs may be zeroed or aliased. */
void registry_unalias_files(registry_file_set *fs);

/* Orders deps and main so that each file comes after the files of the set it imports;
 * fails j (INVALID_ARGUMENT) when they cannot be. */
bool registry_order_files(svc_job *j, registry_file_set *fs,
			  Google__Protobuf__FileDescriptorProto *const *deps, size_t n_deps,
			  const file_proto *main);
/* Whether the namespace already has each file exactly (or the node compiles in a file of
 * that name, which then stands): sets fs->changed. false when out of memory. */
bool registry_mark_changes(registry *r, const char *ns, registry_file_set *fs);
/* Checks, persists and applies the files of fs in ns; the caller holds r->lock. *main_id
 * gets the id of the last file (the main one). Fails j and returns false when it cannot. */
bool registry_register_files(svc_job *j, registry *r, const char *ns, registry_file_set *fs,
			     char **main_id);
/* Whether ns can take the items (regquota_allows); fails j with RESOURCE_EXHAUSTED when
 * not. */
bool registry_quota_allows(svc_job *j, registry *r, const char *ns, const regquota_item *items,
			   size_t n);
/* Whether a service counts against the quotas: the node's own services in its default
 * namespace (registered at every start) do not. */
bool registry_service_counts(registry *r, const char *ns, const char *name);

/* m packed (malloc'd, *len bytes); NULL when out of memory. */
uint8_t *registry_pack(const ProtobufCMessage *m, size_t *len);
/* "scope.name" ("name" at the root), malloc'd; NULL when out of memory. */
char *registry_join_name(const char *scope, const char *name);
/* The time now, for a record's metadata. */
void registry_now(Google__Protobuf__Timestamp *ts);

/* Full names of the messages of a file, nested ones included. */
/* A method's input or output type, resolved as protoc would from package pkg. */
/* Whether a method of a registration has types (else it is admitted by name only). */
bool registry_method_typed(const Google__Protobuf__MethodDescriptorProto *m);
const tp_message *registry_resolve_type(registry *r, const char *ns, const char *pkg,
					const char *name);
/* ---- regsynth.c: registry/<service>.proto, the file the registry makes for a service that
 * no file declares ---- */

typedef struct registry_synth {
	file_proto fd;
	service_proto svc;
	service_proto *svcs[1];
	strvec deps, types;
	Google__Protobuf__MethodDescriptorProto *methods, **mptrs;
} registry_synth;

/* Builds the file of service `full` (sd, its types relative to pkg) in s->fd, with its
 * typed methods. 0, -ENOENT when a type does not resolve (yet), -ENODATA when no method
 * has types (no file then), -ENOMEM; s is to be freed in every case. */
int registry_synth_build(registry *r, const char *ns, const char *pkg, const service_proto *sd,
			 const char *full, registry_synth *s);
void registry_synth_free(registry_synth *s);
/* Whether ns has registry/<service>.proto as the registry made it: that service alone. */
bool registry_made_file(registry *r, const char *ns, const char *service);

/* A length-delimited field costs at most this beyond its contents (tag, 32-bit length). */
#define REGISTRY_FIELD_MAX 6
/* An upper bound of the size of the file registry_synth_build makes, for when its types do
 * not all resolve before the request's file fd is in: each type may grow by the package (a
 * relative name made absolute), and imports the file of its type, fd's for those not known
 * yet. */
size_t registry_synth_bound(registry *r, const char *ns, const char *pkg, const service_proto *sd,
			    const char *full, const file_proto *fd);
/* After every version of a file left ns (its records and the type pool): forgets its id,
 * and the field history of its messages (those another file of ns does not define now). */
void registry_file_removed(registry *r, const char *ns, const char *file, const strvec *messages);

#endif
