/* collector.CollectionService. */
#ifndef SERVICES_COLLECTION_H
#define SERVICES_COLLECTION_H
#include "h2/method.h"
#include "services/svc.h"

/* env must outlive the table. */
int collection_register(method_table *t, svc_env *env);

#endif
