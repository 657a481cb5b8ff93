/* CollectionService's record writes: Create, Update (with a mask), Delete, Batch. Each op is
 * checked and transcoded on the pool, then committed by the collection's writer in groups
 * (store/coll.h), and answered once durable. */
#include "services/coll_write.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "base/uuid.h"
#include "collector/collection_server.pb-c.h"
#include "services/coll_any.h"
#include "services/coll_def.h"
#include "store/coll.h"
#include "store/json.h"

static Collector__Status status_ok = COLLECTOR__STATUS__INIT;

/* The item must be a message of the collection's type: its JSON (proto field names) is
 * what filters and full-text search see. */
static bool transcode_item(svc_job *j, const svc_env *env, const coll_def *d,
			   const Google__Protobuf__Any *item, buf *json)
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
	int rc = json_from_proto(env->types, d->row->ns, d->type, item->value.data, item->value.len,
				 JSON_PROTO_NAMES, json);
	if (rc) {
		svc_job_fail(j, rc == -ENOMEM ? GRPC_RESOURCE_EXHAUSTED : GRPC_INVALID_ARGUMENT,
			     "item is not a valid %s: %s", tp_message_get(d->type)->full_name,
			     store_err_msg());
		return false;
	}
	return true;
}

/* One write operation, checked and transcoded on the pool, then run by the writer. */
typedef struct op_prep {
	const svc_env *env;
	const coll_def *d;
	int kind;
	const void *req; /* its Create/Update/DeleteRequest */
	store_op *op;
	buf json;
	buf merged; /* Update with a mask: the merged record's bytes, written from here */
	/* Untyped collections: the record as kept (the item's Any, serialized), and what
	 * the item is (coll_any.h). */
	buf stored;
	int any_kind;
	const tp_message *any_type;
	char why[300]; /* a masked update the writer refused: why (op_status) */
	char id[SVC_ID_MAX + 1];
} op_prep;

enum { W_CREATE, W_UPDATE, W_DELETE };

static void op_prep_free(op_prep *p)
{
	buf_free(&p->json);
	buf_free(&p->merged);
	buf_free(&p->stored);
}

static int merge_apply(void *ctx, const store_row *old, store_row *out);
static int any_merge_apply(void *ctx, const store_row *old, store_row *out);

/* The item as the collection keeps it: its JSON into p->json, the bytes to store into
 * *data and *len (the message's own for a typed collection; for an untyped one the Any,
 * in p->stored). */
static bool prepare_item(svc_job *j, op_prep *p, const Google__Protobuf__Any *item,
			 const void **data, size_t *len)
{
	if (p->d->type) {
		if (!transcode_item(j, p->env, p->d, item, &p->json))
			return false;
		*data = item->value.data;
		*len = item->value.len;
		return true;
	}
	if (!item) {
		svc_job_fail(j, GRPC_INVALID_ARGUMENT, "item is required");
		return false;
	}
	int k = coll_any_classify(p->env->types, p->d->row->ns, item, &p->json, &p->any_type,
				  p->why, sizeof(p->why));
	if (k >= 0 && coll_any_pack(item->type_url, item->value.data, item->value.len, &p->stored))
		k = -ENOMEM;
	if (k == -ENOMEM) {
		svc_job_fail(j, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return false;
	}
	if (k < 0) {
		svc_job_fail(j, GRPC_INVALID_ARGUMENT, "%s", p->why);
		return false;
	}
	p->any_kind = k;
	*data = p->stored.data;
	*len = p->stored.len;
	return true;
}

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
		if (!svc_check_id(j, req->id))
			return false;
		snprintf(p->id, sizeof(p->id), "%s", req->id);
	} else if (uuid7_make(p->id)) {
		svc_job_fail(j, GRPC_INTERNAL, "no randomness for a record id");
		return false;
	}
	const void *data;
	size_t len;
	if (!prepare_item(j, p, req->item, &data, &len))
		return false;
	p->op->kind = STORE_OP_INSERT;
	p->op->row = (store_row){.data = data, .data_len = len, .json = p->json.text};
	p->op->id = p->id;
	return true;
}

