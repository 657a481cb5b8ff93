/* Running a unary method where it is served: on this node (a call of its own over
 * loopback, so that validation, limits and the deadline apply as to any call), or on a
 * linked node chosen by the mesh (mesh.h), through that node's Dispatch. Serve, Dispatch
 * and Invoke all run methods this way.
 *
 * Every call the route makes carries the hops it has made (DISPATCH_HOPS_HEADER, refused
 * at DISPATCH_HOP_LIMIT) and the ids of the nodes it passed (MESH_VISITED_HEADER): a node
 * that finds itself there refuses the call, so no route loops. A forwarded call that
 * surely did not run (no connection, stream refused) is tried once more on another node;
 * one that may have run never is. */
#ifndef SERVICES_ROUTE_H
#define SERVICES_ROUTE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "google/protobuf/any.pb-c.h"
#include "h2/call.h"
#include "services/svc.h"

#define DISPATCH_HOPS_HEADER "x-collector-hops"
#define DISPATCH_HOP_LIMIT 8
/* A workflow task's execution id and attempt number, sent with its calls so that handlers
 * can tell a repeated attempt from a new call. */
#define ROUTE_EXEC_ID_HEADER "x-collector-execution-id"
#define ROUTE_ATTEMPT_HEADER "x-collector-attempt"
#define ROUTE_EXEC_ID_MAX 64

/* The hops a call has made (DISPATCH_HOPS_HEADER), 0 when it carries none; -1 when the
 * header is not a number. */
long route_hops_of(call *c);

typedef struct route route;

/* The call is over. On OK, type_url and out (len bytes) are the output, handled_by the
 * node that ran it; all valid during the callback. Runs once per started route, never
 * inside route_start. */
typedef void (*route_done_fn)(void *user, int code, const char *message, const char *type_url,
			      const uint8_t *out, size_t len, const char *handled_by);

typedef struct route_req {
	call *c; /* the call this serves: its deadline, hops and visited nodes, its reactor */
	/* Without a call (the worker's): the reactor (the calling thread's) and deadline. */
	reactor *rx;
	int64_t deadline_ns;
	/* The execution it runs for (NULL: the call's own, if it carries one). */
	const char *exec_id;
	int attempt;
	const svc_env *env;
	const char *ns;
	const char *service; /* full name, or bare when one of the node's services ends so */
	const char *method;
	const char *type_url; /* the input's */
	const uint8_t *input;
	size_t input_len;
	const char *target; /* a collector id; NULL or "": any node that serves it */
	bool local_only;    /* Serve: this node or nothing */
	bool prefer_remote; /* routing_hints prefer=remote */
	bool round_robin;   /* routing_hints lb=round_robin */
	route_done_fn done;
	void *user;
	/* Out, when route_start returns NULL: the status that ends the run (NOT_FOUND,
	 * INVALID_ARGUMENT, UNAVAILABLE...) and why. */
	int fail_code;
	char fail_msg[600];
} route_req;

/* Starts the route. NULL when it cannot start: q says why, c is untouched and done is not
 * called. The route holds a reference on c until done. */
route *route_start(route_req *q);
/* Cancels the route: done(CANCELLED) follows at once. */
void route_cancel(route *r);

#endif
