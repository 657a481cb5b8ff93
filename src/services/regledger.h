/* The registry's ledger of field numbers: what each field number of each message of a
 * namespace has meant in any version registered so far. A new version may add fields and
 * drop them, but a number comes back only with its first meaning (name, type, label):
 * records written with the old meaning would read wrong. Rebuilt at every start from the
 * stored versions; an unregistered file takes the history of its messages with it.
 *
 * Not thread safe: the registry calls it under its lock. */
#ifndef SERVICES_REGLEDGER_H
#define SERVICES_REGLEDGER_H
#include <stdbool.h>
#include <stddef.h>

#include "services/strmap.h"
#include "store/typepool.h"

typedef struct regledger {
	strmap map; /* "ns\0message\0" + number (4 bytes) -> its first meaning */
} regledger;

void regledger_free(regledger *l);

/* Remembers what every field of m (of ns) means; a number keeps its first meaning. */
void regledger_record(regledger *l, const char *ns, const tp_message *m);

/* For tp_add_files: every field number of the messages being added means what it
 * meant before. refused tells a refusal of the check from a failure of the build. */
typedef struct regledger_check {
	const regledger *l;
	const char *ns;
	bool refused;
} regledger_check;
int regledger_check_fn(void *ctx, const tp_message *const *msgs, size_t n, char *err, size_t cap);

/* Forgets the numbers of these messages of ns (full names). false when memory ran out:
 * some are then still remembered. */
bool regledger_forget(regledger *l, const char *ns, char *const *messages, size_t n);

#endif
