#include "services/registry.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collector/collection.pb-c.h"
#include "collector/registry.pb-c.h"
#include "io/clock.h"
#include "io/log.h"
#include "io/uuid.h"
#include "services/regindex.h"
#include "services/strmap.h"
#include "store/coll.h"
#include "store/json.h"

#define REG "/collector.CollectorRegistry/"
#define SYSTEM_NS "system"
#define PROTOS "RegisteredProtos"
#define SERVICES "RegisteredServices"
#define MAX_DEPENDENCIES 64
#define NAME_MAX_LEN 512

typedef Google__Protobuf__FileDescriptorProto file_proto;
typedef Google__Protobuf__DescriptorProto message_proto;
typedef Google__Protobuf__ServiceDescriptorProto service_proto;

/* What a message's field number has meant in any version registered so far. */
typedef struct ledger_field {
	char *name;
	char *type_name; /* message or enum full name, "" for scalars */
	uint8_t type;
	bool repeated;
} ledger_field;

struct registry {
	svc_env *env;
	regindex *ix;
	store_coll *protos, *services; /* held open for the node's life */
	const method_table *served;
	pthread_mutex_t lock; /* one registration at a time: check, persist, apply */
	strmap ledger;	      /* "ns\0message\0" + number (4 bytes) -> ledger_field */
	strmap file_ids;      /* "ns\0file" -> id of its newest RegisteredProto (char *) */
};

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

static void now_ts(Google__Protobuf__Timestamp *ts)
{
	int64_t us = clock_wall_ns() / 1000;
	google__protobuf__timestamp__init(ts);
	ts->seconds = us / 1000000;
	ts->nanos = (int32_t)(us % 1000000) * 1000;
}

static uint8_t *pack_message(const ProtobufCMessage *m, size_t *len)
{
	*len = protobuf_c_message_get_packed_size(m);
	uint8_t *b = malloc(*len ? *len : 1);
	if (b)
		protobuf_c_message_pack(m, b);
	return b;
}

/* A growing array of malloc'd strings. */
typedef struct strvec {
	char **v;
	size_t n, cap;
	bool failed;
} strvec;

static void strvec_push(strvec *s, char *str)
{
	if (!str || s->failed) {
		s->failed = true;
		free(str);
		return;
	}
	if (s->n == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 16;
		char **v = realloc(s->v, cap * sizeof(*v));
		if (!v) {
			s->failed = true;
			free(str);
			return;
		}
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = str;
}

static void strvec_free(strvec *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	*s = (strvec){0};
}

static bool strvec_has(const strvec *s, const char *str)
{
	for (size_t i = 0; i < s->n; i++)
		if (!strcmp(s->v[i], str))
			return true;
	return false;
}

static char *join_name(const char *scope, const char *name)
{
	char *s;
	if (asprintf(&s, "%s%s%s", scope, *scope ? "." : "", name ? name : "") < 0)
		return NULL;
	return s;
}

/* Full names of a message and the messages nested in it. */
static void message_names(const message_proto *mp, const char *scope, strvec *out)
{
	char *full = join_name(scope, mp->name);
	strvec_push(out, full);
	if (!full || out->failed)
		return;
	for (size_t i = 0; i < mp->n_nested_type; i++)
		message_names(mp->nested_type[i], full, out);
}

static void file_message_names(const file_proto *fp, strvec *out)
{
	for (size_t i = 0; i < fp->n_message_type; i++)
		message_names(fp->message_type[i], fp->package ? fp->package : "", out);
}

/* ---- persistence: the system collections ---- */

typedef struct waiter {
	pthread_mutex_t m;
	pthread_cond_t cv;
	bool done;
	int rc;
} waiter;

static void write_done(store_write_req *req, int rc)
{
	waiter *w = req->ctx;
	pthread_mutex_lock(&w->m);
	w->done = true;
	w->rc = rc;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->m);
}

/* One atomic write, waited for: registrations are rare and must be durable before they
 * are answered (and before they take effect). */
