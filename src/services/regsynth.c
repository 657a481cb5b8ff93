/* registry/<service>.proto: the file the registry makes for a service that no file of its
 * namespace (nor the node) declares, in the service's package and importing the files of
 * its types, so that reflection can serve it like any other. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "services/registry_priv.h"

void registry_synth_free(registry_synth *s)
{
	mem_free(s->fd.name);
	mem_free(s->fd.package);
	mem_free(s->methods);
	mem_free(s->mptrs);
	strvec_free(&s->deps);
	strvec_free(&s->types);
}

int registry_synth_build(registry *r, const char *ns, const char *pkg, const service_proto *sd,
			 const char *full, registry_synth *s)
{
	*s = (registry_synth){.fd = GOOGLE__PROTOBUF__FILE_DESCRIPTOR_PROTO__INIT};
	const char *dot = strrchr(full, '.');
	s->fd.package = dot ? mem_strndup(full, (size_t)(dot - full)) : mem_strdup("");
	s->methods = mem_calloc(sd->n_method + 1, sizeof(*s->methods));
	s->mptrs = mem_calloc(sd->n_method + 1, sizeof(*s->mptrs));
	if (mem_asprintf(&s->fd.name, REGISTRY_SYNTH_FILE, full) < 0)
		s->fd.name = NULL;
	if (!s->fd.package || !s->methods || !s->mptrs || !s->fd.name)
		return -ENOMEM;
	size_t n = 0;
	for (size_t i = 0; i < sd->n_method; i++) {
		if (!registry_method_typed(sd->method[i]))
			continue; /* admitted by name: nothing for reflection to describe */
		const tp_message *io[2] = {
			registry_resolve_type(r, ns, pkg, sd->method[i]->input_type),
			registry_resolve_type(r, ns, pkg, sd->method[i]->output_type)};
		if (!io[0] || !io[1])
			return -ENOENT;
		for (int k = 0; k < 2; k++) {
			const char *file = tp_message_get(io[k])->file;
			if (!strvec_has(&s->deps, file))
				strvec_push(&s->deps, mem_strdup(file));
			char *t;
			strvec_push(&s->types,
				    mem_asprintf(&t, ".%s", tp_message_get(io[k])->full_name) < 0
					    ? NULL
					    : t);
		}
		if (s->deps.failed || s->types.failed)
			return -ENOMEM;
		s->methods[n] = *sd->method[i];
		s->methods[n].input_type = s->types.v[2 * n];
		s->methods[n].output_type = s->types.v[2 * n + 1];
		s->mptrs[n] = &s->methods[n];
		n++;
	}
	if (!n)
		return -ENODATA;
	s->svc = *sd;
	s->svc.name = (char *)(dot ? dot + 1 : full);
	s->svc.method = s->mptrs;
	s->svc.n_method = n;
	s->svcs[0] = &s->svc;
	s->fd.syntax = "proto3";
	s->fd.n_dependency = s->deps.n;
	s->fd.dependency = s->deps.v;
	s->fd.n_service = 1;
	s->fd.service = s->svcs;
	return 0;
}

bool registry_made_file(registry *r, const char *ns, const char *service)
{
	char *name;
	const uint8_t *bytes;
	size_t len;
	if (mem_asprintf(&name, REGISTRY_SYNTH_FILE, service) < 0)
		return false;
	bool found = tp_file_bytes(r->env->types, ns, name, &bytes, &len);
	mem_free(name);
	if (!found)
		return false;
	file_proto *fp =
		svc_decode(&google__protobuf__file_descriptor_proto__descriptor, bytes, len);
	const char *pkg = fp && fp->package ? fp->package : "";
	char *full = NULL;
	if (!fp || fp->n_service != 1 ||
	    mem_asprintf(&full, "%s%s%s", pkg, *pkg ? "." : "", fp->service[0]->name) < 0)
		full = NULL;
	bool made = full && !fp->n_message_type && !fp->n_enum_type && !strcmp(full, service);
	mem_free(full);
	if (fp)
		google__protobuf__file_descriptor_proto__free_unpacked(fp, NULL);
	return made;
}

size_t registry_synth_bound(registry *r, const char *ns, const char *pkg, const service_proto *sd,
			    const char *full, const file_proto *fd)
{
	size_t n = protobuf_c_message_get_packed_size(&sd->base) + 2 * (strlen(full) + 16) +
		   4 * REGISTRY_FIELD_MAX;
	for (size_t i = 0; i < sd->n_method; i++) {
		if (!registry_method_typed(sd->method[i]))
			continue;
		const char *io[2] = {sd->method[i]->input_type, sd->method[i]->output_type};
		n += 2 * REGISTRY_FIELD_MAX;
		for (int k = 0; k < 2; k++) {
			const tp_message *m = registry_resolve_type(r, ns, pkg, io[k]);
			n += strlen(pkg) + 2 + REGISTRY_FIELD_MAX;
			n += strlen(m	 ? tp_message_get(m)->file
				    : fd ? fd->name
					 : "") +
			     REGISTRY_FIELD_MAX;
		}
	}
	return n;
}
