/* A collection's definition as the Collections services see it: its catalog row, the
 * definition unpacked once per version of that row and shared, and its message type. */
#ifndef SERVICES_COLL_DEF_H
#define SERVICES_COLL_DEF_H
#include <stdbool.h>

#include "collector/collection.pb-c.h"
#include "services/svc.h"
#include "services/svc_job.h"
#include "store/store.h"
#include "store/typepool.h"

/* A collection as the services see it. row and def are shared with other calls: read
 * only, valid until coll_def_free. */
typedef struct coll_def {
	const store_collection *row; /* the catalog row */
	Collector__Collection *def;  /* its definition, unpacked */
	const tp_message *type;	     /* the records' message type; NULL: untyped (coll_any.h) */
	/* Field paths are JSON paths, not checked against a message: untyped collections, and
	 * those of google.protobuf.Struct or Value, whose keys are the record's own. */
	bool schemaless;
	struct def_entry *entry; /* internal: holds row and def */
} coll_def;

/* Loads ns/name; fails j (NOT_FOUND, INTERNAL) and returns false when it cannot. The
 * definition of an open collection is unpacked once per version of its catalog row
 * (store_collection_version) and shared, so a Modify, or a delete and create again, is
 * seen by the next load; the type is looked up every time (a registered file may have
 * changed it). */
bool coll_def_load(svc_job *j, const svc_env *env, const char *ns, const char *name, coll_def *out);
void coll_def_free(coll_def *d);
/* Opens the loaded collection for reads and writes; fails j when it cannot. */
bool coll_def_open(svc_job *j, const svc_env *env, const coll_def *d, store_coll **out);

#endif
