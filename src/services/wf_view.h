/* The console's views of the worker (console.c): workflows (counts by state, the newest,
 * the definitions) and executions (the most recent), as JSON objects' members, read from
 * the workflow store's committed state. Pool threads. */
#ifndef SERVICES_WF_VIEW_H
#define SERVICES_WF_VIEW_H
#include <stddef.h>

#include "base/buf.h"
#include "services/svc.h"

#define WF_VIEW_ROWS 100

/* Appends `"counts":{...},"workflows":[...],"definitions":[...]` for ns (NULL: every
 * namespace) and a summary line. 0, or the store's failure. */
int wf_view_workflows(const svc_env *env, const char *ns, buf *b, char *sum, size_t cap);
/* Appends `"executions":[...]`, newest first, and a summary line. */
int wf_view_executions(const svc_env *env, const char *ns, buf *b, char *sum, size_t cap);

#endif
