/* collector.CollectionService: the records of one collection. Reads run on the pool with a
 * reader connection; writes are transcoded on the pool, then committed by the
 * collection's writer in groups (store/coll.h), and answered once durable. */
#include "services/collection.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collector/collection_repo.pb-c.h"
#include "collector/collection_server.pb-c.h"
#include "io/clock.h"
#include "io/uuid.h"
#include "services/budget.h"
#include "services/colls.h"
#include "services/items.h"
#include "store/coll.h"
#include "store/json.h"
#include "store/query.h"

#define SVC "/collector.CollectionService/"
#define ID_MAX 256
#define SERVER_VERSION "collector-c 0.1.0"

static Collector__Status status_ok = COLLECTOR__STATUS__INIT;

/* A record id: 1 to 256 bytes, none of them a control character. */
static bool check_id(svc_job *j, const char *id)
{
	size_t n = id ? strlen(id) : 0;
	bool ok = n > 0 && n <= ID_MAX;
	for (size_t i = 0; ok && i < n; i++)
		ok = (unsigned char)id[i] >= 0x20 && id[i] != 0x7f;
	if (!ok)
		svc_job_fail(j, GRPC_INVALID_ARGUMENT,
			     "invalid id: 1 to %d bytes without control characters", ID_MAX);
	return ok;
}

/* The item must be a message of the collection's type: its JSON (proto field names) is
 * what filters and full-text search see. */
static bool transcode_item(svc_job *j, const svc_env *env, const coll_def *d,
			   const Google__Protobuf__Any *item, jbuf *json)
{
	if (!item) {
		svc_job_fail(j, GRPC_INVALID_ARGUMENT, "item is required");
		return false;
	}
	if (!svc_type_url_is(item->type_url, d->type)) {
		svc_job_fail(j, GRPC_INVALID_ARGUMENT,
			     "item is a '%.200s', the collection holds %s", item->type_url,
			     tp_message_get(d->type)->full_name);
		return false;
	}
	char *err = NULL;
	int rc = json_from_proto(env->types, d->row->ns, d->type, item->value.data, item->value.len,
				 JSON_PROTO_NAMES, json, &err);
	if (rc) {
		svc_job_fail(j, rc == -ENOMEM ? GRPC_RESOURCE_EXHAUSTED : GRPC_INVALID_ARGUMENT,
			     "item is not a valid %s: %s", tp_message_get(d->type)->full_name,
			     err ? err : "out of memory");
		free(err);
		return false;
	}
	return true;
}

/* ---- writes: Create, Update, Delete, Batch ---- */

/* One write operation, checked and transcoded on the pool, then run by the writer. */
typedef struct op_prep {
	const svc_env *env;
	const coll_def *d;
	int kind;
	const void *req; /* its Create/Update/DeleteRequest */
	store_op *op;
	jbuf json;
	jbuf merged; /* Update with a mask: the merged record's bytes, written from here */
	char id[ID_MAX + 1];
} op_prep;

enum { W_CREATE, W_UPDATE, W_DELETE };

static void op_prep_free(op_prep *p)
{
	jbuf_free(&p->json);
	jbuf_free(&p->merged);
}

static int merge_apply(void *ctx, const store_row *old, store_row *out);

/* The op's collection fields must be empty or the call's own. */
static bool same_collection(svc_job *j, const op_prep *p, const char *ns, const char *name)
{
	if ((ns && *ns && strcmp(ns, p->d->row->ns)) ||
	    (name && *name && strcmp(name, p->d->row->name))) {
		svc_job_fail(j, GRPC_INVALID_ARGUMENT,
			     "an operation names another collection than the batch (%s/%s)",
			     p->d->row->ns, p->d->row->name);
		return false;
	}
	return true;
}

static bool prep_create(svc_job *j, op_prep *p)
{
	const Collector__CreateRequest *req = p->req;
	if (req->id && *req->id) {
		if (!check_id(j, req->id))
			return false;
		snprintf(p->id, sizeof(p->id), "%s", req->id);
	} else if (uuid7_make(p->id)) {
		svc_job_fail(j, GRPC_INTERNAL, "no randomness for a record id");
		return false;
	}
	if (!transcode_item(j, p->env, p->d, req->item, &p->json))
		return false;
	p->op->kind = STORE_OP_INSERT;
	p->op->row = (store_row){.data = req->item->value.data,
				 .data_len = req->item->value.len,
				 .json = p->json.data};
	p->op->id = p->id;
	return true;
}

static bool prep_update(svc_job *j, op_prep *p)
{
	const Collector__UpdateRequest *req = p->req;
	if (!check_id(j, req->id))
		return false;
	snprintf(p->id, sizeof(p->id), "%s", req->id);
	if (!transcode_item(j, p->env, p->d, req->item, &p->json))
		return false;
	for (size_t i = 0; i < req->n_update_mask; i++) {
		const char *m = req->update_mask[i];
		query_path qp;
		const char *why;
		if (path_parse(m, strlen(m), &qp, &why)) {
			svc_job_fail(j, GRPC_INVALID_ARGUMENT, "update_mask '%.100s': %s", m, why);
			return false;
		}
		bool indexed = false, whole;
		for (unsigned k = 0; k < qp.nseg; k++)
			indexed |= qp.seg[k].nidx > 0;
		if (indexed || !svc_field_at(p->d->type, &qp, &whole)) {
			svc_job_fail(j, GRPC_INVALID_ARGUMENT, "update_mask '%.100s' is not a field of %s",
				     m, tp_message_get(p->d->type)->full_name);
			return false;
		}
	}
	p->op->kind = STORE_OP_UPDATE;
	p->op->id = p->id;
	if (!req->n_update_mask) {
		p->op->row = (store_row){.data = req->item->value.data,
					 .data_len = req->item->value.len,
					 .json = p->json.data};
	} else {
		p->op->row.json = p->json.data;
		p->op->mask = (const char *const *)req->update_mask;
		p->op->nmask = req->n_update_mask;
		p->op->apply = merge_apply;
		p->op->apply_ctx = p;
	}
	return true;
}

static bool prep_delete(svc_job *j, op_prep *p)
{
	const Collector__DeleteRequest *req = p->req;
	if (!check_id(j, req->id))
		return false;
	snprintf(p->id, sizeof(p->id), "%s", req->id);
	p->op->kind = STORE_OP_DELETE;
	p->op->id = p->id;
	return true;
}

