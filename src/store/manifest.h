/* A backup's manifest: what a backup holds and the SHA-256 of each piece, written as JSON
 * beside the backup (manifest.json) and read back before a restore or a verify. Read back,
 * it is untrusted bytes (a backup directory can be edited or damaged): the parser is
 * strict, bounded (depth, counts, sizes) and fuzzed (fuzz/fuzz_backup_manifest.c).
 *
 *   {"format": 1, "backup_id": "...", "namespace": "...", "collection": "...",
 *    "timestamp_us": N, "records": N,
 *    "database": {"path": "records.db", "size": N, "sha256": "hex"},
 *    "include_files": true, "file_count": N, "file_bytes": N,
 *    "files": [{"path": "a/b.txt", "size": N, "sha256": "hex"}, ...],
 *    "definition": "base64 of the collector.Collection",
 *    "type_namespace": "...", "type_files": ["base64 of a FileDescriptorProto", ...]}
 *
 * type_files hold the registered files the collection's message type needs, imports
 * first; empty for an untyped collection or a type every node compiles in. */
#ifndef STORE_MANIFEST_H
#define STORE_MANIFEST_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "store/snapshot.h"
#include "store/store.h"

#define MANIFEST_NAME "manifest.json"
#define MANIFEST_FORMAT 1
#define MANIFEST_ID_MAX 64
#define MANIFEST_MAX_BYTES (256u << 20)
#define MANIFEST_MAX_FILES 1000000
#define MANIFEST_MAX_TYPE_FILES 1024

typedef struct manifest_file {
	char *path;
	int64_t size;
	uint8_t sha256[SNAPSHOT_SHA256_LEN];
} manifest_file;

typedef struct manifest_blob {
	uint8_t *data;
	size_t len;
} manifest_blob;

/* Every pointer is owned by the manifest (manifest_free). */
typedef struct manifest {
	char backup_id[MANIFEST_ID_MAX + 1];
	char ns[STORE_NAME_MAX + 1], name[STORE_NAME_MAX + 1];
	int64_t timestamp_us, records;
	int64_t db_size;
	uint8_t db_sha256[SNAPSHOT_SHA256_LEN];
	bool include_files;
	int64_t file_count, file_bytes;
	manifest_file *files;
	size_t nfiles, files_cap;
	manifest_blob definition;
	char type_ns[STORE_NAME_MAX + 1];
	manifest_blob *type_files;
	size_t ntype_files;
} manifest;

/* Appends a file entry (path copied). 0 or -ENOMEM. */
int manifest_add_file(manifest *m, const char *path, int64_t size,
		      const uint8_t sha256[SNAPSHOT_SHA256_LEN]);
/* The JSON text of m into out. 0, -EILSEQ (a path that is not UTF-8), -ENOMEM. */
int manifest_write(const manifest *m, buf *out);
/* Parses text into *m (zeroed first). 0, -EINVAL (store_err_msg() says what is wrong),
 * -ENOMEM. *m is to be freed in every case. */
int manifest_parse(const char *text, size_t len, manifest *m);
void manifest_free(manifest *m);

#endif
