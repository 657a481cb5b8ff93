/* The method table: gRPC paths ("/pkg.Service/Method") to handlers. Built at start-up,
 * read-only while reactors run, so it is shared by all of them without locks. */
#ifndef H2_METHOD_H
#define H2_METHOD_H
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct call call;

typedef enum method_kind {
	METHOD_UNARY,
	METHOD_CLIENT_STREAM,
	METHOD_SERVER_STREAM,
	METHOD_BIDI,
} method_kind;

/* Every callback runs on the call's reactor thread and must not block. */
typedef struct method_handlers {
	/* Headers arrived, before any message. Optional; may finish the call at once. */
	void (*on_start)(call *c);
	/* Unary and server-streaming: the single request, after the client half-closed. */
	void (*on_request)(call *c, const ProtobufCMessage *req);
	/* Client-streaming and bidi: each request as it arrives (freed after return). */
	void (*on_message)(call *c, const ProtobufCMessage *msg);
	/* Methods without an input descriptor get raw message bytes here instead of
	 * on_request/on_message, with the same timing as those. */
	void (*on_raw)(call *c, const uint8_t *data, size_t len);
	/* Client-streaming and bidi: the client half-closed. */
	void (*on_half_close)(call *c);
	/* Buffered output fell below the low-water mark (see call_send_would_block). */
	void (*on_writable)(call *c);
	/* The call ended before the handler finished it (client reset, deadline, lost
	 * connection, shutdown). Sends are no-ops from now on. Not called after
	 * call_finish. */
	void (*on_cancel)(call *c);
} method_handlers;

/* Who may call a method, for the server's authorizer (h2_server_set_auth), which gives
 * scope bits their meaning; this layer only carries the declaration from the table to the
 * check. A namespace is named by a field of the request (a dotted path of string fields
 * into the decoded message, "collection.namespace"), or, when ns_field is NULL, by the
 * call's metadata alone. */
typedef struct method_access {
	unsigned scopes;      /* any one of them allows the call; 0: undeclared */
	const char *ns_field; /* NULL: the metadata's namespace (or node-wide, see scopes) */
	/* A second namespace the call touches (Clone's source and destination): both
	 * checks must pass. 0: none. */
	unsigned scopes2;
	const char *ns_field2;
	bool open;	/* no credential needed (health, reflection) */
	bool any_token; /* any valid credential (Meta) */
	bool node_wide; /* acts on the node, not in a namespace: the scope on every one */
	/* The handler reads a namespace that nothing names (svc_ns_unnamed) as every one. */
	bool unnamed_all;
	/* The handler reads an empty ns_field as every namespace, whatever the metadata. */
	bool empty_all;
	bool not_audited; /* an admin call that is not recorded (reading the audit log) */
} method_access;

typedef struct method {
	const char *path;
	method_kind kind;
	const ProtobufCMessageDescriptor *input;  /* NULL: raw bytes to on_raw */
	const ProtobufCMessageDescriptor *output; /* NULL: handler sends raw bytes */
	method_handlers h;
	void *ctx; /* the service's state, see call_ctx */
	method_access access;
} method;

typedef struct method_table method_table;

method_table *method_table_new(void);
void method_table_free(method_table *t);
/* Copies *m (not the strings or descriptors it points to, which must outlive the table).
 * Returns 0, -EEXIST for a duplicate path, -EINVAL for a malformed one, -ENOMEM. */
int method_table_add(method_table *t, const method *m);
/* method_table_add for each of the n methods of m, in order; the first error stops it
 * (the methods added before stay). */
int method_table_add_all(method_table *t, const method *m, size_t n);
/* Sets the access of the method at path (the table's declaration of who may call what,
 * made in one place after the services added their methods). -ENOENT when not served. */
int method_table_set_access(method_table *t, const char *path, const method_access *a);
const method *method_table_find(const method_table *t, const char *path, size_t len);
size_t method_table_count(const method_table *t);
const method *method_table_at(const method_table *t, size_t i);
/* Visits each distinct service name ("pkg.Service") once, in the order added. */
void method_table_each_service(const method_table *t,
			       void (*fn)(const char *service, size_t len, void *arg), void *arg);

#endif
