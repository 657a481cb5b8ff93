/* The work of the backup RPCs and of scheduled backups (backup.h), on pool threads. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/uuid.h"
#include "google/protobuf/descriptor.pb-c.h"
#include "services/backup.h"
#include "services/registry.h"
#include "services/syscoll.h"
#include "store/dirs.h"
#include "store/files.h"
#include "store/manifest.h"
#include "store/snapshot.h"

#define BACKUP_TYPE "collector.BackupMetadata"
#define TMP_PREFIX ".tmp-"
#define DEL_PREFIX ".del-"

static int64_t now_us(void) { return clock_wall_ns() / 1000; }

static int odir(int at, const char *name)
{
	return openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

/* Opens (making it) the directory name inside at. -errno. */
static int mkodir(int at, const char *name)
{
	if (mkdirat(at, name, 0755) == 0)
		fsync(at);
	int fd = odir(at, name);
	return fd < 0 ? -errno : fd;
}

/* ---- where backups go ---- */

/* The root backups go under: DATA/backups, or dest_path below --backup-dir. dest_path is
 * checked whole before anything is made: no "..", nothing outside the allowed directory,
 * no link on the way. */
static bool dest_root(svc_job *j, const svc_env *env, const char *dest, int *fd, char *path,
		      size_t cap)
{
	if (!dest || !*dest) {
		snprintf(path, cap, "%s/backups", store_data_dir(env->store));
		int data = open(store_data_dir(env->store), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		*fd = data < 0 ? -errno : mkodir(data, "backups");
		if (data >= 0)
			close(data);
		if (*fd < 0)
			svc_job_fail(j, GRPC_INTERNAL, "backups directory: %s", strerror(-*fd));
		return *fd >= 0;
	}
	if (!env->backup_dir) {
		svc_job_fail(j, GRPC_PERMISSION_DENIED,
			     "dest_path needs a --backup-dir on this node (none is set)");
		return false;
	}
	const char *root = env->backup_dir;
	size_t rl = strlen(root);
	const char *rel = dest;
	if (dest[0] == '/') {
		if (strncmp(dest, root, rl) ||
		    (dest[rl] && dest[rl] != '/' && root[rl - 1] != '/')) {
			svc_job_fail(j, GRPC_PERMISSION_DENIED,
				     "dest_path must be below the backup directory %s", root);
			return false;
		}
		rel = dest + rl;
	}
	char buf[PATH_MAX];
	if (strlen(rel) >= sizeof(buf) - 1) {
		svc_job_fail(j, GRPC_INVALID_ARGUMENT, "dest_path is too long");
		return false;
	}
	/* Segments: empty and "." ones are skipped, ".." refused. */
	char *segs[128];
	size_t n = 0;
	snprintf(buf, sizeof(buf), "%s", rel);
	for (char *save = NULL, *s = strtok_r(buf, "/", &save); s; s = strtok_r(NULL, "/", &save)) {
		if (!strcmp(s, "."))
			continue;
		if (!strcmp(s, "..") || n == 128) {
			svc_job_fail(j, GRPC_INVALID_ARGUMENT,
				     "dest_path may not hold '..' (or more than 128 segments)");
			return false;
		}
		segs[n++] = s;
	}
	int cur = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cur < 0) {
		svc_job_fail(j, GRPC_FAILED_PRECONDITION, "backup directory %s: %s", root,
			     strerror(errno));
		return false;
	}
	/* The check first, so that a refusal makes nothing: the segments that exist must be
	 * directories reached without a link; the first missing one ends the check. */
	size_t exist = 0;
	for (; exist < n; exist++) {
		struct stat sb;
		if (fstatat(cur, segs[exist], &sb, AT_SYMLINK_NOFOLLOW)) {
			if (errno == ENOENT)
				break;
			svc_job_fail(j, GRPC_INVALID_ARGUMENT, "dest_path: %s: %s", segs[exist],
				     strerror(errno));
			close(cur);
			return false;
		}
		if (!S_ISDIR(sb.st_mode)) {
			svc_job_fail(j,
				     S_ISLNK(sb.st_mode) ? GRPC_PERMISSION_DENIED
							 : GRPC_INVALID_ARGUMENT,
				     "dest_path: %s is %s", segs[exist],
				     S_ISLNK(sb.st_mode) ? "a link (links are not followed)"
							 : "not a directory");
			close(cur);
			return false;
		}
		int next = odir(cur, segs[exist]);
		close(cur);
		if (next < 0) {
			svc_job_fail(j, GRPC_PERMISSION_DENIED, "dest_path: %s: %s", segs[exist],
				     strerror(errno));
			return false;
		}
		cur = next;
	}
	for (; exist < n; exist++) {
		int next = mkodir(cur, segs[exist]);
		close(cur);
		if (next < 0) {
			svc_job_fail(j, GRPC_FAILED_PRECONDITION, "dest_path: %s: %s", segs[exist],
				     strerror(-next));
			return false;
		}
		cur = next;
	}
	size_t len = (size_t)snprintf(path, cap, "%s", root);
	for (size_t i = 0; i < n && len < cap; i++)
		len += (size_t)snprintf(path + len, cap - len, "/%s", segs[i]);
	*fd = cur;
	return true;
}

/* ---- the rows ---- */

static bool open_rows(svc_job *j, const svc_env *env, store_coll **c)
{
	int rc = syscoll_open(env, BACKUP_SYSCOLL, BACKUP_TYPE, c);
	if (rc)
		svc_fail_store(j, rc, "opening system/backups");
	return rc == 0;
}

static bool row_write(svc_job *j, const svc_env *env, const Collector__BackupMetadata *b, bool del)
{
	store_coll *c;
	if (!open_rows(j, env, &c))
		return false;
	syscoll_row row = {.json = BUF_INIT};
	int rc = del ? 0 : syscoll_row_make(env->types, &b->base, &row);
	store_op op = {.kind = del ? STORE_OP_DELETE : STORE_OP_INSERT, .id = b->backup_id};
	if (!del)
		op.row = (store_row){row.data, row.len, row.json.text, NULL};
	if (!rc)
		rc = syscoll_write_wait(c, &op, 1);
	syscoll_row_free(&row);
	store_coll_release(c);
	if (rc)
		svc_fail_store(j, rc, "writing system/backups");
	return rc == 0;
}

