/* CollectionService.Invoke: runs a unary method once per item id, the stored record as its
 * input (or once with `input` when no ids are given), routed as Dispatch routes (route.h).
 * The records are read first, in one read of the collection; the runs then go out at most
 * INVOKE_PARALLEL at a time. The first item that fails fails the call, naming the item:
 * no new run starts, the ones running end, and the outputs of the others are dropped (a
 * partial answer would be mistaken for a whole one). */
#include "services/invoke.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/mem.h"
#include "collector/collection_server.pb-c.h"
#include "services/coll_any.h"
#include "services/coll_read.h"
#include "services/route.h"

#define INVOKE_MAX_ITEMS 1000
#define INVOKE_PARALLEL 8

static Collector__Status status_ok = COLLECTOR__STATUS__INIT;

typedef struct item {
	const char *id; /* the request's; NULL for the run on `input` */
	char *type_url; /* the input's (owned when read from the collection) */
	uint8_t *data;
	size_t len;
	bool owned;
	route *route;
	struct invoking *inv;
	char *out_url; /* the output */
	uint8_t *out;
	size_t out_len;
} item;

typedef struct invoking {
	coll_read_job rj; /* first: the call's user while the records are read */
	const Collector__InvokeRequest *req;
	char service[256], method[128];
	item *items;
	size_t n, next, running;
	bool runs_started, cancelling, failed;
	bool job_holds; /* the read job still uses the struct (its reply starts the runs) */
	bool ended;
	int code;
	char msg[1024];
} invoking;

static void invoking_free(invoking *inv)
{
	for (size_t i = 0; i < inv->n; i++) {
		item *it = &inv->items[i];
		if (it->owned) {
			mem_free(it->type_url);
			mem_free(it->data);
		}
		mem_free(it->out_url);
		mem_free(it->out);
	}
	mem_free(inv->items);
	coll_def_free(&inv->rj.d);
	mem_free(inv);
}

/* ---- the end ---- */

static void answer(invoking *inv)
{
	call *c = inv->rj.r.j.c;
	Google__Protobuf__Any *anys = mem_calloc(inv->n ? inv->n : 1, sizeof(*anys));
	Google__Protobuf__Any **ptrs = mem_calloc(inv->n ? inv->n : 1, sizeof(*ptrs));
	if (!anys || !ptrs) {
		call_finish(c, GRPC_RESOURCE_EXHAUSTED, "out of memory");
	} else {
		for (size_t i = 0; i < inv->n; i++) {
			google__protobuf__any__init(&anys[i]);
			anys[i].type_url = inv->items[i].out_url;
			anys[i].value.data = inv->items[i].out;
			anys[i].value.len = inv->items[i].out_len;
			ptrs[i] = &anys[i];
		}
		Collector__InvokeResponse r = COLLECTOR__INVOKE_RESPONSE__INIT;
		r.status = &status_ok;
		r.outputs = ptrs;
		r.n_outputs = inv->n;
		call_reply(c, &r.base);
	}
	mem_free(anys);
	mem_free(ptrs);
}

/* When nothing runs any more: the answer, and the end of the Invoke. */
static void maybe_end(invoking *inv)
{
	if (inv->ended || inv->running || inv->cancelling || (!inv->failed && inv->next < inv->n))
		return;
	inv->ended = true;
	call *c = inv->rj.r.j.c;
	if (inv->failed)
		call_finish(c, inv->code, inv->msg);
	else
		answer(inv);
	call_set_user(c, NULL);
	call_unref(c);
	if (!inv->job_holds)
		invoking_free(inv);
}

static void fail_item(invoking *inv, const item *it, int code, const char *why)
{
	if (inv->failed)
		return;
	inv->failed = true;
	inv->code = code;
	size_t i = (size_t)(it - inv->items);
	if (it->id)
		snprintf(inv->msg, sizeof(inv->msg), "item %zu ('%.200s'): %.600s", i, it->id, why);
	else
		snprintf(inv->msg, sizeof(inv->msg), "%s", why);
}

/* ---- the runs ---- */

static void pump(invoking *inv);

