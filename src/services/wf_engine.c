#include "services/wf_engine.h"
#include "services/wf_engine_int.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/uuid.h"
#include "h2/status.h"
#include "services/strmap.h"
#include "services/wf_call.h"
#include "services/wf_def.h"
#include "store/store.h"

#define NS_PER_US 1000
#define INTERRUPTED "the node stopped while the call ran: retried as a new attempt"

int64_t eng_wall_us(void) { return clock_wall_ns() / NS_PER_US; }

wfstore *wf_engine_store(wf_engine *e) { return e->st; }
const wf_limits *wf_engine_limits(wf_engine *e) { return &e->lim; }

/* ---- definitions ---- */

static int def_key(char *out, size_t cap, char kind, const char *ns, const char *key)
{
	int n = snprintf(out, cap, "%c:%s/%s", kind, ns, key);
	return n > 0 && (size_t)n < cap ? n : -1;
}

def_entry *eng_def_find(wf_engine *e, char kind, const char *ns, const char *key)
{
	char k[400];
	int n = def_key(k, sizeof(k), kind, ns, key);
	return n < 0 ? NULL : strmap_get(&e->defs, k, (size_t)n);
}

static void def_free(def_entry *d)
{
	if (!d)
		return;
	if (d->wf)
		collector__workflow_definition__free_unpacked(d->wf, NULL);
	if (d->cont)
		collector__continuation__free_unpacked(d->cont, NULL);
	mem_free(d->ns);
	mem_free(d->body);
	mem_free(d);
}

/* Keeps body (copied) as the definition of kind/ns/key, replacing the one before. */
int eng_def_keep(wf_engine *e, char kind, const char *ns, const char *key, const uint8_t *body,
		 size_t len)
{
	char k[400];
	int n = def_key(k, sizeof(k), kind, ns, key);
	def_entry *d = mem_calloc(1, sizeof(*d));
	if (n < 0 || !d) {
		mem_free(d);
		return -ENOMEM;
	}
	d->kind = kind;
	size_t nslen = strlen(ns);
	d->ns = mem_alloc(nslen + 1);
	d->body = mem_alloc(len ? len : 1);
	if (d->ns)
		memcpy(d->ns, ns, nslen + 1);
	if (d->body && len)
		memcpy(d->body, body, len);
	d->len = len;
	if (kind == 'w')
		d->wf = svc_decode(&collector__workflow_definition__descriptor, body, len);
	else
		d->cont = svc_decode(&collector__continuation__descriptor, body, len);
	void *old = NULL;
	if (!d->ns || !d->body || !(d->wf || d->cont) ||
	    strmap_put(&e->defs, k, (size_t)n, d, &old)) {
		def_free(d);
		return -ENOMEM;
	}
	if (old)
		def_free(old);
	else
		e->ndefs++;
	return 0;
}

const Collector__Continuation *eng_cont_of(void *ctx, const char *ns, const char *id)
{
	def_entry *d = eng_def_find(ctx, 'c', ns, id);
	return d ? d->cont : NULL;
}

/* ---- workflows in memory ---- */

void eng_wf_free(wf *w)
{
	if (!w)
		return;
	for (size_t i = 0; w->def && i < w->def->n_tasks; i++)
		if (w->tasks && w->tasks[i].output)
			google__protobuf__any__free_unpacked(w->tasks[i].output, NULL);
	if (w->def)
		collector__workflow_definition__free_unpacked(w->def, NULL);
	if (w->input)
		google__protobuf__any__free_unpacked(w->input, NULL);
	mem_free(w->tasks);
	mem_free(w->ns);
	mem_free(w);
}

/* A workflow from its stored parts; NULL when they do not decode or memory runs out. */
wf *eng_wf_make(const char *id, const char *ns, const uint8_t *def, size_t def_len,
		const uint8_t *input, size_t input_len)
{
	wf *w = mem_calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	snprintf(w->id, sizeof(w->id), "%s", id);
	size_t n = strlen(ns);
	w->ns = mem_alloc(n + 1);
	if (w->ns)
		memcpy(w->ns, ns, n + 1);
	w->def = svc_decode(&collector__workflow_definition__descriptor, def, def_len);
	w->input = svc_decode(&google__protobuf__any__descriptor, input, input_len);
	w->tasks = w->def ? mem_calloc(w->def->n_tasks + 1, sizeof(*w->tasks)) : NULL;
	if (!w->ns || !w->def || !w->input || !w->tasks) {
		eng_wf_free(w);
		return NULL;
	}
	return w;
}

void eng_mark_dirty(wf_engine *e, wf *w)
{
	if (!w->dirty) {
		w->dirty = true;
		w->next_dirty = e->dirty;
		e->dirty = w;
	}
}

void eng_forget(wf_engine *e, wf *w)
{
	strmap_del(&e->active, w->id, strlen(w->id));
	if (w->dirty) { /* unlink from the dirty list */
		for (wf **p = &e->dirty; *p; p = &(*p)->next_dirty)
			if (*p == w) {
				*p = w->next_dirty;
				break;
			}
	}
	eng_wf_free(w);
}

