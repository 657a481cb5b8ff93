#include "services/coll_any.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/mem.h"
#include "store/jdoc.h"
#include "store/json.h"
#include "store/pbwire.h"

static bool blank(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

int coll_any_json_object(const uint8_t *value, size_t len, buf *json, char *why, size_t cap)
{
	size_t a = 0, e = len;
	while (a < e && blank(value[a]))
		a++;
	while (e > a && blank(value[e - 1]))
		e--;
	if (e - a < 2 || value[a] != '{' || value[e - 1] != '}')
		return 0;
	jdoc d;
	int rc = jdoc_parse(&d, (const char *)value + a, e - a, JSON_MAX_DEPTH);
	jdoc_free(&d);
	if (rc == -ENOMEM)
		return rc;
	if (rc) {
		snprintf(why, cap, "the value looks like a JSON object but is not one: %s",
			 store_err_msg());
		return -EINVAL;
	}
	/* Valid JSON holds no NUL byte: the text is a C string as it is. */
	buf_reset(json);
	buf_append(json, value + a, e - a);
	return buf_terminate(json) ? -ENOMEM : 1;
}

int coll_any_classify(tp_pool *types, const char *ns, const Google__Protobuf__Any *item, buf *json,
		      const tp_message **m, char *why, size_t cap)
{
	const char *url = item->type_url ? item->type_url : "";
	const uint8_t *v = item->value.data;
	size_t len = item->value.len;
	*m = tp_find_type_url(types, ns, url, strlen(url));
	if (*m) {
		buf_reset(json);
		int rc = json_from_proto(types, ns, *m, v, len, JSON_PROTO_NAMES, json);
		if (rc == 0)
			return COLL_ANY_TYPED;
		if (rc == -ENOMEM)
			return rc;
		char err[200];
		snprintf(err, sizeof(err), "%s", store_err_msg());
		rc = coll_any_json_object(v, len, json, why, cap);
		if (rc > 0)
			*m = NULL;
		if (rc)
			return rc < 0 ? rc : COLL_ANY_JSON;
		snprintf(why, cap, "item is neither a valid %s (%s) nor a JSON object",
			 tp_message_get(*m)->full_name, err);
		return -EINVAL;
	}
	int rc = coll_any_json_object(v, len, json, why, cap);
	if (rc)
		return rc < 0 ? rc : COLL_ANY_JSON;
	buf_reset(json);
	buf_puts(json, COLL_ANY_OPAQUE_JSON);
	return buf_terminate(json) ? -ENOMEM : COLL_ANY_OPAQUE;
}

int coll_any_pack(const char *type_url, const uint8_t *value, size_t len, buf *out)
{
	Google__Protobuf__Any a = GOOGLE__PROTOBUF__ANY__INIT;
	a.type_url = (char *)(type_url ? type_url : "");
	a.value.data = (uint8_t *)value;
	a.value.len = len;
	size_t n = google__protobuf__any__get_packed_size(&a);
	buf_reset(out);
	if (buf_reserve(out, n ? n : 1))
		return -ENOMEM;
	out->len = google__protobuf__any__pack(&a, out->data);
	return 0;
}

int coll_any_split(const void *data, size_t len, coll_any_parts *out)
{
	/* An empty record may come as NULL (SQLite's empty blob): no pointer arithmetic on it. */
	const uint8_t *p = data ? data : (const uint8_t *)"", *end = p + (data ? len : 0);
	*out = (coll_any_parts){.url = "", .value = (const uint8_t *)""};
	while (p < end) {
		uint64_t tag, n;
		size_t k = pb_get_varint(p, end, &tag);
		if (!k || (tag & 7) != PB_LEN || (tag >> 3 != 1 && tag >> 3 != 2))
			return -EINVAL;
		p += k;
		k = pb_get_varint(p, end, &n);
		if (!k || n > (uint64_t)((size_t)(end - p) - k))
			return -EINVAL;
		p += k;
		if (tag >> 3 == 1) {
			/* A C string on the way out: a NUL inside would cut it. */
			if (memchr(p, 0, n))
				return -EINVAL;
			out->url = (const char *)p;
			out->url_len = n;
		} else {
			out->value = p;
			out->value_len = n;
		}
		p += n;
	}
	return 0;
}

int coll_any_unpack(const void *data, size_t len, Google__Protobuf__Any *any, uint8_t **block)
{
	coll_any_parts parts;
	*block = NULL;
	if (coll_any_split(data, len, &parts))
		return -EINVAL;
	uint8_t *b = mem_alloc(parts.value_len + parts.url_len + 1);
	if (!b)
		return -ENOMEM;
	if (parts.value_len)
		memcpy(b, parts.value, parts.value_len);
	char *url = (char *)b + parts.value_len;
	memcpy(url, parts.url, parts.url_len);
	url[parts.url_len] = '\0';
	*any = (Google__Protobuf__Any)GOOGLE__PROTOBUF__ANY__INIT;
	any->type_url = url;
	any->value.data = b;
	any->value.len = parts.value_len;
	*block = b;
	return 0;
}
