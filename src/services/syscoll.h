/* The node's own collections (DATA/system/): registrations, mesh links, and the state of
 * the parts to come. Each is an ordinary collection of one API message type in the
 * reserved namespace "system", made on first use; writes to it are durable before they
 * return, since the node acts on them (a state change is committed before it is acted
 * on). Blocking: pool threads and start-up only. */
#ifndef SERVICES_SYSCOLL_H
#define SERVICES_SYSCOLL_H
#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "services/svc.h"
#include "store/coll.h"
#include "store/reader.h"
#include "store/writer.h"

#define SYSCOLL_NS "system"

/* Opens system/<name>, creating it for records of the API message type (a full name)
 * when missing; *out is released with store_coll_release. */
int syscoll_open(const svc_env *env, const char *name, const char *type, store_coll **out);
/* One atomic write, waited for: durable when it returns 0. */
int syscoll_write_wait(store_coll *c, store_op *ops, size_t n);
/* Calls fn with every record of c, oldest first; fn's nonzero value stops the scan. */
int syscoll_each(store_coll *c, store_record_fn fn, void *ctx);

/* A row: the record and its JSON rendering (for searches over system collections). */
typedef struct syscoll_row {
	uint8_t *data;
	size_t len;
	buf json;
} syscoll_row;

/* m packed and rendered as the JSON the store keeps. 0 or -ENOMEM...; free the row in
 * every case. */
int syscoll_row_make(tp_pool *types, const ProtobufCMessage *m, syscoll_row *row);
void syscoll_row_free(syscoll_row *row);

#endif
