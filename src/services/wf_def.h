/* Workflow definitions and continuations: checked whole at registration, so that nothing
 * a definition says fails for a reason known in advance once a workflow runs (a cycle, a
 * missing dependency, an unknown method or type, a malformed reference, a missing
 * continuation). Any thread. */
#ifndef SERVICES_WF_DEF_H
#define SERVICES_WF_DEF_H
#include <stdbool.h>
#include <stddef.h>

#include "collector/worker.pb-c.h"
#include "services/svc.h"
#include "services/wf_data.h"

/* The label of WorkflowDefinition.metadata naming the task whose output is the workflow's
 * (default: the last task no other depends on). */
#define WF_OUTPUT_TASK_LABEL "output_task"
#define WF_DEFAULT_ATTEMPTS 3
#define WF_DEFAULT_ITERATIONS 100
#define WF_MAX_ATTEMPTS 100
#define WF_MAX_ITERATIONS 100000

/* The unary method a task or continuation calls, seen from ns: the service by its full name
 * (a bare name is also tried as one of the node's own, collector.<name>). NULL with err. */
const tp_method *wf_method_find(const svc_env *env, const char *ns,
				const Collector__ServiceTypeRef *svc, const char *method, char *err,
				size_t cap);

/* The continuations known: the one with id in ns, or NULL. */
typedef const Collector__Continuation *(*wf_cont_fn)(void *ctx, const char *ns, const char *id);

/* Checks d for namespace ns (INVALID_ARGUMENT's message in err). */
bool wf_def_check(const svc_env *env, const char *ns, const Collector__WorkflowDefinition *d,
		  size_t max_tasks, wf_cont_fn conts, void *ctx, char *err, size_t cap);
bool wf_cont_check(const svc_env *env, const char *ns, const Collector__Continuation *c, char *err,
		   size_t cap);

/* The index of the task whose output is the workflow's. */
size_t wf_def_output_task(const Collector__WorkflowDefinition *d);
/* The index of the task with id (len bytes), or -1. */
long wf_def_task(const Collector__WorkflowDefinition *d, const char *id, size_t len);
/* A label of m, or NULL. */
const char *wf_label(const Collector__Metadata *m, const char *key);

#endif