static bool prep(svc_job *j, op_prep *p)
{
	switch (p->kind) {
	case W_CREATE:
		return prep_create(j, p);
	case W_UPDATE:
		return prep_update(j, p);
	default:
		return prep_delete(j, p);
	}
}

/* A store outcome as the status of one operation. */
static int op_status(int rc, const op_prep *p, char *msg, size_t cap)
{
	const char *ns = p->d->row->ns, *name = p->d->row->name;
	switch (rc) {
	case 0:
		*msg = 0;
		return GRPC_OK;
	case -EEXIST:
		snprintf(msg, cap, "a record with id '%.200s' already exists in %s/%s", p->id, ns, name);
		return GRPC_ALREADY_EXISTS;
	case -ENOENT:
		snprintf(msg, cap, "no record '%.200s' in %s/%s", p->id, ns, name);
		return GRPC_NOT_FOUND;
	case -ECANCELED:
		snprintf(msg, cap, "not applied: another operation of the batch failed");
		return GRPC_ABORTED;
	case -EAGAIN:
		snprintf(msg, cap, "the collection's write queue is full");
		return GRPC_RESOURCE_EXHAUSTED;
	default:
		snprintf(msg, cap, "the write failed: %s", strerror(-rc));
		return GRPC_INTERNAL;
	}
}

/* A call's writes: one op (Create, Update, Delete) or a Batch's. */
typedef struct write_job {
	svc_req_job r;
	coll_def d;
	store_coll *coll;
	store_write_req wreq;
	int kind; /* W_*, or -1 for Batch */
	size_t n;
	store_op *ops;
	op_prep *preps;
} write_job;

#define W_BATCH (-1)
#define BATCH_MAX 1000

static void write_release(svc_job *sj)
{
	write_job *w = (write_job *)sj;
	for (size_t i = 0; i < w->n; i++)
		op_prep_free(&w->preps[i]);
	free(w->preps);
	free(w->ops);
	coll_def_free(&w->d);
	free(w);
}

static void answer_batch(write_job *w, int rc);

/* Writer thread: the outcome is durable (or failed). */
static void write_done(store_write_req *req, int rc)
{
	write_job *w = req->ctx;
	svc_job *sj = &w->r.j;
	if (w->kind == W_BATCH) {
		answer_batch(w, rc);
	} else if (rc) {
		char msg[320];
		int code = op_status(rc, &w->preps[0], msg, sizeof(msg));
		svc_job_fail(sj, code, "%s", msg);
	} else if (w->kind == W_CREATE) {
		Collector__CreateResponse resp = COLLECTOR__CREATE_RESPONSE__INIT;
		resp.status = &status_ok;
		resp.id = w->preps[0].id;
		svc_job_answer(sj, &resp.base);
	} else if (w->kind == W_UPDATE) {
		Collector__UpdateResponse resp = COLLECTOR__UPDATE_RESPONSE__INIT;
		resp.status = &status_ok;
		svc_job_answer(sj, &resp.base);
	} else {
		Collector__DeleteResponse resp = COLLECTOR__DELETE_RESPONSE__INIT;
		resp.status = &status_ok;
		svc_job_answer(sj, &resp.base);
	}
	store_coll_release(w->coll);
	w->coll = NULL;
	svc_job_resume(sj);
}

/* Pool thread, once every op is prepared: hands them to the collection's writer. */
static void write_submit(write_job *w)
{
	svc_job *sj = &w->r.j;
	if (!coll_def_open(sj, w->r.env, &w->d, &w->coll))
		return;
	w->wreq = (store_write_req){.ops = w->ops,
				    .nops = w->n,
				    .atomic = w->kind == W_BATCH,
				    .done = write_done,
				    .ctx = w};
	svc_job_defer(sj);
	int rc = store_write(w->coll, &w->wreq);
	if (rc) {
		/* Refused before queueing: done will not come, answer here. */
		store_coll_release(w->coll);
		w->coll = NULL;
		if (rc == -EAGAIN)
			svc_job_fail(sj, GRPC_RESOURCE_EXHAUSTED, "the collection's write queue is full");
		else
			svc_fail_store(sj, rc, "writing");
		svc_job_resume(sj);
	}
}