/* ---- what is written ---- */

static int put_task(wf_engine *e, wf *w, size_t i)
{
	task_state *t = &w->tasks[i];
	uint8_t small[512], *out = NULL;
	size_t len = 0;
	if (t->output) {
		len = google__protobuf__any__get_packed_size(t->output);
		out = len <= sizeof(small) ? small : mem_alloc(len);
		if (!out)
			return -ENOMEM;
		google__protobuf__any__pack(t->output, out);
	}
	wfstore_task row = {.wf_id = w->id,
			    .task_id = w->def->tasks[i]->id,
			    .state = t->state,
			    .attempt = t->attempt,
			    .iteration = t->iteration,
			    .exec_id = t->exec_id,
			    .output = out,
			    .output_len = len,
			    .next_at_us = t->next_at_us};
	int rc = wfstore_task_put(e->st, &row);
	if (out != small)
		mem_free(out);
	return rc;
}

/* Records execution t->exec_id of task i as it stands. */
static int put_exec(wf_engine *e, wf *w, size_t i, int state, int grpc_code, const char *why,
		    const Google__Protobuf__Any *output, const char *executor)
{
	task_state *t = &w->tasks[i];
	wf_call *c = t->call;
	Collector__ServiceTypeRef svc = COLLECTOR__SERVICE_TYPE_REF__INIT;
	svc.namespace_ = w->ns;
	svc.service_name = c ? c->service : "";
	Google__Protobuf__Any in = GOOGLE__PROTOBUF__ANY__INIT;
	if (c) {
		in.type_url = c->type_url;
		in.value.data = c->input;
		in.value.len = c->input_len;
	}
	Collector__Status err = COLLECTOR__STATUS__INIT;
	Collector__Status__DetailsEntry grpc = COLLECTOR__STATUS__DETAILS_ENTRY__INIT,
					*details[1] = {&grpc};
	char iteration[16];
	snprintf(iteration, sizeof(iteration), "%d", t->iteration);
	Collector__Metadata__LabelsEntry it = COLLECTOR__METADATA__LABELS_ENTRY__INIT,
					 *labels[1] = {&it};
	it.key = "iteration";
	it.value = iteration;
	Collector__Metadata meta = COLLECTOR__METADATA__INIT;
	meta.n_labels = 1;
	meta.labels = labels;
	Collector__Execution x = COLLECTOR__EXECUTION__INIT;
	x.id = t->exec_id;
	x.workflow_id = w->id;
	x.task_id = w->def->tasks[i]->id;
	x.namespace_ = w->ns;
	x.service = &svc;
	x.method_name = c ? c->method : "";
	x.input = c ? &in : NULL;
	x.output = (Google__Protobuf__Any *)output;
	x.state = state;
	x.attempt_number = t->attempt;
	x.executor_id = (char *)(executor ? executor : "");
	x.metadata = &meta;
	if (grpc_code != GRPC_OK) {
		err.code = svc_status_code(grpc_code);
		err.message = (char *)(why ? why : "");
		grpc.key = "grpc_code";
		grpc.value = (char *)grpc_code_name(grpc_code);
		err.n_details = 1;
		err.details = details;
		x.error = &err;
	}
	size_t len = collector__execution__get_packed_size(&x);
	uint8_t *b = mem_alloc(len ? len : 1);
	if (!b)
		return -ENOMEM;
	collector__execution__pack(&x, b);
	int rc = wfstore_exec_put(e->st, t->exec_id, w->id, w->ns, state, b, len);
	mem_free(b);
	return rc;
}

uint8_t *eng_pack_any(const Google__Protobuf__Any *a, size_t *len)
{
	*len = a ? google__protobuf__any__get_packed_size(a) : 0;
	uint8_t *b = mem_alloc(*len ? *len : 1);
	if (b && a)
		google__protobuf__any__pack(a, b);
	return b;
}

void eng_cancel_later(wf_engine *e, const char *exec_id)
{
	if (e->ncancel == e->cancel_cap) {
		size_t cap = e->cancel_cap ? e->cancel_cap * 2 : 16;
		void *p = mem_realloc(e->to_cancel, cap * sizeof(*e->to_cancel));
		if (!p)
			return; /* its outcome is ignored when it comes */
		e->to_cancel = p;
		e->cancel_cap = cap;
	}
	snprintf(e->to_cancel[e->ncancel++], UUID_STR_LEN, "%s", exec_id);
}

/* Ends w in state (FAILED or CANCELLED) for why: calls in flight are cancelled and recorded
 * so, tasks waiting for a retry are cancelled. */
