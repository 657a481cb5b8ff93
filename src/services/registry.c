#include "services/registry.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/mem.h"
#include "collector/collection.pb-c.h"
#include "collector/registry.pb-c.h"
#include "services/registry_priv.h"
#include "services/syscoll.h"
#include "store/json.h"

#define REG "/collector.CollectorRegistry/"
#define PROTOS "RegisteredProtos"
#define SERVICES "RegisteredServices"

static Collector__Status status_ok = COLLECTOR__STATUS__INIT;

/* ---- small helpers ---- */

static size_t key2(char *buf, size_t cap, const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la + 1 + lb > cap)
		return 0;
	memcpy(buf, a, la + 1);
	memcpy(buf + la + 1, b, lb);
	return la + 1 + lb;
}

void registry_now(Google__Protobuf__Timestamp *ts)
{
	int64_t us = clock_wall_ns() / 1000;
	google__protobuf__timestamp__init(ts);
	ts->seconds = us / 1000000;
	ts->nanos = (int32_t)(us % 1000000) * 1000;
}

uint8_t *registry_pack(const ProtobufCMessage *m, size_t *len)
{
	*len = protobuf_c_message_get_packed_size(m);
	uint8_t *b = mem_alloc(*len ? *len : 1);
	if (b)
		protobuf_c_message_pack(m, b);
	return b;
}

char *registry_join_name(const char *scope, const char *name)
{
	char *s;
	if (mem_asprintf(&s, "%s%s%s", scope, *scope ? "." : "", name ? name : "") < 0)
		return NULL;
	return s;
}

/* Full names of a message and the messages nested in it. */
static void message_names(const message_proto *mp, const char *scope, strvec *out)
{
	char *full = registry_join_name(scope, mp->name);
	strvec_push(out, full);
	if (!full || out->failed)
		return;
	for (size_t i = 0; i < mp->n_nested_type; i++)
		message_names(mp->nested_type[i], full, out);
}

/* Full names of the file's top-level messages: what upstream calls its registered messages
 * (nested types and map entries belong to them). */
static void top_messages(const file_proto *fp, strvec *out)
{
	const char *pkg = fp->package ? fp->package : "";
	for (size_t i = 0; i < fp->n_message_type; i++)
		strvec_push(out, registry_join_name(pkg, fp->message_type[i]->name));
}

static void registry_file_messages(const file_proto *fp, strvec *out)
{
	for (size_t i = 0; i < fp->n_message_type; i++)
		message_names(fp->message_type[i], fp->package ? fp->package : "", out);
}

/* ---- persistence: the system collections (syscoll.h) ---- */

typedef struct replay {
	registry *r;
	void (*fn)(registry *r, const uint8_t *data, size_t len);
} replay;

static int replay_one(void *ctx, const store_record *rec)
{
	replay *p = ctx;
	p->fn(p->r, rec->data, rec->data_len);
	return 0;
}

/* Calls fn with every record of c, oldest first. */
static int sys_each(registry *r, store_coll *c,
		    void (*fn)(registry *r, const uint8_t *data, size_t len))
{
	replay p = {r, fn};
	return syscoll_each(c, replay_one, &p);
}

/* ---- registering files ---- */

/* Orders deps and main so that each file comes after the files of the set it imports. */
bool registry_order_files(svc_job *j, registry_file_set *fs,
			  Google__Protobuf__FileDescriptorProto *const *deps, size_t n_deps,
			  const file_proto *main)
{
	if (n_deps > REGISTRY_MAX_DEPENDENCIES) {
		svc_job_fail(j, GRPC_INVALID_ARGUMENT, "at most %d dependencies per request",
			     REGISTRY_MAX_DEPENDENCIES);
		return false;
	}
	const file_proto *all[REGISTRY_MAX_DEPENDENCIES + 1];
	bool placed[REGISTRY_MAX_DEPENDENCIES + 1] = {0};
	size_t total = 0;
	for (size_t i = 0; i < n_deps; i++)
		all[total++] = deps[i];
	all[total++] = main;
	for (size_t i = 0; i < total; i++)
		if (!all[i] || !all[i]->name || !all[i]->name[0]) {
			svc_job_fail(j, GRPC_INVALID_ARGUMENT, "a file descriptor has no name");
			return false;
		}
	*fs = (registry_file_set){0};
	while (fs->n < total) {
		size_t before = fs->n;
		for (size_t i = 0; i < total; i++) {
			if (placed[i])
				continue;
			bool ready = true;
			for (size_t d = 0; d < all[i]->n_dependency && ready; d++)
				for (size_t k = 0; k < total; k++)
					if (!placed[k] && k != i &&
					    !strcmp(all[k]->name, all[i]->dependency[d]))
						ready = false;
			if (ready) {
				placed[i] = true;
				fs->v[fs->n++] = all[i];
			}
		}
		if (fs->n == before) {
			svc_job_fail(j, GRPC_INVALID_ARGUMENT,
				     "the files import each other in a cycle");
			return false;
		}
	}
	return true;
}

