/* Transfers of collections between nodes (transfer.h).
 *
 * A transfer is a chain of pool steps, one at a time, with the reactor in between: the
 * sender (tx) snapshots, then reads a batch, which the reactor sends in chunks as the
 * stream's window takes them, then reads the next; the receiver (rx) queues what arrives
 * while a step writes the previous batch, and stops reading the stream (HTTP/2 flow
 * control) while the queue is full. So a transfer holds a bounded amount of memory however
 * large the collection, and a slow receiver slows the sender.
 *
 * Each side has two drivers: the sender serves PullCollection (its stream goes to the
 * caller) or pushes for Clone (its stream goes out through the node's client to the other
 * node's PushCollection); the receiver serves PushCollection or pulls for Fetch (from the
 * other node's PullCollection). */
#include "services/transfer.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/container_of.h"
#include "base/list.h"
#include "base/mem.h"
#include "h2/client.h"
#include "services/backup.h"
#include "services/proxy.h"
#include "services/transfer_rx.h"
#include "store/files.h"

#define REPO "/collector.CollectionRepo/"
#define TX_CHUNK (256u << 10)	/* bytes per chunk message */
#define TX_BATCH (1u << 20)	/* bytes one read step fetches */
#define RX_QUEUE_MAX (2u << 20) /* received bytes waiting for the disk before input pauses */
/* Transfers open at once on the node, both directions: each holds a few MiB (a read batch,
 * or a receive queue and a write batch) and a staged directory, so their number bounds
 * what callers can make the node hold. */
#define TRANSFER_MAX_OPEN 32

static Collector__Status status_ok = COLLECTOR__STATUS__INIT;
static _Atomic int open_transfers;

/* Takes a place among the open transfers; false (c finished) when none is left. */
static bool transfer_admit(call *c)
{
	if (++open_transfers <= TRANSFER_MAX_OPEN)
		return true;
	--open_transfers;
	call_finishf(c, GRPC_RESOURCE_EXHAUSTED,
		     "the node has %d transfers open already; try again later", TRANSFER_MAX_OPEN);
	return false;
}

static int64_t timeout_of(call *c)
{
	int64_t deadline = call_deadline(c);
	if (deadline == INT64_MAX)
		return 0;
	int64_t t = deadline - reactor_now(call_reactor(c));
	return t < 1 ? 1 : t;
}

/* ==== the sender ==== */

enum { TX_OPEN, TX_READ, TX_RELEASE };

typedef struct tx {
	pool_job pj; /* first: the pool hands it back */
	svc_job st;  /* the last step's status; never run as a job */
	const svc_env *env;
	call *c;	  /* referenced until the end: PullCollection's, or Clone's */
	client_call *out; /* Clone: the PushCollection call to dest_endpoint */
	int op;
	bool busy, ending, remote, half_closed, answered;
	char ns[STORE_NAME_MAX + 1], name[STORE_NAME_MAX + 1];
	char dest_ns[STORE_NAME_MAX + 1], dest_name[STORE_NAME_MAX + 1];
	const char *endpoint; /* Clone: the call's */
	bool include_files;
	manifest m;
	buf text; /* the manifest's JSON */
	char tmp[STORE_TMP_MAX];
	char path[PATH_MAX];
	size_t piece; /* 0: records.db, i: m.files[i-1] */
	int fd;	      /* the piece being read, or -1 */
	int64_t off;  /* of the next byte in the piece */
	uint8_t *data;
	size_t len, sent;
	int64_t total, read;
	size_t chunk;
	Collector__PushCollectionResponse *resp; /* Clone: the far side's answer */
	list_node link;				 /* Clone: in the reactor's clones */
} tx;

/* The Clone calls pushing from this reactor: Clone's call_user is svc_job's for a local
 * clone, so a remote one is found here by its call when it is cancelled. */
static __thread list_node clones;

static void tx_release(tx *t)
{
	if (t->fd >= 0)
		close(t->fd);
	t->fd = -1;
	if (t->tmp[0])
		store_stage_abort(t->env->store, t->ns, t->tmp);
	t->tmp[0] = 0;
}

static bool tx_open_piece(tx *t)
{
	char p[PATH_MAX + FILES_PATH_MAX + 16];
	if (t->piece == 0)
		snprintf(p, sizeof(p), "%s/" SNAPSHOT_DB_NAME, t->path);
	else
		snprintf(p, sizeof(p), "%s/" SNAPSHOT_FILES_DIR "/%s", t->path,
			 t->m.files[t->piece - 1].path);
	t->fd = open(p, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	t->off = 0;
	if (t->fd < 0)
		svc_job_fail(&t->st, GRPC_INTERNAL, "reading the snapshot: %s", strerror(errno));
	return t->fd >= 0;
}

/* Reads the next batch across pieces. A piece that is not the size the snapshot recorded
 * (it cannot change: the stage is ours) fails rather than send what the manifest denies. */
static void tx_read(tx *t)
{
	t->len = t->sent = 0;
	while (t->len < TX_BATCH && t->read < t->total) {
		if (t->fd < 0 && !tx_open_piece(t))
			return;
		int64_t size = t->piece == 0 ? t->m.db_size : t->m.files[t->piece - 1].size;
		size_t want = TX_BATCH - t->len;
		if ((int64_t)want > size - t->off)
			want = (size_t)(size - t->off);
		ssize_t n = want ? pread(t->fd, t->data + t->len, want, t->off) : 0;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || (n == 0 && want)) {
			svc_job_fail(&t->st, GRPC_INTERNAL, "reading the snapshot: %s",
				     n < 0 ? strerror(errno) : "a file shrank");
			return;
		}
		t->len += (size_t)n;
		t->off += n;
		t->read += n;
		if (t->off == size) {
			close(t->fd);
			t->fd = -1;
			t->piece++;
		}
	}
}

