#include "h2/admit.h"

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"

/* Peers are keyed by IP address only: ports change with every connection. */
typedef struct peer_key {
	uint8_t ip[16];
} peer_key;

typedef struct peer_slot {
	peer_key key;
	size_t count; /* 0: empty */
} peer_slot;

struct admit {
	pthread_mutex_t mu;
	size_t max_total, max_per_peer;
	size_t total;
	peer_slot *slots; /* open addressing, power-of-two size, backward-shift deletion */
	size_t cap, used;
};

static peer_key key_of(const struct sockaddr *sa)
{
	peer_key k = {0};
	if (sa->sa_family == AF_INET) {
		/* As an IPv4-mapped IPv6 address, so both families share one table. */
		k.ip[10] = k.ip[11] = 0xff;
		memcpy(k.ip + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		memcpy(k.ip, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
	}
	return k;
}

static size_t hash_of(const peer_key *k)
{
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < sizeof(k->ip); i++)
		h = (h ^ k->ip[i]) * 1099511628211ULL;
	return (size_t)(h ^ (h >> 29));
}

admit *admit_new(size_t max_total, size_t max_per_peer)
{
	admit *a = mem_calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	pthread_mutex_init(&a->mu, NULL);
	a->max_total = max_total;
	a->max_per_peer = max_per_peer;
	return a;
}

void admit_free(admit *a)
{
	if (!a)
		return;
	pthread_mutex_destroy(&a->mu);
	mem_free(a->slots);
	mem_free(a);
}

static peer_slot *find(admit *a, const peer_key *k, bool *found)
{
	size_t mask = a->cap - 1;
	for (size_t i = hash_of(k) & mask;; i = (i + 1) & mask) {
		peer_slot *s = &a->slots[i];
		if (!s->count) {
			*found = false;
			return s;
		}
		if (!memcmp(&s->key, k, sizeof(*k))) {
			*found = true;
			return s;
		}
	}
}

static int grow(admit *a)
{
	size_t ncap = a->cap ? a->cap * 2 : 64;
	peer_slot *old = a->slots;
	size_t ocap = a->cap;
	a->slots = mem_calloc(ncap, sizeof(*a->slots));
	if (!a->slots) {
		a->slots = old;
		return -ENOMEM;
	}
	a->cap = ncap;
	for (size_t i = 0; i < ocap; i++) {
		if (!old[i].count)
			continue;
		bool found;
		*find(a, &old[i].key, &found) = old[i];
	}
	mem_free(old);
	return 0;
}

int admit_take(admit *a, const struct sockaddr *addr)
{
	int rc = ADMIT_OK;
	pthread_mutex_lock(&a->mu);
	if (a->max_total && a->total >= a->max_total) {
		rc = ADMIT_TOTAL;
	} else if (a->max_per_peer) {
		if ((a->used + 1) * 4 > a->cap * 3 && grow(a)) {
			rc = -ENOMEM;
		} else {
			peer_key k = key_of(addr);
			bool found;
			peer_slot *s = find(a, &k, &found);
			if (found && s->count >= a->max_per_peer) {
				rc = ADMIT_PEER;
			} else {
				if (!found) {
					s->key = k;
					a->used++;
				}
				s->count++;
			}
		}
	}
	if (rc == ADMIT_OK)
		a->total++;
	pthread_mutex_unlock(&a->mu);
	return rc;
}

void admit_release(admit *a, const struct sockaddr *addr)
{
	pthread_mutex_lock(&a->mu);
	a->total--;
	if (a->max_per_peer && a->cap) {
		peer_key k = key_of(addr);
		bool found;
		peer_slot *s = find(a, &k, &found);
		if (found && --s->count == 0) {
			/* Backward-shift deletion keeps every probe chain unbroken. */
			size_t mask = a->cap - 1;
			size_t i = (size_t)(s - a->slots);
			for (size_t j = (i + 1) & mask; a->slots[j].count; j = (j + 1) & mask) {
				size_t home = hash_of(&a->slots[j].key) & mask;
				if (((j - home) & mask) >= ((j - i) & mask)) {
					a->slots[i] = a->slots[j];
					i = j;
				}
			}
			a->slots[i].count = 0;
			a->used--;
		}
	}
	pthread_mutex_unlock(&a->mu);
}

size_t admit_total(admit *a)
{
	pthread_mutex_lock(&a->mu);
	size_t n = a->total;
	pthread_mutex_unlock(&a->mu);
	return n;
}
