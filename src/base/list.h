/* Intrusive doubly linked lists. A node is a member of the struct it links (container_of
 * finds the struct), and a list is a node of its owner that links to itself when empty:
 * insertion and removal anywhere take no allocation and no test for the ends. */
#ifndef BASE_LIST_H
#define BASE_LIST_H
#include <stdbool.h>
#include <stddef.h>

#include "base/container_of.h"

typedef struct list_node {
	struct list_node *prev, *next;
} list_node;

/* An empty list, or a node on no list. */
static inline void list_init(list_node *n) { n->prev = n->next = n; }

static inline bool list_empty(const list_node *l) { return l->next == l; }

/* Links n (on no list) right after at. */
static inline void list_insert_after(list_node *at, list_node *n)
{
	n->prev = at;
	n->next = at->next;
	at->next->prev = n;
	at->next = n;
}

static inline void list_push_front(list_node *l, list_node *n) { list_insert_after(l, n); }

static inline void list_push_back(list_node *l, list_node *n) { list_insert_after(l->prev, n); }

/* Unlinks n from its list; n is then on no list (list_init), so removing it again is
 * harmless. */
static inline void list_remove(list_node *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	list_init(n);
}

/* Each node of l, first to last; it is the node (container_of gives its struct). */
#define list_each(it, l) for (list_node *it = (l)->next; it != (l); it = it->next)

/* The same, where the loop may remove (or free) the node it is at. */
#define list_each_safe(it, l)                                                                      \
	for (list_node *it = (l)->next, *it##_next = it->next; it != (l);                          \
	     it = it##_next, it##_next = it->next)

#endif
