/* Queries of records: CollectionService's List and Search, and CollectionRepo's
 * SearchCollections (repo.c registers it). */
#ifndef SERVICES_COLL_SEARCH_H
#define SERVICES_COLL_SEARCH_H
#include "h2/call.h"
#include "services/svc.h"

void coll_search_list(call *c, const ProtobufCMessage *msg);
void coll_search_search(call *c, const ProtobufCMessage *msg);
void coll_search_collections(call *c, const ProtobufCMessage *msg);

#endif
