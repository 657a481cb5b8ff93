#include "cli/cli_transfer.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/mem.h"
#include "base/pbdecode.h"
#include "cli/cli_progress.h"
#include "collector/collection_repo.pb-c.h"
#include "h2/status.h"
#include "store/json.h"

#define MAGIC "COLLECTOR-PULL 1\n"
#define RECORD_MAX (64u << 20)

static int io_fail(const char *path, const char *what)
{
	fprintf(stderr, "collectorctl: %s: %s: %s\n", path, what, strerror(errno ? errno : EIO));
	return CLI_EXIT_IO;
}

static int call_fail(int code, const char *msg)
{
	fprintf(stderr, "collectorctl: %s: %s\n", code < 0 ? "UNAVAILABLE" : grpc_code_name(code),
		msg);
	return code < 0 ? GRPC_UNAVAILABLE : code;
}

static bool put_record(FILE *f, char type, const uint8_t *data, size_t len)
{
	uint32_t n = htonl((uint32_t)len);
	return fputc(type, f) != EOF && fwrite(&n, 4, 1, f) == 1 &&
	       (!len || fwrite(data, len, 1, f) == 1);
}

/* ---- pull ---- */

typedef struct pull_ctx {
	FILE *f;
	cli_progress p;
	int64_t total, done;
	bool meta, failed;
	char why[400];
} pull_ctx;

static int pulled(void *ctx, const uint8_t *data, size_t len)
{
	pull_ctx *x = ctx;
	ProtobufCMessage *m;
	char err[200];
	if (pbdecode(&collector__pull_collection_chunk__descriptor, data, len, &m, err,
		     sizeof(err))) {
		snprintf(x->why, sizeof(x->why), "the node sent a message that does not decode: %s",
			 err);
		return x->failed = true;
	}
	Collector__PullCollectionChunk *ch = (Collector__PullCollectionChunk *)m;
	bool ok;
	if (ch->data_case == COLLECTOR__PULL_COLLECTION_CHUNK__DATA_METADATA && !x->meta) {
		size_t n = protobuf_c_message_get_packed_size(&ch->metadata->base);
		uint8_t *b = mem_alloc(n ? n : 1);
		ok = b != NULL;
		if (ok) {
			protobuf_c_message_pack(&ch->metadata->base, b);
			ok = put_record(x->f, 'M', b, n);
		}
		mem_free(b);
		x->meta = true;
		x->total = ch->metadata->total_size;
	} else if (ch->data_case == COLLECTOR__PULL_COLLECTION_CHUNK__DATA_CHUNK && x->meta) {
		ok = put_record(x->f, 'C', ch->chunk.data, ch->chunk.len);
		x->done += (int64_t)ch->chunk.len;
		cli_progress_update(&x->p, x->done, x->total, "pulling");
	} else {
		snprintf(x->why, sizeof(x->why), "the stream is not metadata then chunks");
		ok = false;
	}
	protobuf_c_message_free_unpacked(m, NULL);
	if (!ok && !x->why[0])
		snprintf(x->why, sizeof(x->why), "cannot write the file: %s", strerror(errno));
	return x->failed = !ok;
}

int cli_pull(cli_conn *c, const char *ns, const char *name, bool files, const char *path)
{
	char part[4200];
	snprintf(part, sizeof(part), "%s.part", path);
	pull_ctx x = {.f = fopen(part, "wb")};
	if (!x.f || fputs(MAGIC, x.f) == EOF)
		return io_fail(part, "cannot write it");
	cli_progress_start(&x.p, stderr, "bytes", true);
	Collector__NamespacedName coll = COLLECTOR__NAMESPACED_NAME__INIT;
	coll.namespace_ = (char *)ns;
	coll.name = (char *)name;
	Collector__PullCollectionRequest req = COLLECTOR__PULL_COLLECTION_REQUEST__INIT;
	req.source_collection = &coll;
	req.include_files = files;
	size_t n = collector__pull_collection_request__get_packed_size(&req);
	uint8_t b[1024];
	if (n > sizeof(b)) {
		fclose(x.f);
		unlink(part);
		fprintf(stderr, "collectorctl: the collection's name is too long\n");
		return 64;
	}
	collector__pull_collection_request__pack(&req, b);
	char msg[1024];
	int code = cli_stream(c, "/collector.CollectionRepo/PullCollection", b, n, pulled, &x, msg,
			      sizeof(msg));
	bool written = code == GRPC_OK && !x.failed && x.meta && fflush(x.f) == 0 &&
		       fsync(fileno(x.f)) == 0;
	fclose(x.f);
	if (!written || rename(part, path)) {
		int e = errno;
		unlink(part);
		if (code != GRPC_OK)
			return call_fail(code, msg);
		errno = e;
		return x.failed ? (fprintf(stderr, "collectorctl: %s\n", x.why), CLI_EXIT_IO)
				: io_fail(path, "cannot write it");
	}
	cli_progress_end(&x.p, x.done, x.total, "pulled");
	return 0;
}

/* ---- push ---- */

typedef struct push_ctx {
	FILE *f;
	const char *dest_ns, *dest_name;
	cli_progress p;
	int64_t total, done;
	uint8_t *rec, *out;
	size_t rec_cap, out_cap;
	bool meta;
	char why[400];
} push_ctx;

