/* collector.CollectionRepo: collections as a whole (create, delete, discover, route).
 * Backups and the local Clone are backup.h's; Fetch and Push/Pull stay UNIMPLEMENTED
 * (collector_api.c) until their issue. */
#include "services/repo.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/mem.h"
#include "collector/collection_repo.pb-c.h"
#include "services/budget.h"
#include "services/coll_def.h"
#include "services/coll_search.h"
#include "services/svc.h"
#include "store/coll.h"
#include "store/query.h"

#define REPO "/collector.CollectionRepo/"
#define DISCOVER_DEFAULT 50
#define DISCOVER_MAX 1000

static Collector__Status status_ok = COLLECTOR__STATUS__INIT;

/* ---- CreateCollection ---- */

/* A count of backups and an age cannot be negative. */
static bool check_backup_policy(svc_job *sj, const Collector__BackupPolicy *p)
{
	if (p && p->max_backups < 0) {
		svc_job_fail(sj, GRPC_INVALID_ARGUMENT,
			     "backup_policy.max_backups must be 0 or more, not %d",
			     (int)p->max_backups);
		return false;
	}
	if (p && p->interval_seconds < 0) {
		svc_job_fail(sj, GRPC_INVALID_ARGUMENT,
			     "backup_policy.interval_seconds must be 0 or more, not %lld",
			     (long long)p->interval_seconds);
		return false;
	}
	if (p && p->retention_seconds < 0) {
		svc_job_fail(sj, GRPC_INVALID_ARGUMENT,
			     "backup_policy.retention_seconds must be 0 or more, not %lld",
			     (long long)p->retention_seconds);
		return false;
	}
	return true;
}

/* Collection.server_endpoint, where a client is sent for the collection (Route): a
 * gRPC address as clients dial it, ending in ":<port>". Empty: this node's. */
#define ENDPOINT_MAX 255

static bool check_endpoint(svc_job *sj, const char *e)
{
	size_t n = e ? strlen(e) : 0;
	bool ok = n <= ENDPOINT_MAX;
	for (size_t i = 0; ok && i < n; i++)
		ok = e[i] > ' ' && e[i] < 0x7f;
	const char *colon = n ? strrchr(e, ':') : NULL;
	if (ok && n) {
		char *end;
		long port = colon ? strtol(colon + 1, &end, 10) : 0;
		ok = colon && colon[1] && !*end && port > 0 && port < 65536;
	}
	if (!ok)
		svc_job_fail(sj, GRPC_INVALID_ARGUMENT,
			     "server_endpoint must be an address ending in :<port>, up to %d "
			     "printable bytes without spaces",
			     ENDPOINT_MAX);
	return ok;
}

/* Where the collection is served: its own endpoint when it was given one, else here. A
 * definition keeps only an endpoint it was given, so that "here" follows the node's
 * address across restarts (definitions of older builds hold the address of their time). */
static const char *endpoint_of(const svc_env *env, const Collector__Collection *c)
{
	return c->server_endpoint && *c->server_endpoint ? c->server_endpoint : env->endpoint;
}

