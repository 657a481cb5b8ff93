/* What only the store's own files share: SQLite, and the pieces of one module that another
 * store module drives (the collection table in store.c opens and closes collections,
 * files.c works in a collection's directories). Nothing outside src/store/ includes this
 * header: the rest of the node sees the store through store.h, coll.h, files.h and
 * query.h, which name no SQLite type. */
#ifndef STORE_STORE_INT_H
#define STORE_STORE_INT_H
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>

#include "store/coll.h"
#include "store/err.h"

/* ---- SQLite (db.c) ---- */

/* Sets this thread's message to what: and db's message (the code's when db is NULL);
 * returns the code as a negative errno (-EIO when it is no error). */
int db_fail(sqlite3 *db, int src, const char *what);

/* ---- an open collection, as store.c and files.c drive it (coll.c) ---- */

typedef struct coll_options {
	bool sync_normal;
	size_t queue_max, group_max, readers_max;
	int busy_timeout_ms;
} coll_options;

/* Creates records.db with the schema in dir (which exists). */
int coll_create_db(const char *dir);
/* Opens the collection in dir; owner is the store's table entry (coll_owner). */
int coll_open(const char *dir, const char *ns, const char *name, const coll_options *o,
	      void *owner, store_coll **out);
/* Lets queued writes finish, stops the writer and closes every connection. */
void coll_close(store_coll *c);
void *coll_owner(const store_coll *c);
int coll_files_fd(const store_coll *c);   /* files/, O_DIRECTORY */
int coll_staging_fd(const store_coll *c); /* staging/, uploads in progress */

#endif
