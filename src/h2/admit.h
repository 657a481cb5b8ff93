/* Connection admission: a cap on connections in total and per peer address, shared by all
 * reactors (a mutex, taken once per accept and once per close, never per request). */
#ifndef H2_ADMIT_H
#define H2_ADMIT_H
#include <stddef.h>
#include <sys/socket.h>

typedef struct admit admit;

/* 0 means unlimited for either cap. */
admit *admit_new(size_t max_total, size_t max_per_peer);
void admit_free(admit *a);

enum { ADMIT_OK = 0, ADMIT_TOTAL = 1, ADMIT_PEER = 2 };
/* Counts a new connection from addr unless a cap is reached; returns ADMIT_* (or -ENOMEM).
 * Every ADMIT_OK must be paired with admit_release(addr). */
int admit_take(admit *a, const struct sockaddr *addr);
void admit_release(admit *a, const struct sockaddr *addr);
size_t admit_total(admit *a);

#endif
