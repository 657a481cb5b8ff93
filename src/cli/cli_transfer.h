/* collectorctl pull and push: a collection's PullCollection stream kept in a file, and a
 * file pushed into a node's PushCollection, with progress in bytes. The file is the stream
 * as it came: "COLLECTOR-PULL 1\n", then records of one type byte ('M' the stream's
 * metadata, 'C' a chunk), a 4-byte big-endian length and the bytes. */
#ifndef CLI_CLI_TRANSFER_H
#define CLI_CLI_TRANSFER_H
#include <stdbool.h>

#include "cli/cli_call.h"

#define CLI_EXIT_IO 74 /* a local file could not be read or written */

/* Pulls ns/name (with its files) into path, written whole or not at all (path.part, then
 * renamed). An exit status. */
int cli_pull(cli_conn *c, const char *ns, const char *name, bool files, const char *path);
/* Pushes the pulled collection in path to the node as dest_ns/dest_name. An exit status;
 * the answer printed as JSON. */
int cli_push(cli_conn *c, const char *path, const char *dest_ns, const char *dest_name);

#endif
