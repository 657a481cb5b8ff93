/* Building the type pool: FileDescriptorProtos checked and resolved into the immutable
 * objects of typepool_int.h, staged, then made visible all at once (tp_add_files). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "base/pbdecode.h"
#include "store/typepool_int.h"

typedef struct build {
	tp_pool *tp;
	tp_ns *ns;	 /* where the files go */
	tp_ns *new_ns;	 /* ns when it is new: joins the pool at commit only */
	symtab stage;	 /* symbols of the files being added */
	tp_file *staged; /* files being added, newest first */
	char err[512];
} build;

static int fail(build *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(build *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(b->err, sizeof b->err, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static int oom(build *b)
{
	snprintf(b->err, sizeof b->err, "out of memory");
	return -ENOMEM;
}

/* Packages stay visible: other files share them. */
static bool visible(const sym *e) { return e && (e->kind == SYM_PACKAGE || !e->file->hidden); }

/* A symbol as the files being added see it: theirs, their namespace's, the global ones. */
static sym *lookup(build *b, const char *s, size_t n)
{
	uint32_t h = tp_name_hash(s, n);
	sym *e = tp_symtab_find(&b->stage, s, n, h);
	if (e)
		return e;
	e = tp_symtab_find(&b->ns->syms, s, n, h);
	if (visible(e))
		return e;
	if (b->ns != &b->tp->global) {
		e = tp_symtab_find(&b->tp->global.syms, s, n, h);
		if (visible(e))
			return e;
	}
	return NULL;
}

static bool ident_ok(const char *s)
{
	if (!s || !((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_'))
		return false;
	for (s++; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_' ||
		      (*s >= '0' && *s <= '9')))
			return false;
	return true;
}

static const char *kind_name(uint8_t k)
{
	static const char *names[] = {"package", "message", "enum", "service", "symbol"};
	return k < 5 ? names[k] : "symbol";
}

/* Records name (allocated in f's arena) as a symbol of f, refusing one already visible
 * from where f goes. Packages may repeat. */
static int define(build *b, tp_file *f, const char *name, sym_kind kind, void *obj)
{
	size_t n = strlen(name);
	if (n > NAME_MAX_LEN)
		return fail(b, "name %.64s... longer than %d bytes", name, NAME_MAX_LEN);
	sym *old = lookup(b, name, n);
	if (!old && b->ns == &b->tp->global) {
		/* A global name is seen from every namespace: it may clash with any of them. */
		uint32_t h = tp_name_hash(name, n);
		for (size_t i = 0; i < b->tp->nss.cap && !old; i++) {
			sym *e = b->tp->nss.slots[i];
			if (e && e != TOMB)
				old = tp_symtab_find(&((tp_ns *)e->obj)->syms, name, n, h);
		}
	}
	if (old) {
		if (kind == SYM_PACKAGE && old->kind == SYM_PACKAGE)
			return 0;
		return fail(b, "\"%s\" is already defined (as a %s in %s)", name,
			    kind_name(old->kind), old->file ? old->file->self.name : "?");
	}
	sym *e = arena_zalloc(&f->mem, sizeof *e);
	if (!e || tp_symtab_reserve(&b->stage, 1) || tp_ptrvec_push(&f->syms, e))
		return oom(b);
	*e = (sym){.name = name,
		   .len = (uint32_t)n,
		   .hash = tp_name_hash(name, n),
		   .kind = (uint8_t)kind,
		   .obj = obj,
		   .file = f};
	tp_symtab_put(&b->stage, e);
	return 0;
}

/* scope.name in f's arena ("name" alone at the root). */
static const char *join(build *b, tp_file *f, const char *scope, const char *name)
{
	size_t ls = strlen(scope), ln = strlen(name);
	char *s = arena_zalloc(&f->mem, ls + ln + 2);
	if (!s) {
		oom(b);
		return NULL;
	}
	if (ls) {
		memcpy(s, scope, ls);
		s[ls++] = '.';
	}
	memcpy(s + ls, name, ln + 1);
	return s;
}

static int declare_enum(build *b, tp_file *f, const char *scope, const enum_proto *ep)
{
	if (!ident_ok(ep->name))
		return fail(b, "invalid enum name \"%s\" in %s", ep->name ? ep->name : "",
			    scope[0] ? scope : f->self.name);
	const char *full = join(b, f, scope, ep->name);
	tp_enum *e = arena_zalloc(&f->mem, sizeof *e);
	if (!full || !e)
		return oom(b);
	if (ep->n_value == 0)
		return fail(b, "enum %s has no values", full);
	e->info.full_name = full;
	e->info.closed = !f->proto3;
	e->info.null_value = strcmp(full, "google.protobuf.NullValue") == 0;
	tp_enum_value *vals = arena_zalloc(&f->mem, ep->n_value * sizeof *vals);
	if (!vals)
		return oom(b);
	int rc = define(b, f, full, SYM_ENUM, e);
	if (rc)
		return rc;
	for (size_t i = 0; i < ep->n_value; i++) {
		const Google__Protobuf__EnumValueDescriptorProto *v = ep->value[i];
		if (!ident_ok(v->name))
			return fail(b, "invalid value name \"%s\" in enum %s",
				    v->name ? v->name : "", full);
		/* Enum values are siblings of their enum, as in C++. */
		const char *vfull = join(b, f, scope, v->name);
		if (!vfull)
			return -ENOMEM;
		if ((rc = define(b, f, vfull, SYM_OTHER, e)))
			return rc;
		vals[i] = (tp_enum_value){.name = vfull + (strlen(vfull) - strlen(v->name)),
					  .number = v->number};
	}
	if (f->proto3 && vals[0].number != 0)
		return fail(b, "the first value of proto3 enum %s must be zero", full);
	e->info.values = vals;
	e->info.n_values = ep->n_value;
	return tp_ptrvec_push(&f->enums, e) ? oom(b) : 0;
}

static int declare_message(build *b, tp_file *f, const char *scope, const message_proto *mp,
			   int depth)
{
	if (depth > PB_MAX_DEPTH)
		return fail(b, "messages nested deeper than %d in %s", PB_MAX_DEPTH, f->self.name);
	if (!ident_ok(mp->name))
		return fail(b, "invalid message name \"%s\" in %s", mp->name ? mp->name : "",
			    scope[0] ? scope : f->self.name);
	const char *full = join(b, f, scope, mp->name);
	tp_message *m = arena_zalloc(&f->mem, sizeof *m);
	if (!full || !m)
		return oom(b);
	m->info.full_name = full;
	m->info.name = full + (strlen(full) - strlen(mp->name));
	m->info.file = f->self.name;
	m->info.map_entry = mp->options && mp->options->has_map_entry && mp->options->map_entry;
	m->src = mp;
	int rc = define(b, f, full, SYM_MESSAGE, m);
	if (rc)
		return rc;
	if (tp_ptrvec_push(&f->messages, m))
		return oom(b);
	for (size_t i = 0; i < mp->n_field; i++) {
		const field_proto *fp = mp->field[i];
		if (!ident_ok(fp->name))
			return fail(b, "invalid field name \"%s\" in %s", fp->name ? fp->name : "",
				    full);
		const char *ffull = join(b, f, full, fp->name);
		if (!ffull || (rc = define(b, f, ffull, SYM_OTHER, m)))
			return ffull ? rc : -ENOMEM;
	}
	for (size_t i = 0; i < mp->n_oneof_decl; i++) {
		const char *name = mp->oneof_decl[i]->name;
		if (!ident_ok(name))
			return fail(b, "invalid oneof name \"%s\" in %s", name ? name : "", full);
		const char *ofull = join(b, f, full, name);
		if (!ofull || (rc = define(b, f, ofull, SYM_OTHER, m)))
			return ofull ? rc : -ENOMEM;
	}
	for (size_t i = 0; i < mp->n_extension; i++) {
		const char *name = mp->extension[i]->name;
		if (!ident_ok(name))
			return fail(b, "invalid extension name \"%s\" in %s", name ? name : "",
				    full);
		const char *efull = join(b, f, full, name);
		if (!efull || (rc = define(b, f, efull, SYM_OTHER, m)))
			return efull ? rc : -ENOMEM;
	}
	for (size_t i = 0; i < mp->n_enum_type; i++)
		if ((rc = declare_enum(b, f, full, mp->enum_type[i])))
			return rc;
	for (size_t i = 0; i < mp->n_nested_type; i++)
		if ((rc = declare_message(b, f, full, mp->nested_type[i], depth + 1)))
			return rc;
	return 0;
}

/* Finds a type named as in a .proto, from inside scope, the way protoc does: a leading dot
 * means fully qualified; otherwise the first component is looked for from the innermost
 * scope outward, and the rest of the name must then be inside what it found. */
static sym *resolve(build *b, const char *scope, const char *name)
{
	if (name[0] == '.')
		return lookup(b, name + 1, strlen(name + 1));
	size_t nlen = strlen(name), slen = strlen(scope);
	if (nlen + slen + 2 > NAME_MAX_LEN * 2)
		return NULL;
	const char *dot = strchr(name, '.');
	size_t first = dot ? (size_t)(dot - name) : nlen;
	char buf[NAME_MAX_LEN * 2 + 2];
	for (;;) {
		size_t at = slen;
		memcpy(buf, scope, slen);
		if (slen)
			buf[at++] = '.';
		memcpy(buf + at, name, first);
		sym *e = lookup(b, buf, at + first);
		if (e) {
			if (first < nlen) {
				if (e->kind <= SYM_SERVICE) {
					memcpy(buf + at, name, nlen);
					return lookup(b, buf, at + nlen);
				}
			} else if (e->kind == SYM_MESSAGE || e->kind == SYM_ENUM) {
				return e;
			}
		}
		if (!slen)
			return NULL;
		while (slen && scope[slen - 1] != '.')
			slen--;
		if (slen)
			slen--;
	}
}

static const char *camel(build *b, tp_file *f, const char *name)
{
	size_t n = strlen(name);
	char *s = arena_zalloc(&f->mem, n + 1);
	if (!s) {
		oom(b);
		return NULL;
	}
	size_t o = 0;
	bool up = false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (c == '_') {
			up = true;
		} else {
			s[o++] = up && c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
			up = false;
		}
	}
	s[o] = '\0';
	return s;
}

/* JSON keys are written without escaping, so a json_name option must not need any; and
 * "@type" belongs to Any, whose JSON holds the fields of the message inside it. */
static bool json_name_ok(const char *s)
{
	if (!*s || *s == '@')
		return false;
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e || *s == '"' || *s == '\\')
			return false;
	return true;
}

static int cmp_field_name(const void *a, const void *b, void *fields)
{
	const tp_field *f = fields;
	return strcmp(f[*(const uint32_t *)a].name, f[*(const uint32_t *)b].name);
}

static int cmp_field_json(const void *a, const void *b, void *fields)
{
	const tp_field *f = fields;
	return strcmp(f[*(const uint32_t *)a].json_name, f[*(const uint32_t *)b].json_name);
}

static int cmp_field_number(const void *a, const void *b)
{
	uint32_t x = ((const tp_field *)a)->number, y = ((const tp_field *)b)->number;
	return (x > y) - (x < y);
}

static int cmp_value_number(const void *a, const void *b, void *values)
{
	const tp_enum_value *v = values;
	uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
	int32_t x = v[i].number, y = v[j].number;
	if (x != y)
		return (x > y) - (x < y);
	return (i > j) - (i < j);
}

static int cmp_value_name(const void *a, const void *b, void *values)
{
	const tp_enum_value *v = values;
	return strcmp(v[*(const uint32_t *)a].name, v[*(const uint32_t *)b].name);
}

static bool map_key_type_ok(uint8_t t)
{
	return t != TP_DOUBLE && t != TP_FLOAT && t != TP_BYTES && t != TP_MESSAGE &&
	       t != TP_GROUP && t != TP_ENUM;
}

static bool packable(uint8_t t)
{
	return t != TP_STRING && t != TP_BYTES && t != TP_MESSAGE && t != TP_GROUP;
}

static int build_fields(build *b, tp_file *f, tp_message *m)
{
	const message_proto *mp = m->src;
	const char *full = m->info.full_name;
	size_t n = mp->n_field;
	tp_oneof *oneofs = arena_zalloc(&f->mem, (mp->n_oneof_decl + 1) * sizeof *oneofs);
	tp_field *fields = arena_zalloc(&f->mem, (n + 1) * sizeof *fields);
	uint32_t *by_name = arena_zalloc(&f->mem, (n + 1) * sizeof *by_name);
	uint32_t *by_json = arena_zalloc(&f->mem, (n + 1) * sizeof *by_json);
	if (!oneofs || !fields || !by_name || !by_json)
		return oom(b);
	for (size_t i = 0; i < mp->n_oneof_decl; i++) {
		const char *name = mp->oneof_decl[i]->name;
		if (!(oneofs[i].name = arena_strndup(&f->mem, name, strlen(name))))
			return oom(b);
	}
	for (size_t i = 0; i < n; i++) {
		const field_proto *fp = mp->field[i];
		tp_field *fd = &fields[i];
		fd->parent = m;
		fd->name = arena_strndup(&f->mem, fp->name, strlen(fp->name));
		if (!fd->name)
			return oom(b);
		if (!fp->has_number || fp->number < 1 || (uint32_t)fp->number > 536870911u ||
		    (fp->number >= 19000 && fp->number <= 19999))
			return fail(b, "field %s.%s has invalid number %d", full, fp->name,
				    fp->number);
		fd->number = (uint32_t)fp->number;
		if (fp->json_name) {
			if (!json_name_ok(fp->json_name))
				return fail(b, "field %s.%s has an invalid json_name", full,
					    fp->name);
			fd->json_name =
				arena_strndup(&f->mem, fp->json_name, strlen(fp->json_name));
		} else {
			fd->json_name = camel(b, f, fp->name);
		}
		if (!fd->json_name)
			return oom(b);
		int label = fp->has_label ? (int)fp->label : 1;
		if (label < 1 || label > 3)
			return fail(b, "field %s.%s has invalid label %d", full, fp->name, label);
		if (label == 2 && f->proto3)
			return fail(b, "proto3 field %s.%s cannot be required", full, fp->name);
		fd->repeated = label == 3;
		int type = fp->has_type ? (int)fp->type : 0;
		if (fp->has_type && (type < TP_DOUBLE || type > TP_SINT64))
			return fail(b, "field %s.%s has invalid type %d", full, fp->name, type);
		if (type == TP_MESSAGE || type == TP_GROUP || type == TP_ENUM || !type) {
			if (!fp->type_name || !fp->type_name[0])
				return fail(b, "field %s.%s has no type", full, fp->name);
			sym *t = resolve(b, full, fp->type_name);
			if (!t)
				return fail(b, "field %s.%s: type \"%s\" not found", full, fp->name,
					    fp->type_name);
			if (!type)
				type = t->kind == SYM_MESSAGE ? TP_MESSAGE : TP_ENUM;
			if (type == TP_ENUM && t->kind != SYM_ENUM)
				return fail(b, "field %s.%s: \"%s\" is not an enum", full, fp->name,
					    fp->type_name);
			if (type != TP_ENUM && t->kind != SYM_MESSAGE)
				return fail(b, "field %s.%s: \"%s\" is not a message", full,
					    fp->name, fp->type_name);
			if (type == TP_ENUM)
				fd->enum_type = t->obj;
			else
				fd->message = t->obj;
		}
		if (type == TP_GROUP && f->proto3)
			return fail(b, "proto3 field %s.%s cannot be a group", full, fp->name);
		fd->type = (uint8_t)type;
		fd->oneof = -1;
		if (fp->has_oneof_index) {
			if (fp->oneof_index < 0 || (size_t)fp->oneof_index >= mp->n_oneof_decl)
				return fail(b, "field %s.%s has invalid oneof index %d", full,
					    fp->name, fp->oneof_index);
			if (fd->repeated)
				return fail(b, "repeated field %s.%s cannot be in a oneof", full,
					    fp->name);
			fd->oneof = fp->oneof_index;
		}
		if (fp->has_proto3_optional && fp->proto3_optional) {
			if (!f->proto3 || fd->oneof < 0)
				return fail(b,
					    "field %s.%s: optional needs a proto3 synthetic oneof",
					    full, fp->name);
			fd->proto3_optional = true;
			oneofs[fd->oneof].synthetic = true;
		}
		fd->has_presence = !fd->repeated && (type == TP_MESSAGE || type == TP_GROUP ||
						     fd->oneof >= 0 || !f->proto3);
		fd->closed_enum = type == TP_ENUM && !f->proto3;
		if (fd->repeated && packable((uint8_t)type)) {
			const Google__Protobuf__FieldOptions *o = fp->options;
			fd->packed = o && o->has_packed ? o->packed : f->proto3;
		}
	}
	qsort(fields, n, sizeof *fields, cmp_field_number);
	for (size_t i = 1; i < n; i++)
		if (fields[i].number == fields[i - 1].number)
			return fail(b, "fields %s.%s and %s.%s share number %u", full,
				    fields[i - 1].name, full, fields[i].name, fields[i].number);
	for (uint32_t i = 0; i < n; i++)
		by_name[i] = by_json[i] = i;
	qsort_r(by_name, n, sizeof *by_name, cmp_field_name, fields);
	qsort_r(by_json, n, sizeof *by_json, cmp_field_json, fields);
	m->info.fields = fields;
	m->info.n_fields = n;
	m->info.oneofs = oneofs;
	m->info.n_oneofs = mp->n_oneof_decl;
	m->by_name = by_name;
	m->by_json = by_json;
	/* JSON accepts both names, so no name may mean two fields. */
	for (size_t i = 0; i < n; i++) {
		const tp_field *x = &fields[by_json[i]];
		if (i && strcmp(x->json_name, fields[by_json[i - 1]].json_name) == 0)
			return fail(b, "fields %s.%s and %s.%s have the same JSON name \"%s\"",
				    full, fields[by_json[i - 1]].name, full, x->name, x->json_name);
		const tp_field *y = tp_message_field_by_name(m, x->json_name, strlen(x->json_name));
		if (y && y != x)
			return fail(b,
				    "JSON name \"%s\" of field %s.%s is the name of another field",
				    x->json_name, full, x->name);
	}
	uint32_t max = n ? fields[n - 1].number : 0;
	if (n && max < 1024 && max <= 4 * n + 16) {
		uint32_t *dense = arena_zalloc(&f->mem, (max + 1) * sizeof *dense);
		if (!dense)
			return oom(b);
		for (uint32_t i = 0; i < n; i++)
			dense[fields[i].number] = i + 1;
		m->dense = dense;
		m->n_dense = max + 1;
	}
	return 0;
}

/* After every field is built: map entries, then the special JSON of well-known types. */
static int check_maps(build *b, tp_message *m)
{
	for (size_t i = 0; i < m->info.n_fields; i++) {
		tp_field *fd = (tp_field *)&m->info.fields[i];
		if (fd->type != TP_MESSAGE || !fd->message->info.map_entry)
			continue;
		const tp_message_info *e = &fd->message->info;
		if (!fd->repeated || e->n_fields != 2 || e->fields[0].number != 1 ||
		    e->fields[1].number != 2 || e->fields[0].repeated || e->fields[1].repeated ||
		    !map_key_type_ok(e->fields[0].type) || e->fields[1].type == TP_GROUP)
			return fail(b, "field %s.%s: %s is not a valid map entry",
				    m->info.full_name, fd->name, e->full_name);
		fd->is_map = true;
	}
	return 0;
}

static bool shape(const tp_message *m, size_t n, const uint8_t *types, bool repeated)
{
	if (m->info.n_fields != n)
		return false;
	for (size_t i = 0; i < n; i++) {
		const tp_field *f = &m->info.fields[i];
		if (f->number != i + 1 || f->type != types[i] || f->repeated != repeated)
			return false;
	}
	return true;
}

static void mark_wkt(tp_message *m)
{
	static const char pfx[] = "google.protobuf.";
	const char *full = m->info.full_name;
	if (strncmp(full, pfx, sizeof pfx - 1) != 0)
		return;
	const char *n = full + sizeof pfx - 1;
	const tp_field *f = m->info.fields;
	static const uint8_t str_bytes[] = {TP_STRING, TP_BYTES}, i64_i32[] = {TP_INT64, TP_INT32},
			     str[] = {TP_STRING}, msg[] = {TP_MESSAGE},
			     value[] = {TP_ENUM, TP_DOUBLE,  TP_STRING,
					TP_BOOL, TP_MESSAGE, TP_MESSAGE};
	static const struct {
		const char *name;
		uint8_t type;
	} wrappers[] = {
		{"DoubleValue", TP_DOUBLE}, {"FloatValue", TP_FLOAT},	{"Int64Value", TP_INT64},
		{"UInt64Value", TP_UINT64}, {"Int32Value", TP_INT32},	{"UInt32Value", TP_UINT32},
		{"BoolValue", TP_BOOL},	    {"StringValue", TP_STRING}, {"BytesValue", TP_BYTES},
	};
	if (!strcmp(n, "Any") && shape(m, 2, str_bytes, false))
		m->info.wkt = TP_WKT_ANY;
	else if (!strcmp(n, "Timestamp") && shape(m, 2, i64_i32, false))
		m->info.wkt = TP_WKT_TIMESTAMP;
	else if (!strcmp(n, "Duration") && shape(m, 2, i64_i32, false))
		m->info.wkt = TP_WKT_DURATION;
	else if (!strcmp(n, "FieldMask") && shape(m, 1, str, true))
		m->info.wkt = TP_WKT_FIELD_MASK;
	else if (!strcmp(n, "Struct") && shape(m, 1, msg, true) && f[0].is_map &&
		 f[0].message->info.fields[0].type == TP_STRING &&
		 f[0].message->info.fields[1].type == TP_MESSAGE &&
		 !strcmp(f[0].message->info.fields[1].message->info.full_name,
			 "google.protobuf.Value"))
		m->info.wkt = TP_WKT_STRUCT;
	else if (!strcmp(n, "Value") && shape(m, 6, value, false) &&
		 f[0].enum_type->info.null_value &&
		 !strcmp(f[4].message->info.full_name, "google.protobuf.Struct") &&
		 !strcmp(f[5].message->info.full_name, "google.protobuf.ListValue"))
		m->info.wkt = TP_WKT_VALUE;
	else if (!strcmp(n, "ListValue") && shape(m, 1, msg, true) && !f[0].is_map &&
		 !strcmp(f[0].message->info.full_name, "google.protobuf.Value"))
		m->info.wkt = TP_WKT_LIST_VALUE;
	for (size_t i = 0; i < sizeof wrappers / sizeof *wrappers; i++)
		if (!strcmp(n, wrappers[i].name) && shape(m, 1, &wrappers[i].type, false))
			m->info.wkt = TP_WKT_WRAPPER;
}

static int build_enum(build *b, tp_file *f, tp_enum *e)
{
	size_t n = e->info.n_values;
	uint32_t *by_number = arena_zalloc(&f->mem, n * sizeof *by_number);
	uint32_t *by_name = arena_zalloc(&f->mem, n * sizeof *by_name);
	if (!by_number || !by_name)
		return oom(b);
	for (uint32_t i = 0; i < n; i++)
		by_number[i] = by_name[i] = i;
	qsort_r(by_number, n, sizeof *by_number, cmp_value_number, (void *)e->info.values);
	qsort_r(by_name, n, sizeof *by_name, cmp_value_name, (void *)e->info.values);
	e->by_number = by_number;
	e->by_name = by_name;
	return 0;
}

static int build_service(build *b, tp_file *f, tp_service *s)
{
	const Google__Protobuf__ServiceDescriptorProto *sp = s->src;
	tp_method *ms = arena_zalloc(&f->mem, (sp->n_method + 1) * sizeof *ms);
	if (!ms)
		return oom(b);
	for (size_t i = 0; i < sp->n_method; i++) {
		const Google__Protobuf__MethodDescriptorProto *mp = sp->method[i];
		const char *types[2] = {mp->input_type, mp->output_type};
		const tp_message *msgs[2];
		for (int k = 0; k < 2; k++) {
			sym *t = types[k] && types[k][0] ? resolve(b, s->info.full_name, types[k])
							 : NULL;
			if (!t || t->kind != SYM_MESSAGE)
				return fail(b,
					    "method %s.%s: %s type \"%s\" is not a known message",
					    s->info.full_name, mp->name, k ? "output" : "input",
					    types[k] ? types[k] : "");
			msgs[k] = t->obj;
		}
		ms[i] = (tp_method){
			.name = arena_strndup(&f->mem, mp->name, strlen(mp->name)),
			.input = msgs[0],
			.output = msgs[1],
			.client_streaming = mp->has_client_streaming && mp->client_streaming,
			.server_streaming = mp->has_server_streaming && mp->server_streaming,
		};
		if (!ms[i].name)
			return oom(b);
	}
	s->info.methods = ms;
	s->info.n_methods = sp->n_method;
	return 0;
}

/* The file of that name as the files being added see it, and whether it is global. */
static tp_file *find_file(build *b, const char *name, bool *global)
{
	size_t n = strlen(name);
	uint32_t h = tp_name_hash(name, n);
	*global = false;
	for (tp_file *f = b->staged; f; f = f->next)
		if (!strcmp(f->self.name, name))
			return f;
	sym *e = tp_symtab_find(&b->ns->files, name, n, h);
	if (e)
		return e->obj;
	if (b->ns != &b->tp->global && (e = tp_symtab_find(&b->tp->global.files, name, n, h))) {
		*global = true;
		return e->obj;
	}
	return NULL;
}

static bool package_ok(const char *p)
{
	char part[NAME_MAX_LEN + 1];
	size_t n = strlen(p);
	if (n > NAME_MAX_LEN)
		return false;
	if (!n)
		return true;
	for (const char *s = p;;) {
		const char *dot = strchr(s, '.');
		size_t k = dot ? (size_t)(dot - s) : strlen(s);
		memcpy(part, s, k);
		part[k] = '\0';
		if (!ident_ok(part))
			return false;
		if (!dot)
			return true;
		s = dot + 1;
	}
}

static int build_file(build *b, const file_proto *fp)
{
	if (!fp->name || !fp->name[0] || strlen(fp->name) > NAME_MAX_LEN)
		return fail(b, "a file has no name");
	const char *syntax = fp->syntax ? fp->syntax : "";
	if (strcmp(syntax, "") && strcmp(syntax, "proto2") && strcmp(syntax, "proto3"))
		return fail(b, "file %s: unsupported syntax \"%s\"", fp->name, syntax);
	const char *package = fp->package ? fp->package : "";
	if (!package_ok(package))
		return fail(b, "file %s: invalid package \"%s\"", fp->name, package);

	size_t len = protobuf_c_message_get_packed_size(&fp->base);
	uint8_t *bytes = mem_alloc(len ? len : 1);
	if (!bytes)
		return oom(b);
	protobuf_c_message_pack(&fp->base, bytes);
	bool global;
	tp_file *old = find_file(b, fp->name, &global);
	if (old && old->len == len && memcmp(old->bytes, bytes, len) == 0) {
		mem_free(bytes);
		return 0;
	}
	if (old && (global || old->staged)) {
		mem_free(bytes);
		/* The global file of that name stands (a namespace may bring its own copy of a
		 * well-known import); within one add, two versions of a file are a mistake. */
		if (global)
			return 0;
		return fail(b, "file %s appears twice with different contents", fp->name);
	}

	arena mem = TP_ARENA_INIT;
	tp_file *f = arena_zalloc(&mem, sizeof *f);
	if (!f) {
		mem_free(bytes);
		return oom(b);
	}
	f->mem = mem;
	f->bytes = bytes;
	f->len = len;
	f->ns = b->ns;
	f->proto3 = !strcmp(syntax, "proto3");
	f->staged = true;
	f->self = (sym){.kind = SYM_FILE, .obj = f, .file = f};
	f->self.name = arena_strndup(&f->mem, fp->name, strlen(fp->name));
	f->package = arena_strndup(&f->mem, package, strlen(package));
	f->next = b->staged;
	b->staged = f;
	if (!f->self.name || !f->package)
		return oom(b);
	f->self.len = (uint32_t)strlen(f->self.name);
	f->self.hash = tp_name_hash(f->self.name, f->self.len);
	if (old) {
		old->hidden = true;
		f->replaces = old;
	}

	for (size_t i = 0; i < fp->n_dependency; i++) {
		bool g;
		if (!strcmp(fp->dependency[i], fp->name))
			return fail(b, "file %s imports itself", fp->name);
		tp_file *dep = find_file(b, fp->dependency[i], &g);
		if (!dep || dep->hidden)
			return fail(b, "file %s imports %s, which is not known", fp->name,
				    fp->dependency[i]);
	}

	int rc;
	if (package[0]) {
		char part[NAME_MAX_LEN + 1];
		for (const char *dot = package;; dot++) {
			dot = strchr(dot, '.');
			size_t k = dot ? (size_t)(dot - package) : strlen(package);
			memcpy(part, package, k);
			part[k] = '\0';
			const char *pn = arena_strndup(&f->mem, part, k);
			if (!pn)
				return oom(b);
			if ((rc = define(b, f, pn, SYM_PACKAGE, NULL)))
				return rc;
			if (!dot)
				break;
		}
	}
	for (size_t i = 0; i < fp->n_message_type; i++)
		if ((rc = declare_message(b, f, f->package, fp->message_type[i], 0)))
			return rc;
	for (size_t i = 0; i < fp->n_enum_type; i++)
		if ((rc = declare_enum(b, f, f->package, fp->enum_type[i])))
			return rc;
	for (size_t i = 0; i < fp->n_extension; i++) {
		const char *name = fp->extension[i]->name;
		if (!ident_ok(name))
			return fail(b, "file %s: invalid extension name \"%s\"", fp->name,
				    name ? name : "");
		const char *efull = join(b, f, f->package, name);
		if (!efull || (rc = define(b, f, efull, SYM_OTHER, NULL)))
			return efull ? rc : -ENOMEM;
	}
	for (size_t i = 0; i < fp->n_service; i++) {
		const Google__Protobuf__ServiceDescriptorProto *sp = fp->service[i];
		if (!ident_ok(sp->name))
			return fail(b, "file %s: invalid service name \"%s\"", fp->name,
				    sp->name ? sp->name : "");
		const char *sfull = join(b, f, f->package, sp->name);
		tp_service *s = arena_zalloc(&f->mem, sizeof *s);
		if (!sfull || !s)
			return oom(b);
		s->info.full_name = sfull;
		s->info.file = f->self.name;
		s->src = sp;
		if ((rc = define(b, f, sfull, SYM_SERVICE, s)))
			return rc;
		if (tp_ptrvec_push(&f->services, s))
			return oom(b);
		for (size_t k = 0; k < sp->n_method; k++) {
			if (!ident_ok(sp->method[k]->name))
				return fail(b, "invalid method name in service %s", sfull);
			const char *mfull = join(b, f, sfull, sp->method[k]->name);
			if (!mfull || (rc = define(b, f, mfull, SYM_OTHER, s)))
				return mfull ? rc : -ENOMEM;
		}
	}

	tp_message **msgs = (tp_message **)f->messages.p;
	for (size_t i = 0; i < f->messages.n; i++)
		if ((rc = build_fields(b, f, msgs[i])))
			return rc;
	for (size_t i = 0; i < f->enums.n; i++)
		if ((rc = build_enum(b, f, f->enums.p[i])))
			return rc;
	for (size_t i = 0; i < f->messages.n; i++)
		if ((rc = check_maps(b, msgs[i])))
			return rc;
	for (size_t i = 0; i < f->messages.n; i++) {
		mark_wkt(msgs[i]);
		msgs[i]->src = NULL;
	}
	for (size_t i = 0; i < f->services.n; i++) {
		tp_service *s = f->services.p[i];
		if ((rc = build_service(b, f, s)))
			return rc;
		s->src = NULL;
	}
	return 0;
}

/* Makes room in the pool's tables for the staged files: publish cannot fail after it. */
static int reserve(build *b)
{
	size_t nsyms = 0, nfiles = 0;
	for (tp_file *f = b->staged; f; f = f->next) {
		nsyms += f->syms.n;
		nfiles++;
	}
	if (tp_symtab_reserve(&b->ns->syms, nsyms) || tp_symtab_reserve(&b->ns->files, nfiles) ||
	    (b->new_ns && tp_symtab_reserve(&b->tp->nss, 1)))
		return oom(b);
	return 0;
}

/* Makes the staged files visible, in the room reserve made. */
static void publish(build *b)
{
	if (b->new_ns) {
		tp_symtab_put(&b->tp->nss, &b->new_ns->self);
		b->new_ns = NULL;
	}
	/* Oldest first, so that the pool's file list stays in order of addition. */
	tp_file *rev = NULL;
	while (b->staged) {
		tp_file *f = b->staged;
		b->staged = f->next;
		f->next = rev;
		rev = f;
	}
	for (tp_file *f = rev, *next; f; f = next) {
		next = f->next;
		if (f->replaces) {
			tp_file *old = f->replaces;
			for (size_t i = 0; i < old->syms.n; i++)
				if (((sym *)old->syms.p[i])->kind != SYM_PACKAGE)
					tp_symtab_remove(&b->ns->syms, old->syms.p[i]);
			tp_symtab_remove(&b->ns->files, &old->self);
			old->hidden = false;
			f->replaces = NULL;
		}
		for (size_t i = 0; i < f->syms.n; i++) {
			sym *e = f->syms.p[i];
			if (e->kind != SYM_PACKAGE ||
			    !tp_symtab_find(&b->ns->syms, e->name, e->len, e->hash))
				tp_symtab_put(&b->ns->syms, e);
		}
		tp_symtab_put(&b->ns->files, &f->self);
		f->staged = false;
		mem_free(f->messages.p);
		mem_free(f->services.p);
		mem_free(f->enums.p);
		f->messages = f->services = f->enums = (ptrvec){0};
		f->next = b->tp->files;
		b->tp->files = f;
	}
}

static void abandon(build *b)
{
	for (tp_file *f = b->staged, *next; f; f = next) {
		next = f->next;
		if (f->replaces)
			f->replaces->hidden = false;
		tp_file_free(f);
	}
	b->staged = NULL;
}

/* A namespace that is not there yet is made aside (b->new_ns) and joins the pool when the
 * add commits: adds that fail or only check leave no namespace behind, however many
 * names they try. */
static tp_ns *get_ns(build *b, const char *name)
{
	if (!name)
		return &b->tp->global;
	size_t n = strlen(name);
	uint32_t h = tp_name_hash(name, n);
	sym *e = tp_symtab_find(&b->tp->nss, name, n, h);
	if (e)
		return e->obj;
	tp_ns *ns = mem_calloc(1, sizeof *ns);
	char *copy = mem_strdup(name);
	if (!ns || !copy) {
		mem_free(ns);
		mem_free(copy);
		oom(b);
		return NULL;
	}
	ns->self = (sym){.name = copy, .len = (uint32_t)n, .hash = h, .kind = SYM_NS, .obj = ns};
	b->new_ns = ns;
	return ns;
}

/* Under the pool's write lock: the files built, checked and given room, staged in b. */
static int stage(build *b, const char *ns, const file_proto *const *files, size_t n,
		 tp_check_fn check, void *check_ctx)
{
	b->ns = get_ns(b, ns);
	if (!b->ns)
		return -ENOMEM;
	int rc = 0;
	for (size_t i = 0; i < n && !rc; i++)
		rc = build_file(b, files[i]);
	for (tp_file *f = b->staged; f && check && !rc; f = f->next)
		if ((rc = check(check_ctx, (const tp_message *const *)f->messages.p, f->messages.n,
				b->err, sizeof(b->err))))
			rc = rc < 0 ? rc : -EINVAL;
	return rc ? rc : reserve(b);
}

/* Under the pool's write lock: what staging left that the pool does not take. */
static void unstage(build *b)
{
	abandon(b);
	if (b->new_ns)
		tp_ns_drop(b->new_ns);
	b->new_ns = NULL;
}

int tp_add_files(tp_pool *tp, const char *ns, const file_proto *const *files, size_t n, int flags,
		 tp_check_fn check, void *check_ctx)
{
	tp_staged *s;
	int rc = tp_stage_files(tp, ns, files, n, check, check_ctx, &s);
	if (!rc && (flags & TP_CHECK_ONLY))
		tp_unstage(s);
	else if (!rc)
		tp_publish(s);
	return rc;
}

struct tp_staged {
	build b;
};

int tp_stage_files(tp_pool *tp, const char *ns, const file_proto *const *files, size_t n,
		   tp_check_fn check, void *check_ctx, tp_staged **out)
{
	*out = NULL;
	tp_staged *s = mem_calloc(1, sizeof(*s));
	if (!s)
		return store_err_set(-ENOMEM, "out of memory");
	build *b = &s->b;
	b->tp = tp;
	int rc;
	if (ns && !ns[0]) {
		rc = fail(b, "empty namespace name");
	} else {
		pthread_rwlock_wrlock(&tp->lock);
		rc = stage(b, ns, files, n, check, check_ctx);
		if (rc)
			unstage(b);
		pthread_rwlock_unlock(&tp->lock);
	}
	/* Only the build looks names up in it. */
	mem_free(b->stage.slots);
	b->stage = (symtab){0};
	if (rc) {
		store_err_set(rc, "%s", b->err);
		mem_free(s);
		return rc;
	}
	*out = s;
	return 0;
}

void tp_publish(tp_staged *s)
{
	pthread_rwlock_wrlock(&s->b.tp->lock);
	publish(&s->b);
	pthread_rwlock_unlock(&s->b.tp->lock);
	mem_free(s);
}

void tp_unstage(tp_staged *s)
{
	pthread_rwlock_wrlock(&s->b.tp->lock);
	unstage(&s->b);
	pthread_rwlock_unlock(&s->b.tp->lock);
	mem_free(s);
}

int tp_add_file(tp_pool *tp, const char *ns, const file_proto *fdp)
{
	return tp_add_files(tp, ns, &fdp, 1, 0, NULL, NULL);
}

int tp_add_set(tp_pool *tp, const char *ns, const uint8_t *bytes, size_t len)
{
	Google__Protobuf__FileDescriptorSet *set;
	char why[160];
	int rc = pbdecode(&google__protobuf__file_descriptor_set__descriptor, bytes, len,
			  (ProtobufCMessage **)&set, why, sizeof(why));
	if (rc == -ENOMEM)
		return store_err_set(rc, "out of memory");
	if (rc)
		return store_err_set(-EINVAL, "not a valid FileDescriptorSet");
	rc = tp_add_files(tp, ns, (const file_proto *const *)set->file, set->n_file, 0, NULL, NULL);
	google__protobuf__file_descriptor_set__free_unpacked(set, NULL);
	return rc;
}