/* Whether the namespace already has fp exactly (or the node compiles in a file of that
 * name, which then stands); sets fs->changed. */
bool registry_mark_changes(registry *r, const char *ns, registry_file_set *fs)
{
	for (size_t i = 0; i < fs->n; i++) {
		const uint8_t *old;
		size_t old_len, len;
		fs->changed[i] = false;
		if (tp_file_bytes(r->env->types, NULL, fs->v[i]->name, &old, &old_len))
			continue;
		uint8_t *now = registry_pack(&fs->v[i]->base, &len);
		if (!now)
			return false;
		fs->changed[i] =
			!tp_file_bytes(r->env->types, ns, fs->v[i]->name, &old, &old_len) ||
			old_len != len || memcmp(old, now, len);
		mem_free(now);
	}
	return true;
}

typedef struct users_ctx {
	char coll[160];
} users_ctx;

static int first_user(void *ctx, const store_collection *c)
{
	users_ctx *u = ctx;
	snprintf(u->coll, sizeof(u->coll), "%s/%s", c->ns, c->name);
	return 1;
}

/* A message the new version of a file drops may not be the type of a collection. */
static bool check_removed(svc_job *j, registry *r, const char *ns, const file_proto *fp)
{
	const uint8_t *old_bytes;
	size_t old_len;
	if (!tp_file_bytes(r->env->types, ns, fp->name, &old_bytes, &old_len))
		return true;
	file_proto *old = svc_decode(&google__protobuf__file_descriptor_proto__descriptor,
				     old_bytes, old_len);
	strvec before = {0}, after = {0};
	bool ok = old != NULL;
	if (ok) {
		registry_file_messages(old, &before);
		registry_file_messages(fp, &after);
		ok = !before.failed && !after.failed;
	}
	if (!ok)
		svc_job_fail(j, GRPC_RESOURCE_EXHAUSTED, "out of memory");
	for (size_t i = 0; ok && i < before.n; i++) {
		if (strvec_has(&after, before.v[i]))
			continue;
		users_ctx u = {{0}};
		store_list_filter f = {.type_ns = ns, .type_name = before.v[i], .limit = 1};
		int rc = store_collection_list(r->env->store, &f, first_user, &u, NULL);
		if (rc == 1) {
			svc_job_fail(
				j, GRPC_FAILED_PRECONDITION,
				"incompatible change of %s: message %s is removed but collection "
				"%s uses it",
				fp->name, before.v[i], u.coll);
			ok = false;
		} else if (rc) {
			svc_fail_store(j, rc, "checking the collections");
			ok = false;
		}
	}
	strvec_free(&before);
	strvec_free(&after);
	if (old)
		google__protobuf__file_descriptor_proto__free_unpacked(old, NULL);
	return ok;
}

static char *proto_id_of(registry *r, const char *ns, const char *file)
{
	char key[REGISTRY_NAME_MAX * 2];
	size_t klen = key2(key, sizeof(key), ns, file);
	const char *id = klen ? strmap_get(&r->file_ids, key, klen) : NULL;
	if (id)
		return mem_strdup(id);
	if (tp_file_bytes(r->env->types, NULL, file, &(const uint8_t *){0}, &(size_t){0})) {
		char *s;
		return mem_asprintf(&s, "%s/%s", ns, file) < 0 ? NULL : s;
	}
	return NULL;
}

/* Upstream's ids: "<ns>/<file>" for a file's first version, "<ns>/<file>@<n>" for its n-th
 * (every version is kept). The newest version's id gives the next one; a file whose newest
 * id has another form (a UUID of an older build) starts again at "<ns>/<file>", which no
 * record of that build holds. A removal deletes every version, so the ids start over.
 * NULL when out of memory. */
static char *next_proto_id(registry *r, const char *ns, const char *file)
{
	char *base, *id;
	if (mem_asprintf(&base, "%s/%s", ns, file) < 0)
		return NULL;
	char key[REGISTRY_NAME_MAX * 2];
	size_t klen = key2(key, sizeof(key), ns, file);
	const char *newest = klen ? strmap_get(&r->file_ids, key, klen) : NULL;
	size_t blen = strlen(base);
	unsigned long next = 0;
	if (newest && !strcmp(newest, base)) {
		next = 2;
	} else if (newest && !strncmp(newest, base, blen) && newest[blen] == '@') {
		char *end;
		unsigned long n = strtoul(newest + blen + 1, &end, 10);
		next = *end || n < 2 ? 0 : n + 1;
	}
	if (!next)
		return base;
	int n = mem_asprintf(&id, "%s@%lu", base, next);
	mem_free(base);
	return n < 0 ? NULL : id;
}

static void remember_id(registry *r, const char *ns, const char *file, const char *id)
{
	char key[REGISTRY_NAME_MAX * 2];
	size_t klen = key2(key, sizeof(key), ns, file);
	char *copy = mem_strdup(id);
	void *old = NULL;
	if (!klen || !copy || strmap_put(&r->file_ids, key, klen, copy, &old)) {
		mem_free(copy);
		return;
	}
	mem_free(old);
}