int eng_end_workflow(wf_engine *e, wf *w, int state, const char *why)
{
	int rc = 0;
	for (size_t i = 0; !rc && i < w->def->n_tasks; i++) {
		task_state *t = &w->tasks[i];
		if (t->state == COLLECTOR__EXECUTION_STATE__EXECUTION_RUNNING) {
			rc = put_exec(e, w, i, COLLECTOR__EXECUTION_STATE__EXECUTION_CANCELLED,
				      GRPC_CANCELLED, why, NULL, NULL);
			eng_cancel_later(e, t->exec_id);
			t->call = NULL;
		}
		if (t->state == COLLECTOR__EXECUTION_STATE__EXECUTION_RUNNING ||
		    t->state == COLLECTOR__EXECUTION_STATE__EXECUTION_RETRYING) {
			t->state = COLLECTOR__EXECUTION_STATE__EXECUTION_CANCELLED;
			if (!rc)
				rc = put_task(e, w, i);
		}
	}
	if (!rc)
		rc = wfstore_wf_update(e->st, w->id, state, NULL, 0, why, eng_wall_us());
	eng_forget(e, w);
	return rc;
}

static int succeed_workflow(wf_engine *e, wf *w)
{
	size_t k = wf_def_output_task(w->def);
	size_t len;
	uint8_t *out = eng_pack_any(w->tasks[k].output, &len);
	int rc =
		out ? wfstore_wf_update(e->st, w->id, COLLECTOR__WORKFLOW_STATE__WORKFLOW_SUCCEEDED,
					out, len, "", eng_wall_us())
		    : -ENOMEM;
	mem_free(out);
	eng_forget(e, w);
	return rc;
}

/* ---- starting a task's call ---- */

typedef struct outputs_ctx {
	wf *w;
} outputs_ctx;

static const Google__Protobuf__Any *output_of(void *ctx, const char *task, size_t len)
{
	wf *w = ctx;
	long k = wf_def_task(w->def, task, len);
	return k < 0 ? NULL : w->tasks[k].output;
}

/* The input of task i's next call: its input_config built, or the default (the workflow's
 * input, or its last dependency's output), or for a continuation's iteration the task's
 * last output. 0, or -1 with why. */
static int task_input(wf_engine *e, wf *w, size_t i, const tp_method *m, buf *bytes,
		      const char **url, char *urlbuf, size_t urlcap, char *why, size_t cap)
{
	const Collector__Task *t = w->def->tasks[i];
	task_state *ts = &w->tasks[i];
	const Google__Protobuf__Any *from = NULL;
	if (ts->iteration > 0) {
		from = ts->output;
	} else if (t->input_config) {
		snprintf(urlbuf, urlcap, SVC_TYPE_URL_PREFIX "%s",
			 tp_message_get(m->input)->full_name);
		*url = urlbuf;
		return wf_build_input(e->env->types, w->ns, t->input_config, w->input, output_of, w,
				      m->input, bytes, why, cap);
	} else if (!t->n_dependencies) {
		from = w->input;
	} else {
		const char *dep = t->dependencies[t->n_dependencies - 1];
		from = output_of(w, dep, strlen(dep));
	}
	if (!from) {
		snprintf(why, cap, "no input for the call");
		return -1;
	}
	*url = from->type_url ? from->type_url : "";
	return buf_append(bytes, from->value.data, from->value.len) ? -1 : 0;
}

/* Starts the next call of task i (its first, a retry, or a continuation's iteration).
 * A call that cannot be made fails the workflow; 0 unless the store failed. */
static int start_task(wf_engine *e, wf *w, size_t i)
{
	const Collector__Task *t = w->def->tasks[i];
	task_state *ts = &w->tasks[i];
	char why[600];
	const Collector__ServiceTypeRef *svc = t->service;
	const char *method = t->method_name;
	if (ts->iteration > 0) {
		const Collector__Continuation *c = eng_cont_of(e, w->ns, t->continuation_id);
		if (!c) {
			snprintf(why, sizeof(why),
				 "task %s: continuation %s is no longer registered", t->id,
				 t->continuation_id);
			return eng_end_workflow(e, w, COLLECTOR__WORKFLOW_STATE__WORKFLOW_FAILED,
						why);
		}
		svc = c->service;
		method = c->method_name;
	}
	if ((size_t)w->nexec >= e->lim.max_history) {
		snprintf(why, sizeof(why),
			 "task %s: the workflow made %lld executions, the most one may keep "
			 "(--workflow-max-history)",
			 t->id, (long long)w->nexec);
		return eng_end_workflow(e, w, COLLECTOR__WORKFLOW_STATE__WORKFLOW_FAILED, why);
	}
	const tp_method *m = wf_method_find(e->env, w->ns, svc, method, why, sizeof(why));
	buf in = BUF_INIT;
	const char *url = "";
	char urlbuf[600];
	wf_call *c = NULL;
	if (m && !task_input(e, w, i, m, &in, &url, urlbuf, sizeof(urlbuf), why, sizeof(why)))
		c = wf_call_new(w->ns, svc->service_name, method, url, in.data, in.len);
	buf_free(&in);
	if (!c) {
		char msg[800];
		snprintf(msg, sizeof(msg), "task %s: %s", t->id, why);
		return eng_end_workflow(e, w, COLLECTOR__WORKFLOW_STATE__WORKFLOW_FAILED, msg);
	}
	if (uuid7_make(c->exec_id)) {
		wf_call_free(c);
		return -EIO;
	}
	snprintf(c->wf_id, sizeof(c->wf_id), "%s", w->id);
	c->task = i;
	c->attempt = ts->attempt;
	c->timeout_ns = e->lim.task_timeout_ns;
	snprintf(ts->exec_id, sizeof(ts->exec_id), "%s", c->exec_id);
	ts->state = COLLECTOR__EXECUTION_STATE__EXECUTION_RUNNING;
	ts->call = c;
	w->running++;
	w->nexec++;
	e->running++;
	c->next = e->to_post;
	e->to_post = c;
	int rc = put_exec(e, w, i, COLLECTOR__EXECUTION_STATE__EXECUTION_RUNNING, GRPC_OK, NULL,
			  NULL, NULL);
	return rc ? rc : put_task(e, w, i);
}

