#include "store/err.h"

#include <stdarg.h>
#include <stdio.h>

static __thread char errmsg[512];

const char *store_errmsg(void) { return errmsg[0] ? errmsg : "no error"; }

int store_seterr(int rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(errmsg, sizeof(errmsg), fmt, ap);
	va_end(ap);
	return rc;
}
