#include "services/wf_def.h"

#include <stdio.h>
#include <string.h>

#include "base/mem.h"

#define OWN_PACKAGE "collector."

const char *wf_label(const Collector__Metadata *m, const char *key)
{
	for (size_t i = 0; m && i < m->n_labels; i++)
		if (m->labels[i]->key && !strcmp(m->labels[i]->key, key))
			return m->labels[i]->value;
	return NULL;
}

long wf_def_task(const Collector__WorkflowDefinition *d, const char *id, size_t len)
{
	for (size_t i = 0; i < d->n_tasks; i++)
		if (strlen(d->tasks[i]->id) == len && !memcmp(d->tasks[i]->id, id, len))
			return (long)i;
	return -1;
}

const tp_method *wf_method_find(const svc_env *env, const char *ns,
				const Collector__ServiceTypeRef *svc, const char *method, char *err,
				size_t cap)
{
	const char *name = svc && svc->service_name ? svc->service_name : "";
	const char *where = svc && svc->namespace_ && *svc->namespace_ ? svc->namespace_ : ns;
	if (!*name || !method || !*method) {
		snprintf(err, cap, "service.service_name and method_name are required");
		return NULL;
	}
	const tp_service *s = tp_find_service(env->types, where, name);
	if (!s && !strchr(name, '.') && strlen(name) < 200) {
		char own[256];
		snprintf(own, sizeof(own), OWN_PACKAGE "%s", name);
		s = tp_find_service(env->types, where, own);
	}
	if (!s) {
		snprintf(err, cap, "service %.200s is not known in namespace %.100s", name, where);
		return NULL;
	}
	const tp_service_info *si = tp_service_get(s);
	for (size_t i = 0; i < si->n_methods; i++) {
		const tp_method *m = &si->methods[i];
		if (strcmp(m->name, method))
			continue;
		if (m->client_streaming || m->server_streaming) {
			snprintf(err, cap, "%.200s.%.100s streams: a task calls unary methods",
				 si->full_name, method);
			return NULL;
		}
		return m;
	}
	snprintf(err, cap, "service %.200s has no method %.100s", si->full_name, method);
	return NULL;
}

/* A declared type (optional) must be the method's. */
static bool type_is(const svc_env *env, const char *ns, const Collector__MessageTypeRef *ref,
		    const tp_message *want, const char *what, const char *who, char *err,
		    size_t cap)
{
	if (!ref || !ref->message_name || !*ref->message_name)
		return true;
	const tp_message *m = svc_find_type(env, ns, ref);
	if (!m) {
		snprintf(err, cap, "%s: %s %.200s is not known", who, what, ref->message_name);
		return false;
	}
	if (m != want) {
		snprintf(err, cap, "%s: %s is %.200s but the method takes %.200s", who, what,
			 tp_message_get(m)->full_name, tp_message_get(want)->full_name);
		return false;
	}
	return true;
}

static bool id_ok(const char *id)
{
	size_t n = id ? strlen(id) : 0;
	return n && n < WF_ID_MAX &&
	       strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == n;
}

static bool retry_ok(const Collector__RetryPolicy *p, const char *who, char *err, size_t cap)
{
	if (!p)
		return true;
	if (p->max_attempts < 0 || p->max_attempts > WF_MAX_ATTEMPTS ||
	    p->initial_delay_seconds < 0 || p->max_delay_seconds < 0 ||
	    p->initial_delay_seconds > 86400 || p->max_delay_seconds > 86400 ||
	    !(p->backoff_multiplier >= 0 && p->backoff_multiplier <= 100)) {
		snprintf(err, cap,
			 "%s: retry_policy wants max_attempts 0..%d, delays 0..86400 s and a "
			 "backoff_multiplier 0..100",
			 who, WF_MAX_ATTEMPTS);
		return false;
	}
	return true;
}

/* ---- the graph ---- */

typedef struct graph {
	const Collector__WorkflowDefinition *d;
	size_t n;
	long *dep;    /* dep[i * n + k]: the k-th dependency of task i, as an index */
	uint8_t *anc; /* anc[i * n + j]: task j is an ancestor of task i */
	char *err;
	size_t cap;
	size_t current; /* the task whose references are checked */
} graph;

/* Fills dep, and anc by a walk in topological order; false on a cycle. */
static bool order(graph *g)
{
	size_t n = g->n;
	size_t *indeg = mem_calloc(n, sizeof(size_t)), *queue = mem_calloc(n, sizeof(size_t));
	bool ok = indeg && queue;
	for (size_t i = 0; ok && i < n; i++)
		indeg[i] = g->d->tasks[i]->n_dependencies;
	size_t head = 0, tail = 0;
	for (size_t i = 0; ok && i < n; i++)
		if (!indeg[i])
			queue[tail++] = i;
	while (ok && head < tail) {
		size_t t = queue[head++];
		/* every task that depends on t */
		for (size_t i = 0; i < n; i++) {
			const Collector__Task *ti = g->d->tasks[i];
			for (size_t k = 0; k < ti->n_dependencies; k++) {
				if (g->dep[i * n + k] != (long)t)
					continue;
				g->anc[i * n + t] = 1;
				for (size_t a = 0; a < n; a++)
					g->anc[i * n + a] |= g->anc[t * n + a];
				if (!--indeg[i])
					queue[tail++] = i;
			}
		}
	}
	if (ok && tail < n) {
		for (size_t i = 0; i < n; i++)
			if (indeg[i]) {
				snprintf(
					g->err, g->cap,
					"the tasks' dependencies make a cycle (through task %.100s)",
					g->d->tasks[i]->id);
				break;
			}
		ok = false;
	} else if (!ok) {
		snprintf(g->err, g->cap, "out of memory");
	}
	mem_free(indeg);
	mem_free(queue);
	return ok;
}

