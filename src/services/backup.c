/* The backup RPCs of collector.CollectionRepo and the local Clone (backup.h). */
#include "services/backup.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/mem.h"
#include "collector/collection_repo.pb-c.h"
#include "services/transfer.h"

#define REPO "/collector.CollectionRepo/"
#define LIST_MAX 1000

static Collector__Status status_ok = COLLECTOR__STATUS__INIT;

/* ---- BackupCollection ---- */

static void backup_work(svc_job *sj)
{
	svc_req_job *j = (svc_req_job *)sj;
	const Collector__BackupCollectionRequest *req = j->req;
	const char *name = req->collection ? req->collection->name : "";
	size_t n = req->n_metadata;
	const char **keys = mem_calloc(n ? n : 1, sizeof(*keys));
	const char **values = mem_calloc(n ? n : 1, sizeof(*values));
	if (!keys || !values) {
		svc_job_fail(sj, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		keys[i] = req->metadata[i]->key;
		values[i] = req->metadata[i]->value;
	}
	backup_args a = {.ns = j->ns,
			 .name = name,
			 .dest_path = req->dest_path,
			 .include_files = req->include_files,
			 .nmeta = n,
			 .meta_keys = keys,
			 .meta_values = values};
	Collector__BackupMetadata *b = NULL;
	int64_t bytes = 0;
	if (backup_make(sj, j->env, &a, &b, &bytes)) {
		Collector__BackupCollectionResponse resp =
			COLLECTOR__BACKUP_COLLECTION_RESPONSE__INIT;
		resp.status = &status_ok;
		resp.backup = b;
		resp.bytes_transferred = bytes;
		svc_job_answer(sj, &resp.base);
		collector__backup_metadata__free_unpacked(b, NULL);
	}
out:
	mem_free(keys);
	mem_free(values);
}

static void backup_collection(call *c, const ProtobufCMessage *msg)
{
	const Collector__BackupCollectionRequest *req = (const void *)msg;
	svc_start(c, req, req->collection ? req->collection->namespace_ : NULL, backup_work);
}

/* ---- ListBackups ---- */

static void list_work(svc_job *sj)
{
	svc_req_job *j = (svc_req_job *)sj;
	const Collector__ListBackupsRequest *req = j->req;
	if (req->limit < 0 || req->limit > LIST_MAX) {
		svc_job_fail(sj, GRPC_INVALID_ARGUMENT, "limit must be 0 (all, up to %d) to %d",
			     LIST_MAX, LIST_MAX);
		return;
	}
	const char *name = req->collection && req->collection->name && *req->collection->name
				   ? req->collection->name
				   : NULL;
	if (!svc_check_name(sj, "namespace", j->ns) ||
	    (name && !svc_check_name(sj, "collection", name)))
		return;
	Collector__BackupMetadata **rows;
	size_t n;
	if (!backup_rows(sj, j->env, &rows, &n))
		return;
	size_t limit = req->limit ? (size_t)req->limit : LIST_MAX, kept = 0;
	int64_t total = 0;
	for (size_t i = 0; i < n; i++) {
		Collector__BackupMetadata *b = rows[i];
		bool match = b->collection && !strcmp(b->collection->namespace_, j->ns) &&
			     (!name || !strcmp(b->collection->name, name)) &&
			     b->timestamp >= req->since_timestamp;
		if (!match)
			continue;
		total++;
		if (kept < limit) {
			/* Newest first already: the matches move to the front in order. */
			rows[i] = rows[kept];
			rows[kept++] = b;
		}
	}
	Collector__ListBackupsResponse resp = COLLECTOR__LIST_BACKUPS_RESPONSE__INIT;
	resp.status = &status_ok;
	resp.backups = rows;
	resp.n_backups = kept;
	resp.total_count = total;
	svc_job_answer(sj, &resp.base);
	backup_rows_free(rows, n);
}

static void list_backups(call *c, const ProtobufCMessage *msg)
{
	const Collector__ListBackupsRequest *req = (const void *)msg;
	const char *ns =
		req->collection && req->collection->namespace_ && *req->collection->namespace_
			? req->collection->namespace_
			: req->namespace_;
	svc_start(c, req, ns, list_work);
}

/* ---- RestoreBackup ---- */

static void restore_work(svc_job *sj)
{
	svc_req_job *j = (svc_req_job *)sj;
	const Collector__RestoreBackupRequest *req = j->req;
	Collector__BackupMetadata *b;
	if (!backup_load(sj, j->env, req->backup_id, &b))
		return;
	const char *ns = req->dest_namespace && *req->dest_namespace ? req->dest_namespace
								     : b->collection->namespace_;
	const char *name = req->dest_name && *req->dest_name ? req->dest_name : b->collection->name;
	int64_t records = 0, files = 0;
	if (backup_restore(sj, j->env, b, ns, name, req->overwrite, &records, &files)) {
		char id[2 * STORE_NAME_MAX + 2];
		snprintf(id, sizeof(id), "%s/%s", ns, name);
		Collector__RestoreBackupResponse resp = COLLECTOR__RESTORE_BACKUP_RESPONSE__INIT;
		resp.status = &status_ok;
		resp.collection_id = id;
		resp.records_restored = records;
		resp.files_restored = files;
		svc_job_answer(sj, &resp.base);
	}
	collector__backup_metadata__free_unpacked(b, NULL);
}

static void restore_backup(call *c, const ProtobufCMessage *msg)
{
	svc_start(c, msg, NULL, restore_work);
}

/* ---- DeleteBackup ---- */

static void delete_work(svc_job *sj)
{
	svc_req_job *j = (svc_req_job *)sj;
	const Collector__DeleteBackupRequest *req = j->req;
	Collector__BackupMetadata *b;
	if (!backup_load(sj, j->env, req->backup_id, &b))
		return;
	int64_t freed = 0;
	if (backup_delete(sj, j->env, b, &freed)) {
		Collector__DeleteBackupResponse resp = COLLECTOR__DELETE_BACKUP_RESPONSE__INIT;
		resp.status = &status_ok;
		resp.bytes_freed = freed;
		svc_job_answer(sj, &resp.base);
	}
	collector__backup_metadata__free_unpacked(b, NULL);
}

static void delete_backup(call *c, const ProtobufCMessage *msg)
{
	svc_start(c, msg, NULL, delete_work);
}

/* ---- VerifyBackup ---- */

static void verify_work(svc_job *sj)
{
	svc_req_job *j = (svc_req_job *)sj;
	const Collector__VerifyBackupRequest *req = j->req;
	Collector__BackupMetadata *b;
	if (!backup_load(sj, j->env, req->backup_id, &b))
		return;
	bool valid = false;
	char why[300];
	if (backup_verify(sj, j->env, b, &valid, why, sizeof(why))) {
		Collector__VerifyBackupResponse resp = COLLECTOR__VERIFY_BACKUP_RESPONSE__INIT;
		resp.status = &status_ok;
		resp.is_valid = valid;
		resp.error_message = valid ? "" : why;
		resp.backup = b;
		svc_job_answer(sj, &resp.base);
	}
	collector__backup_metadata__free_unpacked(b, NULL);
}

static void verify_backup(call *c, const ProtobufCMessage *msg)
{
	svc_start(c, msg, NULL, verify_work);
}

/* ---- Clone ---- */

static void clone_work(svc_job *sj)
{
	svc_req_job *j = (svc_req_job *)sj;
	const Collector__CloneRequest *req = j->req;
	const char *src_name = req->source_collection ? req->source_collection->name : "";
	const char *ns = req->dest_namespace && *req->dest_namespace ? req->dest_namespace : j->ns;
	const char *name = req->dest_name ? req->dest_name : "";
	if (!*name) {
		svc_job_fail(sj, GRPC_INVALID_ARGUMENT, "dest_name is required for a local clone");
		return;
	}
	int64_t records = 0, files = 0, bytes = 0;
	if (!backup_clone(sj, j->env, j->ns, src_name, ns, name, req->include_files, &records,
			  &files, &bytes))
		return;
	char id[2 * STORE_NAME_MAX + 2];
	snprintf(id, sizeof(id), "%s/%s", ns, name);
	Collector__CloneResponse resp = COLLECTOR__CLONE_RESPONSE__INIT;
	resp.status = &status_ok;
	resp.collection_id = id;
	resp.records_cloned = records;
	resp.files_cloned = files;
	resp.bytes_transferred = bytes;
	svc_job_answer(sj, &resp.base);
}

static void clone_collection(call *c, const ProtobufCMessage *msg)
{
	const Collector__CloneRequest *req = (const void *)msg;
	if (req->dest_endpoint && *req->dest_endpoint) {
		transfer_clone_remote(c, req);
		return;
	}
	svc_start(c, req, req->source_collection ? req->source_collection->namespace_ : NULL,
		  clone_work);
}

static void clone_cancel(call *c)
{
	if (!transfer_clone_cancel(c))
		svc_job_on_cancel(c);
}

#define UNARY(name, fn, lower)                                                                     \
	{                                                                                          \
		REPO name, METHOD_UNARY, &collector__##lower##_request__descriptor,                \
			&collector__##lower##_response__descriptor,                                \
			{.on_request = fn, .on_cancel = svc_job_on_cancel}, env                    \
	}

int backup_register(method_table *t, svc_env *env)
{
	const method methods[] = {
		UNARY("BackupCollection", backup_collection, backup_collection),
		UNARY("ListBackups", list_backups, list_backups),
		UNARY("RestoreBackup", restore_backup, restore_backup),
		UNARY("DeleteBackup", delete_backup, delete_backup),
		UNARY("VerifyBackup", verify_backup, verify_backup),
		{REPO "Clone",
		 METHOD_UNARY,
		 &collector__clone_request__descriptor,
		 &collector__clone_response__descriptor,
		 {.on_request = clone_collection, .on_cancel = clone_cancel},
		 env},
	};
	return method_table_add_all(t, methods, sizeof(methods) / sizeof(methods[0]));
}
