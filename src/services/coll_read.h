/* CollectionService's reads (Get, Describe, Meta) and Modify, and the read job that the
 * queries (coll_search.c) build on. */
#ifndef SERVICES_COLL_READ_H
#define SERVICES_COLL_READ_H
#include <stdbool.h>

#include "h2/call.h"
#include "services/coll_def.h"
#include "services/svc.h"
#include "store/coll.h"

/* A call's read of one collection on the pool: its definition, and once open, the handle
 * and one of its readers. */
typedef struct coll_read_job {
	svc_req_job r;
	coll_def d;
	store_coll *coll;
	store_reader *rd;
} coll_read_job;

/* The job's release (svc_job.release) for a job allocated alone. */
void coll_read_release(svc_job *sj);
/* Loads the collection name, opens it and begins a read; fails the job when it cannot. */
bool coll_read_open(coll_read_job *rj, const char *name);
/* Ends the job's read and releases the collection it opened. */
void coll_read_close(coll_read_job *rj);

void coll_read_get(call *c, const ProtobufCMessage *msg);
void coll_read_describe(call *c, const ProtobufCMessage *msg);
void coll_read_modify(call *c, const ProtobufCMessage *msg);
/* Answered on the reactor: Meta needs no storage. */
void coll_read_meta(call *c, const ProtobufCMessage *msg);

#endif
