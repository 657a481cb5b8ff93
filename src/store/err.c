#include "store/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static __thread char errmsg[512];

const char *store_err_msg(void) { return errmsg[0] ? errmsg : "no error"; }

int store_err_set(int rc, const char *fmt, ...)
{
	/* Formatted apart first: a message may quote the one before (store_err_msg()). */
	char msg[sizeof(errmsg)];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	memcpy(errmsg, msg, sizeof(msg));
	return rc;
}
