#include "store/coll.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/mem.h"
#include "store/dirs.h"
#include "store/store_int.h"

typedef struct idx_job {
	size_t n;
	const char *const *names, *const *exprs;
	int rc;
	bool done;
	char err[256];
} idx_job;

struct store_coll {
	char ns[STORE_NAME_MAX + 1], name[STORE_NAME_MAX + 1];
	char *db_path;
	void *owner;
	coll_options o;
	int files_fd, staging_fd;

	store_writer *w; /* used by the writer thread only */
	pthread_t thread;
	bool thread_started;

	pthread_mutex_t mu; /* queue, stopping, idx */
	pthread_cond_t cv;  /* wakes the writer */
	pthread_cond_t idx_cv;
	store_write_req *head, *tail;
	size_t queued;
	bool stopping;
	idx_job *idx;
	size_t want;		/* queued requests that wake the writer */
	size_t last_n;		/* the writer's: requests of the last group */
	int64_t last_ns;	/* and how long it took */
	pthread_mutex_t idx_mu; /* one set_indexes at a time */
	atomic_uint_least64_t commits, acked;

	pthread_mutex_t rmu;
	pthread_cond_t rcv;
	store_reader **rfree; /* idle readers, readers_max slots */
	size_t nfree, nreaders;
};

/* --- the writer thread ------------------------------------------------------------------ */

/* Runs a group, then answers its requests. */
static void run_group(store_coll *c, store_write_req *group)
{
	int fatal = store_writer_run(c->w, group);
	if (fatal) {
		log_warn("store: %s/%s: write group failed: %s", c->ns, c->name, store_err_msg());
	} else {
		/* Counted before the callbacks, so that an acknowledged writer sees its own. */
		size_t n = 0;
		for (store_write_req *r = group; r; r = r->next)
			n++;
		atomic_fetch_add(&c->commits, 1);
		atomic_fetch_add(&c->acked, n);
	}
	for (store_write_req *r = group, *next; r; r = next) {
		next = r->next; /* done may free r */
		r->done(r, r->status);
	}
}

#define GATHER_MIN 32
#define GATHER_MAX_NS (20 * NS_PER_MS)

/* Under a steady load requests come back in waves, as each group is answered, and a writer
 * starting on the first few of a wave splits it over two groups: twice the commits, and
 * per insert a commit costs as much as ~100 inserts (an fsync, the FTS segment). After a
 * big group the writer waits for as many requests as it had, at most as long as that group
 * took (and GATHER_MAX_NS): under lighter load it waits once, then groups are small and
 * nothing waits. Called with mu held. */
static void gather(store_coll *c)
{
	if (c->last_n < GATHER_MIN || c->queued >= c->last_n)
		return;
	int64_t wait = c->last_ns < GATHER_MAX_NS ? c->last_ns : GATHER_MAX_NS;
	int64_t deadline = clock_now_ns() + wait;
	struct timespec ts = {.tv_sec = deadline / NS_PER_SEC, .tv_nsec = deadline % NS_PER_SEC};
	c->want = c->last_n;
	while (c->queued < c->want && !c->stopping && !c->idx)
		if (pthread_cond_timedwait(&c->cv, &c->mu, &ts) == ETIMEDOUT)
			break;
	c->want = 1;
}

