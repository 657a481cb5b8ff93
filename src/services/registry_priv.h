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

/* RegisteredProtos is indexed on this expression of its records' JSON (the namespace). */
#define REGISTRY_NS_EXPR "json_extract(json,'$.namespace')"

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
/* After every version of a file left ns (its records and the type pool): forgets its id,
 * and the field history of its messages (those another file of ns does not define now). */
void registry_file_removed(registry *r, const char *ns, const char *file,
			   const strvec *messages);

#endif