static bool deps_done(const wf *w, size_t i)
{
	const Collector__Task *t = w->def->tasks[i];
	for (size_t k = 0; k < t->n_dependencies; k++) {
		long d = wf_def_task(w->def, t->dependencies[k], strlen(t->dependencies[k]));
		if (d < 0 || w->tasks[d].state != COLLECTOR__EXECUTION_STATE__EXECUTION_SUCCEEDED)
			return false;
	}
	return true;
}

/* Moves w on: starts the tasks that may run now (within the caps), or ends it. */
static int advance(wf_engine *e, wf *w, int64_t now)
{
	size_t n = w->def->n_tasks, done = 0;
	for (size_t i = 0; i < n; i++)
		if (w->tasks[i].state == COLLECTOR__EXECUTION_STATE__EXECUTION_SUCCEEDED)
			done++;
	if (done == n)
		return succeed_workflow(e, w);
	w->blocked = false;
	if (w->paused)
		return 0;
	for (size_t i = 0; i < n; i++) {
		task_state *t = &w->tasks[i];
		bool ready = (t->state == COLLECTOR__EXECUTION_STATE__EXECUTION_PENDING &&
			      deps_done(w, i)) ||
			     (t->state == COLLECTOR__EXECUTION_STATE__EXECUTION_RETRYING &&
			      t->next_at_us <= now);
		if (!ready)
			continue;
		if (w->running >= e->lim.per_workflow)
			break; /* a call of its own ends first: it is looked at again then */
		if (e->running >= e->lim.max_running) {
			w->blocked = e->any_blocked = true;
			break;
		}
		if (t->state == COLLECTOR__EXECUTION_STATE__EXECUTION_PENDING && !t->attempt)
			t->attempt = 1;
		char id[UUID_STR_LEN];
		memcpy(id, w->id, sizeof(id));
		int rc = start_task(e, w, i);
		if (rc || !strmap_get(&e->active, id, strlen(id)))
			return rc; /* failed, or the workflow ended (w is gone) */
	}
	return 0;
}

/* ---- outcomes ---- */

static bool retryable(int code, const Collector__RetryPolicy *p)
{
	switch (code) {
	case GRPC_UNAVAILABLE:
	case GRPC_DEADLINE_EXCEEDED:
	case GRPC_RESOURCE_EXHAUSTED:
	case GRPC_ABORTED:
		return true;
	case GRPC_INTERNAL:
		return !(p && p->do_not_retry_internal);
	default:
		return false;
	}
}

/* The delay before attempt `next` (2 or more): initial * multiplier^(next-2), at most the
 * maximum, with +-20% jitter so that retries of many workflows do not fall together. */
static int64_t retry_delay_us(const Collector__RetryPolicy *p, int next)
{
	double initial = p ? p->initial_delay_seconds : 1;
	double mult = p && p->backoff_multiplier > 0 ? p->backoff_multiplier : 2;
	double max = p && p->max_delay_seconds > 0 ? p->max_delay_seconds : 300;
	double d = initial * pow(mult, next - 2);
	if (d > max)
		d = max;
	uint16_t r = 0;
	if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != sizeof(r))
		r = 32768;
	d *= 0.8 + 0.4 * (r / 65535.0);
	return (int64_t)(d * 1e6);
}

static int max_attempts(const Collector__RetryPolicy *p)
{
	return p && p->max_attempts > 0 ? p->max_attempts : WF_DEFAULT_ATTEMPTS;
}

