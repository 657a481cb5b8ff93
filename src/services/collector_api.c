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

static const ProtobufCServiceDescriptor *const services[] = {
	&collector__collector_registry__descriptor,
	&collector__collection_service__descriptor,
	&collector__collection_repo__descriptor,
	&collector__collective_dispatcher__descriptor,
	&collector__collective_worker__descriptor,
	&collector__collector_console__descriptor,
};

/* Paths live as long as the process: the table keeps pointers to them. */
static char paths[8192];
static size_t paths_used;

static void unimplemented(call *c)
{
	call_finishf(c, GRPC_UNIMPLEMENTED, "%s is not implemented yet on this node",
		     call_method(c)->path);
}

int collector_api_register(method_table *t)
{
	for (size_t s = 0; s < sizeof(services) / sizeof(services[0]); s++) {
		const ProtobufCServiceDescriptor *sd = services[s];
		for (unsigned i = 0; i < sd->n_methods; i++) {
			char *path = paths + paths_used;
			int n = snprintf(path, sizeof(paths) - paths_used, "/%s/%s", sd->name,
					 sd->methods[i].name);
			if (n < 0 || (size_t)n >= sizeof(paths) - paths_used)
				return -ENOMEM;
			paths_used += (size_t)n + 1;
			method m = {
				.path = path,
				.kind = CALL_UNARY,
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
