#include "services/regquota.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "services/strmap.h"

#define MiB ((size_t)1 << 20)

void regquota_limits_default(regquota_limits *l)
{
	/* From bench/registry_rss.py (README, Registry): the densest descriptors (messages
	 * without fields) cost about 39 times their counted size in memory, so 40 MiB keeps
	 * the node's worst case near 1.6 GiB, with room for a registration being built; one
	 * namespace stays near 0.6 GiB. */
	*l = (regquota_limits){.files = 1000,
			       .versions = 100,
			       .ns_bytes = 16 * MiB,
			       .namespaces = 1000,
			       .total_bytes = 40 * MiB};
}

typedef struct ns_use {
	size_t files, services, bytes;
} ns_use;

typedef struct file_use {
	size_t versions, bytes;
} file_use;

struct regquota {
	regquota_limits lim;
	strmap ns;	 /* ns -> ns_use */
	strmap files;	 /* "ns\0file" -> file_use */
	strmap services; /* "ns\0service" -> size_t, the bytes counted for its record */
	size_t bytes;	 /* kept, in every namespace */
	size_t retired;	 /* of files unregistered since the start */
};

regquota *regquota_new(const regquota_limits *l)
{
	regquota *q = mem_calloc(1, sizeof(*q));
	if (q)
		q->lim = *l;
	return q;
}

static void free_value(void *ctx, const char *key, size_t len, void *value)
{
	(void)ctx, (void)key, (void)len;
	mem_free(value);
}

void regquota_free(regquota *q)
{
	if (!q)
		return;
	strmap *maps[] = {&q->ns, &q->files, &q->services};
	for (size_t i = 0; i < 3; i++) {
		strmap_each(maps[i], free_value, NULL);
		strmap_free(maps[i]);
	}
	mem_free(q);
}

/* "ns\0name" in a malloc'd buffer; NULL when out of memory. */
static char *pair(const char *ns, const char *name, size_t *len)
{
	size_t a = strlen(ns), b = strlen(name);
	char *k = mem_alloc(a + 1 + b);
	if (k) {
		memcpy(k, ns, a + 1);
		memcpy(k + a + 1, name, b);
		*len = a + 1 + b;
	}
	return k;
}

static void *pair_get(const strmap *m, const char *ns, const char *name)
{
	size_t len;
	char *k = pair(ns, name, &len);
	void *v = k ? strmap_get(m, k, len) : NULL;
	mem_free(k);
	return v;
}

static size_t cost(size_t bytes) { return bytes + REGQUOTA_ENTRY_BYTES; }

/* Items before i that name the same file as item i. */
static size_t earlier_same_file(const regquota_item *items, size_t i)
{
	size_t n = 0;
	for (size_t k = 0; k < i; k++)
		n += items[k].file && !strcmp(items[k].file, items[i].file);
	return n;
}

bool regquota_allows(const regquota *q, const char *ns, const regquota_item *items, size_t n,
		     char *msg, size_t cap)
{
	const ns_use *u = strmap_get(&q->ns, ns, strlen(ns));
	size_t files = u ? u->files : 0, new_files = 0;
	int64_t delta = 0;
	for (size_t i = 0; i < n; i++) {
		const regquota_item *it = &items[i];
		if (it->file) {
			const file_use *f = pair_get(&q->files, ns, it->file);
			size_t before = earlier_same_file(items, i);
			size_t versions = (f ? f->versions : 0) + before + 1;
			if ((!f || !f->versions) && !before)
				new_files++;
			if (versions > q->lim.versions) {
				snprintf(
					msg, cap,
					"registry quota --%s (%zu) reached: file %.100s has %zu "
					"versions in namespace '%s' (each change of a file is one; "
					"UnregisterProto removes them all)",
					REGQUOTA_FLAG_VERSIONS, q->lim.versions, it->file,
					versions - 1, ns);
				return false;
			}
			delta += (int64_t)cost(it->bytes);
		} else {
			const size_t *was = pair_get(&q->services, ns, it->service);
			delta += (int64_t)cost(it->bytes) - (was ? (int64_t)*was : 0);
		}
	}
	if (new_files && files + new_files > q->lim.files) {
		snprintf(msg, cap,
			 "registry quota --%s (%zu) reached: namespace '%s' has %zu files, this "
			 "registration adds %zu",
			 REGQUOTA_FLAG_FILES, q->lim.files, ns, files, new_files);
		return false;
	}
	if (delta <= 0)
		return true;
	size_t ns_bytes = (u ? u->bytes : 0) + (size_t)delta;
	if (ns_bytes > q->lim.ns_bytes) {
		snprintf(
			msg, cap,
			"registry quota --%s (%zu) reached: namespace '%s' would hold %zu bytes of "
			"descriptors",
			REGQUOTA_FLAG_NS_BYTES, q->lim.ns_bytes, ns, ns_bytes);
		return false;
	}
	if (!u && q->ns.used + 1 > q->lim.namespaces) {
		snprintf(msg, cap,
			 "registry quota --%s (%zu) reached: %zu namespaces hold registrations",
			 REGQUOTA_FLAG_NAMESPACES, q->lim.namespaces, q->ns.used);
		return false;
	}
	size_t total = q->bytes + q->retired + (size_t)delta;
	if (total > q->lim.total_bytes) {
		snprintf(msg, cap,
			 "registry quota --%s (%zu) reached: the node would hold %zu bytes of "
			 "descriptors (%zu of them unregistered since the start, freed at the next "
			 "restart)",
			 REGQUOTA_FLAG_TOTAL_BYTES, q->lim.total_bytes, total, q->retired);
		return false;
	}
	return true;
}

