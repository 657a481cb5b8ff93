/* UnregisterProto and UnregisterService. Like a registration, a removal runs under the
 * registry's lock in three steps: checked (nothing registered may still use what goes),
 * written (its records deleted in one transaction, durable), then applied in memory (the
 * type pool, the ledger of field numbers, the index the call gate reads, the quotas). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/mem.h"
#include "collector/registry.pb-c.h"
#include "services/registry_priv.h"
#include "services/syscoll.h"

static Collector__Status status_ok = COLLECTOR__STATUS__INIT;

/* ---- what RegisteredProtos keeps of a file, every version (start-up may have skipped
 * some, and a removal takes those too) ---- */

/* The field of a RegisteredProto that names its file. */
#define FILE_NAME_FIELD "file_descriptor.name"

/* Runs fn over the records of RegisteredProtos in namespace ns (and of file file when
 * given), in the order written. 0, fn's nonzero value, or the store's error. */
static int stored_versions(registry *r, const char *ns, const char *file, store_record_fn fn,
			   void *ctx)
{
	store_reader *rd;
	int rc = store_coll_read_begin(r->protos, &rd);
	if (rc)
		return rc;
	const store_match where[] = {{REGISTRY_NS_FIELD, ns}, {FILE_NAME_FIELD, file}};
	rc = store_reader_scan(rd, where, file ? 2 : 1, 0, fn, ctx);
	store_coll_read_end(rd);
	return rc;
}

/* What the versions of one file hold: their record ids, and (when messages is given) the
 * messages any of them defines, each once, in the order first met. */
typedef struct versions {
	strvec *ids, *messages;
	strmap seen;
	bool failed;
} versions;

static int version_one(void *ctx, const store_record *rec)
{
	versions *v = ctx;
	strvec_push(v->ids, mem_strdup(rec->id ? rec->id : ""));
	if (!v->messages)
		return 0;
	Collector__RegisteredProto *p =
		svc_decode(&collector__registered_proto__descriptor, rec->data, rec->data_len);
	for (size_t i = 0; p && i < p->n_message_names; i++) {
		const char *m = p->message_names[i];
		size_t len = strlen(m);
		if (strmap_get(&v->seen, m, len))
			continue;
		if (strmap_put(&v->seen, m, len, v, NULL))
			v->failed = true;
		strvec_push(v->messages, mem_strdup(m));
	}
	if (p)
		collector__registered_proto__free_unpacked(p, NULL);
	return 0;
}

/* The ids of the records of every version of file in ns, and with messages, the messages
 * they define. */
static int file_versions(registry *r, const char *ns, const char *file, strvec *ids,
			 strvec *messages)
{
	versions v = {.ids = ids, .messages = messages};
	int rc = stored_versions(r, ns, file, version_one, &v);
	strmap_free(&v.seen);
	if (!rc && (v.failed || ids->failed || (messages && messages->failed)))
		rc = -ENOMEM;
	return rc;
}

/* Another file of which some kept version imports file. */
typedef struct importer {
	const char *file;
	char *name;
} importer;

static int find_importer(void *ctx, const store_record *rec)
{
	importer *im = ctx;
	Collector__RegisteredProto *p =
		svc_decode(&collector__registered_proto__descriptor, rec->data, rec->data_len);
	const char *name = p && p->file_descriptor ? p->file_descriptor->name : NULL;
	bool imports = false;
	for (size_t i = 0; name && strcmp(name, im->file) && i < p->n_dependencies && !imports; i++)
		imports = !strcmp(p->dependencies[i], im->file);
	int rc = 0;
	if (imports)
		rc = (im->name = mem_strdup(name)) ? 1 : -ENOMEM;
	if (p)
		collector__registered_proto__free_unpacked(p, NULL);
	return rc;
}

/* Deletes the records ids of c in one transaction, waited for. */
static int delete_records(store_coll *c, const strvec *ids)
{
	if (!ids->n)
		return 0;
	store_op *ops = mem_calloc(ids->n, sizeof(*ops));
	if (!ops)
		return -ENOMEM;
	for (size_t i = 0; i < ids->n; i++)
		ops[i] = (store_op){.kind = STORE_OP_DELETE, .id = ids->v[i]};
	int rc = syscoll_write_wait(c, ops, ids->n);
	mem_free(ops);
	return rc;
}

