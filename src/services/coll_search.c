/* Queries of records: CollectionService's List and Search (full text, filters, vector) and
 * CollectionRepo's SearchCollections, which runs Search over several collections. The
 * request becomes a compiled query (store/query.h) that one of the collection's readers
 * runs; a page holds what the response's byte budget takes (items.h). */
#include "services/coll_search.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/arena.h"
#include "base/mem.h"
#include "collector/collection_repo.pb-c.h"
#include "collector/collection_server.pb-c.h"
#include "services/budget.h"
#include "services/coll_def.h"
#include "services/coll_read.h"
#include "services/items.h"
#include "store/coll.h"
#include "store/query.h"

static Collector__Status status_ok = COLLECTOR__STATUS__INIT;

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
 * arena holds every node, as much as the request has (zeroed, it is ready), and is freed
 * in one go; failed: memory ran out somewhere in a conversion. */
typedef struct value_arena {
	arena a;
	bool failed;
} value_arena;

static void *va_alloc(value_arena *a, size_t n, size_t size)
{
	if (!n)
		return NULL;
	void *p = n > SIZE_MAX / size ? NULL : arena_alloc(&a->a, n * size);
	if (!p)
		a->failed = true;
	return p;
}

static void convert_value(value_arena *a, const Google__Protobuf__Value *in, query_value *out);

