/* Records of untyped collections (services/coll_any.h) on arbitrary input: the Any a
 * client writes, and the stored bytes the node reads back.
 *
 * Input: a type URL, a 0x00 byte, then the value (no 0x00: the whole input is the value
 * under an empty URL). The Any is classified as Create does it; the input as a whole is
 * also read as a stored record.
 *
 * Invariants: a record's JSON is valid JSON; a JSON record's is the value's object
 * text; an opaque one's is null; a refusal says why; the stored form reads back as the very URL
 * and value written; whatever the stored bytes, reading them never crashes and what
 * reads back lies within them. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "services/coll_any.h"
#include "store/jdoc.h"
#include "store/json.h"
#include "store/typepool.h"

#include "fuzz_check.h"

extern const uint8_t api_descriptor_set[];
extern const size_t api_descriptor_set_len;

static tp_pool *tp;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	tp = tp_new();
	if (!tp || tp_add_set(tp, NULL, api_descriptor_set, api_descriptor_set_len))
		abort();
	return 0;
}

static void check_stored(const uint8_t *data, size_t size)
{
	coll_any_parts parts;
	if (coll_any_split(data, size, &parts))
		return;
	CHECK(parts.url_len <= size && parts.value_len <= size);
	CHECK(!parts.url_len || ((const uint8_t *)parts.url >= data &&
				 (const uint8_t *)parts.url + parts.url_len <= data + size));
	CHECK(!parts.value_len ||
	      (parts.value >= data && parts.value + parts.value_len <= data + size));
	Google__Protobuf__Any any;
	uint8_t *block;
	CHECK(coll_any_unpack(data, size, &any, &block) == 0);
	CHECK(strlen(any.type_url) == parts.url_len && any.value.len == parts.value_len);
	mem_free(block);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check_stored(data, size);
	const uint8_t *nul = memchr(data, 0, size);
	size_t ulen = nul ? (size_t)(nul - data) : 0;
	char *url = mem_alloc(ulen + 1);
	CHECK(url);
	memcpy(url, data, ulen);
	url[ulen] = '\0';
	const uint8_t *value = nul ? nul + 1 : data;
	size_t vlen = size - (size_t)(value - data);

	Google__Protobuf__Any item = GOOGLE__PROTOBUF__ANY__INIT;
	item.type_url = url;
	item.value.data = (uint8_t *)value;
	item.value.len = vlen;
	buf json = BUF_INIT, stored = BUF_INIT;
	char why[256] = "";
	const tp_message *m = NULL;
	int k = coll_any_classify(tp, "fuzz", &item, &json, &m, why, sizeof why);
	if (k < 0) {
		CHECK(k == -EINVAL || k == -ENOMEM);
		CHECK(k == -ENOMEM || why[0]);
	} else {
		CHECK(json.text && strlen(json.text) == json.len);
		/* A message's JSON need not be an object (google.protobuf.Value, wrappers). */
		if (k == COLL_ANY_OPAQUE)
			CHECK(!strcmp(json.text, COLL_ANY_OPAQUE_JSON));
		else if (k == COLL_ANY_JSON)
			CHECK(json.text[0] == '{');
		CHECK(k != COLL_ANY_TYPED || m);
		jdoc d;
		/* What the writer's full-text reader takes: a record's JSON at most this deep. */
		CHECK(jdoc_parse(&d, json.text, json.len, 2 * JSON_MAX_DEPTH + 2) == 0);
		jdoc_free(&d);
		CHECK(coll_any_pack(url, value, vlen, &stored) == 0);
		Google__Protobuf__Any back;
		uint8_t *block;
		CHECK(coll_any_unpack(stored.data, stored.len, &back, &block) == 0);
		CHECK(!strcmp(back.type_url, url));
		CHECK(back.value.len == vlen && (!vlen || !memcmp(back.value.data, value, vlen)));
		mem_free(block);
	}
	buf_free(&json);
	buf_free(&stored);
	mem_free(url);
	return 0;
}
