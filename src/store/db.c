#include <errno.h>

#include "store/store_int.h"

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
	return store_seterr(rc ? rc : -EIO, "%s: %s", what,
			    db ? sqlite3_errmsg(db) : sqlite3_errstr(src));
}