/* The next record of the file into x->rec: its type, or 0 at the end, -1 when bad. */
static int next_record(push_ctx *x, size_t *len)
{
	int type = fgetc(x->f);
	if (type == EOF)
		return 0;
	uint32_t n;
	if ((type != 'M' && type != 'C') || fread(&n, 4, 1, x->f) != 1 ||
	    (n = ntohl(n)) > RECORD_MAX) {
		snprintf(x->why, sizeof(x->why), "not a file of collectorctl pull");
		return -1;
	}
	if (n > x->rec_cap) {
		uint8_t *b = mem_realloc(x->rec, n);
		if (!b)
			return -1;
		x->rec = b;
		x->rec_cap = n;
	}
	if (n && fread(x->rec, n, 1, x->f) != 1) {
		snprintf(x->why, sizeof(x->why), "the file ends inside a record");
		return -1;
	}
	*len = n;
	return type;
}

/* The PushCollectionRequest of the next record: the pulled metadata made the push's (the
 * destination named here), then each chunk. */
static int push_next(void *ctx, const uint8_t **data, size_t *len)
{
	push_ctx *x = ctx;
	size_t n;
	int type = next_record(x, &n);
	if (type <= 0)
		return type;
	Collector__PushCollectionRequest r = COLLECTOR__PUSH_COLLECTION_REQUEST__INIT;
	Collector__PushCollectionRequest__Metadata m =
		COLLECTOR__PUSH_COLLECTION_REQUEST__METADATA__INIT;
	Collector__PullCollectionChunk__Metadata *pm = NULL;
	if (type == 'M' && !x->meta) {
		ProtobufCMessage *d;
		char err[200];
		if (pbdecode(&collector__pull_collection_chunk__metadata__descriptor, x->rec, n, &d,
			     err, sizeof(err))) {
			snprintf(x->why, sizeof(x->why), "its metadata does not decode: %s", err);
			return -1;
		}
		pm = (Collector__PullCollectionChunk__Metadata *)d;
		m.dest_namespace = (char *)x->dest_ns;
		m.dest_name = (char *)x->dest_name;
		m.include_files = pm->file_count > 0;
		m.total_size = pm->total_size;
		m.record_count = pm->record_count;
		m.file_count = pm->file_count;
		m.manifest = pm->manifest;
		r.data_case = COLLECTOR__PUSH_COLLECTION_REQUEST__DATA_METADATA;
		r.metadata = &m;
		x->meta = true;
		x->total = pm->total_size;
	} else if (type == 'C' && x->meta) {
		r.data_case = COLLECTOR__PUSH_COLLECTION_REQUEST__DATA_CHUNK;
		r.chunk.data = x->rec;
		r.chunk.len = n;
		x->done += (int64_t)n;
		cli_progress_update(&x->p, x->done, x->total, "pushing");
	} else {
		snprintf(x->why, sizeof(x->why), "not a file of collectorctl pull");
		return -1;
	}
	size_t size = collector__push_collection_request__get_packed_size(&r);
	int rc = 1;
	if (size > x->out_cap) {
		uint8_t *b = mem_realloc(x->out, size);
		if (b) {
			x->out = b;
			x->out_cap = size;
		}
		rc = b ? 1 : -1;
	}
	if (rc > 0) {
		collector__push_collection_request__pack(&r, x->out);
		*data = x->out;
		*len = size;
	}
	if (pm)
		protobuf_c_message_free_unpacked(&pm->base, NULL);
	return rc;
}

int cli_push(cli_conn *c, const char *path, const char *dest_ns, const char *dest_name)
{
	push_ctx x = {.f = fopen(path, "rb"), .dest_ns = dest_ns, .dest_name = dest_name};
	char magic[sizeof(MAGIC)];
	if (!x.f)
		return io_fail(path, "cannot read it");
	if (fread(magic, sizeof(MAGIC) - 1, 1, x.f) != 1 ||
	    memcmp(magic, MAGIC, sizeof(MAGIC) - 1)) {
		fclose(x.f);
		fprintf(stderr, "collectorctl: %s: not a file of collectorctl pull\n", path);
		return CLI_EXIT_IO;
	}
	cli_progress_start(&x.p, stderr, "bytes", true);
	buf resp = BUF_INIT, out = BUF_INIT;
	char msg[1024];
	int code = cli_client_stream(c, "/collector.CollectionRepo/PushCollection", push_next, &x,
				     &resp, msg, sizeof(msg));
	fclose(x.f);
	mem_free(x.rec);
	mem_free(x.out);
	int rc = 0;
	if (code != GRPC_OK) {
		rc = x.why[0]
			     ? (fprintf(stderr, "collectorctl: %s: %s\n", path, x.why), CLI_EXIT_IO)
			     : call_fail(code, msg);
	} else {
		cli_progress_end(&x.p, x.done, x.total, "pushed");
		const tp_message *t =
			tp_find_message(cli_types(c), NULL, "collector.PushCollectionResponse");
		if (t && !json_from_proto(cli_types(c), NULL, t, resp.data, resp.len, 0, &out))
			printf("%.*s\n", (int)out.len, out.text);
	}
	buf_free(&resp);
	buf_free(&out);
	return rc;
}
