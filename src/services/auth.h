/* Who may do what (README, Security): bearer tokens with scopes per namespace, checked once
 * per call on the call path (h2_server_set_auth) against what the method table declares
 * (method_access), the CollectorAuth service that makes, revokes and lists tokens, and the
 * audit log of admin actions and refusals.
 *
 * Tokens live in system/tokens, each as its id, name, grants and the SHA-256 of its secret
 * (never the secret). The node keeps them all in memory too, so that the check runs on the
 * reactor without SQLite: a token's id picks the entry, then the digests are compared in
 * constant time. A token reads "col_<16 hex id>_<64 hex secret>". */
#ifndef SERVICES_AUTH_H
#define SERVICES_AUTH_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "h2/method.h"
#include "services/svc.h"

/* Scope bits of method_access.scopes and of grants. */
#define AUTH_READ 1u
#define AUTH_WRITE 2u
#define AUTH_REGISTER 4u
#define AUTH_ADMIN 8u
/* Calls between nodes (Connect, Dispatch, Serve): only the mesh credential has it. */
#define AUTH_NODE 16u

#define AUTH_ID_HEX 16
#define AUTH_SECRET_HEX 64
#define AUTH_TOKEN_LEN (4 + AUTH_ID_HEX + 1 + AUTH_SECRET_HEX)
#define AUTH_MAX_GRANTS 32

typedef struct auth auth;

typedef struct auth_opts {
	bool on;		      /* --auth on */
	const char *data_dir;	      /* where system/admin-token is written */
	const char *admin_token_file; /* --admin-token-file; NULL: none */
	const char *mesh_token_file;  /* --mesh-token-file; NULL: none */
} auth_opts;

/* Loads the tokens; with auth on and none kept yet, makes the first admin token (from
 * --admin-token-file, or new: printed once on stderr and written 0600 to
 * DATA/system/admin-token). Start-up only (blocking). 0 or a negative errno, with err. */
int auth_open(const svc_env *env, const auth_opts *o, auth **out, char *err, size_t cap);
void auth_free(auth *a);
/* The h2 authorizer (h2_call_auth); ctx is the auth. */
int auth_check(void *ctx, call *c, const method *m, const ProtobufCMessage *req, bool *need_request,
	       char *msg, size_t cap);
/* "Bearer <mesh token>" for calls to other nodes; NULL without --mesh-token-file. */
const char *auth_node_credential(const auth *a);
/* "Bearer <local token>" for the node's calls to itself that carry no caller's token
 * (the worker's tasks; a caller known by its certificate): it allows read and write in
 * the namespace the call's x-collector-namespace names and nothing else. Made at each
 * start, never stored or shown. NULL for a NULL a. */
const char *auth_local_credential(const auth *a);
/* collector.CollectorAuth; env->auth must be set. */
int auth_register(method_table *t, svc_env *env);

/* Parsing peer bytes (fuzz/fuzz_auth.c). The token of an authorization header value
 * "Bearer <token>" (the scheme in any case, spaces around the token): 0 with *tok, *len
 * pointing into v, or -EINVAL. */
int auth_parse_bearer(const uint8_t *v, size_t n, const uint8_t **tok, size_t *len);
/* Whether tok is a token of the node's form; id gets its AUTH_ID_HEX digits and a NUL. */
bool auth_parse_token(const uint8_t *tok, size_t len, char id[AUTH_ID_HEX + 1]);
/* Whether spec (field paths separated by '|', as method_access.ns_field) names string
 * fields of requests of type d. */
bool auth_field_valid(const ProtobufCMessageDescriptor *d, const char *spec);
/* Scope names ("read", ...) to bits; 0 for an unknown name. */
unsigned auth_scope_bit(const char *name);

#endif
