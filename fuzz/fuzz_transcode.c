/* The protobuf <-> JSON transcoder on arbitrary input, with compiled-in message types or
 * with a FileDescriptorProto from the input itself (random descriptors).
 *
 * Input: byte 0 = flags (bit 0: .proto field names; bit 1: descriptor mode).
 *   compiled-in mode: byte 1 picks a type of TYPES; the rest is the payload.
 *   descriptor mode:  bytes 1-2 = n (little endian), then n bytes of FileDescriptorProto,
 *                     then a byte picking one of its top-level messages; the rest is the
 *                     payload. The file goes into a pool holding the well-known types.
 *
 * Invariants, on the payload read as protobuf and read as JSON: whatever converts, converts
 * back, and a second round gives the same JSON as the first (the output is canonical). */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "google/protobuf/descriptor.pb-c.h"
#include "store/json.h"
#include "store/typepool.h"

extern const uint8_t api_descriptor_set[];
extern const size_t api_descriptor_set_len;

/* fuzz/make_transcode_seeds.py numbers its seeds by this list: change both together. */
static const char *const TYPES[] = {
	"collector.Collection",
	"collector.CollectionDir",
	"collector.SearchRequest",
	"collector.ActiveWorkflow",
	"collector.PushCollectionRequest",
	"collector.BackupMetadata",
	"collector.ResetResponse",
	"collector.RegisterProtoRequest",
	"collector.Execution",
	"collector.BatchRequest",
	"grpc.testing.SimpleRequest",
	"grpc.testing.StreamingOutputCallRequest",
	"grpc.testing.LoadBalancerStatsResponse",
	"grpc.testing.LoadBalancerAccumulatedStatsResponse",
	"grpc.testing.ClientConfigureRequest",
	"google.protobuf.Any",
	"google.protobuf.Struct",
	"google.protobuf.Value",
	"google.protobuf.ListValue",
	"google.protobuf.Timestamp",
	"google.protobuf.Duration",
	"google.protobuf.FieldMask",
	"google.protobuf.Empty",
	"google.protobuf.Int64Value",
	"google.protobuf.UInt32Value",
	"google.protobuf.FloatValue",
	"google.protobuf.DoubleValue",
	"google.protobuf.BytesValue",
	"google.protobuf.FileDescriptorSet",
	"google.protobuf.FieldOptions",
};
#define N_TYPES (sizeof TYPES / sizeof *TYPES)

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: invariant failed: %s: ", __FILE__, __LINE__,       \
				#cond);                                                            \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

static tp_pool *api_pool;
static uint8_t *wkt_set; /* the well-known type files of the API, as a FileDescriptorSet */
static size_t wkt_set_len;

static void init(void)
{
	api_pool = tp_new();
	if (!api_pool || tp_add_set(api_pool, NULL, api_descriptor_set, api_descriptor_set_len)) {
		fprintf(stderr, "fuzz_transcode: %s\n",
			api_pool ? store_err_msg() : "out of memory");
		abort();
	}
	Google__Protobuf__FileDescriptorSet *all = google__protobuf__file_descriptor_set__unpack(
		NULL, api_descriptor_set_len, api_descriptor_set);
	Google__Protobuf__FileDescriptorSet wkt = GOOGLE__PROTOBUF__FILE_DESCRIPTOR_SET__INIT;
	Google__Protobuf__FileDescriptorProto *files[32];
	for (size_t i = 0; all && i < all->n_file && wkt.n_file < 32; i++)
		if (!strncmp(all->file[i]->name, "google/protobuf/", 16) &&
		    strcmp(all->file[i]->name, "google/protobuf/descriptor.proto"))
			files[wkt.n_file++] = all->file[i];
	wkt.file = files;
	wkt_set_len = google__protobuf__file_descriptor_set__get_packed_size(&wkt);
	wkt_set = malloc(wkt_set_len);
	if (!all || !wkt_set)
		abort();
	google__protobuf__file_descriptor_set__pack(&wkt, wkt_set);
	google__protobuf__file_descriptor_set__free_unpacked(all, NULL);
}

