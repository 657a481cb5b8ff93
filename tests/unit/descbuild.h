/* Builds FileDescriptorProtos at run time for the type pool and transcoder tests. Every
 * allocation goes on one list, freed by db_free. */
#ifndef TESTS_DESCBUILD_H
#define TESTS_DESCBUILD_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "google/protobuf/descriptor.pb-c.h"

typedef Google__Protobuf__FileDescriptorProto db_file;
typedef Google__Protobuf__DescriptorProto db_msg;
typedef Google__Protobuf__FieldDescriptorProto db_field;
typedef Google__Protobuf__EnumDescriptorProto db_enum;

typedef struct db_alloc {
	struct db_alloc *next;
	_Alignas(16) unsigned char mem[];
} db_alloc;

static db_alloc *db_allocs;

static inline void *db_new(size_t n)
{
	db_alloc *a = calloc(1, sizeof *a + n);
	if (!a)
		abort();
	a->next = db_allocs;
	db_allocs = a;
	return a->mem;
}

static inline void db_free(void)
{
	while (db_allocs) {
		db_alloc *next = db_allocs->next;
		free(db_allocs);
		db_allocs = next;
	}
}

static inline char *db_str(const char *s)
{
	char *p = db_new(strlen(s) + 1);
	strcpy(p, s);
	return p;
}

/* Appends p to an array of pointers held as (*arr, *n). */
static inline void db_push(void ***arr, size_t *n, void *p)
{
	void **a = db_new((*n + 1) * sizeof *a);
	if (*n)
		memcpy(a, *arr, *n * sizeof *a);
	a[(*n)++] = p;
	*arr = a;
}

static inline db_file *db_file_new(const char *name, const char *package, const char *syntax)
{
	db_file *f = db_new(sizeof *f);
	*f = (db_file)GOOGLE__PROTOBUF__FILE_DESCRIPTOR_PROTO__INIT;
	f->name = db_str(name);
	f->package = package ? db_str(package) : NULL;
	f->syntax = syntax ? db_str(syntax) : NULL;
	return f;
}

static inline void db_import(db_file *f, const char *name)
{
	db_push((void ***)&f->dependency, &f->n_dependency, db_str(name));
}

static inline db_msg *db_msg_init(const char *name)
{
	db_msg *m = db_new(sizeof *m);
	*m = (db_msg)GOOGLE__PROTOBUF__DESCRIPTOR_PROTO__INIT;
	m->name = db_str(name);
	return m;
}

static inline db_msg *db_message(db_file *f, const char *name)
{
	db_msg *m = db_msg_init(name);
	db_push((void ***)&f->message_type, &f->n_message_type, m);
	return m;
}

static inline db_msg *db_nested(db_msg *parent, const char *name)
{
	db_msg *m = db_msg_init(name);
	db_push((void ***)&parent->nested_type, &parent->n_nested_type, m);
	return m;
}

/* type: a Google__Protobuf__FieldDescriptorProto__Type number, 0 to leave it for
 * type_name to decide. label: 1 optional, 2 required, 3 repeated. */
static inline db_field *db_field_add(db_msg *m, const char *name, int number, int label, int type,
				     const char *type_name)
{
	db_field *f = db_new(sizeof *f);
	*f = (db_field)GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__INIT;
	f->name = db_str(name);
	f->has_number = 1;
	f->number = number;
	f->has_label = 1;
	f->label = (Google__Protobuf__FieldDescriptorProto__Label)label;
	if (type) {
		f->has_type = 1;
		f->type = (Google__Protobuf__FieldDescriptorProto__Type)type;
	}
	f->type_name = type_name ? db_str(type_name) : NULL;
	db_push((void ***)&m->field, &m->n_field, f);
	return f;
}

static inline void db_packed(db_field *f, int packed)
{
	Google__Protobuf__FieldOptions *o = db_new(sizeof *o);
	*o = (Google__Protobuf__FieldOptions)GOOGLE__PROTOBUF__FIELD_OPTIONS__INIT;
	o->has_packed = 1;
	o->packed = packed;
	f->options = o;
}

static inline int db_oneof(db_msg *m, const char *name)
{
	Google__Protobuf__OneofDescriptorProto *o = db_new(sizeof *o);
	*o = (Google__Protobuf__OneofDescriptorProto)GOOGLE__PROTOBUF__ONEOF_DESCRIPTOR_PROTO__INIT;
	o->name = db_str(name);
	db_push((void ***)&m->oneof_decl, &m->n_oneof_decl, o);
	return (int)m->n_oneof_decl - 1;
}

static inline void db_in_oneof(db_field *f, int index)
{
	f->has_oneof_index = 1;
	f->oneof_index = index;
}

/* A map<key, value> field: its entry message is nested in m as <Name>Entry. */
static inline db_field *db_map(db_msg *m, const char *name, int number, int key_type,
			       int value_type, const char *value_type_name)
{
	char entry[128];
	snprintf(entry, sizeof entry, "%c%sEntry", name[0] - 'a' + 'A', name + 1);
	db_msg *e = db_nested(m, entry);
	Google__Protobuf__MessageOptions *o = db_new(sizeof *o);
	*o = (Google__Protobuf__MessageOptions)GOOGLE__PROTOBUF__MESSAGE_OPTIONS__INIT;
	o->has_map_entry = 1;
	o->map_entry = 1;
	e->options = o;
	db_field_add(e, "key", 1, 1, key_type, NULL);
	db_field_add(e, "value", 2, 1, value_type, value_type_name);
	return db_field_add(m, name, number, 3, 11, entry);
}

static inline db_enum *db_enum_add(db_file *f, db_msg *parent, const char *name)
{
	db_enum *e = db_new(sizeof *e);
	*e = (db_enum)GOOGLE__PROTOBUF__ENUM_DESCRIPTOR_PROTO__INIT;
	e->name = db_str(name);
	if (parent)
		db_push((void ***)&parent->enum_type, &parent->n_enum_type, e);
	else
		db_push((void ***)&f->enum_type, &f->n_enum_type, e);
	return e;
}

static inline void db_value(db_enum *e, const char *name, int number)
{
	Google__Protobuf__EnumValueDescriptorProto *v = db_new(sizeof *v);
	*v = (Google__Protobuf__EnumValueDescriptorProto)
		GOOGLE__PROTOBUF__ENUM_VALUE_DESCRIPTOR_PROTO__INIT;
	v->name = db_str(name);
	v->has_number = 1;
	v->number = number;
	db_push((void ***)&e->value, &e->n_value, v);
}

#endif
