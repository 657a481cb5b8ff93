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
/* Whether anything is registered in ns. */
bool regindex_has_namespace(regindex *x, const char *ns);

/* Registers (or replaces) the service `name` (full name) of ns: rec is its packed
 * collector.RegisteredService (copied), methods its simple method names. The methods of
 * an earlier registration that are not in the new one are no longer registered.
 * 0 or -ENOMEM (nothing changed then). */
int regindex_put_service(regindex *x, const char *ns, const char *name, const uint8_t *rec,
			 size_t len, char *const *methods, size_t n_methods);
/* Removes the service `name` of ns and its methods; ns is no longer known when it was its
 * last service. 0, or -ENOENT when it is not registered. */
int regindex_remove_service(regindex *x, const char *ns, const char *name);
/* A malloc'd copy of the service's packed RegisteredService, or NULL (*len 0) when it is not
 * registered (or out of memory: *len is then 1). */
uint8_t *regindex_get_service(regindex *x, const char *ns, const char *name, size_t *len);
/* Calls fn for each service of ns (NULL: of every namespace) in (namespace, name) order,
 * under the read lock: fn must not call into the index. -ENOMEM, or fn's first nonzero. */
int regindex_each_service(regindex *x, const char *ns,
			  int (*fn)(void *ctx, const char *ns, const char *name, const uint8_t *rec,
				    size_t len),
			  void *ctx);

#endif
