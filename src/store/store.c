#include "store/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/fs.h"
#include "base/hash.h"
#include "base/list.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/uuid.h"
#include "store/coll.h"
#include "store/dirs.h"
#include "store/store_int.h"

/* Directory entries of a namespace that are not collections: a create in progress and a
 * delete in progress. Names cannot start with '.', so these never collide with one. */
#define NEW_PREFIX ".new-"
#define DEL_PREFIX ".del-"

bool store_name_valid(const char *name)
{
	if (!name)
		return false;
	size_t n = 0;
	for (const char *p = name; *p; p++, n++) {
		char ch = *p;
		bool alnum = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
			     (ch >= '0' && ch <= '9');
		if (!alnum && (n == 0 || (ch != '_' && ch != '-')))
			return false;
		if (n >= STORE_NAME_MAX)
			return false;
	}
	return n > 0;
}

static const char *const reserved[] = {"system", "repo", "backups", "files"};
#define N_RESERVED (sizeof(reserved) / sizeof(reserved[0]))

bool store_ns_reserved(const char *ns)
{
	for (size_t i = 0; i < N_RESERVED; i++)
		if (!strcasecmp(ns, reserved[i]))
			return true;
	return false;
}

/* --- the table of open collections --------------------------------------------------- */

enum slot_state {
	SLOT_OPENING, /* being opened; others wait */
	SLOT_READY,
	SLOT_CLOSING,  /* evicted, being closed; others wait */
	SLOT_DOOMED,   /* being deleted; acquire fails */
	SLOT_SWAPPING, /* its directory being replaced (an install); others wait */
};

typedef struct slot {
	struct slot *hnext; /* hash chain */
	list_node lru;	    /* in the store's lru, most recent first */
	char ns[STORE_NAME_MAX + 1], name[STORE_NAME_MAX + 1];
	struct store *owner;
	store_coll *c;
	/* The catalog row as of the open, kept current by store_collection_update_def:
	 * store_collection_get answers from it while the slot is READY. NULL: ask the catalog. */
	store_collection *row;
	uint64_t version;   /* of row: see store_collection_version */
	int64_t created_at; /* the row's when opened: one incarnation of the name */
	size_t refs;
	enum slot_state state;
} slot;

/* Versions of kept rows, unique in the process (across stores too). */
static atomic_uint_fast64_t row_versions;

static void slot_set_row(slot *sl, store_collection *row)
{
	mem_free(sl->row);
	sl->row = row;
	sl->version = atomic_fetch_add(&row_versions, 1) + 1;
	if (row)
		row->version = sl->version;
}

#define NBUCKETS 256

struct store {
	char *dir;
	int dirfd;
	coll_options copts;
	size_t max_open;

	pthread_mutex_t cat_mu; /* the catalog read connection and its statements */
	sqlite3 *cat;
	sqlite3_stmt *st_get;

	pthread_mutex_t ddl_mu; /* create, delete, update: one at a time */
	sqlite3 *ddl;

	pthread_mutex_t mu; /* the open table */
	pthread_cond_t cv;
	slot *buckets[NBUCKETS];
	list_node lru;
	size_t nopen; /* slots opening or ready */
};

static int64_t now_us(void) { return clock_wall_ns() / 1000; }

static size_t slot_hash(const char *ns, const char *name)
{
	uint32_t h = hash_fnv1a(HASH_FNV1A_INIT, ns, strlen(ns));
	h = hash_fnv1a(h, "/", 1);
	h = hash_fnv1a(h, name, strlen(name));
	return h % NBUCKETS;
}

static slot *slot_find(store *s, const char *ns, const char *name)
{
	for (slot *sl = s->buckets[slot_hash(ns, name)]; sl; sl = sl->hnext)
		if (!strcmp(sl->ns, ns) && !strcmp(sl->name, name))
			return sl;
	return NULL;
}

static slot *slot_add(store *s, const char *ns, const char *name, enum slot_state st)
{
	slot *sl = mem_calloc(1, sizeof(*sl));
	if (!sl)
		return NULL;
	strcpy(sl->ns, ns);
	strcpy(sl->name, name);
	sl->owner = s;
	sl->state = st;
	size_t b = slot_hash(ns, name);
	sl->hnext = s->buckets[b];
	s->buckets[b] = sl;
	list_push_front(&s->lru, &sl->lru);
	if (st == SLOT_OPENING)
		s->nopen++;
	return sl;
}

static void slot_remove(store *s, slot *sl)
{
	slot **pp = &s->buckets[slot_hash(sl->ns, sl->name)];
	while (*pp != sl)
		pp = &(*pp)->hnext;
	*pp = sl->hnext;
	list_remove(&sl->lru);
	if (sl->state == SLOT_OPENING || sl->state == SLOT_READY)
		s->nopen--;
	mem_free(sl->row);
	mem_free(sl);
}

/* Marks idle collections beyond the cap CLOSING, least recently used first, and returns
 * them for the caller to close without the lock. */
static size_t evict_pick(store *s, slot **victims, size_t max)
{
	size_t n = 0;
	for (list_node *it = s->lru.prev; it != &s->lru && s->nopen > s->max_open && n < max;
	     it = it->prev) {
		slot *sl = container_of(it, slot, lru);
		if (sl->state != SLOT_READY || sl->refs)
			continue;
		sl->state = SLOT_CLOSING;
		s->nopen--;
		victims[n++] = sl;
	}
	return n;
}

#define EVICT_BATCH 8

/* Called with mu held; returns with it held. */
static void evict(store *s)
{
	slot *v[EVICT_BATCH];
	size_t n = evict_pick(s, v, EVICT_BATCH);
	if (!n)
		return;
	pthread_mutex_unlock(&s->mu);
	for (size_t i = 0; i < n; i++)
		coll_close(v[i]->c);
	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < n; i++)
		slot_remove(s, v[i]);
	pthread_cond_broadcast(&s->cv);
}

