#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/mem.h"
#include "services/wf_def.h"
#include "services/wf_engine_int.h"
#include "store/store.h"

/* ---- requests ---- */

static int do_register(wf_engine *e, wf_req *r)
{
	char why[700];
	bool cont = r->kind == WF_REQ_CONTINUATION;
	const char *key = cont ? r->cont->id : r->def->name;
	if (!eng_def_find(e, cont ? 'c' : 'w', r->ns, key ? key : "") &&
	    e->ndefs >= e->lim.max_defs) {
		wf_req_fail(r, GRPC_RESOURCE_EXHAUSTED,
			    "the node keeps %zu workflow definitions and continuations, its most "
			    "(--workflow-max-definitions)",
			    e->ndefs);
		return 0;
	}
	bool ok = cont ? wf_cont_check(e->env, r->ns, r->cont, why, sizeof(why))
		       : wf_def_check(e->env, r->ns, r->def, e->lim.max_tasks, eng_cont_of, e, why,
				      sizeof(why));
	if (!ok) {
		wf_req_fail(r, GRPC_INVALID_ARGUMENT, "%s", why);
		return 0;
	}
	/* Kept with its namespace, and a workflow with an id of its version when it has none
	 * (the request's own strings are put back: the request owns and frees them). */
	char version[UUID_STR_LEN];
	char **ns_field = cont ? &r->cont->namespace_ : &r->def->namespace_;
	char *ns_was = *ns_field, *id_was = cont ? NULL : r->def->id;
	*ns_field = (char *)r->ns;
	if (!cont && (!id_was || !*id_was)) {
		if (uuid7_make(version))
			return -EIO;
		r->def->id = version;
	}
	snprintf(r->id, sizeof(r->id), "%s", cont ? r->cont->id : r->def->id);
	const ProtobufCMessage *m = cont ? &r->cont->base : &r->def->base;
	size_t len = protobuf_c_message_get_packed_size(m);
	uint8_t *b = mem_alloc(len ? len : 1);
	if (b)
		protobuf_c_message_pack(m, b);
	*ns_field = ns_was;
	if (!cont)
		r->def->id = id_was;
	if (!b)
		return -ENOMEM;
	int rc = wfstore_def_put(e->st, cont ? 'c' : 'w', r->ns, key, b, len, eng_wall_us());
	if (!rc)
		rc = eng_def_keep(e, cont ? 'c' : 'w', r->ns, key, b, len);
	mem_free(b);
	return rc;
}

/* The StartWorkflowRequest's metadata as the workflow's Metadata labels. */
static uint8_t *start_meta(const Collector__StartWorkflowRequest *s, int64_t now, size_t *len)
{
	Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	ts.seconds = now / 1000000;
	ts.nanos = (int32_t)(now % 1000000) * 1000;
	Collector__Metadata m = COLLECTOR__METADATA__INIT;
	m.created_at = &ts;
	m.n_labels = s->n_metadata;
	Collector__Metadata__LabelsEntry *ents = mem_calloc(s->n_metadata + 1, sizeof(*ents));
	m.labels = mem_calloc(s->n_metadata + 1, sizeof(*m.labels));
	uint8_t *b = NULL;
	if (ents && m.labels) {
		for (size_t i = 0; i < s->n_metadata; i++) {
			collector__metadata__labels_entry__init(&ents[i]);
			ents[i].key = s->metadata[i]->key;
			ents[i].value = s->metadata[i]->value;
			m.labels[i] = &ents[i];
		}
		*len = collector__metadata__get_packed_size(&m);
		if ((b = mem_alloc(*len ? *len : 1)))
			collector__metadata__pack(&m, b);
	}
	mem_free(ents);
	mem_free(m.labels);
	return b;
}

static const char *start_label(const Collector__StartWorkflowRequest *s, const char *key)
{
	for (size_t i = 0; i < s->n_metadata; i++)
		if (s->metadata[i]->key && !strcmp(s->metadata[i]->key, key))
			return s->metadata[i]->value;
	return NULL;
}

