/* The receiver's state machine of a collection transfer (transfer_rx.h). */
#include "services/transfer_rx.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "h2/status.h"
#include "store/err.h"
#include "store/files.h"

static int fail(xfer_rx *rx, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(xfer_rx *rx, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(rx->why, sizeof(rx->why), fmt, ap);
	va_end(ap);
	rx->failed = true;
	return code;
}

void xfer_rx_init(xfer_rx *rx) { memset(rx, 0, sizeof(*rx)); }

static const char *piece_name(const xfer_rx *rx)
{
	return rx->piece == 0 ? SNAPSHOT_DB_NAME : rx->m.files[rx->piece - 1].path;
}

static int64_t piece_size(const xfer_rx *rx)
{
	return rx->piece == 0 ? rx->m.db_size : rx->m.files[rx->piece - 1].size;
}

/* Opens the next piece, and every empty one after it as well (an empty file still has to
 * exist and hash right), until one with bytes to come or the end. */
static int open_next(xfer_rx *rx, const xfer_sink *s)
{
	while (rx->piece <= rx->m.nfiles) {
		char path[FILES_PATH_MAX + 16];
		if (rx->piece == 0)
			snprintf(path, sizeof(path), SNAPSHOT_DB_NAME);
		else
			snprintf(path, sizeof(path), SNAPSHOT_FILES_DIR "/%s", piece_name(rx));
		int rc = s->open(s->ctx, path);
		if (rc)
			return fail(rx, GRPC_INTERNAL, "%s: cannot write: %s", path, strerror(-rc));
		rx->open = true;
		if (!rx->sha && !(rx->sha = EVP_MD_CTX_new()))
			return fail(rx, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		if (EVP_DigestInit_ex(rx->sha, EVP_sha256(), NULL) != 1)
			return fail(rx, GRPC_INTERNAL, "cannot start a SHA-256 digest");
		rx->left = piece_size(rx);
		if (rx->left > 0)
			return GRPC_OK;
		/* Empty: done at once. */
		uint8_t md[EVP_MAX_MD_SIZE];
		unsigned n = 0;
		EVP_DigestFinal_ex(rx->sha, md, &n);
		const uint8_t *want =
			rx->piece == 0 ? rx->m.db_sha256 : rx->m.files[rx->piece - 1].sha256;
		rx->open = false;
		if ((rc = s->close(s->ctx)))
			return fail(rx, GRPC_INTERNAL, "%s: cannot write: %s", path, strerror(-rc));
		if (n != SNAPSHOT_SHA256_LEN || memcmp(md, want, n))
			return fail(rx, GRPC_DATA_LOSS,
				    "%s: its SHA-256 differs from the manifest's", path);
		rx->piece++;
	}
	return GRPC_OK;
}

int xfer_rx_meta(xfer_rx *rx, const uint8_t *text, size_t len, int64_t total, int64_t records,
		 int64_t files, const xfer_sink *s)
{
	if (rx->failed)
		return fail(rx, GRPC_FAILED_PRECONDITION, "the transfer failed already");
	if (rx->have_meta)
		return fail(rx, GRPC_INVALID_ARGUMENT,
			    "a second metadata message: metadata comes once, first, then chunks");
	rx->have_meta = true;
	if (!len)
		return fail(rx, GRPC_INVALID_ARGUMENT,
			    "metadata.manifest is missing (the transfer's manifest: without it the "
			    "bytes cannot be checked)");
	int rc = manifest_parse((const char *)text, len, &rx->m);
	if (rc == -ENOMEM)
		return fail(rx, GRPC_RESOURCE_EXHAUSTED, "out of memory");
	if (rc)
		return fail(rx, GRPC_INVALID_ARGUMENT, "metadata.manifest: %s", store_err_msg());
	const manifest *m = &rx->m;
	/* manifest_parse bounds each size; the sum is checked for overflow here. */
	int64_t sum = m->db_size;
	if (m->db_size <= 0)
		return fail(rx, GRPC_INVALID_ARGUMENT, "metadata.manifest: the database is empty");
	for (size_t i = 0; i < m->nfiles; i++) {
		if (m->files[i].size < 0 || m->files[i].size > INT64_MAX - sum)
			return fail(rx, GRPC_INVALID_ARGUMENT,
				    "metadata.manifest: file sizes overflow");
		sum += m->files[i].size;
	}
	if (total != sum)
		return fail(rx, GRPC_INVALID_ARGUMENT,
			    "metadata.total_size %lld differs from the manifest's %lld bytes",
			    (long long)total, (long long)sum);
	if (records != m->records)
		return fail(rx, GRPC_INVALID_ARGUMENT,
			    "metadata.record_count %lld differs from the manifest's %lld",
			    (long long)records, (long long)m->records);
	if (files != (int64_t)m->nfiles)
		return fail(rx, GRPC_INVALID_ARGUMENT,
			    "metadata.file_count %lld differs from the manifest's %zu",
			    (long long)files, m->nfiles);
	rx->total = total;
	return open_next(rx, s);
}

int xfer_rx_data(xfer_rx *rx, const uint8_t *data, size_t len, const xfer_sink *s)
{
	if (rx->failed)
		return fail(rx, GRPC_FAILED_PRECONDITION, "the transfer failed already");
	if (!rx->have_meta)
		return fail(rx, GRPC_INVALID_ARGUMENT,
			    "a chunk before the metadata: metadata comes first, then chunks");
	if ((uint64_t)len > (uint64_t)(rx->total - rx->received))
		return fail(rx, GRPC_INVALID_ARGUMENT, "more bytes than metadata.total_size %lld",
			    (long long)rx->total);
	while (len) {
		/* Bytes remain below the total, so a piece is open (the total is their sum). */
		size_t n = (uint64_t)len < (uint64_t)rx->left ? len : (size_t)rx->left;
		int rc = s->write(s->ctx, data, n);
		if (rc)
			return fail(rx, GRPC_INTERNAL, "%s: cannot write: %s", piece_name(rx),
				    strerror(-rc));
		if (EVP_DigestUpdate(rx->sha, data, n) != 1)
			return fail(rx, GRPC_INTERNAL, "SHA-256 digest failed");
		data += n;
		len -= n;
		rx->left -= (int64_t)n;
		rx->received += (int64_t)n;
		if (rx->left)
			continue;
		uint8_t md[EVP_MAX_MD_SIZE];
		unsigned mdn = 0;
		EVP_DigestFinal_ex(rx->sha, md, &mdn);
		const uint8_t *want =
			rx->piece == 0 ? rx->m.db_sha256 : rx->m.files[rx->piece - 1].sha256;
		rx->open = false;
		if ((rc = s->close(s->ctx)))
			return fail(rx, GRPC_INTERNAL, "%s: cannot write: %s", piece_name(rx),
				    strerror(-rc));
		if (mdn != SNAPSHOT_SHA256_LEN || memcmp(md, want, mdn))
			return fail(rx, GRPC_DATA_LOSS,
				    "%s%s: its SHA-256 differs from the manifest's",
				    rx->piece ? SNAPSHOT_FILES_DIR "/" : "", piece_name(rx));
		rx->piece++;
		if ((rc = open_next(rx, s)) != GRPC_OK)
			return rc;
	}
	return GRPC_OK;
}

int xfer_rx_end(xfer_rx *rx)
{
	if (rx->failed)
		return fail(rx, GRPC_FAILED_PRECONDITION, "the transfer failed already");
	if (!rx->have_meta)
		return fail(rx, GRPC_INVALID_ARGUMENT,
			    "the stream ended without metadata (metadata first, then chunks)");
	if (rx->received != rx->total || rx->piece <= rx->m.nfiles)
		return fail(rx, GRPC_INVALID_ARGUMENT,
			    "the stream ended after %lld of metadata.total_size %lld bytes",
			    (long long)rx->received, (long long)rx->total);
	return GRPC_OK;
}

void xfer_rx_free(xfer_rx *rx, const xfer_sink *s)
{
	if (rx->open && s)
		s->close(s->ctx);
	rx->open = false;
	EVP_MD_CTX_free(rx->sha);
	rx->sha = NULL;
	manifest_free(&rx->m);
	memset(&rx->m, 0, sizeof(rx->m)); /* a second free finds nothing */
}
