/* The attachment methods of collector.CollectionService (files_svc.h).
 *
 * PutFile and GetFile are transfers: a chain of pool jobs, one at a time per call, each
 * one step (open, write a batch, read a batch, commit, release), with the reactor in
 * between deciding the next step from what arrived or what the client took. Only pool
 * steps touch the store; the reactor owns the call and the buffers between steps. */
#include "services/files_svc.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/arena.h"
#include "base/buf.h"
#include "base/container_of.h"
#include "base/hex.h"
#include "base/mem.h"
#include "base/utf8.h"
#include "collector/collection_server.pb-c.h"
#include "services/coll_def.h"
#include "store/files.h"

#define SVC "/collector.CollectionService/"
#define GET_BATCH (4 * FILES_SVC_CHUNK) /* bytes one read step fetches */
/* files.h has no stat: GetFile finds modified_at by walking the file's directory, and
 * leaves it unset rather than walk more than this many entries. */
#define MTIME_WALK_MAX 4096

static Collector__Status status_ok = COLLECTOR__STATUS__INIT;

/* A failure of the files API as the call's status. */
static void fail_files(svc_job *j, int rc, const char *doing, const char *path)
{
	int code;
	switch (rc) {
	case -ENOENT:
		code = GRPC_NOT_FOUND;
		break;
	case -EINVAL:
	case -ELOOP:
	case -EXDEV:
	case -ENAMETOOLONG:
		code = GRPC_INVALID_ARGUMENT;
		break;
	case -EISDIR:
	case -ENOTDIR:
	case -ENOTEMPTY:
		code = GRPC_FAILED_PRECONDITION;
		break;
	case -EFBIG:
	case -ENOSPC:
	case -EDQUOT:
	case -ENOMEM:
	case -EMFILE:
	case -ENFILE:
		code = GRPC_RESOURCE_EXHAUSTED;
		break;
	default:
		code = GRPC_INTERNAL;
	}
	svc_job_fail(j, code, "%s '%.200s': %s", doing, path, store_err_msg());
}

/* Pool thread: checks the names and the path (optional when path_required is false and
 * path is empty), then opens the collection. */
static bool open_coll(svc_job *j, const svc_env *env, const char *ns, const char *name,
		      const char *path, bool path_required, store_coll **out)
{
	if (!svc_check_name(j, "namespace", ns) || !svc_check_name(j, "collection", name))
		return false;
	if ((path_required || *path) && files_path_check(path)) {
		svc_job_fail(j, GRPC_INVALID_ARGUMENT,
			     "invalid file path '%.200s': %s (paths are relative, '/'-separated)",
			     path, store_err_msg());
		return false;
	}
	coll_def d;
	if (!coll_def_load(j, env, ns, name, &d))
		return false;
	bool ok = coll_def_open(j, env, &d, out);
	coll_def_free(&d);
	return ok;
}

/* Pool thread: -ENOTDIR from opening the first len bytes of path as a directory does not
 * say why. Opened as a file, without following links, a link there says -ELOOP (a bad
 * path) and a file opens (not a directory). Returns the error to report. */
static int why_not_dir(store_coll *coll, const char *path, size_t len)
{
	char p[FILES_PATH_MAX + 1];
	snprintf(p, sizeof(p), "%.*s", (int)len, path);
	files_reader *rd;
	uint64_t size;
	int rc = files_get_open(coll, p, &rd, &size);
	if (rc == 0)
		files_get_close(rd);
	return rc == -ELOOP || rc == -EXDEV ? rc : -ENOTDIR;
}

/* ---- transfers: the part PutFile and GetFile share ---- */

typedef struct xfer xfer;
struct xfer {
	pool_job pj; /* first: the pool hands it back */
	svc_job st;  /* the last step's status (svc.h helpers fail it); never run as a job */
	call *c;     /* referenced until xfer_free */
	const svc_env *env;
	int op;	     /* the step running or last run */
	bool busy;   /* a step is on the pool: it owns everything below and the step buffers */
	bool ending; /* answered or cancelled: only the release remains */
	store_coll *coll;
	/* Reactor: answer given or call gone; releases what is held (by a step, or here
	 * when the pool refuses it) and frees the transfer once no step is out. */
	void (*end)(xfer *x);
};

