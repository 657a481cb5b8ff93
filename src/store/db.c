#include <errno.h>
#include <malloc.h>
#include <pthread.h>

#include "base/mem.h"
#include "store/store_int.h"

/* SQLite allocates through the node's hook (base/mem.h) like the rest of the node, so that
 * the failure injection of the tests reaches its allocations too. */
static void *sq_malloc(int n) { return mem_alloc((size_t)n); }

static void sq_free(void *p) { mem_free(p); }

static void *sq_realloc(void *p, int n) { return mem_realloc(p, (size_t)n); }

static int sq_size(void *p) { return (int)malloc_usable_size(p); }

static int sq_roundup(int n) { return (n + 7) & ~7; }

static int sq_init(void *data)
{
	(void)data;
	return SQLITE_OK;
}

static void sq_shutdown(void *data) { (void)data; }

static void use_mem_hook(void)
{
	static const sqlite3_mem_methods methods = {
		.xMalloc = sq_malloc,
		.xFree = sq_free,
		.xRealloc = sq_realloc,
		.xSize = sq_size,
		.xRoundup = sq_roundup,
		.xInit = sq_init,
		.xShutdown = sq_shutdown,
	};
	/* Refused (SQLITE_MISUSE) when SQLite is already initialized, by a program that
	 * embeds the node and uses SQLite itself: its allocator then stays, which only
	 * means the hook's injection does not reach SQLite there. */
	sqlite3_config(SQLITE_CONFIG_MALLOC, &methods);
}

int db_open(const char *path, int flags, sqlite3 **db)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, use_mem_hook);
	return sqlite3_open_v2(path, db, flags, NULL);
}

int store_sqlite_errno(int sqlite_rc)
{
	switch (sqlite_rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_ROW:
	case SQLITE_DONE:
		return 0;
	case SQLITE_CONSTRAINT:
		return sqlite_rc == SQLITE_CONSTRAINT_UNIQUE ||
				       sqlite_rc == SQLITE_CONSTRAINT_PRIMARYKEY
			       ? -EEXIST
			       : -EINVAL;
	case SQLITE_ERROR:
	case SQLITE_MISMATCH:
	case SQLITE_RANGE:
		return -EINVAL;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_TOOBIG:
		return -E2BIG;
	case SQLITE_READONLY:
		return -EROFS;
	case SQLITE_PERM:
	case SQLITE_AUTH:
		return -EACCES;
	case SQLITE_INTERRUPT:
		return -EINTR;
	default: /* IOERR, CORRUPT, NOTADB, CANTOPEN, PROTOCOL... */
		return -EIO;
	}
}

int db_fail(sqlite3 *db, int src, const char *what)
{
	int rc = store_sqlite_errno(src);
	return store_err_set(rc ? rc : -EIO, "%s: %s", what,
			     db ? sqlite3_errmsg(db) : sqlite3_errstr(src));
}