/* Task i failed with code: a retry when the policy allows, else the workflow fails. */
static int task_failed(wf_engine *e, wf *w, size_t i, int code, const char *msg, int64_t now)
{
	const Collector__Task *t = w->def->tasks[i];
	task_state *ts = &w->tasks[i];
	if (retryable(code, t->retry_policy) && ts->attempt < max_attempts(t->retry_policy)) {
		ts->attempt++;
		ts->state = COLLECTOR__EXECUTION_STATE__EXECUTION_RETRYING;
		ts->next_at_us = now + retry_delay_us(t->retry_policy, ts->attempt);
		if (ts->next_at_us < e->next_due_us)
			e->next_due_us = ts->next_at_us;
		return put_task(e, w, i);
	}
	ts->state = COLLECTOR__EXECUTION_STATE__EXECUTION_FAILED;
	int rc = put_task(e, w, i);
	char why[700];
	snprintf(why, sizeof(why), "task %s failed after %d attempt(s): %s: %s", t->id, ts->attempt,
		 grpc_code_name(code), msg);
	return rc ? rc : eng_end_workflow(e, w, COLLECTOR__WORKFLOW_STATE__WORKFLOW_FAILED, why);
}

/* Task i's call succeeded: its output kept; with a continuation whose condition holds, the
 * next iteration is due, else the task is done. */
static int task_succeeded(wf_engine *e, wf *w, size_t i, Google__Protobuf__Any *out)
{
	const Collector__Task *t = w->def->tasks[i];
	task_state *ts = &w->tasks[i];
	if (ts->output)
		google__protobuf__any__free_unpacked(ts->output, NULL);
	ts->output = out;
	ts->state = COLLECTOR__EXECUTION_STATE__EXECUTION_SUCCEEDED;
	if (t->continuation_id && *t->continuation_id) {
		const Collector__Continuation *c = eng_cont_of(e, w->ns, t->continuation_id);
		int max = c && c->max_iterations > 0 ? c->max_iterations : WF_DEFAULT_ITERATIONS;
		char why[600];
		int holds = c ? wf_cond_eval(e->env->types, w->ns, c->loop_condition, out, why,
					     sizeof(why))
			      : 0;
		if (holds < 0) {
			char msg[700];
			snprintf(msg, sizeof(msg), "task %s: loop_condition: %s", t->id, why);
			ts->state = COLLECTOR__EXECUTION_STATE__EXECUTION_FAILED;
			int rc = put_task(e, w, i);
			return rc ? rc
				  : eng_end_workflow(
					    e, w, COLLECTOR__WORKFLOW_STATE__WORKFLOW_FAILED, msg);
		}
		if (holds && ts->iteration < max) {
			ts->iteration++;
			ts->attempt = 1;
			ts->state = COLLECTOR__EXECUTION_STATE__EXECUTION_PENDING;
		}
	}
	return put_task(e, w, i);
}

/* A call came back. Outcomes of calls the workflow no longer waits for (it ended, was
 * cancelled, or the node restarted since) are dropped. */
static int handle_result(wf_engine *e, wf_call *c, int64_t now)
{
	e->running--;
	wf *w = strmap_get(&e->active, c->wf_id, strlen(c->wf_id));
	task_state *ts = w && c->task < w->def->n_tasks ? &w->tasks[c->task] : NULL;
	if (!ts || ts->call != c || ts->state != COLLECTOR__EXECUTION_STATE__EXECUTION_RUNNING)
		return 0;
	w->running--;
	eng_mark_dirty(e, w);
	int rc;
	if (c->code == GRPC_OK) {
		Google__Protobuf__Any *out = mem_calloc(1, sizeof(*out));
		char *url = NULL;
		uint8_t *bytes = NULL;
		if (out) {
			google__protobuf__any__init(out);
			/* The Any takes the call's buffers (freed with it by free_unpacked). */
			url = c->out_url;
			bytes = c->out;
			c->out_url = NULL;
			c->out = NULL;
			out->type_url = url;
			out->value.data = bytes;
			out->value.len = c->out_len;
		}
		rc = out ? put_exec(e, w, c->task, COLLECTOR__EXECUTION_STATE__EXECUTION_SUCCEEDED,
				    GRPC_OK, NULL, out, c->handled_by)
			 : -ENOMEM;
		ts->call = NULL;
		if (rc) {
			if (out)
				google__protobuf__any__free_unpacked(out, NULL);
			return rc;
		}
		return task_succeeded(e, w, c->task, out);
	}
	rc = put_exec(e, w, c->task, COLLECTOR__EXECUTION_STATE__EXECUTION_FAILED, c->code, c->msg,
		      NULL, c->handled_by);
	ts->call = NULL;
	return rc ? rc : task_failed(e, w, c->task, c->code, c->msg, now);
}

void wf_engine_submit(wf_engine *e, wf_req *r)
{
	r->next = NULL;
	pthread_mutex_lock(&e->mu);
	bool refused = e->stopping;
	if (!refused) {
		if (e->reqs_tail)
			e->reqs_tail->next = r;
		else
			e->reqs = r;
		e->reqs_tail = r;
		pthread_cond_signal(&e->cv);
	}
	pthread_mutex_unlock(&e->mu);
	if (refused) {
		wf_req_fail(r, GRPC_UNAVAILABLE, "the node is stopping");
		wf_req_finish(r);
	}
}