bool backup_load(svc_job *j, const svc_env *env, const char *id, Collector__BackupMetadata **out)
{
	if (!id || !*id || strlen(id) > SVC_ID_MAX) {
		svc_job_fail(j, GRPC_INVALID_ARGUMENT, "backup_id is required");
		return false;
	}
	store_coll *c;
	if (!open_rows(j, env, &c))
		return false;
	store_reader *r;
	int rc = store_coll_read_begin(c, &r);
	store_record rec;
	if (!rc) {
		rc = store_reader_get(r, id, &rec);
		*out = rc ? NULL
			  : svc_decode(&collector__backup_metadata__descriptor, rec.data,
				       rec.data_len);
		if (!rc && !*out)
			rc = -EIO;
		store_coll_read_end(r);
	}
	store_coll_release(c);
	if (rc == -ENOENT)
		svc_job_fail(j, GRPC_NOT_FOUND, "no backup %.100s", id);
	else if (rc)
		svc_fail_store(j, rc, "reading system/backups");
	return rc == 0;
}

typedef struct rows_acc {
	Collector__BackupMetadata **v;
	size_t n, cap;
} rows_acc;

static int row_add(void *ctx, const store_record *rec)
{
	rows_acc *a = ctx;
	if (a->n == a->cap) {
		size_t cap = a->cap ? 2 * a->cap : 32;
		void *v = mem_realloc(a->v, cap * sizeof(*a->v));
		if (!v)
			return -ENOMEM;
		a->v = v;
		a->cap = cap;
	}
	Collector__BackupMetadata *b =
		svc_decode(&collector__backup_metadata__descriptor, rec->data, rec->data_len);
	if (b)
		a->v[a->n++] = b;
	return 0;
}

static int newest_first(const void *x, const void *y)
{
	const Collector__BackupMetadata *a = *(void *const *)x, *b = *(void *const *)y;
	if (a->timestamp != b->timestamp)
		return a->timestamp > b->timestamp ? -1 : 1;
	return -strcmp(a->backup_id, b->backup_id); /* UUIDv7: later ids sort higher */
}

bool backup_rows(svc_job *j, const svc_env *env, Collector__BackupMetadata ***rows, size_t *n)
{
	store_coll *c;
	if (!open_rows(j, env, &c))
		return false;
	rows_acc a = {0};
	int rc = syscoll_each(c, row_add, &a);
	store_coll_release(c);
	if (rc) {
		backup_rows_free(a.v, a.n);
		svc_fail_store(j, rc, "reading system/backups");
		return false;
	}
	if (a.n)
		qsort(a.v, a.n, sizeof(*a.v), newest_first);
	*rows = a.v;
	*n = a.n;
	return true;
}

void backup_rows_free(Collector__BackupMetadata **rows, size_t n)
{
	for (size_t i = 0; i < n; i++)
		collector__backup_metadata__free_unpacked(rows[i], NULL);
	mem_free(rows);
}

/* ---- types a backup carries ---- */

typedef struct type_files {
	manifest *m;
	const char *names[MANIFEST_MAX_TYPE_FILES];
	size_t n;
} type_files;

/* Adds file `name` of ns and, first, the files of ns it imports (the global ones every node
 * has). */
static int add_type_file(const svc_env *env, type_files *t, const char *ns, const char *name,
			 int depth)
{
	for (size_t i = 0; i < t->n; i++)
		if (!strcmp(t->names[i], name))
			return 0;
	const uint8_t *bytes;
	size_t len;
	if (!tp_file_bytes(env->types, ns, name, &bytes, &len))
		return 0;
	if (depth > 64 || t->n == MANIFEST_MAX_TYPE_FILES)
		return -E2BIG;
	Google__Protobuf__FileDescriptorProto *f =
		svc_decode(&google__protobuf__file_descriptor_proto__descriptor, bytes, len);
	if (!f)
		return -EIO;
	int rc = 0;
	for (size_t i = 0; !rc && i < f->n_dependency; i++)
		rc = add_type_file(env, t, ns, f->dependency[i], depth + 1);
	google__protobuf__file_descriptor_proto__free_unpacked(f, NULL);
	if (rc)
		return rc;
	manifest *m = t->m;
	void *v = mem_realloc(m->type_files, (m->ntype_files + 1) * sizeof(*m->type_files));
	uint8_t *copy = mem_alloc(len ? len : 1);
	if (v)
		m->type_files = v;
	if (!v || !copy) {
		mem_free(copy);
		return -ENOMEM;
	}
	memcpy(copy, bytes, len);
	m->type_files[m->ntype_files++] = (manifest_blob){copy, len};
	t->names[t->n++] = tp_file_name(env->types, ns, name);
	return 0;
}

/* The registered files a row's message type needs, into m (none for a global type). */
static bool collect_types(svc_job *j, const svc_env *env, const store_collection *row, manifest *m)
{
	const char *tns = row->type_ns ? row->type_ns : "";
	snprintf(m->type_ns, sizeof(m->type_ns), "%s", tns);
	if (!*tns || !row->type_name || !*row->type_name)
		return true;
	const char *file = tp_symbol_file(env->types, tns, row->type_name);
	type_files *t = mem_calloc(1, sizeof(*t));
	int rc = t ? 0 : -ENOMEM;
	if (t) {
		t->m = m;
		rc = file ? add_type_file(env, t, tns, file, 0) : 0;
	}
	mem_free(t);
	if (rc)
		svc_job_fail(j, GRPC_INTERNAL, "collecting the type's descriptors: %s",
			     strerror(-rc));
	return rc == 0;
}

/* Makes type_name visible in ns from the files carried (RegisterProto of the last with the
 * others as its dependencies), when ns does not see it yet. */