static int do_start(wf_engine *e, wf_req *r, int64_t now)
{
	const Collector__StartWorkflowRequest *s = r->start;
	const char *key = start_label(s, WF_IDEMPOTENCY_KEY);
	if (key && *key) {
		int rc = wfstore_wf_by_key(e->st, r->ns, key, r->id, sizeof(r->id));
		if (rc != -ENOENT)
			return rc; /* 0: started before, the same id */
	}
	def_entry *d = eng_def_find(e, 'w', r->ns, s->workflow_name ? s->workflow_name : "");
	if (!d) {
		wf_req_fail(r, GRPC_NOT_FOUND, "no workflow named '%.200s' in namespace %s",
			    s->workflow_name ? s->workflow_name : "", r->ns);
		return 0;
	}
	if (e->active.used >= e->lim.max_active) {
		wf_req_fail(r, GRPC_RESOURCE_EXHAUSTED,
			    "%zu workflows run on the node, its most (--workflow-max-active)",
			    e->active.used);
		return 0;
	}
	/* The input: as given; absent, an empty message of the definition's input type. */
	Google__Protobuf__Any in = GOOGLE__PROTOBUF__ANY__INIT;
	char url[600] = "";
	const tp_message *want = svc_find_type(e->env, r->ns, d->wf->input_type);
	if (s->input) {
		in = *s->input;
	} else if (want) {
		snprintf(url, sizeof(url), SVC_TYPE_URL_PREFIX "%s",
			 tp_message_get(want)->full_name);
		in.type_url = url;
	}
	const char *in_url = in.type_url ? in.type_url : "";
	if (want && !svc_type_url_is(in_url, want)) {
		wf_req_fail(r, GRPC_INVALID_ARGUMENT, "input is an Any of '%.200s'; %s takes %s",
			    in_url, d->wf->name, tp_message_get(want)->full_name);
		return 0;
	}
	if (*in_url && !tp_find_type_url(e->env->types, r->ns, in_url, strlen(in_url))) {
		wf_req_fail(r, GRPC_INVALID_ARGUMENT,
			    "input is an Any of '%.200s', a type not known in namespace %s", in_url,
			    r->ns);
		return 0;
	}
	char id[UUID_STR_LEN];
	if (uuid7_make(id))
		return -EIO;
	size_t in_len, meta_len = 0;
	uint8_t *in_b = eng_pack_any(&in, &in_len), *meta = start_meta(s, now, &meta_len);
	wf *w = in_b ? eng_wf_make(id, r->ns, d->body, d->len, in_b, in_len) : NULL;
	int rc = in_b && meta && w ? 0 : -ENOMEM;
	wfstore_wf row = {.id = id,
			  .ns = r->ns,
			  .name = d->wf->name,
			  .state = COLLECTOR__WORKFLOW_STATE__WORKFLOW_RUNNING,
			  .def = d->body,
			  .def_len = d->len,
			  .input = in_b,
			  .input_len = in_len,
			  .meta = meta,
			  .meta_len = meta_len,
			  .error = "",
			  .idem_key = key && *key ? key : NULL,
			  .created_us = now,
			  .updated_us = now};
	if (!rc)
		rc = wfstore_wf_insert(e->st, &row);
	if (!rc)
		rc = strmap_put(&e->active, w->id, strlen(w->id), w, NULL);
	mem_free(in_b);
	mem_free(meta);
	if (rc) {
		eng_wf_free(w);
		return rc;
	}
	eng_mark_dirty(e, w);
	snprintf(r->id, sizeof(r->id), "%s", id);
	return 0;
}

typedef struct state_of {
	int state;
	bool ns_ok;
	const char *ns;
} state_of;

static int got_state(void *ctx, const wfstore_wf *w)
{
	state_of *s = ctx;
	s->state = w->state;
	s->ns_ok = !strcmp(w->ns, s->ns);
	return 0;
}

/* A change asked of a workflow that is not running here: NOT_FOUND, or FAILED_PRECONDITION
 * saying how it ended. */
static int refuse_not_active(wf_engine *e, wf_req *r, const char *what)
{
	state_of s = {.ns = r->ns};
	int rc = wfstore_wf_get(e->st, false, r->wf_id, got_state, &s);
	if (rc == -ENOENT || (!rc && !s.ns_ok)) {
		wf_req_fail(r, GRPC_NOT_FOUND, "no workflow %.100s in namespace %s", r->wf_id,
			    r->ns);
		return 0;
	}
	if (!rc) {
		r->state = s.state;
		wf_req_fail(r, GRPC_FAILED_PRECONDITION,
			    "workflow %.100s has ended (%s): it cannot be %s", r->wf_id,
			    collector__workflow_state__descriptor.values[s.state].name, what);
	}
	return rc;
}