/* --- the catalog ---------------------------------------------------------------------- */

#define CATALOG_SCHEMA                                                                             \
	"CREATE TABLE IF NOT EXISTS collections ("                                                 \
	" namespace TEXT NOT NULL, name TEXT NOT NULL, def BLOB NOT NULL,"                         \
	" type_namespace TEXT NOT NULL, type_name TEXT NOT NULL,"                                  \
	" labels TEXT NOT NULL CHECK (CASE WHEN json_valid(labels)"                                \
	"   THEN json_type(labels) = 'object' ELSE 0 END),"                                        \
	" indexed_fields TEXT NOT NULL CHECK (CASE WHEN json_valid(indexed_fields)"                \
	"   THEN json_type(indexed_fields) = 'array' ELSE 0 END),"                                 \
	" created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,"                               \
	" PRIMARY KEY (namespace, name)) WITHOUT ROWID;"                                           \
	"CREATE INDEX IF NOT EXISTS collections_by_type"                                           \
	" ON collections(type_name, type_namespace);"

#define CATALOG_COLUMNS                                                                            \
	"namespace, name, def, type_namespace, type_name, labels, indexed_fields,"                 \
	" created_at, updated_at"

static int catalog_conn(const char *path, const coll_options *o, sqlite3 **out)
{
	sqlite3 *db = NULL;
	int src = db_open(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
			  &db);
	if (src != SQLITE_OK) {
		int rc = db_fail(db, src, "open catalog");
		sqlite3_close(db);
		return rc;
	}
	sqlite3_extended_result_codes(db, 1);
	sqlite3_busy_timeout(db, o->busy_timeout_ms);
	const char *sql = o->sync_normal ? "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
					 : "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;";
	src = sqlite3_exec(db, sql, NULL, NULL, NULL);
	if (src == SQLITE_OK)
		src = sqlite3_exec(db, CATALOG_SCHEMA, NULL, NULL, NULL);
	if (src != SQLITE_OK) {
		int rc = db_fail(db, src, "catalog schema");
		sqlite3_close(db);
		return rc;
	}
	*out = db;
	return 0;
}

static void bind_text_or(sqlite3_stmt *st, int i, const char *v, const char *dflt)
{
	sqlite3_bind_text(st, i, v ? v : dflt, -1, SQLITE_STATIC);
}

/* A catalog row's parameters ?1 to ?7: namespace, name, definition, type namespace and
 * name, labels, indexed fields (every statement that writes a row binds them). */
static void bind_row(sqlite3_stmt *st, const store_collection *c)
{
	sqlite3_bind_text(st, 1, c->ns, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, c->name, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 3, c->def ? c->def : "", (int)c->def_len, SQLITE_STATIC);
	bind_text_or(st, 4, c->type_ns, "");
	bind_text_or(st, 5, c->type_name, "");
	bind_text_or(st, 6, c->labels, "{}");
	bind_text_or(st, 7, c->indexed, "[]");
}

static void row_view(sqlite3_stmt *st, store_collection *c)
{
	c->ns = (const char *)sqlite3_column_text(st, 0);
	c->name = (const char *)sqlite3_column_text(st, 1);
	c->def = sqlite3_column_blob(st, 2);
	c->def_len = (size_t)sqlite3_column_bytes(st, 2);
	c->type_ns = (const char *)sqlite3_column_text(st, 3);
	c->type_name = (const char *)sqlite3_column_text(st, 4);
	c->labels = (const char *)sqlite3_column_text(st, 5);
	c->indexed = (const char *)sqlite3_column_text(st, 6);
	c->created_at = sqlite3_column_int64(st, 7);
	c->updated_at = sqlite3_column_int64(st, 8);
	c->version = 0;
}

/* One allocation: the struct, then the def bytes, then the strings. */
static store_collection *row_copy(const store_collection *v)
{
	const char *strs[] = {v->ns, v->name, v->type_ns, v->type_name, v->labels, v->indexed};
	size_t n = sizeof(*v) + v->def_len;
	for (size_t i = 0; i < 6; i++)
		n += strlen(strs[i] ? strs[i] : "") + 1;
	store_collection *c = mem_alloc(n);
	if (!c)
		return NULL;
	*c = *v;
	char *p = (char *)(c + 1);
	if (v->def_len)
		memcpy(p, v->def, v->def_len);
	c->def = p;
	p += v->def_len;
	const char **dst[] = {&c->ns,	     &c->name,	 &c->type_ns,
			      &c->type_name, &c->labels, &c->indexed};
	for (size_t i = 0; i < 6; i++) {
		size_t len = strlen(strs[i] ? strs[i] : "") + 1;
		memcpy(p, strs[i] ? strs[i] : "", len);
		*dst[i] = p;
		p += len;
	}
	return c;
}

