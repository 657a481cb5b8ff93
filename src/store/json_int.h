/* What json_in.c and json_out.c share, and nothing else includes: the first error of a
 * transcoding call (later ones are dropped, the first says most). */
#ifndef STORE_JSON_INT_H
#define STORE_JSON_INT_H
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

#include "store/err.h"

typedef struct json_err {
	char msg[256];
	bool set;
} json_err;

/* Record the error (if none yet); they return -EINVAL and -ENOMEM. */
static inline int json_err_vfail(json_err *e, const char *fmt, va_list ap)
{
	if (!e->set) {
		vsnprintf(e->msg, sizeof e->msg, fmt, ap);
		e->set = true;
	}
	return -EINVAL;
}

static inline int json_err_nomem(json_err *e)
{
	if (!e->set) {
		snprintf(e->msg, sizeof e->msg, "out of memory");
		e->set = true;
	}
	return -ENOMEM;
}

#endif
