/* Request messages decoded on the blocking pool: a large or compressed message would hold
 * the reactor (and every connection on it) for as long as inflating and decoding take, so
 * the server hands it here. The job inflates (bounded by max_len) and decodes it with
 * pbdecode's bounds; its done callback runs back on the home reactor. */
#ifndef H2_DECODE_H
#define H2_DECODE_H
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/pool.h"

/* Messages up to this size (after inflating), or of at most DECODE_INLINE_FIELDS fields
 * however long (a file chunk: one bytes field), are decoded on the reactor: a few
 * milliseconds at worst. Inflating more than DECODE_INLINE_MAX goes to the pool. */
#define DECODE_INLINE_MAX (64 * 1024)
#define DECODE_INLINE_FIELDS 4096

typedef struct decode_job decode_job;

/* Reactor thread: the message (owned by the callee: free it with
 * protobuf_c_message_free_unpacked), or NULL with the gRPC status that refuses it. Not
 * called for a cancelled job. */
typedef void (*decode_done_fn)(void *owner, ProtobufCMessage *msg, int code, const char *err);

/* Copies data[0..len) and queues its decoding as a message of type d (inflating it first
 * when gzip). 0; -EAGAIN when the pool's queue is full, -ESHUTDOWN, -ENOMEM. *out lets the
 * owner cancel the job until done runs. */
int decode_submit(pool *p, reactor *home, const ProtobufCMessageDescriptor *d, const uint8_t *data,
		  size_t len, bool gzip, size_t max_len, decode_done_fn done, void *owner,
		  decode_job **out);
/* Reactor thread: the owner is gone; done will not be called and the job frees itself. */
void decode_cancel(decode_job *j);

/* Frees a decoded message on the pool (freeing one of a million sub-messages takes as long
 * as decoding it); on the calling thread when the pool cannot take the job. */
void decode_free_later(pool *p, ProtobufCMessage *msg);

/* Inflates a gzip message bounded by max_len and decodes it (pbdecode): 0 and *msg, or the
 * gRPC status and err. The reactor's inline path and the pool job share it. */
int decode_message(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t len, bool gzip,
		   size_t max_len, ProtobufCMessage **msg, char *err, size_t cap);

#endif
