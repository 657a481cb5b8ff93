/* collector.CollectionRepo. */
#ifndef SERVICES_REPO_H
#define SERVICES_REPO_H
#include "h2/method.h"
#include "services/svc.h"

/* env must outlive the table. */
int repo_register(method_table *t, svc_env *env);

#endif