/* After a file took effect: its fields join the ledger, its id is the file's newest. */
static void file_applied(registry *r, const char *ns, const file_proto *fp, const char *id)
{
	strvec names = {0};
	registry_file_messages(fp, &names);
	for (size_t i = 0; i < names.n; i++) {
		const tp_message *m = tp_find_message(r->env->types, ns, names.v[i]);
		if (m)
			regledger_record(&r->ledger, ns, m);
	}
	strvec_free(&names);
	remember_id(r, ns, fp->name, id);
}

void registry_file_removed(registry *r, const char *ns, const char *file, const strvec *messages)
{
	char key[REGISTRY_NAME_MAX * 2];
	size_t klen = key2(key, sizeof(key), ns, file);
	if (klen)
		mem_free(strmap_del(&r->file_ids, key, klen));
	/* A message another file of ns defines now keeps its history: that file took the
	 * name over (after an earlier version of this one dropped it), and its numbers are
	 * in the same entries. */
	char **gone = mem_calloc(messages->n + 1, sizeof(*gone));
	size_t n = 0;
	for (size_t i = 0; gone && i < messages->n; i++)
		if (!tp_symbol_file(r->env->types, ns, messages->v[i]))
			gone[n++] = messages->v[i];
	if (!gone || !regledger_forget(&r->ledger, ns, gone, n))
		log_error("registry: out of memory forgetting the field numbers of %s in %s: some "
			  "still count",
			  file, ns);
	mem_free(gone);
}

static void proto_record(Collector__RegisteredProto *rec, const char *id, const char *ns,
			 const file_proto *fp, strvec *names, Collector__Metadata *md)
{
	collector__registered_proto__init(rec);
	rec->id = (char *)id;
	rec->namespace_ = (char *)ns;
	rec->n_message_names = names->n;
	rec->message_names = names->v;
	rec->file_descriptor = (file_proto *)fp;
	rec->n_dependencies = fp->n_dependency;
	rec->dependencies = fp->dependency;
	rec->metadata = md;
}

/* Whether ns can take the items (regquota_allows); fails j with RESOURCE_EXHAUSTED when
 * not. */
bool registry_quota_allows(svc_job *j, registry *r, const char *ns, const regquota_item *items,
			   size_t n)
{
	char msg[sizeof(j->msg)];
	if (regquota_allows(r->quota, ns, items, n, msg, sizeof(msg)))
		return true;
	svc_job_fail(j, GRPC_RESOURCE_EXHAUSTED, "%s", msg);
	return false;
}

/* Checks, persists and applies the files of fs in ns; the caller holds r->lock. *id gets
 * the id of the last file (the main one). Fails j and returns false when it cannot. */