static bool write_alloc(svc_job *sj, write_job *w, size_t n)
{
	w->n = n;
	w->ops = calloc(n, sizeof(*w->ops));
	w->preps = calloc(n, sizeof(*w->preps));
	if (!w->ops || !w->preps) {
		svc_job_fail(sj, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		w->n = 0;
		return false;
	}
	for (size_t i = 0; i < n; i++)
		w->preps[i] = (op_prep){.env = w->r.env, .d = &w->d, .op = &w->ops[i]};
	return true;
}

/* Create, Update, Delete: one op. */
static void single_work(svc_job *sj)
{
	write_job *w = (write_job *)sj;
	const char *name = w->kind == W_CREATE	 ? ((const Collector__CreateRequest *)w->r.req)->collection_name
			   : w->kind == W_UPDATE ? ((const Collector__UpdateRequest *)w->r.req)->collection_name
						 : ((const Collector__DeleteRequest *)w->r.req)->collection_name;
	if (!coll_def_load(sj, w->r.env, w->r.ns, name, &w->d) || !write_alloc(sj, w, 1))
		return;
	w->preps[0].kind = w->kind;
	w->preps[0].req = w->r.req;
	if (prep(sj, &w->preps[0]))
		write_submit(w);
}

static void batch_work(svc_job *sj)
{
	write_job *w = (write_job *)sj;
	const Collector__BatchRequest *req = w->r.req;
	if (!coll_def_load(sj, w->r.env, w->r.ns, req->collection_name, &w->d))
		return;
	if (!req->n_operations || req->n_operations > BATCH_MAX) {
		svc_job_fail(sj, GRPC_INVALID_ARGUMENT, "a batch holds 1 to %d operations", BATCH_MAX);
		return;
	}
	if (!write_alloc(sj, w, req->n_operations))
		return;
	for (size_t i = 0; i < w->n; i++) {
		const Collector__RequestOp *o = req->operations[i];
		op_prep *p = &w->preps[i];
		const char *ns = NULL, *name = NULL;
		switch (o->operation_case) {
		case COLLECTOR__REQUEST_OP__OPERATION_CREATE:
			p->kind = W_CREATE, p->req = o->create;
			ns = o->create->namespace_, name = o->create->collection_name;
			break;
		case COLLECTOR__REQUEST_OP__OPERATION_UPDATE:
			p->kind = W_UPDATE, p->req = o->update;
			ns = o->update->namespace_, name = o->update->collection_name;
			break;
		case COLLECTOR__REQUEST_OP__OPERATION_DELETE:
			p->kind = W_DELETE, p->req = o->delete_;
			ns = o->delete_->namespace_, name = o->delete_->collection_name;
			break;
		default:
			svc_job_fail(sj, GRPC_INVALID_ARGUMENT, "operation %zu is empty", i);
			return;
		}
		if (!same_collection(sj, p, ns, name) || !prep(sj, p)) {
			char why[sizeof(sj->msg)];
			snprintf(why, sizeof(why), "%s", sj->msg);
			svc_job_fail(sj, sj->code, "operation %zu: %s", i, why);
			return;
		}
	}
	write_submit(w);
}

/* Writer thread: every op's status; the batch's own says whether it applied. */
static void answer_batch(write_job *w, int rc)
{
	svc_job *sj = &w->r.j;
	Collector__BatchResponse resp = COLLECTOR__BATCH_RESPONSE__INIT;
	Collector__ResponseOp *ops = calloc(w->n, sizeof(*ops));
	Collector__ResponseOp **ptrs = calloc(w->n, sizeof(*ptrs));
	Collector__Status *st = calloc(w->n + 1, sizeof(*st));
	char(*msgs)[320] = calloc(w->n + 1, sizeof(*msgs));
	Collector__CreateResponse *creates = calloc(w->n, sizeof(*creates));
	Collector__UpdateResponse upd = COLLECTOR__UPDATE_RESPONSE__INIT;
	Collector__DeleteResponse del = COLLECTOR__DELETE_RESPONSE__INIT;
	if (!ops || !ptrs || !st || !msgs || !creates) {
		svc_job_fail(sj, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	upd.status = del.status = &status_ok;
	size_t failed = w->n;
	for (size_t i = 0; i < w->n; i++) {
		collector__response_op__init(&ops[i]);
		collector__status__init(&st[i]);
		int orc = rc && !w->ops[i].rc ? rc : w->ops[i].rc;
		st[i].code = svc_status_code(op_status(orc, &w->preps[i], msgs[i], 320));
		st[i].message = msgs[i];
		if (orc && orc != -ECANCELED && failed == w->n)
			failed = i;
		ops[i].status = &st[i];
		if (w->preps[i].kind == W_CREATE) {
			collector__create_response__init(&creates[i]);
			creates[i].status = &st[i];
			creates[i].id = orc ? "" : w->preps[i].id;
			ops[i].response_case = COLLECTOR__RESPONSE_OP__RESPONSE_CREATE;
			ops[i].create = &creates[i];
		} else if (w->preps[i].kind == W_UPDATE) {
			ops[i].response_case = COLLECTOR__RESPONSE_OP__RESPONSE_UPDATE;
			ops[i].update = &upd;
		} else {
			ops[i].response_case = COLLECTOR__RESPONSE_OP__RESPONSE_DELETE;
			ops[i].delete_ = &del;
		}
		ptrs[i] = &ops[i];
	}
	Collector__Status *all = &st[w->n];
	collector__status__init(all);
	if (rc) {
		all->code = COLLECTOR__STATUS__CODE__ABORTED;
		snprintf(msgs[w->n], 320, "nothing applied: operation %zu failed: %s", failed,
			 failed < w->n ? msgs[failed] : strerror(-rc));
		all->message = msgs[w->n];
	}
	resp.status = all;
	resp.responses = ptrs;
	resp.n_responses = w->n;
	svc_job_answer(sj, &resp.base);
out:
	free(ops);
	free(ptrs);
	free(st);
	free(msgs);
	free(creates);
}

static void write_start(call *c, const void *req, const char *ns, void (*work)(svc_job *),
			int kind)
{
	const svc_env *env = call_ctx(c);
	write_job *w = calloc(1, sizeof(*w));
	if (!w) {
		call_finish(c, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	w->r.j.work = work;
	w->r.j.release = write_release;
	w->r.env = env;
	w->r.req = req;
	w->r.ns = svc_namespace(c, env, ns);
	w->kind = kind;
	svc_job_run(env->pool, c, &w->r.j);
}

static void create(call *c, const ProtobufCMessage *msg)
{
	const Collector__CreateRequest *req = (const void *)msg;
	write_start(c, req, req->namespace_, single_work, W_CREATE);
}

static void update(call *c, const ProtobufCMessage *msg)
{
	const Collector__UpdateRequest *req = (const void *)msg;
	write_start(c, req, req->namespace_, single_work, W_UPDATE);
}

static void delete(call *c, const ProtobufCMessage *msg)
{
	const Collector__DeleteRequest *req = (const void *)msg;
	write_start(c, req, req->namespace_, single_work, W_DELETE);
}

static void batch(call *c, const ProtobufCMessage *msg)
{
	const Collector__BatchRequest *req = (const void *)msg;
	write_start(c, req, req->namespace_, batch_work, W_BATCH);
}

/* Update with a mask takes the masked fields from the item and keeps the rest: the writer
 * merges the JSON forms (proto field names) inside its transaction (store_op.mask), so
 * that concurrent updates of one record cannot lose each other's fields; here the merged
 * JSON goes back to protobuf, then to the canonical JSON the store keeps. */
static int merge_apply(void *ctx, const store_row *merged, store_row *out)
{
	op_prep *p = ctx;
	jbuf bin = JBUF_INIT, canon = JBUF_INIT;
	const svc_env *env = p->env;
	int rc = json_to_proto(env->types, p->d->row->ns, p->d->type, merged->json,
			       strlen(merged->json), &bin, NULL);
	if (!rc)
		rc = json_from_proto(env->types, p->d->row->ns, p->d->type, (const uint8_t *)bin.data,
				     bin.len, JSON_PROTO_NAMES, &canon, NULL);
	if (rc) {
		jbuf_free(&bin);
		jbuf_free(&canon);
		return rc;
	}
	/* The writer copies out after we return: the buffers stay with the job. */
	jbuf_free(&p->json);
	p->json = canon;
	jbuf_free(&p->merged);
	p->merged = bin;
	*out = (store_row){.data = bin.data, .data_len = bin.len, .json = canon.data};
	return 0;
}

/* ---- reads: Get, Describe, Meta ---- */

typedef struct read_job {
	svc_req_job r;
	coll_def d;
	store_coll *coll;
	store_reader *rd;
} read_job;

static void read_release(svc_job *sj)
{
	read_job *rj = (read_job *)sj;
	coll_def_free(&rj->d);
	free(rj);
}

static void read_start(call *c, const void *req, const char *ns, void (*work)(svc_job *))
{
	const svc_env *env = call_ctx(c);
	read_job *rj = calloc(1, sizeof(*rj));
	if (!rj) {
		call_finish(c, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	rj->r.j.work = work;
	rj->r.j.release = read_release;
	rj->r.env = env;
	rj->r.req = req;
	rj->r.ns = svc_namespace(c, env, ns);
	svc_job_run(env->pool, c, &rj->r.j);
}

/* Loads and opens the collection and begins a read. */
static bool read_open(read_job *rj, const char *name)
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

static void read_close(read_job *rj)
{
	store_coll_read_end(rj->rd);
	store_coll_release(rj->coll);
}

static void get_work(svc_job *sj)
{
	read_job *rj = (read_job *)sj;
	const Collector__GetRequest *req = rj->r.req;
	if (!check_id(sj, req->id) || !read_open(rj, req->collection_name))
		return;
	store_record rec;
	int rc = store_reader_get(rj->rd, req->id, &rec);
	if (rc == 0) {
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
		free(heap);
	} else if (rc == -ENOENT) {
		svc_job_fail(sj, GRPC_NOT_FOUND, "no record '%.200s' in %s/%s", req->id,
			     rj->d.row->ns, rj->d.row->name);
	} else {
		svc_job_fail(sj, GRPC_INTERNAL, "reading: %s", store_errmsg());
	}
	read_close(rj);
}

static void get(call *c, const ProtobufCMessage *msg)
{
	const Collector__GetRequest *req = (const void *)msg;
	read_start(c, req, req->namespace_, get_work);
}

static void describe_work(svc_job *sj)
{
	read_job *rj = (read_job *)sj;
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

static void describe(call *c, const ProtobufCMessage *msg)
{
	const Collector__DescribeRequest *req = (const void *)msg;
	read_start(c, req, req->namespace_, describe_work);
}

/* Modify: the indexed fields become exactly the given ones (indexes built or dropped),
 * then the definition says so. */
static void modify_work(svc_job *sj)
{
	read_job *rj = (read_job *)sj;
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
	def = malloc(len ? len : 1);
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
	free(indexed);
	free(def);
}

static void modify(call *c, const ProtobufCMessage *msg)
{
	const Collector__ModifyRequest *req = (const void *)msg;
	read_start(c, req, req->namespace_, modify_work);
}

/* Meta needs no storage: answered on the reactor. The features this node has travel in
 * the status details. */
static void meta(call *c, const ProtobufCMessage *msg)
{
	(void)msg;
	Collector__Status__DetailsEntry e = COLLECTOR__STATUS__DETAILS_ENTRY__INIT;
	e.key = "features";
	e.value = "crud,list,search,full-text,json-filters,keyset-paging,group-commit,indexed-fields";
	Collector__Status__DetailsEntry *details[] = {&e};
	Collector__Status st = COLLECTOR__STATUS__INIT;
	st.n_details = 1;
	st.details = details;
	Collector__MetaResponse resp = COLLECTOR__META_RESPONSE__INIT;
	resp.status = &st;
	resp.server_version = SERVER_VERSION;
	call_reply(c, &resp.base);
}

/* ---- List and Search ---- */

/* The kind of a field path in the collection's message, for typed comparisons. */
static int resolve_kind(void *ctx, const query_path *p, enum query_kind *kind)
{
	bool whole;
	const tp_field *f = svc_field_at(ctx, p, &whole);
	if (!f)
		return -ENOENT;
	if (whole) {
		*kind = f->is_map ? QUERY_KIND_MAP : QUERY_KIND_REPEATED;
		return 0;
	}
	switch (f->type) {
	case TP_STRING:
		*kind = QUERY_KIND_STRING;
		break;
	case TP_BYTES:
		*kind = QUERY_KIND_BYTES;
		break;
	case TP_BOOL:
		*kind = QUERY_KIND_BOOL;
		break;
	case TP_ENUM:
		*kind = QUERY_KIND_ENUM;
		break;
	case TP_INT64:
	case TP_UINT64:
	case TP_SINT64:
	case TP_FIXED64:
	case TP_SFIXED64:
		*kind = QUERY_KIND_INT64;
		break;
	case TP_MESSAGE:
	case TP_GROUP:
		switch (tp_message_get(f->message)->wkt) {
		case TP_WKT_TIMESTAMP:
			*kind = QUERY_KIND_TIMESTAMP;
			break;
		case TP_WKT_DURATION:
			*kind = QUERY_KIND_DURATION;
			break;
		default:
			*kind = QUERY_KIND_MESSAGE;
		}
		break;
	default:
		*kind = QUERY_KIND_NUMBER;
	}
	return 0;
}

/* google.protobuf.Value/Struct (protobuf-c) as the query module's plain values. The
 * arena holds every node; it is freed in one go. */
typedef struct value_arena {
	query_value *vals;
	query_member *members;
	size_t nv, nm, capv, capm;
	bool failed;
} value_arena;

static query_value *va_values(value_arena *a, size_t n)
{
	if (a->nv + n > a->capv) {
		a->failed = true;
		return NULL;
	}
	query_value *v = a->vals + a->nv;
	a->nv += n;
	return v;
}

static void convert_value(value_arena *a, const Google__Protobuf__Value *in, query_value *out);

static void convert_struct(value_arena *a, const Google__Protobuf__Struct *s, query_value *out)
{
	out->type = QUERY_STRUCT;
	size_t n = s ? s->n_fields : 0;
	if (a->nm + n > a->capm) {
		a->failed = true;
		return;
	}
	query_member *mem = a->members + a->nm;
	a->nm += n;
	query_value *vals = va_values(a, n);
	if (!vals && n)
		return;
	for (size_t i = 0; i < n; i++) {
		mem[i].key = s->fields[i]->key;
		convert_value(a, s->fields[i]->value, &vals[i]);
		mem[i].value = &vals[i];
	}
	out->u.object.members = mem;
	out->u.object.n = n;
}

/* A Value not sent, or sent with none of its kinds set, is QUERY_ABSENT: the compiler
 * refuses it where an operator needs a value, rather than comparing with null. */
static void convert_value(value_arena *a, const Google__Protobuf__Value *in, query_value *out)
{
	*out = (query_value){.type = QUERY_ABSENT};
	if (!in)
		return;
	switch (in->kind_case) {
	case GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE:
		out->type = QUERY_NULL;
		break;
	case GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE:
		out->type = QUERY_NUMBER;
		out->u.number = in->number_value;
		break;
	case GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE:
		out->type = QUERY_STRING;
		out->u.string = in->string_value;
		break;
	case GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE:
		out->type = QUERY_BOOL;
		out->u.boolean = in->bool_value;
		break;
	case GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE:
		convert_struct(a, in->struct_value, out);
		break;
	case GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE: {
		size_t n = in->list_value ? in->list_value->n_values : 0;
		query_value *items = va_values(a, n);
		if (!items && n)
			return;
		for (size_t i = 0; i < n; i++)
			convert_value(a, in->list_value->values[i], &items[i]);
		out->type = QUERY_LIST;
		out->u.list.items = items;
		out->u.list.n = n;
		break;
	}
	default:
		break;
	}
}

/* Bounds the conversion: every Value or Struct entry takes at least two bytes of the
 * request. Sized by this request, not by the largest one allowed: tens of MiB mapped and
 * unmapped per call cost more than the query itself. */
static bool va_init(value_arena *a, size_t request_bytes)
{
	*a = (value_arena){0};
	a->capv = a->capm = request_bytes / 2 + 16;
	a->vals = calloc(a->capv, sizeof(*a->vals));
	a->members = calloc(a->capm, sizeof(*a->members));
	return a->vals && a->members;
}

static void va_free(value_arena *a)
{
	free(a->vals);
	free(a->members);
}

typedef struct query_job {
	read_job rd;
	value_arena va;
	query *q;
} query_job;

static void query_release(svc_job *sj)
{
	query_job *qj = (query_job *)sj;
	query_free(qj->q);
	va_free(&qj->va);
	read_release(sj);
}

static void query_start(call *c, const ProtobufCMessage *req, const char *ns,
			void (*work)(svc_job *))
{
	const svc_env *env = call_ctx(c);
	query_job *qj = calloc(1, sizeof(*qj));
	if (!qj) {
		call_finish(c, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	qj->rd.r.j.work = work;
	qj->rd.r.j.release = query_release;
	qj->rd.r.env = env;
	qj->rd.r.req = req;
	qj->rd.r.ns = svc_namespace(c, env, ns);
	svc_job_run(env->pool, c, &qj->rd.r.j);
}

#define SCOPE_MAX (2 * STORE_NAME_MAX + 24)

/* The schema the compiler needs: the message's kinds, the indexed fields, the key, and
 * the scope of its page tokens (written into scope): the collection by name and creation
 * time, so that a token is refused by another collection, and by one deleted and made
 * again under the name. */
static void schema_of(const svc_env *env, const coll_def *d, char scope[SCOPE_MAX],
		      query_schema *s)
{
	snprintf(scope, SCOPE_MAX, "%s/%s/%lld", d->row->ns, d->row->name,
		 (long long)d->row->created_at);
	*s = (query_schema){.resolve = resolve_kind,
			    .resolve_ctx = (void *)d->type,
			    .indexed = (const char *const *)d->def->indexed_fields,
			    .nindexed = d->def->n_indexed_fields,
			    .token_key = env->token_key,
			    .scope = scope};
}

/* What a List, Search or SearchCollections response holds besides its items and a page
 * token: the status (OK is an empty message: a tag and a zero length) and a count. */
#define RESPONSE_FIXED (2 + BUDGET_INT64_FIELD)

/* A compile's outcome as the call's status; true when it compiled. */
static bool compiled(svc_job *sj, int rc, const query_err *err, const char *what)
{
	if (rc)
		svc_job_fail(sj, rc == -EINVAL ? GRPC_INVALID_ARGUMENT : GRPC_RESOURCE_EXHAUSTED,
			     "%s%s%s", what, *what ? ": " : "", rc == -EINVAL ? err->msg : "out of memory");
	return rc == 0;
}

/* A record no response can hold, even alone (written when the limit was higher, or just
 * under it by a request that carried less around it): named, so that it can be fetched
 * with Get, deleted, or filtered out. */
static void fail_too_big(svc_job *sj, const coll_def *d, const char *id, size_t bytes,
			 size_t limit)
{
	svc_job_fail(sj, GRPC_RESOURCE_EXHAUSTED,
		     "record '%.200s' of %s/%s does not fit in a response: with it the response "
		     "takes %zu bytes, over the message size limit of %zu",
		     id, d->row->ns, d->row->name, bytes, limit);
}

/* Runs the compiled query on the loaded collection: its page into *it, and the count. */
static bool fetch(query_job *qj, items *it, bool *more, int64_t *total)
{
	svc_job *sj = &qj->rd.r.j;
	read_job *rj = &qj->rd;
	if (!coll_def_open(sj, rj->r.env, &rj->d, &rj->coll))
		return false;
	if (store_coll_read_begin(rj->coll, &rj->rd)) {
		svc_fail_store(sj, -EIO, "reading");
		store_coll_release(rj->coll);
		return false;
	}
	int rc = items_fetch(it, rj->rd, qj->q, more, total);
	if (rc == -EMSGSIZE)
		fail_too_big(sj, &rj->d, it->too_big, it->too_big_bytes, it->budget->limit);
	else if (rc == -ENOMEM)
		svc_job_fail(sj, GRPC_RESOURCE_EXHAUSTED, "out of memory");
	else if (rc)
		svc_job_fail(sj, GRPC_INTERNAL, "reading %s/%s: %s", rj->d.row->ns, rj->d.row->name,
			     store_errmsg());
	read_close(rj);
	return rc == 0;
}

static void list_work(svc_job *sj)
{
	query_job *qj = (query_job *)sj;
	read_job *rj = &qj->rd;
	const Collector__ListRequest *req = rj->r.req;
	if (!coll_def_load(sj, rj->r.env, rj->r.ns, req->collection_name, &rj->d))
		return;
	if (!va_init(&qj->va, protobuf_c_message_get_packed_size(&req->base))) {
		svc_job_fail(sj, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	query_value filter;
	if (req->filter)
		convert_struct(&qj->va, req->filter, &filter);
	query_schema schema;
	char scope[SCOPE_MAX];
	schema_of(rj->r.env, &rj->d, scope, &schema);
	query_list_params p = {.filter = req->filter ? &filter : NULL,
			       .order_by = req->order_by,
			       .page_size = req->page_size,
			       .page_token = req->page_token};
	query_err err;
	int rc = qj->va.failed ? -ENOMEM : query_compile_list(&schema, &p, &qj->q, &err);
	if (!compiled(sj, rc, &err, ""))
		return;
	items it;
	bool more = false;
	int64_t total = -1;
	budget b;
	budget_init(&b, rj->r.env->max_message_bytes, RESPONSE_FIXED);
	if (!items_init(&it, rj->d.type, qj->q, ITEMS_ANY, &b)) {
		svc_job_fail(sj, GRPC_RESOURCE_EXHAUSTED, "out of memory");
	} else if (fetch(qj, &it, &more, &total)) {
		Collector__ListResponse resp = COLLECTOR__LIST_RESPONSE__INIT;
		resp.status = &status_ok;
		resp.items = items_ptrs(&it);
		resp.n_items = it.n;
		resp.next_page_token = more && it.last_token ? it.last_token : "";
		resp.total_count = total;
		if (resp.items)
			svc_job_answer(sj, &resp.base);
		else
			svc_job_fail(sj, GRPC_RESOURCE_EXHAUSTED, "out of memory");
	}
	items_free(&it);
}

static void list(call *c, const ProtobufCMessage *msg)
{
	const Collector__ListRequest *req = (const void *)msg;
	query_start(c, msg, req->namespace_, list_work);
}

/* ---- vector search: an exact scan ranked by cosine similarity ---- */

#define EMBEDDING_LABEL "embedding_field"
#define VECTOR_MAX 65536

static void vector_search(query_job *qj)
{
	svc_job *sj = &qj->rd.r.j;
	read_job *rj = &qj->rd;
	const Collector__SearchRequest *req = rj->r.req;
	if ((req->full_text && *req->full_text) || req->n_filters || req->n_label_filters ||
	    (req->order_by && *req->order_by)) {
		svc_job_fail(sj, GRPC_INVALID_ARGUMENT,
			     "a vector search takes no full_text, filters or order_by");
		return;
	}
	if (req->n_vector > VECTOR_MAX || req->limit < 0 || req->limit > QUERY_MAX_PAGE ||
	    req->offset < 0 || req->offset > QUERY_MAX_OFFSET) {
		svc_job_fail(sj, GRPC_INVALID_ARGUMENT, "vector of at most %d values, limit 0 to %d, "
			     "offset 0 to %d", VECTOR_MAX, QUERY_MAX_PAGE, QUERY_MAX_OFFSET);
		return;
	}
	const char *field = NULL;
	const Collector__Metadata *md = rj->d.def->metadata;
	for (size_t i = 0; md && i < md->n_labels; i++)
		if (!strcmp(md->labels[i]->key, EMBEDDING_LABEL))
			field = md->labels[i]->value;
	query_path path;
	const char *why;
	bool whole;
	const tp_field *f;
	if (!field || path_parse(field, strlen(field), &path, &why) ||
	    !(f = svc_field_at(rj->d.type, &path, &whole)) || !whole || f->is_map ||
	    (f->type != TP_FLOAT && f->type != TP_DOUBLE)) {
		svc_job_fail(sj, GRPC_FAILED_PRECONDITION,
			     "%s/%s has no embedding: its label '" EMBEDDING_LABEL
			     "' must name a repeated float or double field",
			     rj->d.row->ns, rj->d.row->name);
		return;
	}
	if (!coll_def_open(sj, rj->r.env, &rj->d, &rj->coll))
		return;
	if (store_coll_read_begin(rj->coll, &rj->rd)) {
		svc_fail_store(sj, -EIO, "reading");
		store_coll_release(rj->coll);
		return;
	}
	store_hit *hits = NULL;
	size_t nhits = 0;
	int rc = store_reader_vector(rj->rd, &path, req->vector, req->n_vector,
				     req->similarity_threshold, &hits, &nhits);
	if (rc) {
		svc_job_fail(sj, rc == -ENOMEM ? GRPC_RESOURCE_EXHAUSTED : GRPC_INTERNAL, "reading: %s",
			     store_errmsg());
		goto out;
	}
	size_t limit = req->limit ? (size_t)req->limit : QUERY_DEFAULT_PAGE;
	size_t from = (size_t)req->offset < nhits ? (size_t)req->offset : nhits;
	size_t n = nhits - from < limit ? nhits - from : limit;
	Collector__SearchResult *res = calloc(n ? n : 1, sizeof(*res));
	Collector__SearchResult **ptrs = calloc(n ? n : 1, sizeof(*ptrs));
	Google__Protobuf__Any *any = calloc(n ? n : 1, sizeof(*any));
	char *url_heap, *url = svc_type_url(rj->d.type, NULL, 0, &url_heap);
	uint8_t **copies = calloc(n ? n : 1, sizeof(*copies));
	size_t kept = 0;
	budget bud;
	budget_init(&bud, rj->r.env->max_message_bytes, RESPONSE_FIXED);
	if (!res || !ptrs || !any || !url || !copies) {
		svc_job_fail(sj, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		n = 0;
	}
	/* As many of the page's results as the response holds. Each record's bytes are
	 * copied: the reader moves on to the next one. */
	while (kept < n && sj->code == GRPC_OK) {
		const store_hit *h = &hits[from + kept];
		store_record rec;
		if ((rc = store_reader_get_hit(rj->rd, h, &rec))) {
			svc_job_fail(sj, GRPC_INTERNAL, "reading: %s", store_errmsg());
			break;
		}
		size_t len = rec.data_len;
		svc_record_any(&any[kept], url, rec.data, len);
		collector__search_result__init(&res[kept]);
		res[kept].item = &any[kept];
		res[kept].score = h->similarity;
		res[kept].distance = 1 - h->similarity;
		size_t cost = budget_field(collector__search_result__get_packed_size(&res[kept]));
		if (!budget_take(&bud, cost, 0)) {
			if (!kept)
				fail_too_big(sj, &rj->d, rec.id ? rec.id : "", RESPONSE_FIXED + cost,
					     bud.limit);
			break;
		}
		if (!(copies[kept] = malloc(len ? len : 1))) {
			svc_job_fail(sj, GRPC_RESOURCE_EXHAUSTED, "out of memory");
			break;
		}
		if (len)
			memcpy(copies[kept], rec.data, len);
		any[kept].value.data = copies[kept];
		ptrs[kept] = &res[kept];
		kept++;
	}
	if (sj->code == GRPC_OK) {
		Collector__SearchResponse resp = COLLECTOR__SEARCH_RESPONSE__INIT;
		resp.status = &status_ok;
		resp.results = ptrs;
		resp.n_results = kept;
		resp.total_count = (int64_t)nhits;
		svc_job_answer(sj, &resp.base);
	}
	for (size_t i = 0; copies && i < kept; i++)
		free(copies[i]);
	free(copies);
	free(res);
	free(ptrs);
	free(any);
	free(url);
out:
	free(hits);
	read_close(rj);
}

static void search_work(svc_job *sj)
{
	query_job *qj = (query_job *)sj;
	read_job *rj = &qj->rd;
	const Collector__SearchRequest *req = rj->r.req;
	if (!coll_def_load(sj, rj->r.env, rj->r.ns, req->collection_name, &rj->d))
		return;
	if (req->n_vector) {
		vector_search(qj);
		return;
	}
	size_t nf = req->n_filters, nl = req->n_label_filters;
	query_filter *filters = calloc(nf ? nf : 1, sizeof(*filters));
	query_label *labels = calloc(nl ? nl : 1, sizeof(*labels));
	if (!filters || !labels ||
	    !va_init(&qj->va, protobuf_c_message_get_packed_size(&req->base))) {
		free(filters);
		free(labels);
		svc_job_fail(sj, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	for (size_t i = 0; i < nf; i++) {
		const Collector__Filter *f = req->filters[i]->value;
		filters[i].path = req->filters[i]->key;
		filters[i].op = f ? (enum query_op)f->operator_ : QUERY_EQUALS;
		convert_value(&qj->va, f ? f->value : NULL, &filters[i].value);
	}
	for (size_t i = 0; i < nl; i++)
		labels[i] = (query_label){req->label_filters[i]->key, req->label_filters[i]->value};
	query_schema schema;
	char scope[SCOPE_MAX];
	schema_of(rj->r.env, &rj->d, scope, &schema);
	query_search_params p = {.full_text = req->full_text,
				 .filters = filters,
				 .nfilters = nf,
				 .labels = labels,
				 .nlabels = nl,
				 .limit = req->limit,
				 .offset = req->offset,
				 .order_by = req->order_by,
				 .ascending = req->ascending};
	query_err err;
	int rc = qj->va.failed ? -ENOMEM : query_compile_search(&schema, &p, &qj->q, &err);
	free(filters);
	free(labels);
	if (!compiled(sj, rc, &err, ""))
		return;
	items it;
	bool more = false;
	int64_t total = -1;
	budget b;
	budget_init(&b, rj->r.env->max_message_bytes, RESPONSE_FIXED);
	if (!items_init(&it, rj->d.type, NULL, ITEMS_RESULT, &b)) {
		svc_job_fail(sj, GRPC_RESOURCE_EXHAUSTED, "out of memory");
	} else if (fetch(qj, &it, &more, &total)) {
		Collector__SearchResult *res = calloc(it.n ? it.n : 1, sizeof(*res));
		Collector__SearchResult **ptrs = calloc(it.n ? it.n : 1, sizeof(*ptrs));
		if (res && ptrs) {
			for (size_t i = 0; i < it.n; i++) {
				collector__search_result__init(&res[i]);
				res[i].item = &it.any[i];
				res[i].score = it.scores[i];
				ptrs[i] = &res[i];
			}
			Collector__SearchResponse resp = COLLECTOR__SEARCH_RESPONSE__INIT;
			resp.status = &status_ok;
			resp.results = ptrs;
			resp.n_results = it.n;
			resp.total_count = total;
			svc_job_answer(sj, &resp.base);
		} else {
			svc_job_fail(sj, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		}
		free(res);
		free(ptrs);
	}
	items_free(&it);
}

static void search(call *c, const ProtobufCMessage *msg)
{
	const Collector__SearchRequest *req = (const void *)msg;
	query_start(c, msg, req->namespace_, search_work);
}

/* ---- SearchCollections (a CollectionRepo method; the search machinery is here) ---- */

#define SEARCH_COLLECTIONS_MAX 1000

typedef struct coll_names {
	char **v;
	size_t n;
} coll_names;

static int collect_name(void *ctx, const store_collection *row)
{
	coll_names *names = ctx;
	char *name = strdup(row->name);
	if (!name)
		return -ENOMEM;
	names->v[names->n++] = name;
	return 0;
}

/* What a collection's entry in the results holds besides its items: a tag and a length
 * (up to 5 bytes), and its name. */
static size_t result_header(const char *name)
{
	return 1 + 5 + budget_field(strlen(name));
}

/* One collection's matches into *res, its scores into *scores (for the caller to free);
 * *reached is false when the response had no room left for it. false (j failed) on an
 * error. */
static bool search_one(query_job *qj, const char *name, const query_value *qv, budget *b,
		       items *it, Collector__SearchCollectionsResponse__CollectionResult *res,
		       Collector__SearchCollectionsResponse__CollectionResult__ScoresEntry **scores,
		       bool *reached, int64_t *total)
{
	svc_job *sj = &qj->rd.r.j;
	read_job *rj = &qj->rd;
	const Collector__SearchCollectionsRequest *req = rj->r.req;
	coll_def_free(&rj->d);
	query_free(qj->q);
	qj->q = NULL;
	if (!coll_def_load(sj, rj->r.env, rj->r.ns, name, &rj->d))
		return false;
	query_schema schema;
	char scope[SCOPE_MAX];
	schema_of(rj->r.env, &rj->d, scope, &schema);
	query_search_params p = {.query = qv, .limit = req->limit, .order_by = req->order_by};
	query_err err;
	if (!compiled(sj, query_compile_search(&schema, &p, &qj->q, &err), &err, name))
		return false;
	if (!items_init(it, rj->d.type, NULL, ITEMS_SCORED, b)) {
		svc_job_fail(sj, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return false;
	}
	/* Still searched when the response is full: total_matches counts every match. */
	budget_take_bytes(b, result_header(name));
	bool more;
	int64_t count = -1;
	if (!fetch(qj, it, &more, &count))
		return false;
	*total += count;
	/* Cut before its first item, it is left out: an entry means "these are its matches". */
	*reached = it->n > 0 || !b->full;
	/* One block: the entries, then the pointers to them. */
	Collector__SearchCollectionsResponse__CollectionResult__ScoresEntry *e =
		calloc(it->n ? it->n : 1, sizeof(*e) + sizeof(e));
	*scores = e;
	if (!e || !items_ptrs(it)) {
		svc_job_fail(sj, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return false;
	}
	Collector__SearchCollectionsResponse__CollectionResult__ScoresEntry **ptrs =
		(void *)(e + (it->n ? it->n : 1));
	for (size_t i = 0; i < it->n; i++) {
		collector__search_collections_response__collection_result__scores_entry__init(&e[i]);
		e[i].key = it->ids[i];
		e[i].value = it->scores[i];
		ptrs[i] = &e[i];
	}
	collector__search_collections_response__collection_result__init(res);
	res->collection_name = (char *)name;
	res->items = it->ptrs;
	res->n_items = it->n;
	res->scores = ptrs;
	res->n_scores = it->n;
	return true;
}

/* The response holds the collections in order up to the first item that does not fit in
 * it (that collection keeps the items that did, and is left out when none did); every
 * collection is searched, so total_matches counts all the matches. */
static void search_collections_work(svc_job *sj)
{
	query_job *qj = (query_job *)sj;
	read_job *rj = &qj->rd;
	const Collector__SearchCollectionsRequest *req = rj->r.req;
	const svc_env *env = rj->r.env;
	if (!svc_check_name(sj, "namespace", rj->r.ns))
		return;
	coll_names names = {.v = calloc(SEARCH_COLLECTIONS_MAX, sizeof(char *))};
	if (!names.v) {
		svc_job_fail(sj, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	if (req->n_collection_names > SEARCH_COLLECTIONS_MAX) {
		svc_job_fail(sj, GRPC_INVALID_ARGUMENT, "at most %d collections",
			     SEARCH_COLLECTIONS_MAX);
	} else if (req->n_collection_names) {
		for (size_t i = 0; i < req->n_collection_names; i++)
			names.v[names.n++] = strdup(req->collection_names[i]);
	} else {
		store_list_filter f = {.ns = rj->r.ns, .limit = SEARCH_COLLECTIONS_MAX};
		int rc = store_collection_list(env->store, &f, collect_name, &names, NULL);
		if (rc)
			svc_fail_store(sj, rc, "listing collections");
	}
	size_t n = names.n, nres = 0;
	items *its = calloc(n ? n : 1, sizeof(*its));
	Collector__SearchCollectionsResponse__CollectionResult *res = calloc(n ? n : 1, sizeof(*res));
	Collector__SearchCollectionsResponse__CollectionResult **ptrs = calloc(n ? n : 1, sizeof(*ptrs));
	Collector__SearchCollectionsResponse__CollectionResult__ScoresEntry **scores =
		calloc(n ? n : 1, sizeof(*scores));
	size_t done = 0;
	int64_t total = 0;
	query_value qv;
	budget b;
	budget_init(&b, env->max_message_bytes, RESPONSE_FIXED);
	if (sj->code != GRPC_OK)
		goto out;
	if (!its || !res || !ptrs || !scores || !va_init(&qj->va, env->max_message_bytes)) {
		svc_job_fail(sj, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	if (req->query)
		convert_struct(&qj->va, req->query, &qv);
	if (qj->va.failed) {
		svc_job_fail(sj, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	for (; done < n; done++) {
		bool reached;
		if (!names.v[done]) {
			svc_job_fail(sj, GRPC_RESOURCE_EXHAUSTED, "out of memory");
			goto out;
		}
		if (!search_one(qj, names.v[done], req->query ? &qv : NULL, &b, &its[done], &res[done],
				&scores[done], &reached, &total)) {
			done++;
			goto out;
		}
		if (reached)
			ptrs[nres++] = &res[done];
	}
	Collector__SearchCollectionsResponse resp = COLLECTOR__SEARCH_COLLECTIONS_RESPONSE__INIT;
	resp.status = &status_ok;
	resp.results = ptrs;
	resp.n_results = nres;
	resp.total_matches = total;
	svc_job_answer(sj, &resp.base);
out:
	for (size_t i = 0; i < done && its; i++)
		items_free(&its[i]);
	for (size_t i = 0; i < n && scores; i++)
		free(scores[i]);
	for (size_t i = 0; i < names.n; i++)
		free(names.v[i]);
	free(names.v);
	free(its);
	free(res);
	free(ptrs);
	free(scores);
}

void collection_search_collections(call *c, const ProtobufCMessage *msg)
{
	const Collector__SearchCollectionsRequest *req = (const void *)msg;
	query_start(c, msg, req->namespace_, search_collections_work);
}

int collection_register(method_table *t, svc_env *env)
{
#define UNARY(name, lower, fn)                                                                     \
	{SVC name, CALL_UNARY, &collector__##lower##_request__descriptor,                          \
	 &collector__##lower##_response__descriptor, {.on_request = fn, .on_cancel = svc_job_on_cancel}, env}
	const method methods[] = {
		UNARY("Create", create, create),   UNARY("Get", get, get),
		UNARY("Update", update, update),   UNARY("Delete", delete, delete),
		UNARY("List", list, list),	   UNARY("Search", search, search),
		UNARY("Describe", describe, describe), UNARY("Meta", meta, meta),
		UNARY("Modify", modify, modify),   UNARY("Batch", batch, batch),
	};
#undef UNARY
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		int rc = method_table_add(t, &methods[i]);
		if (rc)
			return rc;
	}
	return 0;
}