static void xfer_init(xfer *x, call *c, void (*work)(pool_job *), void (*done)(pool_job *),
		      void (*end)(xfer *))
{
	x->c = c;
	x->env = call_ctx(c);
	x->pj.work = work;
	x->pj.done = done;
	x->end = end;
	call_ref(c);
	call_set_user(c, x);
}

static bool xfer_submit(xfer *x, int op)
{
	x->op = op;
	x->st.code = GRPC_OK;
	x->busy = pool_submit(x->env->pool, call_reactor(x->c), &x->pj) == 0;
	return x->busy;
}

static void xfer_step(xfer *x, int op)
{
	if (xfer_submit(x, op))
		return;
	call_finish(x->c, GRPC_RESOURCE_EXHAUSTED, "the node is busy: its work queue is full");
	x->end(x);
}

/* Frees x (allocated as the whole transfer, x first). */
static void xfer_free(xfer *x)
{
	call_set_user(x->c, NULL);
	call_unref(x->c);
	mem_free(x);
}

static void xfer_on_cancel(call *c)
{
	xfer *x = call_user(c);
	if (!x || x->ending)
		return;
	if (x->busy)
		pool_job_cancel(&x->pj); /* its done sees the call gone and ends */
	else
		x->end(x);
}

/* ---- PutFile ---- */

enum { PUT_OPEN, PUT_WRITE, PUT_COMMIT, PUT_RELEASE };

typedef struct put_call {
	xfer x;
	const char *ns, *name, *path; /* call_alloc'd */
	uint64_t total;		      /* header.total_size; 0: not announced */
	uint64_t received;
	bool half_closed;
	bool paused; /* the client waits (call_pause_input) until a write step takes queued */
	buf queued;  /* reactor: received, not yet handed to a write step */
	buf batch;   /* the write step's bytes */
	files_writer *w;
	EVP_MD_CTX *sha;
	char hex[2 * 32 + 1];
} put_call;

/* Whichever side owns p: drops the upload and everything it holds. */
static void put_release(put_call *p)
{
	files_put_abort(p->w);
	p->w = NULL;
	if (p->x.coll)
		store_coll_release(p->x.coll);
	p->x.coll = NULL;
	EVP_MD_CTX_free(p->sha);
	p->sha = NULL;
}

static void put_open(put_call *p)
{
	svc_job *st = &p->x.st;
	if (!open_coll(st, p->x.env, p->ns, p->name, p->path, true, &p->x.coll))
		return;
	p->sha = EVP_MD_CTX_new();
	if (!p->sha || EVP_DigestInit_ex(p->sha, EVP_sha256(), NULL) != 1) {
		svc_job_fail(st, GRPC_RESOURCE_EXHAUSTED, "cannot start a SHA-256 digest");
		return;
	}
	int rc = files_put_begin(p->x.coll, p->path, FILES_SVC_PUT_MAX, &p->w);
	if (rc)
		fail_files(st, rc, "cannot upload", p->path);
}

static void put_commit(put_call *p)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned n = 0;
	if (EVP_DigestFinal_ex(p->sha, md, &n) != 1 || n != 32) {
		svc_job_fail(&p->x.st, GRPC_INTERNAL, "cannot finish the SHA-256 digest");
		return;
	}
	hex_encode(p->hex, md, n);
	int rc = files_put_commit(p->w);
	p->w = NULL;
	const char *slash = strrchr(p->path, '/');
	if (rc == -ENOTDIR && slash)
		rc = why_not_dir(p->x.coll, p->path, (size_t)(slash - p->path));
	if (rc)
		fail_files(&p->x.st, rc, "cannot store", p->path);
	put_release(p);
}

