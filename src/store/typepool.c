/* The type pool's objects: the tables that name them per namespace, lookups, and removal
 * of a file. Building them from descriptors is typepool_build.c's. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/hash.h"
#include "base/mem.h"
#include "store/typepool_int.h"

/* ---- symbols ---- */

sym tp_tombstone;

uint32_t tp_name_hash(const char *s, size_t n) { return hash_fnv1a(HASH_FNV1A_INIT, s, n); }

sym *tp_symtab_find(const symtab *t, const char *s, size_t n, uint32_t h)
{
	if (!t->cap)
		return NULL;
	for (size_t i = h & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
		sym *e = t->slots[i];
		if (!e)
			return NULL;
		if (e != TOMB && e->hash == h && e->len == n && memcmp(e->name, s, n) == 0)
			return e;
	}
}

void tp_symtab_put(symtab *t, sym *e)
{
	size_t i = e->hash & (t->cap - 1);
	while (t->slots[i] && t->slots[i] != TOMB)
		i = (i + 1) & (t->cap - 1);
	if (!t->slots[i])
		t->used++;
	t->slots[i] = e;
}

int tp_symtab_reserve(symtab *t, size_t extra)
{
	if ((t->used + extra) * 2 <= t->cap)
		return 0;
	size_t live = 0;
	for (size_t i = 0; i < t->cap; i++)
		live += t->slots[i] && t->slots[i] != TOMB;
	size_t cap = 16;
	while (cap < (live + extra) * 2 + 1)
		cap *= 2;
	sym **slots = mem_calloc(cap, sizeof *slots);
	if (!slots)
		return -ENOMEM;
	symtab nt = {.slots = slots, .cap = cap};
	for (size_t i = 0; i < t->cap; i++)
		if (t->slots[i] && t->slots[i] != TOMB)
			tp_symtab_put(&nt, t->slots[i]);
	mem_free(t->slots);
	*t = nt;
	return 0;
}

void tp_symtab_remove(symtab *t, const sym *e)
{
	for (size_t i = e->hash & (t->cap - 1); t->slots[i]; i = (i + 1) & (t->cap - 1)) {
		if (t->slots[i] == e) {
			t->slots[i] = TOMB;
			return;
		}
	}
}

/* ---- the objects ---- */

int tp_ptrvec_push(ptrvec *v, void *x)
{
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 16;
		void **p = mem_realloc(v->p, cap * sizeof *p);
		if (!p)
			return -ENOMEM;
		v->p = p;
		v->cap = cap;
	}
	v->p[v->n++] = x;
	return 0;
}

tp_pool *tp_new(void)
{
	tp_pool *tp = mem_calloc(1, sizeof *tp);
	if (!tp)
		return NULL;
	if (pthread_rwlock_init(&tp->lock, NULL)) {
		mem_free(tp);
		return NULL;
	}
	return tp;
}

void tp_file_free(tp_file *f)
{
	mem_free(f->bytes);
	mem_free(f->syms.p);
	mem_free(f->messages.p);
	mem_free(f->services.p);
	mem_free(f->enums.p);
	arena mem = f->mem;
	arena_free(&mem); /* f itself lives in its arena */
}

static void tp_ns_free(tp_ns *ns)
{
	mem_free(ns->syms.slots);
	mem_free(ns->files.slots);
}

void tp_ns_drop(tp_ns *ns)
{
	tp_ns_free(ns);
	mem_free((char *)ns->self.name);
	mem_free(ns);
}

void tp_free(tp_pool *tp)
{
	if (!tp)
		return;
	for (tp_file *f = tp->files, *next; f; f = next) {
		next = f->next;
		tp_file_free(f);
	}
	for (size_t i = 0; i < tp->nss.cap; i++) {
		sym *e = tp->nss.slots[i];
		if (e && e != TOMB) {
			tp_ns *ns = e->obj;
			tp_ns_drop(ns);
		}
	}
	mem_free(tp->nss.slots);
	tp_ns_free(&tp->global);
	pthread_rwlock_destroy(&tp->lock);
	mem_free(tp);
}

/* ---- removal ---- */

/* Whether a file of ns (other than f) has the package p or one inside it. */
static bool package_in_use(const tp_ns *ns, const tp_file *f, const char *p, size_t n)
{
	for (size_t i = 0; i < ns->files.cap; i++) {
		const sym *e = ns->files.slots[i];
		const tp_file *o = e && e != TOMB ? e->obj : NULL;
		if (o && o != f && !strncmp(o->package, p, n) &&
		    (!o->package[n] || o->package[n] == '.'))
			return true;
	}
	return false;
}

