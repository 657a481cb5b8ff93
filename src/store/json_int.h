/* What json_in.c and json_out.c share, and nothing else includes: the first error of a
 * transcoding call (later ones are dropped, the first says most). */
#ifndef STORE_JSON_INT_H
#define STORE_JSON_INT_H
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

#include "store/err.h"
#include "store/pbwire.h"
#include "store/typepool.h"

/* The wire type a field of this type (TP_*) is written with (packed repeated fields
 * aside). */
static inline uint8_t json_wire_type(uint8_t type)
{
	switch (type) {
	case TP_DOUBLE:
	case TP_FIXED64:
	case TP_SFIXED64:
		return PB_FIXED64;
	case TP_FLOAT:
	case TP_FIXED32:
	case TP_SFIXED32:
		return PB_FIXED32;
	case TP_STRING:
	case TP_BYTES:
	case TP_MESSAGE:
		return PB_LEN;
	case TP_GROUP:
		return PB_SGROUP;
	default:
		return PB_VARINT;
	}
}

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