/* ---- what may still use a file ---- */

typedef struct collection_user {
	char name[160];
} collection_user;

static int first_collection(void *ctx, const store_collection *c)
{
	collection_user *u = ctx;
	snprintf(u->name, sizeof(u->name), "%s/%s", c->ns, c->name);
	return 1;
}

/* No collection has a message of the file as its type. messages are those of every kept
 * version: a name another file of ns defines now is that file's. */
static bool no_collection_uses(svc_job *j, registry *r, const char *ns, const char *file,
			       const strvec *messages)
{
	for (size_t i = 0; i < messages->n; i++) {
		const char *owner = tp_symbol_file(r->env->types, ns, messages->v[i]);
		if (owner && strcmp(owner, file))
			continue;
		collection_user u = {{0}};
		store_list_filter f = {.type_ns = ns, .type_name = messages->v[i], .limit = 1};
		int rc = store_collection_list(r->env->store, &f, first_collection, &u, NULL);
		if (rc == 1) {
			svc_job_fail(j, GRPC_FAILED_PRECONDITION,
				     "%s is in use: collection %s holds its message %s (delete the "
				     "collection first)",
				     file, u.name, messages->v[i]);
			return false;
		}
		if (rc) {
			svc_fail_store(j, rc, "checking the collections");
			return false;
		}
	}
	return true;
}

typedef struct service_user {
	registry *r;
	const char *ns, *file;
	char why[400];
	bool oom;
} service_user;

/* Whether a method type of service s, resolved as at its start-up load, is the file's. */
static const char *type_of_file(service_user *u, const char *pkg, const char *type)
{
	const tp_message *m = type ? registry_resolve_type(u->r, u->ns, pkg, type) : NULL;
	const char *name = m ? tp_message_get(m)->full_name : NULL;
	const char *owner = name ? tp_symbol_file(u->r->env->types, u->ns, name) : NULL;
	return owner && !strcmp(owner, u->file) ? name : NULL;
}

static int check_service(void *ctx, const char *ns, const char *name, const uint8_t *rec,
			 size_t len)
{
	(void)ns;
	service_user *u = ctx;
	const char *owner = tp_symbol_file(u->r->env->types, u->ns, name);
	if (owner && !strcmp(owner, u->file)) {
		snprintf(u->why, sizeof(u->why), "registered service %.200s is declared in it",
			 name);
		return 1;
	}
	Collector__RegisteredService *s =
		svc_decode(&collector__registered_service__descriptor, rec, len);
	const char *dot = strrchr(name, '.');
	char *pkg = dot ? mem_strndup(name, (size_t)(dot - name)) : mem_strdup("");
	int found = 0;
	if (!s || !pkg) {
		u->oom = true;
		found = 1;
	}
	const service_proto *sd = s ? s->service_descriptor : NULL;
	for (size_t i = 0; !found && sd && i < sd->n_method; i++) {
		const Google__Protobuf__MethodDescriptorProto *m = sd->method[i];
		const char *t = type_of_file(u, pkg, m->input_type);
		if (!t)
			t = type_of_file(u, pkg, m->output_type);
		if (t) {
			snprintf(u->why, sizeof(u->why),
				 "registered service %.120s uses its message %.120s (in %.40s)",
				 name, t, m->name ? m->name : "?");
			found = 1;
		}
	}
	mem_free(pkg);
	if (s)
		collector__registered_service__free_unpacked(s, NULL);
	return found;
}

/* No registered service of ns is declared in the file or uses one of its messages. */
static bool no_service_uses(svc_job *j, registry *r, const char *ns, const char *file)
{
	service_user u = {.r = r, .ns = ns, .file = file};
	int rc = regindex_each_service(r->ix, ns, check_service, &u);
	if (!rc)
		return true;
	if (rc < 0 || u.oom)
		svc_job_fail(j, GRPC_RESOURCE_EXHAUSTED, "out of memory");
	else
		svc_job_fail(j, GRPC_FAILED_PRECONDITION,
			     "%s is in use: %s (UnregisterService first)", file, u.why);
	return false;
}