int tp_remove_file(tp_pool *tp, const char *ns, const char *name)
{
	size_t n = strlen(name);
	pthread_rwlock_wrlock(&tp->lock);
	sym *nse = tp_symtab_find(&tp->nss, ns, strlen(ns), tp_name_hash(ns, strlen(ns)));
	tp_ns *space = nse ? nse->obj : NULL;
	sym *e = space ? tp_symtab_find(&space->files, name, n, tp_name_hash(name, n)) : NULL;
	if (!e) {
		pthread_rwlock_unlock(&tp->lock);
		return -ENOENT;
	}
	tp_file *f = e->obj;
	for (size_t i = 0; i < f->syms.n; i++)
		if (((sym *)f->syms.p[i])->kind != SYM_PACKAGE)
			tp_symtab_remove(&space->syms, f->syms.p[i]);
	tp_symtab_remove(&space->files, &f->self);
	/* A package stays while another file of the namespace is in it (the symbol in the
	 * table may be any file's: the first to bring the package defined it). */
	for (size_t k = 0, len = strlen(f->package); k < len; k++) {
		if (f->package[k + 1] && f->package[k + 1] != '.')
			continue;
		sym *p = tp_symtab_find(&space->syms, f->package, k + 1,
					tp_name_hash(f->package, k + 1));
		if (p && p->kind == SYM_PACKAGE && !package_in_use(space, f, f->package, k + 1))
			tp_symtab_remove(&space->syms, p);
	}
	pthread_rwlock_unlock(&tp->lock);
	return 0;
}

/* ---- lookups ---- */

/* The namespace itself (NULL: the global one), without its fallback to the global one;
 * NULL when it has no files. Under the lock. */
static tp_ns *ns_of(tp_pool *tp, const char *ns)
{
	if (!ns)
		return &tp->global;
	sym *e = tp_symtab_find(&tp->nss, ns, strlen(ns), tp_name_hash(ns, strlen(ns)));
	return e ? e->obj : NULL;
}

static sym *find_sym(tp_pool *tp, const char *ns, const char *name, size_t n, sym_kind kind)
{
	if (n && name[0] == '.') {
		name++;
		n--;
	}
	uint32_t h = tp_name_hash(name, n);
	sym *e = NULL;
	pthread_rwlock_rdlock(&tp->lock);
	if (ns) {
		sym *nse = tp_symtab_find(&tp->nss, ns, strlen(ns), tp_name_hash(ns, strlen(ns)));
		if (nse)
			e = tp_symtab_find(&((tp_ns *)nse->obj)->syms, name, n, h);
	}
	if (!e)
		e = tp_symtab_find(&tp->global.syms, name, n, h);
	pthread_rwlock_unlock(&tp->lock);
	return e && e->kind == kind ? e : NULL;
}

const tp_message *tp_find_message(tp_pool *tp, const char *ns, const char *full_name)
{
	sym *e = find_sym(tp, ns, full_name, strlen(full_name), SYM_MESSAGE);
	return e ? e->obj : NULL;
}

/* Messages of t whose full name is `name` or ends with "." + name; the first goes to
 * *found. */
static size_t scan_bare(const symtab *t, const char *name, size_t n, const tp_message **found)
{
	size_t count = 0;
	for (size_t i = 0; i < t->cap; i++) {
		const sym *e = t->slots[i];
		if (!e || e == TOMB || e->kind != SYM_MESSAGE)
			continue;
		size_t fl = e->len;
		if (fl < n || memcmp(e->name + fl - n, name, n) ||
		    (fl > n && e->name[fl - n - 1] != '.'))
			continue;
		if (!count++)
			*found = e->obj;
	}
	return count;
}

const tp_message *tp_find_bare(tp_pool *tp, const char *ns, const char *name, size_t *matches)
{
	size_t n = strlen(name), count = 0;
	const tp_message *found = NULL, *f;
	pthread_rwlock_rdlock(&tp->lock);
	if (ns) {
		sym *nse = tp_symtab_find(&tp->nss, ns, strlen(ns), tp_name_hash(ns, strlen(ns)));
		if (nse && (count = scan_bare(&((tp_ns *)nse->obj)->syms, name, n, &f)))
			found = f;
	}
	size_t global = scan_bare(&tp->global.syms, name, n, &f);
	if (global && !found)
		found = f;
	count += global;
	pthread_rwlock_unlock(&tp->lock);
	*matches = count;
	return count == 1 ? found : NULL;
}

const tp_enum *tp_find_enum(tp_pool *tp, const char *ns, const char *full_name)
{
	sym *e = find_sym(tp, ns, full_name, strlen(full_name), SYM_ENUM);
	return e ? e->obj : NULL;
}

const tp_service *tp_find_service(tp_pool *tp, const char *ns, const char *full_name)
{
	sym *e = find_sym(tp, ns, full_name, strlen(full_name), SYM_SERVICE);
	return e ? e->obj : NULL;
}

const tp_message *tp_find_type_url(tp_pool *tp, const char *ns, const char *url, size_t len)
{
	const char *slash = memrchr(url, '/', len);
	const char *name = slash ? slash + 1 : url;
	size_t n = len - (size_t)(name - url);
	if (!n || (n && name[0] == '.'))
		return NULL;
	sym *e = find_sym(tp, ns, name, n, SYM_MESSAGE);
	return e ? e->obj : NULL;
}

