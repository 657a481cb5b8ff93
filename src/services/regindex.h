/* The registry's in-memory index: which services and methods are registered in which
 * namespace. The validation of every call reads it (regindex_has_method), so it is a hash
 * lookup under a read lock; registrations (rare) take the write lock. */
#ifndef SERVICES_REGINDEX_H
#define SERVICES_REGINDEX_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct regindex regindex;

regindex *regindex_new(void);
void regindex_free(regindex *x);

/* Whether path ("/pkg.Service/Method") is registered in ns. Any thread. */
bool regindex_has_method(regindex *x, const char *ns, size_t ns_len, const char *path,
			 size_t path_len);

/* Registers (or replaces) the service `name` (full name) of ns: rec is its packed
 * collector.RegisteredService (copied), methods its simple method names. The methods of
 * an earlier registration that are not in the new one are no longer registered.
 * 0 or -ENOMEM (nothing changed then). */
int regindex_put_service(regindex *x, const char *ns, const char *name, const uint8_t *rec,
			 size_t len, char *const *methods, size_t n_methods);
/* Removes the service `name` of ns and its methods. 0, or -ENOENT when it is not
 * registered. */
int regindex_remove_service(regindex *x, const char *ns, const char *name);
/* A malloc'd copy of the service's packed RegisteredService, or NULL (*len 0) when it is not
 * registered (or out of memory: *len is then 1). */
uint8_t *regindex_get_service(regindex *x, const char *ns, const char *name, size_t *len);
/* A number that changes with every change of a registered service (any thread). */
uint64_t regindex_generation(regindex *x);
/* Calls fn for each service of ns (NULL: of every namespace) in (namespace, name) order,
 * under the read lock: fn must not call into the index. -ENOMEM, or fn's first nonzero. */
int regindex_each_service(regindex *x, const char *ns,
			  int (*fn)(void *ctx, const char *ns, const char *name, const uint8_t *rec,
				    size_t len),
			  void *ctx);

/* The registered service that `name` stands for in ns, copied to out (cap bytes). Upstream
 * registers bare names ("Name") while calls arrive as "/pkg.Name/Method", and looks
 * services up by either, so: name itself when it is registered; else, for "pkg.Name",
 * the service registered bare as "Name"; else, for a bare "Name", the one service of ns
 * whose name ends in ".Name". REGINDEX_AMBIGUOUS when several services of ns end in that
 * name: out then gets one candidate and other (other_cap bytes) another, for the message.
 * Any thread. */
enum { REGINDEX_NONE, REGINDEX_FOUND, REGINDEX_AMBIGUOUS };
int regindex_resolve_service(regindex *x, const char *ns, const char *name, char *out, size_t cap,
			     char *other, size_t other_cap);

#endif
