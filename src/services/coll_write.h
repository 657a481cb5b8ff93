/* CollectionService's record writes: Create, Update, Delete, Batch. */
#ifndef SERVICES_COLL_WRITE_H
#define SERVICES_COLL_WRITE_H
#include "h2/call.h"
#include "services/svc.h"

void coll_write_create(call *c, const ProtobufCMessage *msg);
void coll_write_update(call *c, const ProtobufCMessage *msg);
void coll_write_delete(call *c, const ProtobufCMessage *msg);
void coll_write_batch(call *c, const ProtobufCMessage *msg);

#endif
