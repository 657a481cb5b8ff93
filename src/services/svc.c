#include "services/svc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/jsonstr.h"
#include "base/mem.h"
#include "base/pbdecode.h"
#include "h2/status.h"
#include "store/coll.h"

void *svc_decode(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t len)
{
	ProtobufCMessage *m;
	char err[160];
	return pbdecode(d, data, len, &m, err, sizeof(err)) ? NULL : m;
}

const char *svc_namespace(call *c, const svc_env *env, const char *requested)
{
	if (requested && *requested)
		return requested;
	const call_md *md = call_md_get(c, SVC_NAMESPACE_HEADER);
	if (md && md->value_len) {
		char *ns = call_alloc(c, md->value_len + 1);
		if (ns) {
			memcpy(ns, md->value, md->value_len);
			ns[md->value_len] = 0;
			return ns;
		}
	}
	return env->default_ns;
}

bool svc_check_id(svc_job *j, const char *id)
{
	size_t n = id ? strlen(id) : 0;
	bool ok = n > 0 && n <= SVC_ID_MAX;
	for (size_t i = 0; ok && i < n; i++)
		ok = (unsigned char)id[i] >= 0x20 && id[i] != 0x7f;
	if (!ok)
		svc_job_fail(j, GRPC_INVALID_ARGUMENT,
			     "invalid id: 1 to %d bytes without control characters", SVC_ID_MAX);
	return ok;
}

bool svc_check_name(svc_job *j, const char *what, const char *name)
{
	if (store_name_valid(name))
		return true;
	svc_job_fail(j, GRPC_INVALID_ARGUMENT,
		     "invalid %s name '%.80s': 1 to 63 of A-Z a-z 0-9 _ -, starting with a letter "
		     "or digit",
		     what, name ? name : "");
	return false;
}

Collector__Status__Code svc_status_code(int g)
{
	if (g <= GRPC_INVALID_ARGUMENT && g >= 0)
		return (Collector__Status__Code)g;
	if (g == GRPC_DEADLINE_EXCEEDED)
		return COLLECTOR__STATUS__CODE__UNAVAILABLE;
	if (g == GRPC_UNAUTHENTICATED)
		return COLLECTOR__STATUS__CODE__PERMISSION_DENIED;
	if (g > GRPC_DEADLINE_EXCEEDED && g <= GRPC_DATA_LOSS)
		return (Collector__Status__Code)(g - 1);
	return COLLECTOR__STATUS__CODE__UNKNOWN;
}

void svc_fail_store(svc_job *j, int rc, const char *doing)
{
	int code;
	switch (rc) {
	case -EINVAL:
		code = GRPC_INVALID_ARGUMENT;
		break;
	case -ENOENT:
		code = GRPC_NOT_FOUND;
		break;
	case -EEXIST:
		code = GRPC_ALREADY_EXISTS;
		break;
	case -EAGAIN:
	case -ENOSPC:
	case -ENOMEM:
		code = GRPC_RESOURCE_EXHAUSTED;
		break;
	case -ESHUTDOWN:
		code = GRPC_UNAVAILABLE;
		break;
	default:
		code = GRPC_INTERNAL;
	}
	svc_job_fail(j, code, "%s: %s", doing, store_err_msg());
}

const tp_message *svc_find_type(const svc_env *env, const char *ns,
				const Collector__MessageTypeRef *ref)
{
	if (!ref || !ref->message_name || !*ref->message_name)
		return NULL;
	const char *where = ref->namespace_ && *ref->namespace_ ? ref->namespace_ : ns;
	const tp_message *m = tp_find_message(env->types, where, ref->message_name);
	size_t matches;
	if (!m && !strchr(ref->message_name, '.'))
		m = tp_find_bare(env->types, where, ref->message_name, &matches);
	return m;
}

bool svc_type_url_is(const char *url, const tp_message *m)
{
	const char *slash = url ? strrchr(url, '/') : NULL;
	const char *name = slash ? slash + 1 : url;
	return name && !strcmp(name, tp_message_get(m)->full_name);
}

char *svc_type_url(const tp_message *m, char *buf, size_t cap, char **heap)
{
	const char *name = tp_message_get(m)->full_name;
	size_t pre = strlen(SVC_TYPE_URL_PREFIX), n = strlen(name);
	char *url = buf;
	*heap = NULL;
	if (pre + n + 1 > cap && !(url = *heap = mem_alloc(pre + n + 1)))
		return NULL;
	memcpy(url, SVC_TYPE_URL_PREFIX, pre);
	memcpy(url + pre, name, n + 1);
	return url;
}

void svc_record_any(Google__Protobuf__Any *any, char *url, const void *data, size_t len)
{
	*any = (Google__Protobuf__Any)GOOGLE__PROTOBUF__ANY__INIT;
	any->type_url = url;
	any->value.data = (uint8_t *)data;
	any->value.len = len;
}

bool svc_check_user_ns(svc_job *j, const char *ns)
{
	if (!svc_check_name(j, "namespace", ns))
		return false;
	if (store_ns_reserved(ns)) {
		svc_job_fail(j, GRPC_INVALID_ARGUMENT, "namespace '%s' is reserved for the node",
			     ns);
		return false;
	}
	return true;
}

