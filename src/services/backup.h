/* Backups and local clones of collections (README, Backups): the RPCs of CollectionRepo
 * (backup.c), the work they run on the pool (backup_ops.c), and scheduled backups
 * (backup_sched.c).
 *
 * A backup is a directory <root>/<ns>/<coll>/<backup_id>/ holding records.db (a snapshot,
 * store/snapshot.h), files/ (the attachments as of the snapshot, when asked for) and
 * manifest.json (store/manifest.h); <root> is DATA/backups, or a dest_path below
 * --backup-dir. Its BackupMetadata is a record of system/backups (id: the backup id),
 * committed after the directory is complete and fsynced, before the backup is answered:
 * the row is the truth, a directory without one is a leftover. */
#ifndef SERVICES_BACKUP_H
#define SERVICES_BACKUP_H
#include <stdbool.h>
#include <stdint.h>

#include "collector/collection_repo.pb-c.h"
#include "h2/method.h"
#include "io/reactor.h"
#include "services/svc.h"
#include "services/svc_job.h"
#include "store/manifest.h"
#include "store/store.h"

#define BACKUP_SYSCOLL "backups"

/* BackupCollection, ListBackups, RestoreBackup, DeleteBackup, VerifyBackup and Clone (a
 * local one; with dest_endpoint UNIMPLEMENTED). env must outlive the table. */
int backup_register(method_table *t, svc_env *env);

/* ---- the work (pool threads); failures land in j (svc_job_fail), which may be a bare
 * job (memset to 0) outside a call ---- */

typedef struct backup_args {
	const char *ns, *name;
	const char *dest_path; /* NULL or "": DATA/backups */
	bool include_files;
	size_t nmeta; /* the request's metadata, kept in the row */
	const char *const *meta_keys;
	const char *const *meta_values;
} backup_args;

/* Makes a backup; *out (free with collector__backup_metadata__free_unpacked) is its row.
 * *bytes: what was written. Applies the collection's retention afterwards. */
bool backup_make(svc_job *j, const svc_env *env, const backup_args *a,
		 Collector__BackupMetadata **out, int64_t *bytes);
/* The row of backup id; NOT_FOUND when there is none. */
bool backup_load(svc_job *j, const svc_env *env, const char *id, Collector__BackupMetadata **out);
/* Every row, newest first (timestamp, then id); *n of them. Free with backup_rows_free. */
bool backup_rows(svc_job *j, const svc_env *env, Collector__BackupMetadata ***rows, size_t *n);
void backup_rows_free(Collector__BackupMetadata **rows, size_t n);
/* Removes the backup: its row first, then its directory. *freed: the bytes its files held. */
bool backup_delete(svc_job *j, const svc_env *env, const Collector__BackupMetadata *b,
		   int64_t *freed);
/* Re-hashes the backup against its manifest and checks its database. false with j failed
 * when the check could not run; else *valid, and why not in why (cap bytes). */
bool backup_verify(svc_job *j, const svc_env *env, const Collector__BackupMetadata *b, bool *valid,
		   char *why, size_t cap);
/* Restores b as ns/name. */
bool backup_restore(svc_job *j, const svc_env *env, const Collector__BackupMetadata *b,
		    const char *ns, const char *name, bool overwrite, int64_t *records,
		    int64_t *files);
/* A local copy of src_ns/src_name as ns/name, from a snapshot. */
bool backup_clone(svc_job *j, const svc_env *env, const char *src_ns, const char *src_name,
		  const char *ns, const char *name, bool include_files, int64_t *records,
		  int64_t *files, int64_t *bytes);

/* ---- for transfers between nodes (transfer.c) ---- */

/* ns/name is a valid destination that does not exist (or overwrite). */
bool backup_check_dest(svc_job *j, const svc_env *env, const char *ns, const char *name,
		       bool overwrite);
/* A snapshot of ns/name in a new staged directory of ns (store_stage_begin: tmp and path,
 * cap bytes): records.db and, with include_files, files/ (hard links); *m (zeroed by the
 * caller, freed by it) describes it: sizes, SHA-256s, definition, type descriptors. The
 * caller removes the directory with store_stage_abort(env->store, ns, tmp) when done; on
 * failure it is gone already (tmp[0] == 0). */
bool backup_snapshot_stage(svc_job *j, const svc_env *env, const char *ns, const char *name,
			   bool include_files, manifest *m, char tmp[STORE_TMP_MAX], char *path,
			   size_t cap);
/* Makes the staged directory tmp (at path, of namespace ns), whose records.db and files/
 * were checked against m piece by piece, the collection ns/name: checks the database
 * (integrity, record count), registers m's type in ns when needed, installs it (atomically:
 * ALREADY_EXISTS when the name was taken meanwhile). The stage is gone afterwards, installed
 * or removed. */
bool backup_adopt_stage(svc_job *j, const svc_env *env, const manifest *m, const char *ns,
			const char *name, const char *tmp, const char *path);

/* At start: removes what interrupted backups (.tmp-<id>) and deletes (.del-<id>) left in
 * DATA/backups (a dest_path tree keeps them until a backup there is deleted by hand). */
void backup_sweep(const svc_env *env);

/* ---- scheduled backups: a timer on one reactor posts a pass to the pool every second;
 * the pass backs up every collection whose policy is enabled with an interval_seconds
 * that has passed since its newest backup (read from the rows, so restarts keep the
 * pace). ---- */
typedef struct backup_sched backup_sched;
backup_sched *backup_sched_new(const svc_env *env);
/* On each reactor's start; the first one claims the timer. */
void backup_sched_start(backup_sched *s, reactor *r);
void backup_sched_drain(backup_sched *s, reactor *r);
void backup_sched_free(backup_sched *s);

#endif