static int do_cancel(wf_engine *e, wf_req *r)
{
	wf *w = strmap_get(&e->active, r->wf_id, strlen(r->wf_id));
	if (w && !strcmp(w->ns, r->ns)) {
		char why[400];
		snprintf(why, sizeof(why), "cancelled%s%.300s", r->reason && *r->reason ? ": " : "",
			 r->reason ? r->reason : "");
		r->state = COLLECTOR__WORKFLOW_STATE__WORKFLOW_CANCELLED;
		return eng_end_workflow(e, w, COLLECTOR__WORKFLOW_STATE__WORKFLOW_CANCELLED, why);
	}
	return refuse_not_active(e, r, "cancelled");
}

/* PAUSE and RESUME: the state stored, then the engine stops or starts making calls. */
static int do_pause(wf_engine *e, wf_req *r, bool pause)
{
	wf *w = strmap_get(&e->active, r->wf_id, strlen(r->wf_id));
	if (!w || strcmp(w->ns, r->ns))
		return refuse_not_active(e, r, pause ? "paused" : "resumed");
	int state = pause ? COLLECTOR__WORKFLOW_STATE__WORKFLOW_PAUSED
			  : COLLECTOR__WORKFLOW_STATE__WORKFLOW_RUNNING;
	r->state = state;
	if (w->paused == pause)
		return 0;
	w->paused = pause;
	eng_mark_dirty(e, w);
	return wfstore_wf_update(e->st, w->id, state, NULL, 0, "", eng_wall_us());
}

typedef struct reset_ctx {
	wf_engine *e;
	const char *ns;
} reset_ctx;

/* RESET of workflows: those running leave the engine (their calls cancelled), then the
 * store forgets them all, with their tasks and executions. */
static int do_reset(wf_engine *e, wf_req *r)
{
	if (r->executions_only)
		return wfstore_exec_delete_ended(e->st, r->ns, &r->deleted_executions);
	/* The doomed first: forgetting one moves entries of the map. */
	wf **doomed = mem_calloc(e->active.used + 1, sizeof(*doomed));
	if (!doomed)
		return -ENOMEM;
	size_t n = 0;
	for (size_t s = 0; s < e->active.cap; s++) {
		wf *w = e->active.slots[s].key ? e->active.slots[s].value : NULL;
		if (w && (!r->ns || !strcmp(w->ns, r->ns)))
			doomed[n++] = w;
	}
	for (size_t k = 0; k < n; k++) {
		wf *w = doomed[k];
		for (size_t i = 0; i < w->def->n_tasks; i++)
			if (w->tasks[i].state == COLLECTOR__EXECUTION_STATE__EXECUTION_RUNNING)
				eng_cancel_later(e, w->tasks[i].exec_id);
		eng_forget(e, w);
	}
	mem_free(doomed);
	return wfstore_wf_delete_ns(e->st, r->ns, &r->deleted_workflows, &r->deleted_executions);
}

void wf_req_fail(wf_req *r, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->msg, sizeof(r->msg), fmt, ap);
	va_end(ap);
	r->code = code;
	if (r->j)
		svc_job_fail(r->j, code, "%s", r->msg);
}

void wf_req_finish(wf_req *r)
{
	if (r->j)
		svc_job_resume(r->j);
	else
		sem_post(r->done);
}

int wf_engine_reset(wf_engine *e, const char *ns, bool executions_only, int64_t *workflows,
		    int64_t *executions, char *err, size_t cap)
{
	sem_t done;
	sem_init(&done, 0, 0);
	wf_req r = {.kind = WF_REQ_RESET,
		    .done = &done,
		    .ns = ns,
		    .executions_only = executions_only};
	wf_engine_submit(e, &r);
	while (sem_wait(&done) && errno == EINTR)
		;
	sem_destroy(&done);
	*workflows = r.deleted_workflows;
	*executions = r.deleted_executions;
	snprintf(err, cap, "%s", r.msg);
	return r.code;
}

int eng_handle_req(wf_engine *e, wf_req *r, int64_t now)
{
	switch (r->kind) {
	case WF_REQ_REGISTER:
	case WF_REQ_CONTINUATION:
		return do_register(e, r);
	case WF_REQ_START:
		return do_start(e, r, now);
	case WF_REQ_CANCEL:
		return do_cancel(e, r);
	case WF_REQ_RESET:
		return do_reset(e, r);
	case WF_REQ_PAUSE:
	case WF_REQ_RESUME:
		return do_pause(e, r, r->kind == WF_REQ_PAUSE);
	}
	return -EINVAL;
}
