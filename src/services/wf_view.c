#include "services/wf_view.h"

#include <stdio.h>
#include <string.h>

#include "base/jsonstr.h"
#include "collector/worker.pb-c.h"
#include "services/wf_engine.h"

static const char *const state_names[] = {"PENDING", "RUNNING",	  "SUCCEEDED",
					  "FAILED",  "CANCELLED", "PAUSED"};
static const char *const exec_names[] = {"PENDING", "RUNNING",	 "SUCCEEDED",
					 "FAILED",  "CANCELLED", "RETRYING"};

static void key(buf *b, const char *k)
{
	jsonstr_put(b, k, strlen(k));
	buf_putc(b, ':');
}

static void str(buf *b, const char *s) { jsonstr_put(b, s ? s : "", s ? strlen(s) : 0); }

static void num(buf *b, long long v)
{
	char n[24];
	snprintf(n, sizeof(n), "%lld", v);
	buf_puts(b, n);
}

/* "k":value, members of an object whose last one is followed by end_object. */
static void put_str(buf *b, const char *k, const char *v)
{
	key(b, k);
	str(b, v);
	buf_putc(b, ',');
}

static void put_num(buf *b, const char *k, long long v)
{
	key(b, k);
	num(b, v);
	buf_putc(b, ',');
}

/* Ends an object after its members (the last one's comma taken back). */
static void end_object(buf *b)
{
	if (b->len && b->text[b->len - 1] == ',')
		buf_truncate(b, b->len - 1);
	buf_putc(b, '}');
}

static const char *name_of(const char *const *names, int k)
{
	return k >= 0 && k < 6 ? names[k] : "UNKNOWN";
}

typedef struct rows {
	buf *b;
	size_t n;
} rows;

static int wf_row(void *ctx, const wfstore_wf *w)
{
	rows *r = ctx;
	buf *b = r->b;
	if (r->n++)
		buf_putc(b, ',');
	buf_putc(b, '{');
	put_str(b, "id", w->id);
	put_str(b, "namespace", w->ns);
	put_str(b, "workflow_name", w->name);
	put_str(b, "state", name_of(state_names, w->state));
	put_num(b, "created_us", w->created_us);
	put_num(b, "updated_us", w->updated_us);
	put_str(b, "error", w->error);
	end_object(b);
	return b->failed;
}

static int def_row(void *ctx, char kind, const char *ns, const char *k, const uint8_t *body,
		   size_t len)
{
	rows *r = ctx;
	buf *b = r->b;
	if (kind != 'w')
		return 0;
	Collector__WorkflowDefinition *d =
		svc_decode(&collector__workflow_definition__descriptor, body, len);
	if (r->n++)
		buf_putc(b, ',');
	buf_putc(b, '{');
	put_str(b, "namespace", ns);
	put_str(b, "name", k);
	put_str(b, "id", d ? d->id : "");
	key(b, "tasks");
	buf_putc(b, '[');
	for (size_t i = 0; d && i < d->n_tasks; i++) {
		const Collector__Task *t = d->tasks[i];
		if (i)
			buf_putc(b, ',');
		buf_putc(b, '{');
		put_str(b, "id", t->id);
		put_str(b, "service", t->service ? t->service->service_name : "");
		put_str(b, "method", t->method_name);
		put_str(b, "continuation_id", t->continuation_id);
		key(b, "dependencies");
		buf_putc(b, '[');
		for (size_t k2 = 0; k2 < t->n_dependencies; k2++) {
			if (k2)
				buf_putc(b, ',');
			str(b, t->dependencies[k2]);
		}
		buf_puts(b, "]}");
	}
	buf_puts(b, "]}");
	if (d)
		collector__workflow_definition__free_unpacked(d, NULL);
	return b->failed || r->n >= WF_VIEW_ROWS;
}

/* "worker": the view without an engine says so, never fails. */
static bool no_worker(const svc_env *env, buf *b, const char *what, char *sum, size_t cap)
{
	if (env->worker)
		return false;
	key(b, what);
	buf_puts(b, "[],");
	key(b, "note");
	str(b, "the worker is not running on this node");
	snprintf(sum, cap, "the worker is not running on this node");
	return true;
}

int wf_view_workflows(const svc_env *env, const char *ns, buf *b, char *sum, size_t cap)
{
	if (no_worker(env, b, "workflows", sum, cap))
		return 0;
	wfstore *st = wf_engine_store(env->worker);
	int64_t counts[6];
	int rc = wfstore_wf_counts(st, ns, counts);
	key(b, "counts");
	buf_putc(b, '{');
	for (int k = 0; k < 6; k++) {
		if (k)
			buf_putc(b, ',');
		key(b, state_names[k]);
		num(b, counts[k]);
	}
	buf_puts(b, "},");
	key(b, "workflows");
	buf_putc(b, '[');
	rows r = {b, 0};
	int64_t last;
	if (!rc)
		rc = wfstore_wf_page(st, ns, 0, 0, WF_VIEW_ROWS, wf_row, &r, &last);
	buf_puts(b, "],");
	key(b, "definitions");
	buf_putc(b, '[');
	rows d = {b, 0};
	if (!rc)
		rc = wfstore_def_each(st, true, ns, def_row, &d);
	buf_putc(b, ']');
	int64_t total = 0;
	for (int k = 0; k < 6; k++)
		total += counts[k];
	snprintf(
		sum, cap,
		"%lld workflow(s) in %s: %lld running, %lld succeeded, %lld failed, %lld cancelled; "
		"%zu definition(s)",
		(long long)total, ns ? ns : "every namespace", (long long)counts[1],
		(long long)counts[2], (long long)counts[3], (long long)counts[4], d.n);
	return rc < 0 ? rc : 0;
}

static int exec_row(void *ctx, int64_t seq, const uint8_t *body, size_t len)
{
	(void)seq;
	rows *r = ctx;
	buf *b = r->b;
	Collector__Execution *x = svc_decode(&collector__execution__descriptor, body, len);
	if (!x)
		return 0;
	if (r->n++)
		buf_putc(b, ',');
	buf_putc(b, '{');
	put_str(b, "id", x->id);
	put_str(b, "workflow_id", x->workflow_id);
	put_str(b, "task_id", x->task_id);
	put_str(b, "namespace", x->namespace_);
	put_str(b, "method", x->method_name);
	put_str(b, "state", name_of(exec_names, x->state));
	put_num(b, "attempt", x->attempt_number);
	put_str(b, "executor_id", x->executor_id);
	put_str(b, "error", x->error ? x->error->message : "");
	end_object(b);
	collector__execution__free_unpacked(x, NULL);
	return b->failed;
}

int wf_view_executions(const svc_env *env, const char *ns, buf *b, char *sum, size_t cap)
{
	if (no_worker(env, b, "executions", sum, cap))
		return 0;
	key(b, "executions");
	buf_putc(b, '[');
	rows r = {b, 0};
	int rc = wfstore_exec_recent(wf_engine_store(env->worker), ns, WF_VIEW_ROWS, exec_row, &r);
	buf_putc(b, ']');
	snprintf(sum, cap, "the %zu most recent execution(s) in %s", r.n,
		 ns ? ns : "every namespace");
	return rc < 0 ? rc : 0;
}
