#include "services/coll_def.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "base/hash.h"
#include "base/mem.h"
#include "h2/status.h"

/* Definitions are unpacked once per version of their row. */

typedef struct def_entry {
	uint64_t version; /* the row's; 0: read from the catalog, not cached */
	size_t refs;	  /* under defs.mu */
	store_collection *row;
	Collector__Collection *def;
} def_entry;

#define DEF_SLOTS 256

/* One entry per slot, by the hash of ns/name; a collection hashing to a taken slot
 * replaces the entry there, which bounds the cache without bookkeeping. Process-wide, as
 * versions are: an entry matches a version, never a name. */
static struct {
	pthread_mutex_t mu;
	def_entry *slot[DEF_SLOTS];
} defs = {.mu = PTHREAD_MUTEX_INITIALIZER};

static size_t def_slot(const char *ns, const char *name)
{
	uint32_t h = hash_fnv1a(HASH_FNV1A_INIT, ns, strlen(ns));
	h = hash_fnv1a(h, "/", 1);
	h = hash_fnv1a(h, name, strlen(name));
	return h % DEF_SLOTS;
}

static void def_entry_free(def_entry *e)
{
	if (e->def)
		collector__collection__free_unpacked(e->def, NULL);
	mem_free(e->row);
	mem_free(e);
}

static void def_entry_unref(def_entry *e)
{
	pthread_mutex_lock(&defs.mu);
	bool last = --e->refs == 0;
	pthread_mutex_unlock(&defs.mu);
	if (last)
		def_entry_free(e);
}

/* The cached entry of the row's current version, with a reference; NULL when none. */
static def_entry *def_cached(const svc_env *env, const char *ns, const char *name)
{
	uint64_t v = store_collection_version(env->store, ns, name);
	if (!v)
		return NULL;
	pthread_mutex_lock(&defs.mu);
	def_entry *e = defs.slot[def_slot(ns, name)];
	if (e && e->version == v)
		e->refs++;
	else
		e = NULL;
	pthread_mutex_unlock(&defs.mu);
	return e;
}

/* Reads and unpacks the row; caches it when the store keeps the row (an open
 * collection). A reference for the caller, or NULL with j failed. */
static def_entry *def_read(svc_job *j, const svc_env *env, const char *ns, const char *name)
{
	def_entry *e = mem_calloc(1, sizeof(*e));
	if (!e) {
		svc_job_fail(j, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return NULL;
	}
	e->refs = 1;
	int rc = store_collection_get(env->store, ns, name, &e->row);
	if (rc) {
		if (rc == -ENOENT)
			svc_job_fail(j, GRPC_NOT_FOUND, "no collection %s/%s", ns, name);
		else
			svc_fail_store(j, rc, "reading the catalog");
		def_entry_free(e);
		return NULL;
	}
	e->def = svc_decode(&collector__collection__descriptor, e->row->def, e->row->def_len);
	if (!e->def) {
		svc_job_fail(j, GRPC_INTERNAL, "the definition of %s/%s is unreadable", ns, name);
		def_entry_free(e);
		return NULL;
	}
	e->version = e->row->version;
	if (!e->version)
		return e;
	pthread_mutex_lock(&defs.mu);
	def_entry **slot = &defs.slot[def_slot(ns, name)], *old = *slot;
	bool drop = old && --old->refs == 0;
	*slot = e;
	e->refs++;
	pthread_mutex_unlock(&defs.mu);
	if (drop)
		def_entry_free(old);
	return e;
}

bool coll_def_load(svc_job *j, const svc_env *env, const char *ns, const char *name, coll_def *out)
{
	*out = (coll_def){0};
	if (!svc_check_user_ns(j, ns) || !svc_check_name(j, "collection", name))
		return false;
	def_entry *e = def_cached(env, ns, name);
	if (!e && !(e = def_read(j, env, ns, name)))
		return false;
	*out = (coll_def){.row = e->row, .def = e->def, .entry = e};
	/* A collection made without a message type holds any Any (coll_any.h). */
	if (!e->row->type_name[0]) {
		out->schemaless = true;
		return true;
	}
	out->type = tp_find_message(env->types, e->row->type_ns[0] ? e->row->type_ns : NULL,
				    e->row->type_name);
	out->schemaless = svc_schemaless(out->type);
	if (!out->type) {
		svc_job_fail(j, GRPC_INTERNAL, "the definition of %s/%s is unreadable", ns, name);
		coll_def_free(out);
		return false;
	}
	return true;
}

void coll_def_free(coll_def *d)
{
	if (d->entry)
		def_entry_unref(d->entry);
	*d = (coll_def){0};
}

bool coll_def_open(svc_job *j, const svc_env *env, const coll_def *d, store_coll **out)
{
	int rc = store_coll_acquire(env->store, d->row->ns, d->row->name, out);
	if (rc == -ENOENT) {
		svc_job_fail(j, GRPC_NOT_FOUND, "no collection %s/%s", d->row->ns, d->row->name);
		return false;
	}
	if (rc) {
		svc_fail_store(j, rc, "opening the collection");
		return false;
	}
	/* The definition was read before the acquire: a delete and create in between would
	 * pair it with another collection of the name. */
	if (store_coll_created_at(*out) != d->row->created_at) {
		store_coll_release(*out);
		*out = NULL;
		svc_job_fail(j, GRPC_ABORTED,
			     "collection %s/%s was deleted and created again during "
			     "the call",
			     d->row->ns, d->row->name);
		return false;
	}
	return true;
}
