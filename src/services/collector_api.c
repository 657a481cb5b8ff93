#include "services/collector_api.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "collector/auth.pb-c.h"
#include "collector/collection_repo.pb-c.h"
#include "collector/collection_server.pb-c.h"
#include "collector/console.pb-c.h"
#include "collector/dispatcher.pb-c.h"
#include "collector/registry.pb-c.h"
#include "collector/worker.pb-c.h"
#include "h2/call.h"
#include "services/auth.h"
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
#include "services/transfer.h"
#include "services/worker.h"

extern const uint8_t api_descriptor_set[];
extern const size_t api_descriptor_set_len;

static const ProtobufCServiceDescriptor *const services[] = {
	&collector__collector_registry__descriptor, &collector__collection_service__descriptor,
	&collector__collection_repo__descriptor,    &collector__collective_dispatcher__descriptor,
	&collector__collective_worker__descriptor,  &collector__collector_console__descriptor,
	&collector__collector_auth__descriptor,
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

/* Who may call what: every method the node serves, in one list (auth.h has the check).
 * The namespace field is the one its handler acts in (what it gives svc_start or
 * svc_namespace); a method missing here is undeclared, which only full admins may call. */
#define R AUTH_READ
#define W AUTH_WRITE
#define G AUTH_REGISTER
#define A AUTH_ADMIN
#define N AUTH_NODE
typedef struct access_decl {
	const char *path;
	method_access a;
} access_decl;

static const access_decl access_table[] = {
	/* CollectionService: records in the request's namespace. */
	{"/collector.CollectionService/Create", {.scopes = W, .ns_field = "namespace"}},
	{"/collector.CollectionService/Get", {.scopes = R, .ns_field = "namespace"}},
	{"/collector.CollectionService/Update", {.scopes = W, .ns_field = "namespace"}},
	{"/collector.CollectionService/Delete", {.scopes = W, .ns_field = "namespace"}},
	{"/collector.CollectionService/List", {.scopes = R, .ns_field = "namespace"}},
	{"/collector.CollectionService/Search", {.scopes = R, .ns_field = "namespace"}},
	{"/collector.CollectionService/Batch", {.scopes = W, .ns_field = "namespace"}},
	{"/collector.CollectionService/Describe", {.scopes = R, .ns_field = "namespace"}},
	{"/collector.CollectionService/Modify", {.scopes = W, .ns_field = "namespace"}},
	{"/collector.CollectionService/Meta", {.any_token = true}},
	{"/collector.CollectionService/Invoke", {.scopes = W, .ns_field = "namespace"}},
	{"/collector.CollectionService/PutFile", {.scopes = W, .ns_field = "header.namespace"}},
	{"/collector.CollectionService/GetFile", {.scopes = R, .ns_field = "namespace"}},
	{"/collector.CollectionService/ListFiles", {.scopes = R, .ns_field = "namespace"}},
	{"/collector.CollectionService/DeleteFile", {.scopes = W, .ns_field = "namespace"}},
	/* CollectionRepo: collections; backups are admin's. */
	{"/collector.CollectionRepo/CreateCollection",
	 {.scopes = W, .ns_field = "collection.namespace"}},
	{"/collector.CollectionRepo/DeleteCollection",
	 {.scopes = W, .ns_field = "collection.namespace"}},
	{"/collector.CollectionRepo/Discover",
	 {.scopes = R, .ns_field = "namespace", .unnamed_all = true}},
	{"/collector.CollectionRepo/Route", {.scopes = R, .ns_field = "collection.namespace"}},
	{"/collector.CollectionRepo/SearchCollections",
	 {.scopes = R, .ns_field = "namespace", .unnamed_all = true}},
	{"/collector.CollectionRepo/Clone",
	 {.scopes = R,
	  .ns_field = "source_collection.namespace",
	  .scopes2 = W,
	  .ns_field2 = "dest_namespace|source_collection.namespace"}},
	{"/collector.CollectionRepo/Fetch", {.scopes = W, .ns_field = "dest_namespace"}},
	{"/collector.CollectionRepo/PushCollection",
	 {.scopes = W | N, .ns_field = "metadata.dest_namespace"}},
	{"/collector.CollectionRepo/PullCollection",
	 {.scopes = R | N, .ns_field = "source_collection.namespace"}},
	{"/collector.CollectionRepo/BackupCollection",
	 {.scopes = A, .ns_field = "collection.namespace"}},
	{"/collector.CollectionRepo/ListBackups",
	 {.scopes = A, .ns_field = "collection.namespace|namespace", .unnamed_all = true}},
	/* A backup id names no namespace: the node's admins. */
	{"/collector.CollectionRepo/RestoreBackup", {.scopes = A, .node_wide = true}},
	{"/collector.CollectionRepo/DeleteBackup", {.scopes = A, .node_wide = true}},
	{"/collector.CollectionRepo/VerifyBackup", {.scopes = A, .node_wide = true}},
	/* CollectorRegistry: types and services of a namespace. */
	{"/collector.CollectorRegistry/RegisterProto", {.scopes = G, .ns_field = "namespace"}},
	{"/collector.CollectorRegistry/RegisterService", {.scopes = G, .ns_field = "namespace"}},
	{"/collector.CollectorRegistry/UnregisterProto", {.scopes = G, .ns_field = "namespace"}},
	{"/collector.CollectorRegistry/UnregisterService", {.scopes = G, .ns_field = "namespace"}},
	{"/collector.CollectorRegistry/LookupService", {.scopes = R, .ns_field = "namespace"}},
	{"/collector.CollectorRegistry/ValidateMethod", {.scopes = R, .ns_field = "namespace"}},
	{"/collector.CollectorRegistry/ListServices",
	 {.scopes = R, .ns_field = "namespace", .empty_all = true}},
	/* CollectiveDispatcher: running methods is writing; linking is admin's, and the
	 * calls of linked nodes carry the mesh credential (AUTH_NODE). */
	{"/collector.CollectiveDispatcher/Serve", {.scopes = W | N, .ns_field = "namespace"}},
	{"/collector.CollectiveDispatcher/Dispatch", {.scopes = W | N, .ns_field = "namespace"}},
	{"/collector.CollectiveDispatcher/Connect", {.scopes = A | N, .node_wide = true}},
	{"/collector.CollectiveDispatcher/Link", {.scopes = A, .node_wide = true}},
	{"/collector.CollectiveDispatcher/Unlink", {.scopes = A, .node_wide = true}},
	{"/collector.CollectiveDispatcher/ListPeers", {.scopes = R | N, .node_wide = true}},
	{"/collector.CollectiveDispatcher/ListDispatches", {.scopes = R, .node_wide = true}},
	/* CollectiveWorker */
	{"/collector.CollectiveWorker/StartWorkflow", {.scopes = W, .ns_field = "namespace"}},
	{"/collector.CollectiveWorker/GetWorkflowStatus", {.scopes = R, .ns_field = "namespace"}},
	{"/collector.CollectiveWorker/GetWorkflowHistory", {.scopes = R, .ns_field = "namespace"}},
	{"/collector.CollectiveWorker/RegisterWorkflow",
	 {.scopes = G, .ns_field = "workflow.namespace"}},
	{"/collector.CollectiveWorker/CancelWorkflow", {.scopes = W, .ns_field = "namespace"}},
	{"/collector.CollectiveWorker/PauseWorkflow", {.scopes = W, .ns_field = "namespace"}},
	{"/collector.CollectiveWorker/ResumeWorkflow", {.scopes = W, .ns_field = "namespace"}},
	{"/collector.CollectiveWorker/RegisterContinuation",
	 {.scopes = G, .ns_field = "continuation.namespace"}},
	{"/collector.CollectiveWorker/ListWorkflows",
	 {.scopes = R, .ns_field = "namespace", .unnamed_all = true}},
	{"/collector.CollectiveWorker/ListWorkflowDefinitions",
	 {.scopes = R, .ns_field = "namespace", .unnamed_all = true}},
	/* CollectorConsole: Display of no namespace shows them all. */
	{"/collector.CollectorConsole/Display",
	 {.scopes = R, .ns_field = "namespace", .unnamed_all = true}},
	{"/collector.CollectorConsole/Stop", {.scopes = A, .node_wide = true}},
	{"/collector.CollectorConsole/Reset",
	 {.scopes = A, .ns_field = "namespace", .unnamed_all = true}},
	/* CollectorAuth: the node's admins. */
	{"/collector.CollectorAuth/CreateToken", {.scopes = A, .node_wide = true}},
	{"/collector.CollectorAuth/RevokeToken", {.scopes = A, .node_wide = true}},
	{"/collector.CollectorAuth/ListTokens", {.scopes = A, .node_wide = true}},
	{"/collector.CollectorAuth/ListAudit",
	 {.scopes = A, .node_wide = true, .not_audited = true}},
};
#undef R
#undef W
#undef G
#undef A
#undef N

/* Health and reflection, open unless --auth-open leaves them out. */
static const char *const open_services[][2] = {
	{"/grpc.health.v1.Health/", (const char *)(uintptr_t)SVC_OPEN_HEALTH},
	{"/grpc.reflection.v1.ServerReflection/", (const char *)(uintptr_t)SVC_OPEN_REFLECTION},
	{"/grpc.reflection.v1alpha.ServerReflection/",
	 (const char *)(uintptr_t)SVC_OPEN_REFLECTION},
};

/* Fills in the access of every method from access_table; a declaration that names a
 * method the table lacks or a field its request lacks stops the start (a typo must not
 * quietly fall back to the header's namespace). */
static int apply_access(method_table *t, const svc_env *env)
{
	for (size_t i = 0; i < sizeof(access_table) / sizeof(access_table[0]); i++) {
		const access_decl *d = &access_table[i];
		const method *m = method_table_find(t, d->path, strlen(d->path));
		if (!m || !auth_field_valid(m->input, d->a.ns_field) ||
		    !auth_field_valid(m->input, d->a.ns_field2)) {
			log_error("auth: the access of %s does not fit its method", d->path);
			return -EINVAL;
		}
		method_table_set_access(t, d->path, &d->a);
	}
	for (size_t i = 0; i < method_table_count(t); i++) {
		const method *m = method_table_at(t, i);
		if (!strncmp(m->path, "/collector.", 11) && !m->access.scopes &&
		    !m->access.any_token) {
			log_error("auth: %s has no declared access", m->path);
			return -EINVAL;
		}
		for (size_t k = 0; k < sizeof(open_services) / sizeof(open_services[0]); k++) {
			unsigned bit = (unsigned)(uintptr_t)open_services[k][1];
			const char *pre = open_services[k][0];
			if ((env->auth_open & bit) && !strncmp(m->path, pre, strlen(pre))) {
				method_access a = {.open = true};
				method_table_set_access(t, m->path, &a);
			}
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
		rc = transfer_register(t, env);
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
		rc = auth_register(t, env);
	if (!rc)
		rc = collector_api_register(t);
	if (!rc)
		rc = apply_access(t, env);
	return rc;
}