/* Whether the store's message was set since it was cleared (store_err_msg()). */
static bool said(void) { return strcmp(store_err_msg(), "no error") != 0; }

/* JSON j1 of some message: it converts to bytes, and those back to j1. */
static void check_stable(tp_pool *tp, const char *ns, const tp_message *m, int flags, const buf *j1)
{
	buf b = BUF_INIT, j2 = BUF_INIT;
	int rc = json_to_proto(tp, ns, m, j1->text, j1->len, &b);
	CHECK(rc == 0, "%s: JSON %s does not convert back: %s", tp_message_get(m)->full_name,
	      j1->text, store_err_msg());
	rc = json_from_proto(tp, ns, m, b.data, b.len, flags, &j2);
	CHECK(rc == 0, "%s: bytes of %s do not convert: %s", tp_message_get(m)->full_name, j1->text,
	      store_err_msg());
	CHECK(j1->len == j2.len && !memcmp(j1->data, j2.data, j2.len), "%s: %s became %s",
	      tp_message_get(m)->full_name, j1->text, j2.text);
	buf_free(&b);
	buf_free(&j2);
}

static void run(tp_pool *tp, const char *ns, const tp_message *m, int flags, const uint8_t *payload,
		size_t len)
{
	buf j = BUF_INIT, b = BUF_INIT;
	/* Cleared first, so that a failure is seen to leave its message. */
	store_err_set(0, "%s", "");
	if (json_from_proto(tp, ns, m, payload, len, flags, &j) == 0)
		check_stable(tp, ns, m, flags, &j);
	else
		CHECK(said() && j.len == 0, "an error without a message");
	j.len = 0;

	store_err_set(0, "%s", "");
	if (json_to_proto(tp, ns, m, (const char *)payload, len, &b) == 0) {
		int rc = json_from_proto(tp, ns, m, b.data, b.len, flags, &j);
		CHECK(rc == 0, "%s: bytes from JSON %.*s do not convert: %s",
		      tp_message_get(m)->full_name, (int)len, (const char *)payload,
		      store_err_msg());
		check_stable(tp, ns, m, flags, &j);
	} else {
		CHECK(said() && b.len == 0, "an error without a message");
	}
	buf_free(&j);
	buf_free(&b);
}

static void with_descriptor(int flags, const uint8_t *data, size_t size)
{
	if (size < 3)
		return;
	size_t n = (size_t)data[0] | (size_t)data[1] << 8;
	if (size < 3 + n)
		return;
	Google__Protobuf__FileDescriptorProto *fdp =
		google__protobuf__file_descriptor_proto__unpack(NULL, n, data + 2);
	if (!fdp)
		return;
	tp_pool *tp = tp_new();
	if (!tp || tp_add_set(tp, NULL, wkt_set, wkt_set_len))
		abort();
	if (tp_add_file(tp, "f", fdp) == 0 && fdp->n_message_type) {
		const Google__Protobuf__DescriptorProto *mp =
			fdp->message_type[data[2 + n] % fdp->n_message_type];
		char name[2100];
		snprintf(name, sizeof name, "%s%s%s", fdp->package ? fdp->package : "",
			 fdp->package && fdp->package[0] ? "." : "", mp->name);
		/* NULL when the file was a copy of a global one, which then stands instead */
		const tp_message *m = tp_find_message(tp, "f", name);
		if (m)
			run(tp, "f", m, flags, data + 3 + n, size - 3 - n);
	}
	google__protobuf__file_descriptor_proto__free_unpacked(fdp, NULL);
	tp_free(tp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!api_pool)
		init();
	if (size < 2)
		return 0;
	int flags = data[0] & 1 ? JSON_PROTO_NAMES : 0;
	if (data[0] & 2) {
		with_descriptor(flags, data + 1, size - 1);
		return 0;
	}
	const tp_message *m = tp_find_message(api_pool, NULL, TYPES[data[1] % N_TYPES]);
	CHECK(m, "no type %s", TYPES[data[1] % N_TYPES]);
	run(api_pool, NULL, m, flags, data + 2, size - 2);
	return 0;
}