static void tx_work(pool_job *pj)
{
	tx *t = container_of(pj, tx, pj);
	switch (t->op) {
	case TX_OPEN:
		if (!backup_snapshot_stage(&t->st, t->env, t->ns, t->name, t->include_files, &t->m,
					   t->tmp, t->path, sizeof(t->path)))
			return;
		if (manifest_write(&t->m, &t->text) || !(t->data = mem_alloc(TX_BATCH))) {
			svc_job_fail(&t->st, GRPC_RESOURCE_EXHAUSTED, "out of memory");
			return;
		}
		t->total = t->m.db_size + t->m.file_bytes;
		tx_read(t);
		break;
	case TX_READ:
		tx_read(t);
		break;
	case TX_RELEASE:
		tx_release(t);
		break;
	}
	if (t->st.code != GRPC_OK || t->read == t->total)
		tx_release(t); /* done with the snapshot: it goes at once */
}

static void tx_free(tx *t)
{
	manifest_free(&t->m);
	buf_free(&t->text);
	mem_free(t->data);
	if (t->resp)
		collector__push_collection_response__free_unpacked(t->resp, NULL);
	if (t->remote)
		list_remove(&t->link);
	--open_transfers;
	if (!t->remote)
		call_set_user(t->c, NULL);
	call_unref(t->c);
	mem_free(t);
}

/* Reactor: the transfer is over (answered, failed or cancelled); frees it once no step is
 * out and the snapshot is removed. */
static void tx_end(tx *t)
{
	t->ending = true;
	if (t->busy)
		return;
	if (t->out) {
		client_call *o = t->out;
		t->out = NULL; /* its on_done, which runs at once, is not ours any more */
		client_call_cancel(o);
	}
	if (t->fd >= 0 || t->tmp[0]) {
		t->op = TX_RELEASE;
		t->st.code = GRPC_OK;
		if ((t->busy = pool_submit(t->env->pool, call_reactor(t->c), &t->pj) == 0))
			return;
		tx_release(t); /* the pool is full or stopping */
	}
	tx_free(t);
}

static void tx_fail(tx *t, int code, const char *msg)
{
	if (!t->answered) {
		t->answered = true;
		call_finish(t->c, code, msg);
	}
	tx_end(t);
}

static void tx_step(tx *t, int op)
{
	t->op = op;
	t->st.code = GRPC_OK;
	t->busy = pool_submit(t->env->pool, call_reactor(t->c), &t->pj) == 0;
	if (!t->busy)
		tx_fail(t, GRPC_RESOURCE_EXHAUSTED, "the node is busy: its work queue is full");
}

static bool tx_blocked(tx *t)
{
	return t->remote ? client_call_send_would_block(t->out) : call_send_would_block(t->c);
}

static int tx_send_chunk(tx *t, const uint8_t *p, size_t n)
{
	if (t->remote) {
		Collector__PushCollectionRequest m = COLLECTOR__PUSH_COLLECTION_REQUEST__INIT;
		m.data_case = COLLECTOR__PUSH_COLLECTION_REQUEST__DATA_CHUNK;
		m.chunk.data = (uint8_t *)p;
		m.chunk.len = n;
		return client_call_send_pb(t->out, &m.base);
	}
	Collector__PullCollectionChunk m = COLLECTOR__PULL_COLLECTION_CHUNK__INIT;
	m.data_case = COLLECTOR__PULL_COLLECTION_CHUNK__DATA_CHUNK;
	m.chunk.data = (uint8_t *)p;
	m.chunk.len = n;
	return call_send(t->c, &m.base);
}

/* Reactor, no step out: sends the batch while the stream takes it, then reads on. */
static void tx_pump(tx *t)
{
	if (t->remote && call_done(t->c)) { /* Clone's caller went: the push stops */
		tx_end(t);
		return;
	}
	while (t->sent < t->len) {
		if (tx_blocked(t))
			return; /* on_writable continues */
		size_t n = t->len - t->sent < t->chunk ? t->len - t->sent : t->chunk;
		if (tx_send_chunk(t, t->data + t->sent, n)) {
			tx_fail(t, GRPC_UNAVAILABLE, "the stream ended while sending");
			return;
		}
		t->sent += n;
	}
	if (t->read < t->total) {
		tx_step(t, TX_READ);
		return;
	}
	if (!t->remote) {
		t->answered = true;
		call_finish(t->c, GRPC_OK, NULL);
		tx_end(t);
	} else if (!t->half_closed) {
		t->half_closed = true; /* the far side's answer ends it (out_done) */
		client_call_half_close(t->out);
	}
}

