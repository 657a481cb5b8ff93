/* Server reflection. v1 and v1alpha have identical wire formats, so both methods take raw
 * bytes and one handler parses and answers with the v1 types: the same bytes are a valid
 * v1alpha response. Raw input also lets a stream park requests (not responses) while the
 * client is slow to read, which keeps a small request from pinning a large answer. */
#include "services/reflection.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "base/pbdecode.h"
#include "google/protobuf/descriptor.pb-c.h"
#include "grpc/reflection/v1/reflection.pb-c.h"
#include "h2/call.h"
#include "services/registry.h"
#include "services/svc.h"

typedef Grpc__Reflection__V1__ServerReflectionRequest refl_request;
typedef Grpc__Reflection__V1__ServerReflectionResponse refl_response;

#define REQ(x) GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_##x
#define RESP(x) GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_##x

/* A stream that is not reading its answers may park this much before it is ended. */
#define PARKED_MAX_REQUESTS 256
#define PARKED_MAX_BYTES (1024 * 1024)

typedef struct refl_file {
	ProtobufCBinaryData bytes; /* the FileDescriptorProto, serialized once */
	size_t *deps;		   /* indexes of the direct imports found in the set */
	size_t n_deps;
} refl_file;

typedef struct refl_name {
	const char *name;
	size_t file;
	bool message; /* a message type: may be extended */
} refl_name;

typedef struct refl_ext {
	const char *extendee; /* fully qualified, without the leading dot */
	int32_t number;
	size_t file;
} refl_ext;

typedef struct refl_index refl_index;
struct refl_index {
	refl_index *next; /* every index made, so the process keeps a reference to each */
	const method_table *methods;
	Google__Protobuf__FileDescriptorSet *set;
	refl_file *files;
	size_t n_files;
	refl_name *file_names; /* sorted by name */
	refl_name *symbols;    /* sorted by name */
	size_t n_symbols, cap_symbols;
	refl_ext *exts;
	size_t n_exts, cap_exts;
	registry *reg; /* NULL: the compiled-in files and the method table only */
};

static refl_index *indexes;

/* ---- the index ---- */

static int name_cmp(const void *a, const void *b)
{
	return strcmp(((const refl_name *)a)->name, ((const refl_name *)b)->name);
}

/* By name, then by file: a package declared by several files resolves to the first. */
static int name_file_cmp(const void *a, const void *b)
{
	const refl_name *x = a, *y = b;
	int d = strcmp(x->name, y->name);
	return d ? d : (x->file > y->file) - (x->file < y->file);
}

static void symbols_dedupe(refl_index *ix)
{
	size_t n = 0;
	for (size_t i = 0; i < ix->n_symbols; i++) {
		if (n && !strcmp(ix->symbols[n - 1].name, ix->symbols[i].name)) {
			mem_free((char *)ix->symbols[i].name);
			continue;
		}
		ix->symbols[n++] = ix->symbols[i];
	}
	ix->n_symbols = n;
}

static const refl_name *name_find(const refl_name *v, size_t n, const char *name)
{
	if (!n)
		return NULL;
	refl_name key = {.name = name};
	return bsearch(&key, v, n, sizeof(*v), name_cmp);
}