static void convert_struct(value_arena *a, const Google__Protobuf__Struct *s, query_value *out)
{
	out->type = QUERY_STRUCT;
	size_t n = s ? s->n_fields : 0;
	query_member *mem = va_alloc(a, n, sizeof(*mem));
	query_value *vals = va_alloc(a, n, sizeof(*vals));
	if (n && (!mem || !vals))
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
		query_value *items = va_alloc(a, n, sizeof(*items));
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

typedef struct query_job {
	coll_read_job rd;
	value_arena va;
	query *q;
} query_job;

static void query_release(svc_job *sj)
{
	query_job *qj = (query_job *)sj;
	query_free(qj->q);
	arena_free(&qj->va.a);
	coll_read_release(sj);
}

static void query_start(call *c, const ProtobufCMessage *req, const char *ns,
			void (*work)(svc_job *))
{
	const svc_env *env = call_ctx(c);
	query_job *qj = mem_calloc(1, sizeof(*qj));
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
static void schema_of(const svc_env *env, const coll_def *d, char scope[SCOPE_MAX], query_schema *s)
{
	snprintf(scope, SCOPE_MAX, "%s/%s/%lld", d->row->ns, d->row->name,
		 (long long)d->row->created_at);
	/* Schemaless records: no resolver, so paths are JSON paths typed by the values found
	 * (query.h), and a path that no record has matches nothing. */
	*s = (query_schema){.resolve = d->schemaless ? NULL : resolve_kind,
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
static bool compiled(svc_job *sj, int rc, const char *what)
{
	if (rc)
		svc_job_fail(sj, rc == -EINVAL ? GRPC_INVALID_ARGUMENT : GRPC_RESOURCE_EXHAUSTED,
			     "%s%s%s", what, *what ? ": " : "",
			     rc == -EINVAL ? store_err_msg() : "out of memory");
	return rc == 0;
}

/* A record no response can hold, even alone (written when the limit was higher, or just
 * under it by a request that carried less around it): named, so that it can be fetched
 * with Get, deleted, or filtered out. */
static void fail_too_big(svc_job *sj, const coll_def *d, const char *id, size_t bytes, size_t limit)
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
	coll_read_job *rj = &qj->rd;
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
	else if (rc == -EBADMSG)
		svc_job_fail(sj, GRPC_DATA_LOSS, "record '%.200s' of %s/%s is damaged", it->too_big,
			     rj->d.row->ns, rj->d.row->name);
	else if (rc == -ENOMEM)
		svc_job_fail(sj, GRPC_RESOURCE_EXHAUSTED, "out of memory");
	else if (rc)
		svc_job_fail(sj, GRPC_INTERNAL, "reading %s/%s: %s", rj->d.row->ns, rj->d.row->name,
			     store_err_msg());
	coll_read_close(rj);
	return rc == 0;
}

static void list_work(svc_job *sj)
{
	query_job *qj = (query_job *)sj;
	coll_read_job *rj = &qj->rd;
	const Collector__ListRequest *req = rj->r.req;
	if (!coll_def_load(sj, rj->r.env, rj->r.ns, req->collection_name, &rj->d))
		return;
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
	int rc = qj->va.failed ? -ENOMEM : query_compile_list(&schema, &p, &qj->q);
	if (!compiled(sj, rc, ""))
		return;
	items it;
	bool more = false;
	int64_t total = -1;
	budget b;
	budget_init(&b, rj->r.env->max_message_bytes, RESPONSE_FIXED);
	if (!items_init(&it, rj->d.type, qj->q, ITEMS_ANY, &b)) {
		svc_job_fail(sj, GRPC_RESOURCE_EXHAUSTED, "out of memory");
	} else if (!fetch(qj, &it, &more, &total)) {
		/* j failed */
	} else if (more && *it.untokened) {
		/* A page that ends where no token can start the next one would end the paging
		 * without a word: the records after it would be silently missed. */
		svc_job_fail(sj, GRPC_FAILED_PRECONDITION,
			     "record %.200s ends this page, and its order key is longer than %d "
			     "bytes, which no page token holds: order by another key, or ask for "
			     "a page size that does not end on it",
			     it.untokened, QUERY_MAX_TOKEN_TEXT);
	} else {
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

void coll_search_list(call *c, const ProtobufCMessage *msg)
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
	coll_read_job *rj = &qj->rd;
	const Collector__SearchRequest *req = rj->r.req;
	if ((req->full_text && *req->full_text) || req->n_filters || req->n_label_filters ||
	    (req->order_by && *req->order_by)) {
		svc_job_fail(sj, GRPC_INVALID_ARGUMENT,
			     "a vector search takes no full_text, filters or order_by");
		return;
	}
	if (req->n_vector > VECTOR_MAX || req->limit < 0 || req->limit > QUERY_MAX_PAGE ||
	    req->offset < 0 || req->offset > QUERY_MAX_OFFSET) {
		svc_job_fail(sj, GRPC_INVALID_ARGUMENT,
			     "vector of at most %d values, limit 0 to %d, "
			     "offset 0 to %d",
			     VECTOR_MAX, QUERY_MAX_PAGE, QUERY_MAX_OFFSET);
		return;
	}
	const char *field = NULL;
	const Collector__Metadata *md = rj->d.def->metadata;
	for (size_t i = 0; md && i < md->n_labels; i++)
		if (!strcmp(md->labels[i]->key, EMBEDDING_LABEL))
			field = md->labels[i]->value;
	query_path path;
	bool whole;
	const tp_field *f;
	if (!field || query_path_parse(field, strlen(field), &path) ||
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
		svc_job_fail(sj, rc == -ENOMEM ? GRPC_RESOURCE_EXHAUSTED : GRPC_INTERNAL,
			     "reading: %s", store_err_msg());
		goto out;
	}
	size_t limit = req->limit ? (size_t)req->limit : QUERY_DEFAULT_PAGE;
	size_t from = (size_t)req->offset < nhits ? (size_t)req->offset : nhits;
	size_t n = nhits - from < limit ? nhits - from : limit;
	Collector__SearchResult *res = mem_calloc(n ? n : 1, sizeof(*res));
	Collector__SearchResult **ptrs = mem_calloc(n ? n : 1, sizeof(*ptrs));
	Google__Protobuf__Any *any = mem_calloc(n ? n : 1, sizeof(*any));
	char *url_heap, *url = svc_type_url(rj->d.type, NULL, 0, &url_heap);
	uint8_t **copies = mem_calloc(n ? n : 1, sizeof(*copies));
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
			svc_job_fail(sj, GRPC_INTERNAL, "reading: %s", store_err_msg());
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
				fail_too_big(sj, &rj->d, store_reader_hit_id(rj->rd),
					     RESPONSE_FIXED + cost, bud.limit);
			break;
		}
		if (!(copies[kept] = mem_alloc(len ? len : 1))) {
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
		mem_free(copies[i]);
	mem_free(copies);
	mem_free(res);
	mem_free(ptrs);
	mem_free(any);
	mem_free(url);
out:
	mem_free(hits);
	coll_read_close(rj);
}

static void search_work(svc_job *sj)
{
	query_job *qj = (query_job *)sj;
	coll_read_job *rj = &qj->rd;
	const Collector__SearchRequest *req = rj->r.req;
	if (!coll_def_load(sj, rj->r.env, rj->r.ns, req->collection_name, &rj->d))
		return;
	if (req->n_vector) {
		vector_search(qj);
		return;
	}
	size_t nf = req->n_filters, nl = req->n_label_filters;
	query_filter *filters = mem_calloc(nf ? nf : 1, sizeof(*filters));
	query_label *labels = mem_calloc(nl ? nl : 1, sizeof(*labels));
	if (!filters || !labels) {
		mem_free(filters);
		mem_free(labels);
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
	int rc = qj->va.failed ? -ENOMEM : query_compile_search(&schema, &p, &qj->q);
	mem_free(filters);
	mem_free(labels);
	if (!compiled(sj, rc, ""))
		return;
	items it;
	bool more = false;
	int64_t total = -1;
	budget b;
	budget_init(&b, rj->r.env->max_message_bytes, RESPONSE_FIXED);
	if (!items_init(&it, rj->d.type, NULL, ITEMS_RESULT, &b)) {
		svc_job_fail(sj, GRPC_RESOURCE_EXHAUSTED, "out of memory");
	} else if (fetch(qj, &it, &more, &total)) {
		Collector__SearchResult *res = mem_calloc(it.n ? it.n : 1, sizeof(*res));
		Collector__SearchResult **ptrs = mem_calloc(it.n ? it.n : 1, sizeof(*ptrs));
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
		mem_free(res);
		mem_free(ptrs);
	}
	items_free(&it);
}

void coll_search_search(call *c, const ProtobufCMessage *msg)
{
	const Collector__SearchRequest *req = (const void *)msg;
	query_start(c, msg, req->namespace_, search_work);
}

/* ---- SearchCollections (a CollectionRepo method: Search over several collections) ---- */

#define SEARCH_COLLECTIONS_MAX 1000

/* The collections to search: v[i] in namespace ns[i] (NULL: the request's), shown as
 * label[i] (NULL: by its name). */
typedef struct coll_names {
	char **v, **ns, **label;
	size_t n;
	const char *only; /* collect_name: this name only (NULL: every one) */
	bool labelled;	  /* collect_name: give each its namespace and label */
} coll_names;

static int collect_name(void *ctx, const store_collection *row)
{
	coll_names *names = ctx;
	if (names->only && strcmp(row->name, names->only))
		return 0;
	if (names->n == SEARCH_COLLECTIONS_MAX)
		return -E2BIG;
	size_t i = names->n++;
	names->v[i] = mem_strdup(row->name);
	if (!names->labelled)
		return names->v[i] ? 0 : -ENOMEM;
	names->ns[i] = mem_strdup(row->ns);
	if (mem_asprintf(&names->label[i], "%s/%s", row->ns, row->name) < 0)
		names->label[i] = NULL;
	return names->v[i] && names->ns[i] && names->label[i] ? 0 : -ENOMEM;
}

/* Every namespace (no namespace named): the collections of every user namespace, or those
 * the request names, each "ns/name" or a bare name (in every namespace that has it).
 * Results are labelled "ns/name". false (j failed) when it cannot. */
static bool names_everywhere(svc_job *sj, const svc_env *env,
			     const Collector__SearchCollectionsRequest *req, coll_names *names)
{
	store_list_filter f = {.users_only = true, .limit = SEARCH_COLLECTIONS_MAX + 1};
	int rc = 0;
	names->labelled = true;
	for (size_t i = 0; i < req->n_collection_names && !rc; i++) {
		const char *given = req->collection_names[i];
		const char *slash = strchr(given, '/');
		size_t before = names->n;
		char ns[STORE_NAME_MAX + 1];
		if (slash && (size_t)(slash - given) > STORE_NAME_MAX) {
			svc_job_fail(sj, GRPC_NOT_FOUND, "no collection %.200s", given);
			return false;
		}
		if (slash) {
			snprintf(ns, sizeof(ns), "%.*s", (int)(slash - given), given);
			f.ns = ns;
			names->only = slash + 1;
		} else {
			f.ns = NULL;
			names->only = given;
		}
		rc = store_collection_list(env->store, &f, collect_name, names, NULL);
		if (!rc && names->n == before) {
			svc_job_fail(sj, GRPC_NOT_FOUND, "no collection %.200s in %s", given,
				     slash ? "that namespace" : "any namespace");
			return false;
		}
	}
	names->only = NULL;
	f.ns = NULL;
	if (!req->n_collection_names)
		rc = store_collection_list(env->store, &f, collect_name, names, NULL);
	if (rc == -E2BIG)
		svc_job_fail(sj, GRPC_INVALID_ARGUMENT,
			     "more than %d collections to search: name them (collection_names)",
			     SEARCH_COLLECTIONS_MAX);
	else if (rc)
		svc_fail_store(sj, rc, "listing collections");
	return !rc;
}

/* What a collection's entry in the results holds besides its items: a tag and a length
 * (up to 5 bytes), and its name. */
static size_t result_header(const char *name) { return 1 + 5 + budget_field(strlen(name)); }

/* One collection's matches into *res, its scores into *scores (for the caller to free);
 * *reached is false when the response had no room left for it. false (j failed) on an
 * error. */
static bool search_one(query_job *qj, const char *ns, const char *name, const char *label,
		       const query_value *qv, budget *b, items *it,
		       Collector__SearchCollectionsResponse__CollectionResult *res,
		       Collector__SearchCollectionsResponse__CollectionResult__ScoresEntry **scores,
		       bool *reached, int64_t *total)
{
	svc_job *sj = &qj->rd.r.j;
	coll_read_job *rj = &qj->rd;
	const Collector__SearchCollectionsRequest *req = rj->r.req;
	coll_def_free(&rj->d);
	query_free(qj->q);
	qj->q = NULL;
	if (!coll_def_load(sj, rj->r.env, ns ? ns : rj->r.ns, name, &rj->d))
		return false;
	query_schema schema;
	char scope[SCOPE_MAX];
	schema_of(rj->r.env, &rj->d, scope, &schema);
	query_search_params p = {.query = qv, .limit = req->limit, .order_by = req->order_by};
	if (!compiled(sj, query_compile_search(&schema, &p, &qj->q), name))
		return false;
	if (!items_init(it, rj->d.type, NULL, ITEMS_SCORED, b)) {
		svc_job_fail(sj, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return false;
	}
	/* Still searched when the response is full: total_matches counts every match. */
	budget_take_bytes(b, result_header(label ? label : name));
	bool more;
	int64_t count = -1;
	if (!fetch(qj, it, &more, &count))
		return false;
	*total += count;
	/* Cut before its first item, it is left out: an entry means "these are its matches". */
	*reached = it->n > 0 || !b->full;
	/* One block: the entries, then the pointers to them. */
	Collector__SearchCollectionsResponse__CollectionResult__ScoresEntry *e =
		mem_calloc(it->n ? it->n : 1, sizeof(*e) + sizeof(e));
	*scores = e;
	if (!e || !items_ptrs(it)) {
		svc_job_fail(sj, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return false;
	}
	Collector__SearchCollectionsResponse__CollectionResult__ScoresEntry **ptrs =
		(void *)(e + (it->n ? it->n : 1));
	for (size_t i = 0; i < it->n; i++) {
		collector__search_collections_response__collection_result__scores_entry__init(
			&e[i]);
		e[i].key = it->ids[i];
		e[i].value = it->scores[i];
		ptrs[i] = &e[i];
	}
	collector__search_collections_response__collection_result__init(res);
	res->collection_name = (char *)(label ? label : name);
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
	coll_read_job *rj = &qj->rd;
	const Collector__SearchCollectionsRequest *req = rj->r.req;
	const svc_env *env = rj->r.env;
	/* No namespace named: every namespace of users ("Empty for all", the proto says). */
	bool all = svc_ns_unnamed(env, rj->r.ns);
	if (!all && !svc_check_name(sj, "namespace", rj->r.ns))
		return;
	coll_names names = {.v = mem_calloc(SEARCH_COLLECTIONS_MAX, sizeof(char *)),
			    .ns = mem_calloc(SEARCH_COLLECTIONS_MAX, sizeof(char *)),
			    .label = mem_calloc(SEARCH_COLLECTIONS_MAX, sizeof(char *))};
	if (!names.v || !names.ns || !names.label) {
		svc_job_fail(sj, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		goto free_names;
	}
	if (req->n_collection_names > SEARCH_COLLECTIONS_MAX) {
		svc_job_fail(sj, GRPC_INVALID_ARGUMENT, "at most %d collections",
			     SEARCH_COLLECTIONS_MAX);
	} else if (all) {
		names_everywhere(sj, env, req, &names);
	} else if (req->n_collection_names) {
		for (size_t i = 0; i < req->n_collection_names; i++)
			names.v[names.n++] = mem_strdup(req->collection_names[i]);
	} else {
		store_list_filter f = {.ns = rj->r.ns, .limit = SEARCH_COLLECTIONS_MAX};
		int rc = store_collection_list(env->store, &f, collect_name, &names, NULL);
		if (rc)
			svc_fail_store(sj, rc, "listing collections");
	}
	size_t n = names.n, nres = 0;
	items *its = mem_calloc(n ? n : 1, sizeof(*its));
	Collector__SearchCollectionsResponse__CollectionResult *res =
		mem_calloc(n ? n : 1, sizeof(*res));
	Collector__SearchCollectionsResponse__CollectionResult **ptrs =
		mem_calloc(n ? n : 1, sizeof(*ptrs));
	Collector__SearchCollectionsResponse__CollectionResult__ScoresEntry **scores =
		mem_calloc(n ? n : 1, sizeof(*scores));
	size_t done = 0;
	int64_t total = 0;
	query_value qv;
	budget b;
	budget_init(&b, env->max_message_bytes, RESPONSE_FIXED);
	if (sj->code != GRPC_OK)
		goto out;
	if (!its || !res || !ptrs || !scores) {
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
		if (!search_one(qj, names.ns[done], names.v[done], names.label[done],
				req->query ? &qv : NULL, &b, &its[done], &res[done], &scores[done],
				&reached, &total)) {
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
		mem_free(scores[i]);
	mem_free(its);
	mem_free(res);
	mem_free(ptrs);
	mem_free(scores);
free_names:
	for (size_t i = 0; i < names.n; i++) {
		mem_free(names.v[i]);
		mem_free(names.ns[i]);
		mem_free(names.label[i]);
	}
	mem_free(names.v);
	mem_free(names.ns);
	mem_free(names.label);
}

void coll_search_collections(call *c, const ProtobufCMessage *msg)
{
	const Collector__SearchCollectionsRequest *req = (const void *)msg;
	query_start(c, msg, req->namespace_, search_collections_work);
}