/* Reactor thread: a call came back. */
static void call_came_back(void *ctx, wf_call *c)
{
	wf_engine *e = ctx;
	pthread_mutex_lock(&e->mu);
	c->next = e->results;
	e->results = c;
	pthread_cond_signal(&e->cv);
	pthread_mutex_unlock(&e->mu);
}

/* ---- reading back (start-up, and after a commit that failed) ---- */

typedef struct load_ctx {
	wf_engine *e;
	wf *w;
	int rc;
} load_ctx;

static int load_task(void *ctx, const wfstore_task *t)
{
	load_ctx *l = ctx;
	wf *w = l->w;
	long i = wf_def_task(w->def, t->task_id, strlen(t->task_id));
	if (i < 0)
		return 0;
	task_state *ts = &w->tasks[i];
	ts->state = t->state;
	ts->attempt = t->attempt;
	ts->iteration = t->iteration;
	ts->next_at_us = t->next_at_us;
	snprintf(ts->exec_id, sizeof(ts->exec_id), "%s", t->exec_id);
	if (t->output && !(ts->output = svc_decode(&google__protobuf__any__descriptor, t->output,
						   t->output_len)))
		return l->rc = -ENOMEM;
	return 0;
}

typedef struct exec_mark {
	wf_engine *e;
	const char *wf_id, *ns;
} exec_mark;

/* Rewrites a stored execution as failed by the stop, keeping what it called with. */
static int mark_interrupted(void *ctx, int64_t seq, const uint8_t *body, size_t len)
{
	(void)seq;
	exec_mark *m = ctx;
	Collector__Execution *x = svc_decode(&collector__execution__descriptor, body, len);
	if (!x)
		return -ENOMEM;
	Collector__Status err = COLLECTOR__STATUS__INIT;
	err.code = svc_status_code(GRPC_UNAVAILABLE);
	err.message = INTERRUPTED;
	Collector__Status *old = x->error;
	x->error = &err;
	x->state = COLLECTOR__EXECUTION_STATE__EXECUTION_FAILED;
	size_t n = collector__execution__get_packed_size(x);
	uint8_t *b = mem_alloc(n ? n : 1);
	int rc = b ? 0 : -ENOMEM;
	if (b) {
		collector__execution__pack(x, b);
		rc = wfstore_exec_put(m->e->st, x->id, m->wf_id, m->ns, x->state, b, n);
	}
	x->error = old;
	collector__execution__free_unpacked(x, NULL);
	mem_free(b);
	return rc;
}

/* A call that was in flight when the node stopped: recorded failed, tried again. */
static int interrupted(wf_engine *e, wf *w, size_t i, int64_t now)
{
	task_state *ts = &w->tasks[i];
	exec_mark m = {e, w->id, w->ns};
	int rc = wfstore_exec_get(e->st, ts->exec_id, mark_interrupted, &m);
	if (rc == -ENOENT)
		rc = 0;
	return rc ? rc : task_failed(e, w, i, GRPC_UNAVAILABLE, INTERRUPTED, now);
}

static int load_wf(void *ctx, const wfstore_wf *row)
{
	load_ctx *l = ctx;
	wf *w = eng_wf_make(row->id, row->ns, row->def, row->def_len, row->input, row->input_len);
	if (!w)
		return l->rc = -ENOMEM;
	l->w = w;
	w->paused = row->state == COLLECTOR__WORKFLOW_STATE__WORKFLOW_PAUSED;
	int rc = wfstore_task_each(l->e->st, false, w->id, load_task, l);
	if (!rc)
		rc = l->rc;
	if (!rc)
		rc = wfstore_exec_count(l->e->st, w->id, &w->nexec);
	if (!rc)
		rc = strmap_put(&l->e->active, w->id, strlen(w->id), w, NULL);
	if (rc) {
		eng_wf_free(w);
		return l->rc = rc;
	}
	eng_mark_dirty(l->e, w);
	return 0;
}

static int load_def(void *ctx, char kind, const char *ns, const char *key, const uint8_t *body,
		    size_t len)
{
	return eng_def_keep(ctx, kind, ns, key, body, len);
}

static void forget_all(wf_engine *e)
{
	while (e->active.used) {
		for (size_t i = 0; i < e->active.cap; i++)
			if (e->active.slots[i].key) {
				eng_forget(e, e->active.slots[i].value);
				break;
			}
	}
	e->dirty = NULL;
}

