/* CollectionService's reads: Get, Describe, Meta; and Modify, which changes the definition
 * (not the records) and runs the same way. A read runs on the pool with one of the
 * collection's readers (store/reader.h). */
#include "services/coll_read.h"

#include <errno.h>
#include <stdlib.h>

#include "base/clock.h"
#include "base/mem.h"
#include "collector/collection_server.pb-c.h"
#include "services/coll_any.h"
#include "services/coll_def.h"
#include "store/coll.h"

#define SERVER_VERSION "collector-c 0.1.0"

static Collector__Status status_ok = COLLECTOR__STATUS__INIT;

void coll_read_release(svc_job *sj)
{
	coll_read_job *rj = (coll_read_job *)sj;
	coll_def_free(&rj->d);
	mem_free(rj);
}

static void read_start(call *c, const void *req, const char *ns, void (*work)(svc_job *))
{
	const svc_env *env = call_ctx(c);
	coll_read_job *rj = mem_calloc(1, sizeof(*rj));
	if (!rj) {
		call_finish(c, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	rj->r.j.work = work;
	rj->r.j.release = coll_read_release;
	rj->r.env = env;
	rj->r.req = req;
	rj->r.ns = svc_namespace(c, env, ns);
	svc_job_run(env->pool, c, &rj->r.j);
}

bool coll_read_open(coll_read_job *rj, const char *name)
{
	svc_job *sj = &rj->r.j;
	if (!coll_def_load(sj, rj->r.env, rj->r.ns, name, &rj->d) ||
	    !coll_def_open(sj, rj->r.env, &rj->d, &rj->coll))
		return false;
	int rc = store_coll_read_begin(rj->coll, &rj->rd);
	if (rc) {
		svc_fail_store(sj, rc, "reading");
		store_coll_release(rj->coll);
		return false;
	}
	return true;
}

void coll_read_close(coll_read_job *rj)
{
	store_coll_read_end(rj->rd);
	store_coll_release(rj->coll);
}

static void get_work(svc_job *sj)
{
	coll_read_job *rj = (coll_read_job *)sj;
	const Collector__GetRequest *req = rj->r.req;
	if (!svc_check_id(sj, req->id) || !coll_read_open(rj, req->collection_name))
		return;
	store_record rec;
	int rc = store_reader_get(rj->rd, req->id, &rec);
	if (rc == 0 && !rj->d.type) {
		/* Untyped: the record is the Any it was written as. */
		Google__Protobuf__Any any;
		uint8_t *block;
		rc = coll_any_unpack(rec.data, rec.data_len, &any, &block);
		Collector__GetResponse resp = COLLECTOR__GET_RESPONSE__INIT;
		resp.status = &status_ok;
		resp.item = &any;
		if (rc == 0)
			svc_job_answer(sj, &resp.base);
		else if (rc == -ENOMEM)
			svc_job_fail(sj, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		else
			svc_job_fail(sj, GRPC_DATA_LOSS, "record '%.200s' of %s/%s is damaged",
				     req->id, rj->d.row->ns, rj->d.row->name);
		mem_free(block);
	} else if (rc == 0) {
		char buf[256], *heap;
		char *url = svc_type_url(rj->d.type, buf, sizeof(buf), &heap);
		Google__Protobuf__Any any;
		svc_record_any(&any, url, rec.data, rec.data_len);
		Collector__GetResponse resp = COLLECTOR__GET_RESPONSE__INIT;
		resp.status = &status_ok;
		resp.item = &any;
		if (url)
			svc_job_answer(sj, &resp.base);
		else
			svc_job_fail(sj, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		mem_free(heap);
	} else if (rc == -ENOENT) {
		svc_job_fail(sj, GRPC_NOT_FOUND, "no record '%.200s' in %s/%s", req->id,
			     rj->d.row->ns, rj->d.row->name);
	} else {
		svc_job_fail(sj, GRPC_INTERNAL, "reading: %s", store_err_msg());
	}
	coll_read_close(rj);
}

void coll_read_get(call *c, const ProtobufCMessage *msg)
{
	const Collector__GetRequest *req = (const void *)msg;
	read_start(c, req, req->namespace_, get_work);
}

static void describe_work(svc_job *sj)
{
	coll_read_job *rj = (coll_read_job *)sj;
	const Collector__DescribeRequest *req = rj->r.req;
	if (!coll_def_load(sj, rj->r.env, rj->r.ns, req->collection_name, &rj->d) ||
	    !coll_def_open(sj, rj->r.env, &rj->d, &rj->coll))
		return;
	int64_t records = 0, bytes = 0;
	int rc = store_coll_stats(rj->coll, &records, &bytes);
	store_coll_release(rj->coll);
	if (rc) {
		svc_fail_store(sj, rc, "measuring the collection");
		return;
	}
	Collector__DescribeResponse resp = COLLECTOR__DESCRIBE_RESPONSE__INIT;
	resp.status = &status_ok;
	resp.collection_definition = rj->d.def;
	resp.record_count = records;
	resp.storage_size_bytes = bytes;
	svc_job_answer(sj, &resp.base);
}

void coll_read_describe(call *c, const ProtobufCMessage *msg)
{
	const Collector__DescribeRequest *req = (const void *)msg;
	read_start(c, req, req->namespace_, describe_work);
}

/* Modify: the indexed fields become exactly the given ones (indexes built or dropped),
 * then the definition says so. */
static void modify_work(svc_job *sj)
{
	coll_read_job *rj = (coll_read_job *)sj;
	const Collector__ModifyRequest *req = rj->r.req;
	if (!coll_def_load(sj, rj->r.env, rj->r.ns, req->collection_name, &rj->d))
		return;
	svc_indexes ix;
	char *indexed = NULL;
	uint8_t *def = NULL;
	if (!svc_indexes_check(sj, rj->d.type, req->indexed_fields, req->n_indexed_fields, &ix) ||
	    !coll_def_open(sj, rj->r.env, &rj->d, &rj->coll))
		goto out;
	int rc = svc_indexes_apply(rj->coll, &ix);
	store_coll_release(rj->coll);
	if (rc) {
		svc_fail_store(sj, rc, "building the indexes");
		goto out;
	}
	Collector__Collection upd = *rj->d.def;
	upd.indexed_fields = req->indexed_fields;
	upd.n_indexed_fields = req->n_indexed_fields;
	Collector__Metadata md = COLLECTOR__METADATA__INIT;
	if (upd.metadata)
		md = *upd.metadata;
	int64_t now_us = clock_wall_ns() / 1000;
	Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	ts.seconds = now_us / 1000000;
	ts.nanos = (int32_t)(now_us % 1000000) * 1000;
	md.updated_at = &ts;
	upd.metadata = &md;
	size_t len = collector__collection__get_packed_size(&upd);
	def = mem_alloc(len ? len : 1);
	indexed = svc_strings_json(req->indexed_fields, req->n_indexed_fields);
	if (!def || !indexed) {
		svc_job_fail(sj, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	collector__collection__pack(&upd, def);
	store_collection row = *rj->d.row;
	row.def = def;
	row.def_len = len;
	row.indexed = indexed;
	row.updated_at = now_us;
	rc = store_collection_update_def(rj->r.env->store, &row);
	if (rc) {
		svc_fail_store(sj, rc, "updating the definition");
		goto out;
	}
	Collector__ModifyResponse resp = COLLECTOR__MODIFY_RESPONSE__INIT;
	resp.status = &status_ok;
	svc_job_answer(sj, &resp.base);
out:
	svc_indexes_free(&ix);
	mem_free(indexed);
	mem_free(def);
}

void coll_read_modify(call *c, const ProtobufCMessage *msg)
{
	const Collector__ModifyRequest *req = (const void *)msg;
	read_start(c, req, req->namespace_, modify_work);
}

/* Meta needs no storage: answered on the reactor. The features this node has travel in
 * the status details. */
void coll_read_meta(call *c, const ProtobufCMessage *msg)
{
	(void)msg;
	Collector__Status__DetailsEntry e = COLLECTOR__STATUS__DETAILS_ENTRY__INIT;
	e.key = "features";
	e.value =
		"crud,list,search,full-text,json-filters,keyset-paging,group-commit,indexed-fields,"
		"untyped-collections";
	Collector__Status__DetailsEntry *details[] = {&e};
	Collector__Status st = COLLECTOR__STATUS__INIT;
	st.n_details = 1;
	st.details = details;
	Collector__MetaResponse resp = COLLECTOR__META_RESPONSE__INIT;
	resp.status = &st;
	resp.server_version = SERVER_VERSION;
	call_reply(c, &resp.base);
}
