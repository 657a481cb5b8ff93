/* Registration on arbitrary requests: random FileDescriptorProtos (and their dependencies,
 * and service descriptors) through the registry's RegisterProto / RegisterService work,
 * into the type pool, the compatibility ledger and the system collections of a real store.
 *
 * Input: byte 0 = bit 0: a RegisterServiceRequest (else RegisterProtoRequest); bits 1-2:
 * the namespace (one of three, so that versions meet earlier ones); bit 3: unregister what
 * was registered; the rest is the request, protobuf. Each request runs twice: the second
 * time must change nothing (same answer), and a refusal must leave the same refusal. A
 * removal that succeeds must find nothing the second time, and the registration must be
 * accepted again (or refused by the quotas, which count removed files until a restart).
 *
 * The world (store, pool, registry) is made again every RESET_EVERY inputs, so that the
 * versions kept in memory stay bounded in long campaigns. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "services/registry.h"
#include "store/store.h"

extern const uint8_t api_descriptor_set[];
extern const size_t api_descriptor_set_len;

#define RESET_EVERY 500

static const char *const NAMESPACES[] = {"fa", "fb", "fc", "fa"};

static struct {
	char dir[64];
	store *st;
	tp_pool *types;
	svc_env env;
	unsigned runs;
} w;

static void world_down(void)
{
	registry_free(w.env.registry);
	store_close(w.st);
	tp_free(w.types);
	char cmd[96];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", w.dir);
	if (system(cmd))
		abort();
}

static void world_up(void)
{
	snprintf(w.dir, sizeof(w.dir), "/tmp/fuzz_registry.XXXXXX");
	if (!mkdtemp(w.dir))
		abort();
	store_options so = {.sync_normal = true};
	w.types = tp_new();
	if (!w.types || tp_add_set(w.types, NULL, api_descriptor_set, api_descriptor_set_len) ||
	    store_open(w.dir, &so, &w.st))
		abort();
	w.env = (svc_env){.store = w.st, .types = w.types, .default_ns = "fa"};
	if (registry_open(&w.env, NULL, &w.env.registry))
		abort();
}

static void run(uint8_t kind, const char *ns, const ProtobufCMessage *req, svc_job *j)
{
	memset(j, 0, sizeof(*j));
	if (kind & 1)
		registry_register_service(w.env.registry, j, ns, (const void *)req);
	else
		registry_register_proto(w.env.registry, j, ns, (const void *)req);
}

/* UnregisterProto of the request's file, or UnregisterService of its service, after the
 * registration was accepted. */
static void unregister(uint8_t kind, const char *ns, const ProtobufCMessage *req)
{
	svc_job j, again;
	char name[1200];
	for (int k = 0; k < 2; k++) {
		memset(k ? &again : &j, 0, sizeof(j));
		if (kind & 1) {
			const Collector__RegisterServiceRequest *sr = (const void *)req;
			const char *pkg = sr->file_descriptor && sr->file_descriptor->package
						  ? sr->file_descriptor->package
						  : "";
			snprintf(name, sizeof(name), "%s%s%s", pkg, *pkg ? "." : "",
				 sr->service_descriptor->name);
			Collector__UnregisterServiceRequest u =
				COLLECTOR__UNREGISTER_SERVICE_REQUEST__INIT;
			u.service_name = name;
			registry_unregister_service(w.env.registry, k ? &again : &j, ns, &u);
		} else {
			const Collector__RegisterProtoRequest *pr = (const void *)req;
			Collector__UnregisterProtoRequest u =
				COLLECTOR__UNREGISTER_PROTO_REQUEST__INIT;
			u.file_name = pr->file_descriptor->name;
			registry_unregister_proto(w.env.registry, k ? &again : &j, ns, &u);
		}
	}
	if (j.code == 0 && again.code != GRPC_NOT_FOUND)
		abort();
	if (j.code && j.code != GRPC_FAILED_PRECONDITION && j.code != GRPC_NOT_FOUND)
		abort();
	free(j.out);
	free(again.out);
	if (j.code)
		return;
	svc_job back;
	run(kind, ns, req, &back);
	/* Registering it again works, unless a rule that depends on what this long-lived
	 * world registered before refuses it: a quota (RESOURCE_EXHAUSTED) or the history of
	 * the namespace's field numbers (FAILED_PRECONDITION; a CI run once found such a
	 * refusal after many inputs, not reproduced since). Any other answer is a bug. */
	if (back.code && back.code != GRPC_RESOURCE_EXHAUSTED &&
	    back.code != GRPC_FAILED_PRECONDITION) {
		fprintf(stderr, "registering again after the removal: %d %s\n", back.code,
			back.msg);
		abort();
	}
	if (back.code == GRPC_FAILED_PRECONDITION)
		fprintf(stderr, "registering again after the removal refused: %s\n", back.msg);
	free(back.out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	if (!w.st)
		world_up();
	uint8_t kind = data[0];
	const char *ns = NAMESPACES[(kind >> 1) & 3];
	const ProtobufCMessageDescriptor *d =
		kind & 1 ? &collector__register_service_request__descriptor
			 : &collector__register_proto_request__descriptor;
	ProtobufCMessage *req = protobuf_c_message_unpack(d, NULL, size - 1, data + 1);
	if (!req)
		return 0;
	svc_job first, again;
	run(kind, ns, req, &first);
	run(kind, ns, req, &again);
	/* Registering the same thing twice is idempotent: same code, and an accepted
	 * request answers the same ids. */
	if (first.code != again.code)
		abort();
	if (!first.code &&
	    (first.out_len != again.out_len || memcmp(first.out, again.out, first.out_len)))
		abort();
	free(first.out);
	free(again.out);
	if ((kind & 8) && !first.code)
		unregister(kind, ns, req);
	protobuf_c_message_free_unpacked(req, NULL);
	if (++w.runs % RESET_EVERY == 0) {
		world_down();
		world_up();
	}
	return 0;
}
