#include "store/manifest.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base64.h"
#include "base/hex.h"
#include "base/jsonstr.h"
#include "base/mem.h"
#include "store/err.h"
#include "store/files.h"
#include "store/jdoc.h"

int manifest_add_file(manifest *m, const char *path, int64_t size,
		      const uint8_t sha256[SNAPSHOT_SHA256_LEN])
{
	if (m->nfiles == m->files_cap) {
		size_t cap = m->files_cap ? 2 * m->files_cap : 16;
		void *v = mem_realloc(m->files, cap * sizeof(*m->files));
		if (!v)
			return -ENOMEM;
		m->files = v;
		m->files_cap = cap;
	}
	char *p = mem_strdup(path);
	if (!p)
		return -ENOMEM;
	manifest_file *f = &m->files[m->nfiles++];
	f->path = p;
	f->size = size;
	memcpy(f->sha256, sha256, SNAPSHOT_SHA256_LEN);
	return 0;
}

void manifest_free(manifest *m)
{
	for (size_t i = 0; i < m->nfiles; i++)
		mem_free(m->files[i].path);
	mem_free(m->files);
	mem_free(m->definition.data);
	for (size_t i = 0; i < m->ntype_files; i++)
		mem_free(m->type_files[i].data);
	mem_free(m->type_files);
	memset(m, 0, sizeof(*m));
}

/* --- writing ------------------------------------------------------------------------------ */

static void put_key(buf *b, const char *k)
{
	buf_putc(b, '"');
	buf_puts(b, k);
	buf_puts(b, "\":");
}

static int put_str(buf *b, const char *k, const char *v)
{
	put_key(b, k);
	return jsonstr_put(b, v, strlen(v));
}

static void put_int(buf *b, const char *k, int64_t v)
{
	char n[32];
	snprintf(n, sizeof(n), "%" PRId64, v);
	put_key(b, k);
	buf_puts(b, n);
}

static void put_sha(buf *b, const uint8_t sha[SNAPSHOT_SHA256_LEN])
{
	char hex[2 * SNAPSHOT_SHA256_LEN + 1];
	hex_encode(hex, sha, SNAPSHOT_SHA256_LEN);
	hex[2 * SNAPSHOT_SHA256_LEN] = 0;
	put_key(b, "sha256");
	buf_putc(b, '"');
	buf_puts(b, hex);
	buf_putc(b, '"');
}

static void put_blob(buf *b, const manifest_blob *v)
{
	buf_putc(b, '"');
	base64_put(b, v->data, v->len, 0);
	buf_putc(b, '"');
}

int manifest_write(const manifest *m, buf *b)
{
	int rc = 0;
	buf_putc(b, '{');
	put_int(b, "format", MANIFEST_FORMAT);
	buf_putc(b, ',');
	rc |= put_str(b, "backup_id", m->backup_id);
	buf_putc(b, ',');
	rc |= put_str(b, "namespace", m->ns);
	buf_putc(b, ',');
	rc |= put_str(b, "collection", m->name);
	buf_putc(b, ',');
	put_int(b, "timestamp_us", m->timestamp_us);
	buf_putc(b, ',');
	put_int(b, "records", m->records);
	buf_puts(b, ",\"database\":{");
	rc |= put_str(b, "path", SNAPSHOT_DB_NAME);
	buf_putc(b, ',');
	put_int(b, "size", m->db_size);
	buf_putc(b, ',');
	put_sha(b, m->db_sha256);
	buf_puts(b, "},");
	put_key(b, "include_files");
	buf_puts(b, m->include_files ? "true," : "false,");
	put_int(b, "file_count", m->file_count);
	buf_putc(b, ',');
	put_int(b, "file_bytes", m->file_bytes);
	buf_puts(b, ",\"files\":[");
	for (size_t i = 0; i < m->nfiles; i++) {
		buf_puts(b, i ? ",\n{" : "\n{");
		rc |= put_str(b, "path", m->files[i].path);
		buf_putc(b, ',');
		put_int(b, "size", m->files[i].size);
		buf_putc(b, ',');
		put_sha(b, m->files[i].sha256);
		buf_putc(b, '}');
	}
	buf_puts(b, "],\n\"definition\":");
	put_blob(b, &m->definition);
	buf_putc(b, ',');
	rc |= put_str(b, "type_namespace", m->type_ns);
	buf_puts(b, ",\"type_files\":[");
	for (size_t i = 0; i < m->ntype_files; i++) {
		if (i)
			buf_putc(b, ',');
		put_blob(b, &m->type_files[i]);
	}
	buf_puts(b, "]}\n");
	if (rc)
		return rc < 0 ? -EILSEQ : -EINVAL;
	return b->failed ? -ENOMEM : 0;
}