/* Reads the running workflows back; calls that were in flight become new attempts. */
static int recover(wf_engine *e)
{
	forget_all(e);
	load_ctx l = {.e = e};
	int rc = wfstore_wf_each_in_state(e->st, COLLECTOR__WORKFLOW_STATE__WORKFLOW_RUNNING,
					  load_wf, &l);
	if (!rc && !l.rc)
		rc = wfstore_wf_each_in_state(e->st, COLLECTOR__WORKFLOW_STATE__WORKFLOW_PAUSED,
					      load_wf, &l);
	if (rc || l.rc)
		return rc ? rc : l.rc;
	int64_t now = eng_wall_us();
	e->next_due_us = INT64_MAX;
	if ((rc = wfstore_begin(e->st)))
		return rc;
	for (wf *w = e->dirty, *next; !rc && w; w = next) {
		next = w->next_dirty;
		char id[UUID_STR_LEN];
		memcpy(id, w->id, sizeof(id));
		for (size_t i = 0; !rc && i < w->def->n_tasks; i++) {
			task_state *ts = &w->tasks[i];
			if (ts->state == COLLECTOR__EXECUTION_STATE__EXECUTION_RUNNING) {
				rc = interrupted(e, w, i, now);
				if (!strmap_get(&e->active, id, strlen(id)))
					break; /* it failed for good: w is gone */
			} else if (ts->state == COLLECTOR__EXECUTION_STATE__EXECUTION_RETRYING &&
				   ts->next_at_us < e->next_due_us)
				e->next_due_us = ts->next_at_us;
		}
	}
	if (!rc)
		rc = wfstore_commit(e->st);
	if (rc)
		wfstore_rollback(e->st);
	return rc;
}

/* ---- the engine's thread ---- */

/* Marks dirty every workflow with a retry due by now, and finds the next one due. */
static void timers_due(wf_engine *e, int64_t now)
{
	e->next_due_us = INT64_MAX;
	for (size_t s = 0; s < e->active.cap; s++) {
		wf *w = e->active.slots[s].key ? e->active.slots[s].value : NULL;
		for (size_t i = 0; w && i < w->def->n_tasks; i++) {
			task_state *t = &w->tasks[i];
			if (t->state != COLLECTOR__EXECUTION_STATE__EXECUTION_RETRYING)
				continue;
			if (t->next_at_us <= now)
				eng_mark_dirty(e, w);
			else if (t->next_at_us < e->next_due_us)
				e->next_due_us = t->next_at_us;
		}
	}
}

/* Workflows that waited for the node's cap on calls in flight may go on. */
static void unblock(wf_engine *e)
{
	if (!e->any_blocked || e->running >= e->lim.max_running)
		return;
	e->any_blocked = false;
	for (size_t s = 0; s < e->active.cap; s++) {
		wf *w = e->active.slots[s].key ? e->active.slots[s].value : NULL;
		if (w && w->blocked)
			eng_mark_dirty(e, w);
	}
}

/* Ended workflows past their retention go, a batch per step (short transactions), checked
 * every tenth of the retention (at most a minute). */
#define SWEEP_BATCH 1000
static int sweep(wf_engine *e, int64_t now)
{
	int64_t n = 0;
	int rc = wfstore_wf_delete_ended_before(e->st, now - e->lim.retention_us, SWEEP_BATCH, &n);
	int64_t every = e->lim.retention_us / 10;
	if (every > 60 * 1000000LL)
		every = 60 * 1000000LL;
	e->next_sweep_us = n == SWEEP_BATCH ? now : now + every;
	return rc;
}

/* When the thread has something to do without being told: a retry, or a sweep. */
static int64_t next_wake(const wf_engine *e)
{
	return e->next_due_us < e->next_sweep_us ? e->next_due_us : e->next_sweep_us;
}

/* Applies what arrived in one transaction; what it acts on waits for the commit. */
static int apply(wf_engine *e, wf_req *reqs, wf_call *results)
{
	int64_t now = eng_wall_us();
	int rc = wfstore_begin(e->st);
	for (wf_req *r = reqs; !rc && r; r = r->next)
		rc = eng_handle_req(e, r, now);
	for (wf_call *c = results; !rc && c; c = c->next)
		rc = handle_result(e, c, now);
	if (!rc && now >= e->next_due_us)
		timers_due(e, now);
	if (!rc && now >= e->next_sweep_us)
		rc = sweep(e, now);
	unblock(e);
	wf *w;
	while (!rc && (w = e->dirty)) {
		e->dirty = w->next_dirty;
		w->dirty = false;
		rc = advance(e, w, now);
	}
	if (!rc)
		rc = wfstore_commit(e->st);
	return rc;
}

static void step(wf_engine *e, wf_req *reqs, wf_call *results)
{
	int rc = apply(e, reqs, results);
	if (rc) {
		/* Nothing of this step happened: the state is read back as committed, and the
		 * calls made in it are dropped (a retry makes them again). */
		log_error("worker: the workflow store failed (%s): reading its state back",
			  store_err_msg());
		wfstore_rollback(e->st);
		for (wf_call *c = e->to_post, *next; c; c = next) {
			next = c->next;
			e->running--;
			wf_call_free(c);
		}
		e->to_post = NULL;
		e->ncancel = 0;
		for (wf_req *r = reqs; r; r = r->next)
			wf_req_fail(r, GRPC_UNAVAILABLE, "the workflow store failed: %s",
				    store_err_msg());
		if (recover(e))
			log_error("worker: the workflow store cannot be read back: %s",
				  store_err_msg());
	}
	for (wf_call *c = results, *next; c; c = next) {
		next = c->next;
		wf_call_free(c);
	}
	/* Committed: act. */
	for (size_t i = 0; i < e->ncancel; i++)
		wf_calls_cancel(e->calls, e->to_cancel[i]);
	e->ncancel = 0;
	wf_calls_post(e->calls, e->to_post);
	e->to_post = NULL;
	for (wf_req *r = reqs, *next; r; r = next) {
		next = r->next;
		wf_req_finish(r);
	}
}

