/* The mesh's table (services/mesh.h) fed what peers send: ConnectRequests (an initiator's
 * link or heartbeat) and ConnectResponses (a target's answer), as raw protobuf bytes
 * decoded with the node's bounds, between routing choices, ageing and the packed lists.
 *
 * Input: chunks separated by "\xff\xfe\xfd\xfc"; a chunk's first byte picks the step, the
 * rest is its payload:
 *   0 a ConnectRequest from the peer whose id is the payload's first byte as "p<n>"
 *   1 a ConnectResponse to a heartbeat of the outbound peer 127.0.0.1:<first byte>
 *   2 a choice: namespace, service and target from the payload, then its release
 *   3 time passes (first byte x 100 ms): peers age
 *   4 a link removed (by the first byte's outbound address)
 *   5 a dispatch logged, its fields from the payload
 *
 * Invariants: the table never holds more than MESH_PEERS_MAX peers; every list it packs
 * decodes again; a node's id is on one inbound link at most, never beside another record;
 * a choice names a peer that is up, shares the namespace and has a call outstanding until
 * released; what a node says of itself has no name twice. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "base/pbdecode.h"
#include "collector/dispatcher.pb-c.h"
#include "services/mesh.h"
#include "services/svc.h"

#include "fuzz_check.h"

static const uint8_t SEP[4] = {0xff, 0xfe, 0xfd, 0xfc};

static void services(void *ctx, void (*add)(void *acc, const char *ns_service), void *acc)
{
	(void)ctx;
	add(acc, "default/shop.Orders");
	add(acc, "default/shop.Orders"); /* twice: said once */
}

static const char *label(const Collector__Collector *c, const char *key)
{
	for (size_t i = 0; c->metadata && i < c->metadata->n_labels; i++)
		if (!strcmp(c->metadata->labels[i]->key, key))
			return c->metadata->labels[i]->value;
	return "";
}

static void check_lists(mesh *m, int64_t now)
{
	size_t len;
	uint8_t *b = mesh_pack_peers(m, now, &len);
	if (!b)
		return;
	Collector__ListPeersResponse *r =
		svc_decode(&collector__list_peers_response__descriptor, b, len);
	CHECK(r);
	size_t direct = 0;
	for (size_t i = 0; i < r->n_collectors; i++) {
		const Collector__Collector *a = r->collectors[i];
		direct += a->is_direct_peer;
		/* One node, one inbound link: an id twice among direct peers is two outbound
		 * addresses of one node, never an inbound record beside another. */
		for (size_t k = 0; k < i && a->is_direct_peer && *a->id; k++) {
			const Collector__Collector *b = r->collectors[k];
			if (b->is_direct_peer && !strcmp(a->id, b->id))
				CHECK(!strcmp(label(a, "direction"), "outbound") &&
				      !strcmp(label(b, "direction"), "outbound"));
		}
	}
	CHECK(direct <= MESH_PEERS_MAX);
	collector__list_peers_response__free_unpacked(r, NULL);
	mem_free(b);
	b = mesh_pack_dispatches(m, 0, &len);
	if (b) {
		ProtobufCMessage *pm = NULL;
		char err[200];
		if (pbdecode(&collector__list_dispatches_response__descriptor, b, len, &pm, err,
			     sizeof(err)))
			fprintf(stderr, "ListDispatchesResponse does not decode: %s\n", err);
		Collector__ListDispatchesResponse *d = (void *)pm;
		CHECK(d && d->n_dispatches <= MESH_LOG_MAX);
		collector__list_dispatches_response__free_unpacked(d, NULL);
		mem_free(b);
	}
	mesh_info info;
	if (!mesh_info_self(m, &info)) {
		for (size_t i = 0; i < info.npeer_services; i++)
			for (size_t k = 0; k < i; k++)
				CHECK(strcmp(info.peer_services[i], info.peer_services[k]));
		CHECK(info.nservices == 1);
		mesh_info_free(&info);
	}
}