/* --- parsing -------------------------------------------------------------------------------- */

typedef struct pctx {
	jdoc d;
	manifest *m;
} pctx;

static int bad(const char *what) { return store_err_set(-EINVAL, "manifest: %s", what); }

/* A string node into dst (cap bytes with the NUL); -EINVAL when not a string or too long
 * or holding a NUL. */
static int get_str(pctx *c, const jdoc_node *j, char *dst, size_t cap, const char *what)
{
	if (j->type != JDOC_STRING || j->ulen >= cap)
		return store_err_set(-EINVAL, "manifest: %s is not a string of at most %zu bytes",
				     what, cap - 1);
	jdoc_unescape(&c->d, j, dst);
	dst[j->ulen] = 0;
	if (strlen(dst) != j->ulen)
		return store_err_set(-EINVAL, "manifest: %s holds a NUL", what);
	return 0;
}

static int get_int(pctx *c, const jdoc_node *j, int64_t *out, const char *what)
{
	char t[24];
	if (j->type != JDOC_NUMBER || j->esc || j->len >= sizeof(t))
		return store_err_set(-EINVAL, "manifest: %s is not an integer", what);
	memcpy(t, c->d.src + j->off, j->len);
	t[j->len] = 0;
	char *end;
	errno = 0;
	long long v = strtoll(t, &end, 10);
	if (errno || *end || v < 0)
		return store_err_set(-EINVAL, "manifest: %s is not an integer >= 0", what);
	*out = v;
	return 0;
}