/* A reference of task g->current must read the input or a task it (transitively)
 * depends on. */
static int ref_ok(void *ctx, const wf_ref *r)
{
	graph *g = ctx;
	if (!r->task)
		return 0;
	long t = wf_def_task(g->d, r->task, r->task_len);
	const char *who = g->d->tasks[g->current]->id;
	if (t < 0) {
		snprintf(g->err, g->cap,
			 "task %.100s: input_config reads task %.*s, which is not "
			 "in the workflow",
			 who, (int)(r->task_len > 100 ? 100 : r->task_len), r->task);
		return -1;
	}
	if (!g->anc[g->current * g->n + (size_t)t]) {
		snprintf(g->err, g->cap,
			 "task %.100s: input_config reads task %.100s, which it does not depend on "
			 "(add it to dependencies)",
			 who, g->d->tasks[t]->id);
		return -1;
	}
	return 0;
}

/* The type the default input of task i has (no input_config): the workflow's input for a
 * task without dependencies, else its last dependency's output; NULL when not known. */
static const tp_message *default_input(const svc_env *env, const char *ns, const graph *g, size_t i,
				       const tp_message *const *outputs)
{
	const Collector__Task *t = g->d->tasks[i];
	if (!t->n_dependencies)
		return svc_find_type(env, ns, g->d->input_type);
	return outputs[g->dep[i * g->n + t->n_dependencies - 1]];
}

static bool tasks_ok(const svc_env *env, const char *ns, graph *g, wf_cont_fn conts, void *ctx)
{
	const Collector__WorkflowDefinition *d = g->d;
	size_t n = g->n;
	const tp_message **outputs = mem_calloc(n, sizeof(*outputs));
	if (!outputs) {
		snprintf(g->err, g->cap, "out of memory");
		return false;
	}
	bool ok = true;
	for (size_t i = 0; ok && i < n; i++) {
		const Collector__Task *t = d->tasks[i];
		char who[160];
		snprintf(who, sizeof(who), "task %.100s", t->id);
		const tp_method *m =
			wf_method_find(env, ns, t->service, t->method_name, g->err, g->cap);
		if (!m) {
			char why[400];
			snprintf(why, sizeof(why), "%s", g->err);
			snprintf(g->err, g->cap, "%s: %s", who, why);
			ok = false;
			break;
		}
		outputs[i] = m->output;
		ok = type_is(env, ns, t->input_type, m->input, "input_type", who, g->err, g->cap) &&
		     type_is(env, ns, t->output_type, m->output, "output_type", who, g->err,
			     g->cap) &&
		     retry_ok(t->retry_policy, who, g->err, g->cap);
		g->current = i;
		if (ok && t->input_config)
			ok = !wf_config_refs(t->input_config, ref_ok, g, g->err, g->cap);
		if (ok && !t->input_config) {
			const tp_message *in = default_input(env, ns, g, i, outputs);
			if (in && in != m->input) {
				snprintf(g->err, g->cap,
					 "%s: without input_config it is given %.200s but %.100s "
					 "takes %.200s",
					 who, tp_message_get(in)->full_name, t->method_name,
					 tp_message_get(m->input)->full_name);
				ok = false;
			}
		}
		if (ok && t->continuation_id && *t->continuation_id) {
			const Collector__Continuation *c = conts(ctx, ns, t->continuation_id);
			const tp_method *cm = c ? wf_method_find(env, ns, c->service,
								 c->method_name, g->err, g->cap)
						: NULL;
			if (!c) {
				snprintf(g->err, g->cap,
					 "%s: continuation %.100s is not registered in namespace "
					 "%.100s",
					 who, t->continuation_id, ns);
				ok = false;
			} else if (!cm || cm->input != m->output || cm->output != cm->input) {
				snprintf(
					g->err, g->cap,
					"%s: continuation %.100s must take %.200s (the task's output) "
					"and give what it takes",
					who, t->continuation_id,
					tp_message_get(m->output)->full_name);
				ok = false;
			}
		}
	}
	mem_free(outputs);
	return ok;
}

