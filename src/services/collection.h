/* collector.CollectionService. */
#ifndef SERVICES_COLLECTION_H
#define SERVICES_COLLECTION_H
#include "h2/method.h"
#include "services/colls.h"

/* env must outlive the table. */
int collection_register(method_table *t, svc_env *env);
/* CollectionRepo.SearchCollections' handler (repo.c registers it): it runs the searches of
 * CollectionService over several collections. */
void collection_search_collections(call *c, const ProtobufCMessage *msg);

#endif