static void *writer_main(void *arg)
{
	store_coll *c = arg;
	pthread_mutex_lock(&c->mu);
	for (;;) {
		while (!c->head && !c->idx && !c->stopping)
			pthread_cond_wait(&c->cv, &c->mu);
		if (c->head && !c->idx && !c->stopping)
			gather(c);
		if (c->idx) {
			idx_job *j = c->idx;
			pthread_mutex_unlock(&c->mu);
			j->rc = store_writer_set_indexes(c->w, j->n, j->names, j->exprs);
			if (j->rc < 0)
				snprintf(j->err, sizeof(j->err), "%s", store_err_msg());
			pthread_mutex_lock(&c->mu);
			j->done = true;
			c->idx = NULL;
			pthread_cond_broadcast(&c->idx_cv);
			continue;
		}
		if (!c->head)
			break; /* stopping, and every queued request has run */
		store_write_req *group = c->head, *last = group;
		size_t n = 1;
		while (last->next && (!c->o.group_max || n < c->o.group_max)) {
			last = last->next;
			n++;
		}
		c->head = last->next;
		if (!c->head)
			c->tail = NULL;
		last->next = NULL;
		c->queued -= n;
		pthread_mutex_unlock(&c->mu);
		int64_t t0 = clock_now_ns();
		run_group(c, group);
		c->last_ns = clock_now_ns() - t0;
		c->last_n = n;
		pthread_mutex_lock(&c->mu);
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

int store_coll_write(store_coll *c, store_write_req *req)
{
	if (!req->done)
		return store_err_set(-EINVAL, "write request without done");
	int rc = store_writer_check(req);
	if (rc < 0)
		return rc;
	req->next = NULL;
	pthread_mutex_lock(&c->mu);
	if (c->stopping)
		rc = store_err_set(-ESHUTDOWN, "collection %s/%s is closing", c->ns, c->name);
	else if (c->queued >= c->o.queue_max)
		rc = store_err_set(-EAGAIN, "write queue of %s/%s is full", c->ns, c->name);
	if (rc == 0) {
		if (c->tail)
			c->tail->next = req;
		else
			c->head = req;
		c->tail = req;
		if (++c->queued >= c->want)
			pthread_cond_signal(&c->cv);
	}
	pthread_mutex_unlock(&c->mu);
	return rc;
}

int store_coll_set_indexes(store_coll *c, size_t n, const char *const names[],
			   const char *const exprs[])
{
	int rc = store_writer_check_indexes(n, names, exprs);
	if (rc < 0)
		return rc;
	idx_job j = {.n = n, .names = names, .exprs = exprs};
	pthread_mutex_lock(&c->idx_mu);
	pthread_mutex_lock(&c->mu);
	if (c->stopping) {
		j.rc = -ESHUTDOWN;
		snprintf(j.err, sizeof(j.err), "collection is closing");
	} else {
		c->idx = &j;
		pthread_cond_signal(&c->cv);
		while (!j.done)
			pthread_cond_wait(&c->idx_cv, &c->mu);
	}
	pthread_mutex_unlock(&c->mu);
	pthread_mutex_unlock(&c->idx_mu);
	return j.rc < 0 ? store_err_set(j.rc, "%s", j.err) : 0;
}

/* --- readers --------------------------------------------------------------------------- */

int store_coll_read_begin(store_coll *c, store_reader **out)
{
	store_reader *r = NULL;
	pthread_mutex_lock(&c->rmu);
	while (!c->nfree && c->nreaders >= c->o.readers_max)
		pthread_cond_wait(&c->rcv, &c->rmu);
	if (c->nfree)
		r = c->rfree[--c->nfree];
	else
		c->nreaders++;
	pthread_mutex_unlock(&c->rmu);
	int rc = 0;
	if (!r) {
		rc = store_reader_open(c->db_path, c->o.busy_timeout_ms, &r);
		if (rc < 0) {
			pthread_mutex_lock(&c->rmu);
			c->nreaders--;
			pthread_cond_signal(&c->rcv);
			pthread_mutex_unlock(&c->rmu);
			return rc;
		}
		store_reader_set_owner(r, c);
	}
	if ((rc = store_reader_begin(r)) < 0) {
		store_coll_read_end(r);
		return rc;
	}
	*out = r;
	return 0;
}

void store_coll_read_end(store_reader *r)
{
	store_coll *c = store_reader_owner(r);
	bool stuck = !store_reader_end(r);
	if (stuck) {
		log_warn("store: %s/%s: dropping a reader stuck in its transaction", c->ns,
			 c->name);
		store_reader_close(r);
	}
	pthread_mutex_lock(&c->rmu);
	if (stuck)
		c->nreaders--;
	else
		c->rfree[c->nfree++] = r;
	pthread_cond_signal(&c->rcv);
	pthread_mutex_unlock(&c->rmu);
}

/* --- open, close, stats ------------------------------------------------------------------ */

int coll_open(const char *dir, const char *ns, const char *name, const coll_options *o, void *owner,
	      store_coll **out)
{
	store_coll *c = mem_calloc(1, sizeof(*c));
	if (!c)
		return store_err_set(-ENOMEM, "out of memory");
	snprintf(c->ns, sizeof(c->ns), "%s", ns);
	snprintf(c->name, sizeof(c->name), "%s", name);
	c->owner = owner;
	c->o = *o;
	c->files_fd = c->staging_fd = -1;
	pthread_mutex_init(&c->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* gather's deadline */
	pthread_cond_init(&c->cv, &ca);
	pthread_condattr_destroy(&ca);
	c->want = 1;
	pthread_cond_init(&c->idx_cv, NULL);
	pthread_mutex_init(&c->idx_mu, NULL);
	pthread_mutex_init(&c->rmu, NULL);
	pthread_cond_init(&c->rcv, NULL);
	int rc = 0;
	c->rfree = mem_calloc(o->readers_max, sizeof(*c->rfree));
	size_t plen = strlen(dir) + sizeof("/records.db");
	c->db_path = mem_alloc(plen);
	if (!c->rfree || !c->db_path) {
		rc = store_err_set(-ENOMEM, "out of memory");
		goto fail;
	}
	snprintf(c->db_path, plen, "%s/records.db", dir);

	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		c->files_fd = openat(dfd, "files", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (mkdirat(dfd, "staging", 0755) && errno != EEXIST)
			log_warn("store: %s/%s: staging: %s", ns, name, strerror(errno));
		c->staging_fd =
			openat(dfd, "staging", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		close(dfd);
	}
	if (c->files_fd < 0 || c->staging_fd < 0) {
		rc = store_err_set(-errno, "collection %s/%s: %s", ns, name, strerror(errno));
		goto fail;
	}
	/* Uploads that were in progress when the collection last closed are dead. */
	dirs_clear(c->staging_fd);

	if ((rc = store_writer_open(c->db_path, o->sync_normal, o->busy_timeout_ms, &c->w)) < 0)
		goto fail;
	int err = pthread_create(&c->thread, NULL, writer_main, c);
	if (err) {
		rc = store_err_set(-err, "writer thread: %s", strerror(err));
		goto fail;
	}
	c->thread_started = true;
	char tname[16];
	snprintf(tname, sizeof(tname), "w:%s", name);
	pthread_setname_np(c->thread, tname);
	*out = c;
	return 0;
fail:
	coll_close(c);
	return rc;
}

void coll_close(store_coll *c)
{
	if (c->thread_started) {
		pthread_mutex_lock(&c->mu);
		c->stopping = true;
		pthread_cond_signal(&c->cv);
		pthread_mutex_unlock(&c->mu);
		pthread_join(c->thread, NULL);
	}
	if (c->nfree != c->nreaders)
		log_error("store: %s/%s closed with %zu reads in progress", c->ns, c->name,
			  c->nreaders - c->nfree);
	for (size_t i = 0; i < c->nfree; i++)
		store_reader_close(c->rfree[i]);
	store_writer_close(c->w);
	if (c->files_fd >= 0)
		close(c->files_fd);
	if (c->staging_fd >= 0)
		close(c->staging_fd);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
	pthread_cond_destroy(&c->idx_cv);
	pthread_mutex_destroy(&c->idx_mu);
	pthread_mutex_destroy(&c->rmu);
	pthread_cond_destroy(&c->rcv);
	mem_free(c->rfree);
	mem_free(c->db_path);
	mem_free(c);
}

int store_coll_stats(store_coll *c, int64_t *records, int64_t *bytes)
{
	store_reader *r;
	int rc = store_coll_read_begin(c, &r);
	if (rc < 0)
		return rc;
	rc = store_reader_count(r, records);
	store_coll_read_end(r);
	if (rc < 0)
		return rc;

	int64_t total = 0;
	const char *suffix[] = {"", "-wal"};
	char path[PATH_MAX];
	for (size_t i = 0; i < 2; i++) {
		struct stat sb;
		snprintf(path, sizeof(path), "%s%s", c->db_path, suffix[i]);
		if (stat(path, &sb) == 0)
			total += sb.st_size;
	}
	int64_t nfiles, fbytes;
	if ((rc = dirs_tree_stat(c->files_fd, &nfiles, &fbytes)) < 0)
		return store_err_set(rc, "attachments: %s", strerror(-rc));
	*bytes = total + fbytes;
	return 0;
}

void store_coll_group_stats(store_coll *c, uint64_t *commits, uint64_t *requests)
{
	*commits = atomic_load(&c->commits);
	*requests = atomic_load(&c->acked);
}

const char *store_coll_ns(const store_coll *c) { return c->ns; }
const char *store_coll_name(const store_coll *c) { return c->name; }
void *coll_owner(const store_coll *c) { return c->owner; }
int coll_files_fd(const store_coll *c) { return c->files_fd; }
int coll_staging_fd(const store_coll *c) { return c->staging_fd; }
const char *coll_db_path(const store_coll *c) { return c->db_path; }
