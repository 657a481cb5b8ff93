/* collector.CollectiveWorker: the RPCs of the workflow engine (wf_engine.h). Changes go
 * through the engine and are answered once committed; reads come from the workflow
 * store's committed state, on the pool. */
#ifndef SERVICES_WORKER_H
#define SERVICES_WORKER_H
#include "h2/method.h"
#include "services/svc.h"

int worker_register(method_table *t, svc_env *env);

#endif
