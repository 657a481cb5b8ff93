#include "services/worker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "collector/worker.pb-c.h"
#include "services/wf_def.h"
#include "services/wf_engine.h"

#define WORKER "/collector.CollectiveWorker/"
#define PAGE_DEFAULT 50
#define PAGE_MAX 1000
#define HISTORY_TOKEN 'h'
#define LIST_TOKEN 'w'

/* A job of this service: the request, the namespace it means, and (for changes) what the
 * engine is asked. */
typedef struct wjob {
	svc_job j;
	const svc_env *env;
	const void *req;
	const char *ns;
	wf_req r;
} wjob;

static void wjob_release(svc_job *j) { mem_free(j); }

static void start_job(call *c, const void *req, const char *req_ns, void (*work)(svc_job *j),
		      void (*reply)(svc_job *j))
{
	const svc_env *env = call_ctx(c);
	wjob *w = mem_calloc(1, sizeof(*w));
	if (!w) {
		call_finish(c, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	w->j.work = work;
	w->j.reply = reply;
	w->j.release = wjob_release;
	w->env = env;
	w->req = req;
	w->ns = svc_namespace(c, env, req_ns);
	svc_job_run(env->pool, c, &w->j);
}

/* Work side: hands the request to the engine; the answer waits for its commit. */
static void submit(wjob *w)
{
	if (!w->env->worker) {
		svc_job_fail(&w->j, GRPC_UNAVAILABLE, "the worker is not running on this node");
		return;
	}
	w->r.j = &w->j;
	w->r.ns = w->ns;
	svc_job_defer(&w->j);
	wf_engine_submit(w->env->worker, &w->r);
}

static Collector__Status ok_status = COLLECTOR__STATUS__INIT;

/* ---- changes ---- */

static void register_work(svc_job *j)
{
	wjob *w = (wjob *)j;
	const Collector__RegisterWorkflowRequest *req = w->req;
	if (!req->workflow) {
		svc_job_fail(j, GRPC_INVALID_ARGUMENT, "workflow is required");
		return;
	}
	if (!svc_check_user_ns(j, w->ns))
		return;
	w->r.kind = WF_REQ_REGISTER;
	w->r.def = req->workflow;
	submit(w);
}

static void register_reply(svc_job *j)
{
	wjob *w = (wjob *)j;
	Collector__RegisterWorkflowResponse resp = COLLECTOR__REGISTER_WORKFLOW_RESPONSE__INIT;
	resp.status = &ok_status;
	resp.workflow_id = w->r.id;
	call_reply(j->c, &resp.base);
}

static void register_workflow(call *c, const ProtobufCMessage *msg)
{
	const Collector__RegisterWorkflowRequest *req = (const void *)msg;
	start_job(c, req, req->workflow ? req->workflow->namespace_ : NULL, register_work,
		  register_reply);
}

static void continuation_work(svc_job *j)
{
	wjob *w = (wjob *)j;
	const Collector__RegisterContinuationRequest *req = w->req;
	if (!req->continuation) {
		svc_job_fail(j, GRPC_INVALID_ARGUMENT, "continuation is required");
		return;
	}
	if (!svc_check_user_ns(j, w->ns))
		return;
	w->r.kind = WF_REQ_CONTINUATION;
	w->r.cont = req->continuation;
	submit(w);
}

static void continuation_reply(svc_job *j)
{
	wjob *w = (wjob *)j;
	Collector__RegisterContinuationResponse resp =
		COLLECTOR__REGISTER_CONTINUATION_RESPONSE__INIT;
	resp.status = &ok_status;
	resp.continuation_id = w->r.id;
	call_reply(j->c, &resp.base);
}

static void register_continuation(call *c, const ProtobufCMessage *msg)
{
	const Collector__RegisterContinuationRequest *req = (const void *)msg;
	start_job(c, req, req->continuation ? req->continuation->namespace_ : NULL,
		  continuation_work, continuation_reply);
}

static void start_work(svc_job *j)
{
	wjob *w = (wjob *)j;
	const Collector__StartWorkflowRequest *req = w->req;
	if (!svc_check_user_ns(j, w->ns))
		return;
	if (!req->workflow_name || !*req->workflow_name) {
		svc_job_fail(j, GRPC_INVALID_ARGUMENT, "workflow_name is required");
		return;
	}
	w->r.kind = WF_REQ_START;
	w->r.start = req;
	submit(w);
}

static void start_reply(svc_job *j)
{
	wjob *w = (wjob *)j;
	Collector__StartWorkflowResponse resp = COLLECTOR__START_WORKFLOW_RESPONSE__INIT;
	resp.status = &ok_status;
	resp.workflow_id = w->r.id;
	call_reply(j->c, &resp.base);
}

static void start_workflow(call *c, const ProtobufCMessage *msg)
{
	const Collector__StartWorkflowRequest *req = (const void *)msg;
	start_job(c, req, req->namespace_, start_work, start_reply);
}

static void cancel_work(svc_job *j)
{
	wjob *w = (wjob *)j;
	const Collector__CancelWorkflowRequest *req = w->req;
	if (!svc_check_user_ns(j, w->ns))
		return;
	if (!req->workflow_id || !*req->workflow_id) {
		svc_job_fail(j, GRPC_INVALID_ARGUMENT, "workflow_id is required");
		return;
	}
	w->r.kind = WF_REQ_CANCEL;
	w->r.wf_id = req->workflow_id;
	w->r.reason = req->reason;
	submit(w);
}

static void cancel_reply(svc_job *j)
{
	wjob *w = (wjob *)j;
	Collector__CancelWorkflowResponse resp = COLLECTOR__CANCEL_WORKFLOW_RESPONSE__INIT;
	resp.status = &ok_status;
	resp.state = w->r.state;
	call_reply(j->c, &resp.base);
}

static void cancel_workflow(call *c, const ProtobufCMessage *msg)
{
	const Collector__CancelWorkflowRequest *req = (const void *)msg;
	start_job(c, req, req->namespace_, cancel_work, cancel_reply);
}

static void pause_work(svc_job *j)
{
	wjob *w = (wjob *)j;
	const Collector__PauseWorkflowRequest *req = w->req;
	if (!svc_check_user_ns(j, w->ns))
		return;
	if (!req->workflow_id || !*req->workflow_id) {
		svc_job_fail(j, GRPC_INVALID_ARGUMENT, "workflow_id is required");
		return;
	}
	/* PauseWorkflow and ResumeWorkflow share this method's work. */
	bool pause = strstr(call_method(j->c)->path, "/PauseWorkflow") != NULL;
	w->r.kind = pause ? WF_REQ_PAUSE : WF_REQ_RESUME;
	w->r.wf_id = req->workflow_id;
	submit(w);
}

static void pause_reply(svc_job *j)
{
	wjob *w = (wjob *)j;
	Collector__PauseWorkflowResponse resp = COLLECTOR__PAUSE_WORKFLOW_RESPONSE__INIT;
	resp.status = &ok_status;
	resp.state = w->r.state;
	call_reply(j->c, &resp.base);
}

static void pause_workflow(call *c, const ProtobufCMessage *msg)
{
	const Collector__PauseWorkflowRequest *req = (const void *)msg;
	start_job(c, req, req->namespace_, pause_work, pause_reply);
}

/* ---- reads ---- */

/* Messages decoded from the store for one answer, freed with it. */
typedef struct held {
	ProtobufCMessage **m;
	size_t n, cap;
	void **mem;
	size_t nmem, memcap;
} held;

static void *hold(held *h, void *m)
{
	if (!m)
		return NULL;
	if (h->n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 16;
		void *p = mem_realloc(h->m, cap * sizeof(*h->m));
		if (!p) {
			protobuf_c_message_free_unpacked(m, NULL);
			return NULL;
		}
		h->m = p;
		h->cap = cap;
	}
	h->m[h->n++] = m;
	return m;
}

/* Memory for the answer (mem_calloc'd, freed with it). */
static void *hold_mem(held *h, size_t n)
{
	void *p = mem_calloc(1, n ? n : 1);
	if (!p)
		return NULL;
	if (h->nmem == h->memcap) {
		size_t cap = h->memcap ? h->memcap * 2 : 16;
		void *q = mem_realloc(h->mem, cap * sizeof(*h->mem));
		if (!q) {
			mem_free(p);
			return NULL;
		}
		h->mem = q;
		h->memcap = cap;
	}
	h->mem[h->nmem++] = p;
	return p;
}

static char *hold_str(held *h, const char *s)
{
	size_t n = strlen(s);
	char *d = hold_mem(h, n + 1);
	if (d)
		memcpy(d, s, n + 1);
	return d;
}

static void held_free(held *h)
{
	for (size_t i = 0; i < h->n; i++)
		protobuf_c_message_free_unpacked(h->m[i], NULL);
	for (size_t i = 0; i < h->nmem; i++)
		mem_free(h->mem[i]);
	mem_free(h->m);
	mem_free(h->mem);
}

static Google__Protobuf__Timestamp *timestamp(held *h, int64_t us)
{
	Google__Protobuf__Timestamp *t = hold_mem(h, sizeof(*t));
	if (t) {
		google__protobuf__timestamp__init(t);
		t->seconds = us / 1000000;
		t->nanos = (int32_t)(us % 1000000) * 1000;
	}
	return t;
}

/* Adds a label to m (in h's memory). */
static bool add_label(held *h, Collector__Metadata *m, const char *key, const char *value)
{
	Collector__Metadata__LabelsEntry **v = hold_mem(h, (m->n_labels + 1) * sizeof(*v)),
					 *e = hold_mem(h, sizeof(*e));
	if (!v || !e)
		return false;
	collector__metadata__labels_entry__init(e);
	e->key = hold_str(h, key);
	e->value = hold_str(h, value);
	if (m->n_labels)
		memcpy(v, m->labels, m->n_labels * sizeof(*v));
	v[m->n_labels++] = e;
	m->labels = v;
	return e->key && e->value;
}

/* An ActiveWorkflow of a stored row, without its task executions; NULL when out of
 * memory or the row does not decode. */
static Collector__ActiveWorkflow *workflow_of(held *h, const wfstore_wf *row,
					      Collector__WorkflowDefinition **def)
{
	Collector__ActiveWorkflow *a = hold_mem(h, sizeof(*a));
	if (!a)
		return NULL;
	collector__active_workflow__init(a);
	*def = hold(
		h, svc_decode(&collector__workflow_definition__descriptor, row->def, row->def_len));
	a->id = hold_str(h, row->id);
	a->namespace_ = hold_str(h, row->ns);
	a->state = row->state;
	a->input =
		hold(h, svc_decode(&google__protobuf__any__descriptor, row->input, row->input_len));
	if (row->output)
		a->current_output = hold(h, svc_decode(&google__protobuf__any__descriptor,
						       row->output, row->output_len));
	/* The stored Metadata and what is added to it, in a Metadata of h's memory (a decoded
	 * message is freed by protobuf-c: nothing of h's may hang from it). */
	Collector__Metadata *kept =
		hold(h, svc_decode(&collector__metadata__descriptor, row->meta, row->meta_len));
	a->metadata = hold_mem(h, sizeof(*a->metadata));
	if (!*def || !a->id || !a->namespace_ || !a->input || !kept || !a->metadata ||
	    (row->output && !a->current_output))
		return NULL;
	collector__metadata__init(a->metadata);
	a->metadata->n_labels = kept->n_labels;
	a->metadata->labels = kept->labels;
	a->workflow_definition_id = (*def)->id;
	a->metadata->updated_at = timestamp(h, row->updated_us);
	a->metadata->created_at = timestamp(h, row->created_us);
	if (!add_label(h, a->metadata, "workflow_name", row->name) ||
	    (*row->error && !add_label(h, a->metadata, "error", row->error)))
		return NULL;
	return a;
}

typedef struct status_ctx {
	wjob *w;
	held h;
	Collector__ActiveWorkflow *a;
	Collector__WorkflowDefinition *def;
	int rc;
} status_ctx;

static int status_row(void *ctx, const wfstore_wf *row)
{
	status_ctx *s = ctx;
	if (strcmp(row->ns, s->w->ns))
		return 0; /* another namespace's: not found from here */
	s->a = workflow_of(&s->h, row, &s->def);
	if (!s->a)
		return s->rc = -ENOMEM;
	/* Every task has an entry, PENDING until it has a row. */
	size_t n = s->def->n_tasks;
	Collector__ActiveWorkflow__TaskExecutionsEntry **v = hold_mem(&s->h, n * sizeof(*v));
	if (!v)
		return s->rc = -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		Collector__ActiveWorkflow__TaskExecutionsEntry *e = hold_mem(&s->h, sizeof(*e));
		Collector__TaskExecution *t = hold_mem(&s->h, sizeof(*t));
		if (!e || !t)
			return s->rc = -ENOMEM;
		collector__active_workflow__task_executions_entry__init(e);
		collector__task_execution__init(t);
		e->key = s->def->tasks[i]->id;
		t->task_id = s->def->tasks[i]->id;
		e->value = t;
		v[i] = e;
	}
	s->a->n_task_executions = n;
	s->a->task_executions = v;
	return 0;
}

static int status_task(void *ctx, const wfstore_task *row)
{
	status_ctx *s = ctx;
	long i = wf_def_task(s->def, row->task_id, strlen(row->task_id));
	if (i < 0)
		return 0;
	Collector__TaskExecution *t = s->a->task_executions[i]->value;
	t->execution_id = hold_str(&s->h, row->exec_id);
	t->state = row->state;
	t->attempt_number = row->attempt;
	t->metadata = hold_mem(&s->h, sizeof(*t->metadata));
	if (!t->execution_id || !t->metadata)
		return s->rc = -ENOMEM;
	collector__metadata__init(t->metadata);
	char v[32];
	snprintf(v, sizeof(v), "%d", row->iteration);
	bool ok = add_label(&s->h, t->metadata, "iteration", v);
	if (ok && row->state == COLLECTOR__EXECUTION_STATE__EXECUTION_RETRYING) {
		t->metadata->updated_at = timestamp(&s->h, row->next_at_us);
		snprintf(v, sizeof(v), "%lld", (long long)row->next_at_us);
		ok = add_label(&s->h, t->metadata, "next_attempt_at_us", v);
	}
	return ok ? 0 : (s->rc = -ENOMEM);
}

static void status_work(svc_job *j)
{
	wjob *w = (wjob *)j;
	const Collector__GetWorkflowStatusRequest *req = w->req;
	if (!svc_check_user_ns(j, w->ns))
		return;
	if (!w->env->worker) {
		svc_job_fail(j, GRPC_UNAVAILABLE, "the worker is not running on this node");
		return;
	}
	wfstore *st = wf_engine_store(w->env->worker);
	status_ctx s = {.w = w};
	const char *id = req->workflow_id ? req->workflow_id : "";
	int rc = wfstore_wf_get(st, true, id, status_row, &s);
	if (!rc && !s.rc && s.a)
		rc = wfstore_task_each(st, true, id, status_task, &s);
	if (rc == -ENOENT || (!rc && !s.rc && !s.a)) {
		svc_job_fail(j, GRPC_NOT_FOUND, "no workflow %.100s in namespace %s", id, w->ns);
	} else if (rc || s.rc) {
		svc_job_fail(j, GRPC_INTERNAL, "the workflow store: %s", store_err_msg());
	} else {
		Collector__GetWorkflowStatusResponse resp =
			COLLECTOR__GET_WORKFLOW_STATUS_RESPONSE__INIT;
		resp.status = &ok_status;
		resp.workflow = s.a;
		if (svc_job_answer(j, &resp.base))
			svc_job_fail(j, GRPC_RESOURCE_EXHAUSTED, "out of memory");
	}
	held_free(&s.h);
}

static void get_status(call *c, const ProtobufCMessage *msg)
{
	const Collector__GetWorkflowStatusRequest *req = (const void *)msg;
	start_job(c, req, req->namespace_, status_work, NULL);
}

/* Page tokens: a letter naming the list, then the place after which the next page starts. A
 * token only moves a reader along a list it may read in full anyway. */
static bool token_parse(svc_job *j, const char *token, char kind, int64_t *at)
{
	*at = 0;
	if (!token || !*token)
		return true;
	char *end;
	long long v = token[0] == kind ? strtoll(token + 1, &end, 10) : -1;
	if (v <= 0 || *end) {
		svc_job_fail(j, GRPC_INVALID_ARGUMENT, "page_token is not one this list gave");
		return false;
	}
	*at = v;
	return true;
}

static bool page_size(svc_job *j, int32_t asked, size_t *n)
{
	if (asked < 0 || asked > PAGE_MAX) {
		svc_job_fail(j, GRPC_INVALID_ARGUMENT, "page_size is 0 (%d) to %d", PAGE_DEFAULT,
			     PAGE_MAX);
		return false;
	}
	*n = asked ? (size_t)asked : PAGE_DEFAULT;
	return true;
}

typedef struct history_ctx {
	held h;
	Collector__Execution **v;
	size_t n, want;
	int64_t last;
	bool more;
} history_ctx;

static int history_row(void *ctx, int64_t seq, const uint8_t *body, size_t len)
{
	history_ctx *x = ctx;
	if (x->n == x->want) {
		x->more = true;
		return 1;
	}
	x->v[x->n] = hold(&x->h, svc_decode(&collector__execution__descriptor, body, len));
	if (!x->v[x->n])
		return -ENOMEM;
	x->n++;
	x->last = seq;
	return 0;
}

typedef struct owner_ctx {
	const char *ns;
	bool mine;
} owner_ctx;

static int owner_row(void *ctx, const wfstore_wf *row)
{
	owner_ctx *o = ctx;
	o->mine = !strcmp(row->ns, o->ns);
	return 0;
}

static void history_work(svc_job *j)
{
	wjob *w = (wjob *)j;
	const Collector__GetWorkflowHistoryRequest *req = w->req;
	history_ctx x = {0};
	int64_t after;
	if (!svc_check_user_ns(j, w->ns) || !page_size(j, req->page_size, &x.want) ||
	    !token_parse(j, req->page_token, HISTORY_TOKEN, &after))
		return;
	if (!w->env->worker) {
		svc_job_fail(j, GRPC_UNAVAILABLE, "the worker is not running on this node");
		return;
	}
	wfstore *st = wf_engine_store(w->env->worker);
	const char *id = req->workflow_id ? req->workflow_id : "";
	owner_ctx o = {.ns = w->ns};
	int rc = wfstore_wf_get(st, true, id, owner_row, &o);
	if (rc == -ENOENT || (!rc && !o.mine)) {
		svc_job_fail(j, GRPC_NOT_FOUND, "no workflow %.100s in namespace %s", id, w->ns);
		return;
	}
	x.v = hold_mem(&x.h, x.want * sizeof(*x.v));
	if (!rc)
		rc = x.v ? wfstore_exec_page(st, id, after, x.want + 1, history_row, &x) : -ENOMEM;
	char token[32] = "";
	if (x.more)
		snprintf(token, sizeof(token), "%c%lld", HISTORY_TOKEN, (long long)x.last);
	if (rc < 0) {
		svc_job_fail(j, GRPC_INTERNAL, "the workflow store: %s", store_err_msg());
	} else {
		Collector__GetWorkflowHistoryResponse resp =
			COLLECTOR__GET_WORKFLOW_HISTORY_RESPONSE__INIT;
		resp.status = &ok_status;
		resp.n_executions = x.n;
		resp.executions = x.v;
		resp.next_page_token = token;
		if (svc_job_answer(j, &resp.base))
			svc_job_fail(j, GRPC_RESOURCE_EXHAUSTED, "out of memory");
	}
	held_free(&x.h);
}

static void get_history(call *c, const ProtobufCMessage *msg)
{
	const Collector__GetWorkflowHistoryRequest *req = (const void *)msg;
	start_job(c, req, req->namespace_, history_work, NULL);
}

typedef struct list_ctx {
	held h;
	Collector__ActiveWorkflow **v;
	size_t n, want;
	int64_t last;
	bool more;
	int rc;
} list_ctx;

static int list_row(void *ctx, const wfstore_wf *row)
{
	list_ctx *l = ctx;
	if (l->n == l->want) {
		l->more = true;
		return 1;
	}
	Collector__WorkflowDefinition *def;
	l->v[l->n] = workflow_of(&l->h, row, &def);
	if (!l->v[l->n])
		return l->rc = -ENOMEM;
	l->n++;
	return 0;
}

static void list_work(svc_job *j)
{
	wjob *w = (wjob *)j;
	const Collector__ListWorkflowsRequest *req = w->req;
	bool all = svc_ns_unnamed(w->env, w->ns);
	list_ctx l = {0};
	int64_t before;
	if ((!all && !svc_check_user_ns(j, w->ns)) || !page_size(j, req->page_size, &l.want) ||
	    !token_parse(j, req->page_token, LIST_TOKEN, &before))
		return;
	unsigned mask = 0;
	for (size_t i = 0; i < req->n_states; i++) {
		if ((unsigned)req->states[i] > COLLECTOR__WORKFLOW_STATE__WORKFLOW_PAUSED) {
			svc_job_fail(j, GRPC_INVALID_ARGUMENT, "states[%zu] is not a WorkflowState",
				     i);
			return;
		}
		mask |= 1u << req->states[i];
	}
	if (!w->env->worker) {
		svc_job_fail(j, GRPC_UNAVAILABLE, "the worker is not running on this node");
		return;
	}
	l.v = hold_mem(&l.h, l.want * sizeof(*l.v));
	int64_t last = 0;
	int rc = l.v ? wfstore_wf_page(wf_engine_store(w->env->worker), all ? NULL : w->ns, mask,
				       before, l.want + 1, list_row, &l, &last)
		     : -ENOMEM;
	if (rc < 0 || l.rc) {
		svc_job_fail(j, GRPC_INTERNAL, "the workflow store: %s", store_err_msg());
		held_free(&l.h);
		return;
	}
	/* The next page starts after the last row given (the extra one read only tells that
	 * there is a next page). */
	char token[32] = "";
	if (l.more)
		snprintf(token, sizeof(token), "%c%lld", LIST_TOKEN, (long long)last);
	Collector__ListWorkflowsResponse resp = COLLECTOR__LIST_WORKFLOWS_RESPONSE__INIT;
	resp.status = &ok_status;
	resp.n_workflows = l.n;
	resp.workflows = l.v;
	resp.next_page_token = token;
	if (svc_job_answer(j, &resp.base))
		svc_job_fail(j, GRPC_RESOURCE_EXHAUSTED, "out of memory");
	held_free(&l.h);
}

static void list_workflows(call *c, const ProtobufCMessage *msg)
{
	const Collector__ListWorkflowsRequest *req = (const void *)msg;
	start_job(c, req, req->namespace_, list_work, NULL);
}

typedef struct defs_ctx {
	held h;
	Collector__ListWorkflowDefinitionsResponse *resp;
	int rc;
} defs_ctx;

static int defs_row(void *ctx, char kind, const char *ns, const char *key, const uint8_t *body,
		    size_t len)
{
	(void)ns;
	(void)key;
	defs_ctx *d = ctx;
	Collector__ListWorkflowDefinitionsResponse *r = d->resp;
	bool wf = kind == 'w';
	size_t n = wf ? r->n_workflows : r->n_continuations;
	void **v = hold_mem(&d->h, (n + 1) * sizeof(void *));
	void *m = hold(&d->h, svc_decode(wf ? &collector__workflow_definition__descriptor
					    : &collector__continuation__descriptor,
					 body, len));
	if (!v || !m)
		return d->rc = -ENOMEM;
	if (n)
		memcpy(v, wf ? (void *)r->workflows : (void *)r->continuations, n * sizeof(void *));
	v[n] = m;
	if (wf) {
		r->workflows = (Collector__WorkflowDefinition **)v;
		r->n_workflows++;
	} else {
		r->continuations = (Collector__Continuation **)v;
		r->n_continuations++;
	}
	return 0;
}

static void defs_work(svc_job *j)
{
	wjob *w = (wjob *)j;
	bool all = svc_ns_unnamed(w->env, w->ns);
	if (!all && !svc_check_user_ns(j, w->ns))
		return;
	if (!w->env->worker) {
		svc_job_fail(j, GRPC_UNAVAILABLE, "the worker is not running on this node");
		return;
	}
	Collector__ListWorkflowDefinitionsResponse resp =
		COLLECTOR__LIST_WORKFLOW_DEFINITIONS_RESPONSE__INIT;
	resp.status = &ok_status;
	defs_ctx d = {.resp = &resp};
	int rc = wfstore_def_each(wf_engine_store(w->env->worker), true, all ? NULL : w->ns,
				  defs_row, &d);
	if (rc || d.rc)
		svc_job_fail(j, GRPC_INTERNAL, "the workflow store: %s", store_err_msg());
	else if (svc_job_answer(j, &resp.base))
		svc_job_fail(j, GRPC_RESOURCE_EXHAUSTED, "out of memory");
	held_free(&d.h);
}

static void list_definitions(call *c, const ProtobufCMessage *msg)
{
	const Collector__ListWorkflowDefinitionsRequest *req = (const void *)msg;
	start_job(c, req, req->namespace_, defs_work, NULL);
}

int worker_register(method_table *t, svc_env *env)
{
#define M(name, in, out, fn)                                                                       \
	{                                                                                          \
		WORKER name, METHOD_UNARY, &collector__##in##__descriptor,                         \
			&collector__##out##__descriptor,                                           \
			{.on_request = fn, .on_cancel = svc_job_on_cancel}, env                    \
	}
	const method methods[] = {
		M("RegisterWorkflow", register_workflow_request, register_workflow_response,
		  register_workflow),
		M("RegisterContinuation", register_continuation_request,
		  register_continuation_response, register_continuation),
		M("StartWorkflow", start_workflow_request, start_workflow_response, start_workflow),
		M("CancelWorkflow", cancel_workflow_request, cancel_workflow_response,
		  cancel_workflow),
		M("GetWorkflowStatus", get_workflow_status_request, get_workflow_status_response,
		  get_status),
		M("GetWorkflowHistory", get_workflow_history_request, get_workflow_history_response,
		  get_history),
		M("ListWorkflows", list_workflows_request, list_workflows_response, list_workflows),
		M("ListWorkflowDefinitions", list_workflow_definitions_request,
		  list_workflow_definitions_response, list_definitions),
		M("PauseWorkflow", pause_workflow_request, pause_workflow_response, pause_workflow),
		M("ResumeWorkflow", pause_workflow_request, pause_workflow_response,
		  pause_workflow),
	};
#undef M
	return method_table_add_all(t, methods, sizeof(methods) / sizeof(methods[0]));
}
