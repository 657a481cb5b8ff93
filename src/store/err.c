#include "store/err.h"

#include <stdarg.h>
#include <stdio.h>

static __thread char errmsg[512];

const char *store_err_msg(void) { return errmsg[0] ? errmsg : "no error"; }

int store_err_set(int rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(errmsg, sizeof(errmsg), fmt, ap);
	va_end(ap);
	return rc;
}
