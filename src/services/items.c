#include "services/items.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "collector/collection_repo.pb-c.h"
#include "collector/collection_server.pb-c.h"
#include "services/coll_any.h"
#include "services/svc.h"

/* A record's answer: the response is full, the page ends before this record. */
#define ROW_FULL 1

static size_t item_cost(const items *it, Google__Protobuf__Any *any, double score, const char *id)
{
	size_t any_field = budget_field(google__protobuf__any__get_packed_size(any));
	if (it->shape == ITEMS_RESULT) {
		Collector__SearchResult r = COLLECTOR__SEARCH_RESULT__INIT;
		r.item = any;
		r.score = score;
		return budget_field(collector__search_result__get_packed_size(&r));
	}
	if (it->shape == ITEMS_SCORED) {
		Collector__SearchCollectionsResponse__CollectionResult__ScoresEntry e =
			COLLECTOR__SEARCH_COLLECTIONS_RESPONSE__COLLECTION_RESULT__SCORES_ENTRY__INIT;
		e.key = (char *)id;
		e.value = score;
		return any_field + budget_field(protobuf_c_message_get_packed_size(&e.base));
	}
	return any_field;
}

static int items_grow(items *it)
{
	size_t cap = it->cap ? it->cap * 2 : 16;
	void *a = mem_realloc(it->any, cap * sizeof(*it->any));
	if (a)
		it->any = a;
	void *d = mem_realloc(it->data, cap * sizeof(*it->data));
	if (d)
		it->data = d;
	void *s = mem_realloc(it->scores, cap * sizeof(*it->scores));
	if (s)
		it->scores = s;
	bool want_ids = it->shape == ITEMS_SCORED;
	void *ids = want_ids ? mem_realloc(it->ids, cap * sizeof(*it->ids)) : it->ids;
	if (ids)
		it->ids = ids;
	if (!a || !d || !s || (want_ids && !ids))
		return -ENOMEM;
	it->cap = cap;
	return 0;
}

/* Keeps the record when it fits in the response: its size is known before its bytes are
 * copied, so a page never holds more than one response's worth of records. */
static int items_row(void *ctx, const store_record *rec)
{
	items *it = ctx;
	if (it->n == it->cap && items_grow(it))
		return -ENOMEM;
	size_t len = rec->data_len;
	const void *blob = rec->data;
	const char *id = rec->id;
	double score = rec->score;
	Google__Protobuf__Any any;
	uint8_t *copy = NULL;
	if (it->untyped) {
		/* The record is the Any it was written as: copied out before its cost is known. */
		int rc = coll_any_unpack(blob, len, &any, &copy);
		if (rc == -EINVAL) {
			snprintf(it->too_big, sizeof(it->too_big), "%s", id ? id : "");
			return -EBADMSG;
		}
		if (rc)
			return rc;
	} else {
		svc_record_any(&any, it->url, blob, len);
	}
	/* List: this record's token starts the next page if the page ends here. */
	char *token = NULL;
	int trc = it->q ? store_reader_page_token(it->rd, &token) : 0;
	if (trc == -ENOMEM) {
		mem_free(copy);
		return -ENOMEM;
	}
	size_t cost = item_cost(it, &any, score, id ? id : "");
	size_t reserve = token ? budget_field(strlen(token)) : 0;
	bool was_full = it->budget->full;
	if (!budget_take(it->budget, cost, reserve)) {
		mem_free(token);
		mem_free(copy);
		/* Only the first item of a response can be one that no response holds. */
		if (was_full || it->budget->items || budget_fits_alone(it->budget, cost, reserve))
			return ROW_FULL;
		snprintf(it->too_big, sizeof(it->too_big), "%s", id ? id : "");
		it->too_big_bytes = it->budget->fixed + cost + reserve;
		return -EMSGSIZE;
	}
	bool copied = copy != NULL;
	if (!copied)
		copy = mem_alloc(len ? len : 1);
	char *kept_id = it->shape == ITEMS_SCORED ? mem_strdup(id ? id : "") : NULL;
	if (!copy || (it->shape == ITEMS_SCORED && !kept_id)) {
		mem_free(copy);
		mem_free(kept_id);
		mem_free(token);
		return -ENOMEM;
	}
	if (kept_id)
		it->ids[it->n] = kept_id;
	it->data[it->n] = copy;
	if (copied) {
		it->any[it->n] = any;
	} else {
		if (len)
			memcpy(copy, blob, len);
		svc_record_any(&it->any[it->n], it->url, copy, len);
	}
	it->scores[it->n] = score;
	it->n++;
	mem_free(it->last_token);
	it->last_token = token;
	snprintf(it->untokened, sizeof(it->untokened), "%s", trc == -EOVERFLOW && id ? id : "");
	return 0;
}

bool items_init(items *it, const tp_message *m, const query *q, enum items_shape shape, budget *b)
{
	*it = (items){.q = q, .shape = shape, .budget = b, .untyped = !m};
	if (!m)
		return true;
	char *heap;
	it->url = svc_type_url(m, NULL, 0, &heap);
	return it->url != NULL;
}

Google__Protobuf__Any **items_ptrs(items *it)
{
	it->ptrs = mem_calloc(it->n ? it->n : 1, sizeof(*it->ptrs));
	for (size_t i = 0; it->ptrs && i < it->n; i++)
		it->ptrs[i] = &it->any[i];
	return it->ptrs;
}

void items_free(items *it)
{
	for (size_t i = 0; i < it->n; i++) {
		mem_free(it->data[i]);
		if (it->shape == ITEMS_SCORED)
			mem_free(it->ids[i]);
	}
	mem_free(it->ids);
	mem_free(it->any);
	mem_free(it->ptrs);
	mem_free(it->data);
	mem_free(it->scores);
	mem_free(it->url);
	mem_free(it->last_token);
}

int items_fetch(items *it, store_reader *rd, const query *q, bool *more, int64_t *total)
{
	it->rd = rd;
	return store_reader_query(rd, q, items_row, it, more, total);
}
