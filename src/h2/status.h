/* gRPC status codes: the canonical set, numbered as grpc-status carries them. The API's
 * collector.Status.Code (response bodies) is numbered otherwise: it has no
 * DEADLINE_EXCEEDED or UNAUTHENTICATED, so NOT_FOUND is 4 there and 5 here. Never store
 * one of these in a collector.Status: services convert with svc_status_code (svc.h). */
#ifndef H2_STATUS_H
#define H2_STATUS_H

enum grpc_code {
	GRPC_OK = 0,
	GRPC_CANCELLED = 1,
	GRPC_UNKNOWN = 2,
	GRPC_INVALID_ARGUMENT = 3,
	GRPC_DEADLINE_EXCEEDED = 4,
	GRPC_NOT_FOUND = 5,
	GRPC_ALREADY_EXISTS = 6,
	GRPC_PERMISSION_DENIED = 7,
	GRPC_RESOURCE_EXHAUSTED = 8,
	GRPC_FAILED_PRECONDITION = 9,
	GRPC_ABORTED = 10,
	GRPC_OUT_OF_RANGE = 11,
	GRPC_UNIMPLEMENTED = 12,
	GRPC_INTERNAL = 13,
	GRPC_UNAVAILABLE = 14,
	GRPC_DATA_LOSS = 15,
	GRPC_UNAUTHENTICATED = 16,
};

/* "NOT_FOUND" etc.; "UNKNOWN" for codes outside the set. */
const char *grpc_code_name(int code);
/* The status for a failed pbdecode (base/pbdecode.h) of a peer's message: limits and bad
 * strings are the peer's INVALID_ARGUMENT; bytes that are not protobuf at all are
 * INTERNAL, as every gRPC implementation answers a request it cannot parse. */
int grpc_code_of_decode(int rc);

#endif