static int write_wait(store_coll *c, store_op *ops, size_t n)
{
	waiter w = {.m = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
	store_write_req req = {.ops = ops, .nops = n, .atomic = true, .done = write_done, .ctx = &w};
	int rc = store_write(c, &req);
	if (rc)
		return rc;
	pthread_mutex_lock(&w.m);
	while (!w.done)
		pthread_cond_wait(&w.cv, &w.m);
	pthread_mutex_unlock(&w.m);
	return w.rc;
}

/* A row of a system collection: the record and its JSON rendering. */
typedef struct sys_row {
	uint8_t *data;
	size_t len;
	jbuf json;
} sys_row;

static int sys_row_make(registry *r, const ProtobufCMessage *m, sys_row *row)
{
	*row = (sys_row){.json = JBUF_INIT};
	const tp_message *type = typepool_find_message(r->env->types, NULL, m->descriptor->name);
	row->data = pack_message(m, &row->len);
	if (!type || !row->data)
		return -ENOMEM;
	return json_from_proto(r->env->types, NULL, type, row->data, row->len, JSON_PROTO_NAMES,
			       &row->json, NULL);
}

static void sys_row_free(sys_row *row)
{
	free(row->data);
	jbuf_free(&row->json);
}

static int sys_collection(registry *r, const char *name, const char *type, store_coll **out)
{
	store *s = r->env->store;
	store_collection *row = NULL;
	int rc = store_collection_get(s, SYSTEM_NS, name, &row);
	free(row);
	if (rc == -ENOENT) {
		Collector__MessageTypeRef ref = COLLECTOR__MESSAGE_TYPE_REF__INIT;
		ref.message_name = (char *)type;
		Collector__Collection def = COLLECTOR__COLLECTION__INIT;
		def.namespace_ = SYSTEM_NS;
		def.name = (char *)name;
		def.message_type = &ref;
		size_t len;
		uint8_t *bytes = pack_message(&def.base, &len);
		if (!bytes)
			return -ENOMEM;
		store_collection c = {.ns = SYSTEM_NS, .name = name, .def = bytes, .def_len = len,
				      .type_name = type};
		rc = store_collection_create(s, &c, STORE_CREATE_RESERVED);
		free(bytes);
	}
	if (rc && rc != -EEXIST)
		return rc;
	return store_coll_acquire(s, SYSTEM_NS, name, out);
}

/* Calls fn with every record of c, oldest first. */
static int sys_each(registry *r, store_coll *c,
		    void (*fn)(registry *r, const uint8_t *data, size_t len))
{
	store_reader *rd;
	int rc = store_coll_read_begin(c, &rd);
	if (rc)
		return rc;
	sqlite3_stmt *st;
	rc = store_reader_prepare(rd, "SELECT data FROM records ORDER BY rid", &st);
	while (!rc) {
		int step = sqlite3_step(st);
		if (step == SQLITE_DONE)
			break;
		if (step != SQLITE_ROW) {
			rc = store_sqlite_errno(step);
			break;
		}
		fn(r, sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0));
	}
	store_coll_read_end(rd);
	return rc;
}

/* ---- the ledger of field numbers, and the compatibility check ---- */

static size_t ledger_key(char *buf, size_t cap, const char *ns, const char *msg, uint32_t number)
{
	size_t n = key2(buf, cap, ns, msg);
	if (!n || n + 5 > cap)
		return 0;
	buf[n++] = 0;
	memcpy(buf + n, &number, 4);
	return n + 4;
}

static const char *field_type_name(const tp_field *f)
{
	if (f->message)
		return tp_message_get(f->message)->full_name;
	if (f->enum_type)
		return tp_enum_get(f->enum_type)->full_name;
	return "";
}

static const char *const type_words[] = {
	"?", "double", "float", "int64", "uint64", "int32", "fixed64", "fixed32", "bool",
	"string", "group", "message", "bytes", "uint32", "enum", "sfixed32", "sfixed64",
	"sint32", "sint64",
};

static const char *type_word(uint8_t t)
{
	return t < sizeof(type_words) / sizeof(type_words[0]) ? type_words[t] : "?";
}

/* Remembers what every field of m means (the first meaning of a number stays). */
static void ledger_record(registry *r, const char *ns, const tp_message *m)
{
	const tp_message_info *mi = tp_message_get(m);
	for (size_t i = 0; i < mi->n_fields; i++) {
		const tp_field *f = &mi->fields[i];
		char key[NAME_MAX_LEN * 2 + 16];
		size_t klen = ledger_key(key, sizeof(key), ns, mi->full_name, f->number);
		if (!klen || strmap_get(&r->ledger, key, klen))
			continue;
		ledger_field *lf = calloc(1, sizeof(*lf));
		if (lf) {
			lf->name = strdup(f->name);
			lf->type_name = strdup(field_type_name(f));
			lf->type = f->type;
			lf->repeated = f->repeated;
		}
		if (!lf || !lf->name || !lf->type_name ||
		    strmap_put(&r->ledger, key, klen, lf, NULL)) {
			if (lf) {
				free(lf->name);
				free(lf->type_name);
			}
			free(lf);
			log_error("registry: out of memory recording the fields of %s", mi->full_name);
		}
	}
}

typedef struct compat_ctx {
	registry *r;
	const char *ns;
	bool refused; /* the check (not the build) said no */
} compat_ctx;

