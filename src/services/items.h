/* A page of records for List, Search and SearchCollections: the rows of a compiled query
 * (store/query.h) kept as Anys while the response's budget (budget.h) takes them, so that
 * a page ends before the message size limit instead of failing, and never holds more than
 * one response's worth of record bytes. */
#ifndef SERVICES_ITEMS_H
#define SERVICES_ITEMS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "google/protobuf/any.pb-c.h"
#include "services/budget.h"
#include "services/svc.h"
#include "store/coll.h"
#include "store/query.h"
#include "store/typepool.h"

#define ITEMS_ID_MAX SVC_ID_MAX /* the longest record id */

/* What one item adds to its response besides its Any. */
enum items_shape {
	ITEMS_ANY,    /* List: a repeated Any */
	ITEMS_RESULT, /* Search: a SearchResult around it, with its score */
	ITEMS_SCORED, /* SearchCollections: an Any, and a scores entry keyed by its id */
};

typedef struct items {
	Google__Protobuf__Any *any;   /* n of them, their bytes owned here */
	Google__Protobuf__Any **ptrs; /* items_ptrs */
	uint8_t **data;
	double *scores;
	char **ids; /* ITEMS_SCORED: each item's record id */
	enum items_shape shape;
	budget *budget;
	size_t n, cap;
	char *url;	  /* the records' type URL; NULL for untyped records (coll_any.h) */
	bool untyped;	  /* each record is the Any it was written as */
	char *last_token; /* List (a query given to items_init): the last item's page token */
	/* List: the last item's order key is too long for a page token (QUERY_MAX_TOKEN_TEXT);
	 * its id, "" when it is not. */
	char untokened[ITEMS_ID_MAX + 1];
	const query *q;
	store_reader *rd;		/* items_fetch's */
	char too_big[ITEMS_ID_MAX + 1]; /* items_fetch -EMSGSIZE: the record no response holds */
	size_t too_big_bytes;		/* and the response it would make */
} items;

/* For records of type m (NULL: an untyped collection's), shaped as shape, counted against b (shared
 * by the items of one response). q: List's query, whose page tokens the items keep; NULL for
 * Search. false when out of memory; items_free in any case. */
bool items_init(items *it, const tp_message *m, const query *q, enum items_shape shape, budget *b);
/* Runs q on rd: its page, up to query_page_size records and as many as the budget takes,
 * into it (*more: records remain after the page), and its count into *total. 0; -EMSGSIZE
 * when the page's first record fits in no response (it->too_big names it); -EBADMSG when
 * an untyped record is damaged (it->too_big names it); -ENOMEM; or the store's error
 * (store_err_msg). */
int items_fetch(items *it, store_reader *rd, const query *q, bool *more, int64_t *total);
/* The items as the repeated field a response takes (it->ptrs); NULL when out of memory. */
Google__Protobuf__Any **items_ptrs(items *it);
void items_free(items *it);

#endif