static bool ensure_type(svc_job *j, const svc_env *env, const char *ns, const char *type_name,
			const manifest_blob *files, size_t n)
{
	if (!type_name || !*type_name)
		return true;
	Collector__MessageTypeRef ref = COLLECTOR__MESSAGE_TYPE_REF__INIT;
	ref.message_name = (char *)type_name;
	if (svc_find_type(env, ns, &ref))
		return true;
	if (!n) {
		svc_job_fail(j, GRPC_FAILED_PRECONDITION,
			     "type %s is unknown in namespace %s and the backup carries no "
			     "descriptors for it",
			     type_name, ns);
		return false;
	}
	Google__Protobuf__FileDescriptorProto **fs = mem_calloc(n, sizeof(*fs));
	bool ok = fs != NULL;
	for (size_t i = 0; ok && i < n; i++) {
		fs[i] = svc_decode(&google__protobuf__file_descriptor_proto__descriptor,
				   files[i].data, files[i].len);
		ok = fs[i] != NULL;
	}
	if (!ok) {
		svc_job_fail(j, GRPC_DATA_LOSS, "the backup's type descriptors do not decode");
	} else {
		Collector__RegisterProtoRequest req = COLLECTOR__REGISTER_PROTO_REQUEST__INIT;
		req.namespace_ = (char *)ns;
		req.file_descriptor = fs[n - 1];
		req.dependencies = fs;
		req.n_dependencies = n - 1;
		/* The registry answers into a job of its own: its answer is not ours. */
		svc_job reg;
		memset(&reg, 0, sizeof(reg));
		registry_register_proto(env->registry, &reg, ns, &req);
		mem_free(reg.out);
		if (reg.code != GRPC_OK) {
			svc_job_fail(j, reg.code, "registering the backup's types in %s: %s", ns,
				     reg.msg);
			ok = false;
		} else if (!svc_find_type(env, ns, &ref)) {
			svc_job_fail(j, GRPC_FAILED_PRECONDITION,
				     "the backup's descriptors do not define %s", type_name);
			ok = false;
		}
	}
	for (size_t i = 0; fs && i < n; i++)
		if (fs[i])
			google__protobuf__file_descriptor_proto__free_unpacked(fs[i], NULL);
	mem_free(fs);
	return ok;
}

/* ---- making a backup ---- */

static int manifest_file_cb(void *ctx, const char *path, uint64_t size,
			    const uint8_t sha256[SNAPSHOT_SHA256_LEN])
{
	return manifest_add_file(ctx, path, (int64_t)size, sha256) ? -ENOMEM : 0;
}

static int write_file_sync(int dirfd, const char *name, const void *data, size_t len)
{
	int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	const char *p = data;
	int rc = 0;
	while (len && !rc) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno != EINTR)
			rc = -errno;
		if (n > 0) {
			p += n;
			len -= (size_t)n;
		}
	}
	if (!rc && fsync(fd))
		rc = -errno;
	close(fd);
	return rc;
}

static void apply_policy(const svc_env *env, const char *ns, const char *name, const char *keep_id);

typedef struct making {
	manifest m;
	buf text;
	int root, nsd, colld, tmpd;
	char tmp[64];
	char root_path[PATH_MAX];
	store_coll *c;
	store_collection *row;
} making;

