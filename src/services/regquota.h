/* The registry's quotas: how many files, versions and bytes of descriptors a namespace may
 * hold, and how many namespaces and bytes the node holds in all. Every registration is
 * checked as a whole before anything of it is written (regquota_allows), and counted once
 * applied (regquota_add); start-up replays the stored registrations through the same
 * checks, so records beyond the limits (an older build's, or limits lowered since) are
 * skipped instead of filling the memory at every start.
 *
 * What is counted, in bytes: each kept version of a file, its serialized
 * FileDescriptorProto plus REGQUOTA_ENTRY_BYTES, and each service record, its serialized
 * RegisteredService plus the same (the memory a registration costs apart from its size:
 * a file's first arena chunk, keys, ids). The node's own files and services do not count.
 *
 * Not thread safe: the registry calls it under its lock. */
#ifndef SERVICES_REGQUOTA_H
#define SERVICES_REGQUOTA_H
#include <stdbool.h>
#include <stddef.h>

/* The flags (and config file names) of the limits. */
#define REGQUOTA_FLAG_FILES "registry-max-files"
#define REGQUOTA_FLAG_VERSIONS "registry-max-versions"
#define REGQUOTA_FLAG_NS_BYTES "registry-max-namespace-bytes"
#define REGQUOTA_FLAG_NAMESPACES "registry-max-namespaces"
#define REGQUOTA_FLAG_TOTAL_BYTES "registry-max-total-bytes"

#define REGQUOTA_ENTRY_BYTES 1024

typedef struct regquota_limits {
	size_t files;	    /* distinct files per namespace */
	size_t versions;    /* versions kept per file */
	size_t ns_bytes;    /* bytes per namespace */
	size_t namespaces;  /* namespaces holding registrations */
	size_t total_bytes; /* bytes of every namespace, unregistered ones included (below) */
} regquota_limits;

void regquota_limits_default(regquota_limits *l);

typedef struct regquota regquota;

/* NULL when out of memory. l is copied. */
regquota *regquota_new(const regquota_limits *l);
void regquota_free(regquota *q);

/* One change a registration makes in its namespace: a new version of `file`, or the record
 * of `service` (replacing its earlier one, if any); bytes is its serialized size. */
typedef struct regquota_item {
	const char *file;
	const char *service;
	size_t bytes;
} regquota_item;

/* Whether ns can take all the items. When not, msg gets what is over which limit, naming
 * its flag. */
bool regquota_allows(const regquota *q, const char *ns, const regquota_item *items, size_t n,
		     char *msg, size_t cap);
/* Counts the items, which regquota_allows accepted. 0, or -ENOMEM (nothing counted). */
int regquota_add(regquota *q, const char *ns, const regquota_item *items, size_t n);

/* The file's versions leave ns; returns how many there were. Their bytes stay counted
 * against total_bytes: the type pool keeps a removed file's objects until the process
 * ends (tp_remove_file), so unregistering and registering again in a loop cannot
 * grow the memory past the limit. */
size_t regquota_drop_file(regquota *q, const char *ns, const char *file);
/* The service's record leaves ns (its memory goes with it). */
void regquota_drop_service(regquota *q, const char *ns, const char *service);

/* What is counted, for tests and logs: of ns (NULL: zeros), and of the node. */
typedef struct regquota_usage {
	size_t files, services, bytes;		 /* of ns */
	size_t namespaces, total_bytes, retired; /* of the node; total_bytes has retired in it */
} regquota_usage;
void regquota_usage_get(const regquota *q, const char *ns, regquota_usage *out);

#endif
