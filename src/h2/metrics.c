/* Per-reactor counters summed at scrape time (metrics.h). */
#include "h2/metrics.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>

#include "base/list.h"
#include "base/mem.h"
#include "h2/status.h"

#define NCODES 17
/* Upper bounds in microseconds: 0.5 ms to 10 s, then +Inf. */
static const int64_t bucket_us[] = {500,    1000,   2500,   5000,    10000,   25000,   50000,
				    100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000};
#define NBUCKETS (sizeof(bucket_us) / sizeof(bucket_us[0]) + 1)

typedef _Atomic uint64_t counter;

/* One method's counts; the histogram's buckets are not cumulative here (rendering sums). */
typedef struct row {
	counter codes[NCODES];
	counter buckets[NBUCKETS];
	counter sum_ns;
} row;

enum { CONN_OPEN_H2, CONN_CLOSE_H2, CONN_OPEN_H1, CONN_CLOSE_H1, STREAM_OPEN, STREAM_CLOSE, NMISC };

struct metrics_ep {
	metrics_set *set;
	list_node link;
	counter misc[NMISC];
	row rows[]; /* set->nrows */
};

struct metrics_set {
	const method_table *t;
	size_t nrows; /* the table's methods and the rest */
	pthread_mutex_t mu;
	list_node eps;
	metrics_ep *retired; /* what endpoints that went had counted */
};

