/* A response's bytes, counted while its items are gathered, so that a page stops before
 * the message size limit (--max-message-bytes) rather than failing whole with
 * RESOURCE_EXHAUSTED: List, Search, SearchCollections and Discover take items while
 * budget_take says they fit, and stop at the first that does not. */
#ifndef SERVICES_BUDGET_H
#define SERVICES_BUDGET_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A tag and a varint holding any int64 (what a count field such as total_count takes at
 * most). */
#define BUDGET_INT64_FIELD 11

typedef struct budget {
	size_t limit; /* the largest response */
	size_t fixed; /* bytes spent up front */
	size_t used;  /* bytes counted so far, fixed included */
	size_t items; /* items taken */
	bool full;    /* something did not fit: nothing more is taken */
} budget;

/* A budget for a response of at most limit bytes, fixed of which are spent up front (the
 * status and the counts: whatever the response carries besides its items). */
void budget_init(budget *b, size_t limit, size_t fixed);
/* The bytes of a length-delimited field holding len bytes (field numbers below 16 take a
 * one-byte tag: every field counted here has one). */
size_t budget_field(size_t len);
/* Counts n more bytes for one item when n, plus reserve more, fit in what is left:
 * reserve is what the response needs only if this item is its last (the page token that
 * follows it). False, counting nothing, when they do not fit; from then on the budget is
 * full and every take fails, so that a response holds a prefix of its items. */
bool budget_take(budget *b, size_t n, size_t reserve);
/* Counts n bytes that are not an item (a group header); the same rules as budget_take. */
bool budget_take_bytes(budget *b, size_t n);
/* Whether an item of n bytes (plus reserve) fits in a response without other items: one
 * that does not can never be sent, and is an error rather than the end of a page. */
bool budget_fits_alone(const budget *b, size_t n, size_t reserve);

#endif
