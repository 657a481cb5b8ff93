/* The receiver of a collection transfer (services/transfer_rx.h) on arbitrary metadata and
 * chunk sequences, as PushCollection and Fetch feed it, without a network or a disk.
 *
 * The input is a list of records [kind][len: 2 bytes, little endian][len bytes]:
 *   kind % 4 == 0: a PushCollectionRequest (protobuf, decoded with the node's bounds),
 *                  whose metadata or chunk goes in as the RPC passes it on;
 *   kind % 4 == 1: chunk bytes directly (what a decoded chunk message gives);
 *   kind % 4 == 2: the end of the stream;
 *   kind % 4 == 3: the sink's next operation fails (a full disk).
 * Invariants: the sink sees open, writes, close, in that order, one piece at a time; a piece
 * is never written beyond its size; a transfer that ends with OK wrote every piece whole with
 * exactly the bytes whose SHA-256 the manifest names; after a failure every call fails. */
#include <openssl/evp.h>
#include <stdint.h>
#include <string.h>

#include "collector/collection_repo.pb-c.h"
#include "fuzz_check.h"
#include "h2/status.h"
#include "services/svc.h"
#include "services/transfer_rx.h"

typedef struct model {
	bool open, fail_next;
	size_t opened, closed; /* pieces */
	int64_t piece_bytes, written;
	EVP_MD_CTX *sha;
	uint8_t digests[64][32]; /* of the first pieces closed, to compare at the end */
} model;

static int m_open(void *ctx, const char *path)
{
	model *m = ctx;
	CHECK(!m->open);
	CHECK(path && *path);
	if (m->fail_next) {
		m->fail_next = false;
		return -28; /* ENOSPC */
	}
	m->open = true;
	m->opened++;
	m->piece_bytes = 0;
	EVP_DigestInit_ex(m->sha, EVP_sha256(), NULL);
	return 0;
}

static int m_write(void *ctx, const uint8_t *data, size_t len)
{
	model *m = ctx;
	CHECK(m->open);
	CHECK(len > 0);
	if (m->fail_next) {
		m->fail_next = false;
		return -28;
	}
	EVP_DigestUpdate(m->sha, data, len);
	m->piece_bytes += (int64_t)len;
	m->written += (int64_t)len;
	return 0;
}

static int m_close(void *ctx)
{
	model *m = ctx;
	CHECK(m->open);
	m->open = false;
	uint8_t md[EVP_MAX_MD_SIZE];
	unsigned n = 0;
	EVP_DigestFinal_ex(m->sha, md, &n);
	if (m->closed < 64)
		memcpy(m->digests[m->closed], md, 32);
	m->closed++;
	return 0;
}

static int64_t piece_size(const manifest *mf, size_t i)
{
	return i == 0 ? mf->db_size : mf->files[i - 1].size;
}

static const uint8_t *piece_sha(const manifest *mf, size_t i)
{
	return i == 0 ? mf->db_sha256 : mf->files[i - 1].sha256;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static model m;
	memset(&m, 0, sizeof(m));
	m.sha = EVP_MD_CTX_new();
	xfer_sink s = {&m, m_open, m_write, m_close};
	xfer_rx rx;
	xfer_rx_init(&rx);
	bool failed = false, ended = false;
	while (size >= 3) {
		unsigned kind = data[0] % 4;
		size_t len = (size_t)data[1] | (size_t)data[2] << 8;
		data += 3;
		size -= 3;
		if (len > size)
			len = size;
		const uint8_t *p = data;
		data += len;
		size -= len;
		int code = -1;
		if (kind == 0) {
			Collector__PushCollectionRequest *r =
				svc_decode(&collector__push_collection_request__descriptor, p, len);
			if (!r)
				continue;
			if (r->data_case == COLLECTOR__PUSH_COLLECTION_REQUEST__DATA_METADATA) {
				const Collector__PushCollectionRequest__Metadata *md = r->metadata;
				code = xfer_rx_meta(&rx, md->manifest.data, md->manifest.len,
						    md->total_size, md->record_count,
						    md->file_count, &s);
			} else if (r->data_case == COLLECTOR__PUSH_COLLECTION_REQUEST__DATA_CHUNK &&
				   r->chunk.len) {
				code = xfer_rx_data(&rx, r->chunk.data, r->chunk.len, &s);
			}
			collector__push_collection_request__free_unpacked(r, NULL);
			if (code < 0)
				continue;
		} else if (kind == 1) {
			if (!len)
				continue;
			code = xfer_rx_data(&rx, p, len, &s);
		} else if (kind == 2) {
			code = xfer_rx_end(&rx);
			ended = code == GRPC_OK;
		} else {
			m.fail_next = true;
			continue;
		}
		if (failed)
			CHECK(code != GRPC_OK);
		if (code != GRPC_OK) {
			CHECK(rx.why[0]);
			failed = true;
		}
		if (rx.have_meta && !failed) {
			/* The bytes taken never pass the announced total, nor a piece its size. */
			CHECK(m.written == rx.received && rx.received <= rx.total);
			if (m.open)
				CHECK(m.piece_bytes <= piece_size(&rx.m, rx.piece));
		}
		if (ended) {
			CHECK(!failed && !m.open);
			CHECK(m.written == rx.total);
			CHECK(m.opened == rx.m.nfiles + 1 && m.closed == m.opened);
			for (size_t i = 0; i < m.closed && i < 64; i++)
				CHECK(!memcmp(m.digests[i], piece_sha(&rx.m, i), 32));
			break;
		}
	}
	xfer_rx_free(&rx, &s);
	CHECK(!m.open);
	EVP_MD_CTX_free(m.sha);
	return 0;
}