static void *engine_main(void *arg)
{
	wf_engine *e = arg;
	pthread_mutex_lock(&e->mu);
	bool first = true;
	for (;;) {
		while (!e->stopping && !e->reqs && !e->results && !first &&
		       eng_wall_us() < next_wake(e)) {
			int64_t wake = next_wake(e);
			if (wake == INT64_MAX) {
				pthread_cond_wait(&e->cv, &e->mu);
			} else {
				struct timespec ts = {.tv_sec = wake / 1000000,
						      .tv_nsec = (wake % 1000000) * 1000};
				pthread_cond_timedwait(&e->cv, &e->mu, &ts);
			}
		}
		if (e->stopping)
			break;
		first = false;
		wf_req *reqs = e->reqs;
		wf_call *results = e->results;
		e->reqs = e->reqs_tail = NULL;
		e->results = NULL;
		pthread_mutex_unlock(&e->mu);
		step(e, reqs, results);
		pthread_mutex_lock(&e->mu);
	}
	/* Requests not taken are refused; what was taken was answered. */
	wf_req *reqs = e->reqs;
	e->reqs = e->reqs_tail = NULL;
	pthread_mutex_unlock(&e->mu);
	for (wf_req *r = reqs, *next; r; r = next) {
		next = r->next;
		wf_req_fail(r, GRPC_UNAVAILABLE, "the node is stopping");
		wf_req_finish(r);
	}
	return NULL;
}

/* ---- life ---- */

int wf_engine_open(const svc_env *env, const wf_limits *l, bool sync_normal, wf_engine **out,
		   char *err, size_t cap)
{
	wf_engine *e = mem_calloc(1, sizeof(*e));
	if (!e) {
		snprintf(err, cap, "out of memory");
		return -ENOMEM;
	}
	e->env = env;
	e->lim = *l;
	e->next_due_us = INT64_MAX;
	e->next_sweep_us = l->retention_us > 0 ? 0 : INT64_MAX;
	pthread_mutex_init(&e->mu, NULL);
	pthread_cond_init(&e->cv, NULL);
	char path[4096];
	snprintf(path, sizeof(path), "%s/system/workflows.db", store_data_dir(env->store));
	int rc = wfstore_open(path, sync_normal, &e->st);
	if (!rc)
		rc = wfstore_def_each(e->st, false, NULL, load_def, e);
	if (!rc)
		rc = recover(e);
	if (!rc && !(e->calls = wf_calls_new(env, call_came_back, e)))
		rc = -ENOMEM;
	if (rc) {
		snprintf(err, cap, "the workflow store %s: %s", path, store_err_msg());
		wf_engine_free(e);
		return rc;
	}
	*out = e;
	return 0;
}

void wf_engine_start(wf_engine *e, reactor *r)
{
	if (!e || !wf_calls_claim(e->calls, r))
		return;
	if (pthread_create(&e->thread, NULL, engine_main, e))
		log_error("worker: its thread cannot start: workflows do not run");
	else
		e->thread_started = true;
}

void wf_engine_drain(wf_engine *e, reactor *r)
{
	if (!e)
		return;
	pthread_mutex_lock(&e->mu);
	bool mine = e->thread_started && !e->stopping;
	if (mine) {
		e->stopping = true;
		pthread_cond_signal(&e->cv);
	}
	pthread_mutex_unlock(&e->mu);
	if (mine) {
		pthread_join(e->thread, NULL);
		e->thread_started = false;
	}
	wf_calls_drain(e->calls, r);
}

void wf_engine_free(wf_engine *e)
{
	if (!e)
		return;
	if (e->thread_started) {
		pthread_mutex_lock(&e->mu);
		e->stopping = true;
		pthread_cond_signal(&e->cv);
		pthread_mutex_unlock(&e->mu);
		pthread_join(e->thread, NULL);
	}
	forget_all(e);
	strmap_free(&e->active);
	for (size_t i = 0; i < e->defs.cap; i++)
		if (e->defs.slots[i].key)
			def_free(e->defs.slots[i].value);
	strmap_free(&e->defs);
	for (wf_call *c = e->results, *next; c; c = next) {
		next = c->next;
		wf_call_free(c);
	}
	for (wf_call *c = e->to_post, *next; c; c = next) {
		next = c->next;
		wf_call_free(c);
	}
	wf_calls_free(e->calls);
	wfstore_close(e->st);
	mem_free(e->to_cancel);
	pthread_cond_destroy(&e->cv);
	pthread_mutex_destroy(&e->mu);
	mem_free(e);
}
