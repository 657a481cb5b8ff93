#include "services/regledger.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/mem.h"

/* One allocation per number: the ledger holds an entry for every field ever registered. */
typedef struct meaning {
	uint8_t type;
	bool repeated;
	const char *type_name; /* message or enum full name, "" for scalars; into text */
	char text[];	       /* name, NUL, type_name, NUL */
} meaning;

static void free_meaning(void *ctx, const char *key, size_t len, void *value)
{
	(void)ctx, (void)key, (void)len;
	mem_free(value);
}

void regledger_free(regledger *l)
{
	strmap_each(&l->map, free_meaning, NULL);
	strmap_free(&l->map);
}

/* "ns\0message\0" + number, in a malloc'd buffer (*len its length); NULL when out of
 * memory. */
static char *key_of(const char *ns, const char *msg, uint32_t number, size_t *len)
{
	size_t a = strlen(ns), b = strlen(msg);
	char *k = mem_alloc(a + b + 6);
	if (k) {
		memcpy(k, ns, a + 1);
		memcpy(k + a + 1, msg, b + 1);
		memcpy(k + a + b + 2, &number, 4);
		*len = a + b + 6;
	}
	return k;
}

static const char *field_type_name(const tp_field *f)
{
	if (f->message)
		return tp_message_get(f->message)->full_name;
	if (f->enum_type)
		return tp_enum_get(f->enum_type)->full_name;
	return "";
}

static const char *const type_words[] = {
	"?",	   "double",   "float",	   "int64",  "uint64",	"int32", "fixed64",
	"fixed32", "bool",     "string",   "group",  "message", "bytes", "uint32",
	"enum",	   "sfixed32", "sfixed64", "sint32", "sint64",
};

static const char *type_word(uint8_t t)
{
	return t < sizeof(type_words) / sizeof(type_words[0]) ? type_words[t] : "?";
}

void regledger_record(regledger *l, const char *ns, const tp_message *m)
{
	const tp_message_info *mi = tp_message_get(m);
	for (size_t i = 0; i < mi->n_fields; i++) {
		const tp_field *f = &mi->fields[i];
		size_t klen;
		char *key = key_of(ns, mi->full_name, f->number, &klen);
		if (key && strmap_get(&l->map, key, klen)) {
			mem_free(key);
			continue;
		}
		const char *tn = field_type_name(f);
		size_t nl = strlen(f->name), tl = strlen(tn);
		meaning *e = key ? mem_alloc(sizeof(*e) + nl + tl + 2) : NULL;
		if (e) {
			e->type = f->type;
			e->repeated = f->repeated;
			memcpy(e->text, f->name, nl + 1);
			memcpy(e->text + nl + 1, tn, tl + 1);
			e->type_name = e->text + nl + 1;
		}
		if (!e || strmap_put(&l->map, key, klen, e, NULL)) {
			mem_free(e);
			log_error("registry: out of memory recording the fields of %s",
				  mi->full_name);
		}
		mem_free(key);
	}
}

int regledger_check_fn(void *ctx, const tp_message *const *msgs, size_t n, char *err, size_t cap)
{
	regledger_check *cc = ctx;
	for (size_t k = 0; k < n; k++) {
		const tp_message_info *mi = tp_message_get(msgs[k]);
		for (size_t i = 0; i < mi->n_fields; i++) {
			const tp_field *f = &mi->fields[i];
			size_t klen;
			char *key = key_of(cc->ns, mi->full_name, f->number, &klen);
			if (!key)
				return -ENOMEM;
			const meaning *was = strmap_get(&cc->l->map, key, klen);
			mem_free(key);
			if (!was)
				continue;
			const char *tn = field_type_name(f);
			if (was->type == f->type && was->repeated == f->repeated &&
			    !strcmp(was->type_name, tn) && !strcmp(was->text, f->name))
				continue;
			snprintf(err, cap,
				 "incompatible change of %s: field number %u was %s%s %s%s%s, now "
				 "%s%s %s%s%s",
				 mi->full_name, f->number, was->repeated ? "repeated " : "",
				 type_word(was->type), *was->type_name ? was->type_name : "",
				 *was->type_name ? " " : "", was->text,
				 f->repeated ? "repeated " : "", type_word(f->type), *tn ? tn : "",
				 *tn ? " " : "", f->name);
			cc->refused = true;
			return 1;
		}
	}
	return 0;
}

/* The keys of the messages being forgotten, collected before any is deleted. */
typedef struct sweep {
	const char *ns;
	size_t ns_len;
	strmap forget; /* message full names -> non-NULL */
	char **keys;
	size_t *lens, n, cap;
	bool failed;
} sweep;

static void sweep_one(void *ctx, const char *key, size_t len, void *value)
{
	(void)value;
	sweep *w = ctx;
	/* "ns\0message\0" + 4 bytes of number */
	if (w->failed || len < w->ns_len + 7 || memcmp(key, w->ns, w->ns_len + 1) ||
	    !strmap_get(&w->forget, key + w->ns_len + 1, len - w->ns_len - 6))
		return;
	if (w->n == w->cap) {
		size_t cap = w->cap ? 2 * w->cap : 64;
		char **keys = mem_realloc(w->keys, cap * sizeof(*keys));
		size_t *lens = keys ? mem_realloc(w->lens, cap * sizeof(*lens)) : NULL;
		if (keys)
			w->keys = keys;
		if (!lens) {
			w->failed = true;
			return;
		}
		w->lens = lens;
		w->cap = cap;
	}
	w->keys[w->n] = mem_alloc(len);
	if (!w->keys[w->n]) {
		w->failed = true;
		return;
	}
	memcpy(w->keys[w->n], key, len);
	w->lens[w->n++] = len;
}

bool regledger_forget(regledger *l, const char *ns, char *const *messages, size_t n)
{
	static char present = 1;
	sweep w = {.ns = ns, .ns_len = strlen(ns)};
	for (size_t i = 0; i < n; i++)
		if (strmap_put(&w.forget, messages[i], strlen(messages[i]), &present, NULL))
			w.failed = true;
	if (w.forget.used)
		strmap_each(&l->map, sweep_one, &w);
	for (size_t i = 0; i < w.n; i++) {
		mem_free(strmap_del(&l->map, w.keys[i], w.lens[i]));
		mem_free(w.keys[i]);
	}
	mem_free(w.keys);
	mem_free(w.lens);
	strmap_free(&w.forget);
	return !w.failed;
}
