/* collector.CollectionService attachments: PutFile, GetFile, ListFiles, DeleteFile over a
 * collection's file tree (store/files.h).
 *
 * Names and paths: namespace and collection as every CollectionService method (empty
 * namespace: the x-collector-namespace header, else the node's default; a bad name is
 * INVALID_ARGUMENT, an unknown collection NOT_FOUND). A path is relative and
 * '/'-separated (files_path_check); a bad one, or one that leads through a symbolic link,
 * is INVALID_ARGUMENT. A directory where a file is expected, or a file where a directory
 * is, is FAILED_PRECONDITION.
 *
 * PutFile: a PutFileHeader first (anything else: INVALID_ARGUMENT), then chunks; a message
 * with neither adds nothing. The file appears, atomically, when the client half-closes
 * and every byte is on disk; a failed or cancelled upload leaves nothing. A file over
 * FILES_SVC_PUT_MAX (1 GiB) is RESOURCE_EXHAUSTED; header.total_size > 0 must equal the
 * bytes sent (else INVALID_ARGUMENT). Chunks are written on the pool, one job at a time
 * per upload. A client that gets half of FILES_SVC_PUT_BUFFER ahead of the disk waits
 * (the call's input is paused: HTTP/2 flow control stops it) until a write step takes
 * what is queued, so an upload is as fast as the disk and its memory bounded. The answer holds the
 * path, the size and the content's SHA-256 in hex.
 *
 * GetFile: a FileInfo (path, size_bytes of the whole file, modified_at when found, see
 * files_svc.c), then the bytes from offset for length (0: to the end) in chunks of at most
 * 64 KiB. offset past the end is OUT_OF_RANGE (at the end: no chunks); negative offset
 * or length INVALID_ARGUMENT. Reading waits while the client does not take the output.
 *
 * ListFiles: root is a CollectionDir named by the request's path ("" for the whole tree)
 * whose subdirs and files maps are keyed by entry name; each CollectionDir and
 * CollectionData carries its own entry name, CollectionData's content is left unset (no
 * data, no uri). Without recursive only the entries directly under path are listed (their
 * subdirectories come back empty). Symbolic links and special files are not listed. More
 * than FILES_SVC_LIST_MAX entries is RESOURCE_EXHAUSTED.
 *
 * DeleteFile: a file; a directory only with recursive, with everything in it (without
 * it: FAILED_PRECONDITION). files_deleted counts regular files, bytes_freed their sizes
 * as found just before the removal.
 *
 * Cancellation at any point ends the call's pool work and releases its collection
 * handle, open file and partial upload. */
#ifndef SERVICES_FILES_SVC_H
#define SERVICES_FILES_SVC_H
#include "h2/method.h"
#include "services/svc.h"

#define FILES_SVC_PUT_MAX (1ULL << 30)
#define FILES_SVC_PUT_BUFFER (4u << 20)
#define FILES_SVC_CHUNK (64u << 10)
#define FILES_SVC_LIST_MAX 100000

/* env must outlive the table. */
int files_svc_register(method_table *t, svc_env *env);

#endif
