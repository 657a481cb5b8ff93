/* RegisterService: a service's methods checked against the types of its namespace (and
 * against the node's own signatures), the file that declares it registered (or made for
 * it, regsynth.c), then its record written and indexed for the call gate. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/mem.h"
#include "collector/registry.pb-c.h"
#include "services/handler.h"
#include "services/registry_priv.h"
#include "services/syscoll.h"

static Collector__Status status_ok = COLLECTOR__STATUS__INIT;

/* A method's input or output type, resolved as protoc would from the service's package:
 * ".a.b.M" is absolute, "M" is looked up in pkg, then its parents, then the root. */
const tp_message *registry_resolve_type(registry *r, const char *ns, const char *pkg,
					const char *name)
{
	if (name[0] == '.')
		return tp_find_message(r->env->types, ns, name + 1);
	char full[REGISTRY_NAME_MAX * 2];
	size_t scope = strlen(pkg);
	for (;;) {
		if (scope + 1 + strlen(name) >= sizeof(full))
			return NULL;
		size_t n = 0;
		memcpy(full, pkg, scope);
		n += scope;
		if (scope)
			full[n++] = '.';
		memcpy(full + n, name, strlen(name) + 1);
		const tp_message *m = tp_find_message(r->env->types, ns, full);
		if (m || !scope)
			return m;
		do /* drop the innermost package part */
			scope--;
		while (scope && pkg[scope] != '.');
	}
}

/* A method name protoc would take: it becomes the last part of the call's path, and of
 * the file the registry makes for the service. */
static bool method_name_ok(const char *s)
{
	if (!isalpha((unsigned char)*s) && *s != '_')
		return false;
	while (*++s)
		if (!isalnum((unsigned char)*s) && *s != '_')
			return false;
	return true;
}

/* A method without types is what upstream's own Register*Service helpers send: it admits
 * calls by name, and reflection leaves it out (there is nothing to describe). */
bool registry_method_typed(const Google__Protobuf__MethodDescriptorProto *m)
{
	return m->input_type && *m->input_type;
}

static bool method_proto_ok(svc_job *j, const Google__Protobuf__MethodDescriptorProto *m)
{
	bool in = m->input_type && *m->input_type, out = m->output_type && *m->output_type;
	if (!m->name || !*m->name) {
		svc_job_fail(j, GRPC_INVALID_ARGUMENT, "every method needs a name");
		return false;
	}
	if (in != out) {
		svc_job_fail(
			j, GRPC_INVALID_ARGUMENT,
			"method %.100s: give both an input_type and an output_type, or neither "
			"(a method admitted by name)",
			m->name);
		return false;
	}
	if (!method_name_ok(m->name)) {
		svc_job_fail(j, GRPC_INVALID_ARGUMENT, "method name '%.100s' is not an identifier",
			     m->name);
		return false;
	}
	return true;
}

/* A method this node serves keeps its compiled-in signature in every namespace. */
static bool served_signature_ok(svc_job *j, registry *r, const char *service,
				const Google__Protobuf__MethodDescriptorProto *mp,
				const tp_message *in, const tp_message *out)
{
	char path[REGISTRY_NAME_MAX * 2];
	int n = snprintf(path, sizeof(path), "/%s/%s", service, mp->name);
	if (!r->served || n < 0 || (size_t)n >= sizeof(path) ||
	    !method_table_find(r->served, path, (size_t)n))
		return true;
	const tp_service *ts = tp_find_service(r->env->types, NULL, service);
	const tp_service_info *si = ts ? tp_service_get(ts) : NULL;
	const tp_method *m = NULL;
	for (size_t i = 0; si && i < si->n_methods && !m; i++)
		if (!strcmp(si->methods[i].name, mp->name))
			m = &si->methods[i];
	if (!m ||
	    (m->input == in && m->output == out && m->client_streaming == mp->client_streaming &&
	     m->server_streaming == mp->server_streaming))
		return true;
	svc_job_fail(j, GRPC_FAILED_PRECONDITION,
		     "%s is served by this node as %s%s -> %s%s: it cannot be registered with "
		     "another signature",
		     path, m->client_streaming ? "stream " : "",
		     tp_message_get(m->input)->full_name, m->server_streaming ? "stream " : "",
		     tp_message_get(m->output)->full_name);
	return false;
}

