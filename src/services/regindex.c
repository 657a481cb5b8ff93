#include "services/regindex.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "services/strmap.h"

typedef struct reg_service {
	char *ns, *name;
	uint8_t *rec;
	size_t len;
	char **paths; /* "ns\0/name/Method" keys of methods */
	size_t *path_lens;
	size_t n_paths;
} reg_service;

struct regindex {
	pthread_rwlock_t lock;
	strmap methods;	 /* "ns\0/pkg.Service/Method" -> non-NULL when registered */
	strmap services; /* "ns\0pkg.Service" -> reg_service */
	/* "ns\0Name" -> how many services of ns are named Name after their last dot (a count
	 * in the pointer): upstream registers bare names, and this tells in one lookup whether
	 * such a name is unambiguous. */
	strmap last_names;
	/* Bumped by every change of a service, under the write lock: readers that keep
	 * something derived from the services (the mesh's advertisement) know when to redo it. */
	uint64_t generation;
};

/* The part of a service's full name after its last dot. */
static const char *last_name(const char *name)
{
	const char *dot = strrchr(name, '.');
	return dot ? dot + 1 : name;
}

static size_t last_count(const regindex *x, const char *key, size_t klen)
{
	return (size_t)(uintptr_t)strmap_get(&x->last_names, key, klen);
}

/* Adds delta to a count that exists (put_service made its key). Under the write lock. */
static void last_count_add(regindex *x, const char *key, size_t klen, int delta)
{
	size_t n = last_count(x, key, klen) + (size_t)delta;
	if (n)
		strmap_put(&x->last_names, key, klen, (void *)(uintptr_t)n, NULL);
	else
		strmap_del(&x->last_names, key, klen);
}

/* "a\0b" in buf; its length, or 0 when it does not fit. */
static size_t pair_key(char *buf, size_t cap, const char *a, size_t alen, const char *b,
		       size_t blen)
{
	if (alen + 1 + blen > cap)
		return 0;
	memcpy(buf, a, alen);
	buf[alen] = 0;
	memcpy(buf + alen + 1, b, blen);
	return alen + 1 + blen;
}

regindex *regindex_new(void)
{
	regindex *x = mem_calloc(1, sizeof(*x));
	if (x && pthread_rwlock_init(&x->lock, NULL)) {
		mem_free(x);
		return NULL;
	}
	return x;
}

static void service_free(reg_service *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n_paths; i++)
		mem_free(s->paths[i]);
	mem_free(s->paths);
	mem_free(s->path_lens);
	mem_free(s->rec);
	mem_free(s->ns);
	mem_free(s->name);
	mem_free(s);
}

static void free_service_entry(void *ctx, const char *key, size_t len, void *value)
{
	(void)ctx, (void)key, (void)len;
	service_free(value);
}

void regindex_free(regindex *x)
{
	if (!x)
		return;
	strmap_each(&x->services, free_service_entry, NULL);
	strmap_free(&x->services);
	strmap_free(&x->methods);
	strmap_free(&x->last_names);
	pthread_rwlock_destroy(&x->lock);
	mem_free(x);
}

bool regindex_has_method(regindex *x, const char *ns, size_t ns_len, const char *path,
			 size_t path_len)
{
	char key[1024];
	size_t n = pair_key(key, sizeof(key), ns, ns_len, path, path_len);
	if (!n)
		return false;
	pthread_rwlock_rdlock(&x->lock);
	bool found = strmap_get(&x->methods, key, n) != NULL;
	pthread_rwlock_unlock(&x->lock);
	return found;
}

/* A service entry with its method keys, built before the lock is taken. */
static reg_service *service_new(const char *ns, const char *name, const uint8_t *rec, size_t len,
				char *const *methods, size_t n)
{
	reg_service *s = mem_calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->ns = mem_strdup(ns);
	s->name = mem_strdup(name);
	s->rec = mem_alloc(len ? len : 1);
	s->paths = mem_calloc(n ? n : 1, sizeof(*s->paths));
	s->path_lens = mem_calloc(n ? n : 1, sizeof(*s->path_lens));
	if (!s->ns || !s->name || !s->rec || !s->paths || !s->path_lens)
		goto fail;
	memcpy(s->rec, rec, len);
	s->len = len;
	size_t ns_len = strlen(ns);
	for (size_t i = 0; i < n; i++) {
		char *path;
		int plen = mem_asprintf(&path, "/%s/%s", name, methods[i]);
		if (plen < 0)
			goto fail;
		char *key = mem_alloc(ns_len + 1 + (size_t)plen);
		if (!key) {
			mem_free(path);
			goto fail;
		}
		s->path_lens[i] =
			pair_key(key, ns_len + 1 + (size_t)plen, ns, ns_len, path, (size_t)plen);
		mem_free(path);
		s->paths[s->n_paths++] = key;
	}
	return s;
fail:
	service_free(s);
	return NULL;
}