/* Adds scope.name (or name when scope is empty); *full (optional) gets the full name. */
static int symbol_add(refl_index *ix, const char *scope, const char *name, size_t file,
		      bool message, const char **full)
{
	if (!name)
		return -EINVAL;
	if (ix->n_symbols == ix->cap_symbols) {
		size_t cap = ix->cap_symbols ? 2 * ix->cap_symbols : 256;
		refl_name *v = mem_realloc(ix->symbols, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		ix->symbols = v;
		ix->cap_symbols = cap;
	}
	char *s;
	if (mem_asprintf(&s, "%s%s%s", scope, *scope ? "." : "", name) < 0)
		return -ENOMEM;
	ix->symbols[ix->n_symbols++] = (refl_name){.name = s, .file = file, .message = message};
	if (full)
		*full = s;
	return 0;
}

static int ext_add(refl_index *ix, const char *scope,
		   const Google__Protobuf__FieldDescriptorProto *f, size_t file)
{
	int rc = symbol_add(ix, scope, f->name, file, false, NULL);
	if (rc || !f->extendee || !f->has_number)
		return rc;
	if (ix->n_exts == ix->cap_exts) {
		size_t cap = ix->cap_exts ? 2 * ix->cap_exts : 16;
		refl_ext *v = mem_realloc(ix->exts, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		ix->exts = v;
		ix->cap_exts = cap;
	}
	const char *extendee = f->extendee + (f->extendee[0] == '.');
	ix->exts[ix->n_exts++] =
		(refl_ext){.extendee = extendee, .number = f->number, .file = file};
	return 0;
}

/* Enum values are scoped like C++ enumerators: siblings of their enum, not children. */
static int enum_add(refl_index *ix, const char *scope,
		    const Google__Protobuf__EnumDescriptorProto *e, size_t file)
{
	int rc = symbol_add(ix, scope, e->name, file, false, NULL);
	for (size_t i = 0; !rc && i < e->n_value; i++)
		rc = symbol_add(ix, scope, e->value[i]->name, file, false, NULL);
	return rc;
}

static int message_add(refl_index *ix, const char *scope,
		       const Google__Protobuf__DescriptorProto *m, size_t file)
{
	const char *full;
	int rc = symbol_add(ix, scope, m->name, file, true, &full);
	for (size_t i = 0; !rc && i < m->n_field; i++)
		rc = symbol_add(ix, full, m->field[i]->name, file, false, NULL);
	for (size_t i = 0; !rc && i < m->n_oneof_decl; i++)
		rc = symbol_add(ix, full, m->oneof_decl[i]->name, file, false, NULL);
	for (size_t i = 0; !rc && i < m->n_enum_type; i++)
		rc = enum_add(ix, full, m->enum_type[i], file);
	for (size_t i = 0; !rc && i < m->n_extension; i++)
		rc = ext_add(ix, full, m->extension[i], file);
	for (size_t i = 0; !rc && i < m->n_nested_type; i++)
		rc = message_add(ix, full, m->nested_type[i], file);
	return rc;
}

/* A package is a symbol too (as in protobuf's own pools): it names the files declaring it. */
static int file_symbols_add(refl_index *ix, const Google__Protobuf__FileDescriptorProto *fd,
			    size_t file)
{
	const char *pkg = fd->package ? fd->package : "";
	int rc = *pkg ? symbol_add(ix, "", pkg, file, false, NULL) : 0;
	for (size_t i = 0; !rc && i < fd->n_message_type; i++)
		rc = message_add(ix, pkg, fd->message_type[i], file);
	for (size_t i = 0; !rc && i < fd->n_enum_type; i++)
		rc = enum_add(ix, pkg, fd->enum_type[i], file);
	for (size_t i = 0; !rc && i < fd->n_extension; i++)
		rc = ext_add(ix, pkg, fd->extension[i], file);
	for (size_t i = 0; !rc && i < fd->n_service; i++) {
		const Google__Protobuf__ServiceDescriptorProto *sd = fd->service[i];
		const char *full;
		rc = symbol_add(ix, pkg, sd->name, file, false, &full);
		for (size_t j = 0; !rc && j < sd->n_method; j++)
			rc = symbol_add(ix, full, sd->method[j]->name, file, false, NULL);
	}
	return rc;
}

static void index_free(refl_index *ix)
{
	for (size_t i = 0; i < ix->n_files; i++) {
		mem_free(ix->files[i].bytes.data);
		mem_free(ix->files[i].deps);
	}
	for (size_t i = 0; i < ix->n_symbols; i++)
		mem_free((char *)ix->symbols[i].name);
	mem_free(ix->files);
	mem_free(ix->file_names);
	mem_free(ix->symbols);
	mem_free(ix->exts);
	if (ix->set)
		google__protobuf__file_descriptor_set__free_unpacked(ix->set, NULL);
	mem_free(ix);
}

static int file_add(refl_index *ix, size_t i)
{
	const Google__Protobuf__FileDescriptorProto *fd = ix->set->file[i];
	refl_file *f = &ix->files[i];
	if (!fd->name)
		return -EINVAL;
	ix->file_names[i] = (refl_name){.name = fd->name, .file = i};
	f->bytes.len = protobuf_c_message_get_packed_size(&fd->base);
	f->bytes.data = mem_alloc(f->bytes.len ? f->bytes.len : 1);
	if (!f->bytes.data)
		return -ENOMEM;
	protobuf_c_message_pack(&fd->base, f->bytes.data);
	return file_symbols_add(ix, fd, i);
}

/* Needs file_names sorted. Imports missing from the set are left out. */
static int file_link(refl_index *ix, size_t i)
{
	const Google__Protobuf__FileDescriptorProto *fd = ix->set->file[i];
	refl_file *f = &ix->files[i];
	if (!fd->n_dependency)
		return 0;
	f->deps = mem_calloc(fd->n_dependency, sizeof(*f->deps));
	if (!f->deps)
		return -ENOMEM;
	for (size_t j = 0; j < fd->n_dependency; j++) {
		const refl_name *d = name_find(ix->file_names, ix->n_files, fd->dependency[j]);
		if (d)
			f->deps[f->n_deps++] = d->file;
	}
	return 0;
}

static int index_build(refl_index *ix, const uint8_t *data, size_t len)
{
	char err[160];
	int rc = pbdecode(&google__protobuf__file_descriptor_set__descriptor, data, len,
			  (ProtobufCMessage **)&ix->set, err, sizeof(err));
	if (rc)
		return rc == -ENOMEM ? rc : -EINVAL;
	ix->n_files = ix->set->n_file;
	ix->files = mem_calloc(ix->n_files ? ix->n_files : 1, sizeof(*ix->files));
	ix->file_names = mem_calloc(ix->n_files ? ix->n_files : 1, sizeof(*ix->file_names));
	if (!ix->files || !ix->file_names)
		return -ENOMEM;
	for (size_t i = 0; i < ix->n_files; i++)
		if ((rc = file_add(ix, i)))
			return rc;
	qsort(ix->file_names, ix->n_files, sizeof(*ix->file_names), name_cmp);
	if (ix->n_symbols) {
		qsort(ix->symbols, ix->n_symbols, sizeof(*ix->symbols), name_file_cmp);
		symbols_dedupe(ix);
	}
	for (size_t i = 0; i < ix->n_files; i++) {
		int rc = file_link(ix, i);
		if (rc)
			return rc;
	}
	return 0;
}

/* ---- answers ---- */

/* The answer to one request, and what it points to that must be freed after sending. */
typedef struct answer {
	refl_response resp;
	Grpc__Reflection__V1__FileDescriptorResponse files;
	Grpc__Reflection__V1__ExtensionNumberResponse numbers;
	Grpc__Reflection__V1__ListServiceResponse services;
	Grpc__Reflection__V1__ErrorResponse error;
	char error_text[320];
	const char *ns; /* the caller's namespace, for the registry's files and services */
	ProtobufCBinaryData *file_list;
	size_t n_file_list, cap_file_list;
	int32_t *number_list;
	Grpc__Reflection__V1__ServiceResponse *service_items;
	Grpc__Reflection__V1__ServiceResponse **service_ptrs;
	char **service_names;
	size_t n_services, cap_services;
	bool out_of_memory;
} answer;

static void answer_error(answer *a, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void answer_error(answer *a, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(a->error_text, sizeof(a->error_text), fmt, ap);
	va_end(ap);
	a->error.error_code = code;
	a->error.error_message = a->error_text;
	a->resp.message_response_case = RESP(ERROR_RESPONSE);
	a->resp.error_response = &a->error;
}

/* The file first, then each of its transitive imports once, breadth first. */
static void answer_files(answer *a, const refl_index *ix, size_t first)
{
	bool *seen = mem_calloc(ix->n_files, sizeof(*seen));
	a->file_list = mem_calloc(ix->n_files, sizeof(*a->file_list));
	size_t *order = mem_calloc(ix->n_files, sizeof(*order));
	if (!seen || !a->file_list || !order) {
		a->out_of_memory = true;
		mem_free(seen);
		mem_free(order);
		return;
	}
	size_t n = 0;
	order[n++] = first;
	seen[first] = true;
	for (size_t k = 0; k < n; k++) {
		const refl_file *f = &ix->files[order[k]];
		for (size_t j = 0; j < f->n_deps; j++)
			if (!seen[f->deps[j]]) {
				seen[f->deps[j]] = true;
				order[n++] = f->deps[j];
			}
	}
	for (size_t k = 0; k < n; k++)
		a->file_list[k] = ix->files[order[k]].bytes;
	mem_free(seen);
	mem_free(order);
	a->files.n_file_descriptor_proto = n;
	a->files.file_descriptor_proto = a->file_list;
	a->resp.message_response_case = RESP(FILE_DESCRIPTOR_RESPONSE);
	a->resp.file_descriptor_response = &a->files;
}

/* Appends a file's bytes to the answer unless it is there already (by name). */
static bool file_list_add(answer *a, char ***names, const char *name, ProtobufCBinaryData bytes)
{
	for (size_t i = 0; i < a->n_file_list; i++)
		if (!strcmp((*names)[i], name))
			return true;
	if (a->n_file_list == a->cap_file_list) {
		size_t cap = a->cap_file_list ? 2 * a->cap_file_list : 8;
		ProtobufCBinaryData *v = mem_realloc(a->file_list, cap * sizeof(*v));
		char **n = v ? mem_realloc(*names, cap * sizeof(*n)) : NULL;
		if (v)
			a->file_list = v;
		if (!n)
			return false;
		*names = n;
		a->cap_file_list = cap;
	}
	(*names)[a->n_file_list] = mem_strdup(name);
	if (!(*names)[a->n_file_list])
		return false;
	a->file_list[a->n_file_list++] = bytes;
	return true;
}

/* A file of the caller's namespace (or compiled in) and its transitive imports, breadth
 * first: the registry's files may import both kinds. */
static void answer_ns_files(answer *a, const refl_index *ix, const char *first)
{
	char **names = NULL;
	bool ok = true;
	ProtobufCBinaryData bytes;
	const char *alias; /* upstream's name of an API file: ours is served */
	const refl_name *n = name_find(ix->file_names, ix->n_files, first);
	if (n)
		ok = file_list_add(a, &names, first, ix->files[n->file].bytes);
	else if (registry_file(ix->reg, a->ns, first, (const uint8_t **)&bytes.data, &bytes.len))
		ok = file_list_add(a, &names, first, bytes);
	else if ((alias = registry_file_alias(ix->reg, a->ns, first)) &&
		 (n = name_find(ix->file_names, ix->n_files, alias)))
		ok = file_list_add(a, &names, alias, ix->files[n->file].bytes);
	else
		answer_error(a, GRPC_NOT_FOUND, "file '%.200s' not found", first);
	for (size_t k = 0; ok && k < a->n_file_list; k++) {
		Google__Protobuf__FileDescriptorProto *fd =
			svc_decode(&google__protobuf__file_descriptor_proto__descriptor,
				   a->file_list[k].data, a->file_list[k].len);
		ok = fd != NULL;
		for (size_t d = 0; ok && d < fd->n_dependency; d++) {
			const char *dep = fd->dependency[d];
			if ((n = name_find(ix->file_names, ix->n_files, dep)))
				ok = file_list_add(a, &names, dep, ix->files[n->file].bytes);
			else if (registry_file(ix->reg, a->ns, dep, (const uint8_t **)&bytes.data,
					       &bytes.len))
				ok = file_list_add(a, &names, dep, bytes);
		}
		if (fd)
			google__protobuf__file_descriptor_proto__free_unpacked(fd, NULL);
	}
	for (size_t i = 0; i < a->n_file_list; i++)
		mem_free(names[i]);
	mem_free(names);
	if (!ok) {
		a->out_of_memory = true;
		return;
	}
	if (!a->n_file_list)
		return;
	a->files.n_file_descriptor_proto = a->n_file_list;
	a->files.file_descriptor_proto = a->file_list;
	a->resp.message_response_case = RESP(FILE_DESCRIPTOR_RESPONSE);
	a->resp.file_descriptor_response = &a->files;
}

static void collect_service(const char *service, size_t len, void *arg)
{
	answer *a = arg;
	if (a->out_of_memory)
		return;
	if (a->n_services == a->cap_services) {
		size_t cap = a->cap_services ? 2 * a->cap_services : 16;
		char **v = mem_realloc(a->service_names, cap * sizeof(*v));
		if (!v) {
			a->out_of_memory = true;
			return;
		}
		a->service_names = v;
		a->cap_services = cap;
	}
	char *name = mem_strndup(service, len);
	if (!name) {
		a->out_of_memory = true;
		return;
	}
	a->service_names[a->n_services++] = name;
}

static void answer_services(answer *a, const refl_index *ix)
{
	if (!ix->reg)
		method_table_each_service(ix->methods, collect_service, a);
	else if (registry_service_names(ix->reg, a->ns, &a->service_names, &a->n_services))
		a->out_of_memory = true;
	if (a->out_of_memory)
		return;
	size_t n = a->n_services;
	a->service_items = mem_calloc(n ? n : 1, sizeof(*a->service_items));
	a->service_ptrs = mem_calloc(n ? n : 1, sizeof(*a->service_ptrs));
	if (!a->service_items || !a->service_ptrs) {
		a->out_of_memory = true;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		grpc__reflection__v1__service_response__init(&a->service_items[i]);
		a->service_items[i].name = a->service_names[i];
		a->service_ptrs[i] = &a->service_items[i];
	}
	a->services.n_service = n;
	a->services.service = a->service_ptrs;
	a->resp.message_response_case = RESP(LIST_SERVICES_RESPONSE);
	a->resp.list_services_response = &a->services;
}

static void answer_extension_numbers(answer *a, const refl_index *ix, const char *type)
{
	const refl_name *s = name_find(ix->symbols, ix->n_symbols, type);
	if (!s || !s->message) {
		answer_error(a, GRPC_NOT_FOUND, "message type '%.200s' not found", type);
		return;
	}
	a->number_list = mem_calloc(ix->n_exts ? ix->n_exts : 1, sizeof(*a->number_list));
	if (!a->number_list) {
		a->out_of_memory = true;
		return;
	}
	size_t n = 0;
	for (size_t i = 0; i < ix->n_exts; i++)
		if (!strcmp(ix->exts[i].extendee, type))
			a->number_list[n++] = ix->exts[i].number;
	a->numbers.base_type_name = (char *)s->name;
	a->numbers.n_extension_number = n;
	a->numbers.extension_number = a->number_list;
	a->resp.message_response_case = RESP(ALL_EXTENSION_NUMBERS_RESPONSE);
	a->resp.all_extension_numbers_response = &a->numbers;
}

static void answer_extension(answer *a, const refl_index *ix,
			     const Grpc__Reflection__V1__ExtensionRequest *er)
{
	const char *type = er && er->containing_type ? er->containing_type : "";
	int32_t number = er ? er->extension_number : 0;
	for (size_t i = 0; i < ix->n_exts; i++)
		if (ix->exts[i].number == number && !strcmp(ix->exts[i].extendee, type)) {
			answer_files(a, ix, ix->exts[i].file);
			return;
		}
	answer_error(a, GRPC_NOT_FOUND, "no extension %d of '%.200s'", (int)number, type);
}

static void answer_build(answer *a, const refl_index *ix, refl_request *req)
{
	const refl_name *n;
	switch (req->message_request_case) {
	case REQ(FILE_BY_FILENAME):
		n = name_find(ix->file_names, ix->n_files, req->file_by_filename);
		if (n)
			answer_files(a, ix, n->file);
		else if (ix->reg)
			answer_ns_files(a, ix, req->file_by_filename);
		else
			answer_error(a, GRPC_NOT_FOUND, "file '%.200s' not found",
				     req->file_by_filename);
		break;
	case REQ(FILE_CONTAINING_SYMBOL): {
		n = name_find(ix->symbols, ix->n_symbols, req->file_containing_symbol);
		const char *file = !n && ix->reg ? registry_symbol_file(ix->reg, a->ns,
									req->file_containing_symbol)
						 : NULL;
		if (n)
			answer_files(a, ix, n->file);
		else if (file)
			answer_ns_files(a, ix, file);
		else
			answer_error(a, GRPC_NOT_FOUND, "symbol '%.200s' not found",
				     req->file_containing_symbol);
		break;
	}
	case REQ(FILE_CONTAINING_EXTENSION):
		answer_extension(a, ix, req->file_containing_extension);
		break;
	case REQ(ALL_EXTENSION_NUMBERS_OF_TYPE):
		answer_extension_numbers(a, ix, req->all_extension_numbers_of_type);
		break;
	case REQ(LIST_SERVICES):
		answer_services(a, ix);
		break;
	default:
		answer_error(a, GRPC_INVALID_ARGUMENT, "the request names no question");
		break;
	}
}

static void answer_free(answer *a)
{
	for (size_t i = 0; i < a->n_services; i++)
		mem_free(a->service_names[i]);
	mem_free(a->service_names);
	mem_free(a->service_items);
	mem_free(a->service_ptrs);
	mem_free(a->file_list);
	mem_free(a->number_list);
}

static int answer_send(call *c, const refl_response *resp)
{
	size_t len = protobuf_c_message_get_packed_size(&resp->base);
	uint8_t *buf = mem_alloc(len ? len : 1);
	if (!buf)
		return -ENOMEM;
	protobuf_c_message_pack(&resp->base, buf);
	int rc = call_send_raw(c, buf, len);
	mem_free(buf);
	return rc;
}

/* Answers one request. Returns false when the call had to end. */
static bool reflection_answer(call *c, const refl_index *ix, const uint8_t *data, size_t len)
{
	refl_request *req;
	char err[200];
	int drc = pbdecode(&grpc__reflection__v1__server_reflection_request__descriptor, data, len,
			   (ProtobufCMessage **)&req, err, sizeof(err));
	if (drc) {
		call_finish(c, grpc_code_of_decode(drc), err);
		return false;
	}
	answer a = {
		.resp = GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__INIT,
		.files = GRPC__REFLECTION__V1__FILE_DESCRIPTOR_RESPONSE__INIT,
		.numbers = GRPC__REFLECTION__V1__EXTENSION_NUMBER_RESPONSE__INIT,
		.services = GRPC__REFLECTION__V1__LIST_SERVICE_RESPONSE__INIT,
		.error = GRPC__REFLECTION__V1__ERROR_RESPONSE__INIT,
	};
	a.ns = ix->reg ? registry_call_ns(ix->reg, c) : NULL;
	a.resp.valid_host = req->host;
	a.resp.original_request = req;
	answer_build(&a, ix, req);
	int rc = a.out_of_memory ? -ENOMEM : answer_send(c, &a.resp);
	if (rc == -EMSGSIZE) {
		/* Files too big for the limit: say so in-band, the stream can go on. */
		answer_error(&a, GRPC_RESOURCE_EXHAUSTED,
			     "the answer is larger than the message size limit");
		rc = answer_send(c, &a.resp);
	}
	answer_free(&a);
	grpc__reflection__v1__server_reflection_request__free_unpacked(req, NULL);
	if (rc == -ECANCELED)
		return false;
	if (rc) {
		call_finish(c, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return false;
	}
	return true;
}

/* ---- the stream ---- */

typedef struct parked {
	struct parked *next;
	size_t len;
	uint8_t data[];
} parked;

/* Per call, made on first need in the call's arena. */
typedef struct refl_stream {
	parked *head, **tail;
	size_t n, bytes;
	bool half_closed;
} refl_stream;

static void parked_clear(refl_stream *s)
{
	while (s->head) {
		parked *p = s->head;
		s->head = p->next;
		mem_free(p);
	}
	s->tail = &s->head;
	s->n = s->bytes = 0;
}

static void reflection_drain(call *c, refl_stream *s)
{
	const refl_index *ix = call_ctx(c);
	while (s->head && !call_send_would_block(c)) {
		parked *p = s->head;
		s->head = p->next;
		if (!s->head)
			s->tail = &s->head;
		s->n--;
		s->bytes -= p->len;
		bool ok = reflection_answer(c, ix, p->data, p->len);
		mem_free(p);
		if (!ok) {
			parked_clear(s);
			return;
		}
	}
	if (!s->head && s->half_closed)
		call_finish(c, GRPC_OK, NULL);
}

static void reflection_on_raw(call *c, const uint8_t *data, size_t len)
{
	refl_stream *s = call_user(c);
	if (call_done(c))
		return;
	if ((!s || !s->head) && !call_send_would_block(c)) {
		reflection_answer(c, call_ctx(c), data, len);
		return;
	}
	if (!s) {
		s = call_alloc(c, sizeof(*s));
		if (!s) {
			call_finish(c, GRPC_RESOURCE_EXHAUSTED, "out of memory");
			return;
		}
		*s = (refl_stream){.tail = &s->head};
		call_set_user(c, s);
	}
	if (s->n >= PARKED_MAX_REQUESTS || s->bytes + len > PARKED_MAX_BYTES) {
		parked_clear(s);
		call_finish(c, GRPC_RESOURCE_EXHAUSTED,
			    "too many reflection requests waiting: the client is not reading");
		return;
	}
	parked *p = mem_alloc(sizeof(*p) + len);
	if (!p) {
		parked_clear(s);
		call_finish(c, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	p->next = NULL;
	p->len = len;
	memcpy(p->data, data, len);
	*s->tail = p;
	s->tail = &p->next;
	s->n++;
	s->bytes += len;
}

static void reflection_on_writable(call *c)
{
	refl_stream *s = call_user(c);
	if (s)
		reflection_drain(c, s);
}

static void reflection_on_half_close(call *c)
{
	refl_stream *s = call_user(c);
	if (s && s->head)
		s->half_closed = true;
	else
		call_finish(c, GRPC_OK, NULL);
}

static void reflection_on_cancel(call *c)
{
	refl_stream *s = call_user(c);
	if (s)
		parked_clear(s);
}

int reflection_register(method_table *t, const uint8_t *descriptor_set, size_t len, registry *reg)
{
	static const char *const paths[] = {
		"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
		"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
	};
	refl_index *ix = mem_calloc(1, sizeof(*ix));
	if (!ix)
		return -ENOMEM;
	ix->methods = t;
	ix->reg = reg;
	int rc = index_build(ix, descriptor_set, len);
	if (rc) {
		index_free(ix);
		return rc;
	}
	ix->next = indexes;
	indexes = ix;
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		method m = {
			.path = paths[i],
			.kind = METHOD_BIDI,
			.h =
				{
					.on_raw = reflection_on_raw,
					.on_half_close = reflection_on_half_close,
					.on_writable = reflection_on_writable,
					.on_cancel = reflection_on_cancel,
				},
			.ctx = ix,
		};
		rc = method_table_add(t, &m);
		if (rc)
			return rc;
	}
	return 0;
}