static bool prep_update(svc_job *j, op_prep *p)
{
	const Collector__UpdateRequest *req = p->req;
	if (!svc_check_id(j, req->id))
		return false;
	snprintf(p->id, sizeof(p->id), "%s", req->id);
	const void *data;
	size_t len;
	if (!prepare_item(j, p, req->item, &data, &len))
		return false;
	if (req->n_update_mask && !p->d->type && p->any_kind == COLL_ANY_OPAQUE) {
		svc_job_fail(j, GRPC_INVALID_ARGUMENT,
			     "update_mask needs an item with fields (a JSON object or a message of "
			     "a known type); this item is opaque bytes: update without a mask");
		return false;
	}
	for (size_t i = 0; i < req->n_update_mask; i++) {
		const char *m = req->update_mask[i];
		query_path qp;
		if (query_path_parse(m, strlen(m), &qp)) {
			svc_job_fail(j, GRPC_INVALID_ARGUMENT, "update_mask '%.100s': %s", m,
				     store_err_msg());
			return false;
		}
		bool indexed = false, whole;
		for (unsigned k = 0; k < qp.nseg; k++)
			indexed |= qp.seg[k].nidx > 0;
		if (indexed && p->d->schemaless) {
			svc_job_fail(j, GRPC_INVALID_ARGUMENT,
				     "update_mask '%.100s' names an element: a mask names keys", m);
			return false;
		}
		if (!p->d->schemaless && (indexed || !svc_field_at(p->d->type, &qp, &whole))) {
			svc_job_fail(j, GRPC_INVALID_ARGUMENT,
				     "update_mask '%.100s' is not a field of %s", m,
				     tp_message_get(p->d->type)->full_name);
			return false;
		}
	}
	p->op->kind = STORE_OP_UPDATE;
	p->op->id = p->id;
	if (!req->n_update_mask) {
		p->op->row = (store_row){.data = data, .data_len = len, .json = p->json.text};
	} else {
		p->op->row.json = p->json.text;
		p->op->mask = (const char *const *)req->update_mask;
		p->op->nmask = req->n_update_mask;
		p->op->apply = p->d->type ? merge_apply : any_merge_apply;
		p->op->apply_ctx = p;
	}
	return true;
}

static bool prep_delete(svc_job *j, op_prep *p)
{
	const Collector__DeleteRequest *req = p->req;
	if (!svc_check_id(j, req->id))
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
		snprintf(msg, cap, "a record with id '%.200s' already exists in %s/%s", p->id, ns,
			 name);
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
	case -ENOMEM:
		snprintf(msg, cap, "the write failed: out of memory");
		return GRPC_RESOURCE_EXHAUSTED;
	case -EMEDIUMTYPE:
		snprintf(msg, cap, "%s", p->why);
		return GRPC_FAILED_PRECONDITION;
	case -EBADMSG:
		snprintf(msg, cap, "record '%.200s' of %s/%s is damaged", p->id, ns, name);
		return GRPC_DATA_LOSS;
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
	mem_free(w->preps);
	mem_free(w->ops);
	coll_def_free(&w->d);
	mem_free(w);
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
	int rc = store_coll_write(w->coll, &w->wreq);
	if (rc) {
		/* Refused before queueing: done will not come, answer here. */
		store_coll_release(w->coll);
		w->coll = NULL;
		if (rc == -EAGAIN)
			svc_job_fail(sj, GRPC_RESOURCE_EXHAUSTED,
				     "the collection's write queue is full");
		else
			svc_fail_store(sj, rc, "writing");
		svc_job_resume(sj);
	}
}

static bool write_alloc(svc_job *sj, write_job *w, size_t n)
{
	w->n = n;
	w->ops = mem_calloc(n, sizeof(*w->ops));
	w->preps = mem_calloc(n, sizeof(*w->preps));
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
	const char *name = w->kind == W_CREATE
				   ? ((const Collector__CreateRequest *)w->r.req)->collection_name
			   : w->kind == W_UPDATE
				   ? ((const Collector__UpdateRequest *)w->r.req)->collection_name
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
		svc_job_fail(sj, GRPC_INVALID_ARGUMENT, "a batch holds 1 to %d operations",
			     BATCH_MAX);
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
	Collector__ResponseOp *ops = mem_calloc(w->n, sizeof(*ops));
	Collector__ResponseOp **ptrs = mem_calloc(w->n, sizeof(*ptrs));
	Collector__Status *st = mem_calloc(w->n + 1, sizeof(*st));
	char(*msgs)[320] = mem_calloc(w->n + 1, sizeof(*msgs));
	Collector__CreateResponse *creates = mem_calloc(w->n, sizeof(*creates));
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
	mem_free(ops);
	mem_free(ptrs);
	mem_free(st);
	mem_free(msgs);
	mem_free(creates);
}