static void put_work(pool_job *pj)
{
	put_call *p = container_of(pj, put_call, x.pj);
	int rc;
	switch (p->x.op) {
	case PUT_OPEN:
		put_open(p);
		break;
	case PUT_WRITE:
		rc = files_put_chunk(p->w, p->batch.data, p->batch.len);
		if (rc)
			fail_files(&p->x.st, rc, "cannot write", p->path);
		else if (EVP_DigestUpdate(p->sha, p->batch.data, p->batch.len) != 1)
			svc_job_fail(&p->x.st, GRPC_INTERNAL, "SHA-256 digest failed");
		break;
	case PUT_COMMIT:
		put_commit(p);
		break;
	case PUT_RELEASE:
		put_release(p);
		break;
	}
}

static void put_end(xfer *x)
{
	put_call *p = container_of(x, put_call, x);
	x->ending = true;
	if (x->busy)
		return;
	buf_free(&p->queued);
	buf_free(&p->batch);
	if (p->w || x->coll || p->sha) {
		if (xfer_submit(x, PUT_RELEASE))
			return;
		/* The pool is full or stopping: a close and an unlink are brief enough here. */
		put_release(p);
	}
	xfer_free(x);
}

static void put_fail(put_call *p, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void put_fail(put_call *p, int code, const char *fmt, ...)
{
	char msg[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	call_finish(p->x.c, code, msg);
	put_end(&p->x);
}

/* Reactor, no step out: writes what came, or commits once everything has. */
static void put_next(put_call *p)
{
	if (p->queued.len) {
		buf t = p->batch;
		p->batch = p->queued;
		p->queued = t;
		buf_reset(&p->queued);
		xfer_step(&p->x, PUT_WRITE);
		if (p->paused && !p->x.ending) {
			/* Room again: what arrived meanwhile comes now (the step is out, so it
			 * queues behind it). */
			p->paused = false;
			call_resume_input(p->x.c);
		}
		return;
	}
	if (!p->half_closed)
		return;
	if (p->total && p->received != p->total) {
		put_fail(
			p, GRPC_INVALID_ARGUMENT,
			"'%.200s': %llu bytes sent, header.total_size announced %llu; nothing stored",
			p->path, (unsigned long long)p->received, (unsigned long long)p->total);
		return;
	}
	xfer_step(&p->x, PUT_COMMIT);
}

static void put_done(pool_job *pj)
{
	put_call *p = container_of(pj, put_call, x.pj);
	call *c = p->x.c;
	p->x.busy = false;
	if (p->x.ending || call_done(c)) {
		put_end(&p->x);
		return;
	}
	if (p->x.st.code != GRPC_OK) {
		call_finish(c, p->x.st.code, p->x.st.msg);
		put_end(&p->x);
		return;
	}
	if (p->x.op == PUT_COMMIT) {
		Collector__PutFileResponse resp = COLLECTOR__PUT_FILE_RESPONSE__INIT;
		resp.status = &status_ok;
		resp.path = (char *)p->path;
		resp.size_bytes = (int64_t)p->received;
		resp.sha256 = p->hex;
		call_reply(c, &resp.base);
		put_end(&p->x);
		return;
	}
	buf_reset(&p->batch);
	put_next(p);
}

static const char *call_strdup(call *c, const char *s)
{
	size_t n = strlen(s) + 1;
	char *d = call_alloc(c, n);
	return d ? memcpy(d, s, n) : NULL;
}

static void put_begin(call *c, const Collector__PutFileRequest *m)
{
	const svc_env *env = call_ctx(c);
	if (m->data_case != COLLECTOR__PUT_FILE_REQUEST__DATA_HEADER) {
		call_finish(
			c, GRPC_INVALID_ARGUMENT,
			"the first PutFile message must be a header (namespace, collection_name, "
			"path), then chunks");
		return;
	}
	const Collector__PutFileHeader *h = m->header;
	if (h->total_size < 0) {
		call_finishf(c, GRPC_INVALID_ARGUMENT, "header.total_size %lld is negative",
			     (long long)h->total_size);
		return;
	}
	if ((uint64_t)h->total_size > FILES_SVC_PUT_MAX) {
		call_finishf(c, GRPC_RESOURCE_EXHAUSTED,
			     "header.total_size %lld is over the file size limit of %llu bytes",
			     (long long)h->total_size, FILES_SVC_PUT_MAX);
		return;
	}
	put_call *p = mem_calloc(1, sizeof(*p));
	if (p) {
		p->ns = call_strdup(c, svc_namespace(c, env, h->namespace_));
		p->name = call_strdup(c, h->collection_name);
		p->path = call_strdup(c, h->path);
	}
	if (!p || !p->ns || !p->name || !p->path) {
		mem_free(p);
		call_finish(c, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	p->total = (uint64_t)h->total_size;
	xfer_init(&p->x, c, put_work, put_done, put_end);
	xfer_step(&p->x, PUT_OPEN);
}

static void put_message(call *c, const ProtobufCMessage *msg)
{
	const Collector__PutFileRequest *m = (const void *)msg;
	put_call *p = call_user(c);
	if (!p) {
		put_begin(c, m);
		return;
	}
	if (p->x.ending)
		return;
	if (m->data_case == COLLECTOR__PUT_FILE_REQUEST__DATA_HEADER) {
		put_fail(p, GRPC_INVALID_ARGUMENT,
			 "a second PutFile header: one header comes first, then only chunks");
		return;
	}
	size_t len = m->data_case == COLLECTOR__PUT_FILE_REQUEST__DATA_CHUNK ? m->chunk.len : 0;
	if (!len)
		return;
	if (p->received + len > FILES_SVC_PUT_MAX) {
		put_fail(p, GRPC_RESOURCE_EXHAUSTED,
			 "'%.200s' is over the file size limit of %llu bytes", p->path,
			 FILES_SVC_PUT_MAX);
		return;
	}
	if (p->total && p->received + len > p->total) {
		put_fail(p, GRPC_INVALID_ARGUMENT,
			 "'%.200s': more bytes than header.total_size %llu; nothing stored",
			 p->path, (unsigned long long)p->total);
		return;
	}
	/* Paused at half the bound, the client cannot get this far ahead; a backstop all the
	 * same (one message is always taken, so any message the wire accepts fits). */
	if (p->queued.len && p->queued.len + len > FILES_SVC_PUT_BUFFER) {
		put_fail(p, GRPC_RESOURCE_EXHAUSTED,
			 "the upload of '%.200s' got more than %u bytes ahead of the disk", p->path,
			 FILES_SVC_PUT_BUFFER);
		return;
	}
	if (buf_append(&p->queued, m->chunk.data, len)) {
		put_fail(p, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	p->received += len;
	/* Half the bound ahead of the disk: the client waits on HTTP/2 flow control until a
	 * write step takes what is queued. */
	if (p->queued.len >= FILES_SVC_PUT_BUFFER / 2 && !p->paused) {
		p->paused = true;
		call_pause_input(c);
	}
	if (!p->x.busy)
		put_next(p);
}

static void put_half_close(call *c)
{
	put_call *p = call_user(c);
	if (!p) {
		call_finish(c, GRPC_INVALID_ARGUMENT,
			    "PutFile ended without a header (namespace, collection_name, path)");
		return;
	}
	if (p->x.ending)
		return;
	p->half_closed = true;
	if (!p->x.busy)
		put_next(p);
}

/* ---- GetFile ---- */

enum { GET_OPEN, GET_READ, GET_RELEASE };

typedef struct get_call {
	xfer x;
	const Collector__GetFileRequest *req; /* the call's: lives as long as the call */
	const char *ns;
	files_reader *rd;
	uint64_t size, pos, end; /* pos: the next byte to read */
	bool have_mtime, info_sent;
	int64_t mtime;
	size_t chunk;  /* bytes per message */
	uint8_t *data; /* GET_BATCH bytes: the last read */
	size_t len, sent;
} get_call;

static void get_release(get_call *g)
{
	files_get_close(g->rd);
	g->rd = NULL;
	if (g->x.coll)
		store_coll_release(g->x.coll);
	g->x.coll = NULL;
}

typedef struct mtime_find {
	const char *path;
	size_t seen;
	int64_t mtime;
} mtime_find;

static int mtime_entry(void *ctx, const files_entry *e)
{
	mtime_find *f = ctx;
	if (!e->is_dir && !strcmp(e->path, f->path)) {
		f->mtime = e->mtime;
		return 1;
	}
	return ++f->seen >= MTIME_WALK_MAX ? 2 : 0;
}

static void get_find_mtime(get_call *g)
{
	const char *path = g->req->path, *slash = strrchr(path, '/');
	char dir[FILES_PATH_MAX + 1];
	snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - path) : 0, path);
	mtime_find f = {.path = path};
	g->have_mtime = files_list(g->x.coll, dir, mtime_entry, &f) == 1;
	g->mtime = f.mtime;
}

static bool get_open(get_call *g)
{
	const Collector__GetFileRequest *r = g->req;
	svc_job *st = &g->x.st;
	if (!open_coll(st, g->x.env, g->ns, r->collection_name, r->path, true, &g->x.coll))
		return false;
	int rc = files_get_open(g->x.coll, r->path, &g->rd, &g->size);
	if (rc) {
		/* A file in the middle of the path: there is no such file. */
		fail_files(st, rc == -ENOTDIR ? -ENOENT : rc, "cannot read", r->path);
		return false;
	}
	if ((uint64_t)r->offset > g->size) {
		svc_job_fail(st, GRPC_OUT_OF_RANGE,
			     "offset %lld is past the end of '%.200s' (%llu bytes)",
			     (long long)r->offset, r->path, (unsigned long long)g->size);
		return false;
	}
	g->pos = (uint64_t)r->offset;
	g->end = r->length && (uint64_t)r->length < g->size - g->pos ? g->pos + (uint64_t)r->length
								     : g->size;
	if (g->pos < g->end && !(g->data = mem_alloc(GET_BATCH))) {
		svc_job_fail(st, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return false;
	}
	get_find_mtime(g);
	return true;
}

static void get_read(get_call *g)
{
	size_t want = g->end - g->pos < GET_BATCH ? (size_t)(g->end - g->pos) : GET_BATCH;
	g->len = g->sent = 0;
	while (g->len < want) {
		ssize_t n = files_get_read(g->rd, g->pos, g->data + g->len, want - g->len);
		if (n < 0) {
			fail_files(&g->x.st, (int)n, "cannot read", g->req->path);
			return;
		}
		if (n == 0) {
			svc_job_fail(&g->x.st, GRPC_INTERNAL, "'%.200s' shrank while being read",
				     g->req->path);
			return;
		}
		g->len += (size_t)n;
		g->pos += (uint64_t)n;
	}
}

static void get_work(pool_job *pj)
{
	get_call *g = container_of(pj, get_call, x.pj);
	if (g->x.op == GET_OPEN && !get_open(g)) {
		get_release(g);
		return;
	}
	if (g->x.op != GET_RELEASE)
		get_read(g);
	/* Done with the file: release it now rather than in a step of its own. */
	if (g->x.op == GET_RELEASE || g->x.st.code != GRPC_OK || g->pos == g->end)
		get_release(g);
}

static void get_end(xfer *x)
{
	get_call *g = container_of(x, get_call, x);
	x->ending = true;
	if (x->busy)
		return;
	if (g->rd || x->coll) {
		if (xfer_submit(x, GET_RELEASE))
			return;
		get_release(g); /* the pool is full or stopping: a close is brief enough here */
	}
	mem_free(g->data);
	xfer_free(x);
}

static bool get_send(get_call *g, const Collector__GetFileChunk *m)
{
	int rc = call_send(g->x.c, &m->base);
	if (rc == 0)
		return true;
	/* -ECANCELED: the call is over already (the client stopped reading). */
	if (rc != -ECANCELED)
		call_finish(g->x.c, rc == -EMSGSIZE ? GRPC_RESOURCE_EXHAUSTED : GRPC_INTERNAL,
			    rc == -EMSGSIZE ? "the FileInfo is larger than the message size limit"
					    : "out of memory");
	get_end(&g->x);
	return false;
}

/* Reactor, no step out: sends what was read while the client takes it, then reads on. */
static void get_pump(get_call *g)
{
	while (g->sent < g->len) {
		if (call_send_would_block(g->x.c))
			return; /* on_writable continues */
		size_t n = g->len - g->sent < g->chunk ? g->len - g->sent : g->chunk;
		Collector__GetFileChunk m = COLLECTOR__GET_FILE_CHUNK__INIT;
		m.data_case = COLLECTOR__GET_FILE_CHUNK__DATA_CHUNK;
		m.chunk.data = g->data + g->sent;
		m.chunk.len = n;
		if (!get_send(g, &m))
			return;
		g->sent += n;
	}
	if (g->pos < g->end) {
		xfer_step(&g->x, GET_READ);
		return;
	}
	call_finish(g->x.c, GRPC_OK, NULL);
	get_end(&g->x);
}

static void get_done(pool_job *pj)
{
	get_call *g = container_of(pj, get_call, x.pj);
	call *c = g->x.c;
	g->x.busy = false;
	if (g->x.ending || call_done(c)) {
		get_end(&g->x);
		return;
	}
	if (g->x.st.code != GRPC_OK) {
		call_finish(c, g->x.st.code, g->x.st.msg);
		get_end(&g->x);
		return;
	}
	if (!g->info_sent) {
		Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
		int64_t us = g->mtime % 1000000;
		ts.seconds = g->mtime / 1000000 - (us < 0);
		ts.nanos = (int32_t)(us < 0 ? us + 1000000 : us) * 1000;
		Collector__FileInfo info = COLLECTOR__FILE_INFO__INIT;
		info.path = g->req->path;
		info.size_bytes = (int64_t)g->size;
		info.modified_at = g->have_mtime ? &ts : NULL;
		Collector__GetFileChunk m = COLLECTOR__GET_FILE_CHUNK__INIT;
		m.data_case = COLLECTOR__GET_FILE_CHUNK__DATA_INFO;
		m.info = &info;
		if (!get_send(g, &m))
			return;
		g->info_sent = true;
	}
	get_pump(g);
}

static void get_request(call *c, const ProtobufCMessage *msg)
{
	const Collector__GetFileRequest *r = (const void *)msg;
	if (r->offset < 0 || r->length < 0) {
		call_finishf(c, GRPC_INVALID_ARGUMENT,
			     "offset (%lld) and length (%lld) must not be negative",
			     (long long)r->offset, (long long)r->length);
		return;
	}
	const svc_env *env = call_ctx(c);
	get_call *g = mem_calloc(1, sizeof(*g));
	if (!g) {
		call_finish(c, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	g->req = r;
	g->ns = svc_namespace(c, env, r->namespace_);
	/* Room for the chunk's own framing within the message size limit. */
	g->chunk = env->max_message_bytes - 64 < FILES_SVC_CHUNK ? env->max_message_bytes - 64
								 : FILES_SVC_CHUNK;
	xfer_init(&g->x, c, get_work, get_done, get_end);
	xfer_step(&g->x, GET_OPEN);
}

static void get_writable(call *c)
{
	get_call *g = call_user(c);
	if (g && !g->x.busy && !g->x.ending)
		get_pump(g);
}

/* ---- ListFiles ---- */

typedef struct tree {
	arena a;
	/* The directory being filled at each depth below the listed one: the walk is depth
	 * first, a directory before its contents, so an entry's parent is the last directory
	 * seen one level up. */
	Collector__CollectionDir *dirs[FILES_DEPTH_MAX + 2];
	size_t cap_sub[FILES_DEPTH_MAX + 2], cap_files[FILES_DEPTH_MAX + 2];
	size_t skip; /* bytes of an entry's path before the part below the listed directory */
	bool recursive;
	size_t entries;
} tree;

/* Arrays grow by doubling in the arena (the old copies stay: at most as much again). */
static void *tree_grow(tree *t, void *v, size_t n, size_t *cap, size_t size)
{
	if (n < *cap)
		return v;
	size_t nc = *cap ? 2 * *cap : 4;
	void *nv = arena_alloc(&t->a, nc * size);
	if (nv && n)
		memcpy(nv, v, n * size);
	*cap = nc;
	return nv;
}

static int tree_add_dir(tree *t, size_t depth, char *name)
{
	Collector__CollectionDir *parent = t->dirs[depth];
	Collector__CollectionDir *d = arena_alloc(&t->a, sizeof(*d));
	Collector__CollectionDir__SubdirsEntry *e = arena_alloc(&t->a, sizeof(*e));
	Collector__CollectionDir__SubdirsEntry **v =
		tree_grow(t, parent->subdirs, parent->n_subdirs, &t->cap_sub[depth], sizeof(*v));
	if (!d || !e || !v)
		return -ENOMEM;
	collector__collection_dir__init(d);
	d->name = name;
	collector__collection_dir__subdirs_entry__init(e);
	e->key = name;
	e->value = d;
	parent->subdirs = v;
	v[parent->n_subdirs++] = e;
	t->dirs[depth + 1] = d;
	t->cap_sub[depth + 1] = t->cap_files[depth + 1] = 0;
	return 0;
}

static int tree_add_file(tree *t, size_t depth, char *name)
{
	Collector__CollectionDir *parent = t->dirs[depth];
	Collector__CollectionData *d = arena_alloc(&t->a, sizeof(*d));
	Collector__CollectionDir__FilesEntry *e = arena_alloc(&t->a, sizeof(*e));
	Collector__CollectionDir__FilesEntry **v =
		tree_grow(t, parent->files, parent->n_files, &t->cap_files[depth], sizeof(*v));
	if (!d || !e || !v)
		return -ENOMEM;
	collector__collection_data__init(d);
	d->name = name;
	collector__collection_dir__files_entry__init(e);
	e->key = name;
	e->value = d;
	parent->files = v;
	v[parent->n_files++] = e;
	return 0;
}

static int tree_entry(void *ctx, const files_entry *e)
{
	tree *t = ctx;
	const char *rel = e->path + t->skip, *slash = strrchr(rel, '/');
	const char *leaf = slash ? slash + 1 : rel;
	size_t depth = 0;
	for (const char *s = rel; *s; s++)
		depth += *s == '/';
	if ((depth && !t->recursive) || depth > FILES_DEPTH_MAX)
		return 0;
	/* Names this API cannot have made (not UTF-8) would make the answer unreadable; a
	 * directory left out takes its contents with it. */
	if (!t->dirs[depth] || !utf8_valid(leaf, strlen(leaf), true)) {
		if (e->is_dir)
			t->dirs[depth + 1] = NULL;
		return 0;
	}
	if (++t->entries > FILES_SVC_LIST_MAX)
		return -E2BIG;
	char *name = arena_strndup(&t->a, leaf, strlen(leaf));
	if (!name)
		return -ENOMEM;
	return e->is_dir ? tree_add_dir(t, depth, name) : tree_add_file(t, depth, name);
}

static void list_work(svc_job *sj)
{
	svc_req_job *r = (svc_req_job *)sj;
	const Collector__ListFilesRequest *req = r->req;
	store_coll *coll;
	if (!open_coll(sj, r->env, r->ns, req->collection_name, req->path, false, &coll))
		return;
	tree t = {.recursive = req->recursive, .skip = *req->path ? strlen(req->path) + 1 : 0};
	Collector__CollectionDir *root = arena_alloc(&t.a, sizeof(*root));
	int rc = -ENOMEM;
	if (root) {
		collector__collection_dir__init(root);
		root->name = req->path;
		t.dirs[0] = root;
		rc = files_list(coll, req->path, tree_entry, &t);
	}
	if (rc == -ENOTDIR)
		rc = why_not_dir(coll, req->path, strlen(req->path));
	store_coll_release(coll);
	if (rc == -E2BIG) {
		svc_job_fail(
			sj, GRPC_RESOURCE_EXHAUSTED,
			"more than %d entries under '%.200s': list a subdirectory, or one level",
			FILES_SVC_LIST_MAX, req->path);
	} else if (rc == -ENOMEM) {
		svc_job_fail(sj, GRPC_RESOURCE_EXHAUSTED, "out of memory");
	} else if (rc) {
		fail_files(sj, rc, "cannot list", req->path);
	} else {
		Collector__ListFilesResponse resp = COLLECTOR__LIST_FILES_RESPONSE__INIT;
		resp.status = &status_ok;
		resp.root = root;
		svc_job_answer(sj, &resp.base);
	}
	arena_free(&t.a);
}

static void list_files(call *c, const ProtobufCMessage *msg)
{
	const Collector__ListFilesRequest *req = (const void *)msg;
	svc_start(c, req, req->namespace_, list_work);
}

/* ---- DeleteFile ---- */

typedef struct del_count {
	bool recursive;
	int64_t files, bytes;
} del_count;

static int del_entry(void *ctx, const files_entry *e)
{
	del_count *n = ctx;
	if (!n->recursive)
		return 1; /* a directory that is not empty: refused anyway */
	if (!e->is_dir) {
		n->files++;
		n->bytes += (int64_t)e->size;
	}
	return 0;
}

/* The sizes are taken before the removal; its own count of files removed is the answer. */
static void delete_work(svc_job *sj)
{
	svc_req_job *r = (svc_req_job *)sj;
	const Collector__DeleteFileRequest *req = r->req;
	store_coll *coll;
	if (!open_coll(sj, r->env, r->ns, req->collection_name, req->path, true, &coll))
		return;
	del_count n = {.recursive = req->recursive};
	int rc = files_list(coll, req->path, del_entry, &n);
	if (rc == -ENOTDIR) {
		files_reader *rd;
		uint64_t size;
		rc = files_get_open(coll, req->path, &rd, &size);
		if (rc == -ENOTDIR)
			rc = -ENOENT; /* a file in the middle of the path */
		if (rc == 0) {
			files_get_close(rd);
			n.bytes = (int64_t)size;
		}
	} else if (rc >= 0 && !req->recursive) {
		svc_job_fail(
			sj, GRPC_FAILED_PRECONDITION,
			"'%.200s' is a directory: set recursive to delete it with everything in it",
			req->path);
		store_coll_release(coll);
		return;
	}
	int64_t removed = 0;
	if (rc >= 0)
		rc = files_delete(coll, req->path, req->recursive, &removed);
	store_coll_release(coll);
	if (rc < 0) {
		fail_files(sj, rc, "cannot delete", req->path);
		return;
	}
	Collector__DeleteFileResponse resp = COLLECTOR__DELETE_FILE_RESPONSE__INIT;
	resp.status = &status_ok;
	resp.files_deleted = removed;
	resp.bytes_freed = n.bytes;
	svc_job_answer(sj, &resp.base);
}

static void delete_file(call *c, const ProtobufCMessage *msg)
{
	const Collector__DeleteFileRequest *req = (const void *)msg;
	svc_start(c, req, req->namespace_, delete_work);
}

int files_svc_register(method_table *t, svc_env *env)
{
	const method methods[] = {
		{SVC "PutFile",
		 METHOD_CLIENT_STREAM,
		 &collector__put_file_request__descriptor,
		 &collector__put_file_response__descriptor,
		 {.on_message = put_message,
		  .on_half_close = put_half_close,
		  .on_cancel = xfer_on_cancel},
		 env},
		{SVC "GetFile",
		 METHOD_SERVER_STREAM,
		 &collector__get_file_request__descriptor,
		 &collector__get_file_chunk__descriptor,
		 {.on_request = get_request,
		  .on_writable = get_writable,
		  .on_cancel = xfer_on_cancel},
		 env},
		{SVC "ListFiles",
		 METHOD_UNARY,
		 &collector__list_files_request__descriptor,
		 &collector__list_files_response__descriptor,
		 {.on_request = list_files, .on_cancel = svc_job_on_cancel},
		 env},
		{SVC "DeleteFile",
		 METHOD_UNARY,
		 &collector__delete_file_request__descriptor,
		 &collector__delete_file_response__descriptor,
		 {.on_request = delete_file, .on_cancel = svc_job_on_cancel},
		 env},
	};
	return method_table_add_all(t, methods, sizeof(methods) / sizeof(methods[0]));
}