/* Whether the file of ns imports `dep` in the version now registered. */
static bool imports_now(registry *r, const char *ns, const char *file, const char *dep)
{
	const uint8_t *bytes;
	size_t len;
	if (!tp_file_bytes(r->env->types, ns, file, &bytes, &len))
		return false;
	file_proto *fp =
		svc_decode(&google__protobuf__file_descriptor_proto__descriptor, bytes, len);
	bool found = false;
	for (size_t i = 0; fp && i < fp->n_dependency && !found; i++)
		found = !strcmp(fp->dependency[i], dep);
	if (fp)
		google__protobuf__file_descriptor_proto__free_unpacked(fp, NULL);
	return found;
}

/* No kept version of another file imports it: an earlier version counts too, since the
 * ledger of its field numbers is rebuilt from every version at start-up, and that version
 * would no longer load. */
static bool no_file_imports(svc_job *j, registry *r, const char *ns, const char *file)
{
	importer im = {.file = file};
	int rc = stored_versions(r, ns, NULL, find_importer, &im);
	bool ok = rc == 0;
	if (rc < 0)
		svc_fail_store(j, rc, "reading the registrations");
	else if (!ok && imports_now(r, ns, im.name, file))
		svc_job_fail(j, GRPC_FAILED_PRECONDITION, "%s is in use: file %s imports it", file,
			     im.name);
	else if (!ok)
		svc_job_fail(j, GRPC_FAILED_PRECONDITION,
			     "%s is in use: an earlier version of file %s, kept for the history of "
			     "its field numbers, imports it (UnregisterProto that file first)",
			     file, im.name);
	mem_free(im.name);
	return ok;
}

/* Takes every version of file out of memory once its records are gone. */
static void file_gone(registry *r, const char *ns, const char *file, const strvec *messages)
{
	tp_remove_file(r->env->types, ns, file);
	registry_file_removed(r, ns, file, messages);
	regquota_drop_file(r->quota, ns, file);
}

/* ---- UnregisterProto ---- */

static bool given(svc_job *j, const char *what, const char *s)
{
	if (s && *s)
		return true;
	svc_job_fail(j, GRPC_INVALID_ARGUMENT, "%s is required", what);
	return false;
}

static void not_found(svc_job *j, registry *r, const char *ns, const char *what, const char *name)
{
	const uint8_t *b;
	size_t n;
	bool compiled = !strcmp(what, "file") && tp_file_bytes(r->env->types, NULL, name, &b, &n);
	svc_job_fail(j, GRPC_NOT_FOUND, "%s %.200s is not registered in namespace '%s'%s", what,
		     name, ns, compiled ? " (the node compiles it in)" : "");
}

void registry_unregister_proto(registry *r, svc_job *j, const char *ns,
			       const Collector__UnregisterProtoRequest *req)
{
	if (!svc_check_user_ns(j, ns) || !given(j, "file_name", req->file_name))
		return;
	const char *file = req->file_name;
	strvec ids = {0}, messages = {0};
	pthread_mutex_lock(&r->lock);
	int rc = file_versions(r, ns, file, &ids, &messages);
	bool ok = !rc && ids.n;
	if (rc)
		svc_fail_store(j, rc, "reading the registrations");
	else if (!ok)
		not_found(j, r, ns, "file", file);
	ok = ok && no_collection_uses(j, r, ns, file, &messages) &&
	     no_service_uses(j, r, ns, file) && no_file_imports(j, r, ns, file);
	if (ok && (rc = delete_records(r->protos, &ids))) {
		svc_fail_store(j, rc, "removing the file");
		ok = false;
	}
	if (ok)
		file_gone(r, ns, file, &messages);
	pthread_mutex_unlock(&r->lock);
	if (ok) {
		log_info("registry: %.200s unregistered from namespace %s (%zu versions)", file, ns,
			 ids.n);
		Collector__UnregisterProtoResponse resp =
			COLLECTOR__UNREGISTER_PROTO_RESPONSE__INIT;
		resp.status = &status_ok;
		resp.versions_removed = (int32_t)ids.n;
		svc_job_answer(j, &resp.base);
	}
	strvec_free(&ids);
	strvec_free(&messages);
}