/* The package a service's relative names resolve in: its file's, else the root. */
static const char *request_package(const Collector__RegisterServiceRequest *req)
{
	return req->file_descriptor && req->file_descriptor->package ? req->file_descriptor->package
								     : "";
}

typedef struct service_plan {
	char *full_name;
	strvec methods;
	char id[STORE_NAME_MAX + 2 + REGISTRY_NAME_MAX];
	Google__Protobuf__Timestamp created;
	bool exists;
	const char *handler; /* handler_endpoint; NULL or "": none */
} service_plan;

/* Reads what an earlier registration of the service keeps: its id and creation time. */
static bool earlier_service(svc_job *j, registry *r, const char *ns, service_plan *p)
{
	size_t len;
	uint8_t *rec = regindex_get_service(r->ix, ns, p->full_name, &len);
	if (!rec && len) {
		svc_job_fail(j, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return false;
	}
	if (!rec)
		return true;
	Collector__RegisteredService *old =
		svc_decode(&collector__registered_service__descriptor, rec, len);
	mem_free(rec);
	if (!old) {
		svc_job_fail(j, GRPC_INTERNAL, "the registration of %s is unreadable",
			     p->full_name);
		return false;
	}
	p->exists = true;
	snprintf(p->id, sizeof(p->id), "%s", old->id);
	if (old->metadata && old->metadata->created_at)
		p->created = *old->metadata->created_at;
	collector__registered_service__free_unpacked(old, NULL);
	return true;
}

static bool plan_service(svc_job *j, registry *r, const char *ns,
			 const Collector__RegisterServiceRequest *req, service_plan *p)
{
	const service_proto *sd = req->service_descriptor;
	const char *pkg = request_package(req);
	p->full_name = registry_join_name(pkg, sd->name);
	if (!p->full_name) {
		svc_job_fail(j, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return false;
	}
	if (strlen(p->full_name) > REGISTRY_NAME_MAX) {
		svc_job_fail(j, GRPC_INVALID_ARGUMENT, "service name too long");
		return false;
	}
	for (size_t i = 0; i < sd->n_method; i++) {
		const Google__Protobuf__MethodDescriptorProto *mp = sd->method[i];
		if (!method_proto_ok(j, mp))
			return false;
		if (strvec_has(&p->methods, mp->name)) {
			svc_job_fail(j, GRPC_INVALID_ARGUMENT, "method %s appears twice", mp->name);
			return false;
		}
		strvec_push(&p->methods, mem_strdup(mp->name));
		if (!registry_method_typed(mp))
			continue;
		const tp_message *in = registry_resolve_type(r, ns, pkg, mp->input_type);
		const tp_message *out = registry_resolve_type(r, ns, pkg, mp->output_type);
		if (!in || !out) {
			svc_job_fail(j, GRPC_INVALID_ARGUMENT,
				     "method %s.%s: %s type '%s' is not known in namespace '%s'",
				     p->full_name, mp->name, in ? "output" : "input",
				     in ? mp->output_type : mp->input_type, ns);
			return false;
		}
		if (!served_signature_ok(j, r, p->full_name, mp, in, out))
			return false;
	}
	if (p->methods.failed) {
		svc_job_fail(j, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return false;
	}
	return earlier_service(j, r, ns, p);
}

/* The node's own services in its default namespace (registered at every start) do not
 * count against the quotas; everywhere else a service does. */
bool registry_service_counts(registry *r, const char *ns, const char *name)
{
	return strcmp(ns, r->env->default_ns) || !tp_find_service(r->env->types, NULL, name);
}

static void service_record(Collector__RegisteredService *rec, const char *ns, service_plan *p,
			   const service_proto *sd, Collector__Metadata *md)
{
	collector__registered_service__init(rec);
	rec->id = p->id;
	rec->namespace_ = (char *)ns;
	rec->service_name = p->full_name;
	rec->service_descriptor = (service_proto *)sd;
	rec->n_method_names = p->methods.n;
	rec->method_names = p->methods.v;
	rec->metadata = md;
	if (p->handler && *p->handler)
		rec->handler_endpoint = (char *)p->handler;
}

static bool save_service(svc_job *j, registry *r, const char *ns, service_plan *p,
			 const service_proto *sd)
{
	Google__Protobuf__Timestamp now;
	registry_now(&now);
	/* Upstream's id, "<ns>/<service>": a service keeps no history, so it is its only id
	 * (one registered by an older build keeps the UUID it was given). */
	if (!p->exists) {
		p->created = now;
		snprintf(p->id, sizeof(p->id), "%s/%s", ns, p->full_name);
	}
	Collector__Metadata md = COLLECTOR__METADATA__INIT;
	md.created_at = &p->created;
	md.updated_at = &now;
	Collector__RegisteredService rec;
	service_record(&rec, ns, p, sd, &md);
	syscoll_row row;
	int rc = syscoll_row_make(r->env->types, &rec.base, &row);
	regquota_item it = {.service = p->full_name, .bytes = row.len};
	bool counts = registry_service_counts(r, ns, p->full_name);
	if (!rc && counts && !registry_quota_allows(j, r, ns, &it, 1)) {
		syscoll_row_free(&row);
		return false;
	}
	store_op op = {.kind = p->exists ? STORE_OP_UPDATE : STORE_OP_INSERT,
		       .id = p->id,
		       .row = {row.data, row.len, row.json.text, NULL}};
	if (!rc)
		rc = syscoll_write_wait(r->services, &op, 1);
	if (!rc)
		rc = regindex_put_service(r->ix, ns, p->full_name, row.data, row.len, p->methods.v,
					  p->methods.n);
	syscoll_row_free(&row);
	if (rc) {
		svc_fail_store(j, rc, "saving the service");
		return false;
	}
	if (counts && regquota_add(r->quota, ns, &it, 1))
		log_error("registry: out of memory counting %s against the quotas", p->full_name);
	return true;
}

/* Whether the service gets the file the registry makes: when no file of ns (nor the node)
 * declares it, or when that file is the one made before (made again: the methods may have
 * changed since). */
static bool needs_made_file(registry *r, const char *ns, const char *full)
{
	return !tp_find_service(r->env->types, ns, full) || registry_made_file(r, ns, full);
}

static bool declare_service(svc_job *j, registry *r, const char *ns,
			    const Collector__RegisterServiceRequest *req, const service_plan *p)
{
	if (!needs_made_file(r, ns, p->full_name))
		return true;
	registry_synth s;
	char *id = NULL;
	/* plan_service resolved every type: only memory can fail here. */
	int rc = registry_synth_build(r, ns, request_package(req), req->service_descriptor,
				      p->full_name, &s);
	bool ok = !rc || rc == -ENODATA;
	if (!rc) {
		registry_file_set fs = {.v = {&s.fd}, .n = 1};
		ok = registry_register_files(j, r, ns, &fs, &id);
	} else if (!ok) {
		svc_job_fail(j, GRPC_RESOURCE_EXHAUSTED, "out of memory");
	}
	mem_free(id);
	registry_synth_free(&s);
	return ok;
}

/* An upper bound of the size of the service's record (save_service), for service_fits:
 * metadata of two timestamps, every field at most. */
static size_t record_bound(const char *ns, const char *full, const service_proto *sd,
			   const char *handler)
{
	size_t n = protobuf_c_message_get_packed_size(&sd->base) + 2 * strlen(ns) + strlen(full) +
		   strlen(full) + 2 * (2 * (11 + 6) + REGISTRY_FIELD_MAX) + 7 * REGISTRY_FIELD_MAX +
		   (handler ? strlen(handler) : 0);
	for (size_t i = 0; i < sd->n_method; i++)
		n += strlen(sd->method[i]->name) + REGISTRY_FIELD_MAX;
	return n;
}

/* Whether the whole registration fits the quotas, checked before any of it is written:
 * the file, the file made for the service when no file declares it, and the service's
 * record. Sizes not known yet are bounded from above, so that no later step is refused. */
static bool service_fits(svc_job *j, registry *r, const char *ns,
			 const Collector__RegisterServiceRequest *req)
{
	const service_proto *sd = req->service_descriptor;
	const file_proto *fd = req->file_descriptor;
	for (size_t i = 0; i < sd->n_method; i++)
		if (!method_proto_ok(j, sd->method[i]))
			return false;
	const char *pkg = request_package(req);
	regquota_item items[3];
	size_t n = 0, len = 0;
	registry_file_set fs = {.v = {fd}, .n = 1};
	char *full = registry_join_name(pkg, sd->name);
	registry_synth s = {0};
	uint8_t *bytes = NULL;
	bool ok = full && (!fd || registry_mark_changes(r, ns, &fs));
	if (ok && fd && fs.changed[0])
		items[n++] =
			(regquota_item){.file = fd->name,
					.bytes = protobuf_c_message_get_packed_size(&fd->base)};
	bool declared = false;
	for (size_t i = 0; fd && i < fd->n_service; i++)
		declared |= fd->service[i]->name && !strcmp(fd->service[i]->name, sd->name);
	if (ok && !declared && needs_made_file(r, ns, full)) {
		int rc = registry_synth_build(r, ns, pkg, sd, full, &s);
		const uint8_t *old;
		size_t old_len;
		if (!rc && (bytes = registry_pack(&s.fd.base, &len)) &&
		    !(tp_file_bytes(r->env->types, ns, s.fd.name, &old, &old_len) &&
		      old_len == len && !memcmp(old, bytes, len)))
			items[n++] = (regquota_item){.file = s.fd.name, .bytes = len};
		else if (rc == -ENOENT)
			items[n++] = (regquota_item){
				.file = s.fd.name,
				.bytes = registry_synth_bound(r, ns, pkg, sd, full, fd)};
		ok = rc != -ENOMEM && (rc || bytes); /* -ENODATA: no file is made */
	}
	if (ok && registry_service_counts(r, ns, full))
		items[n++] =
			(regquota_item){.service = full,
					.bytes = record_bound(ns, full, sd, req->handler_endpoint)};
	if (ok)
		ok = registry_quota_allows(j, r, ns, items, n);
	else
		svc_job_fail(j, GRPC_RESOURCE_EXHAUSTED, "out of memory");
	mem_free(bytes);
	mem_free(full);
	registry_synth_free(&s);
	return ok;
}

void registry_register_service(registry *r, svc_job *sj, const char *ns,
			       const Collector__RegisterServiceRequest *req)
{
	const service_proto *sd = req->service_descriptor;
	if (!svc_check_user_ns(sj, ns))
		return;
	if (!sd || !sd->name || !*sd->name) {
		svc_job_fail(sj, GRPC_INVALID_ARGUMENT,
			     "service_descriptor with a name is required");
		return;
	}
	if (!sd->n_method) {
		svc_job_fail(sj, GRPC_INVALID_ARGUMENT, "service %s has no methods", sd->name);
		return;
	}
	char why[200];
	const char *handler = req->handler_endpoint;
	if (handler && *handler && !handler_endpoint_valid(handler, why, sizeof(why))) {
		svc_job_fail(sj, GRPC_INVALID_ARGUMENT, "handler_endpoint '%.100s': %s", handler,
			     why);
		return;
	}
	registry_file_set fs = {0};
	if (req->file_descriptor && !registry_order_files(sj, &fs, NULL, 0, req->file_descriptor))
		return;
	service_plan p = {.handler = handler};
	char *file_id = NULL;
	pthread_mutex_lock(&r->lock);
	bool ok = registry_alias_files(sj, r, ns, &fs) && service_fits(sj, r, ns, req) &&
		  (!req->file_descriptor || registry_register_files(sj, r, ns, &fs, &file_id)) &&
		  plan_service(sj, r, ns, req, &p) && declare_service(sj, r, ns, req, &p) &&
		  save_service(sj, r, ns, &p, sd);
	pthread_mutex_unlock(&r->lock);
	registry_unalias_files(&fs);
	if (ok) {
		Collector__RegisterServiceResponse resp =
			COLLECTOR__REGISTER_SERVICE_RESPONSE__INIT;
		resp.status = &status_ok;
		resp.service_id = p.id;
		resp.n_registered_methods = p.methods.n;
		resp.registered_methods = p.methods.v;
		svc_job_answer(sj, &resp.base);
	}
	mem_free(file_id);
	mem_free(p.full_name);
	strvec_free(&p.methods);
}

/* ---- the node's own services ---- */

/* Whether ns already has the service `name` registered with exactly this descriptor. */
static bool same_service(registry *r, const char *ns, const char *name, const service_proto *sd)
{
	size_t len, a_len, b_len;
	uint8_t *rec = regindex_get_service(r->ix, ns, name, &len);
	Collector__RegisteredService *old =
		rec ? svc_decode(&collector__registered_service__descriptor, rec, len) : NULL;
	mem_free(rec);
	if (!old || !old->service_descriptor) {
		if (old)
			collector__registered_service__free_unpacked(old, NULL);
		return false;
	}
	uint8_t *a = registry_pack(&old->service_descriptor->base, &a_len);
	uint8_t *b = registry_pack(&sd->base, &b_len);
	bool same = a && b && a_len == b_len && !memcmp(a, b, a_len);
	mem_free(a);
	mem_free(b);
	collector__registered_service__free_unpacked(old, NULL);
	return same;
}

typedef struct node_services {
	registry *r;
	int rc;
} node_services;

/* The compiled-in ServiceDescriptorProto of a service, from its file. */
static void add_node_service(const char *service, size_t len, void *arg)
{
	node_services *ns = arg;
	registry *r = ns->r;
	if (ns->rc)
		return;
	char name[REGISTRY_NAME_MAX];
	snprintf(name, sizeof(name), "%.*s", (int)len, service);
	const tp_service *ts = tp_find_service(r->env->types, NULL, name);
	const uint8_t *bytes;
	size_t blen;
	if (!ts || !tp_file_bytes(r->env->types, NULL, tp_service_get(ts)->file, &bytes, &blen)) {
		log_warn("registry: %s has no compiled-in descriptor: not registered", name);
		return;
	}
	file_proto *fp =
		svc_decode(&google__protobuf__file_descriptor_proto__descriptor, bytes, blen);
	service_proto *sd = NULL;
	for (size_t i = 0; fp && i < fp->n_service && !sd; i++) {
		char full[REGISTRY_NAME_MAX * 2];
		const char *pkg = fp->package ? fp->package : "";
		snprintf(full, sizeof(full), "%s%s%s", pkg, *pkg ? "." : "", fp->service[i]->name);
		if (!strcmp(full, name))
			sd = fp->service[i];
	}
	service_plan p = {.full_name = name};
	for (size_t i = 0; sd && i < sd->n_method; i++)
		strvec_push(&p.methods, mem_strdup(sd->method[i]->name));
	/* Kept like any registration, so that ids and creation times survive restarts; written
	 * again only when the node's descriptor changed. */
	svc_job j = {0};
	const char *dns = r->env->default_ns;
	if (!sd || p.methods.failed)
		ns->rc = -ENOMEM;
	else if (earlier_service(&j, r, dns, &p) && !same_service(r, dns, name, sd) &&
		 !save_service(&j, r, dns, &p, sd))
		log_error("registry: %s not kept: %s", name, j.msg);
	if (!ns->rc && j.code)
		ns->rc = -EIO;
	strvec_free(&p.methods);
	if (fp)
		google__protobuf__file_descriptor_proto__free_unpacked(fp, NULL);
}

int registry_add_node_services(registry *r, const method_table *t)
{
	r->served = t;
	node_services ns = {.r = r};
	method_table_each_service(t, add_node_service, &ns);
	return ns.rc;
}
