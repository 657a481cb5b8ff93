#include "h2/method.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"

/* Methods live in an array in the order added (method_table_at); an open-addressing
 * index of slots into it, at most half full, finds a path in one or two probes. */
typedef struct service_name {
	const char *name; /* points into a method's path, after the leading '/' */
	size_t len;
} service_name;

struct method_table {
	method *v;
	size_t *path_len;
	size_t n, cap;
	uint32_t *index;  /* 0 empty, else position in v + 1 */
	size_t index_cap; /* a power of two */
	service_name *services;
	size_t nservices, services_cap;
};

static uint64_t path_hash(const char *s, size_t len)
{
	/* FNV-1a: paths are short and chosen by us, not by peers, so a keyed hash buys
	 * nothing; lookups of unknown paths just miss. */
	uint64_t h = 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < len; i++) {
		h ^= (uint8_t)s[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

method_table *method_table_new(void) { return mem_calloc(1, sizeof(method_table)); }

void method_table_free(method_table *t)
{
	if (!t)
		return;
	mem_free(t->v);
	mem_free(t->path_len);
	mem_free(t->index);
	mem_free(t->services);
	mem_free(t);
}

/* "/service/method": both parts non-empty, no further '/', visible ASCII only. Returns
 * the length of the service part, or 0 when malformed. */
static size_t path_service_len(const char *path, size_t len)
{
	if (len < 4 || path[0] != '/')
		return 0;
	size_t slash = 0;
	for (size_t i = 1; i < len; i++) {
		unsigned char c = (unsigned char)path[i];
		if (c <= 0x20 || c >= 0x7F)
			return 0;
		if (c != '/')
			continue;
		if (slash)
			return 0;
		slash = i;
	}
	if (slash < 2 || slash == len - 1)
		return 0;
	return slash - 1;
}

static size_t probe(const method_table *t, const char *path, size_t len, bool *found)
{
	size_t mask = t->index_cap - 1;
	size_t i = (size_t)path_hash(path, len) & mask;
	for (;; i = (i + 1) & mask) {
		uint32_t slot = t->index[i];
		if (!slot) {
			*found = false;
			return i;
		}
		size_t k = slot - 1;
		if (t->path_len[k] == len && !memcmp(t->v[k].path, path, len)) {
			*found = true;
			return i;
		}
	}
}

static int grow_index(method_table *t)
{
	size_t cap = t->index_cap ? t->index_cap * 2 : 16;
	uint32_t *old = t->index;
	size_t old_cap = t->index_cap;
	t->index = mem_calloc(cap, sizeof(*t->index));
	if (!t->index) {
		t->index = old;
		return -ENOMEM;
	}
	t->index_cap = cap;
	for (size_t i = 0; i < old_cap; i++) {
		if (!old[i])
			continue;
		size_t k = old[i] - 1;
		bool found;
		size_t at = probe(t, t->v[k].path, t->path_len[k], &found);
		t->index[at] = old[i];
	}
	mem_free(old);
	return 0;
}

static int grow_methods(method_table *t)
{
	size_t cap = t->cap ? t->cap * 2 : 16;
	method *v = mem_realloc(t->v, cap * sizeof(*v));
	if (!v)
		return -ENOMEM;
	t->v = v;
	size_t *pl = mem_realloc(t->path_len, cap * sizeof(*pl));
	if (!pl)
		return -ENOMEM;
	t->path_len = pl;
	t->cap = cap;
	return 0;
}

/* Registers the service of a newly added method unless an earlier method named it. */
static int note_service(method_table *t, const char *name, size_t len)
{
	for (size_t i = 0; i < t->nservices; i++)
		if (t->services[i].len == len && !memcmp(t->services[i].name, name, len))
			return 0;
	if (t->nservices == t->services_cap) {
		size_t cap = t->services_cap ? t->services_cap * 2 : 8;
		service_name *s = mem_realloc(t->services, cap * sizeof(*s));
		if (!s)
			return -ENOMEM;
		t->services = s;
		t->services_cap = cap;
	}
	t->services[t->nservices++] = (service_name){name, len};
	return 0;
}

int method_table_add(method_table *t, const method *m)
{
	if (!m->path)
		return -EINVAL;
	size_t len = strlen(m->path);
	size_t slen = path_service_len(m->path, len);
	if (!slen)
		return -EINVAL;
	if (t->n >= UINT32_MAX - 1)
		return -ENOMEM;
	/* Every allocation happens before the table changes, so a failure leaves it as it
	 * was. */
	if ((t->n + 1) * 2 > t->index_cap && grow_index(t))
		return -ENOMEM;
	bool found;
	size_t at = probe(t, m->path, len, &found);
	if (found)
		return -EEXIST;
	if (t->n == t->cap && grow_methods(t))
		return -ENOMEM;
	if (note_service(t, m->path + 1, slen))
		return -ENOMEM;
	t->v[t->n] = *m;
	t->path_len[t->n] = len;
	t->n++;
	t->index[at] = (uint32_t)t->n;
	return 0;
}

int method_table_add_all(method_table *t, const method *m, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int rc = method_table_add(t, &m[i]);
		if (rc)
			return rc;
	}
	return 0;
}

const method *method_table_find(const method_table *t, const char *path, size_t len)
{
	if (!t->n)
		return NULL;
	bool found;
	size_t at = probe(t, path, len, &found);
	return found ? &t->v[t->index[at] - 1] : NULL;
}

size_t method_table_count(const method_table *t) { return t->n; }

const method *method_table_at(const method_table *t, size_t i)
{
	return i < t->n ? &t->v[i] : NULL;
}

void method_table_each_service(const method_table *t,
			       void (*fn)(const char *service, size_t len, void *arg), void *arg)
{
	for (size_t i = 0; i < t->nservices; i++)
		fn(t->services[i].name, t->services[i].len, arg);
}

int method_table_set_access(method_table *t, const char *path, const method_access *a)
{
	/* The table is read-only while reactors run: this is for start-up, before them. */
	const method *m = method_table_find(t, path, strlen(path));
	if (!m)
		return -ENOENT;
	t->v[m - t->v].access = *a;
	return 0;
}