bool registry_register_files(svc_job *j, registry *r, const char *ns, registry_file_set *fs,
			     char **main_id)
{
	*main_id = NULL;
	if (!registry_mark_changes(r, ns, fs)) {
		svc_job_fail(j, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return false;
	}
	/* The quotas first: a refusal costs no build of the files. */
	regquota_item items[REGISTRY_MAX_DEPENDENCIES + 1];
	size_t nitems = 0;
	for (size_t i = 0; i < fs->n; i++)
		if (fs->changed[i])
			items[nitems++] = (regquota_item){
				.file = fs->v[i]->name,
				.bytes = protobuf_c_message_get_packed_size(&fs->v[i]->base)};
	if (!registry_quota_allows(j, r, ns, items, nitems))
		return false;
	for (size_t i = 0; i < fs->n; i++)
		if (fs->changed[i] && !check_removed(j, r, ns, fs->v[i]))
			return false;
	regledger_check cc = {.l = &r->ledger, .ns = ns};
	tp_staged *staged;
	int rc = tp_stage_files(r->env->types, ns, fs->v, fs->n, regledger_check_fn, &cc, &staged);
	if (rc) {
		svc_job_fail(j,
			     rc == -ENOMEM ? GRPC_RESOURCE_EXHAUSTED
			     : cc.refused  ? GRPC_FAILED_PRECONDITION
					   : GRPC_INVALID_ARGUMENT,
			     "%s", store_err_msg());
		return false;
	}

	/* Durable first, then visible: nothing answered can be lost, and nothing visible can
	 * vanish at a restart. */
	store_op ops[REGISTRY_MAX_DEPENDENCIES + 1];
	syscoll_row rows[REGISTRY_MAX_DEPENDENCIES + 1];
	char *ids[REGISTRY_MAX_DEPENDENCIES + 1] = {0};
	size_t nops = 0;
	Google__Protobuf__Timestamp ts;
	registry_now(&ts);
	Collector__Metadata md = COLLECTOR__METADATA__INIT;
	md.created_at = md.updated_at = &ts;
	bool ok = true;
	for (size_t i = 0; i < fs->n && ok; i++) {
		if (!fs->changed[i])
			continue;
		strvec names = {0};
		registry_file_messages(fs->v[i], &names);
		Collector__RegisteredProto rec;
		ids[i] = next_proto_id(r, ns, fs->v[i]->name);
		proto_record(&rec, ids[i], ns, fs->v[i], &names, &md);
		ok = !names.failed && ids[i];
		syscoll_row *row = &rows[nops++];
		*row = (syscoll_row){.json = BUF_INIT};
		ok = ok && !syscoll_row_make(r->env->types, &rec.base, row);
		strvec_free(&names);
		ops[nops - 1] = (store_op){.kind = STORE_OP_INSERT,
					   .id = ids[i],
					   .row = {row->data, row->len, row->json.text, NULL}};
	}
	/* The answer's id before the save, so that a saved registration is not answered
	 * with a failure for want of memory. */
	size_t last = fs->n - 1;
	if (ok)
		*main_id = fs->changed[last] ? mem_strdup(ids[last])
					     : proto_id_of(r, ns, fs->v[last]->name);
	rc = ok && *main_id ? (nops ? syscoll_write_wait(r->protos, ops, nops) : 0) : -ENOMEM;
	for (size_t i = 0; i < nops; i++)
		syscoll_row_free(&rows[i]);
	if (rc || !nops)
		tp_unstage(staged);
	if (rc) {
		for (size_t i = 0; i < fs->n; i++)
			mem_free(ids[i]);
		mem_free(*main_id);
		*main_id = NULL;
		svc_fail_store(j, rc, "saving the registration");
		return false;
	}
	if (nops)
		tp_publish(staged);
	for (size_t i = 0; i < fs->n; i++) {
		if (fs->changed[i])
			file_applied(r, ns, fs->v[i], ids[i]);
		mem_free(ids[i]);
	}
	if (regquota_add(r->quota, ns, items, nitems))
		log_error("registry: out of memory counting %s against the quotas",
			  fs->v[fs->n - 1]->name);
	return true;
}

/* ---- RegisterProto ---- */

static registry *registry_of(svc_req_job *j) { return j->env->registry; }

void registry_register_proto(registry *r, svc_job *sj, const char *ns,
			     const Collector__RegisterProtoRequest *req)
{
	if (!svc_check_user_ns(sj, ns))
		return;
	if (!req->file_descriptor || !req->file_descriptor->name || !*req->file_descriptor->name) {
		svc_job_fail(sj, GRPC_INVALID_ARGUMENT, "file_descriptor with a name is required");
		return;
	}
	registry_file_set fs;
	if (!registry_order_files(sj, &fs, req->dependencies, req->n_dependencies,
				  req->file_descriptor))
		return;
	char *id = NULL;
	pthread_mutex_lock(&r->lock);
	bool ok = registry_alias_files(sj, r, ns, &fs) &&
		  registry_register_files(sj, r, ns, &fs, &id);
	pthread_mutex_unlock(&r->lock);
	registry_unalias_files(&fs);
	if (!ok)
		return;
	strvec names = {0};
	top_messages(req->file_descriptor, &names);
	Collector__RegisterProtoResponse resp = COLLECTOR__REGISTER_PROTO_RESPONSE__INIT;
	resp.status = &status_ok;
	resp.proto_id = id;
	resp.n_registered_messages = names.n;
	resp.registered_messages = names.v;
	if (names.failed)
		svc_job_fail(sj, GRPC_RESOURCE_EXHAUSTED, "out of memory");
	else
		svc_job_answer(sj, &resp.base);
	strvec_free(&names);
	mem_free(id);
}

static void register_proto_work(svc_job *sj)
{
	svc_req_job *j = (svc_req_job *)sj;
	registry_register_proto(registry_of(j), sj, j->ns, j->req);
}

static void register_proto(call *c, const ProtobufCMessage *msg)
{
	const Collector__RegisterProtoRequest *req = (const void *)msg;
	svc_start(c, req, req->namespace_, register_proto_work);
}

static void register_service_work(svc_job *sj)
{
	svc_req_job *j = (svc_req_job *)sj;
	registry_register_service(registry_of(j), sj, j->ns, j->req);
}

static void register_service(call *c, const ProtobufCMessage *msg)
{
	const Collector__RegisterServiceRequest *req = (const void *)msg;
	svc_start(c, req, req->namespace_, register_service_work);
}

/* ---- LookupService, ValidateMethod, ListServices ---- */

static bool name_given(svc_job *j, const char *what, const char *s)
{
	if (s && *s)
		return true;
	svc_job_fail(j, GRPC_INVALID_ARGUMENT, "%s is required", what);
	return false;
}

/* "... may mean a or b": the message of a name that stands for several services, in a
 * buffer of AMBIGUOUS_MAX bytes. */
#define AMBIGUOUS_MAX 800
static void say_ambiguous(char *msg, size_t cap, const char *name, const char *ns, const char *a,
			  const char *b)
{
	snprintf(msg, cap,
		 "service name '%.200s' is ambiguous in namespace '%s': it may mean %.200s or "
		 "%.200s; give the full name",
		 name, ns, a, b);
}

static void lookup_work(svc_job *sj)
{
	svc_req_job *j = (svc_req_job *)sj;
	const Collector__LookupServiceRequest *req = j->req;
	registry *r = registry_of(j);
	if (!svc_check_user_ns(sj, j->ns) || !name_given(sj, "service_name", req->service_name))
		return;
	char full[REGISTRY_NAME_MAX + 1], other[REGISTRY_NAME_MAX + 1];
	int found = regindex_resolve_service(r->ix, j->ns, req->service_name, full, sizeof(full),
					     other, sizeof(other));
	if (found == REGINDEX_AMBIGUOUS) {
		char msg[AMBIGUOUS_MAX];
		say_ambiguous(msg, sizeof(msg), req->service_name, j->ns, full, other);
		svc_job_fail(sj, GRPC_FAILED_PRECONDITION, "%s", msg);
		return;
	}
	size_t len = 0;
	uint8_t *rec =
		found == REGINDEX_FOUND ? regindex_get_service(r->ix, j->ns, full, &len) : NULL;
	if (!rec) {
		if (len)
			svc_job_fail(sj, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		else
			svc_job_fail(sj, GRPC_NOT_FOUND,
				     "service %.200s is not registered in namespace '%s'",
				     req->service_name, j->ns);
		return;
	}
	Collector__RegisteredService *s =
		svc_decode(&collector__registered_service__descriptor, rec, len);
	mem_free(rec);
	if (!s) {
		svc_job_fail(sj, GRPC_INTERNAL, "the registration is unreadable");
		return;
	}
	Collector__LookupServiceResponse resp = COLLECTOR__LOOKUP_SERVICE_RESPONSE__INIT;
	resp.status = &status_ok;
	resp.service = s;
	svc_job_answer(sj, &resp.base);
	collector__registered_service__free_unpacked(s, NULL);
}

static void lookup(call *c, const ProtobufCMessage *msg)
{
	const Collector__LookupServiceRequest *req = (const void *)msg;
	svc_start(c, req, req->namespace_, lookup_work);
}

static void validate_work(svc_job *sj)
{
	svc_req_job *j = (svc_req_job *)sj;
	const Collector__ValidateMethodRequest *req = j->req;
	registry *r = registry_of(j);
	if (!svc_check_user_ns(sj, j->ns) || !name_given(sj, "service_name", req->service_name) ||
	    !name_given(sj, "method_name", req->method_name))
		return;
	char full[REGISTRY_NAME_MAX + 1], other[REGISTRY_NAME_MAX + 1];
	int found = regindex_resolve_service(r->ix, j->ns, req->service_name, full, sizeof(full),
					     other, sizeof(other));
	char *path;
	int n = mem_asprintf(&path, "/%s/%s", found == REGINDEX_FOUND ? full : req->service_name,
			     req->method_name);
	if (n < 0) {
		svc_job_fail(sj, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	bool valid = found == REGINDEX_FOUND &&
		     regindex_has_method(r->ix, j->ns, strlen(j->ns), path, (size_t)n);
	char text[AMBIGUOUS_MAX];
	if (found == REGINDEX_AMBIGUOUS)
		say_ambiguous(text, sizeof(text), req->service_name, j->ns, full, other);
	else
		snprintf(text, sizeof(text), "%.300s is %sregistered in namespace '%s'", path,
			 valid ? "" : "not ", j->ns);
	Collector__ValidateMethodResponse resp = COLLECTOR__VALIDATE_METHOD_RESPONSE__INIT;
	resp.status = &status_ok;
	resp.is_valid = valid;
	resp.message = text;
	svc_job_answer(sj, &resp.base);
	mem_free(path);
}

static void validate(call *c, const ProtobufCMessage *msg)
{
	const Collector__ValidateMethodRequest *req = (const void *)msg;
	svc_start(c, req, req->namespace_, validate_work);
}

typedef struct listing {
	Collector__RegisteredService **v;
	size_t n, cap;
} listing;

static int list_one(void *ctx, const char *ns, const char *name, const uint8_t *rec, size_t len)
{
	(void)ns, (void)name;
	listing *l = ctx;
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16;
		Collector__RegisteredService **v = mem_realloc(l->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n] = svc_decode(&collector__registered_service__descriptor, rec, len);
	return l->v[l->n++] ? 0 : -ENOMEM;
}

static void list_work(svc_job *sj)
{
	svc_req_job *j = (svc_req_job *)sj;
	const Collector__ListServicesRequest *req = j->req;
	registry *r = registry_of(j);
	/* An empty namespace asks for every namespace (not the caller's). */
	const char *ns = req->namespace_ && *req->namespace_ ? req->namespace_ : NULL;
	if (ns && !svc_check_user_ns(sj, ns))
		return;
	/* A namespace with nothing registered has no services: an empty list, as upstream. */
	listing l = {0};
	int rc = regindex_each_service(r->ix, ns, list_one, &l);
	if (rc) {
		svc_job_fail(sj, GRPC_RESOURCE_EXHAUSTED, "out of memory");
	} else {
		Collector__ListServicesResponse resp = COLLECTOR__LIST_SERVICES_RESPONSE__INIT;
		resp.status = &status_ok;
		resp.n_services = l.n;
		resp.services = l.v;
		svc_job_answer(sj, &resp.base);
	}
	for (size_t i = 0; i < l.n; i++)
		if (l.v[i])
			collector__registered_service__free_unpacked(l.v[i], NULL);
	mem_free(l.v);
}

static void list(call *c, const ProtobufCMessage *msg) { svc_start(c, msg, NULL, list_work); }

static void unregister_proto_work(svc_job *sj)
{
	svc_req_job *j = (svc_req_job *)sj;
	registry_unregister_proto(registry_of(j), sj, j->ns, j->req);
}

static void unregister_proto(call *c, const ProtobufCMessage *msg)
{
	const Collector__UnregisterProtoRequest *req = (const void *)msg;
	svc_start(c, req, req->namespace_, unregister_proto_work);
}

static void unregister_service_work(svc_job *sj)
{
	svc_req_job *j = (svc_req_job *)sj;
	registry_unregister_service(registry_of(j), sj, j->ns, j->req);
}

static void unregister_service(call *c, const ProtobufCMessage *msg)
{
	const Collector__UnregisterServiceRequest *req = (const void *)msg;
	svc_start(c, req, req->namespace_, unregister_service_work);
}

int registry_register(method_table *t, svc_env *env)
{
	const method methods[] = {
		{REG "RegisterProto",
		 METHOD_UNARY,
		 &collector__register_proto_request__descriptor,
		 &collector__register_proto_response__descriptor,
		 {.on_request = register_proto, .on_cancel = svc_job_on_cancel},
		 env},
		{REG "RegisterService",
		 METHOD_UNARY,
		 &collector__register_service_request__descriptor,
		 &collector__register_service_response__descriptor,
		 {.on_request = register_service, .on_cancel = svc_job_on_cancel},
		 env},
		{REG "LookupService",
		 METHOD_UNARY,
		 &collector__lookup_service_request__descriptor,
		 &collector__lookup_service_response__descriptor,
		 {.on_request = lookup, .on_cancel = svc_job_on_cancel},
		 env},
		{REG "ValidateMethod",
		 METHOD_UNARY,
		 &collector__validate_method_request__descriptor,
		 &collector__validate_method_response__descriptor,
		 {.on_request = validate, .on_cancel = svc_job_on_cancel},
		 env},
		{REG "ListServices",
		 METHOD_UNARY,
		 &collector__list_services_request__descriptor,
		 &collector__list_services_response__descriptor,
		 {.on_request = list, .on_cancel = svc_job_on_cancel},
		 env},
		{REG "UnregisterProto",
		 METHOD_UNARY,
		 &collector__unregister_proto_request__descriptor,
		 &collector__unregister_proto_response__descriptor,
		 {.on_request = unregister_proto, .on_cancel = svc_job_on_cancel},
		 env},
		{REG "UnregisterService",
		 METHOD_UNARY,
		 &collector__unregister_service_request__descriptor,
		 &collector__unregister_service_response__descriptor,
		 {.on_request = unregister_service, .on_cancel = svc_job_on_cancel},
		 env},
	};
	return method_table_add_all(t, methods, sizeof(methods) / sizeof(methods[0]));
}

/* ---- start-up ---- */

/* Start-up replays the records in the order they were written, through the quotas as a
 * registration meets them: what a registration would be refused today (limits lowered,
 * records of an older build) is skipped with a warning, and so is a record that does not
 * decode or resolve. Nothing stored stops the node from starting. */
static void load_proto(registry *r, const uint8_t *data, size_t len)
{
	Collector__RegisteredProto *p =
		svc_decode(&collector__registered_proto__descriptor, data, len);
	if (!p || !p->file_descriptor || !p->file_descriptor->name || !p->namespace_ ||
	    !*p->namespace_ || !p->id) {
		log_error("registry: an unreadable record in %s/%s is skipped", SYSCOLL_NS, PROTOS);
		if (p)
			collector__registered_proto__free_unpacked(p, NULL);
		return;
	}
	char msg[320];
	const file_proto *fp = p->file_descriptor;
	regquota_item it = {.file = fp->name,
			    .bytes = protobuf_c_message_get_packed_size(&fp->base)};
	if (!regquota_allows(r->quota, p->namespace_, &it, 1, msg, sizeof(msg)))
		log_warn("registry: a version of %s in namespace %s is skipped: %s", fp->name,
			 p->namespace_, msg);
	else if (tp_add_files(r->env->types, p->namespace_, &fp, 1, 0, NULL, NULL))
		log_error("registry: %s in namespace %s no longer loads: %s", fp->name,
			  p->namespace_, store_err_msg());
	else {
		file_applied(r, p->namespace_, fp, p->id);
		if (regquota_add(r->quota, p->namespace_, &it, 1))
			log_error("registry: out of memory counting %s against the quotas",
				  fp->name);
	}
	collector__registered_proto__free_unpacked(p, NULL);
}

/* Whether every method type of a stored service resolves in its namespace, from the
 * package its full name gives (a superset of the scopes it was registered with). */
static bool service_resolves(registry *r, const Collector__RegisteredService *s)
{
	const service_proto *sd = s->service_descriptor;
	const char *dot = strrchr(s->service_name, '.');
	char *pkg = dot ? mem_strndup(s->service_name, (size_t)(dot - s->service_name))
			: mem_strdup("");
	bool ok = pkg && sd;
	for (size_t i = 0; ok && i < sd->n_method; i++) {
		const Google__Protobuf__MethodDescriptorProto *m = sd->method[i];
		ok = !registry_method_typed(m) ||
		     (m->output_type &&
		      registry_resolve_type(r, s->namespace_, pkg, m->input_type) &&
		      registry_resolve_type(r, s->namespace_, pkg, m->output_type));
	}
	mem_free(pkg);
	return ok;
}

static void load_service(registry *r, const uint8_t *data, size_t len)
{
	Collector__RegisteredService *s =
		svc_decode(&collector__registered_service__descriptor, data, len);
	char msg[320];
	regquota_item it = {.service = s ? s->service_name : NULL, .bytes = len};
	bool counts = s && s->namespace_ && s->service_name &&
		      registry_service_counts(r, s->namespace_, s->service_name);
	if (!s || !s->namespace_ || !s->service_name)
		log_error("registry: an unreadable record in %s/%s is skipped", SYSCOLL_NS,
			  SERVICES);
	else if (!service_resolves(r, s))
		log_error("registry: service %s in namespace %s is skipped: its types do not "
			  "resolve",
			  s->service_name, s->namespace_);
	else if (counts && !regquota_allows(r->quota, s->namespace_, &it, 1, msg, sizeof(msg)))
		log_warn("registry: service %s in namespace %s is skipped: %s", s->service_name,
			 s->namespace_, msg);
	else if (regindex_put_service(r->ix, s->namespace_, s->service_name, data, len,
				      s->method_names, s->n_method_names))
		log_error("registry: service %s in namespace %s is skipped: out of memory",
			  s->service_name, s->namespace_);
	else if (counts && regquota_add(r->quota, s->namespace_, &it, 1))
		log_error("registry: out of memory counting %s against the quotas",
			  s->service_name);
	if (s)
		collector__registered_service__free_unpacked(s, NULL);
}

int registry_open(svc_env *env, const regquota_limits *limits, registry **out)
{
	registry *r = mem_calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->env = env;
	pthread_mutex_init(&r->lock, NULL);
	regquota_limits defaults;
	if (!limits) {
		regquota_limits_default(&defaults);
		limits = &defaults;
	}
	r->ix = regindex_new();
	r->quota = regquota_new(limits);
	int rc = r->ix && r->quota ? 0 : -ENOMEM;
	if (!rc)
		rc = syscoll_open(r->env, PROTOS, "collector.RegisteredProto", &r->protos);
	/* The removals find a file's versions by namespace (regremove.c). */
	char expr[QUERY_INDEX_EXPR_MAX], name[QUERY_INDEX_NAME_MAX];
	if (!rc && !(rc = query_index_field(REGISTRY_NS_FIELD, expr, name))) {
		const char *ix_name[] = {name + 3}, *ix_expr[] = {expr}; /* the store adds "ix_" */
		rc = store_coll_set_indexes(r->protos, 1, ix_name, ix_expr);
	}
	if (!rc)
		rc = syscoll_open(r->env, SERVICES, "collector.RegisteredService", &r->services);
	if (!rc)
		rc = sys_each(r, r->protos, load_proto);
	if (!rc)
		rc = sys_each(r, r->services, load_service);
	if (rc) {
		registry_free(r);
		return rc;
	}
	*out = r;
	return 0;
}

static void free_value(void *ctx, const char *key, size_t len, void *value)
{
	(void)ctx, (void)key, (void)len;
	mem_free(value);
}

void registry_free(registry *r)
{
	if (!r)
		return;
	if (r->protos)
		store_coll_release(r->protos);
	if (r->services)
		store_coll_release(r->services);
	regindex_free(r->ix);
	regquota_free(r->quota);
	regledger_free(&r->ledger);
	strmap_each(&r->file_ids, free_value, NULL);
	strmap_free(&r->file_ids);
	pthread_mutex_destroy(&r->lock);
	mem_free(r);
}

/* ---- the call gate and reflection's view ---- */

/* A call "/pkg.Name/Method" whose service is not registered by that name: upstream
 * registers services bare, so a service registered as "Name" admits it, unless another
 * service of ns also ends in ".Name" (then the call is refused, saying so). */
static int bare_gate(registry *r, const char *ns, const char *path, size_t path_len, char *msg,
		     size_t cap)
{
	const char *slash = path_len > 1 ? memchr(path + 1, '/', path_len - 1) : NULL;
	size_t slen = slash ? (size_t)(slash - path - 1) : 0;
	char service[REGISTRY_NAME_MAX + 1], full[REGISTRY_NAME_MAX + 1],
		other[REGISTRY_NAME_MAX + 1], bare[2 * REGISTRY_NAME_MAX + 2];
	int found = REGINDEX_NONE;
	if (path[0] == '/' && slen && slen <= REGISTRY_NAME_MAX) {
		memcpy(service, path + 1, slen);
		service[slen] = 0;
		if (memchr(service, '.', slen))
			found = regindex_resolve_service(r->ix, ns, service, full, sizeof(full),
							 other, sizeof(other));
	}
	int n = found == REGINDEX_FOUND ? snprintf(bare, sizeof(bare), "/%s%.*s", full,
						   (int)(path_len - slen - 1), slash)
					: -1;
	if (n > 0 && (size_t)n < sizeof(bare) &&
	    regindex_has_method(r->ix, ns, strlen(ns), bare, (size_t)n))
		return GRPC_OK;
	if (found == REGINDEX_AMBIGUOUS) {
		char why[AMBIGUOUS_MAX];
		say_ambiguous(why, sizeof(why), service, ns, full, other);
		snprintf(msg, cap, "method %.*s: %s", (int)(path_len > 250 ? 250 : path_len), path,
			 why);
	} else {
		snprintf(msg, cap, "method %.*s is not registered in namespace '%s'",
			 (int)(path_len > 250 ? 250 : path_len), path, ns);
	}
	return GRPC_UNIMPLEMENTED;
}

const char *registry_call_ns(registry *r, call *c) { return svc_namespace(c, r->env, NULL); }

int registry_gate(void *ctx, call *c, const char *path, size_t path_len, bool served, char *msg,
		  size_t cap)
{
	registry *r = ctx;
	const char *ns = r->env->default_ns;
	size_t ns_len = strlen(ns);
	const call_md *md = call_md_get(c, SVC_NAMESPACE_HEADER);
	char given[STORE_NAME_MAX + 1];
	if (md && md->value_len) {
		bool ok = md->value_len <= STORE_NAME_MAX;
		if (ok) {
			memcpy(given, md->value, md->value_len);
			given[md->value_len] = 0;
			ok = store_name_valid(given);
		}
		if (!ok) {
			snprintf(msg, cap, "invalid namespace in %s: 1 to 63 of A-Z a-z 0-9 _ -",
				 SVC_NAMESPACE_HEADER);
			return GRPC_INVALID_ARGUMENT;
		}
		if (store_ns_reserved(given)) {
			snprintf(msg, cap, "namespace '%s' is reserved for the node", given);
			return GRPC_INVALID_ARGUMENT;
		}
		ns = given;
		ns_len = md->value_len;
	}
	if (!regindex_has_method(r->ix, ns, ns_len, path, path_len)) {
		int rc = bare_gate(r, ns, path, path_len, msg, cap);
		if (rc != GRPC_OK)
			return rc;
	}
	if (!served) {
		snprintf(msg, cap,
			 "method %.*s is registered in namespace '%s' but not served by this node "
			 "(its service has no handler_endpoint)",
			 (int)(path_len > 250 ? 250 : path_len), path, ns);
		return GRPC_UNIMPLEMENTED;
	}
	return GRPC_OK;
}

typedef struct names_ctx {
	strvec v;
	registry *r;
} names_ctx;

/* A service whose methods are all registered by name only has no file: reflection has
 * nothing to describe, and leaves it out. */
static int name_one(void *ctx, const char *ns, const char *name, const uint8_t *rec, size_t len)
{
	(void)rec, (void)len;
	names_ctx *n = ctx;
	if (!tp_find_service(n->r->env->types, ns, name))
		return 0;
	strvec_push(&n->v, mem_strdup(name));
	return n->v.failed ? -ENOMEM : 0;
}

int registry_service_names(registry *r, const char *ns, char ***names, size_t *n)
{
	names_ctx c = {{0}, r};
	int rc = regindex_each_service(r->ix, ns, name_one, &c);
	if (rc) {
		strvec_free(&c.v);
		return rc;
	}
	*names = c.v.v;
	*n = c.v.n;
	return 0;
}

const char *registry_symbol_file(registry *r, const char *ns, const char *symbol)
{
	return tp_symbol_file(r->env->types, ns, symbol);
}

bool registry_file(registry *r, const char *ns, const char *name, const uint8_t **bytes,
		   size_t *len)
{
	return tp_file_bytes(r->env->types, ns, name, bytes, len);
}