static char *buf_finish(buf *b, int rc)
{
	if (!rc)
		rc = buf_append(b, "", 1);
	if (rc) {
		buf_free(b);
		return NULL;
	}
	return b->text;
}

char *svc_labels_json(Collector__Metadata__LabelsEntry *const *labels, size_t n)
{
	buf b = {0};
	int rc = buf_append(&b, "{", 1);
	for (size_t i = 0; i < n && !rc; i++) {
		rc = i ? buf_append(&b, ",", 1) : 0;
		rc = rc ? rc : jsonstr_put(&b, labels[i]->key, strlen(labels[i]->key));
		rc = rc ? rc : buf_append(&b, ":", 1);
		rc = rc ? rc : jsonstr_put(&b, labels[i]->value, strlen(labels[i]->value));
	}
	return buf_finish(&b, rc ? rc : buf_append(&b, "}", 1));
}

char *svc_strings_json(char *const *v, size_t n)
{
	buf b = {0};
	int rc = buf_append(&b, "[", 1);
	for (size_t i = 0; i < n && !rc; i++) {
		rc = i ? buf_append(&b, ",", 1) : 0;
		rc = rc ? rc : jsonstr_put(&b, v[i], strlen(v[i]));
	}
	return buf_finish(&b, rc ? rc : buf_append(&b, "]", 1));
}

static void req_job_release(svc_job *j) { mem_free(j); }

void svc_start(call *c, const void *req, const char *req_ns, void (*work)(svc_job *j))
{
	const svc_env *env = call_ctx(c);
	svc_req_job *j = mem_calloc(1, sizeof(*j));
	if (!j) {
		call_finish(c, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	j->j.work = work;
	j->j.release = req_job_release;
	j->env = env;
	j->req = req;
	j->ns = svc_namespace(c, env, req_ns);
	svc_job_run(env->pool, c, &j->j);
}

const char *svc_type_ns(const svc_env *env, const char *ns, const tp_message *m)
{
	return tp_find_message(env->types, NULL, tp_message_get(m)->full_name) == m ? "" : ns;
}

bool svc_schemaless(const tp_message *m)
{
	if (!m)
		return true;
	tp_wkt w = tp_message_get(m)->wkt;
	return w == TP_WKT_STRUCT || w == TP_WKT_VALUE;
}

const tp_field *svc_field_at(const tp_message *m, const query_path *p, bool *whole)
{
	const tp_field *f = NULL;
	*whole = false;
	for (unsigned i = 0; i < p->nseg; i++) {
		const query_path_seg *seg = &p->seg[i];
		f = m ? tp_message_field_by_name(m, seg->name, strlen(seg->name)) : NULL;
		if (!f)
			return NULL;
		if (f->is_map) {
			if (seg->nidx)
				return NULL;
			if (i + 1 == p->nseg) {
				*whole = true;
				return f;
			}
			/* The next segment is a key: the path goes on in the value. */
			const tp_field *key = tp_message_field_by_number(f->message, 1);
			if (!key || key->type != TP_STRING || p->seg[++i].nidx)
				return NULL;
			f = tp_message_field_by_number(f->message, 2);
			if (!f)
				return NULL;
		} else if (f->repeated) {
			if (seg->nidx > 1 || (!seg->nidx && i + 1 < p->nseg))
				return NULL; /* one index reaches an element; lists do not nest */
			*whole = !seg->nidx;
		} else if (seg->nidx) {
			return NULL;
		}
		m = f->message;
	}
	return f;
}

bool svc_indexes_check(svc_job *j, const tp_message *m, char *const *fields, size_t n,
		       svc_indexes *out)
{
	*out = (svc_indexes){0};
	if (n > SVC_MAX_INDEXES) {
		svc_job_fail(j, GRPC_INVALID_ARGUMENT, "at most %d indexed fields",
			     SVC_MAX_INDEXES);
		return false;
	}
	out->exprs = mem_calloc(n ? n : 1, sizeof(*out->exprs));
	out->names = mem_calloc(n ? n : 1, sizeof(*out->names));
	if (!out->exprs || !out->names) {
		svc_job_fail(j, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		const char *f = fields[i];
		if (query_index_field(f, out->exprs[i], out->names[i])) {
			svc_job_fail(j, GRPC_INVALID_ARGUMENT, "indexed field '%.100s': %s", f,
				     store_err_msg());
			return false;
		}
		query_path p;
		bool whole;
		query_path_parse(f, strlen(f), &p);
		if (!svc_schemaless(m) && !svc_field_at(m, &p, &whole)) {
			svc_job_fail(j, GRPC_INVALID_ARGUMENT,
				     "indexed field '%.100s' is not a field of %s", f,
				     tp_message_get(m)->full_name);
			return false;
		}
	}
	out->n = n;
	return true;
}

int svc_indexes_apply(store_coll *c, const svc_indexes *ix)
{
	const char *names[SVC_MAX_INDEXES + 1], *exprs[SVC_MAX_INDEXES + 1];
	for (size_t i = 0; i < ix->n; i++) {
		names[i] = ix->names[i] + 3; /* the store adds the "ix_" itself */
		exprs[i] = ix->exprs[i];
	}
	return store_coll_set_indexes(c, ix->n, names, exprs);
}

void svc_indexes_free(svc_indexes *ix)
{
	mem_free(ix->exprs);
	mem_free(ix->names);
	*ix = (svc_indexes){0};
}