/* typepool_check_fn: every field number of the new messages means what it meant before. */
static int compat_check(void *ctx, const tp_message *const *msgs, size_t n, char *err, size_t cap)
{
	compat_ctx *cc = ctx;
	for (size_t k = 0; k < n; k++) {
		const tp_message_info *mi = tp_message_get(msgs[k]);
		for (size_t i = 0; i < mi->n_fields; i++) {
			const tp_field *f = &mi->fields[i];
			char key[NAME_MAX_LEN * 2 + 16];
			size_t klen = ledger_key(key, sizeof(key), cc->ns, mi->full_name, f->number);
			const ledger_field *was = klen ? strmap_get(&cc->r->ledger, key, klen) : NULL;
			if (!was)
				continue;
			const char *tn = field_type_name(f);
			if (was->type == f->type && was->repeated == f->repeated &&
			    !strcmp(was->type_name, tn) && !strcmp(was->name, f->name))
				continue;
			snprintf(err, cap,
				 "incompatible change of %s: field number %u was %s%s %s%s%s, now "
				 "%s%s %s%s%s",
				 mi->full_name, f->number, was->repeated ? "repeated " : "",
				 type_word(was->type), *was->type_name ? was->type_name : "",
				 *was->type_name ? " " : "", was->name, f->repeated ? "repeated " : "",
				 type_word(f->type), *tn ? tn : "", *tn ? " " : "", f->name);
			cc->refused = true;
			return 1;
		}
	}
	return 0;
}

/* ---- registering files ---- */

/* The files of one registration, imports first. */
typedef struct file_set {
	const file_proto *v[MAX_DEPENDENCIES + 1];
	size_t n;
	bool changed[MAX_DEPENDENCIES + 1]; /* not yet in the namespace with these contents */
} file_set;

/* Orders deps and main so that each file comes after the files of the set it imports. */
static bool order_files(svc_job *j, file_set *fs, Google__Protobuf__FileDescriptorProto *const *deps,
			size_t n_deps, const file_proto *main)
{
	if (n_deps > MAX_DEPENDENCIES) {
		svc_job_fail(j, GRPC_INVALID_ARGUMENT, "at most %d dependencies per request",
			     MAX_DEPENDENCIES);
		return false;
	}
	const file_proto *all[MAX_DEPENDENCIES + 1];
	bool placed[MAX_DEPENDENCIES + 1] = {0};
	size_t total = 0;
	for (size_t i = 0; i < n_deps; i++)
		all[total++] = deps[i];
	all[total++] = main;
	for (size_t i = 0; i < total; i++)
		if (!all[i] || !all[i]->name || !all[i]->name[0]) {
			svc_job_fail(j, GRPC_INVALID_ARGUMENT, "a file descriptor has no name");
			return false;
		}
	fs->n = 0;
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
			svc_job_fail(j, GRPC_INVALID_ARGUMENT, "the files import each other in a cycle");
			return false;
		}
	}
	return true;
}

/* Whether the namespace already has fp exactly (or the node compiles in a file of that
 * name, which then stands); sets fs->changed. */