static int get_sha(pctx *c, const jdoc_node *j, uint8_t out[SNAPSHOT_SHA256_LEN], const char *what)
{
	char t[2 * SNAPSHOT_SHA256_LEN + 1];
	int rc = get_str(c, j, t, sizeof(t), what);
	if (rc)
		return rc;
	if (strlen(t) != 2 * SNAPSHOT_SHA256_LEN)
		return store_err_set(-EINVAL, "manifest: %s is not 64 hex digits", what);
	for (size_t i = 0; i < SNAPSHOT_SHA256_LEN; i++) {
		int hi = hex_value((unsigned char)t[2 * i]),
		    lo = hex_value((unsigned char)t[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return store_err_set(-EINVAL, "manifest: %s is not 64 hex digits", what);
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

static int get_blob(pctx *c, const jdoc_node *j, manifest_blob *out, const char *what)
{
	if (j->type != JDOC_STRING || j->esc)
		return store_err_set(-EINVAL, "manifest: %s is not base64", what);
	buf b = BUF_INIT;
	int rc = base64_put_decoded(&b, c->d.src + j->off, j->len, 0);
	if (rc) {
		buf_free(&b);
		return rc == -ENOMEM ? store_err_set(rc, "out of memory")
				     : store_err_set(-EINVAL, "manifest: %s is not base64", what);
	}
	out->data = b.data;
	out->len = b.len;
	return 0;
}

/* Calls fn for each member of the object at index i. */
typedef int (*member_fn)(pctx *c, const jdoc_node *key, uint32_t vi, void *arg);

static int each_member(pctx *c, uint32_t i, member_fn fn, void *arg, const char *what)
{
	const jdoc_node *o = &c->d.nodes[i];
	if (o->type != JDOC_OBJECT)
		return store_err_set(-EINVAL, "manifest: %s is not an object", what);
	for (uint32_t k = i + 1; k < o->end;) {
		uint32_t v = k + 1;
		int rc = fn(c, &c->d.nodes[k], v, arg);
		if (rc)
			return rc;
		k = c->d.nodes[v].end;
	}
	return 0;
}

static bool key_is(pctx *c, const jdoc_node *k, const char *s)
{
	return jdoc_string_eq(&c->d, k, s, strlen(s));
}

typedef struct file_seen {
	manifest_file f;
	char path[FILES_PATH_MAX + 1];
	unsigned have;
} file_seen;

static int file_member(pctx *c, const jdoc_node *k, uint32_t vi, void *arg)
{
	file_seen *s = arg;
	const jdoc_node *v = &c->d.nodes[vi];
	if (key_is(c, k, "path")) {
		s->have |= 1;
		int rc = get_str(c, v, s->path, sizeof(s->path), "a file's path");
		if (!rc && files_path_check(s->path))
			rc = bad("a file's path is not a relative path inside the tree");
		return rc;
	}
	if (key_is(c, k, "size")) {
		s->have |= 2;
		return get_int(c, v, &s->f.size, "a file's size");
	}
	if (key_is(c, k, "sha256")) {
		s->have |= 4;
		return get_sha(c, v, s->f.sha256, "a file's sha256");
	}
	return 0;
}

static int db_member(pctx *c, const jdoc_node *k, uint32_t vi, void *arg)
{
	unsigned *have = arg;
	const jdoc_node *v = &c->d.nodes[vi];
	if (key_is(c, k, "path")) {
		char p[32];
		*have |= 1;
		int rc = get_str(c, v, p, sizeof(p), "database.path");
		return rc			     ? rc
		       : strcmp(p, SNAPSHOT_DB_NAME) ? bad("database.path is not records.db")
						     : 0;
	}
	if (key_is(c, k, "size")) {
		*have |= 2;
		return get_int(c, v, &c->m->db_size, "database.size");
	}
	if (key_is(c, k, "sha256")) {
		*have |= 4;
		return get_sha(c, v, c->m->db_sha256, "database.sha256");
	}
	return 0;
}

static int parse_files(pctx *c, uint32_t i)
{
	const jdoc_node *a = &c->d.nodes[i];
	if (a->type != JDOC_ARRAY)
		return bad("files is not an array");
	if (a->len > MANIFEST_MAX_FILES)
		return bad("too many files");
	for (uint32_t k = i + 1; k < a->end; k = c->d.nodes[k].end) {
		file_seen *s = mem_calloc(1, sizeof(*s));
		if (!s)
			return store_err_set(-ENOMEM, "out of memory");
		int rc = each_member(c, k, file_member, s, "a file entry");
		if (!rc && s->have != 7)
			rc = bad("a file entry lacks path, size or sha256");
		if (!rc)
			rc = manifest_add_file(c->m, s->path, s->f.size, s->f.sha256);
		mem_free(s);
		if (rc)
			return rc == -ENOMEM ? store_err_set(rc, "out of memory") : rc;
	}
	return 0;
}

static int parse_types(pctx *c, uint32_t i)
{
	const jdoc_node *a = &c->d.nodes[i];
	if (a->type != JDOC_ARRAY)
		return bad("type_files is not an array");
	if (a->len > MANIFEST_MAX_TYPE_FILES)
		return bad("too many type_files");
	manifest *m = c->m;
	m->type_files = mem_calloc(a->len ? a->len : 1, sizeof(*m->type_files));
	if (!m->type_files)
		return store_err_set(-ENOMEM, "out of memory");
	for (uint32_t k = i + 1; k < a->end; k = c->d.nodes[k].end) {
		int rc = get_blob(c, &c->d.nodes[k], &m->type_files[m->ntype_files], "a type file");
		if (rc)
			return rc;
		m->ntype_files++;
	}
	return 0;
}

enum {
	HAVE_FORMAT = 1 << 0,
	HAVE_ID = 1 << 1,
	HAVE_NS = 1 << 2,
	HAVE_NAME = 1 << 3,
	HAVE_TS = 1 << 4,
	HAVE_RECORDS = 1 << 5,
	HAVE_DB = 1 << 6,
	HAVE_FILES = 1 << 7,
	HAVE_DEF = 1 << 8,
	HAVE_ALL = (1 << 9) - 1,
};

static int top_member(pctx *c, const jdoc_node *k, uint32_t vi, void *arg)
{
	unsigned *have = arg;
	manifest *m = c->m;
	const jdoc_node *v = &c->d.nodes[vi];
	int64_t n;
	int rc = 0;
	if (key_is(c, k, "format")) {
		*have |= HAVE_FORMAT;
		rc = get_int(c, v, &n, "format");
		if (!rc && n != MANIFEST_FORMAT)
			rc = bad("unknown format");
	} else if (key_is(c, k, "backup_id")) {
		*have |= HAVE_ID;
		rc = get_str(c, v, m->backup_id, sizeof(m->backup_id), "backup_id");
	} else if (key_is(c, k, "namespace")) {
		*have |= HAVE_NS;
		rc = get_str(c, v, m->ns, sizeof(m->ns), "namespace");
		if (!rc && !store_name_valid(m->ns))
			rc = bad("namespace is not a valid name");
	} else if (key_is(c, k, "collection")) {
		*have |= HAVE_NAME;
		rc = get_str(c, v, m->name, sizeof(m->name), "collection");
		if (!rc && !store_name_valid(m->name))
			rc = bad("collection is not a valid name");
	} else if (key_is(c, k, "timestamp_us")) {
		*have |= HAVE_TS;
		rc = get_int(c, v, &m->timestamp_us, "timestamp_us");
	} else if (key_is(c, k, "records")) {
		*have |= HAVE_RECORDS;
		rc = get_int(c, v, &m->records, "records");
	} else if (key_is(c, k, "database")) {
		unsigned dh = 0;
		rc = each_member(c, vi, db_member, &dh, "database");
		if (!rc && dh != 7)
			rc = bad("database lacks path, size or sha256");
		*have |= HAVE_DB;
	} else if (key_is(c, k, "include_files")) {
		if (v->type != JDOC_TRUE && v->type != JDOC_FALSE)
			rc = bad("include_files is not a boolean");
		m->include_files = v->type == JDOC_TRUE;
	} else if (key_is(c, k, "file_count")) {
		rc = get_int(c, v, &m->file_count, "file_count");
	} else if (key_is(c, k, "file_bytes")) {
		rc = get_int(c, v, &m->file_bytes, "file_bytes");
	} else if (key_is(c, k, "files")) {
		if (*have & HAVE_FILES)
			return bad("files given twice");
		*have |= HAVE_FILES;
		rc = parse_files(c, vi);
	} else if (key_is(c, k, "definition")) {
		if (*have & HAVE_DEF)
			return bad("definition given twice");
		*have |= HAVE_DEF;
		rc = get_blob(c, v, &m->definition, "definition");
	} else if (key_is(c, k, "type_namespace")) {
		rc = get_str(c, v, m->type_ns, sizeof(m->type_ns), "type_namespace");
	} else if (key_is(c, k, "type_files")) {
		if (m->type_files)
			return bad("type_files given twice");
		rc = parse_types(c, vi);
	}
	return rc;
}

int manifest_parse(const char *text, size_t len, manifest *m)
{
	memset(m, 0, sizeof(*m));
	if (len > MANIFEST_MAX_BYTES)
		return bad("larger than 256 MiB");
	pctx c = {.m = m};
	int rc = jdoc_parse(&c.d, text, len, 8);
	if (rc) {
		int r2 = rc == -ENOMEM ? rc
				       : store_err_set(-EINVAL, "manifest: %s", store_err_msg());
		jdoc_free(&c.d);
		return r2;
	}
	unsigned have = 0;
	rc = each_member(&c, 0, top_member, &have, "the manifest");
	if (!rc && have != HAVE_ALL)
		rc = bad("a required member is missing (format, backup_id, namespace, collection, "
			 "timestamp_us, records, database, files, definition)");
	if (!rc && (m->file_count != (int64_t)m->nfiles))
		rc = bad("file_count does not match the files listed");
	jdoc_free(&c.d);
	return rc;
}