/* Deletes the method keys of s that map to no registration. Under the write lock. */
static void drop_unregistered(regindex *x, const reg_service *s)
{
	for (size_t i = 0; s && i < s->n_paths; i++)
		if (!strmap_get(&x->methods, s->paths[i], s->path_lens[i]))
			strmap_del(&x->methods, s->paths[i], s->path_lens[i]);
}

int regindex_put_service(regindex *x, const char *ns, const char *name, const uint8_t *rec,
			 size_t len, char *const *methods, size_t n_methods)
{
	reg_service *s = service_new(ns, name, rec, len, methods, n_methods);
	if (!s)
		return -ENOMEM;
	char key[1024];
	size_t klen = pair_key(key, sizeof(key), ns, strlen(ns), name, strlen(name));
	if (!klen) {
		service_free(s);
		return -ENAMETOOLONG;
	}
	char lkey[1024];
	size_t lklen = pair_key(lkey, sizeof(lkey), ns, strlen(ns), last_name(name),
				strlen(last_name(name)));
	static char present = 1;
	pthread_rwlock_wrlock(&x->lock);
	x->generation++;
	reg_service *old = strmap_get(&x->services, key, klen);
	bool new_last = !old && !last_count(x, lkey, lklen);
	/* Every insertion first, so that a failure leaves the old registration whole: a key
	 * added here for a method is not registered while it maps to NULL, a last name is
	 * counted from 0. */
	int rc = new_last ? strmap_put(&x->last_names, lkey, lklen, NULL, NULL) : 0;
	for (size_t i = 0; i < s->n_paths && !rc; i++)
		if (!strmap_get(&x->methods, s->paths[i], s->path_lens[i]))
			rc = strmap_put(&x->methods, s->paths[i], s->path_lens[i], NULL, NULL);
	if (!rc && !old)
		rc = strmap_put(&x->services, key, klen, NULL, NULL);
	if (!rc) {
		for (size_t i = 0; old && i < old->n_paths; i++)
			strmap_put(&x->methods, old->paths[i], old->path_lens[i], NULL, NULL);
		for (size_t i = 0; i < s->n_paths; i++)
			strmap_put(&x->methods, s->paths[i], s->path_lens[i], &present, NULL);
		strmap_put(&x->services, key, klen, s, NULL);
		if (!old)
			last_count_add(x, lkey, lklen, 1);
	}
	/* Keys no registration has (the old methods the new set dropped, or those added
	 * before a failure) go, so that changing method sets cannot grow the map. */
	drop_unregistered(x, old);
	if (rc) {
		drop_unregistered(x, s);
		if (new_last)
			strmap_del(&x->last_names, lkey, lklen);
	}
	pthread_rwlock_unlock(&x->lock);
	if (rc) {
		service_free(s);
		return rc;
	}
	service_free(old);
	return 0;
}

int regindex_remove_service(regindex *x, const char *ns, const char *name)
{
	char key[1024];
	size_t klen = pair_key(key, sizeof(key), ns, strlen(ns), name, strlen(name));
	if (!klen)
		return -ENOENT;
	pthread_rwlock_wrlock(&x->lock);
	x->generation++;
	reg_service *s = strmap_get(&x->services, key, klen);
	if (s) {
		strmap_del(&x->services, key, klen);
		char lkey[1024];
		size_t lklen = pair_key(lkey, sizeof(lkey), ns, strlen(ns), last_name(name),
					strlen(last_name(name)));
		last_count_add(x, lkey, lklen, -1);
		for (size_t i = 0; i < s->n_paths; i++)
			strmap_put(&x->methods, s->paths[i], s->path_lens[i], NULL, NULL);
		drop_unregistered(x, s);
	}
	pthread_rwlock_unlock(&x->lock);
	service_free(s);
	return s ? 0 : -ENOENT;
}

uint8_t *regindex_get_service(regindex *x, const char *ns, const char *name, size_t *len)
{
	char key[1024];
	size_t klen = pair_key(key, sizeof(key), ns, strlen(ns), name, strlen(name));
	uint8_t *copy = NULL;
	*len = 0;
	if (!klen)
		return NULL;
	pthread_rwlock_rdlock(&x->lock);
	reg_service *s = strmap_get(&x->services, key, klen);
	if (s) {
		copy = mem_alloc(s->len ? s->len : 1);
		if (copy) {
			memcpy(copy, s->rec, s->len);
			*len = s->len;
		} else {
			*len = 1;
		}
	}
	pthread_rwlock_unlock(&x->lock);
	return copy;
}

