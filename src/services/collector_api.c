#include "services/collector_api.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "collector/collection_repo.pb-c.h"
#include "collector/collection_server.pb-c.h"
#include "collector/console.pb-c.h"
#include "collector/dispatcher.pb-c.h"
#include "collector/registry.pb-c.h"
#include "collector/worker.pb-c.h"
#include "h2/call.h"
#include "services/backup.h"
#include "services/collection.h"
#include "services/console.h"
#include "services/dispatch.h"
#include "services/files_svc.h"
#include "services/health.h"
#include "services/invoke.h"
#include "services/reflection.h"
#include "services/registry.h"
#include "services/repo.h"
#include "services/worker.h"

extern const uint8_t api_descriptor_set[];
extern const size_t api_descriptor_set_len;

static const ProtobufCServiceDescriptor *const services[] = {
	&collector__collector_registry__descriptor, &collector__collection_service__descriptor,
	&collector__collection_repo__descriptor,    &collector__collective_dispatcher__descriptor,
	&collector__collective_worker__descriptor,  &collector__collector_console__descriptor,
};

/* Paths live as long as the process (the table keeps pointers to them): made once, shared
 * by every table built (a fuzz harness builds many). */
static char paths[8192];
static size_t paths_used;
static const char *path_of[64];

static void unimplemented(call *c)
{
	call_finishf(c, GRPC_UNIMPLEMENTED, "%s is not implemented yet on this node",
		     call_method(c)->path);
}

static int make_paths(void)
{
	size_t k = 0;
	for (size_t s = 0; s < sizeof(services) / sizeof(services[0]); s++) {
		const ProtobufCServiceDescriptor *sd = services[s];
		for (unsigned i = 0; i < sd->n_methods; i++, k++) {
			char *path = paths + paths_used;
			int n = snprintf(path, sizeof(paths) - paths_used, "/%s/%s", sd->name,
					 sd->methods[i].name);
			if (n < 0 || (size_t)n >= sizeof(paths) - paths_used ||
			    k >= sizeof(path_of) / sizeof(path_of[0]))
				return -ENOMEM;
			paths_used += (size_t)n + 1;
			path_of[k] = path;
		}
	}
	return 0;
}

static int collector_api_register(method_table *t)
{
	if (!paths_used && make_paths())
		return -ENOMEM;
	size_t k = 0;
	for (size_t s = 0; s < sizeof(services) / sizeof(services[0]); s++) {
		const ProtobufCServiceDescriptor *sd = services[s];
		for (unsigned i = 0; i < sd->n_methods; i++, k++) {
			method m = {
				.path = path_of[k],
				.kind = METHOD_UNARY,
				.input = sd->methods[i].input,
				.output = sd->methods[i].output,
				.h = {.on_start = unimplemented},
			};
			int rc = method_table_add(t, &m);
			if (rc && rc != -EEXIST) /* -EEXIST: its service registered it already */
				return rc;
		}
	}
	return 0;
}

int collector_api_register_all(method_table *t, svc_env *env)
{
	/* The services first: collector_api_register then routes what is left. */
	int rc = registry_register(t, env);
	if (!rc)
		rc = repo_register(t, env);
	if (!rc)
		rc = backup_register(t, env);
	if (!rc)
		rc = collection_register(t, env);
	if (!rc)
		rc = files_svc_register(t, env);
	if (!rc)
		rc = invoke_register(t, env);
	if (!rc)
		rc = console_register(t, env);
	if (!rc)
		rc = worker_register(t, env);
	if (!rc)
		rc = dispatch_register(t, env);
	if (!rc)
		rc = health_register(t);
	if (!rc)
		rc = reflection_register(t, api_descriptor_set, api_descriptor_set_len,
					 env->registry);
	if (!rc)
		rc = collector_api_register(t);
	return rc;
}