const char *tp_symbol_file(tp_pool *tp, const char *ns, const char *name)
{
	size_t n = strlen(name);
	uint32_t h = tp_name_hash(name, n);
	sym *e = NULL;
	pthread_rwlock_rdlock(&tp->lock);
	tp_ns *space = ns_of(tp, ns);
	if (space)
		e = tp_symtab_find(&space->syms, name, n, h);
	pthread_rwlock_unlock(&tp->lock);
	return e && e->kind != SYM_PACKAGE ? e->file->self.name : NULL;
}

/* File `name` of ns itself (NULL: global); it lives as long as the pool. */
static const tp_file *find_file(tp_pool *tp, const char *ns, const char *name)
{
	size_t n = strlen(name);
	sym *e = NULL;
	pthread_rwlock_rdlock(&tp->lock);
	tp_ns *space = ns_of(tp, ns);
	if (space)
		e = tp_symtab_find(&space->files, name, n, tp_name_hash(name, n));
	pthread_rwlock_unlock(&tp->lock);
	return e ? e->obj : NULL;
}

bool tp_file_bytes(tp_pool *tp, const char *ns, const char *name, const uint8_t **bytes,
		   size_t *len)
{
	const tp_file *f = find_file(tp, ns, name);
	if (!f)
		return false;
	*bytes = f->bytes;
	*len = f->len;
	return true;
}

const char *tp_file_name(tp_pool *tp, const char *ns, const char *name)
{
	const tp_file *f = find_file(tp, ns, name);
	return f ? f->self.name : NULL;
}

const tp_message_info *tp_message_get(const tp_message *m) { return &m->info; }

const tp_enum_info *tp_enum_get(const tp_enum *e) { return &e->info; }

const tp_service_info *tp_service_get(const tp_service *s) { return &s->info; }

const tp_field *tp_message_field_by_number(const tp_message *m, uint32_t number)
{
	if (m->dense)
		return number < m->n_dense && m->dense[number]
			       ? &m->info.fields[m->dense[number] - 1]
			       : NULL;
	size_t lo = 0, hi = m->info.n_fields;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		uint32_t x = m->info.fields[mid].number;
		if (x == number)
			return &m->info.fields[mid];
		if (x < number)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* strcmp order of a NUL-terminated string against s[0..n). */
static int cmp_n(const char *z, const char *s, size_t n)
{
	int c = strncmp(z, s, n);
	if (c)
		return c;
	return z[n] ? 1 : 0;
}

static const tp_field *search_names(const tp_message *m, const uint32_t *idx, bool json,
				    const char *s, size_t n)
{
	if (memchr(s, '\0', n))
		return NULL;
	size_t lo = 0, hi = m->info.n_fields;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		const tp_field *f = &m->info.fields[idx[mid]];
		int c = cmp_n(json ? f->json_name : f->name, s, n);
		if (!c)
			return f;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

const tp_field *tp_message_field_by_name(const tp_message *m, const char *s, size_t n)
{
	return search_names(m, m->by_name, false, s, n);
}

const tp_field *tp_message_field_by_any_name(const tp_message *m, const char *s, size_t n)
{
	const tp_field *f = search_names(m, m->by_json, true, s, n);
	return f ? f : search_names(m, m->by_name, false, s, n);
}

const char *tp_enum_name_of(const tp_enum *e, int32_t number)
{
	size_t lo = 0, hi = e->info.n_values;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (e->info.values[e->by_number[mid]].number < number)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < e->info.n_values && e->info.values[e->by_number[lo]].number == number)
		return e->info.values[e->by_number[lo]].name;
	return NULL;
}

bool tp_enum_number_of(const tp_enum *e, const char *s, size_t n, int32_t *number)
{
	if (memchr(s, '\0', n))
		return false;
	size_t lo = 0, hi = e->info.n_values;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		const tp_enum_value *v = &e->info.values[e->by_name[mid]];
		int c = cmp_n(v->name, s, n);
		if (!c) {
			*number = v->number;
			return true;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

const tp_field *tp_resolve_path(const tp_message *m, const char *const *segs, size_t n)
{
	const tp_field *f = NULL;
	for (size_t i = 0; i < n; i++) {
		if (!m || !(f = tp_message_field_by_name(m, segs[i], strlen(segs[i]))))
			return NULL;
		if (f->is_map && i + 1 < n) {
			const tp_message_info *e = &f->message->info;
			if (e->fields[0].type != TP_STRING)
				return NULL;
			i++; /* segs[i] is a key; any string is one */
			f = &e->fields[1];
		}
		m = !f->repeated && (f->type == TP_MESSAGE || f->type == TP_GROUP) ? f->message
										   : NULL;
	}
	return f;
}
