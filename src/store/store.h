/* The storage root: the data directory, collection names, the node's catalog of
 * collections, and the table of open collections.
 *
 *   <data>/system/catalog.db             the catalog (SQLite, WAL)
 *   <data>/<ns>/<name>/records.db        one database per collection (coll.h)
 *   <data>/<ns>/<name>/files/            its attachments (files.h)
 *
 * The catalog row is the truth: a collection exists when its row does (an open collection
 * keeps a copy of its row, replaced whenever the row changes). Create builds the
 * directory under a temporary name, renames it into place and commits the row last; delete
 * removes the row first. A crash between the steps leaves only a directory no row points
 * to, removed by the next create of that name (or at open, for the temporary names).
 *
 * Every function is thread safe and returns 0 or a negative errno: -EINVAL (bad name or
 * argument), -ENOENT (no such collection), -EEXIST, -ENOSPC, -EIO, -ENOMEM... The calling
 * thread's store_err_msg() then says what went wrong. */
#ifndef STORE_STORE_H
#define STORE_STORE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/err.h"

#define STORE_NAME_MAX 63

typedef struct store store;
typedef struct store_coll store_coll; /* an open collection, coll.h */

typedef struct store_options {
	/* synchronous=NORMAL instead of FULL: faster commits, but an acknowledged write
	 * can be lost on power failure (never on a crash of the process). */
	bool sync_normal;
	size_t max_open;     /* open collections kept when idle; 0: 64 */
	size_t queue_max;    /* write requests waiting per collection; 0: 10000 */
	size_t group_max;    /* requests per transaction; 0: unlimited, 1: no grouping */
	size_t readers_max;  /* read connections per collection; 0: 4 */
	int busy_timeout_ms; /* 0: 5000 */
} store_options;

/* A catalog row. As an input, the pointers are borrowed for the call; as an output of
 * store_collection_get it lives in one allocation the caller frees with mem_free(). */
typedef struct store_collection {
	const char *ns, *name;
	const void *def; /* opaque definition (the service keeps a collector.Collection) */
	size_t def_len;
	const char *type_ns;		/* message type's namespace; NULL: "" */
	const char *type_name;		/* its full name; NULL: "" */
	const char *labels;		/* JSON object of strings; NULL: "{}" */
	const char *indexed;		/* JSON array of field paths; NULL: "[]" */
	int64_t created_at, updated_at; /* unix microseconds; 0 on input: now */
	uint64_t version;		/* output: see store_collection_version; ignored on input */
} store_collection;

/* Filters of store_collection_list; NULL or 0 fields do not filter. */
typedef struct store_list_filter {
	const char *ns;	 /* NULL: every namespace */
	bool users_only; /* leave the node's reserved namespaces out (store_ns_reserved) */
	const char *type_ns, *type_name;
	size_t nlabels; /* labels that must all be present with these values */
	const char *const *label_keys;
	const char *const *label_values;
	const char *after_ns, *after_name; /* keyset cursor: only rows after (ns, name) */
	size_t limit;
} store_list_filter;

#define STORE_LABEL_FILTERS_MAX 32

/* Name rules: [A-Za-z0-9][A-Za-z0-9_-]{0,62}. Nothing else, so a name is one plain path
 * segment that cannot be ".", "..", hidden, or contain '/'. */
bool store_name_valid(const char *name);
/* system, repo, backups, files (any case): the node's own, not for user collections. */
bool store_ns_reserved(const char *ns);

/* Opens or creates the data directory and catalog. opts may be NULL. */
int store_open(const char *data_dir, const store_options *opts, store **out);
/* Closes every open collection (their queued writes run first). No handle may be held. */
void store_close(store *s);
const char *store_data_dir(const store *s);

#define STORE_CREATE_RESERVED 1 /* allow a reserved namespace (the node's own collections) */
int store_collection_create(store *s, const store_collection *c, int flags);
/* Waits until no handle of the collection is held, then removes it. Counts are optional. */
int store_collection_delete(store *s, const char *ns, const char *name, int64_t *records,
			    int64_t *files);
/* *out: one allocation, mem_free() it. An open collection keeps its row (read when it was
 * opened, replaced by store_collection_update_def): that copy is returned, with its
 * version; other rows come from the catalog, with version 0. */
int store_collection_get(store *s, const char *ns, const char *name, store_collection **out);
/* The version of the row an open collection keeps, 0 when it keeps none (not open,
 * opening, closing, being deleted). A version is one content of one row, unique in the
 * process: it changes with every update of the row and when a deleted collection is made
 * again. For caches of what callers derive from a row (the services' unpacked
 * definitions): equal versions mean an unchanged row. */
uint64_t store_collection_version(store *s, const char *ns, const char *name);
/* Calls cb for each matching row in (ns, name) order; cb runs under the catalog lock and
 * must not call into the store; a nonzero return stops the listing and is returned.
 * *more (optional) tells whether rows remain after the limit. */
int store_collection_list(store *s, const store_list_filter *f,
			  int (*cb)(void *ctx, const store_collection *c), void *ctx, bool *more);
/* Replaces def, type, labels and indexed of an existing row; keeps created_at. */
int store_collection_update_def(store *s, const store_collection *c);

/* Restores and clones build a collection's directory aside, then install it. stage_begin
 * makes <data>/<ns>/<tmp>/ with files/ and staging/ (the caller writes records.db and the
 * attachments there) and its path; tmp is a name the open sweep removes if a crash leaves
 * it. stage_abort removes it (after a failed install too). */
#define STORE_TMP_MAX 64
int store_stage_begin(store *s, const char *ns, char *path, size_t cap, char tmp[STORE_TMP_MAX]);
void store_stage_abort(store *s, const char *ns, const char *tmp);
/* Makes the staged directory tmp the collection of row c (created_at and updated_at are
 * now). -EEXIST when the name is taken, unless STORE_INSTALL_OVERWRITE: then the old
 * collection is replaced at once (one RENAME_EXCHANGE of the trees and one catalog
 * transaction, with acquires held off meanwhile: a reader sees the old collection or the
 * new one, never a mix or none); it waits for the old one's handles to be released, and a
 * crash between the swap and the commit is undone at the next store_open. The namespace is
 * not checked against the reserved ones: the caller does. */
#define STORE_INSTALL_OVERWRITE 1
int store_collection_install(store *s, const store_collection *c, const char *tmp, int flags);

/* A handle on an open collection, opened on first use (acquire may block: call it from
 * a pool thread). Beyond max_open, acquire closes the least recently used idle ones.
 * Every acquire is paired with one release, after the handle's last write has completed
 * and its reads and file transfers have ended. Release never blocks: it may be called
 * from any thread, a done callback included. */
int store_coll_acquire(store *s, const char *ns, const char *name, store_coll **out);
void store_coll_release(store_coll *c);
/* The created_at of the catalog row of the collection a handle holds: a collection deleted
 * and made again under the same name is another value. A held collection cannot be
 * deleted, so this tells whether it is the one a row read before the acquire describes. */
int64_t store_coll_created_at(const store_coll *c);

#endif
