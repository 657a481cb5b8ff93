#include "h2/status.h"

#include <errno.h>

static const char *const names[] = {
	"OK",
	"CANCELLED",
	"UNKNOWN",
	"INVALID_ARGUMENT",
	"DEADLINE_EXCEEDED",
	"NOT_FOUND",
	"ALREADY_EXISTS",
	"PERMISSION_DENIED",
	"RESOURCE_EXHAUSTED",
	"FAILED_PRECONDITION",
	"ABORTED",
	"OUT_OF_RANGE",
	"UNIMPLEMENTED",
	"INTERNAL",
	"UNAVAILABLE",
	"DATA_LOSS",
	"UNAUTHENTICATED",
};

const char *grpc_code_name(int code)
{
	if (code < 0 || code >= (int)(sizeof(names) / sizeof(names[0])))
		return "UNKNOWN";
	return names[code];
}

int grpc_code_of_decode(int rc)
{
	switch (rc) {
	case -ELOOP:
	case -EILSEQ:
		return GRPC_INVALID_ARGUMENT;
	case -ENOMEM:
		return GRPC_RESOURCE_EXHAUSTED;
	default:
		return GRPC_INTERNAL;
	}
}
