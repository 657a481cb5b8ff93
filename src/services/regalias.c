/* Upstream's file names for the node's API files. Upstream compiles its API from its
 * proto/ folder, so its clients' files import "common.proto" where the node compiles the
 * same file in as "collector/common.proto" (and our dispatcher.proto is its
 * dispatch.proto). A registration may use either name; the files it keeps, and reflection,
 * use ours, so that every file names each import one way. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/mem.h"
#include "services/registry_priv.h"

/* The package of upstream's API files, which ours keep. */
#define API_PACKAGE "collector"

static const char *const renamed[][2] = {{"dispatch.proto", "collector/dispatcher.proto"}};

const char *registry_file_alias(registry *r, const char *ns, const char *name)
{
	const uint8_t *bytes;
	size_t len;
	if (strchr(name, '/') || tp_file_bytes(r->env->types, NULL, name, &bytes, &len) ||
	    (ns && tp_file_bytes(r->env->types, ns, name, &bytes, &len)))
		return NULL;
	for (size_t i = 0; i < sizeof(renamed) / sizeof(renamed[0]); i++)
		if (!strcmp(name, renamed[i][0]))
			return tp_file_name(r->env->types, NULL, renamed[i][1]);
	char ours[REGISTRY_NAME_MAX];
	int n = snprintf(ours, sizeof(ours), API_PACKAGE "/%s", name);
	return n > 0 && (size_t)n < sizeof(ours) ? tp_file_name(r->env->types, NULL, ours) : NULL;
}

/* The file of the set named `name` that is not upstream's copy of an API file (another
 * package): such a file keeps its name, and so do the imports of it. */
static bool set_defines_own(const registry_file_set *fs, const char *name)
{
	for (size_t i = 0; i < fs->n; i++)
		if (!strcmp(fs->v[i]->name, name) &&
		    (!fs->v[i]->package || strcmp(fs->v[i]->package, API_PACKAGE)))
			return true;
	return false;
}

static bool rename_one(registry_file_set *fs, char **at, const char *ours)
{
	if (fs->n_renamed == fs->renamed_cap) {
		size_t cap = fs->renamed_cap ? 2 * fs->renamed_cap : 8;
		void *a = mem_realloc(fs->renamed_at, cap * sizeof(*fs->renamed_at));
		if (a)
			fs->renamed_at = a;
		void *w = mem_realloc(fs->renamed_was, cap * sizeof(*fs->renamed_was));
		if (w)
			fs->renamed_was = w;
		if (!a || !w)
			return false;
		fs->renamed_cap = cap;
	}
	fs->renamed_at[fs->n_renamed] = at;
	fs->renamed_was[fs->n_renamed++] = *at;
	/* The request's own string is put back by registry_unalias_files before the request is
	 * freed; until then the pool's name stands in (it outlives the request). */
	*at = (char *)ours;
	return true;
}

bool registry_alias_files(svc_job *j, registry *r, const char *ns, registry_file_set *fs)
{
	bool ok = true;
	for (size_t i = 0; i < fs->n && ok; i++) {
		file_proto *fp = (file_proto *)fs->v[i];
		const char *ours = registry_file_alias(r, ns, fp->name);
		/* Upstream's copy of an API file stands for ours (the compiled-in one stands). */
		if (ours && fp->package && !strcmp(fp->package, API_PACKAGE))
			ok = rename_one(fs, &fp->name, ours);
		for (size_t d = 0; d < fp->n_dependency && ok; d++) {
			const char *dep = fp->dependency[d];
			if (set_defines_own(fs, dep))
				continue;
			ours = registry_file_alias(r, ns, dep);
			if (ours)
				ok = rename_one(fs, &fp->dependency[d], ours);
		}
	}
	if (!ok) {
		registry_unalias_files(fs);
		svc_job_fail(j, GRPC_RESOURCE_EXHAUSTED, "out of memory");
	}
	return ok;
}

void registry_unalias_files(registry_file_set *fs)
{
	while (fs->n_renamed) {
		fs->n_renamed--;
		*fs->renamed_at[fs->n_renamed] = fs->renamed_was[fs->n_renamed];
	}
	mem_free(fs->renamed_at);
	mem_free(fs->renamed_was);
	fs->renamed_at = NULL;
	fs->renamed_was = NULL;
	fs->renamed_cap = 0;
}