static void create_collection_work(svc_job *sj)
{
	svc_req_job *j = (svc_req_job *)sj;
	const Collector__CreateCollectionRequest *req = j->req;
	Collector__Collection *in = req->collection;
	if (!in) {
		svc_job_fail(sj, GRPC_INVALID_ARGUMENT, "collection is required");
		return;
	}
	const char *ns = in->namespace_ && *in->namespace_ ? in->namespace_ : j->ns;
	if (!svc_check_user_ns(sj, ns) || !svc_check_name(sj, "collection", in->name) ||
	    !check_backup_policy(sj, in->backup_policy) || !check_endpoint(sj, in->server_endpoint))
		return;
	/* Without a message type the collection is untyped: any Any per record (coll_any.h). */
	bool untyped = !in->message_type || !in->message_type->message_name ||
		       !*in->message_type->message_name;
	const tp_message *m = untyped ? NULL : svc_find_type(j->env, ns, in->message_type);
	if (!m && !untyped) {
		svc_job_fail(sj, GRPC_INVALID_ARGUMENT,
			     "unknown message type '%.200s' in namespace %s",
			     in->message_type && in->message_type->message_name
				     ? in->message_type->message_name
				     : "",
			     ns);
		return;
	}
	size_t nidx = in->n_indexed_fields;
	svc_indexes ix;
	char *labels = NULL, *indexed = NULL;
	uint8_t *def = NULL;
	if (!svc_indexes_check(sj, m, in->indexed_fields, nidx, &ix))
		goto out;

	/* The definition as the node keeps it: names resolved, times and endpoint set. */
	int64_t now_us = clock_wall_ns() / 1000;
	Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	ts.seconds = now_us / 1000000;
	ts.nanos = (int32_t)(now_us % 1000000) * 1000;
	Collector__MessageTypeRef type = COLLECTOR__MESSAGE_TYPE_REF__INIT;
	type.namespace_ = m ? (char *)svc_type_ns(j->env, ns, m) : "";
	type.message_name = m ? (char *)tp_message_get(m)->full_name : "";
	Collector__Metadata md = COLLECTOR__METADATA__INIT;
	md.created_at = md.updated_at = &ts;
	if (in->metadata) {
		md.n_labels = in->metadata->n_labels;
		md.labels = in->metadata->labels;
	}
	Collector__Collection out = *in;
	out.namespace_ = (char *)ns;
	out.message_type = m ? &type : NULL;
	out.server_endpoint = in->server_endpoint ? in->server_endpoint : "";
	out.metadata = &md;
	size_t def_len = collector__collection__get_packed_size(&out);
	def = mem_alloc(def_len ? def_len : 1);
	labels = svc_labels_json(md.labels, md.n_labels);
	indexed = svc_strings_json(in->indexed_fields, nidx);
	if (!def || !labels || !indexed) {
		svc_job_fail(sj, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	collector__collection__pack(&out, def);
	store_collection row = {.ns = ns,
				.name = in->name,
				.def = def,
				.def_len = def_len,
				.type_ns = type.namespace_,
				.type_name = type.message_name,
				.labels = labels,
				.indexed = indexed,
				.created_at = now_us,
				.updated_at = now_us};
	int rc = store_collection_create(j->env->store, &row, 0);
	if (rc == -EEXIST) {
		svc_job_fail(sj, GRPC_ALREADY_EXISTS, "collection %s/%s already exists", ns,
			     in->name);
		goto out;
	}
	if (rc) {
		svc_fail_store(sj, rc, "creating the collection");
		goto out;
	}
	if (nidx) {
		store_coll *coll;
		if (store_coll_acquire(j->env->store, ns, in->name, &coll) == 0) {
			if (svc_indexes_apply(coll, &ix))
				log_warn("collection %s/%s: indexes not built: %s", ns, in->name,
					 store_err_msg());
			store_coll_release(coll);
		}
	}

	char id[2 * STORE_NAME_MAX + 2];
	snprintf(id, sizeof(id), "%s/%s", ns, in->name);
	Collector__CreateCollectionResponse resp = COLLECTOR__CREATE_COLLECTION_RESPONSE__INIT;
	resp.status = &status_ok;
	resp.collection_id = id;
	resp.server_endpoint = (char *)endpoint_of(j->env, in);
	svc_job_answer(sj, &resp.base);
out:
	svc_indexes_free(&ix);
	mem_free(labels);
	mem_free(indexed);
	mem_free(def);
}

static void create_collection(call *c, const ProtobufCMessage *msg)
{
	const Collector__CreateCollectionRequest *req = (const void *)msg;
	svc_start(c, req, req->collection ? req->collection->namespace_ : NULL,
		  create_collection_work);
}

/* ---- DeleteCollection ---- */

static void delete_collection_work(svc_job *sj)
{
	svc_req_job *j = (svc_req_job *)sj;
	const Collector__DeleteCollectionRequest *req = j->req;
	const char *name = req->collection ? req->collection->name : "";
	if (!svc_check_user_ns(sj, j->ns) || !svc_check_name(sj, "collection", name))
		return;
	int64_t records = 0, files = 0;
	int rc = store_collection_delete(j->env->store, j->ns, name, &records, &files);
	if (rc == -ENOENT) {
		svc_job_fail(sj, GRPC_NOT_FOUND, "no collection %s/%s", j->ns, name);
		return;
	}
	if (rc) {
		svc_fail_store(sj, rc, "deleting the collection");
		return;
	}
	Collector__DeleteCollectionResponse resp = COLLECTOR__DELETE_COLLECTION_RESPONSE__INIT;
	resp.status = &status_ok;
	resp.records_deleted = records;
	resp.files_deleted = files;
	svc_job_answer(sj, &resp.base);
}

static void delete_collection(call *c, const ProtobufCMessage *msg)
{
	const Collector__DeleteCollectionRequest *req = (const void *)msg;
	svc_start(c, req, req->collection ? req->collection->namespace_ : NULL,
		  delete_collection_work);
}

/* ---- Route ---- */

static void route_work(svc_job *sj)
{
	svc_req_job *j = (svc_req_job *)sj;
	const Collector__RouteRequest *req = j->req;
	coll_def d;
	if (!coll_def_load(sj, j->env, j->ns, req->collection ? req->collection->name : "", &d))
		return;
	Collector__RouteResponse resp = COLLECTOR__ROUTE_RESPONSE__INIT;
	resp.status = &status_ok;
	/* The definition is shared: the answer shows a copy with the endpoint filled in. */
	Collector__Collection shown = *d.def;
	shown.server_endpoint = (char *)endpoint_of(j->env, d.def);
	resp.server_endpoint = shown.server_endpoint;
	resp.collection = &shown;
	svc_job_answer(sj, &resp.base);
	coll_def_free(&d);
}

static void route(call *c, const ProtobufCMessage *msg)
{
	const Collector__RouteRequest *req = (const void *)msg;
	svc_start(c, req, req->collection ? req->collection->namespace_ : NULL, route_work);
}

/* ---- Discover ---- */

/* Page tokens: sealed with the node's token key like List's (query_token_seal), bound to
 * the query's filters and holding the last (namespace, name) of the page. Their first
 * byte is no List token's version, so that neither API takes the other's tokens. */
#define DISCOVER_TOKEN_VERSION 0x44
#define DISCOVER_TOKEN_HEADER 9 /* the version, the filters' hash */
#define DISCOVER_TOKEN_MAX_CHARS 256

typedef struct label_pair {
	const char *key, *value;
} label_pair;

static int label_pair_cmp(const void *a, const void *b)
{
	const label_pair *x = a, *y = b;
	int r = strcmp(x->key, y->key);
	return r ? r : strcmp(x->value, y->value);
}

/* The filters a token belongs to, as the request gives them: every namespace or one, the
 * message type and the labels in key order (a map's entries may come in any order). 0, or
 * -ENOMEM. */
static int discover_filters_hash(const Collector__DiscoverRequest *req, bool all, uint64_t *hash)
{
	label_pair pairs[STORE_LABEL_FILTERS_MAX];
	size_t nl = req->n_label_filter;
	for (size_t i = 0; i < nl; i++)
		pairs[i] = (label_pair){req->label_filter[i]->key, req->label_filter[i]->value};
	qsort(pairs, nl, sizeof(*pairs), label_pair_cmp);
	const Collector__MessageTypeRef *t = req->message_type_filter;
	const char *type_ns = t && t->namespace_ ? t->namespace_ : "";
	const char *type_name = t && t->message_name ? t->message_name : "";
	buf b = {0};
	/* Every namespace marks the hash; one namespace hashes as it did before, so that its
	 * tokens stay valid across the upgrade. */
	int rc = all ? buf_append(&b, "*", 2) : 0;
	rc = rc ? rc : buf_append(&b, type_ns, strlen(type_ns) + 1);
	rc = rc ? rc : buf_append(&b, type_name, strlen(type_name) + 1);
	for (size_t i = 0; i < nl && !rc; i++) {
		rc = buf_append(&b, pairs[i].key, strlen(pairs[i].key) + 1);
		rc = rc ? rc : buf_append(&b, pairs[i].value, strlen(pairs[i].value) + 1);
	}
	if (!rc)
		*hash = query_token_hash(b.data, b.len);
	buf_free(&b);
	return rc;
}

/* The token continuing after (ns, name); NULL when out of memory. */
static char *discover_token(const svc_env *env, uint64_t filters, const char *ns, const char *name)
{
	uint8_t payload[DISCOVER_TOKEN_HEADER + 2 * STORE_NAME_MAX + 1];
	size_t nl = strlen(ns), ml = strlen(name), n = 0;
	payload[n++] = DISCOVER_TOKEN_VERSION;
	for (int i = 0; i < 8; i++)
		payload[n++] = (uint8_t)(filters >> (56 - 8 * i));
	memcpy(payload + n, ns, nl + 1);
	memcpy(payload + n + nl + 1, name, ml);
	char *token;
	return query_token_seal(env->token_key, payload, n + nl + 1 + ml, &token) ? NULL : token;
}

/* Checks a token against the request's namespace (NULL: every namespace) and filters and
 * reads its position; fails j with INVALID_ARGUMENT saying what is wrong. */
static bool discover_token_parse(svc_job *j, const svc_env *env, const char *t, uint64_t filters,
				 const char *req_ns, char ns[STORE_NAME_MAX + 1],
				 char name[STORE_NAME_MAX + 1])
{
	uint8_t *p;
	size_t n;
	int rc = query_token_open(env->token_key, t, DISCOVER_TOKEN_MAX_CHARS, &p, &n);
	if (rc) {
		svc_job_fail(j, rc == -ENOMEM ? GRPC_RESOURCE_EXHAUSTED : GRPC_INVALID_ARGUMENT,
			     "%s", store_err_msg());
		return false;
	}
	bool ok = n > DISCOVER_TOKEN_HEADER && p[0] == DISCOVER_TOKEN_VERSION;
	const char *raw = (const char *)p + DISCOVER_TOKEN_HEADER;
	size_t len = ok ? n - DISCOVER_TOKEN_HEADER : 0, nslen = strnlen(raw, len);
	ok = ok && nslen < len && nslen <= STORE_NAME_MAX && len - nslen - 1 <= STORE_NAME_MAX;
	if (ok) {
		memcpy(ns, raw, nslen + 1);
		memcpy(name, raw + nslen + 1, len - nslen - 1);
		name[len - nslen - 1] = 0;
		ok = store_name_valid(ns) && store_name_valid(name);
	}
	uint64_t h = 0;
	for (int i = 0; ok && i < 8; i++)
		h = h << 8 | p[1 + i];
	mem_free(p);
	if (!ok)
		svc_job_fail(j, GRPC_INVALID_ARGUMENT,
			     "page_token is not a Discover token of this node");
	else if (req_ns && strcmp(ns, req_ns))
		svc_job_fail(j, GRPC_INVALID_ARGUMENT,
			     "page_token belongs to another namespace (%s)", ns);
	else if (h != filters)
		svc_job_fail(
			j, GRPC_INVALID_ARGUMENT,
			"page_token belongs to another query (label_filter, message_type_filter "
			"or namespace changed)");
	return ok && (!req_ns || !strcmp(ns, req_ns)) && h == filters;
}

/* What a Discover response holds besides the definitions: its status (2 bytes) and, when
 * more follow, a token (a tag, a length of 2 bytes, the token). */
#define DISCOVER_FIXED (2 + 3 + DISCOVER_TOKEN_MAX_CHARS)
/* discover_row: the response is full, the page ends before this row. */
#define DISCOVER_FULL 1

typedef struct discover_acc {
	Collector__Collection **v;
	size_t n, cap;
	budget b;
	char last_ns[STORE_NAME_MAX + 1], last_name[STORE_NAME_MAX + 1];
	size_t too_big; /* the response the row that fits in none would make */
} discover_acc;

static int discover_row(void *ctx, const store_collection *row)
{
	discover_acc *a = ctx;
	if (a->n == a->cap) {
		size_t cap = a->cap ? 2 * a->cap : 16;
		void *v = mem_realloc(a->v, cap * sizeof(*a->v));
		if (!v)
			return -ENOMEM;
		a->v = v;
		a->cap = cap;
	}
	Collector__Collection *def =
		svc_decode(&collector__collection__descriptor, row->def, row->def_len);
	if (!def)
		return -EIO;
	size_t cost = budget_field(collector__collection__get_packed_size(def));
	if (!budget_take(&a->b, cost, 0)) {
		collector__collection__free_unpacked(def, NULL);
		if (a->n)
			return DISCOVER_FULL;
		/* The page cannot start: the row's name is the one reported. */
		snprintf(a->last_ns, sizeof(a->last_ns), "%s", row->ns);
		snprintf(a->last_name, sizeof(a->last_name), "%s", row->name);
		a->too_big = DISCOVER_FIXED + cost;
		return -EMSGSIZE;
	}
	a->v[a->n++] = def;
	snprintf(a->last_ns, sizeof(a->last_ns), "%s", row->ns);
	snprintf(a->last_name, sizeof(a->last_name), "%s", row->name);
	return 0;
}

static void discover_work(svc_job *sj)
{
	svc_req_job *j = (svc_req_job *)sj;
	const Collector__DiscoverRequest *req = j->req;
	if (req->page_size < 0 || req->page_size > DISCOVER_MAX) {
		svc_job_fail(sj, GRPC_INVALID_ARGUMENT, "page_size must be 0 (default %d) to %d",
			     DISCOVER_DEFAULT, DISCOVER_MAX);
		return;
	}
	/* No namespace named: every namespace of users ("Empty for all", the proto says). */
	bool all = svc_ns_unnamed(j->env, j->ns);
	if (!all && !svc_check_name(sj, "namespace", j->ns))
		return;
	store_list_filter f = {.ns = all ? NULL : j->ns,
			       .users_only = all,
			       .limit = req->page_size ? (size_t)req->page_size : DISCOVER_DEFAULT};
	size_t nl = req->n_label_filter;
	if (nl > STORE_LABEL_FILTERS_MAX) {
		svc_job_fail(sj, GRPC_INVALID_ARGUMENT, "at most %d label filters",
			     STORE_LABEL_FILTERS_MAX);
		return;
	}
	uint64_t filters;
	if (discover_filters_hash(req, all, &filters)) {
		svc_job_fail(sj, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	char after_ns[STORE_NAME_MAX + 1], after_name[STORE_NAME_MAX + 1];
	if (req->page_token && *req->page_token) {
		if (!discover_token_parse(sj, j->env, req->page_token, filters, all ? NULL : j->ns,
					  after_ns, after_name))
			return;
		f.after_ns = after_ns;
		f.after_name = after_name;
	}
	discover_acc a = {0};
	budget_init(&a.b, j->env->max_message_bytes, DISCOVER_FIXED);
	bool more = false;
	Collector__DiscoverResponse resp = COLLECTOR__DISCOVER_RESPONSE__INIT;
	const char *type_name =
		req->message_type_filter ? req->message_type_filter->message_name : NULL;
	if (all && type_name && *type_name) {
		/* Each namespace has its own types: across them, a type is its full name. */
		f.type_name = type_name[0] == '.' ? type_name + 1 : type_name;
	} else if (type_name && *type_name) {
		const tp_message *m = svc_find_type(j->env, j->ns, req->message_type_filter);
		if (!m)
			goto answer; /* nothing can be of a type nobody knows */
		f.type_ns = svc_type_ns(j->env, j->ns, m);
		f.type_name = tp_message_get(m)->full_name;
	}
	const char *keys[STORE_LABEL_FILTERS_MAX], *values[STORE_LABEL_FILTERS_MAX];
	for (size_t i = 0; i < nl; i++) {
		keys[i] = req->label_filter[i]->key;
		values[i] = req->label_filter[i]->value;
	}
	f.nlabels = nl;
	f.label_keys = keys;
	f.label_values = values;
	int rc = store_collection_list(j->env->store, &f, discover_row, &a, &more);
	if (rc == DISCOVER_FULL) {
		more = true;
	} else if (rc == -EMSGSIZE) {
		svc_job_fail(sj, GRPC_RESOURCE_EXHAUSTED,
			     "the definition of %s/%s does not fit in a response: with it the "
			     "response takes %zu bytes, over the message size limit of %zu",
			     a.last_ns, a.last_name, a.too_big, a.b.limit);
		goto out;
	} else if (rc) {
		svc_fail_store(sj, rc, "listing collections");
		goto out;
	}
answer:
	resp.status = &status_ok;
	resp.collections = a.v;
	resp.n_collections = a.n;
	resp.next_page_token =
		more && a.n ? discover_token(j->env, filters, a.last_ns, a.last_name) : NULL;
	if (more && a.n && !resp.next_page_token)
		svc_job_fail(sj, GRPC_RESOURCE_EXHAUSTED, "out of memory");
	else
		svc_job_answer(sj, &resp.base);
	mem_free(resp.next_page_token);
out:
	for (size_t i = 0; i < a.n; i++)
		collector__collection__free_unpacked(a.v[i], NULL);
	mem_free(a.v);
}

static void discover(call *c, const ProtobufCMessage *msg)
{
	const Collector__DiscoverRequest *req = (const void *)msg;
	svc_start(c, req, req->namespace_, discover_work);
}

int repo_register(method_table *t, svc_env *env)
{
	const method methods[] = {
		{REPO "CreateCollection",
		 METHOD_UNARY,
		 &collector__create_collection_request__descriptor,
		 &collector__create_collection_response__descriptor,
		 {.on_request = create_collection, .on_cancel = svc_job_on_cancel},
		 env},
		{REPO "DeleteCollection",
		 METHOD_UNARY,
		 &collector__delete_collection_request__descriptor,
		 &collector__delete_collection_response__descriptor,
		 {.on_request = delete_collection, .on_cancel = svc_job_on_cancel},
		 env},
		{REPO "Route",
		 METHOD_UNARY,
		 &collector__route_request__descriptor,
		 &collector__route_response__descriptor,
		 {.on_request = route, .on_cancel = svc_job_on_cancel},
		 env},
		{REPO "SearchCollections",
		 METHOD_UNARY,
		 &collector__search_collections_request__descriptor,
		 &collector__search_collections_response__descriptor,
		 {.on_request = coll_search_collections, .on_cancel = svc_job_on_cancel},
		 env},
		{REPO "Discover",
		 METHOD_UNARY,
		 &collector__discover_request__descriptor,
		 &collector__discover_response__descriptor,
		 {.on_request = discover, .on_cancel = svc_job_on_cancel},
		 env},
	};
	return method_table_add_all(t, methods, sizeof(methods) / sizeof(methods[0]));
}
