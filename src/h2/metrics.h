/* The server's counters for /metrics (Prometheus text): calls by method and code, a
 * latency histogram per method, connections and streams opened and closed.
 *
 * Cheap on the call path: each reactor (endpoint) writes its own counters, with relaxed
 * atomic loads and stores and no read-modify-write (one writer), so nothing is shared
 * between reactors and nothing locks; a scrape sums every endpoint's counters, seeing each
 * counter as of some recent moment. An endpoint's counts outlive it (folded into the
 * set's when it goes) so that counters never go backwards. */
#ifndef H2_METRICS_H
#define H2_METRICS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "h2/method.h"

typedef struct metrics_set metrics_set;
typedef struct metrics_ep metrics_ep;

/* One row per method of t (which must outlive the set and not change) and one for the
 * rest (unknown paths, registered services served elsewhere). NULL: no memory. */
metrics_set *metrics_set_new(const method_table *t);
void metrics_set_free(metrics_set *s);
/* An endpoint's counters, on the set's list until metrics_ep_free. Thread-safe. */
metrics_ep *metrics_ep_new(metrics_set *s);
void metrics_ep_free(metrics_ep *e);

/* The row of a call's method (NULL: the rest). */
uint32_t metrics_row(const metrics_set *s, const method *m);
/* On the endpoint's reactor only. */
void metrics_call_end(metrics_ep *e, uint32_t row, int code, int64_t ns);
/* A connection counts once its protocol is known (its first bytes, or ALPN). */
void metrics_conn_open(metrics_ep *e, bool http1);
void metrics_conn_close(metrics_ep *e, bool http1);
void metrics_stream_open(metrics_ep *e);
void metrics_stream_close(metrics_ep *e);

/* Appends the exposition text of every counter. Thread-safe. */
void metrics_render(metrics_set *s, buf *out);

/* printf into a buffer (the text formats of web.c and metrics.c). */
int buf_printf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
