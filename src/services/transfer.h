/* Collections moved between nodes (README, Backups: Clone and Fetch between nodes):
 * PullCollection and PushCollection of collector.CollectionRepo, Fetch (this node pulls from
 * source_endpoint) and Clone with dest_endpoint (this node pushes to it).
 *
 * Both directions carry the same stream: metadata with the transfer's manifest (the format of
 * a backup's manifest.json: definition, type descriptors, sizes, SHA-256 of every piece),
 * then the bytes of records.db and of each file in the manifest's order, cut into chunks.
 * The sender streams a snapshot (store/snapshot.h) staged beside the collection; the
 * receiver writes into a staged directory, checks every piece as it ends
 * (services/transfer_rx.h) and installs the collection atomically, or removes the stage. */
#ifndef SERVICES_TRANSFER_H
#define SERVICES_TRANSFER_H
#include <stdbool.h>

#include "collector/collection_repo.pb-c.h"
#include "h2/call.h"
#include "h2/method.h"
#include "services/svc.h"

/* PullCollection, PushCollection, Fetch. env must outlive the table. */
int transfer_register(method_table *t, svc_env *env);
/* Clone with dest_endpoint (the Clone method's on_request passes it on). */
void transfer_clone_remote(call *c, const Collector__CloneRequest *req);
/* Clone's on_cancel: true when c was a remote clone (now stopping); false for a local one,
 * whose job is svc_job's to cancel. */
bool transfer_clone_cancel(call *c);

#endif