int buf_printf(buf *b, const char *fmt, ...)
{
	char small[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	if ((size_t)n < sizeof(small))
		return buf_append(b, small, (size_t)n);
	int rc = buf_reserve(b, (size_t)n + 1);
	if (rc)
		return rc;
	va_start(ap, fmt);
	vsnprintf(b->text + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

static metrics_ep *ep_alloc(metrics_set *s)
{
	metrics_ep *e = mem_calloc(1, sizeof(*e) + s->nrows * sizeof(row));
	if (e)
		e->set = s;
	return e;
}

metrics_set *metrics_set_new(const method_table *t)
{
	metrics_set *s = mem_calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->t = t;
	s->nrows = method_table_count(t) + 1;
	pthread_mutex_init(&s->mu, NULL);
	list_init(&s->eps);
	if (!(s->retired = ep_alloc(s))) {
		metrics_set_free(s);
		return NULL;
	}
	return s;
}

void metrics_set_free(metrics_set *s)
{
	if (!s)
		return;
	mem_free(s->retired);
	pthread_mutex_destroy(&s->mu);
	mem_free(s);
}

metrics_ep *metrics_ep_new(metrics_set *s)
{
	metrics_ep *e = ep_alloc(s);
	if (!e)
		return NULL;
	pthread_mutex_lock(&s->mu);
	list_push_back(&s->eps, &e->link);
	pthread_mutex_unlock(&s->mu);
	return e;
}

static void add(counter *to, const counter *from)
{
	atomic_fetch_add_explicit(to, atomic_load_explicit(from, memory_order_relaxed),
				  memory_order_relaxed);
}

/* Adds every counter of from to to (to: the retired totals or a scrape's sum). */
static void fold(metrics_ep *to, const metrics_ep *from, size_t nrows)
{
	for (size_t i = 0; i < NMISC; i++)
		add(&to->misc[i], &from->misc[i]);
	for (size_t r = 0; r < nrows; r++) {
		for (size_t i = 0; i < NCODES; i++)
			add(&to->rows[r].codes[i], &from->rows[r].codes[i]);
		for (size_t i = 0; i < NBUCKETS; i++)
			add(&to->rows[r].buckets[i], &from->rows[r].buckets[i]);
		add(&to->rows[r].sum_ns, &from->rows[r].sum_ns);
	}
}

void metrics_ep_free(metrics_ep *e)
{
	if (!e)
		return;
	metrics_set *s = e->set;
	pthread_mutex_lock(&s->mu);
	list_remove(&e->link);
	fold(s->retired, e, s->nrows);
	pthread_mutex_unlock(&s->mu);
	mem_free(e);
}

uint32_t metrics_row(const metrics_set *s, const method *m)
{
	size_t n = s->nrows - 1;
	const method *first = n ? method_table_at(s->t, 0) : NULL;
	/* The table keeps its methods in one array: a method of it is at its index. */
	if (m && first && m >= first && m < first + n)
		return (uint32_t)(m - first);
	return (uint32_t)n;
}

/* One writer per counter: a load and a store, no locked instruction. */
static inline void bump(counter *c, uint64_t n)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
			      memory_order_relaxed);
}

void metrics_call_end(metrics_ep *e, uint32_t rix, int code, int64_t ns)
{
	if (!e || rix >= e->set->nrows)
		return;
	row *r = &e->rows[rix];
	bump(&r->codes[code >= 0 && code < NCODES ? code : GRPC_UNKNOWN], 1);
	int64_t us = ns / 1000;
	size_t b = 0;
	while (b < NBUCKETS - 1 && us > bucket_us[b])
		b++;
	bump(&r->buckets[b], 1);
	bump(&r->sum_ns, ns > 0 ? (uint64_t)ns : 0);
}

void metrics_conn_open(metrics_ep *e, bool http1)
{
	if (e)
		bump(&e->misc[http1 ? CONN_OPEN_H1 : CONN_OPEN_H2], 1);
}

void metrics_conn_close(metrics_ep *e, bool http1)
{
	if (e)
		bump(&e->misc[http1 ? CONN_CLOSE_H1 : CONN_CLOSE_H2], 1);
}

void metrics_stream_open(metrics_ep *e)
{
	if (e)
		bump(&e->misc[STREAM_OPEN], 1);
}

void metrics_stream_close(metrics_ep *e)
{
	if (e)
		bump(&e->misc[STREAM_CLOSE], 1);
}

static uint64_t get(const counter *c) { return atomic_load_explicit(c, memory_order_relaxed); }

/* The method's path without its leading '/', or "other". */
static const char *row_name(const metrics_set *s, size_t r)
{
	if (r + 1 >= s->nrows)
		return "other";
	const char *p = method_table_at(s->t, r)->path;
	return *p == '/' ? p + 1 : p;
}

void metrics_render(metrics_set *s, buf *out)
{
	metrics_ep *sum = ep_alloc(s);
	if (!sum) {
		out->failed = true;
		return;
	}
	pthread_mutex_lock(&s->mu);
	fold(sum, s->retired, s->nrows);
	list_each (it, &s->eps)
		fold(sum, container_of(it, metrics_ep, link), s->nrows);
	pthread_mutex_unlock(&s->mu);

	buf_puts(out, "# HELP collector_calls_total Calls ended, by method and gRPC status code.\n"
		      "# TYPE collector_calls_total counter\n");
	for (size_t r = 0; r < s->nrows; r++)
		for (int c = 0; c < NCODES; c++)
			if (get(&sum->rows[r].codes[c]))
				buf_printf(
					out,
					"collector_calls_total{method=\"%s\",code=\"%s\"} %llu\n",
					row_name(s, r), grpc_code_name(c),
					(unsigned long long)get(&sum->rows[r].codes[c]));
	buf_puts(out, "# HELP collector_call_duration_seconds Time from a call's headers to its "
		      "status, by method.\n"
		      "# TYPE collector_call_duration_seconds histogram\n");
	for (size_t r = 0; r < s->nrows; r++) {
		uint64_t cum = 0;
		for (size_t b = 0; b < NBUCKETS; b++)
			cum += get(&sum->rows[r].buckets[b]);
		if (!cum)
			continue; /* methods never called stay out of the scrape */
		const char *name = row_name(s, r);
		cum = 0;
		for (size_t b = 0; b < NBUCKETS; b++) {
			cum += get(&sum->rows[r].buckets[b]);
			if (b < NBUCKETS - 1)
				buf_printf(out,
					   "collector_call_duration_seconds_bucket{method=\"%s\","
					   "le=\"%g\"} %llu\n",
					   name, (double)bucket_us[b] / 1e6,
					   (unsigned long long)cum);
			else
				buf_printf(out,
					   "collector_call_duration_seconds_bucket{method=\"%s\","
					   "le=\"+Inf\"} %llu\n",
					   name, (unsigned long long)cum);
		}
		buf_printf(out, "collector_call_duration_seconds_sum{method=\"%s\"} %.9f\n", name,
			   (double)get(&sum->rows[r].sum_ns) / 1e9);
		buf_printf(out, "collector_call_duration_seconds_count{method=\"%s\"} %llu\n", name,
			   (unsigned long long)cum);
	}
	uint64_t o2 = get(&sum->misc[CONN_OPEN_H2]), c2 = get(&sum->misc[CONN_CLOSE_H2]);
	uint64_t o1 = get(&sum->misc[CONN_OPEN_H1]), c1 = get(&sum->misc[CONN_CLOSE_H1]);
	uint64_t so = get(&sum->misc[STREAM_OPEN]), sc = get(&sum->misc[STREAM_CLOSE]);
	buf_printf(out,
		   "# HELP collector_connections_total Connections accepted, by protocol.\n"
		   "# TYPE collector_connections_total counter\n"
		   "collector_connections_total{protocol=\"h2\"} %llu\n"
		   "collector_connections_total{protocol=\"http1\"} %llu\n"
		   "# HELP collector_connections_open Connections open now, by protocol.\n"
		   "# TYPE collector_connections_open gauge\n"
		   "collector_connections_open{protocol=\"h2\"} %lld\n"
		   "collector_connections_open{protocol=\"http1\"} %lld\n"
		   "# HELP collector_streams_total Calls (streams and HTTP/1.1 requests) begun.\n"
		   "# TYPE collector_streams_total counter\n"
		   "collector_streams_total %llu\n"
		   "# HELP collector_streams_open Calls whose stream is open now.\n"
		   "# TYPE collector_streams_open gauge\n"
		   "collector_streams_open %lld\n",
		   (unsigned long long)o2, (unsigned long long)o1, (long long)(o2 - c2),
		   (long long)(o1 - c1), (unsigned long long)so, (long long)(so - sc));
	mem_free(sum);
}
