/* What registry.c shares with regremove.c (the removals, kept apart for size): the
 * registry's state and the helpers both use. For these two files only. */
#ifndef SERVICES_REGISTRY_PRIV_H
#define SERVICES_REGISTRY_PRIV_H
#include <pthread.h>

#include "services/regindex.h"
#include "services/regledger.h"
#include "services/registry.h"
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

/* One atomic write to a system collection, waited for: durable when it returns 0. */
int registry_write_wait(store_coll *c, store_op *ops, size_t n);
/* Full names of the messages of a file, nested ones included. */
void registry_file_messages(const file_proto *fp, strvec *out);
/* A method's input or output type, resolved as protoc would from package pkg. */
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

/* Builds the file of service `full` (sd, its types relative to pkg) in s->fd. 0, -ENOENT
 * when a type does not resolve (yet), -ENOMEM; s is to be freed in every case. */
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
size_t registry_synth_bound(registry *r, const char *ns, const char *pkg,
			    const service_proto *sd, const char *full, const file_proto *fd);
/* After every version of a file left ns (its records and the type pool): forgets its id,
 * and the field history of its messages (those another file of ns does not define now). */
void registry_file_removed(registry *r, const char *ns, const char *file,
			   const strvec *messages);

#endif