/* 1 when the row exists, 0 when not, or -errno. Takes cat_mu. */
static int catalog_get(store *s, const char *ns, const char *name, store_collection **out)
{
	pthread_mutex_lock(&s->cat_mu);
	sqlite3_stmt *st = s->st_get;
	sqlite3_bind_text(st, 1, ns, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
	int src = sqlite3_step(st);
	int rc;
	if (src == SQLITE_ROW) {
		rc = 1;
		if (out) {
			store_collection v;
			row_view(st, &v);
			*out = row_copy(&v);
			if (!*out)
				rc = store_err_set(-ENOMEM, "out of memory");
		}
	} else if (src == SQLITE_DONE) {
		rc = 0;
	} else {
		rc = db_fail(s->cat, src, "catalog read");
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	pthread_mutex_unlock(&s->cat_mu);
	return rc;
}

/* Runs one statement of the ddl connection to completion. */
static int ddl_exec(store *s, const char *sql)
{
	int src = sqlite3_exec(s->ddl, sql, NULL, NULL, NULL);
	return src == SQLITE_OK ? 0 : db_fail(s->ddl, src, sql);
}

static void ddl_rollback(store *s)
{
	if (!sqlite3_get_autocommit(s->ddl))
		sqlite3_exec(s->ddl, "ROLLBACK", NULL, NULL, NULL);
}

/* --- paths ------------------------------------------------------------------------------ */

static void recover_swaps(store *s, int nsfd, const char *ns);

/* Removes what an interrupted create or delete left in each namespace directory, after
 * undoing an interrupted replacement (recover_swaps), whose old tree has a staged name. */
static void sweep_leftovers(store *s)
{
	int fd = openat(s->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return;
	}
	struct dirent *e;
	while ((e = readdir(d))) {
		if (!store_name_valid(e->d_name))
			continue;
		int nsfd = openat(s->dirfd, e->d_name,
				  O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		DIR *nd = nsfd >= 0 ? fdopendir(nsfd) : NULL;
		if (!nd) {
			if (nsfd >= 0)
				close(nsfd);
			continue;
		}
		recover_swaps(s, nsfd, e->d_name);
		struct dirent *c;
		while ((c = readdir(nd))) {
			if (strncmp(c->d_name, NEW_PREFIX, strlen(NEW_PREFIX)) &&
			    strncmp(c->d_name, DEL_PREFIX, strlen(DEL_PREFIX)))
				continue;
			int rc = dirs_tree_remove(dirfd(nd), c->d_name, NULL);
			log_info("store: removed leftover %s/%s: %s", e->d_name, c->d_name,
				 rc ? strerror(-rc) : "ok");
		}
		closedir(nd);
	}
	closedir(d);
}

/* --- open, close ---------------------------------------------------------------------- */

int store_open(const char *data_dir, const store_options *opts, store **out)
{
	store_options o = opts ? *opts : (store_options){0};
	store *s = mem_calloc(1, sizeof(*s));
	if (!s)
		return store_err_set(-ENOMEM, "out of memory");
	s->dirfd = -1;
	s->copts = (coll_options){
		.sync_normal = o.sync_normal,
		.queue_max = o.queue_max ? o.queue_max : 10000,
		.group_max = o.group_max,
		.readers_max = o.readers_max ? o.readers_max : 4,
		.busy_timeout_ms = o.busy_timeout_ms ? o.busy_timeout_ms : 5000,
	};
	s->max_open = o.max_open ? o.max_open : 64;
	list_init(&s->lru);
	pthread_mutex_init(&s->cat_mu, NULL);
	pthread_mutex_init(&s->ddl_mu, NULL);
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);

	char path[PATH_MAX];
	int rc = 0;
	s->dir = mem_strdup(data_dir);
	if (!s->dir) {
		rc = store_err_set(-ENOMEM, "out of memory");
		goto fail;
	}
	if ((rc = fs_mkdir_p(data_dir)) < 0) {
		store_err_set(rc, "data directory %s: %s", data_dir, strerror(-rc));
		goto fail;
	}
	s->dirfd = open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s->dirfd < 0 || (mkdirat(s->dirfd, "system", 0755) && errno != EEXIST)) {
		rc = store_err_set(-errno, "data directory %s: %s", data_dir, strerror(errno));
		goto fail;
	}
	if (snprintf(path, sizeof(path), "%s/system/catalog.db", data_dir) >= (int)sizeof(path)) {
		rc = store_err_set(-ENAMETOOLONG, "data directory path too long");
		goto fail;
	}
	if ((rc = catalog_conn(path, &s->copts, &s->ddl)) < 0 ||
	    (rc = catalog_conn(path, &s->copts, &s->cat)) < 0)
		goto fail;
	int src = sqlite3_prepare_v3(s->cat,
				     "SELECT " CATALOG_COLUMNS " FROM collections"
				     " WHERE namespace = ?1 AND name = ?2",
				     -1, SQLITE_PREPARE_PERSISTENT, &s->st_get, NULL);
	if (src != SQLITE_OK) {
		rc = db_fail(s->cat, src, "catalog");
		goto fail;
	}
	sweep_leftovers(s);
	*out = s;
	return 0;
fail:
	store_close(s);
	return rc;
}

void store_close(store *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	list_each_safe (it, &s->lru) {
		slot *sl = container_of(it, slot, lru);
		if (sl->refs)
			log_error("store: closing %s/%s with %zu handles held", sl->ns, sl->name,
				  sl->refs);
		if (sl->c)
			coll_close(sl->c);
		slot_remove(s, sl);
	}
	pthread_mutex_unlock(&s->mu);
	sqlite3_finalize(s->st_get);
	sqlite3_close(s->cat);
	sqlite3_close(s->ddl);
	if (s->dirfd >= 0)
		close(s->dirfd);
	pthread_mutex_destroy(&s->cat_mu);
	pthread_mutex_destroy(&s->ddl_mu);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	mem_free(s->dir);
	mem_free(s);
}

const char *store_data_dir(const store *s) { return s->dir; }

static int check_names(const char *ns, const char *name)
{
	if (!store_name_valid(ns))
		return store_err_set(
			-EINVAL, "invalid namespace name (want [A-Za-z0-9][A-Za-z0-9_-]{0,62})");
	if (!store_name_valid(name))
		return store_err_set(
			-EINVAL, "invalid collection name (want [A-Za-z0-9][A-Za-z0-9_-]{0,62})");
	return 0;
}

/* --- create, delete, update --------------------------------------------------------- */

static int build_dir(store *s, int nsfd, const char *ns, const char *tmp)
{
	char path[PATH_MAX];
	if (mkdirat(nsfd, tmp, 0755))
		return store_err_set(-errno, "mkdir %s/%s: %s", ns, tmp, strerror(errno));
	if (snprintf(path, sizeof(path), "%s/%s/%s", s->dir, ns, tmp) >= (int)sizeof(path))
		return store_err_set(-ENAMETOOLONG, "path too long");
	int rc = store_writer_create(path);
	if (rc < 0)
		return rc;
	int fd = openat(nsfd, tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return store_err_set(-errno, "open %s: %s", tmp, strerror(errno));
	if ((mkdirat(fd, "files", 0755) || mkdirat(fd, "staging", 0755) || fsync(fd)))
		rc = store_err_set(-errno, "collection directory: %s", strerror(errno));
	close(fd);
	return rc;
}

int store_collection_create(store *s, const store_collection *c, int flags)
{
	int rc = check_names(c->ns, c->name);
	if (rc < 0)
		return rc;
	if (!(flags & STORE_CREATE_RESERVED) && store_ns_reserved(c->ns))
		return store_err_set(-EINVAL, "namespace %s is reserved", c->ns);

	char tmp[64];
	char uuid[UUID_STR_LEN];
	if ((rc = uuid7_make(uuid)) < 0)
		return store_err_set(rc, "no randomness");
	snprintf(tmp, sizeof(tmp), NEW_PREFIX "%s", uuid);

	pthread_mutex_lock(&s->ddl_mu);
	int nsfd = -1;
	bool built = false;
	if (mkdirat(s->dirfd, c->ns, 0755) == 0) {
		if (fsync(s->dirfd)) {
			rc = store_err_set(-errno, "fsync data directory: %s", strerror(errno));
			goto out;
		}
	} else if (errno != EEXIST) {
		rc = store_err_set(-errno, "mkdir %s: %s", c->ns, strerror(errno));
		goto out;
	}
	nsfd = openat(s->dirfd, c->ns, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (nsfd < 0) {
		rc = store_err_set(-errno, "open %s: %s", c->ns, strerror(errno));
		goto out;
	}
	/* The row goes in first but is committed last: until then nobody sees it, and the
	 * insert itself is the duplicate and JSON check. */
	if ((rc = ddl_exec(s, "BEGIN IMMEDIATE")) < 0)
		goto out;
	sqlite3_stmt *st = NULL;
	int src = sqlite3_prepare_v2(s->ddl,
				     "INSERT INTO collections (" CATALOG_COLUMNS ")"
				     " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
				     -1, &st, NULL);
	if (src == SQLITE_OK) {
		int64_t now = now_us();
		bind_row(st, c);
		sqlite3_bind_int64(st, 8, c->created_at ? c->created_at : now);
		sqlite3_bind_int64(st, 9, c->updated_at ? c->updated_at : now);
		src = sqlite3_step(st);
	}
	sqlite3_finalize(st);
	if (src != SQLITE_DONE) {
		rc = store_sqlite_errno(src);
		if (rc == -EEXIST)
			store_err_set(rc, "collection %s/%s already exists", c->ns, c->name);
		else if (rc == -EINVAL)
			store_err_set(rc, "invalid collection: %s", sqlite3_errmsg(s->ddl));
		else
			rc = db_fail(s->ddl, src, "catalog insert");
		goto out;
	}
	/* No row, so a directory of that name is what a crash left behind. */
	rc = dirs_tree_remove(nsfd, c->name, NULL);
	if (rc < 0 && rc != -ENOENT) {
		store_err_set(rc, "removing leftover %s/%s: %s", c->ns, c->name, strerror(-rc));
		goto out;
	}
	built = true;
	if ((rc = build_dir(s, nsfd, c->ns, tmp)) < 0)
		goto out;
	if (renameat(nsfd, tmp, nsfd, c->name) || fsync(nsfd)) {
		rc = store_err_set(-errno, "rename into %s/%s: %s", c->ns, c->name,
				   strerror(errno));
		goto out;
	}
	rc = ddl_exec(s, "COMMIT");
out:
	if (rc < 0) {
		ddl_rollback(s);
		/* With our row inserted, no committed collection had this name: whatever
		 * we made under either name is ours to remove. */
		if (built) {
			dirs_tree_remove(nsfd, tmp, NULL);
			dirs_tree_remove(nsfd, c->name, NULL);
		}
		unlinkat(s->dirfd, c->ns, AT_REMOVEDIR); /* only if we left it empty */
	}
	if (nsfd >= 0)
		close(nsfd);
	pthread_mutex_unlock(&s->ddl_mu);
	return rc;
}

/* What a delete reports as removed; best effort, the delete goes on regardless. */
static void count_contents(store *s, int nsfd, const char *ns, const char *name, int64_t *records,
			   int64_t *files)
{
	char path[PATH_MAX];
	store_reader *r;
	if (snprintf(path, sizeof(path), "%s/%s/%s/records.db", s->dir, ns, name) <
		    (int)sizeof(path) &&
	    store_reader_open(path, s->copts.busy_timeout_ms, &r) == 0) {
		store_reader_count(r, records);
		store_reader_close(r);
	}
	int fd =
		nsfd < 0 ? -1 : openat(nsfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	int ffd =
		fd < 0 ? -1 : openat(fd, "files", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	int64_t bytes;
	if (ffd >= 0) {
		dirs_tree_stat(ffd, files, &bytes);
		close(ffd);
	}
	if (fd >= 0)
		close(fd);
}

static int catalog_remove(store *s, const char *ns, const char *name)
{
	sqlite3_stmt *st = NULL;
	int src = sqlite3_prepare_v2(s->ddl,
				     "DELETE FROM collections WHERE namespace = ?1 AND name = ?2",
				     -1, &st, NULL);
	if (src == SQLITE_OK) {
		sqlite3_bind_text(st, 1, ns, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
		src = sqlite3_step(st);
	}
	sqlite3_finalize(st);
	return src == SQLITE_DONE ? 0 : db_fail(s->ddl, src, "catalog delete");
}

int store_collection_delete(store *s, const char *ns, const char *name, int64_t *records,
			    int64_t *files)
{
	int rc = check_names(ns, name);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&s->ddl_mu);
	rc = catalog_get(s, ns, name, NULL);
	if (rc <= 0) {
		if (rc == 0)
			rc = store_err_set(-ENOENT, "no collection %s/%s", ns, name);
		pthread_mutex_unlock(&s->ddl_mu);
		return rc;
	}
	rc = 0;

	/* Doom the slot (adding one if the collection is not open) so that no acquire
	 * opens it again, then wait for the handles in use to be released. */
	pthread_mutex_lock(&s->mu);
	slot *sl;
	while ((sl = slot_find(s, ns, name)) &&
	       (sl->state == SLOT_OPENING || sl->state == SLOT_CLOSING))
		pthread_cond_wait(&s->cv, &s->mu);
	if (!sl) {
		sl = slot_add(s, ns, name, SLOT_DOOMED);
		if (!sl) {
			pthread_mutex_unlock(&s->mu);
			pthread_mutex_unlock(&s->ddl_mu);
			return store_err_set(-ENOMEM, "out of memory");
		}
	} else {
		s->nopen--;
		sl->state = SLOT_DOOMED;
		while (sl->refs)
			pthread_cond_wait(&s->cv, &s->mu);
	}
	store_coll *c = sl->c;
	sl->c = NULL;
	pthread_mutex_unlock(&s->mu);

	if (c)
		coll_close(c);
	int nsfd = openat(s->dirfd, ns, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	int64_t nrec = 0, nfiles = 0;
	count_contents(s, nsfd, ns, name, &nrec, &nfiles);

	rc = catalog_remove(s, ns, name);
	if (!rc && nsfd >= 0) {
		/* The row is gone: from here on the directory is garbage however far we get.
		 * Renaming first makes what a crash leaves recognisable to the sweep. */
		char uuid[UUID_STR_LEN], del[64];
		if (uuid7_make(uuid) == 0) {
			snprintf(del, sizeof(del), DEL_PREFIX "%s", uuid);
			if (renameat(nsfd, name, nsfd, del) == 0) {
				fsync(nsfd);
				dirs_tree_remove(nsfd, del, NULL);
			}
		}
		if (unlinkat(s->dirfd, ns, AT_REMOVEDIR) == 0)
			fsync(s->dirfd);
	}
	if (nsfd >= 0)
		close(nsfd);
	if (rc == 0) {
		if (records)
			*records = nrec;
		if (files)
			*files = nfiles;
	}
	pthread_mutex_lock(&s->mu);
	slot_remove(s, sl);
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	pthread_mutex_unlock(&s->ddl_mu);
	return rc;
}

int store_collection_get(store *s, const char *ns, const char *name, store_collection **out)
{
	int rc = check_names(ns, name);
	if (rc < 0)
		return rc;
	/* Every call of the services starts here: an open collection answers from its slot
	 * instead of a catalog read on the one shared connection. */
	pthread_mutex_lock(&s->mu);
	slot *sl = slot_find(s, ns, name);
	store_collection *copy =
		sl && sl->state == SLOT_READY && sl->row ? row_copy(sl->row) : NULL;
	pthread_mutex_unlock(&s->mu);
	if (copy) {
		*out = copy;
		return 0;
	}
	rc = catalog_get(s, ns, name, out);
	if (rc == 0)
		return store_err_set(-ENOENT, "no collection %s/%s", ns, name);
	return rc < 0 ? rc : 0;
}

uint64_t store_collection_version(store *s, const char *ns, const char *name)
{
	pthread_mutex_lock(&s->mu);
	slot *sl = slot_find(s, ns, name);
	uint64_t v = sl && sl->state == SLOT_READY && sl->row ? sl->version : 0;
	pthread_mutex_unlock(&s->mu);
	return v;
}

int store_collection_list(store *s, const store_list_filter *f,
			  int (*cb)(void *ctx, const store_collection *c), void *ctx, bool *more)
{
	if (more)
		*more = false;
	if (f->nlabels > STORE_LABEL_FILTERS_MAX)
		return store_err_set(-EINVAL, "at most %d label filters", STORE_LABEL_FILTERS_MAX);
	if ((f->after_ns == NULL) != (f->after_name == NULL))
		return store_err_set(-EINVAL, "a cursor needs both namespace and name");
	/* The SQL text is assembled from fixed fragments only; every value is a parameter. */
	char sql[512 + STORE_LABEL_FILTERS_MAX * 80];
	size_t n = (size_t)snprintf(sql, sizeof(sql),
				    "SELECT " CATALOG_COLUMNS " FROM collections WHERE 1");
#define APPEND(frag) n += (size_t)snprintf(sql + n, sizeof(sql) - n, "%s", frag)
	if (f->ns)
		APPEND(" AND namespace = ?");
	if (f->users_only)
		APPEND(" AND lower(namespace) NOT IN (?, ?, ?, ?)");
	if (f->type_ns)
		APPEND(" AND type_namespace = ?");
	if (f->type_name)
		APPEND(" AND type_name = ?");
	if (f->after_ns)
		APPEND(" AND (namespace, name) > (?, ?)");
	for (size_t i = 0; i < f->nlabels; i++)
		APPEND(" AND EXISTS (SELECT 1 FROM json_each(labels) WHERE key = ? AND value = ?)");
	APPEND(" ORDER BY namespace, name LIMIT ?");
#undef APPEND

	pthread_mutex_lock(&s->cat_mu);
	sqlite3_stmt *st = NULL;
	int src = sqlite3_prepare_v2(s->cat, sql, -1, &st, NULL);
	int rc = 0;
	if (src != SQLITE_OK) {
		rc = db_fail(s->cat, src, "catalog list");
		goto out;
	}
	int i = 1;
	if (f->ns)
		sqlite3_bind_text(st, i++, f->ns, -1, SQLITE_STATIC);
	_Static_assert(N_RESERVED == 4, "one parameter per reserved namespace");
	for (size_t k = 0; f->users_only && k < N_RESERVED; k++)
		sqlite3_bind_text(st, i++, reserved[k], -1, SQLITE_STATIC);
	if (f->type_ns)
		sqlite3_bind_text(st, i++, f->type_ns, -1, SQLITE_STATIC);
	if (f->type_name)
		sqlite3_bind_text(st, i++, f->type_name, -1, SQLITE_STATIC);
	if (f->after_ns) {
		sqlite3_bind_text(st, i++, f->after_ns, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, i++, f->after_name, -1, SQLITE_STATIC);
	}
	for (size_t k = 0; k < f->nlabels; k++) {
		sqlite3_bind_text(st, i++, f->label_keys[k], -1, SQLITE_STATIC);
		sqlite3_bind_text(st, i++, f->label_values[k], -1, SQLITE_STATIC);
	}
	/* One row past the limit tells whether there is more. */
	sqlite3_bind_int64(st, i, f->limit ? (int64_t)f->limit + 1 : -1);
	size_t rows = 0;
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		if (f->limit && rows == f->limit) {
			if (more)
				*more = true;
			break;
		}
		rows++;
		store_collection v;
		row_view(st, &v);
		if ((rc = cb(ctx, &v)) != 0)
			goto out;
	}
	if (src != SQLITE_ROW && src != SQLITE_DONE)
		rc = db_fail(s->cat, src, "catalog list");
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&s->cat_mu);
	return rc;
}

/* After a committed change of the row (ddl_mu held): an open slot takes the new row. An
 * opening one may have read the old row, so it is waited for. Without a row (no memory,
 * a failed read) store_collection_get falls back to the catalog. */
static void slot_refresh(store *s, const char *ns, const char *name)
{
	store_collection *row = NULL;
	if (catalog_get(s, ns, name, &row) <= 0)
		row = NULL;
	pthread_mutex_lock(&s->mu);
	slot *sl;
	while ((sl = slot_find(s, ns, name)) && sl->state == SLOT_OPENING)
		pthread_cond_wait(&s->cv, &s->mu);
	if (sl && sl->state == SLOT_READY) {
		slot_set_row(sl, row);
		row = NULL;
	}
	pthread_mutex_unlock(&s->mu);
	mem_free(row);
}

int store_collection_update_def(store *s, const store_collection *c)
{
	int rc = check_names(c->ns, c->name);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&s->ddl_mu);
	sqlite3_stmt *st = NULL;
	int src = sqlite3_prepare_v2(s->ddl,
				     "UPDATE collections SET def = ?3, type_namespace = ?4,"
				     " type_name = ?5, labels = ?6, indexed_fields = ?7,"
				     " updated_at = ?8 WHERE namespace = ?1 AND name = ?2",
				     -1, &st, NULL);
	if (src == SQLITE_OK) {
		bind_row(st, c);
		sqlite3_bind_int64(st, 8, c->updated_at ? c->updated_at : now_us());
		src = sqlite3_step(st);
	}
	sqlite3_finalize(st);
	if (src != SQLITE_DONE) {
		rc = store_sqlite_errno(src);
		if (rc == -EINVAL)
			store_err_set(rc, "invalid collection: %s", sqlite3_errmsg(s->ddl));
		else
			rc = db_fail(s->ddl, src, "catalog update");
	} else if (sqlite3_changes(s->ddl) == 0) {
		rc = store_err_set(-ENOENT, "no collection %s/%s", c->ns, c->name);
	} else {
		slot_refresh(s, c->ns, c->name);
	}
	pthread_mutex_unlock(&s->ddl_mu);
	return rc;
}

/* --- handles ------------------------------------------------------------------------- */

int store_coll_acquire(store *s, const char *ns, const char *name, store_coll **out)
{
	int rc = check_names(ns, name);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&s->mu);
	slot *sl;
	while ((sl = slot_find(s, ns, name))) {
		if (sl->state == SLOT_READY) {
			sl->refs++;
			list_remove(&sl->lru);
			list_push_front(&s->lru, &sl->lru);
			*out = sl->c;
			pthread_mutex_unlock(&s->mu);
			return 0;
		}
		if (sl->state == SLOT_DOOMED) {
			pthread_mutex_unlock(&s->mu);
			return store_err_set(-ENOENT, "no collection %s/%s", ns, name);
		}
		/* OPENING, CLOSING, SWAPPING: the outcome is the collection to hand out. */
		pthread_cond_wait(&s->cv, &s->mu);
	}
	sl = slot_add(s, ns, name, SLOT_OPENING);
	pthread_mutex_unlock(&s->mu);
	if (!sl)
		return store_err_set(-ENOMEM, "out of memory");

	/* Opening takes a while (files, schema, a thread): done without the table lock,
	 * others asking for this collection wait for the outcome. */
	store_coll *c = NULL;
	store_collection *row = NULL;
	rc = catalog_get(s, ns, name, &row);
	if (rc == 0) {
		rc = store_err_set(-ENOENT, "no collection %s/%s", ns, name);
	} else if (rc > 0) {
		char path[PATH_MAX];
		if (snprintf(path, sizeof(path), "%s/%s/%s", s->dir, ns, name) >= (int)sizeof(path))
			rc = store_err_set(-ENAMETOOLONG, "path too long");
		else
			rc = coll_open(path, ns, name, &s->copts, sl, &c);
	}

	pthread_mutex_lock(&s->mu);
	if (rc < 0) {
		mem_free(row);
		slot_remove(s, sl);
	} else {
		sl->c = c;
		sl->created_at = row->created_at;
		slot_set_row(sl, row);
		sl->state = SLOT_READY;
		sl->refs = 1;
		*out = c;
		evict(s);
	}
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	return rc;
}

int64_t store_coll_created_at(const store_coll *c)
{
	const slot *sl = coll_owner(c);
	return sl->created_at;
}

void store_coll_release(store_coll *c)
{
	slot *sl = coll_owner(c);
	store *s = sl->owner;
	pthread_mutex_lock(&s->mu);
	if (--sl->refs == 0 && sl->state == SLOT_DOOMED)
		pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

/* --- install: a directory built aside becomes a collection ------------------------------- */

/* An overwriting install swaps the trees, then commits the new row: a crash between the two
 * would leave the new tree under the old row. So the new tree carries a mark, written
 * before the swap and removed after the commit, naming the row it belongs to (its
 * created_at) and where the old tree went: at open, a mark whose row is not in the catalog
 * means the commit never happened, and the trees are swapped back. */
#define SWAP_MARK ".swap"

static int swap_mark(int nsfd, const char *tmp, int64_t created_at)
{
	char text[128];
	int n = snprintf(text, sizeof(text), "%lld %s\n", (long long)created_at, tmp);
	int dfd = openat(nsfd, tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	int fd = dfd < 0 ? -1
			 : openat(dfd, SWAP_MARK,
				  O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
	int rc = fd >= 0 && write(fd, text, (size_t)n) == n && !fsync(fd) && !fsync(dfd)
			 ? 0
			 : store_err_set(-EIO, "marking the swap: %s", strerror(errno));
	if (fd >= 0)
		close(fd);
	if (dfd >= 0)
		close(dfd);
	return rc;
}

/* At open: undoes the swaps of ns whose commit a crash prevented (see SWAP_MARK). */
static void recover_swaps(store *s, int nsfd, const char *ns)
{
	DIR *d;
	if (dirs_open(nsfd, ".", 0, &d))
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (!store_name_valid(e->d_name))
			continue;
		int cfd = openat(nsfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		int mfd = cfd < 0 ? -1 : openat(cfd, SWAP_MARK, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		char text[128] = {0}, tmp[80] = {0};
		long long created = 0;
		bool marked = mfd >= 0 && read(mfd, text, sizeof(text) - 1) > 0 &&
			      sscanf(text, "%lld %79s", &created, tmp) == 2 &&
			      !strncmp(tmp, NEW_PREFIX, strlen(NEW_PREFIX)) && !strchr(tmp, '/');
		if (mfd >= 0)
			close(mfd);
		store_collection *row = NULL;
		if (marked && catalog_get(s, ns, e->d_name, &row) >= 0 && row &&
		    row->created_at == created) {
			unlinkat(cfd, SWAP_MARK, 0); /* committed: the mark was all that was left */
			fsync(cfd);
		} else if (marked && renameat2(nsfd, tmp, nsfd, e->d_name, RENAME_EXCHANGE) == 0) {
			fsync(nsfd);
			log_warn(
				"store: %s/%s: a replacement interrupted before its commit was undone",
				ns, e->d_name);
		} else if (mfd >= 0) {
			unlinkat(cfd, SWAP_MARK, 0);
		}
		mem_free(row);
		if (cfd >= 0)
			close(cfd);
	}
	closedir(d);
}

int store_stage_begin(store *s, const char *ns, char *path, size_t cap, char tmp[STORE_TMP_MAX])
{
	int rc = check_names(ns, "x");
	if (rc < 0)
		return rc;
	char uuid[UUID_STR_LEN];
	if ((rc = uuid7_make(uuid)) < 0)
		return store_err_set(rc, "no randomness");
	snprintf(tmp, STORE_TMP_MAX, NEW_PREFIX "%s", uuid);
	pthread_mutex_lock(&s->ddl_mu);
	if (mkdirat(s->dirfd, ns, 0755) == 0) {
		if (fsync(s->dirfd))
			rc = store_err_set(-errno, "fsync data directory: %s", strerror(errno));
	} else if (errno != EEXIST) {
		rc = store_err_set(-errno, "mkdir %s: %s", ns, strerror(errno));
	}
	int nsfd = rc ? -1 : openat(s->dirfd, ns, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (!rc && nsfd < 0)
		rc = store_err_set(-errno, "open %s: %s", ns, strerror(errno));
	if (!rc && mkdirat(nsfd, tmp, 0755))
		rc = store_err_set(-errno, "mkdir %s/%s: %s", ns, tmp, strerror(errno));
	int fd = rc ? -1 : openat(nsfd, tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (!rc && (fd < 0 || mkdirat(fd, "files", 0755) || mkdirat(fd, "staging", 0755)))
		rc = store_err_set(-errno, "collection directory: %s", strerror(errno));
	if (fd >= 0)
		close(fd);
	if (nsfd >= 0)
		close(nsfd);
	if (!rc && snprintf(path, cap, "%s/%s/%s", s->dir, ns, tmp) >= (int)cap)
		rc = store_err_set(-ENAMETOOLONG, "path too long");
	pthread_mutex_unlock(&s->ddl_mu);
	if (rc)
		store_stage_abort(s, ns, tmp);
	return rc;
}

void store_stage_abort(store *s, const char *ns, const char *tmp)
{
	pthread_mutex_lock(&s->ddl_mu);
	int nsfd = openat(s->dirfd, ns, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (nsfd >= 0) {
		dirs_tree_remove(nsfd, tmp, NULL);
		fsync(nsfd);
		close(nsfd);
	}
	unlinkat(s->dirfd, ns, AT_REMOVEDIR); /* only if we left it empty */
	pthread_mutex_unlock(&s->ddl_mu);
}

static int catalog_insert(store *s, const store_collection *c, int64_t now)
{
	sqlite3_stmt *st = NULL;
	int src = sqlite3_prepare_v2(s->ddl,
				     "INSERT INTO collections (" CATALOG_COLUMNS ")"
				     " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
				     -1, &st, NULL);
	if (src == SQLITE_OK) {
		bind_row(st, c);
		/* A new incarnation of the name: page tokens of the one replaced stop. */
		sqlite3_bind_int64(st, 8, now);
		sqlite3_bind_int64(st, 9, now);
		src = sqlite3_step(st);
	}
	sqlite3_finalize(st);
	if (src == SQLITE_DONE)
		return 0;
	int rc = store_sqlite_errno(src);
	if (rc == -EEXIST)
		return store_err_set(rc, "collection %s/%s already exists", c->ns, c->name);
	if (rc == -EINVAL)
		return store_err_set(rc, "invalid collection: %s", sqlite3_errmsg(s->ddl));
	return db_fail(s->ddl, src, "catalog insert");
}

/* Marks ns/name SWAPPING (adding a slot when it is not open), waits for its handles to be
 * released and closes it: acquires wait meanwhile and then open what the swap left. NULL
 * when out of memory. */
static slot *slot_swap_begin(store *s, const char *ns, const char *name)
{
	pthread_mutex_lock(&s->mu);
	slot *sl;
	while ((sl = slot_find(s, ns, name)) &&
	       (sl->state == SLOT_OPENING || sl->state == SLOT_CLOSING))
		pthread_cond_wait(&s->cv, &s->mu);
	if (!sl) {
		sl = slot_add(s, ns, name, SLOT_SWAPPING);
	} else {
		s->nopen--;
		sl->state = SLOT_SWAPPING;
		while (sl->refs)
			pthread_cond_wait(&s->cv, &s->mu);
	}
	store_coll *c = sl ? sl->c : NULL;
	if (sl)
		sl->c = NULL;
	pthread_mutex_unlock(&s->mu);
	if (c)
		coll_close(c);
	return sl;
}

static void slot_swap_end(store *s, slot *sl)
{
	pthread_mutex_lock(&s->mu);
	slot_remove(s, sl);
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

int store_collection_install(store *s, const store_collection *c, const char *tmp, int flags)
{
	int rc = check_names(c->ns, c->name);
	if (rc < 0)
		return rc;
	if (strncmp(tmp, NEW_PREFIX, strlen(NEW_PREFIX)) || strchr(tmp, '/'))
		return store_err_set(-EINVAL, "not a staged directory: %s", tmp);
	pthread_mutex_lock(&s->ddl_mu);
	slot *sl = NULL;
	bool swapped = false, renamed = false;
	int nsfd = openat(s->dirfd, c->ns, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (nsfd < 0) {
		rc = store_err_set(-errno, "open %s: %s", c->ns, strerror(errno));
		goto out;
	}
	int exists = catalog_get(s, c->ns, c->name, NULL);
	if (exists < 0) {
		rc = exists;
		goto out;
	}
	if (exists && !(flags & STORE_INSTALL_OVERWRITE)) {
		rc = store_err_set(-EEXIST, "collection %s/%s already exists", c->ns, c->name);
		goto out;
	}
	if (exists && !(sl = slot_swap_begin(s, c->ns, c->name))) {
		rc = store_err_set(-ENOMEM, "out of memory");
		goto out;
	}
	if ((rc = ddl_exec(s, "BEGIN IMMEDIATE")) < 0)
		goto out;
	if (exists && (rc = catalog_remove(s, c->ns, c->name)) < 0)
		goto out;
	int64_t now = now_us();
	if ((rc = catalog_insert(s, c, now)) < 0)
		goto out;
	if (exists) {
		if ((rc = swap_mark(nsfd, tmp, now)) < 0)
			goto out;
		/* One rename swaps the two trees: readers (held off by the slot) find either
		 * the old collection or the new one under the name, never a mix. */
		if (renameat2(nsfd, tmp, nsfd, c->name, RENAME_EXCHANGE)) {
			rc = store_err_set(-errno, "swap %s/%s: %s", c->ns, c->name,
					   strerror(errno));
			goto out;
		}
		swapped = true;
	} else {
		/* No row, so a directory of that name is what a crash left behind. */
		rc = dirs_tree_remove(nsfd, c->name, NULL);
		if (rc < 0 && rc != -ENOENT) {
			store_err_set(rc, "removing leftover %s/%s: %s", c->ns, c->name,
				      strerror(-rc));
			goto out;
		}
		if (renameat(nsfd, tmp, nsfd, c->name)) {
			rc = store_err_set(-errno, "rename into %s/%s: %s", c->ns, c->name,
					   strerror(errno));
			goto out;
		}
		renamed = true;
	}
	if (fsync(nsfd)) {
		rc = store_err_set(-errno, "fsync %s: %s", c->ns, strerror(errno));
		goto out;
	}
	rc = ddl_exec(s, "COMMIT");
out:
	if (rc < 0) {
		ddl_rollback(s);
		if (swapped)
			renameat2(nsfd, tmp, nsfd, c->name, RENAME_EXCHANGE);
		if (renamed)
			renameat(nsfd, c->name, nsfd, tmp);
		if (swapped || renamed)
			fsync(nsfd);
	} else if (swapped) {
		/* Committed: the mark has done its work. The replaced tree now has the staged
		 * name: garbage, as a crash would leave it to the sweep. */
		int fd = openat(nsfd, c->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd >= 0) {
			unlinkat(fd, SWAP_MARK, 0);
			fsync(fd);
			close(fd);
		}
		dirs_tree_remove(nsfd, tmp, NULL);
	}
	if (sl)
		slot_swap_end(s, sl);
	if (nsfd >= 0)
		close(nsfd);
	pthread_mutex_unlock(&s->ddl_mu);
	return rc;
}
