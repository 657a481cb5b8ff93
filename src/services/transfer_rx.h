/* The receiving side of a collection transfer (PushCollection, Fetch), as a state machine
 * with no network and no call in it, so that a fuzzer drives it with arbitrary metadata and
 * chunk sequences (fuzz/fuzz_transfer_rx.c) and the RPCs (transfer.c) drive it from theirs.
 *
 * The stream is: metadata (a manifest in the format of a backup's manifest.json, with the
 * total size, record count and file count announced beside it), then chunks that are the
 * bytes of records.db followed by those of each file of the manifest, in its order. The
 * chunk boundaries mean nothing. Each piece goes to the sink as it arrives and is hashed;
 * a piece whose SHA-256 differs from the manifest's fails the transfer at its last byte.
 * Every function answers a gRPC status code (GRPC_OK or the failure, with why in rx->why). */
#ifndef SERVICES_TRANSFER_RX_H
#define SERVICES_TRANSFER_RX_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/manifest.h"

/* Where the pieces go (on a pool thread in the node). Each returns 0 or a negative errno.
 * open: path is "records.db" or "files/<manifest path>" (checked by manifest_parse). */
typedef struct xfer_sink {
	void *ctx;
	int (*open)(void *ctx, const char *path);
	int (*write)(void *ctx, const uint8_t *data, size_t len);
	int (*close)(void *ctx);
} xfer_sink;

typedef struct xfer_rx {
	manifest m;
	bool have_meta, open, failed;
	int64_t total, received;
	size_t piece; /* 0: records.db; i: m.files[i-1]; m.nfiles+1: every piece done */
	int64_t left; /* bytes of the current piece still to come */
	void *sha;    /* EVP_MD_CTX of the current piece */
	char why[400];
} xfer_rx;

void xfer_rx_init(xfer_rx *rx);
/* The metadata: text the manifest, total/records/files as announced. Checks that they
 * agree (INVALID_ARGUMENT otherwise) and opens the first piece. A second call is
 * INVALID_ARGUMENT. */
int xfer_rx_meta(xfer_rx *rx, const uint8_t *text, size_t len, int64_t total, int64_t records,
		 int64_t files, const xfer_sink *s);
/* Chunk bytes: INVALID_ARGUMENT before the metadata or beyond the total size, DATA_LOSS on
 * a piece whose hash differs, INTERNAL when the sink fails. */
int xfer_rx_data(xfer_rx *rx, const uint8_t *data, size_t len, const xfer_sink *s);
/* The stream ended: INVALID_ARGUMENT unless every announced byte came. */
int xfer_rx_end(xfer_rx *rx);
/* Closes a piece left open (the sink then drops what it made) and frees rx's memory. */
void xfer_rx_free(xfer_rx *rx, const xfer_sink *s);

#endif