bool wf_def_check(const svc_env *env, const char *ns, const Collector__WorkflowDefinition *d,
		  size_t max_tasks, wf_cont_fn conts, void *ctx, char *err, size_t cap)
{
	if (!d->name || !id_ok(d->name)) {
		snprintf(err, cap, "name must be 1 to %d letters, digits, '_' or '-'",
			 WF_ID_MAX - 1);
		return false;
	}
	if (!d->n_tasks || d->n_tasks > max_tasks) {
		snprintf(err, cap, "a workflow has 1 to %zu tasks (this one has %zu)", max_tasks,
			 d->n_tasks);
		return false;
	}
	if (d->input_type && d->input_type->message_name && *d->input_type->message_name &&
	    !svc_find_type(env, ns, d->input_type)) {
		snprintf(err, cap, "input_type %.200s is not known in namespace %.100s",
			 d->input_type->message_name, ns);
		return false;
	}
	size_t n = d->n_tasks;
	for (size_t i = 0; i < n; i++) {
		const char *id = d->tasks[i]->id;
		if (!id_ok(id)) {
			snprintf(err, cap,
				 "task %zu: id must be 1 to %d letters, digits, '_' or '-'", i,
				 WF_ID_MAX - 1);
			return false;
		}
		if (wf_def_task(d, id, strlen(id)) != (long)i) {
			snprintf(err, cap, "task id %.100s is used twice", id);
			return false;
		}
	}
	graph g = {.d = d, .n = n, .err = err, .cap = cap};
	g.dep = mem_calloc(n * n + 1, sizeof(long));
	g.anc = mem_calloc(n * n + 1, 1);
	bool ok = g.dep && g.anc;
	if (!ok)
		snprintf(err, cap, "out of memory");
	for (size_t i = 0; ok && i < n; i++) {
		const Collector__Task *t = d->tasks[i];
		if (t->n_dependencies > n) {
			snprintf(err, cap, "task %.100s has more dependencies than tasks", t->id);
			ok = false;
		}
		for (size_t k = 0; ok && k < t->n_dependencies; k++) {
			const char *dep = t->dependencies[k];
			long j = wf_def_task(d, dep, strlen(dep));
			for (size_t e = 0; ok && e < k; e++)
				if (g.dep[i * n + e] == j)
					ok = false;
			if (!ok || j < 0 || (size_t)j == i) {
				snprintf(err, cap, "task %.100s: dependency %.100s %s", t->id, dep,
					 j < 0		  ? "is not a task of the workflow"
					 : (size_t)j == i ? "is the task itself"
							  : "is listed twice");
				ok = false;
			}
			g.dep[i * n + k] = j;
		}
	}
	ok = ok && order(&g) && tasks_ok(env, ns, &g, conts, ctx);
	const char *out = wf_label(d->metadata, WF_OUTPUT_TASK_LABEL);
	if (ok && out && wf_def_task(d, out, strlen(out)) < 0) {
		snprintf(err, cap,
			 "metadata label %s names task %.100s, which is not in the workflow",
			 WF_OUTPUT_TASK_LABEL, out);
		ok = false;
	}
	mem_free(g.dep);
	mem_free(g.anc);
	return ok;
}

bool wf_cont_check(const svc_env *env, const char *ns, const Collector__Continuation *c, char *err,
		   size_t cap)
{
	if (!c->id || !id_ok(c->id)) {
		snprintf(err, cap, "id must be 1 to %d letters, digits, '_' or '-'", WF_ID_MAX - 1);
		return false;
	}
	char who[160];
	snprintf(who, sizeof(who), "continuation %.100s", c->id);
	const tp_method *m = wf_method_find(env, ns, c->service, c->method_name, err, cap);
	if (!m)
		return false;
	if (m->input != m->output) {
		snprintf(err, cap,
			 "%s: %.100s must give what it takes (its output is its next input)", who,
			 c->method_name);
		return false;
	}
	if (c->max_iterations < 0 || c->max_iterations > WF_MAX_ITERATIONS) {
		snprintf(err, cap, "%s: max_iterations is 0 (default %d) to %d", who,
			 WF_DEFAULT_ITERATIONS, WF_MAX_ITERATIONS);
		return false;
	}
	return type_is(env, ns, c->input_type, m->input, "input_type", who, err, cap) &&
	       type_is(env, ns, c->output_type, m->output, "output_type", who, err, cap) &&
	       wf_cond_check(c->loop_condition, err, cap);
}

size_t wf_def_output_task(const Collector__WorkflowDefinition *d)
{
	const char *named = wf_label(d->metadata, WF_OUTPUT_TASK_LABEL);
	long k = named ? wf_def_task(d, named, strlen(named)) : -1;
	if (k >= 0)
		return (size_t)k;
	for (size_t i = d->n_tasks; i-- > 0;) {
		bool needed = false;
		for (size_t j = 0; j < d->n_tasks && !needed; j++)
			for (size_t e = 0; e < d->tasks[j]->n_dependencies; e++)
				if (!strcmp(d->tasks[j]->dependencies[e], d->tasks[i]->id))
					needed = true;
		if (!needed)
			return i;
	}
	return d->n_tasks - 1;
}