static bool mark_changes(registry *r, const char *ns, file_set *fs)
{
	for (size_t i = 0; i < fs->n; i++) {
		const uint8_t *old;
		size_t old_len, len;
		fs->changed[i] = false;
		if (typepool_file_bytes(r->env->types, NULL, fs->v[i]->name, &old, &old_len))
			continue;
		uint8_t *now = pack_message(&fs->v[i]->base, &len);
		if (!now)
			return false;
		fs->changed[i] = !typepool_file_bytes(r->env->types, ns, fs->v[i]->name, &old,
						      &old_len) ||
				 old_len != len || memcmp(old, now, len);
		free(now);
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
	if (!typepool_file_bytes(r->env->types, ns, fp->name, &old_bytes, &old_len))
		return true;
	file_proto *old = google__protobuf__file_descriptor_proto__unpack(NULL, old_len, old_bytes);
	strvec before = {0}, after = {0};
	bool ok = old != NULL;
	if (ok) {
		file_message_names(old, &before);
		file_message_names(fp, &after);
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
			svc_job_fail(j, GRPC_FAILED_PRECONDITION,
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
	char key[NAME_MAX_LEN * 2];
	size_t klen = key2(key, sizeof(key), ns, file);
	const char *id = klen ? strmap_get(&r->file_ids, key, klen) : NULL;
	if (id)
		return strdup(id);
	if (typepool_file_bytes(r->env->types, NULL, file, &(const uint8_t *){0}, &(size_t){0})) {
		char *s;
		return asprintf(&s, "compiled-in:%s", file) < 0 ? NULL : s;
	}
	return NULL;
}

static void remember_id(registry *r, const char *ns, const char *file, const char *id)
{
	char key[NAME_MAX_LEN * 2];
	size_t klen = key2(key, sizeof(key), ns, file);
	char *copy = strdup(id);
	void *old = NULL;
	if (!klen || !copy || strmap_put(&r->file_ids, key, klen, copy, &old)) {
		free(copy);
		return;
	}
	free(old);
}

/* After a file took effect: its fields join the ledger, its id is the file's newest. */
static void file_applied(registry *r, const char *ns, const file_proto *fp, const char *id)
{
	strvec names = {0};
	file_message_names(fp, &names);
	for (size_t i = 0; i < names.n; i++) {
		const tp_message *m = typepool_find_message(r->env->types, ns, names.v[i]);
		if (m)
			ledger_record(r, ns, m);
	}
	strvec_free(&names);
	remember_id(r, ns, fp->name, id);
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

/* Checks, persists and applies the files of fs in ns; the caller holds r->lock. *id gets
 * the id of the last file (the main one). Fails j and returns false when it cannot. */
static bool register_files(svc_job *j, registry *r, const char *ns, file_set *fs, char **main_id)
{
	*main_id = NULL;
	if (!mark_changes(r, ns, fs)) {
		svc_job_fail(j, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return false;
	}
	for (size_t i = 0; i < fs->n; i++)
		if (fs->changed[i] && !check_removed(j, r, ns, fs->v[i]))
			return false;
	compat_ctx cc = {.r = r, .ns = ns};
	char *err = NULL;
	int rc = typepool_add_files(r->env->types, ns, fs->v, fs->n, TYPEPOOL_CHECK_ONLY,
				    compat_check, &cc, &err);
	if (rc) {
		svc_job_fail(j,
			     rc == -ENOMEM	? GRPC_RESOURCE_EXHAUSTED
			     : cc.refused ? GRPC_FAILED_PRECONDITION
					  : GRPC_INVALID_ARGUMENT,
			     "%s", err ? err : "out of memory");
		free(err);
		return false;
	}

	/* Durable first, then visible: nothing answered can be lost, and nothing visible can
	 * vanish at a restart. */
	store_op ops[MAX_DEPENDENCIES + 1];
	sys_row rows[MAX_DEPENDENCIES + 1];
	char ids[MAX_DEPENDENCIES + 1][UUID_STR_LEN];
	size_t nops = 0;
	Google__Protobuf__Timestamp ts;
	now_ts(&ts);
	Collector__Metadata md = COLLECTOR__METADATA__INIT;
	md.created_at = md.updated_at = &ts;
	bool ok = true;
	for (size_t i = 0; i < fs->n && ok; i++) {
		if (!fs->changed[i])
			continue;
		strvec names = {0};
		file_message_names(fs->v[i], &names);
		Collector__RegisteredProto rec;
		proto_record(&rec, ids[i], ns, fs->v[i], &names, &md);
		ok = !names.failed && !uuid7_make(ids[i]);
		sys_row *row = &rows[nops++];
		*row = (sys_row){.json = JBUF_INIT};
		ok = ok && !sys_row_make(r, &rec.base, row);
		strvec_free(&names);
		ops[nops - 1] = (store_op){.kind = STORE_OP_INSERT, .id = ids[i],
					   .row = {row->data, row->len, row->json.data, NULL}};
	}
	rc = ok ? (nops ? write_wait(r->protos, ops, nops) : 0) : -ENOMEM;
	for (size_t i = 0; i < nops; i++)
		sys_row_free(&rows[i]);
	if (rc) {
		svc_fail_store(j, rc, "saving the registration");
		return false;
	}
	if (nops && (rc = typepool_add_files(r->env->types, ns, fs->v, fs->n, 0, NULL, NULL, &err))) {
		/* Checked above under the same lock: only memory can fail here. */
		log_error("registry: %s saved but not applied: %s", fs->v[fs->n - 1]->name,
			  err ? err : "out of memory");
		svc_job_fail(j, GRPC_INTERNAL, "registered, but not applied until a restart: %s",
			     err ? err : "out of memory");
		free(err);
		return false;
	}
	for (size_t i = 0; i < fs->n; i++)
		if (fs->changed[i])
			file_applied(r, ns, fs->v[i], ids[i]);
	*main_id = proto_id_of(r, ns, fs->v[fs->n - 1]->name);
	if (!*main_id) {
		svc_job_fail(j, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return false;
	}
	return true;
}

/* ---- RegisterProto ---- */

static registry *registry_of(svc_req_job *j)
{
	return j->env->registry;
}

void registry_register_proto(registry *r, svc_job *sj, const char *ns,
			     const Collector__RegisterProtoRequest *req)
{
	if (!svc_check_user_ns(sj, ns))
		return;
	if (!req->file_descriptor || !req->file_descriptor->name || !*req->file_descriptor->name) {
		svc_job_fail(sj, GRPC_INVALID_ARGUMENT, "file_descriptor with a name is required");
		return;
	}
	file_set fs;
	if (!order_files(sj, &fs, req->dependencies, req->n_dependencies, req->file_descriptor))
		return;
	char *id = NULL;
	pthread_mutex_lock(&r->lock);
	bool ok = register_files(sj, r, ns, &fs, &id);
	pthread_mutex_unlock(&r->lock);
	if (!ok)
		return;
	strvec names = {0};
	file_message_names(req->file_descriptor, &names);
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
	free(id);
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

/* ---- RegisterService ---- */

/* A method's input or output type, resolved as protoc would from the service's package:
 * ".a.b.M" is absolute, "M" is looked up in pkg, then its parents, then the root. */
static const tp_message *resolve_type(registry *r, const char *ns, const char *pkg,
				      const char *name)
{
	if (name[0] == '.')
		return typepool_find_message(r->env->types, ns, name + 1);
	char full[NAME_MAX_LEN * 2];
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
		const tp_message *m = typepool_find_message(r->env->types, ns, full);
		if (m || !scope)
			return m;
		do /* drop the innermost package part */
			scope--;
		while (scope && pkg[scope] != '.');
	}
}

static bool method_proto_ok(svc_job *j, const Google__Protobuf__MethodDescriptorProto *m)
{
	if (!m->name || !*m->name || !m->input_type || !*m->input_type || !m->output_type ||
	    !*m->output_type) {
		svc_job_fail(j, GRPC_INVALID_ARGUMENT,
			     "every method needs a name, an input_type and an output_type");
		return false;
	}
	return true;
}

/* A method this node serves keeps its compiled-in signature in every namespace. */
static bool served_signature_ok(svc_job *j, registry *r, const char *service,
				const Google__Protobuf__MethodDescriptorProto *mp,
				const tp_message *in, const tp_message *out)
{
	char path[NAME_MAX_LEN * 2];
	int n = snprintf(path, sizeof(path), "/%s/%s", service, mp->name);
	if (!r->served || n < 0 || (size_t)n >= sizeof(path) ||
	    !method_table_find(r->served, path, (size_t)n))
		return true;
	const tp_service *ts = typepool_find_service(r->env->types, NULL, service);
	const tp_service_info *si = ts ? tp_service_get(ts) : NULL;
	const tp_method *m = NULL;
	for (size_t i = 0; si && i < si->n_methods && !m; i++)
		if (!strcmp(si->methods[i].name, mp->name))
			m = &si->methods[i];
	if (!m || (m->input == in && m->output == out && m->client_streaming == mp->client_streaming &&
		   m->server_streaming == mp->server_streaming))
		return true;
	svc_job_fail(j, GRPC_FAILED_PRECONDITION,
		     "%s is served by this node as %s%s -> %s%s: it cannot be registered with "
		     "another signature",
		     path, m->client_streaming ? "stream " : "", tp_message_get(m->input)->full_name,
		     m->server_streaming ? "stream " : "", tp_message_get(m->output)->full_name);
	return false;
}

typedef struct service_plan {
	char *full_name;
	strvec methods;
	char id[UUID_STR_LEN];
	Google__Protobuf__Timestamp created;
	bool exists;
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
	Collector__RegisteredService *old = collector__registered_service__unpack(NULL, len, rec);
	free(rec);
	if (!old) {
		svc_job_fail(j, GRPC_INTERNAL, "the registration of %s is unreadable", p->full_name);
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
	const char *pkg = req->file_descriptor && req->file_descriptor->package
				  ? req->file_descriptor->package
				  : "";
	p->full_name = join_name(pkg, sd->name);
	if (!p->full_name) {
		svc_job_fail(j, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return false;
	}
	if (strlen(p->full_name) > NAME_MAX_LEN) {
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
		const tp_message *in = resolve_type(r, ns, pkg, mp->input_type);
		const tp_message *out = resolve_type(r, ns, pkg, mp->output_type);
		if (!in || !out) {
			svc_job_fail(j, GRPC_INVALID_ARGUMENT,
				     "method %s.%s: %s type '%s' is not known in namespace '%s'",
				     p->full_name, mp->name, in ? "output" : "input",
				     in ? mp->output_type : mp->input_type, ns);
			return false;
		}
		if (!served_signature_ok(j, r, p->full_name, mp, in, out))
			return false;
		strvec_push(&p->methods, strdup(mp->name));
	}
	if (p->methods.failed) {
		svc_job_fail(j, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return false;
	}
	return earlier_service(j, r, ns, p);
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
}

static bool save_service(svc_job *j, registry *r, const char *ns, service_plan *p,
			 const service_proto *sd)
{
	Google__Protobuf__Timestamp now;
	now_ts(&now);
	if (!p->exists) {
		p->created = now;
		if (uuid7_make(p->id)) {
			svc_job_fail(j, GRPC_INTERNAL, "cannot make an id");
			return false;
		}
	}
	Collector__Metadata md = COLLECTOR__METADATA__INIT;
	md.created_at = &p->created;
	md.updated_at = &now;
	Collector__RegisteredService rec;
	service_record(&rec, ns, p, sd, &md);
	sys_row row;
	int rc = sys_row_make(r, &rec.base, &row);
	store_op op = {.kind = p->exists ? STORE_OP_UPDATE : STORE_OP_INSERT, .id = p->id,
		       .row = {row.data, row.len, row.json.data, NULL}};
	if (!rc)
		rc = write_wait(r->services, &op, 1);
	if (!rc)
		rc = regindex_put_service(r->ix, ns, p->full_name, row.data, row.len, p->methods.v,
					  p->methods.n);
	sys_row_free(&row);
	if (rc) {
		svc_fail_store(j, rc, "saving the service");
		return false;
	}
	return true;
}

/* A service that no file of the namespace (nor the node) declares gets a file of its own,
 * registry/<service>.proto, in its package and importing the files of its types, so that
 * reflection can serve it like any other. */
static bool declare_service(svc_job *j, registry *r, const char *ns,
			    const Collector__RegisterServiceRequest *req, const service_plan *p)
{
	typepool *tp = r->env->types;
	if (typepool_find_service(tp, ns, p->full_name))
		return true;
	const service_proto *sd = req->service_descriptor;
	const char *pkg = req->file_descriptor && req->file_descriptor->package
				  ? req->file_descriptor->package
				  : "";
	const char *dot = strrchr(p->full_name, '.');
	char *package = dot ? strndup(p->full_name, (size_t)(dot - p->full_name)) : strdup("");
	char *name = NULL;
	strvec deps = {0}, types = {0};
	Google__Protobuf__MethodDescriptorProto *methods = calloc(sd->n_method, sizeof(*methods));
	Google__Protobuf__MethodDescriptorProto **mptrs = calloc(sd->n_method, sizeof(*mptrs));
	bool ok = package && methods && mptrs && asprintf(&name, "registry/%s.proto", p->full_name) > 0;
	for (size_t i = 0; ok && i < sd->n_method; i++) {
		const tp_message *in = resolve_type(r, ns, pkg, sd->method[i]->input_type);
		const tp_message *out = resolve_type(r, ns, pkg, sd->method[i]->output_type);
		const tp_message *io[2] = {in, out};
		for (int k = 0; k < 2; k++) {
			const char *file = tp_message_get(io[k])->file;
			if (!strvec_has(&deps, file))
				strvec_push(&deps, strdup(file));
			char *t;
			strvec_push(&types, asprintf(&t, ".%s", tp_message_get(io[k])->full_name) < 0
						    ? NULL
						    : t);
		}
		methods[i] = *sd->method[i];
		methods[i].input_type = types.failed ? NULL : types.v[2 * i];
		methods[i].output_type = types.failed ? NULL : types.v[2 * i + 1];
		mptrs[i] = &methods[i];
		ok = !deps.failed && !types.failed;
	}
	char *id = NULL;
	if (ok) {
		service_proto svc = *sd;
		svc.name = (char *)(dot ? dot + 1 : p->full_name);
		svc.method = mptrs;
		service_proto *svcs[1] = {&svc};
		file_proto fd = GOOGLE__PROTOBUF__FILE_DESCRIPTOR_PROTO__INIT;
		fd.name = name;
		fd.package = package;
		fd.syntax = "proto3";
		fd.n_dependency = deps.n;
		fd.dependency = deps.v;
		fd.n_service = 1;
		fd.service = svcs;
		file_set fs = {.v = {&fd}, .n = 1};
		ok = register_files(j, r, ns, &fs, &id);
	} else {
		svc_job_fail(j, GRPC_RESOURCE_EXHAUSTED, "out of memory");
	}
	free(id);
	free(name);
	free(package);
	free(methods);
	free(mptrs);
	strvec_free(&deps);
	strvec_free(&types);
	return ok;
}

void registry_register_service(registry *r, svc_job *sj, const char *ns,
			       const Collector__RegisterServiceRequest *req)
{
	const service_proto *sd = req->service_descriptor;
	if (!svc_check_user_ns(sj, ns))
		return;
	if (!sd || !sd->name || !*sd->name) {
		svc_job_fail(sj, GRPC_INVALID_ARGUMENT, "service_descriptor with a name is required");
		return;
	}
	if (!sd->n_method) {
		svc_job_fail(sj, GRPC_INVALID_ARGUMENT, "service %s has no methods", sd->name);
		return;
	}
	file_set fs;
	if (req->file_descriptor && !order_files(sj, &fs, NULL, 0, req->file_descriptor))
		return;
	service_plan p = {0};
	char *file_id = NULL;
	pthread_mutex_lock(&r->lock);
	bool ok = (!req->file_descriptor || register_files(sj, r, ns, &fs, &file_id)) &&
		  plan_service(sj, r, ns, req, &p) && declare_service(sj, r, ns, req, &p) &&
		  save_service(sj, r, ns, &p, sd);
	pthread_mutex_unlock(&r->lock);
	if (ok) {
		Collector__RegisterServiceResponse resp = COLLECTOR__REGISTER_SERVICE_RESPONSE__INIT;
		resp.status = &status_ok;
		resp.service_id = p.id;
		resp.n_registered_methods = p.methods.n;
		resp.registered_methods = p.methods.v;
		svc_job_answer(sj, &resp.base);
	}
	free(file_id);
	free(p.full_name);
	strvec_free(&p.methods);
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

static void lookup_work(svc_job *sj)
{
	svc_req_job *j = (svc_req_job *)sj;
	const Collector__LookupServiceRequest *req = j->req;
	registry *r = registry_of(j);
	if (!svc_check_user_ns(sj, j->ns) || !name_given(sj, "service_name", req->service_name))
		return;
	size_t len;
	uint8_t *rec = regindex_get_service(r->ix, j->ns, req->service_name, &len);
	if (!rec) {
		if (len)
			svc_job_fail(sj, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		else
			svc_job_fail(sj, GRPC_NOT_FOUND, "service %.200s is not registered in namespace '%s'",
				     req->service_name, j->ns);
		return;
	}
	Collector__RegisteredService *s = collector__registered_service__unpack(NULL, len, rec);
	free(rec);
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
	char *path;
	int n = asprintf(&path, "/%s/%s", req->service_name, req->method_name);
	if (n < 0) {
		svc_job_fail(sj, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	bool valid = regindex_has_method(r->ix, j->ns, strlen(j->ns), path, (size_t)n);
	char text[400];
	snprintf(text, sizeof(text), "%.300s is %sregistered in namespace '%s'", path,
		 valid ? "" : "not ", j->ns);
	Collector__ValidateMethodResponse resp = COLLECTOR__VALIDATE_METHOD_RESPONSE__INIT;
	resp.status = &status_ok;
	resp.is_valid = valid;
	resp.message = text;
	svc_job_answer(sj, &resp.base);
	free(path);
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
		Collector__RegisteredService **v = realloc(l->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n] = collector__registered_service__unpack(NULL, len, rec);
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
	if (ns && !regindex_has_namespace(r->ix, ns)) {
		svc_job_fail(sj, GRPC_NOT_FOUND, "nothing is registered in namespace '%s'", ns);
		return;
	}
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
	free(l.v);
}

static void list(call *c, const ProtobufCMessage *msg)
{
	svc_start(c, msg, NULL, list_work);
}

int registry_register(method_table *t, svc_env *env)
{
	const method methods[] = {
		{REG "RegisterProto", CALL_UNARY, &collector__register_proto_request__descriptor,
		 &collector__register_proto_response__descriptor,
		 {.on_request = register_proto, .on_cancel = svc_job_on_cancel}, env},
		{REG "RegisterService", CALL_UNARY, &collector__register_service_request__descriptor,
		 &collector__register_service_response__descriptor,
		 {.on_request = register_service, .on_cancel = svc_job_on_cancel}, env},
		{REG "LookupService", CALL_UNARY, &collector__lookup_service_request__descriptor,
		 &collector__lookup_service_response__descriptor,
		 {.on_request = lookup, .on_cancel = svc_job_on_cancel}, env},
		{REG "ValidateMethod", CALL_UNARY, &collector__validate_method_request__descriptor,
		 &collector__validate_method_response__descriptor,
		 {.on_request = validate, .on_cancel = svc_job_on_cancel}, env},
		{REG "ListServices", CALL_UNARY, &collector__list_services_request__descriptor,
		 &collector__list_services_response__descriptor,
		 {.on_request = list, .on_cancel = svc_job_on_cancel}, env},
	};
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		int rc = method_table_add(t, &methods[i]);
		if (rc)
			return rc;
	}
	return 0;
}

/* ---- start-up ---- */

static void load_proto(registry *r, const uint8_t *data, size_t len)
{
	Collector__RegisteredProto *p = collector__registered_proto__unpack(NULL, len, data);
	if (!p || !p->file_descriptor || !p->namespace_ || !*p->namespace_) {
		log_error("registry: an unreadable record in %s/%s is skipped", SYSTEM_NS, PROTOS);
		if (p)
			collector__registered_proto__free_unpacked(p, NULL);
		return;
	}
	char *err = NULL;
	const file_proto *fp = p->file_descriptor;
	if (typepool_add_files(r->env->types, p->namespace_, &fp, 1, 0, NULL, NULL, &err))
		log_error("registry: %s in namespace %s no longer loads: %s", fp->name,
			  p->namespace_, err ? err : "out of memory");
	else
		file_applied(r, p->namespace_, fp, p->id);
	free(err);
	collector__registered_proto__free_unpacked(p, NULL);
}

static void load_service(registry *r, const uint8_t *data, size_t len)
{
	Collector__RegisteredService *s = collector__registered_service__unpack(NULL, len, data);
	if (!s || !s->namespace_ || !s->service_name ||
	    regindex_put_service(r->ix, s->namespace_, s->service_name, data, len, s->method_names,
				 s->n_method_names))
		log_error("registry: a record in %s/%s is skipped", SYSTEM_NS, SERVICES);
	if (s)
		collector__registered_service__free_unpacked(s, NULL);
}

int registry_open(svc_env *env, registry **out)
{
	registry *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->env = env;
	pthread_mutex_init(&r->lock, NULL);
	r->ix = regindex_new();
	int rc = r->ix ? 0 : -ENOMEM;
	if (!rc)
		rc = sys_collection(r, PROTOS, "collector.RegisteredProto", &r->protos);
	if (!rc)
		rc = sys_collection(r, SERVICES, "collector.RegisteredService", &r->services);
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

static void free_ledger_entry(void *ctx, const char *key, size_t len, void *value)
{
	(void)ctx, (void)key, (void)len;
	ledger_field *lf = value;
	free(lf->name);
	free(lf->type_name);
	free(lf);
}

static void free_value(void *ctx, const char *key, size_t len, void *value)
{
	(void)ctx, (void)key, (void)len;
	free(value);
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
	strmap_each(&r->ledger, free_ledger_entry, NULL);
	strmap_free(&r->ledger);
	strmap_each(&r->file_ids, free_value, NULL);
	strmap_free(&r->file_ids);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

/* Whether ns already has the service `name` registered with exactly this descriptor. */
static bool same_service(registry *r, const char *ns, const char *name, const service_proto *sd)
{
	size_t len, a_len, b_len;
	uint8_t *rec = regindex_get_service(r->ix, ns, name, &len);
	Collector__RegisteredService *old =
		rec ? collector__registered_service__unpack(NULL, len, rec) : NULL;
	free(rec);
	if (!old || !old->service_descriptor) {
		if (old)
			collector__registered_service__free_unpacked(old, NULL);
		return false;
	}
	uint8_t *a = pack_message(&old->service_descriptor->base, &a_len);
	uint8_t *b = pack_message(&sd->base, &b_len);
	bool same = a && b && a_len == b_len && !memcmp(a, b, a_len);
	free(a);
	free(b);
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
	char name[NAME_MAX_LEN];
	snprintf(name, sizeof(name), "%.*s", (int)len, service);
	const tp_service *ts = typepool_find_service(r->env->types, NULL, name);
	const uint8_t *bytes;
	size_t blen;
	if (!ts || !typepool_file_bytes(r->env->types, NULL, tp_service_get(ts)->file, &bytes, &blen)) {
		log_warn("registry: %s has no compiled-in descriptor: not registered", name);
		return;
	}
	file_proto *fp = google__protobuf__file_descriptor_proto__unpack(NULL, blen, bytes);
	service_proto *sd = NULL;
	for (size_t i = 0; fp && i < fp->n_service && !sd; i++) {
		char full[NAME_MAX_LEN * 2];
		const char *pkg = fp->package ? fp->package : "";
		snprintf(full, sizeof(full), "%s%s%s", pkg, *pkg ? "." : "", fp->service[i]->name);
		if (!strcmp(full, name))
			sd = fp->service[i];
	}
	service_plan p = {.full_name = name};
	for (size_t i = 0; sd && i < sd->n_method; i++)
		strvec_push(&p.methods, strdup(sd->method[i]->name));
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

/* ---- the call gate and reflection's view ---- */

const char *registry_call_ns(registry *r, call *c)
{
	return svc_namespace(c, r->env, NULL);
}

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
		snprintf(msg, cap, "method %.*s is not registered in namespace '%s'",
			 (int)(path_len > 250 ? 250 : path_len), path, ns);
		return GRPC_UNIMPLEMENTED;
	}
	if (!served) {
		snprintf(msg, cap,
			 "method %.*s is registered in namespace '%s' but not served by this node",
			 (int)(path_len > 250 ? 250 : path_len), path, ns);
		return GRPC_UNIMPLEMENTED;
	}
	return GRPC_OK;
}

typedef struct names_ctx {
	strvec v;
} names_ctx;

static int name_one(void *ctx, const char *ns, const char *name, const uint8_t *rec, size_t len)
{
	(void)ns, (void)rec, (void)len;
	names_ctx *n = ctx;
	strvec_push(&n->v, strdup(name));
	return n->v.failed ? -ENOMEM : 0;
}

int registry_service_names(registry *r, const char *ns, char ***names, size_t *n)
{
	names_ctx c = {{0}};
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
	return typepool_symbol_file(r->env->types, ns, symbol);
}

bool registry_file(registry *r, const char *ns, const char *name, const uint8_t **bytes,
		   size_t *len)
{
	return typepool_file_bytes(r->env->types, ns, name, bytes, len);
}