typedef struct collect {
	const char *ns;
	reg_service **v;
	size_t n;
} collect;

static void collect_service(void *ctx, const char *key, size_t len, void *value)
{
	(void)key, (void)len;
	collect *c = ctx;
	reg_service *s = value;
	if (s && (!c->ns || !strcmp(c->ns, s->ns)))
		c->v[c->n++] = s;
}

static int service_cmp(const void *a, const void *b)
{
	const reg_service *x = *(reg_service *const *)a, *y = *(reg_service *const *)b;
	int d = strcmp(x->ns, y->ns);
	return d ? d : strcmp(x->name, y->name);
}

int regindex_each_service(regindex *x, const char *ns,
			  int (*fn)(void *ctx, const char *ns, const char *name, const uint8_t *rec,
				    size_t len),
			  void *ctx)
{
	pthread_rwlock_rdlock(&x->lock);
	collect c = {.ns = ns, .v = mem_calloc(x->services.used + 1, sizeof(*c.v))};
	int rc = c.v ? 0 : -ENOMEM;
	if (c.v) {
		strmap_each(&x->services, collect_service, &c);
		qsort(c.v, c.n, sizeof(*c.v), service_cmp);
		for (size_t i = 0; i < c.n && !rc; i++)
			rc = fn(ctx, c.v[i]->ns, c.v[i]->name, c.v[i]->rec, c.v[i]->len);
	}
	pthread_rwlock_unlock(&x->lock);
	mem_free(c.v);
	return rc;
}

typedef struct last_probe {
	const char *ns, *last, *skip;
	char *first, *second;
	size_t first_cap, second_cap, found;
} last_probe;

/* The first two services of ns (in the map's order) named p->last after their last dot,
 * other than skip. */
static void probe_last(void *ctx, const char *key, size_t len, void *value)
{
	(void)key, (void)len;
	last_probe *p = ctx;
	const reg_service *s = value;
	if (!s || strcmp(s->ns, p->ns) || strcmp(last_name(s->name), p->last) ||
	    (p->skip && !strcmp(s->name, p->skip)))
		return;
	if (p->found == 0 && p->first)
		snprintf(p->first, p->first_cap, "%s", s->name);
	else if (p->found == 1 && p->second)
		snprintf(p->second, p->second_cap, "%s", s->name);
	p->found++;
}

int regindex_resolve_service(regindex *x, const char *ns, const char *name, char *out, size_t cap,
			     char *other, size_t other_cap)
{
	const char *last = last_name(name);
	char key[1024], lkey[1024];
	size_t klen = pair_key(key, sizeof(key), ns, strlen(ns), name, strlen(name));
	size_t lklen = pair_key(lkey, sizeof(lkey), ns, strlen(ns), last, strlen(last));
	if (!klen || !lklen)
		return REGINDEX_NONE;
	int rc = REGINDEX_NONE;
	if (other_cap)
		other[0] = 0;
	pthread_rwlock_rdlock(&x->lock);
	size_t same_last = last_count(x, lkey, lklen);
	if (strmap_get(&x->services, key, klen)) {
		snprintf(out, cap, "%s", name);
		rc = REGINDEX_FOUND;
	} else if (last != name) {
		/* "pkg.Name": the service registered bare as "Name", when no other service of ns
		 * ends in that name (the key of "Name" is the last name's key). */
		if (strmap_get(&x->services, lkey, lklen)) {
			snprintf(out, cap, "%s", last);
			rc = same_last == 1 ? REGINDEX_FOUND : REGINDEX_AMBIGUOUS;
			last_probe p = {.ns = ns,
					.last = last,
					.skip = last,
					.first = other,
					.first_cap = other_cap};
			if (rc == REGINDEX_AMBIGUOUS)
				strmap_each(&x->services, probe_last, &p);
		}
	} else if (same_last) {
		/* A bare "Name": the one service of ns whose name ends in ".Name". */
		last_probe p = {.ns = ns,
				.last = last,
				.first = out,
				.first_cap = cap,
				.second = other,
				.second_cap = other_cap};
		strmap_each(&x->services, probe_last, &p);
		rc = same_last == 1 ? REGINDEX_FOUND : REGINDEX_AMBIGUOUS;
	}
	pthread_rwlock_unlock(&x->lock);
	return rc;
}

uint64_t regindex_generation(regindex *x)
{
	pthread_rwlock_rdlock(&x->lock);
	uint64_t g = x->generation;
	pthread_rwlock_unlock(&x->lock);
	return g;
}
