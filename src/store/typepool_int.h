/* What the type pool's two files share (typepool.c: the objects, their tables, lookups and
 * removal; typepool_build.c: building and validating descriptors): the objects and the
 * tables that name them. For these two files only. */
#ifndef STORE_TYPEPOOL_INT_H
#define STORE_TYPEPOOL_INT_H
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/arena.h"
#include "store/typepool.h"

typedef Google__Protobuf__FileDescriptorProto file_proto;
typedef Google__Protobuf__DescriptorProto message_proto;
typedef Google__Protobuf__FieldDescriptorProto field_proto;
typedef Google__Protobuf__EnumDescriptorProto enum_proto;

/* Full names longer than this are refused: it bounds the scratch buffers of resolution. */
#define NAME_MAX_LEN 1024

/* Every object of a file lives in its file's arena, allocated zeroed. A file's first block
 * is small: a small file is common, and in a namespace of many small files (or versions) a
 * full block each would cost more than they. */
#define TP_ARENA_INIT ARENA_INIT(1024, 8192)

/* ---- symbols and the open-addressing table that maps names to them ---- */

typedef enum {
	SYM_PACKAGE,
	SYM_MESSAGE,
	SYM_ENUM,
	SYM_SERVICE,
	SYM_OTHER, /* field, oneof, enum value, method, extension: names only */
	SYM_FILE,
	SYM_NS,
} sym_kind;

typedef struct sym {
	const char *name;
	uint32_t len;
	uint32_t hash;
	uint8_t kind;
	void *obj;
	struct tp_file *file;
} sym;

typedef struct symtab {
	sym **slots;
	size_t cap;  /* power of two, or 0 */
	size_t used; /* live entries and tombstones */
} symtab;

/* A removed entry: lookups go on past it. */
extern sym tp_tombstone;
#define TOMB (&tp_tombstone)

uint32_t tp_name_hash(const char *s, size_t n);
sym *tp_symtab_find(const symtab *t, const char *s, size_t n, uint32_t h);
/* Needs room (tp_symtab_reserve). */
void tp_symtab_put(symtab *t, sym *e);
/* Makes room for `extra` more entries without failing later (commit cannot fail). */
int tp_symtab_reserve(symtab *t, size_t extra);
void tp_symtab_remove(symtab *t, const sym *e);

/* ---- the objects ---- */

struct tp_message {
	tp_message_info info;
	const uint32_t *dense; /* number -> field index + 1, for numbers < n_dense */
	uint32_t n_dense;
	const uint32_t *by_name;  /* field indexes sorted by name */
	const uint32_t *by_json;  /* field indexes sorted by json_name */
	const message_proto *src; /* while the file is being built */
};

struct tp_enum {
	tp_enum_info info;
	const uint32_t *by_number; /* value indexes sorted by (number, declaration) */
	const uint32_t *by_name;
};

struct tp_service {
	tp_service_info info;
	const Google__Protobuf__ServiceDescriptorProto *src; /* while being built */
};

typedef struct tp_ns tp_ns;

typedef struct ptrvec {
	void **p;
	size_t n;
	size_t cap;
} ptrvec;

int tp_ptrvec_push(ptrvec *v, void *x);

typedef struct tp_file {
	struct tp_file *next; /* every file of the pool, for tp_free */
	arena mem;
	sym self; /* name -> this file in its namespace's file table */
	tp_ns *ns;
	const char *package;
	uint8_t *bytes; /* the serialized FileDescriptorProto, to tell re-adds apart */
	size_t len;
	ptrvec syms; /* sym *: the symbols it defines */
	bool proto3;
	bool hidden; /* superseded by a file being added: invisible to that add */
	bool staged; /* being added */
	struct tp_file *replaces;
	ptrvec messages; /* tp_message *, tp_enum *, tp_service *: while being built */
	ptrvec enums;
	ptrvec services;
} tp_file;

struct tp_ns {
	sym self; /* name -> this namespace in the pool's table */
	symtab syms;
	symtab files;
};

struct tp_pool {
	pthread_rwlock_t lock;
	tp_ns global;
	symtab nss; /* named namespaces */
	tp_file *files;
};

/* Frees a file and every object of it (they live in its arena). */
void tp_file_free(tp_file *f);
/* A named namespace, with its name. */
void tp_ns_drop(tp_ns *ns);

#endif
