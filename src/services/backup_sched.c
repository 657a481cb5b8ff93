/* Scheduled backups (backup.h): a timer on the reactor that claims it posts one pass at a
 * time to the pool; the pass reads the catalog and the backup rows, so that what is due
 * after a restart follows from the last backup's time, not from when the node started. */
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/mem.h"
#include "services/backup.h"

#define TICK_NS (1000LL * 1000 * 1000)

struct backup_sched {
	const svc_env *env;
	atomic_bool claimed;
	reactor *r;
	timer tick;
	pool_job job;
	bool busy, draining;
};

typedef struct due {
	char ns[STORE_NAME_MAX + 1], name[STORE_NAME_MAX + 1];
	int64_t interval;
} due;

typedef struct due_list {
	due *v;
	size_t n, cap;
} due_list;

static int collect(void *ctx, const store_collection *row)
{
	due_list *l = ctx;
	Collector__Collection *def =
		svc_decode(&collector__collection__descriptor, row->def, row->def_len);
	const Collector__BackupPolicy *p = def ? def->backup_policy : NULL;
	int64_t interval = p && p->enabled ? p->interval_seconds : 0;
	if (def)
		collector__collection__free_unpacked(def, NULL);
	if (interval <= 0)
		return 0;
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 8;
		void *v = mem_realloc(l->v, cap * sizeof(*l->v));
		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	due *d = &l->v[l->n++];
	snprintf(d->ns, sizeof(d->ns), "%s", row->ns);
	snprintf(d->name, sizeof(d->name), "%s", row->name);
	d->interval = interval;
	return 0;
}

static void pass(pool_job *pj)
{
	backup_sched *s = (backup_sched *)((char *)pj - offsetof(backup_sched, job));
	const svc_env *env = s->env;
	due_list l = {0};
	store_list_filter f = {.users_only = true};
	if (store_collection_list(env->store, &f, collect, &l, NULL) || !l.n) {
		mem_free(l.v);
		return;
	}
	svc_job j;
	memset(&j, 0, sizeof(j));
	Collector__BackupMetadata **rows = NULL;
	size_t n = 0;
	if (!backup_rows(&j, env, &rows, &n)) {
		log_warn("backups: scheduler: %s", j.msg);
		mem_free(l.v);
		return;
	}
	int64_t now_s = clock_wall_ns() / 1000000000;
	for (size_t i = 0; i < l.n; i++) {
		const due *d = &l.v[i];
		int64_t last = -1;
		for (size_t k = 0; k < n && last < 0; k++) /* rows are newest first */
			if (rows[k]->collection &&
			    !strcmp(rows[k]->collection->namespace_, d->ns) &&
			    !strcmp(rows[k]->collection->name, d->name))
				last = rows[k]->timestamp;
		if (last >= 0 && now_s - last < d->interval)
			continue;
		static const char *const key[] = {"scheduled"}, *const value[] = {"true"};
		backup_args a = {.ns = d->ns,
				 .name = d->name,
				 .include_files = true,
				 .nmeta = 1,
				 .meta_keys = key,
				 .meta_values = value};
		Collector__BackupMetadata *b = NULL;
		int64_t bytes;
		memset(&j, 0, sizeof(j));
		if (backup_make(&j, env, &a, &b, &bytes)) {
			log_info("backups: scheduled backup %s of %s/%s", b->backup_id, d->ns,
				 d->name);
			collector__backup_metadata__free_unpacked(b, NULL);
		} else {
			log_warn("backups: scheduled backup of %s/%s: %s", d->ns, d->name, j.msg);
		}
	}
	backup_rows_free(rows, n);
	mem_free(l.v);
}

static void on_tick(timer *t);

static void pass_done(pool_job *pj)
{
	backup_sched *s = (backup_sched *)((char *)pj - offsetof(backup_sched, job));
	s->busy = false;
}

static void on_tick(timer *t)
{
	backup_sched *s = (backup_sched *)((char *)t - offsetof(backup_sched, tick));
	if (s->draining)
		return;
	if (!s->busy) {
		memset(&s->job, 0, sizeof(s->job));
		s->job.work = pass;
		s->job.done = pass_done;
		/* A full pool skips this second: the next tick tries again. */
		s->busy = pool_submit(s->env->pool, s->r, &s->job) == 0;
	}
	if (reactor_timer_arm(s->r, &s->tick, reactor_now(s->r) + TICK_NS, on_tick))
		log_error("backups: the scheduler's timer cannot be armed");
}

backup_sched *backup_sched_new(const svc_env *env)
{
	backup_sched *s = mem_calloc(1, sizeof(*s));
	if (s)
		s->env = env;
	return s;
}

void backup_sched_start(backup_sched *s, reactor *r)
{
	if (!s || atomic_exchange(&s->claimed, true))
		return;
	s->r = r;
	if (reactor_timer_arm(r, &s->tick, reactor_now(r) + TICK_NS, on_tick))
		log_error("backups: the scheduler's timer cannot be armed");
}

void backup_sched_drain(backup_sched *s, reactor *r)
{
	if (!s || s->r != r)
		return;
	s->draining = true;
	reactor_timer_disarm(r, &s->tick);
}

void backup_sched_free(backup_sched *s) { mem_free(s); }
