/* CollectionService.Invoke (invoke.c). */
#ifndef SERVICES_INVOKE_H
#define SERVICES_INVOKE_H
#include "h2/method.h"
#include "services/svc.h"

int invoke_register(method_table *t, svc_env *env);

#endif