/* The entry of key in m, made (zeroed, size bytes) when missing. */
static void *entry(strmap *m, const char *key, size_t len, size_t size)
{
	void *v = strmap_get(m, key, len);
	if (v)
		return v;
	v = mem_calloc(1, size);
	if (v && strmap_put(m, key, len, v, NULL)) {
		mem_free(v);
		return NULL;
	}
	return v;
}

static void ns_release(regquota *q, const char *ns);

/* The entries of the items (of their files or services), made when missing (create) or
 * removed when still empty (!create: undoes a make_entries that failed). */
static int item_entries(regquota *q, const char *ns, const regquota_item *items, size_t n,
			bool create)
{
	for (size_t i = 0; i < n; i++) {
		size_t len;
		strmap *m = items[i].file ? &q->files : &q->services;
		char *k = pair(ns, items[i].file ? items[i].file : items[i].service, &len);
		void *v = NULL;
		if (k && create) {
			v = entry(m, k, len, items[i].file ? sizeof(file_use) : sizeof(size_t));
		} else if (k && (v = strmap_get(m, k, len))) {
			bool empty = items[i].file ? !((file_use *)v)->versions : !*(size_t *)v;
			if (empty)
				mem_free(strmap_del(m, k, len));
		}
		mem_free(k);
		if (create && !v)
			return -ENOMEM;
	}
	return 0;
}

int regquota_add(regquota *q, const char *ns, const regquota_item *items, size_t n)
{
	if (!n)
		return 0;
	/* Every entry first, so that counting cannot fail halfway. */
	if (!entry(&q->ns, ns, strlen(ns), sizeof(ns_use)) || item_entries(q, ns, items, n, true)) {
		item_entries(q, ns, items, n, false);
		ns_release(q, ns);
		return -ENOMEM;
	}
	ns_use *u = strmap_get(&q->ns, ns, strlen(ns));
	for (size_t i = 0; i < n; i++) {
		const regquota_item *it = &items[i];
		size_t c = cost(it->bytes);
		if (it->file) {
			file_use *f = pair_get(&q->files, ns, it->file);
			if (!f->versions++)
				u->files++;
			f->bytes += c;
		} else {
			size_t *was = pair_get(&q->services, ns, it->service);
			if (!*was)
				u->services++;
			u->bytes -= *was;
			q->bytes -= *was;
			*was = c;
		}
		u->bytes += c;
		q->bytes += c;
	}
	return 0;
}

/* Forgets ns once nothing of it is counted. */
static void ns_release(regquota *q, const char *ns)
{
	ns_use *u = strmap_get(&q->ns, ns, strlen(ns));
	if (u && !u->files && !u->services)
		mem_free(strmap_del(&q->ns, ns, strlen(ns)));
}

size_t regquota_drop_file(regquota *q, const char *ns, const char *file)
{
	size_t len;
	char *k = pair(ns, file, &len);
	file_use *f = k ? strmap_del(&q->files, k, len) : NULL;
	mem_free(k);
	if (!f)
		return 0;
	size_t versions = f->versions;
	ns_use *u = strmap_get(&q->ns, ns, strlen(ns));
	if (u && versions) {
		u->files--;
		u->bytes -= f->bytes;
		q->bytes -= f->bytes;
		q->retired += f->bytes;
	}
	mem_free(f);
	ns_release(q, ns);
	return versions;
}

void regquota_drop_service(regquota *q, const char *ns, const char *service)
{
	size_t len;
	char *k = pair(ns, service, &len);
	size_t *was = k ? strmap_del(&q->services, k, len) : NULL;
	mem_free(k);
	if (!was)
		return;
	ns_use *u = strmap_get(&q->ns, ns, strlen(ns));
	if (u && *was) {
		u->services--;
		u->bytes -= *was;
		q->bytes -= *was;
	}
	mem_free(was);
	ns_release(q, ns);
}

void regquota_usage_get(const regquota *q, const char *ns, regquota_usage *out)
{
	const ns_use *u = ns ? strmap_get(&q->ns, ns, strlen(ns)) : NULL;
	*out = (regquota_usage){.namespaces = q->ns.used,
				.total_bytes = q->bytes + q->retired,
				.retired = q->retired};
	if (u) {
		out->files = u->files;
		out->services = u->services;
		out->bytes = u->bytes;
	}
}