static const client_call_ops push_ops;

/* Reactor: the snapshot is made; the metadata goes first. */
static bool tx_send_meta(tx *t)
{
	if (!t->remote) {
		char id[2 * STORE_NAME_MAX + 2];
		snprintf(id, sizeof(id), "%s/%s", t->ns, t->name);
		Collector__PullCollectionChunk__Metadata md =
			COLLECTOR__PULL_COLLECTION_CHUNK__METADATA__INIT;
		md.collection_id = id;
		md.total_size = t->total;
		md.record_count = t->m.records;
		md.file_count = (int64_t)t->m.nfiles;
		md.manifest.data = t->text.data;
		md.manifest.len = t->text.len;
		Collector__PullCollectionChunk m = COLLECTOR__PULL_COLLECTION_CHUNK__INIT;
		m.data_case = COLLECTOR__PULL_COLLECTION_CHUNK__DATA_METADATA;
		m.metadata = &md;
		int rc = call_send(t->c, &m.base);
		if (rc)
			tx_fail(t, rc == -EMSGSIZE ? GRPC_RESOURCE_EXHAUSTED : GRPC_INTERNAL,
				"the metadata could not be sent (over the message size limit?)");
		return rc == 0;
	}
	client_channel *ch =
		proxy_channel(call_reactor(t->c), t->endpoint, t->env->max_message_bytes, true);
	/* The far node admits the push on the mesh credential (auth.h), as a linked node's. */
	call_md cred[1];
	size_t nmd;
	const call_md *auth = proxy_md_for_node(NULL, 0, true, cred, &nmd);
	client_call_args a = {.path = REPO "PushCollection",
			      .timeout_ns = timeout_of(t->c),
			      .md = auth,
			      .nmd = nmd,
			      .ops = &push_ops,
			      .user = t};
	t->out = ch ? client_call_start(ch, &a) : NULL;
	if (!t->out) {
		tx_fail(t, GRPC_UNAVAILABLE, "dest_endpoint cannot be called from this node");
		return false;
	}
	Collector__NamespacedName src = COLLECTOR__NAMESPACED_NAME__INIT;
	src.namespace_ = t->ns;
	src.name = t->name;
	Collector__PushCollectionRequest__Metadata md =
		COLLECTOR__PUSH_COLLECTION_REQUEST__METADATA__INIT;
	md.source_collection = &src;
	md.dest_namespace = t->dest_ns;
	md.dest_name = t->dest_name;
	md.include_files = t->include_files;
	md.total_size = t->total;
	md.record_count = t->m.records;
	md.file_count = (int64_t)t->m.nfiles;
	md.manifest.data = t->text.data;
	md.manifest.len = t->text.len;
	Collector__PushCollectionRequest m = COLLECTOR__PUSH_COLLECTION_REQUEST__INIT;
	m.data_case = COLLECTOR__PUSH_COLLECTION_REQUEST__DATA_METADATA;
	m.metadata = &md;
	if (client_call_send_pb(t->out, &m.base)) {
		tx_fail(t, GRPC_RESOURCE_EXHAUSTED,
			"the metadata could not be sent (over the message size limit?)");
		return false;
	}
	return true;
}

static void tx_done(pool_job *pj)
{
	tx *t = container_of(pj, tx, pj);
	t->busy = false;
	if (t->ending || call_done(t->c)) {
		tx_end(t);
		return;
	}
	if (t->st.code != GRPC_OK) {
		tx_fail(t, t->st.code, t->st.msg);
		return;
	}
	if (t->op == TX_OPEN && !tx_send_meta(t))
		return;
	tx_pump(t);
}

