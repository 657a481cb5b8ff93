#include "services/syscoll.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>

#include "base/mem.h"
#include "collector/collection.pb-c.h"
#include "store/json.h"

static uint8_t *pack(const ProtobufCMessage *m, size_t *len)
{
	*len = protobuf_c_message_get_packed_size(m);
	uint8_t *b = mem_alloc(*len ? *len : 1);
	if (b)
		protobuf_c_message_pack(m, b);
	return b;
}

int syscoll_open(const svc_env *env, const char *name, const char *type, store_coll **out)
{
	store *s = env->store;
	store_collection *row = NULL;
	int rc = store_collection_get(s, SYSCOLL_NS, name, &row);
	mem_free(row);
	if (rc == -ENOENT) {
		Collector__MessageTypeRef ref = COLLECTOR__MESSAGE_TYPE_REF__INIT;
		ref.message_name = (char *)type;
		Collector__Collection def = COLLECTOR__COLLECTION__INIT;
		def.namespace_ = SYSCOLL_NS;
		def.name = (char *)name;
		def.message_type = &ref;
		size_t len;
		uint8_t *bytes = pack(&def.base, &len);
		if (!bytes)
			return -ENOMEM;
		store_collection c = {.ns = SYSCOLL_NS,
				      .name = name,
				      .def = bytes,
				      .def_len = len,
				      .type_name = type};
		rc = store_collection_create(s, &c, STORE_CREATE_RESERVED);
		mem_free(bytes);
	}
	if (rc && rc != -EEXIST)
		return rc;
	return store_coll_acquire(s, SYSCOLL_NS, name, out);
}

typedef struct waiter {
	pthread_mutex_t m;
	pthread_cond_t cv;
	bool done;
	int rc;
} waiter;

static void write_done(store_write_req *req, int rc)
{
	waiter *w = req->ctx;
	pthread_mutex_lock(&w->m);
	w->done = true;
	w->rc = rc;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->m);
}

int syscoll_write_wait(store_coll *c, store_op *ops, size_t n)
{
	waiter w = {.m = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
	store_write_req req = {.ops = ops,
			       .nops = n,
			       .atomic = true,
			       .done = write_done,
			       .ctx = &w};
	int rc = store_coll_write(c, &req);
	if (rc)
		return rc;
	pthread_mutex_lock(&w.m);
	while (!w.done)
		pthread_cond_wait(&w.cv, &w.m);
	pthread_mutex_unlock(&w.m);
	return w.rc;
}

int syscoll_each(store_coll *c, store_record_fn fn, void *ctx)
{
	store_reader *rd;
	int rc = store_coll_read_begin(c, &rd);
	if (rc)
		return rc;
	rc = store_reader_scan(rd, NULL, 0, 0, fn, ctx);
	store_coll_read_end(rd);
	return rc;
}

int syscoll_row_make(tp_pool *types, const ProtobufCMessage *m, syscoll_row *row)
{
	*row = (syscoll_row){.json = BUF_INIT};
	const tp_message *type = tp_find_message(types, NULL, m->descriptor->name);
	row->data = pack(m, &row->len);
	if (!type || !row->data)
		return -ENOMEM;
	return json_from_proto(types, NULL, type, row->data, row->len, JSON_PROTO_NAMES,
			       &row->json);
}

void syscoll_row_free(syscoll_row *row)
{
	mem_free(row->data);
	buf_free(&row->json);
}