static void item_done(void *user, int code, const char *message, const char *type_url,
		      const uint8_t *out, size_t len, const char *handled_by)
{
	(void)handled_by;
	item *it = user;
	invoking *inv = it->inv;
	it->route = NULL;
	inv->running--;
	if (code == GRPC_OK) {
		it->out_url = mem_strdup(type_url ? type_url : "");
		it->out = mem_alloc(len ? len : 1);
		if (!it->out_url || !it->out)
			fail_item(inv, it, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		else
			memcpy(it->out, out, len);
		it->out_len = len;
	} else {
		fail_item(inv, it, code, message);
	}
	pump(inv);
}

static void pump(invoking *inv)
{
	call *c = inv->rj.r.j.c;
	while (!inv->failed && !call_done(c) && inv->next < inv->n &&
	       inv->running < INVOKE_PARALLEL) {
		item *it = &inv->items[inv->next++];
		route_req q = {.c = c,
			       .env = inv->rj.r.env,
			       .ns = inv->rj.r.ns,
			       .service = inv->service,
			       .method = inv->method,
			       .type_url = it->type_url,
			       .input = it->data,
			       .input_len = it->len,
			       .done = item_done,
			       .user = it};
		it->route = route_start(&q);
		if (it->route)
			inv->running++;
		else
			fail_item(inv, it, q.fail_code, q.fail_msg);
	}
	if (call_done(c) && !inv->failed) {
		inv->failed = true;
		inv->code = GRPC_CANCELLED;
		snprintf(inv->msg, sizeof(inv->msg), "cancelled");
	}
	maybe_end(inv);
}

static void start_runs(invoking *inv)
{
	call *c = inv->rj.r.j.c;
	call_ref(c);
	call_set_user(c, inv);
	inv->runs_started = true;
	pump(inv);
}

/* ---- reading the records ---- */

static void read_work(svc_job *sj)
{
	invoking *inv = (invoking *)sj;
	const Collector__InvokeRequest *req = inv->req;
	for (size_t i = 0; i < inv->n; i++)
		if (!svc_check_id(sj, req->item_ids[i]))
			return;
	if (!coll_read_open(&inv->rj, req->collection_name))
		return;
	char buf[256], *heap = NULL;
	char *url = inv->rj.d.type ? svc_type_url(inv->rj.d.type, buf, sizeof(buf), &heap) : NULL;
	for (size_t i = 0; i < inv->n && sj->code == GRPC_OK; i++) {
		item *it = &inv->items[i];
		store_record rec;
		int rc = store_reader_get(inv->rj.rd, it->id, &rec);
		if (rc == -ENOENT) {
			svc_job_fail(sj, GRPC_NOT_FOUND,
				     "item %zu ('%.200s'): no such record in %s/%s", i, it->id,
				     inv->rj.d.row->ns, inv->rj.d.row->name);
			break;
		}
		if (rc) {
			svc_job_fail(sj, GRPC_INTERNAL, "reading item '%.200s': %s", it->id,
				     store_err_msg());
			break;
		}
		it->owned = true;
		if (inv->rj.d.type) {
			/* Typed: the record is a message of the collection's type. */
			it->type_url = url ? mem_strdup(url) : NULL;
			it->data = mem_alloc(rec.data_len ? rec.data_len : 1);
			if (it->data)
				memcpy(it->data, rec.data, rec.data_len);
			it->len = rec.data_len;
		} else {
			/* Untyped: the record is the Any it was written as. */
			Google__Protobuf__Any any;
			uint8_t *block = NULL;
			rc = coll_any_unpack(rec.data, rec.data_len, &any, &block);
			if (rc == 0) {
				it->type_url = mem_strdup(any.type_url ? any.type_url : "");
				it->data = mem_alloc(any.value.len ? any.value.len : 1);
				if (it->data)
					memcpy(it->data, any.value.data, any.value.len);
				it->len = any.value.len;
			}
			mem_free(block);
			if (rc && rc != -ENOMEM) {
				svc_job_fail(sj, GRPC_DATA_LOSS, "item %zu ('%.200s') is damaged",
					     i, it->id);
				break;
			}
		}
		if (!it->type_url || !it->data)
			svc_job_fail(sj, GRPC_RESOURCE_EXHAUSTED, "out of memory");
	}
	mem_free(heap);
	coll_read_close(&inv->rj);
}

static void read_reply(svc_job *sj) { start_runs((invoking *)sj); }

static void read_release(svc_job *sj)
{
	invoking *inv = (invoking *)sj;
	inv->job_holds = false;
	if (!inv->runs_started || inv->ended)
		invoking_free(inv);
}

/* ---- the call ---- */

/* "pkg.Service/Method" or "pkg.Service.Method" (the service full or bare). */
static bool split_method(call *c, const char *name, invoking *inv)
{
	const char *cut = name ? strrchr(name, '/') : NULL;
	if (!cut && name)
		cut = strrchr(name, '.');
	if (!cut || cut == name || !cut[1] || (size_t)(cut - name) >= sizeof(inv->service) ||
	    strlen(cut + 1) >= sizeof(inv->method)) {
		call_finishf(c, GRPC_INVALID_ARGUMENT,
			     "method_name '%.200s' must name the service and the method: "
			     "pkg.Service/Method (or pkg.Service.Method)",
			     name ? name : "");
		return false;
	}
	snprintf(inv->service, sizeof(inv->service), "%.*s", (int)(cut - name), name);
	snprintf(inv->method, sizeof(inv->method), "%s", cut + 1);
	return true;
}

static void invoke(call *c, const ProtobufCMessage *msg)
{
	const Collector__InvokeRequest *req = (const void *)msg;
	const svc_env *env = call_ctx(c);
	if (req->n_item_ids > INVOKE_MAX_ITEMS) {
		call_finishf(c, GRPC_INVALID_ARGUMENT, "%zu item ids: at most %d per Invoke",
			     req->n_item_ids, INVOKE_MAX_ITEMS);
		return;
	}
	if (!req->n_item_ids && (!req->input || !req->input->type_url || !*req->input->type_url)) {
		call_finish(c, GRPC_INVALID_ARGUMENT,
			    "item_ids or input is required: the records to run the method on, or "
			    "its one input");
		return;
	}
	invoking *inv = mem_calloc(1, sizeof(*inv));
	size_t n = req->n_item_ids ? req->n_item_ids : 1;
	if (inv)
		inv->items = mem_calloc(n, sizeof(*inv->items));
	if (!inv || !inv->items) {
		mem_free(inv);
		call_finish(c, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	inv->n = n;
	inv->req = req;
	inv->rj.r.env = env;
	inv->rj.r.req = req;
	inv->rj.r.ns = svc_namespace(c, env, req->namespace_);
	inv->rj.r.j.c = c;
	for (size_t i = 0; i < n; i++) {
		inv->items[i].inv = inv;
		inv->items[i].id = req->n_item_ids ? req->item_ids[i] : NULL;
	}
	if (!split_method(c, req->method_name, inv)) {
		invoking_free(inv);
		return;
	}
	if (!req->n_item_ids) {
		item *it = &inv->items[0];
		it->type_url = req->input->type_url;
		it->data = req->input->value.data;
		it->len = req->input->value.len;
		start_runs(inv);
		return;
	}
	inv->rj.r.j.work = read_work;
	inv->rj.r.j.reply = read_reply;
	inv->rj.r.j.release = read_release;
	inv->job_holds = true;
	svc_job_run(env->pool, c, &inv->rj.r.j);
}

static void invoke_cancel(call *c)
{
	invoking *inv = call_user(c);
	if (!inv)
		return;
	if (!inv->runs_started) {
		svc_job_on_cancel(c); /* still reading */
		return;
	}
	inv->cancelling = true;
	for (size_t i = 0; i < inv->n; i++)
		if (inv->items[i].route)
			route_cancel(inv->items[i].route); /* item_done follows at once */
	inv->cancelling = false;
	inv->failed = true;
	inv->code = GRPC_CANCELLED;
	maybe_end(inv);
}

int invoke_register(method_table *t, svc_env *env)
{
	const method m = {"/collector.CollectionService/Invoke",
			  METHOD_UNARY,
			  &collector__invoke_request__descriptor,
			  &collector__invoke_response__descriptor,
			  {.on_request = invoke, .on_cancel = invoke_cancel},
			  env};
	return method_table_add(t, &m);
}