static void making_free(making *k, bool failed)
{
	if (failed && k->colld >= 0 && k->tmp[0])
		dirs_tree_remove(k->colld, k->tmp, NULL);
	int fds[] = {k->tmpd, k->colld, k->nsd, k->root};
	for (size_t i = 0; i < 4; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	if (k->c)
		store_coll_release(k->c);
	mem_free(k->row);
	manifest_free(&k->m);
	buf_free(&k->text);
}

bool backup_make(svc_job *j, const svc_env *env, const backup_args *a,
		 Collector__BackupMetadata **out, int64_t *bytes)
{
	making k = {.text = BUF_INIT, .root = -1, .nsd = -1, .colld = -1, .tmpd = -1};
	bool ok = false;
	if (!svc_check_user_ns(j, a->ns) || !svc_check_name(j, "collection", a->name))
		return false;
	int rc = store_coll_acquire(env->store, a->ns, a->name, &k.c);
	if (rc == -ENOENT) {
		svc_job_fail(j, GRPC_NOT_FOUND, "no collection %s/%s", a->ns, a->name);
		return false;
	}
	if (rc) {
		svc_fail_store(j, rc, "opening the collection");
		return false;
	}
	if ((rc = store_collection_get(env->store, a->ns, a->name, &k.row))) {
		svc_fail_store(j, rc, "reading the collection's definition");
		goto out;
	}
	if (!dest_root(j, env, a->dest_path, &k.root, k.root_path, sizeof(k.root_path)))
		goto out;
	char id[UUID_STR_LEN];
	if (uuid7_make(id)) {
		svc_job_fail(j, GRPC_INTERNAL, "no randomness for a backup id");
		goto out;
	}
	snprintf(k.tmp, sizeof(k.tmp), TMP_PREFIX "%s", id);
	if ((k.nsd = mkodir(k.root, a->ns)) < 0 || (k.colld = mkodir(k.nsd, a->name)) < 0 ||
	    (k.tmpd = mkodir(k.colld, k.tmp)) < 0) {
		svc_job_fail(j, GRPC_INTERNAL, "making the backup's directory: %s",
			     strerror(errno));
		goto out;
	}
	char path[PATH_MAX];
	snapshot_db_info info;
	if (snprintf(path, sizeof(path), "%s/%s/%s/%s/" SNAPSHOT_DB_NAME, k.root_path, a->ns,
		     a->name, k.tmp) >= (int)sizeof(path)) {
		svc_job_fail(j, GRPC_INVALID_ARGUMENT, "the backup's path is too long");
		goto out;
	}
	if ((rc = snapshot_db(k.c, path, &info))) {
		svc_fail_store(j, rc, "snapshot of the database");
		goto out;
	}
	manifest *m = &k.m;
	snprintf(m->backup_id, sizeof(m->backup_id), "%s", id);
	snprintf(m->ns, sizeof(m->ns), "%s", a->ns);
	snprintf(m->name, sizeof(m->name), "%s", a->name);
	m->timestamp_us = info.taken_at_us;
	m->records = info.records;
	m->db_size = info.bytes;
	memcpy(m->db_sha256, info.sha256, sizeof(info.sha256));
	m->include_files = a->include_files;
	if (a->include_files) {
		int fd = mkodir(k.tmpd, SNAPSHOT_FILES_DIR);
		rc = fd < 0 ? store_err_set(fd, "files: %s", strerror(-fd))
			    : snapshot_coll_files(k.c, fd, manifest_file_cb, m, &m->file_count,
						  &m->file_bytes);
		if (fd >= 0)
			close(fd);
		if (rc) {
			svc_fail_store(j, rc, "copying the attachments");
			goto out;
		}
	}
	/* The snapshot is taken: the collection is free to go (a delete waits for us). */
	store_coll_release(k.c);
	k.c = NULL;
	m->definition.len = k.row->def_len;
	m->definition.data = mem_alloc(k.row->def_len ? k.row->def_len : 1);
	if (!m->definition.data || !collect_types(j, env, k.row, m)) {
		if (!m->definition.data)
			svc_job_fail(j, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	memcpy(m->definition.data, k.row->def, k.row->def_len);
	if ((rc = manifest_write(m, &k.text)) ||
	    (rc = write_file_sync(k.tmpd, MANIFEST_NAME, k.text.data, k.text.len)) ||
	    (fsync(k.tmpd) ? (rc = -errno) : 0) ||
	    (renameat(k.colld, k.tmp, k.colld, id) ? (rc = -errno) : 0)) {
		svc_job_fail(j, GRPC_INTERNAL, "writing the backup: %s", strerror(-rc));
		goto out;
	}
	snprintf(k.tmp, sizeof(k.tmp), "%s", id); /* removed under its name if the row fails */
	fsync(k.colld);

	Collector__NamespacedName coll = COLLECTOR__NAMESPACED_NAME__INIT;
	coll.namespace_ = (char *)a->ns;
	coll.name = (char *)a->name;
	Collector__BackupMetadata__MetadataEntry *entries =
		mem_calloc(a->nmeta ? a->nmeta : 1, sizeof(*entries));
	Collector__BackupMetadata__MetadataEntry **ep =
		mem_calloc(a->nmeta ? a->nmeta : 1, sizeof(*ep));
	char storage[PATH_MAX];
	if (snprintf(storage, sizeof(storage), "%s/%s/%s/%s", k.root_path, a->ns, a->name, id) >=
	    (int)sizeof(storage))
		storage[0] = 0; /* cannot be: the database's longer path fitted */
	Collector__BackupMetadata b = COLLECTOR__BACKUP_METADATA__INIT;
	b.backup_id = id;
	b.collection = &coll;
	b.timestamp = info.taken_at_us / 1000000;
	b.size_bytes = m->db_size + m->file_bytes + (int64_t)k.text.len;
	b.record_count = m->records;
	b.file_count = m->file_count;
	b.includes_files = a->include_files;
	b.storage_path = storage;
	b.storage_type = "local";
	if (entries && ep) {
		for (size_t i = 0; i < a->nmeta; i++) {
			collector__backup_metadata__metadata_entry__init(&entries[i]);
			entries[i].key = (char *)a->meta_keys[i];
			entries[i].value = (char *)a->meta_values[i];
			ep[i] = &entries[i];
		}
		b.metadata = ep;
		b.n_metadata = a->nmeta;
	}
	/* The backup exists once its row is committed (durable: syscoll_write_wait). */
	ok = entries && ep && row_write(j, env, &b, false);
	if (ok) {
		size_t len = collector__backup_metadata__get_packed_size(&b);
		uint8_t *p = mem_alloc(len ? len : 1);
		if (p) {
			collector__backup_metadata__pack(&b, p);
			*out = svc_decode(&collector__backup_metadata__descriptor, p, len);
		}
		mem_free(p);
		if (!*out) {
			svc_job_fail(j, GRPC_RESOURCE_EXHAUSTED, "out of memory");
			ok = false;
		}
		*bytes = b.size_bytes;
		k.tmp[0] = 0; /* kept */
	} else if (!entries || !ep) {
		svc_job_fail(j, GRPC_RESOURCE_EXHAUSTED, "out of memory");
	}
	mem_free(entries);
	mem_free(ep);
	if (ok)
		apply_policy(env, a->ns, a->name, id);
out:
	if (ok)
		k.tmp[0] = 0;
	making_free(&k, !ok);
	return ok;
}

/* ---- deleting, retention ---- */

bool backup_delete(svc_job *j, const svc_env *env, const Collector__BackupMetadata *b,
		   int64_t *freed)
{
	if (!row_write(j, env, b, true))
		return false;
	/* The row is gone: the directory is garbage from here on, however far this gets. */
	int64_t count = 0, bytes = 0;
	char parent[PATH_MAX];
	snprintf(parent, sizeof(parent), "%s", b->storage_path ? b->storage_path : "");
	char *slash = strrchr(parent, '/');
	if (slash && slash != parent) {
		*slash = 0;
		const char *leaf = slash + 1;
		int pfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		int fd = pfd < 0 ? -1 : odir(pfd, leaf);
		if (fd >= 0) {
			dirs_tree_stat(fd, &count, &bytes);
			struct stat sb;
			if (fstatat(fd, SNAPSHOT_DB_NAME, &sb, AT_SYMLINK_NOFOLLOW) == 0)
				bytes += sb.st_size;
			if (fstatat(fd, MANIFEST_NAME, &sb, AT_SYMLINK_NOFOLLOW) == 0)
				bytes += sb.st_size;
			close(fd);
			char del[80];
			snprintf(del, sizeof(del), DEL_PREFIX "%.60s", leaf);
			if (renameat(pfd, leaf, pfd, del) == 0) {
				fsync(pfd);
				dirs_tree_remove(pfd, del, NULL);
			}
		}
		if (pfd >= 0)
			close(pfd);
	}
	*freed = bytes;
	return true;
}

static void apply_policy(const svc_env *env, const char *ns, const char *name, const char *keep_id)
{
	store_collection *row = NULL;
	if (store_collection_get(env->store, ns, name, &row))
		return;
	Collector__Collection *def =
		svc_decode(&collector__collection__descriptor, row->def, row->def_len);
	mem_free(row);
	const Collector__BackupPolicy *p = def ? def->backup_policy : NULL;
	int32_t max = p && p->enabled ? p->max_backups : 0;
	int64_t keep_s = p && p->enabled ? p->retention_seconds : 0;
	if (def)
		collector__collection__free_unpacked(def, NULL);
	if (max <= 0 && keep_s <= 0)
		return;
	svc_job j;
	memset(&j, 0, sizeof(j));
	Collector__BackupMetadata **rows;
	size_t n;
	if (!backup_rows(&j, env, &rows, &n)) {
		log_warn("backups: retention of %s/%s: %s", ns, name, j.msg);
		return;
	}
	int64_t now_s = now_us() / 1000000;
	int32_t seen = 0;
	for (size_t i = 0; i < n; i++) {
		const Collector__BackupMetadata *b = rows[i];
		if (!b->collection || strcmp(b->collection->namespace_, ns) ||
		    strcmp(b->collection->name, name))
			continue;
		seen++;
		bool over = max > 0 && seen > max;
		bool old = keep_s > 0 && b->timestamp < now_s - keep_s;
		if ((!over && !old) || !strcmp(b->backup_id, keep_id))
			continue;
		int64_t freed;
		memset(&j, 0, sizeof(j));
		if (backup_delete(&j, env, b, &freed))
			log_info("backups: %s of %s/%s removed by the retention policy",
				 b->backup_id, ns, name);
		else
			log_warn("backups: retention: %s: %s", b->backup_id, j.msg);
	}
	backup_rows_free(rows, n);
}

/* ---- verifying ---- */

static int read_small(int dirfd, const char *name, size_t max, buf *out)
{
	int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = 0;
	for (;;) {
		if (buf_reserve(out, 65536)) {
			rc = -ENOMEM;
			break;
		}
		ssize_t n = read(fd, out->data + out->len, 65536);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? -errno : 0;
			break;
		}
		out->len += (size_t)n;
		if (out->len > max) {
			rc = -EFBIG;
			break;
		}
	}
	close(fd);
	return rc;
}

/* Opens the backup's directory and reads its manifest. false with why set when the backup
 * is damaged (*damaged) or j failed otherwise. */
static bool open_backup(svc_job *j, const Collector__BackupMetadata *b, int *fd, manifest *m,
			char *why, size_t cap, bool *damaged)
{
	*damaged = false;
	*fd = open(b->storage_path ? b->storage_path : "",
		   O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (*fd < 0) {
		snprintf(why, cap, "the backup's directory %.200s: %s", b->storage_path,
			 strerror(errno));
		*damaged = true;
		return false;
	}
	buf text = BUF_INIT;
	int rc = read_small(*fd, MANIFEST_NAME, MANIFEST_MAX_BYTES, &text);
	if (rc == -ENOMEM) {
		buf_free(&text);
		svc_job_fail(j, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return false;
	}
	if (rc) {
		snprintf(why, cap, "%s: %s", MANIFEST_NAME, strerror(-rc));
		*damaged = true;
	} else if ((rc = manifest_parse(text.text, text.len, m))) {
		if (rc == -ENOMEM)
			svc_job_fail(j, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		else
			snprintf(why, cap, "%s: %s", MANIFEST_NAME, store_err_msg());
		*damaged = rc != -ENOMEM;
	} else if (strcmp(m->backup_id, b->backup_id) || !b->collection ||
		   strcmp(m->ns, b->collection->namespace_) ||
		   strcmp(m->name, b->collection->name)) {
		snprintf(why, cap, "%s: names another backup", MANIFEST_NAME);
		*damaged = true;
		rc = -EINVAL;
	}
	buf_free(&text);
	return rc == 0;
}

static bool sha_eq(const uint8_t *a, const uint8_t *b)
{
	return !memcmp(a, b, SNAPSHOT_SHA256_LEN);
}

/* Re-hashes everything m lists in the backup at fd; false with why on the first mismatch. */
static bool check_contents(int fd, const char *dir, const manifest *m, char *why, size_t cap)
{
	uint8_t sha[SNAPSHOT_SHA256_LEN];
	int64_t size;
	int rc = snapshot_hash_file(fd, SNAPSHOT_DB_NAME, sha, &size);
	if (rc || size != m->db_size || !sha_eq(sha, m->db_sha256)) {
		snprintf(why, cap, "%s: %s", SNAPSHOT_DB_NAME,
			 rc ? store_err_msg() : "its SHA-256 or size differs from the manifest's");
		return false;
	}
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/" SNAPSHOT_DB_NAME, dir);
	if ((rc = snapshot_db_check(path))) {
		snprintf(why, cap, "%s: %s", SNAPSHOT_DB_NAME, store_err_msg());
		return false;
	}
	int ffd = m->nfiles ? odir(fd, SNAPSHOT_FILES_DIR) : -1;
	if (m->nfiles && ffd < 0) {
		snprintf(why, cap, "files/: %s", strerror(errno));
		return false;
	}
	bool ok = true;
	for (size_t i = 0; ok && i < m->nfiles; i++) {
		const manifest_file *f = &m->files[i];
		/* Beneath files/ without links: a path of the manifest is checked
		 * (files_path_check), and each segment is opened with O_NOFOLLOW. */
		char dirpart[FILES_PATH_MAX + 1];
		snprintf(dirpart, sizeof(dirpart), "%s", f->path);
		char *slash = strrchr(dirpart, '/');
		int dfd = ffd;
		const char *leaf = f->path;
		if (slash) {
			*slash = 0;
			leaf = slash + 1;
			dfd = ffd;
			char *save = NULL;
			int cur = dup(ffd);
			for (char *s = strtok_r(dirpart, "/", &save); s && cur >= 0;
			     s = strtok_r(NULL, "/", &save)) {
				int next = odir(cur, s);
				close(cur);
				cur = next;
			}
			dfd = cur;
		}
		rc = dfd < 0 ? -ENOENT : snapshot_hash_file(dfd, leaf, sha, &size);
		if (rc || size != f->size || !sha_eq(sha, f->sha256)) {
			snprintf(why, cap, "files/%s: %s", f->path,
				 rc ? "missing or unreadable"
				    : "its SHA-256 or size differs from the manifest's");
			ok = false;
		}
		if (slash && dfd >= 0)
			close(dfd);
	}
	if (ffd >= 0)
		close(ffd);
	int64_t records;
	if (ok && (snapshot_db_count(path, &records) || records != m->records)) {
		snprintf(why, cap, "%s: its record count differs from the manifest's",
			 SNAPSHOT_DB_NAME);
		ok = false;
	}
	return ok;
}

bool backup_verify(svc_job *j, const svc_env *env, const Collector__BackupMetadata *b, bool *valid,
		   char *why, size_t cap)
{
	(void)env;
	manifest m;
	memset(&m, 0, sizeof(m));
	int fd;
	bool damaged;
	why[0] = 0;
	if (!open_backup(j, b, &fd, &m, why, cap, &damaged)) {
		if (fd >= 0)
			close(fd);
		manifest_free(&m);
		*valid = false;
		return damaged;
	}
	*valid = check_contents(fd, b->storage_path, &m, why, cap);
	close(fd);
	manifest_free(&m);
	return true;
}

/* ---- restore, clone ---- */

/* The catalog row for ns/name from a definition (packed collector.Collection): the
 * definition renamed, its type resolved from ns. */
static bool make_row(svc_job *j, const svc_env *env, const uint8_t *def, size_t len, const char *ns,
		     const char *name, store_collection *row, uint8_t **def_out, char **labels,
		     char **indexed)
{
	Collector__Collection *d = svc_decode(&collector__collection__descriptor, def, len);
	if (!d) {
		svc_job_fail(j, GRPC_DATA_LOSS, "the collection's definition does not decode");
		return false;
	}
	const tp_message *m = NULL;
	Collector__MessageTypeRef type = COLLECTOR__MESSAGE_TYPE_REF__INIT;
	bool typed =
		d->message_type && d->message_type->message_name && *d->message_type->message_name;
	if (typed) {
		Collector__MessageTypeRef ref = COLLECTOR__MESSAGE_TYPE_REF__INIT;
		ref.message_name = d->message_type->message_name;
		m = svc_find_type(env, ns, &ref);
		if (!m) {
			svc_job_fail(j, GRPC_FAILED_PRECONDITION, "type %s is unknown in %s",
				     ref.message_name, ns);
			collector__collection__free_unpacked(d, NULL);
			return false;
		}
		type.namespace_ = (char *)svc_type_ns(env, ns, m);
		type.message_name = (char *)tp_message_get(m)->full_name;
	}
	Collector__Collection out = *d;
	out.namespace_ = (char *)ns;
	out.name = (char *)name;
	out.message_type = m ? &type : NULL;
	size_t n = collector__collection__get_packed_size(&out);
	*def_out = mem_alloc(n ? n : 1);
	*labels = d->metadata ? svc_labels_json(d->metadata->labels, d->metadata->n_labels)
			      : svc_labels_json(NULL, 0);
	*indexed = svc_strings_json(d->indexed_fields, d->n_indexed_fields);
	bool ok = *def_out && *labels && *indexed;
	if (ok) {
		collector__collection__pack(&out, *def_out);
		*row = (store_collection){.ns = ns,
					  .name = name,
					  .def = *def_out,
					  .def_len = n,
					  .type_ns = m ? type.namespace_ : "",
					  .type_name = m ? tp_message_get(m)->full_name : "",
					  .labels = *labels,
					  .indexed = *indexed};
	} else {
		svc_job_fail(j, GRPC_RESOURCE_EXHAUSTED, "out of memory");
	}
	collector__collection__free_unpacked(d, NULL);
	return ok;
}

typedef struct staged {
	char tmp[STORE_TMP_MAX];
	char path[PATH_MAX];
	const char *ns;
	bool made;
} staged;

static bool stage(svc_job *j, const svc_env *env, staged *s, const char *ns)
{
	s->ns = ns;
	int rc = store_stage_begin(env->store, ns, s->path, sizeof(s->path), s->tmp);
	if (rc)
		svc_fail_store(j, rc, "preparing the collection's directory");
	s->made = rc == 0;
	return s->made;
}

/* Installs the staged directory as row; aborts the stage on failure. */
static bool install(svc_job *j, const svc_env *env, staged *s, const store_collection *row,
		    bool overwrite)
{
	int rc = store_collection_install(env->store, row, s->tmp,
					  overwrite ? STORE_INSTALL_OVERWRITE : 0);
	if (rc == -EEXIST)
		svc_job_fail(j, GRPC_ALREADY_EXISTS, "collection %s/%s already exists", row->ns,
			     row->name);
	else if (rc)
		svc_fail_store(j, rc, "installing the collection");
	else
		s->made = false;
	return rc == 0;
}

static void unstage(const svc_env *env, staged *s)
{
	if (s->made)
		store_stage_abort(env->store, s->ns, s->tmp);
}

bool backup_check_dest(svc_job *j, const svc_env *env, const char *ns, const char *name,
		       bool overwrite)
{
	if (!svc_check_user_ns(j, ns) || !svc_check_name(j, "collection", name))
		return false;
	store_collection *row = NULL;
	int rc = store_collection_get(env->store, ns, name, &row);
	mem_free(row);
	if (rc == 0 && !overwrite) {
		svc_job_fail(j, GRPC_ALREADY_EXISTS, "collection %s/%s already exists", ns, name);
		return false;
	}
	if (rc && rc != -ENOENT) {
		svc_fail_store(j, rc, "reading the catalog");
		return false;
	}
	return true;
}

bool backup_restore(svc_job *j, const svc_env *env, const Collector__BackupMetadata *b,
		    const char *ns, const char *name, bool overwrite, int64_t *records,
		    int64_t *files)
{
	if (!backup_check_dest(j, env, ns, name, overwrite))
		return false;
	manifest m;
	memset(&m, 0, sizeof(m));
	int fd = -1, src_files = -1, dst_files = -1;
	char why[300];
	bool damaged, ok = false;
	staged s = {0};
	uint8_t *def = NULL;
	char *labels = NULL, *indexed = NULL;
	if (!open_backup(j, b, &fd, &m, why, sizeof(why), &damaged)) {
		if (damaged)
			svc_job_fail(j, GRPC_DATA_LOSS, "backup %s is damaged: %s", b->backup_id,
				     why);
		goto out;
	}
	/* Nothing changes unless every byte is as the manifest says. */
	if (!check_contents(fd, b->storage_path, &m, why, sizeof(why))) {
		svc_job_fail(j, GRPC_DATA_LOSS, "backup %s is damaged: %s", b->backup_id, why);
		goto out;
	}
	Collector__Collection *d =
		svc_decode(&collector__collection__descriptor, m.definition.data, m.definition.len);
	const char *type_name = d && d->message_type ? d->message_type->message_name : NULL;
	bool typed = ensure_type(j, env, ns, type_name, m.type_files, m.ntype_files);
	if (d)
		collector__collection__free_unpacked(d, NULL);
	store_collection row;
	if (!typed || !make_row(j, env, m.definition.data, m.definition.len, ns, name, &row, &def,
				&labels, &indexed))
		goto out;
	if (!stage(j, env, &s, ns))
		goto out;
	char dbsrc[PATH_MAX], dbdst[PATH_MAX + 16];
	snprintf(dbsrc, sizeof(dbsrc), "%s/" SNAPSHOT_DB_NAME, b->storage_path);
	snprintf(dbdst, sizeof(dbdst), "%s/" SNAPSHOT_DB_NAME, s.path);
	int rc = snapshot_copy_db(dbsrc, dbdst);
	int64_t nfiles = 0;
	if (!rc && m.nfiles) {
		/* Copies, not links: the backup stays what it is whatever happens to the
		 * restored collection's files. */
		src_files = odir(fd, SNAPSHOT_FILES_DIR);
		dst_files = open(s.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		int t = dst_files >= 0 ? odir(dst_files, SNAPSHOT_FILES_DIR) : -1;
		if (dst_files >= 0)
			close(dst_files);
		dst_files = t;
		rc = src_files < 0 || dst_files < 0
			     ? store_err_set(-EIO, "files: %s", strerror(errno))
			     : snapshot_tree(src_files, dst_files, false, NULL, NULL, &nfiles,
					     NULL);
	}
	if (rc) {
		svc_fail_store(j, rc, "copying the backup");
		goto out;
	}
	if (!install(j, env, &s, &row, overwrite))
		goto out;
	*records = m.records;
	*files = nfiles;
	ok = true;
out:
	unstage(env, &s);
	if (src_files >= 0)
		close(src_files);
	if (dst_files >= 0)
		close(dst_files);
	if (fd >= 0)
		close(fd);
	manifest_free(&m);
	mem_free(def);
	mem_free(labels);
	mem_free(indexed);
	return ok;
}

bool backup_clone(svc_job *j, const svc_env *env, const char *src_ns, const char *src_name,
		  const char *ns, const char *name, bool include_files, int64_t *records,
		  int64_t *files, int64_t *bytes)
{
	if (!svc_check_user_ns(j, src_ns) || !svc_check_name(j, "collection", src_name) ||
	    !backup_check_dest(j, env, ns, name, false))
		return false;
	store_coll *c = NULL;
	store_collection *src = NULL;
	manifest m;
	memset(&m, 0, sizeof(m));
	staged s = {0};
	uint8_t *def = NULL;
	char *labels = NULL, *indexed = NULL;
	bool ok = false;
	int rc = store_coll_acquire(env->store, src_ns, src_name, &c);
	if (rc == -ENOENT) {
		svc_job_fail(j, GRPC_NOT_FOUND, "no collection %s/%s", src_ns, src_name);
		return false;
	}
	if (rc) {
		svc_fail_store(j, rc, "opening the collection");
		return false;
	}
	if ((rc = store_collection_get(env->store, src_ns, src_name, &src))) {
		svc_fail_store(j, rc, "reading the collection's definition");
		goto out;
	}
	/* Another namespace may lack the type: it gets the source's registered files. */
	store_collection row;
	if (!collect_types(j, env, src, &m) ||
	    !ensure_type(j, env, ns, src->type_name, m.type_files, m.ntype_files) ||
	    !make_row(j, env, src->def, src->def_len, ns, name, &row, &def, &labels, &indexed) ||
	    !stage(j, env, &s, ns))
		goto out;
	char path[PATH_MAX + 16];
	snprintf(path, sizeof(path), "%s/" SNAPSHOT_DB_NAME, s.path);
	snapshot_db_info info;
	if ((rc = snapshot_db(c, path, &info))) {
		svc_fail_store(j, rc, "snapshot of the database");
		goto out;
	}
	int64_t nfiles = 0, fbytes = 0;
	if (include_files) {
		int d = open(s.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		int f = d >= 0 ? odir(d, SNAPSHOT_FILES_DIR) : -1;
		rc = f < 0 ? store_err_set(-EIO, "files: %s", strerror(errno))
			   : snapshot_coll_files(c, f, NULL, NULL, &nfiles, &fbytes);
		if (f >= 0)
			close(f);
		if (d >= 0)
			close(d);
		if (rc) {
			svc_fail_store(j, rc, "copying the attachments");
			goto out;
		}
	}
	store_coll_release(c);
	c = NULL;
	if (!install(j, env, &s, &row, false))
		goto out;
	*records = info.records;
	*files = nfiles;
	*bytes = info.bytes + fbytes;
	ok = true;
out:
	unstage(env, &s);
	if (c)
		store_coll_release(c);
	mem_free(src);
	manifest_free(&m);
	mem_free(def);
	mem_free(labels);
	mem_free(indexed);
	return ok;
}

/* ---- for transfers between nodes (transfer.c) ---- */

bool backup_snapshot_stage(svc_job *j, const svc_env *env, const char *ns, const char *name,
			   bool include_files, manifest *m, char tmp[STORE_TMP_MAX], char *path,
			   size_t cap)
{
	tmp[0] = 0;
	if (!svc_check_user_ns(j, ns) || !svc_check_name(j, "collection", name))
		return false;
	store_coll *c = NULL;
	store_collection *src = NULL;
	bool ok = false;
	int rc = store_coll_acquire(env->store, ns, name, &c);
	if (rc == -ENOENT) {
		svc_job_fail(j, GRPC_NOT_FOUND, "no collection %s/%s", ns, name);
		return false;
	}
	if (rc) {
		svc_fail_store(j, rc, "opening the collection");
		return false;
	}
	if ((rc = store_collection_get(env->store, ns, name, &src))) {
		svc_fail_store(j, rc, "reading the collection's definition");
		goto out;
	}
	if ((rc = store_stage_begin(env->store, ns, path, cap, tmp))) {
		tmp[0] = 0;
		svc_fail_store(j, rc, "preparing the transfer's directory");
		goto out;
	}
	char db[PATH_MAX + 16];
	snprintf(db, sizeof(db), "%s/" SNAPSHOT_DB_NAME, path);
	snapshot_db_info info;
	if ((rc = snapshot_db(c, db, &info))) {
		svc_fail_store(j, rc, "snapshot of the database");
		goto out;
	}
	snprintf(m->ns, sizeof(m->ns), "%s", ns);
	snprintf(m->name, sizeof(m->name), "%s", name);
	snprintf(m->backup_id, sizeof(m->backup_id), "transfer");
	m->timestamp_us = info.taken_at_us;
	m->records = info.records;
	m->db_size = info.bytes;
	memcpy(m->db_sha256, info.sha256, sizeof(info.sha256));
	m->include_files = include_files;
	if (include_files) {
		/* Hard links: the snapshot of the tree costs no copy, and the files stay as they
		 * were whatever uploads come meanwhile (snapshot.h). */
		int d = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		int f = d >= 0 ? odir(d, SNAPSHOT_FILES_DIR) : -1;
		rc = f < 0 ? store_err_set(-EIO, "files: %s", strerror(errno))
			   : snapshot_coll_files(c, f, manifest_file_cb, m, &m->file_count,
						 &m->file_bytes);
		if (f >= 0)
			close(f);
		if (d >= 0)
			close(d);
		if (rc) {
			svc_fail_store(j, rc, "copying the attachments");
			goto out;
		}
	}
	store_coll_release(c);
	c = NULL;
	m->definition.len = src->def_len;
	m->definition.data = mem_alloc(src->def_len ? src->def_len : 1);
	if (!m->definition.data) {
		svc_job_fail(j, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	memcpy(m->definition.data, src->def, src->def_len);
	ok = collect_types(j, env, src, m);
out:
	if (!ok && tmp[0]) {
		store_stage_abort(env->store, ns, tmp);
		tmp[0] = 0;
	}
	if (c)
		store_coll_release(c);
	mem_free(src);
	return ok;
}

bool backup_adopt_stage(svc_job *j, const svc_env *env, const manifest *m, const char *ns,
			const char *name, const char *tmp, const char *path)
{
	staged s = {.ns = ns, .made = true};
	snprintf(s.tmp, sizeof(s.tmp), "%s", tmp);
	snprintf(s.path, sizeof(s.path), "%s", path);
	uint8_t *def = NULL;
	char *labels = NULL, *indexed = NULL;
	bool ok = false;
	char db[PATH_MAX + 16];
	snprintf(db, sizeof(db), "%s/" SNAPSHOT_DB_NAME, path);
	int64_t records;
	int rc = snapshot_db_check(db);
	if (rc) {
		svc_job_fail(j, GRPC_DATA_LOSS, "the received database is damaged: %s",
			     store_err_msg());
		goto out;
	}
	if ((rc = snapshot_db_count(db, &records)) || records != m->records) {
		svc_job_fail(j, GRPC_DATA_LOSS,
			     "the received database holds %lld records, the manifest says %lld",
			     (long long)(rc ? -1 : records), (long long)m->records);
		goto out;
	}
	if (!backup_check_dest(j, env, ns, name, false))
		goto out;
	Collector__Collection *d = svc_decode(&collector__collection__descriptor,
					      m->definition.data, m->definition.len);
	if (!d) {
		svc_job_fail(j, GRPC_INVALID_ARGUMENT, "the manifest's definition does not decode");
		goto out;
	}
	bool typed = ensure_type(j, env, ns, d->message_type ? d->message_type->message_name : NULL,
				 m->type_files, m->ntype_files);
	collector__collection__free_unpacked(d, NULL);
	store_collection row;
	if (!typed || !make_row(j, env, m->definition.data, m->definition.len, ns, name, &row, &def,
				&labels, &indexed))
		goto out;
	ok = install(j, env, &s, &row, false);
out:
	unstage(env, &s);
	mem_free(def);
	mem_free(labels);
	mem_free(indexed);
	return ok;
}

/* ---- leftovers ---- */

static void sweep_dir(int fd, int depth)
{
	DIR *d;
	if (dirs_open(fd, ".", 0, &d))
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (depth == 2) {
			if (strncmp(e->d_name, TMP_PREFIX, strlen(TMP_PREFIX)) &&
			    strncmp(e->d_name, DEL_PREFIX, strlen(DEL_PREFIX)))
				continue;
			int rc = dirs_tree_remove(fd, e->d_name, NULL);
			log_info("backups: removed leftover %s: %s", e->d_name,
				 rc ? strerror(-rc) : "ok");
			continue;
		}
		int sub = odir(fd, e->d_name);
		if (sub >= 0) {
			sweep_dir(sub, depth + 1);
			close(sub);
		}
	}
	closedir(d);
}

void backup_sweep(const svc_env *env)
{
	int data = open(store_data_dir(env->store), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int fd = data >= 0 ? odir(data, "backups") : -1;
	if (fd >= 0) {
		sweep_dir(fd, 0);
		close(fd);
	}
	if (data >= 0)
		close(data);
}