/* ---- UnregisterService ---- */

typedef struct node_service {
	const char *name;
	bool found;
} node_service;

static void match_service(const char *service, size_t len, void *arg)
{
	node_service *n = arg;
	if (strlen(n->name) == len && !memcmp(n->name, service, len))
		n->found = true;
}

/* A service the node serves, in its default namespace: removing it there would lock every
 * client without the namespace header out of it. */
static bool node_own(registry *r, const char *ns, const char *name)
{
	node_service n = {.name = name};
	if (r->served && !strcmp(ns, r->env->default_ns))
		method_table_each_service(r->served, match_service, &n);
	return n.found;
}

/* The service's id, from its record in the index. */
static char *service_id(svc_job *j, registry *r, const char *ns, const char *name)
{
	size_t len;
	uint8_t *rec = regindex_get_service(r->ix, ns, name, &len);
	if (!rec) {
		if (len)
			svc_job_fail(j, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		else
			not_found(j, r, ns, "service", name);
		return NULL;
	}
	Collector__RegisteredService *s =
		svc_decode(&collector__registered_service__descriptor, rec, len);
	mem_free(rec);
	char *id = s && s->id ? mem_strdup(s->id) : NULL;
	if (!id)
		svc_job_fail(j, GRPC_INTERNAL, "the registration of %.200s is unreadable", name);
	if (s)
		collector__registered_service__free_unpacked(s, NULL);
	return id;
}

void registry_unregister_service(registry *r, svc_job *j, const char *ns,
				 const Collector__UnregisterServiceRequest *req)
{
	if (!svc_check_user_ns(j, ns) || !given(j, "service_name", req->service_name))
		return;
	const char *name = req->service_name;
	char *made = NULL;
	strvec made_ids = {0}, none = {0};
	pthread_mutex_lock(&r->lock);
	char *id = service_id(j, r, ns, name);
	bool ok = id != NULL;
	if (ok && node_own(r, ns, name)) {
		svc_job_fail(j, GRPC_FAILED_PRECONDITION,
			     "%.200s is served by this node in its default namespace '%s': "
			     "unregistering it would lock clients out",
			     name, ns);
		ok = false;
	}
	if (ok && mem_asprintf(&made, REGISTRY_SYNTH_FILE, name) < 0) {
		made = NULL;
		svc_job_fail(j, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		ok = false;
	}
	/* The file made for the service goes with it, unless another file imports it. */
	bool with_file = ok && registry_made_file(r, ns, name);
	ok = ok && (!with_file || no_file_imports(j, r, ns, made));
	int rc = 0;
	if (ok && with_file && (rc = file_versions(r, ns, made, &made_ids, NULL)))
		svc_fail_store(j, rc, "reading the registrations");
	ok = ok && !rc;
	/* The service first: once its record is gone it is gone, and a file left behind by a
	 * failure after it is harmless (UnregisterProto takes it). */
	store_op op = {.kind = STORE_OP_DELETE, .id = id};
	if (ok && (rc = syscoll_write_wait(r->services, &op, 1))) {
		svc_fail_store(j, rc, "removing the service");
		ok = false;
	}
	if (ok) {
		regindex_remove_service(r->ix, ns, name);
		regquota_drop_service(r->quota, ns, name);
		if (with_file && (rc = delete_records(r->protos, &made_ids)))
			log_error("registry: %s stays in namespace %s after its service went: %s",
				  made, ns, store_err_msg());
		else if (with_file)
			file_gone(r, ns, made, &none);
	}
	pthread_mutex_unlock(&r->lock);
	if (ok) {
		log_info("registry: service %.200s unregistered from namespace %s", name, ns);
		Collector__UnregisterServiceResponse resp =
			COLLECTOR__UNREGISTER_SERVICE_RESPONSE__INIT;
		resp.status = &status_ok;
		svc_job_answer(j, &resp.base);
	}
	mem_free(id);
	mem_free(made);
	strvec_free(&made_ids);
}