/* A NUL-terminated copy of a piece of the payload, at most cap-1 bytes. */
static void piece(const uint8_t *p, size_t n, size_t from, size_t len, char *out, size_t cap)
{
	size_t k = 0;
	for (size_t i = from; i < n && k < len && k + 1 < cap; i++)
		out[k++] = p[i] ? (char)p[i] : '_';
	out[k] = 0;
}

static void step(mesh *m, const uint8_t *p, size_t n, int64_t *now)
{
	if (!n)
		return;
	uint8_t op = p[0] % 6;
	p++;
	n--;
	uint8_t first = n ? p[0] : 0;
	char addr[32];
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", first + 1);
	if (op == 0) {
		Collector__ConnectRequest *req = svc_decode(&collector__connect_request__descriptor,
							    p + (n > 0), n - (n > 0));
		if (!req)
			return;
		char id[8];
		snprintf(id, sizeof(id), "p%u", first % 32);
		char **shared;
		size_t nshared;
		char conn[64];
		const char *why = NULL;
		if (!mesh_accept(m, id, req, *now, &shared, &nshared, conn, sizeof(conn), &why))
			mesh_strings_free(shared, nshared);
		else
			CHECK(why && *why);
		collector__connect_request__free_unpacked(req, NULL);
	} else if (op == 1) {
		mesh_add_outbound(m, addr, NULL, 0, MESH_CONFIGURED);
		char due[MESH_PEERS_MAX][MESH_ADDR_MAX];
		mesh_due(m, *now, due, MESH_PEERS_MAX);
		Collector__ConnectResponse *r = svc_decode(&collector__connect_response__descriptor,
							   p + (n > 0), n - (n > 0));
		mesh_beat_result(m, addr, r, r ? NULL : "failed", *now);
		if (r)
			collector__connect_response__free_unpacked(r, NULL);
	} else if (op == 2) {
		char ns[16], svc[32], target[16];
		piece(p, n, 0, 8, ns, sizeof(ns));
		piece(p, n, 8, 16, svc, sizeof(svc));
		piece(p, n, 24, 8, target, sizeof(target));
		mesh_want w = {.ns = ns,
			       .service = svc,
			       .target = first & 1 ? target : NULL,
			       .everywhere = first & 2,
			       .round_robin = first & 4};
		mesh_choice c;
		if (!mesh_choose(m, &w, &c)) {
			CHECK(*c.id && *c.address);
			mesh_release(m, c.id);
		}
	} else if (op == 3) {
		*now += (int64_t)first * 100 * 1000 * 1000;
		mesh_age(m, *now);
	} else if (op == 4) {
		bool stored;
		char out[MESH_ADDR_MAX];
		mesh_remove(m, addr, &stored, out, sizeof(out));
	} else {
		char a[16], b[16];
		piece(p, n, 1, 8, a, sizeof(a));
		piece(p, n, 9, 8, b, sizeof(b));
		mesh_record rec = {.ns = a,
				   .service = b,
				   .method = a,
				   .source = b,
				   .handled_by = a,
				   .code = first % 17,
				   .message = b};
		mesh_log(m, &rec);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *ns[] = {"default", "orders"};
	mesh_opts o = {.self_id = "self",
		       .advertise = "127.0.0.1:1",
		       .namespaces = ns,
		       .nns = 2,
		       .max_outstanding = 2};
	mesh *m = mesh_new(&o);
	if (!m)
		return 0;
	mesh_set_services(m, services, NULL, NULL);
	int64_t now = 1;
	size_t start = 0;
	for (size_t i = 0; i + sizeof(SEP) <= size; i++) {
		if (memcmp(data + i, SEP, sizeof(SEP)))
			continue;
		step(m, data + start, i - start, &now);
		start = i + sizeof(SEP);
		i = start - 1;
	}
	step(m, data + start, size - start, &now);
	check_lists(m, now);
	mesh_free(m);
	return 0;
}
