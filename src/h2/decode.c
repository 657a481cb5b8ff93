#include "h2/decode.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/container_of.h"
#include "base/mem.h"
#include "base/pbdecode.h"
#include "h2/gzip.h"
#include "h2/status.h"

struct decode_job {
	pool_job pj;
	const ProtobufCMessageDescriptor *d;
	uint8_t *data;
	size_t len, max_len;
	bool gzip;
	bool cancelled; /* reactor side: the owner is gone */
	decode_done_fn done;
	void *owner;
	/* the result, written by the pool thread */
	ProtobufCMessage *msg;
	int code;
	char err[200];
};

int decode_message(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t len, bool gzip,
		   size_t max_len, ProtobufCMessage **msg, char *err, size_t cap)
{
	*msg = NULL;
	buf plain = {0};
	if (gzip) {
		int rc = gzip_decompress(&plain, data, len, max_len);
		if (rc) {
			buf_free(&plain);
			const char *why;
			int code = gzip_failure_status(rc, &why);
			snprintf(err, cap, "%s", why);
			return code;
		}
		data = plain.data;
		len = plain.len;
	}
	int rc = pbdecode(d, data, len, msg, err, cap);
	buf_free(&plain);
	return rc ? grpc_code_of_decode(rc) : GRPC_OK;
}

static void job_work(pool_job *pj)
{
	decode_job *j = container_of(pj, decode_job, pj);
	if (pool_job_cancelled(pj))
		return;
	j->code = decode_message(j->d, j->data, j->len, j->gzip, j->max_len, &j->msg, j->err,
				 sizeof(j->err));
}

static void job_done(pool_job *pj)
{
	decode_job *j = container_of(pj, decode_job, pj);
	mem_free(j->data);
	if (j->cancelled || pool_job_cancelled(pj)) {
		if (j->msg)
			protobuf_c_message_free_unpacked(j->msg, NULL);
	} else {
		j->done(j->owner, j->msg, j->code, j->err);
	}
	mem_free(j);
}

int decode_submit(pool *p, reactor *home, const ProtobufCMessageDescriptor *d, const uint8_t *data,
		  size_t len, bool gzip, size_t max_len, decode_done_fn done, void *owner,
		  decode_job **out)
{
	decode_job *j = mem_calloc(1, sizeof(*j));
	if (!j || !(j->data = mem_alloc(len ? len : 1))) {
		mem_free(j);
		return -ENOMEM;
	}
	memcpy(j->data, data, len);
	j->d = d;
	j->len = len;
	j->gzip = gzip;
	j->max_len = max_len;
	j->done = done;
	j->owner = owner;
	j->code = GRPC_INTERNAL;
	j->pj.work = job_work;
	j->pj.done = job_done;
	int rc = pool_submit(p, home, &j->pj);
	if (rc) {
		mem_free(j->data);
		mem_free(j);
		return rc;
	}
	*out = j;
	return 0;
}

void decode_cancel(decode_job *j)
{
	j->cancelled = true;
	pool_job_cancel(&j->pj);
}

typedef struct free_job {
	pool_job pj;
	ProtobufCMessage *msg;
} free_job;

static void free_work(pool_job *pj)
{
	free_job *j = container_of(pj, free_job, pj);
	protobuf_c_message_free_unpacked(j->msg, NULL);
}

static void free_done(pool_job *pj) { mem_free(pj); }

void decode_free_later(pool *p, ProtobufCMessage *msg)
{
	free_job *j = mem_calloc(1, sizeof(*j));
	if (j) {
		j->msg = msg;
		j->pj.work = free_work;
		j->pj.done = free_done;
		if (pool_submit(p, NULL, &j->pj) == 0)
			return;
		mem_free(j);
	}
	protobuf_c_message_free_unpacked(msg, NULL);
}