static tx *tx_new(call *c, const char *ns, const char *name, bool include_files, bool remote)
{
	const svc_env *env = call_ctx(c);
	if (!transfer_admit(c))
		return NULL;
	tx *t = mem_calloc(1, sizeof(*t));
	if (!t) {
		--open_transfers;
		call_finish(c, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return NULL;
	}
	t->env = env;
	t->c = c;
	t->remote = remote;
	t->fd = -1;
	t->text = (buf)BUF_INIT;
	t->include_files = include_files;
	snprintf(t->ns, sizeof(t->ns), "%s", ns);
	snprintf(t->name, sizeof(t->name), "%s", name);
	/* Room for the chunk's own framing within the message size limit. */
	t->chunk = env->max_message_bytes - 64 < TX_CHUNK ? env->max_message_bytes - 64 : TX_CHUNK;
	t->pj.work = tx_work;
	t->pj.done = tx_done;
	call_ref(c);
	if (!remote)
		call_set_user(c, t);
	return t;
}

static bool names_ok(call *c, const char *ns, const char *name, const char *what)
{
	if (!name || !*name || strlen(name) > STORE_NAME_MAX || strlen(ns) > STORE_NAME_MAX) {
		call_finishf(c, GRPC_INVALID_ARGUMENT,
			     "%s: a namespace and a name (each at most %d bytes) are required",
			     what, STORE_NAME_MAX);
		return false;
	}
	return true;
}

/* ---- PullCollection ---- */

static void pull_request(call *c, const ProtobufCMessage *msg)
{
	const Collector__PullCollectionRequest *r = (const void *)msg;
	const svc_env *env = call_ctx(c);
	const char *ns = svc_namespace(
		c, env, r->source_collection ? r->source_collection->namespace_ : NULL);
	const char *name = r->source_collection ? r->source_collection->name : NULL;
	if (!names_ok(c, ns, name, "source_collection"))
		return;
	tx *t = tx_new(c, ns, name, r->include_files, false);
	if (t)
		tx_step(t, TX_OPEN);
}

static void pull_writable(call *c)
{
	tx *t = call_user(c);
	if (t && !t->busy && !t->ending)
		tx_pump(t);
}

/* The caller went: the transfer stops at once, or when its step is back. */
static void pull_cancel_tx(tx *t)
{
	if (t->ending)
		return;
	t->answered = true;
	if (t->busy) {
		t->ending = true;
		pool_job_cancel(&t->pj); /* its done ends it */
	} else {
		tx_end(t);
	}
}

static void pull_cancel(call *c)
{
	tx *t = call_user(c);
	if (t)
		pull_cancel_tx(t);
}

/* ---- Clone with dest_endpoint: the push ---- */

bool transfer_clone_cancel(call *c)
{
	if (!clones.next)
		return false;
	list_each (it, &clones) {
		tx *t = container_of(it, tx, link);
		if (t->c != c)
			continue;
		pull_cancel_tx(t);
		return true;
	}
	return false;
}

static void push_out_message(client_call *cc, const uint8_t *data, size_t len)
{
	tx *t = client_call_user(cc);
	if (t->out != cc || t->resp)
		return;
	t->resp = svc_decode(&collector__push_collection_response__descriptor, data, len);
}

static void push_out_writable(client_call *cc)
{
	tx *t = client_call_user(cc);
	if (t->out == cc && !t->busy && !t->ending)
		tx_pump(t);
}

static void push_out_done(client_call *cc, int code, const char *message)
{
	tx *t = client_call_user(cc);
	if (t->out != cc)
		return; /* cancelled by us */
	t->out = NULL;
	if (t->ending)
		return;
	if (code == GRPC_OK && (!t->resp || !t->half_closed)) {
		code = GRPC_INTERNAL;
		message = t->resp ? "the far side answered before the end of the stream"
				  : "the far side's answer does not decode";
	}
	if (code != GRPC_OK) {
		char msg[512];
		snprintf(msg, sizeof(msg), "dest_endpoint %s: %s", t->endpoint,
			 message ? message : "failed");
		tx_fail(t, code, msg);
		return;
	}
	Collector__CloneResponse resp = COLLECTOR__CLONE_RESPONSE__INIT;
	resp.status = &status_ok;
	resp.collection_id = t->resp->collection_id;
	resp.records_cloned = t->resp->records_cloned;
	resp.files_cloned = t->resp->files_cloned;
	resp.bytes_transferred = t->total;
	t->answered = true;
	call_reply(t->c, &resp.base);
	tx_end(t);
}

static const client_call_ops push_ops = {
	.on_message = push_out_message,
	.on_done = push_out_done,
	.on_writable = push_out_writable,
};

void transfer_clone_remote(call *c, const Collector__CloneRequest *req)
{
	const svc_env *env = call_ctx(c);
	const char *ns = svc_namespace(
		c, env, req->source_collection ? req->source_collection->namespace_ : NULL);
	const char *name = req->source_collection ? req->source_collection->name : NULL;
	if (!names_ok(c, ns, name, "source_collection"))
		return;
	const char *dns = req->dest_namespace && *req->dest_namespace ? req->dest_namespace : ns;
	const char *dname = req->dest_name && *req->dest_name ? req->dest_name : name;
	if (!names_ok(c, dns, dname, "the destination"))
		return;
	tx *t = tx_new(c, ns, name, req->include_files, true);
	if (!t)
		return;
	snprintf(t->dest_ns, sizeof(t->dest_ns), "%s", dns);
	snprintf(t->dest_name, sizeof(t->dest_name), "%s", dname);
	t->endpoint = req->dest_endpoint;
	if (!clones.next)
		list_init(&clones);
	list_push_back(&clones, &t->link);
	tx_step(t, TX_OPEN);
}

/* ==== the receiver ==== */

enum { RX_OPEN, RX_WRITE, RX_FINISH, RX_RELEASE };

typedef struct rx {
	pool_job pj;
	svc_job st;
	const svc_env *env;
	call *c;	 /* PushCollection's or Fetch's, referenced */
	client_call *in; /* Fetch: the PullCollection call to source_endpoint */
	const char *endpoint;
	int op;
	bool busy, ending, fetch, answered;
	bool have_meta, opened, input_ended, paused;
	char ns[STORE_NAME_MAX + 1], name[STORE_NAME_MAX + 1];
	uint8_t *meta;
	size_t meta_len;
	int64_t total, records, files, received;
	xfer_rx sm;
	xfer_sink sink;
	char tmp[STORE_TMP_MAX];
	char path[PATH_MAX];
	int dirfd, fd;
	buf queued, batch;
} rx;

/* ---- the sink: the staged directory (pool thread) ---- */

static int sink_open(void *ctx, const char *path)
{
	rx *r = ctx;
	char p[FILES_PATH_MAX + 16];
	snprintf(p, sizeof(p), "%s", path);
	int dir = dup(r->dirfd);
	char *save = NULL, *seg = strtok_r(p, "/", &save), *next;
	/* Each directory on the way is made and opened without following links; the manifest's
	 * paths were checked like upload paths (no "..", no empty segment). */
	while (dir >= 0 && seg && (next = strtok_r(NULL, "/", &save))) {
		mkdirat(dir, seg, 0755);
		int d = openat(dir, seg, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		close(dir);
		dir = d;
		seg = next;
	}
	if (dir < 0 || !seg) {
		int e = errno;
		if (dir >= 0)
			close(dir);
		return -(e ? e : EINVAL);
	}
	r->fd = openat(dir, seg, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	int e = errno;
	close(dir);
	return r->fd < 0 ? -e : 0;
}

static int sink_write(void *ctx, const uint8_t *data, size_t len)
{
	rx *r = ctx;
	while (len) {
		ssize_t n = write(r->fd, data, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

/* No fsync here: the pieces are synced together once all have come (stage_sync), so that
 * the disk writes back one file while the next arrives instead of stopping the stream at
 * the end of each. */
static int sink_close(void *ctx)
{
	rx *r = ctx;
	int rc = close(r->fd) ? -errno : 0;
	r->fd = -1;
	return rc;
}

static int sync_at(int dirfd, const char *path, int flags)
{
	int fd = openat(dirfd, path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | flags);
	if (fd < 0)
		return -errno;
	int rc = fsync(fd) ? -errno : 0;
	close(fd);
	return rc;
}

/* Every piece written and every directory made for them, durable before the install. */
static int stage_sync(rx *r)
{
	const manifest *m = &r->sm.m;
	int rc = sync_at(r->dirfd, SNAPSHOT_DB_NAME, 0);
	char prev[FILES_PATH_MAX + 16] = "";
	for (size_t i = 0; !rc && i < m->nfiles; i++) {
		char p[FILES_PATH_MAX + 16];
		snprintf(p, sizeof(p), SNAPSHOT_FILES_DIR "/%s", m->files[i].path);
		rc = sync_at(r->dirfd, p, 0);
		/* Its directories, deepest first, each once in a row (the manifest lists a
		 * directory's files together). */
		for (char *slash = strrchr(p, '/'); !rc && slash; slash = strrchr(p, '/')) {
			*slash = 0;
			if (!strcmp(p, prev))
				break;
			rc = sync_at(r->dirfd, p, O_DIRECTORY);
		}
		snprintf(prev, sizeof(prev), SNAPSHOT_FILES_DIR "/%s", m->files[i].path);
		char *slash = strrchr(prev, '/');
		if (slash)
			*slash = 0;
	}
	if (!rc)
		rc = fsync(r->dirfd) ? -errno : 0;
	return rc;
}

static void rx_release(rx *r)
{
	xfer_rx_free(&r->sm, &r->sink);
	if (r->dirfd >= 0)
		close(r->dirfd);
	r->dirfd = -1;
	if (r->tmp[0])
		store_stage_abort(r->env->store, r->ns, r->tmp);
	r->tmp[0] = 0;
}

static void rx_open(rx *r)
{
	if (!backup_check_dest(&r->st, r->env, r->ns, r->name, false))
		return;
	int rc = store_stage_begin(r->env->store, r->ns, r->path, sizeof(r->path), r->tmp);
	if (rc) {
		r->tmp[0] = 0;
		svc_fail_store(&r->st, rc, "preparing the collection's directory");
		return;
	}
	r->dirfd = open(r->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (r->dirfd < 0) {
		svc_job_fail(&r->st, GRPC_INTERNAL, "the staged directory: %s", strerror(errno));
		return;
	}
	int code = xfer_rx_meta(&r->sm, r->meta, r->meta_len, r->total, r->records, r->files,
				&r->sink);
	if (code != GRPC_OK)
		svc_job_fail(&r->st, code, "%s", r->sm.why);
}

static void rx_finish(rx *r)
{
	int code = xfer_rx_end(&r->sm);
	if (code != GRPC_OK) {
		svc_job_fail(&r->st, code, "%s", r->sm.why);
		return;
	}
	int rc = stage_sync(r);
	if (rc) {
		svc_job_fail(&r->st, GRPC_INTERNAL, "syncing the received collection: %s",
			     strerror(-rc));
		return;
	}
	close(r->dirfd);
	r->dirfd = -1;
	/* The stage is installed or removed by the adoption, whichever way it goes. */
	char tmp[STORE_TMP_MAX];
	snprintf(tmp, sizeof(tmp), "%s", r->tmp);
	r->tmp[0] = 0;
	backup_adopt_stage(&r->st, r->env, &r->sm.m, r->ns, r->name, tmp, r->path);
}

static void rx_work(pool_job *pj)
{
	rx *r = container_of(pj, rx, pj);
	int code;
	switch (r->op) {
	case RX_OPEN:
		rx_open(r);
		break;
	case RX_WRITE:
		code = xfer_rx_data(&r->sm, r->batch.data, r->batch.len, &r->sink);
		if (code != GRPC_OK)
			svc_job_fail(&r->st, code, "%s", r->sm.why);
		break;
	case RX_FINISH:
		rx_finish(r);
		break;
	case RX_RELEASE:
		rx_release(r);
		break;
	}
	if (r->st.code != GRPC_OK)
		rx_release(r); /* nothing half-made stays */
}

static void rx_free(rx *r)
{
	xfer_rx_free(&r->sm, NULL);
	buf_free(&r->queued);
	buf_free(&r->batch);
	mem_free(r->meta);
	call_set_user(r->c, NULL);
	call_unref(r->c);
	mem_free(r);
	--open_transfers;
}

static void rx_end(rx *r)
{
	r->ending = true;
	if (r->busy)
		return;
	if (r->in) {
		client_call *i = r->in;
		r->in = NULL;
		client_call_cancel(i);
	}
	if (r->tmp[0] || r->dirfd >= 0 || r->sm.open) {
		r->op = RX_RELEASE;
		r->st.code = GRPC_OK;
		if ((r->busy = pool_submit(r->env->pool, call_reactor(r->c), &r->pj) == 0))
			return;
		rx_release(r); /* the pool is full or stopping */
	}
	rx_free(r);
}

static void rx_fail(rx *r, int code, const char *msg)
{
	if (!r->answered) {
		r->answered = true;
		call_finish(r->c, code, msg);
	}
	rx_end(r);
}

static void rx_step(rx *r, int op)
{
	r->op = op;
	r->st.code = GRPC_OK;
	r->busy = pool_submit(r->env->pool, call_reactor(r->c), &r->pj) == 0;
	if (!r->busy)
		rx_fail(r, GRPC_RESOURCE_EXHAUSTED, "the node is busy: its work queue is full");
}

static void rx_pause(rx *r, bool on)
{
	if (r->paused == on)
		return;
	r->paused = on;
	if (r->fetch) {
		if (!r->in)
			return;
		if (on)
			client_call_pause(r->in);
		else
			client_call_resume(r->in); /* may deliver, and end, at once */
	} else {
		if (on)
			call_pause_input(r->c);
		else
			call_resume_input(r->c);
	}
}

/* Reactor, no step out: writes what came, or finishes once everything has. */
static void rx_next(rx *r)
{
	if (!r->opened)
		return;
	if (r->queued.len) {
		buf t = r->batch;
		r->batch = r->queued;
		r->queued = t;
		buf_reset(&r->queued);
		rx_step(r, RX_WRITE);
		if (r->busy)
			rx_pause(r, false); /* last: what it delivers queues behind the step */
		return;
	}
	if (!r->input_ended)
		return;
	if (r->received != r->total) {
		char msg[200];
		snprintf(msg, sizeof(msg),
			 "the stream ended after %lld of metadata.total_size %lld bytes; nothing "
			 "stored",
			 (long long)r->received, (long long)r->total);
		rx_fail(r, GRPC_INVALID_ARGUMENT, msg);
		return;
	}
	rx_step(r, RX_FINISH);
}

static void rx_reply(rx *r)
{
	char id[2 * STORE_NAME_MAX + 2];
	snprintf(id, sizeof(id), "%s/%s", r->ns, r->name);
	r->answered = true;
	if (r->fetch) {
		Collector__FetchResponse resp = COLLECTOR__FETCH_RESPONSE__INIT;
		resp.status = &status_ok;
		resp.collection_id = id;
		resp.records_fetched = r->records;
		resp.files_fetched = r->files;
		resp.bytes_transferred = r->received;
		call_reply(r->c, &resp.base);
	} else {
		Collector__PushCollectionResponse resp = COLLECTOR__PUSH_COLLECTION_RESPONSE__INIT;
		resp.status = &status_ok;
		resp.collection_id = id;
		resp.records_cloned = r->records;
		resp.files_cloned = r->files;
		resp.bytes_received = r->received;
		call_reply(r->c, &resp.base);
	}
}

static void rx_done(pool_job *pj)
{
	rx *r = container_of(pj, rx, pj);
	r->busy = false;
	if (r->ending || call_done(r->c)) {
		rx_end(r);
		return;
	}
	if (r->st.code != GRPC_OK) {
		char msg[sizeof(r->st.msg) + 300];
		if (r->fetch && r->st.code != GRPC_ALREADY_EXISTS)
			snprintf(msg, sizeof(msg), "%s (from source_endpoint %s)", r->st.msg,
				 r->endpoint);
		else
			snprintf(msg, sizeof(msg), "%s", r->st.msg);
		rx_fail(r, r->st.code, msg);
		return;
	}
	switch (r->op) {
	case RX_OPEN:
		r->opened = true;
		break;
	case RX_WRITE:
		buf_reset(&r->batch);
		break;
	case RX_FINISH:
		rx_reply(r);
		rx_end(r);
		return;
	}
	rx_next(r);
}

static rx *rx_new(call *c, bool fetch, const char *ns, const char *name)
{
	if (!transfer_admit(c))
		return NULL;
	rx *r = mem_calloc(1, sizeof(*r));
	if (!r) {
		--open_transfers;
		call_finish(c, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return NULL;
	}
	r->env = call_ctx(c);
	r->c = c;
	r->fetch = fetch;
	r->dirfd = r->fd = -1;
	r->queued = (buf)BUF_INIT;
	r->batch = (buf)BUF_INIT;
	snprintf(r->ns, sizeof(r->ns), "%s", ns);
	snprintf(r->name, sizeof(r->name), "%s", name);
	xfer_rx_init(&r->sm);
	r->sink = (xfer_sink){r, sink_open, sink_write, sink_close};
	r->pj.work = rx_work;
	r->pj.done = rx_done;
	call_ref(c);
	call_set_user(c, r);
	return r;
}

/* Reactor: the metadata arrived (checked against the manifest by the open step). */
static void rx_meta_in(rx *r, const ProtobufCBinaryData *manifest, int64_t total, int64_t records,
		       int64_t files)
{
	if (r->have_meta) {
		rx_fail(r, GRPC_INVALID_ARGUMENT,
			"a second metadata message: metadata comes once, first, then chunks");
		return;
	}
	r->have_meta = true;
	if (total < 0) {
		rx_fail(r, GRPC_INVALID_ARGUMENT, "metadata.total_size is negative");
		return;
	}
	r->meta = mem_alloc(manifest->len ? manifest->len : 1);
	if (!r->meta) {
		rx_fail(r, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	if (manifest->len)
		memcpy(r->meta, manifest->data, manifest->len);
	r->meta_len = manifest->len;
	r->total = total;
	r->records = records;
	r->files = files;
	rx_step(r, RX_OPEN);
}

static void rx_chunk_in(rx *r, const uint8_t *data, size_t len)
{
	if (!r->have_meta) {
		rx_fail(r, GRPC_INVALID_ARGUMENT,
			"a chunk before the metadata: metadata comes first, then chunks");
		return;
	}
	if ((uint64_t)len > (uint64_t)(r->total - r->received)) {
		char msg[160];
		snprintf(msg, sizeof(msg),
			 "more bytes than metadata.total_size %lld; nothing stored",
			 (long long)r->total);
		rx_fail(r, GRPC_INVALID_ARGUMENT, msg);
		return;
	}
	if (buf_append(&r->queued, data, len)) {
		rx_fail(r, GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	r->received += (int64_t)len;
	if (r->queued.len >= RX_QUEUE_MAX)
		rx_pause(r, true);
	if (!r->busy)
		rx_next(r);
}

static void rx_end_in(rx *r)
{
	if (!r->have_meta) {
		rx_fail(r, GRPC_INVALID_ARGUMENT,
			"the stream ended without metadata (metadata first, then chunks)");
		return;
	}
	r->input_ended = true;
	if (!r->busy)
		rx_next(r);
}

/* ---- PushCollection ---- */

static void push_message(call *c, const ProtobufCMessage *msg)
{
	const Collector__PushCollectionRequest *m = (const void *)msg;
	rx *r = call_user(c);
	if (r && r->ending)
		return;
	if (m->data_case == COLLECTOR__PUSH_COLLECTION_REQUEST__DATA_METADATA) {
		const Collector__PushCollectionRequest__Metadata *md = m->metadata;
		if (!r) {
			const svc_env *env = call_ctx(c);
			const char *ns = svc_namespace(c, env, md->dest_namespace);
			const char *name = md->dest_name && *md->dest_name ? md->dest_name
					   : md->source_collection ? md->source_collection->name
								   : NULL;
			if (!names_ok(c, ns, name, "the destination (dest_name)"))
				return;
			if (!(r = rx_new(c, false, ns, name)))
				return;
		}
		rx_meta_in(r, &md->manifest, md->total_size, md->record_count, md->file_count);
		return;
	}
	if (!r) {
		call_finish(c, GRPC_INVALID_ARGUMENT,
			    "the first PushCollection message must be the metadata, then chunks");
		return;
	}
	if (m->data_case == COLLECTOR__PUSH_COLLECTION_REQUEST__DATA_CHUNK && m->chunk.len)
		rx_chunk_in(r, m->chunk.data, m->chunk.len);
}

static void push_half_close(call *c)
{
	rx *r = call_user(c);
	if (!r) {
		call_finish(c, GRPC_INVALID_ARGUMENT, "PushCollection ended without metadata");
		return;
	}
	if (!r->ending)
		rx_end_in(r);
}

static void rx_cancel(call *c)
{
	rx *r = call_user(c);
	if (!r || r->ending)
		return;
	r->answered = true;
	if (r->busy) {
		r->ending = true;
		pool_job_cancel(&r->pj); /* its done ends it */
	} else {
		rx_end(r);
	}
}

/* ---- Fetch: the pull ---- */

static void pull_in_message(client_call *cc, const uint8_t *data, size_t len)
{
	rx *r = client_call_user(cc);
	if (r->in != cc || r->ending)
		return;
	Collector__PullCollectionChunk *m =
		svc_decode(&collector__pull_collection_chunk__descriptor, data, len);
	if (!m) {
		rx_fail(r, GRPC_INTERNAL, "source_endpoint sent a message that does not decode");
		return;
	}
	if (m->data_case == COLLECTOR__PULL_COLLECTION_CHUNK__DATA_METADATA)
		rx_meta_in(r, &m->metadata->manifest, m->metadata->total_size,
			   m->metadata->record_count, m->metadata->file_count);
	else if (m->data_case == COLLECTOR__PULL_COLLECTION_CHUNK__DATA_CHUNK && m->chunk.len)
		rx_chunk_in(r, m->chunk.data, m->chunk.len);
	collector__pull_collection_chunk__free_unpacked(m, NULL);
}

static void pull_in_done(client_call *cc, int code, const char *message)
{
	rx *r = client_call_user(cc);
	if (r->in != cc)
		return; /* cancelled by us */
	r->in = NULL;
	if (r->ending)
		return;
	if (code != GRPC_OK) {
		char msg[512];
		snprintf(msg, sizeof(msg), "source_endpoint %s: %s", r->endpoint,
			 message ? message : "failed");
		rx_fail(r, code, msg);
		return;
	}
	rx_end_in(r);
}

static const client_call_ops pull_ops = {
	.on_message = pull_in_message,
	.on_done = pull_in_done,
};

static void fetch_request(call *c, const ProtobufCMessage *msg)
{
	const Collector__FetchRequest *req = (const void *)msg;
	const svc_env *env = call_ctx(c);
	if (!req->source_endpoint || !*req->source_endpoint) {
		call_finish(c, GRPC_INVALID_ARGUMENT, "source_endpoint is required (host:port)");
		return;
	}
	const char *sns = req->source_collection && *req->source_collection->namespace_
				  ? req->source_collection->namespace_
				  : svc_namespace(c, env, NULL);
	const char *sname = req->source_collection ? req->source_collection->name : NULL;
	if (!names_ok(c, sns, sname, "source_collection"))
		return;
	const char *ns = svc_namespace(c, env, req->dest_namespace);
	const char *name = req->dest_name && *req->dest_name ? req->dest_name : sname;
	if (!names_ok(c, ns, name, "the destination"))
		return;
	client_channel *ch =
		proxy_channel(call_reactor(c), req->source_endpoint, env->max_message_bytes, true);
	if (!ch) {
		call_finishf(c, GRPC_INVALID_ARGUMENT,
			     "source_endpoint '%.200s' is not host:port (a numeric host or "
			     "localhost)",
			     req->source_endpoint);
		return;
	}
	rx *r = rx_new(c, true, ns, name);
	if (!r)
		return;
	r->endpoint = req->source_endpoint;
	Collector__NamespacedName src = COLLECTOR__NAMESPACED_NAME__INIT;
	src.namespace_ = (char *)sns;
	src.name = (char *)sname;
	Collector__PullCollectionRequest pr = COLLECTOR__PULL_COLLECTION_REQUEST__INIT;
	pr.source_collection = &src;
	pr.include_files = req->include_files;
	call_md cred[1];
	size_t nmd;
	const call_md *md = proxy_md_for_node(NULL, 0, true, cred, &nmd);
	client_call_args a = {.path = REPO "PullCollection",
			      .timeout_ns = timeout_of(c),
			      .md = md,
			      .nmd = nmd,
			      .ops = &pull_ops,
			      .user = r};
	r->in = client_call_start(ch, &a);
	if (!r->in || client_call_send_pb(r->in, &pr.base)) {
		rx_fail(r, GRPC_UNAVAILABLE, "source_endpoint cannot be called from this node");
		return;
	}
	client_call_half_close(r->in);
}

int transfer_register(method_table *t, svc_env *env)
{
	const method methods[] = {
		{REPO "PullCollection",
		 METHOD_SERVER_STREAM,
		 &collector__pull_collection_request__descriptor,
		 &collector__pull_collection_chunk__descriptor,
		 {.on_request = pull_request,
		  .on_writable = pull_writable,
		  .on_cancel = pull_cancel},
		 env},
		{REPO "PushCollection",
		 METHOD_CLIENT_STREAM,
		 &collector__push_collection_request__descriptor,
		 &collector__push_collection_response__descriptor,
		 {.on_message = push_message,
		  .on_half_close = push_half_close,
		  .on_cancel = rx_cancel},
		 env},
		{REPO "Fetch",
		 METHOD_UNARY,
		 &collector__fetch_request__descriptor,
		 &collector__fetch_response__descriptor,
		 {.on_request = fetch_request, .on_cancel = rx_cancel},
		 env},
	};
	return method_table_add_all(t, methods, sizeof(methods) / sizeof(methods[0]));
}