static void write_start(call *c, const void *req, const char *ns, void (*work)(svc_job *), int kind)
{
	const svc_env *env = call_ctx(c);
	write_job *w = mem_calloc(1, sizeof(*w));
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

void coll_write_create(call *c, const ProtobufCMessage *msg)
{
	const Collector__CreateRequest *req = (const void *)msg;
	write_start(c, req, req->namespace_, single_work, W_CREATE);
}

void coll_write_update(call *c, const ProtobufCMessage *msg)
{
	const Collector__UpdateRequest *req = (const void *)msg;
	write_start(c, req, req->namespace_, single_work, W_UPDATE);
}

void coll_write_delete(call *c, const ProtobufCMessage *msg)
{
	const Collector__DeleteRequest *req = (const void *)msg;
	write_start(c, req, req->namespace_, single_work, W_DELETE);
}

void coll_write_batch(call *c, const ProtobufCMessage *msg)
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
	buf bin = BUF_INIT, canon = BUF_INIT;
	const svc_env *env = p->env;
	int rc = json_to_proto(env->types, p->d->row->ns, p->d->type, merged->json,
			       strlen(merged->json), &bin);
	if (!rc)
		rc = json_from_proto(env->types, p->d->row->ns, p->d->type,
				     (const uint8_t *)bin.data, bin.len, JSON_PROTO_NAMES, &canon);
	if (rc) {
		buf_free(&bin);
		buf_free(&canon);
		return rc;
	}
	/* The writer copies out after we return: the buffers stay with the job. */
	buf_free(&p->json);
	p->json = canon;
	buf_free(&p->merged);
	p->merged = bin;
	*out = (store_row){.data = bin.data, .data_len = bin.len, .json = canon.text};
	return 0;
}

/* A masked Update of an untyped record: the writer merged the JSON forms (the mask's keys
 * taken from the item, nested ones too); the merged object becomes the record, encoded as
 * the item is (a message of its type, or JSON text), under the item's type URL. The
 * record must have fields (not opaque bytes) and the same type URL as the item: a mask
 * merges into a record of one kind, never changes it. -EMEDIUMTYPE (p->why) otherwise. */
static int any_merge_apply(void *ctx, const store_row *merged, store_row *out)
{
	op_prep *p = ctx;
	const Collector__UpdateRequest *req = p->req;
	const char *url = req->item->type_url ? req->item->type_url : "";
	coll_any_parts old;
	if (coll_any_split(merged->data, merged->data_len, &old))
		return -EBADMSG;
	if (old.url_len != strlen(url) || memcmp(old.url, url, old.url_len)) {
		snprintf(p->why, sizeof(p->why),
			 "record '%.100s' has type_url '%.*s', the item '%.60s': a masked update "
			 "keeps the type (update without a mask to replace the record)",
			 p->id, (int)(old.url_len > 60 ? 60 : old.url_len), old.url, url);
		return -EMEDIUMTYPE;
	}
	if (merged->json[0] != '{') {
		snprintf(p->why, sizeof(p->why),
			 "record '%.100s' has no fields to merge (opaque bytes, or a message "
			 "whose JSON is no object): update it without a mask",
			 p->id);
		return -EMEDIUMTYPE;
	}
	const svc_env *env = p->env;
	const char *ns = p->d->row->ns;
	buf value = BUF_INIT, canon = BUF_INIT;
	int rc = 0;
	if (p->any_kind == COLL_ANY_TYPED) {
		rc = json_to_proto(env->types, ns, p->any_type, merged->json, strlen(merged->json),
				   &value);
		if (!rc)
			rc = json_from_proto(env->types, ns, p->any_type, value.data, value.len,
					     JSON_PROTO_NAMES, &canon);
		if (rc == -EINVAL) {
			snprintf(p->why, sizeof(p->why),
				 "record '%.100s' merged with the item is not a valid %s: %s",
				 p->id, tp_message_get(p->any_type)->full_name, store_err_msg());
			rc = -EMEDIUMTYPE;
		}
	} else {
		buf_puts(&canon, merged->json);
		rc = buf_terminate(&canon);
	}
	const uint8_t *v = p->any_kind == COLL_ANY_TYPED ? value.data : canon.data;
	size_t vlen = p->any_kind == COLL_ANY_TYPED ? value.len : canon.len;
	if (!rc)
		rc = coll_any_pack(url, v, vlen, &p->merged);
	buf_free(&value);
	if (rc) {
		buf_free(&canon);
		return rc;
	}
	/* The writer copies out after we return: the buffers stay with the job. */
	buf_free(&p->json);
	p->json = canon;
	*out = (store_row){.data = p->merged.data, .data_len = p->merged.len, .json = canon.text};
	return 0;
}
