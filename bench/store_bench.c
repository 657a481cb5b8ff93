/* Group commit against one transaction per request: T threads each write N single-insert
 * requests to one collection, keeping D requests in flight each, first with grouping and
 * then with group_max=1. Prints requests per commit and writes per second.
 *
 *   store_bench [-t threads] [-n requests per thread] [-d in flight per thread]
 *               [-s normal|full] [-D data dir (default: a fresh one under /tmp)] */
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "store/coll.h"
#include "store/store.h"

typedef struct req {
	store_write_req r; /* first: done gets this pointer back */
	store_op op;
	char id[48], json[96];
	struct worker *w;
} req;

typedef struct worker {
	store_coll *c;
	int k, n, depth;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int in_flight, failed;
	req *reqs;
} worker;

static void on_done(store_write_req *r, int rc)
{
	worker *w = ((req *)r)->w;
	pthread_mutex_lock(&w->mu);
	w->in_flight--;
	w->failed += rc != 0;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

static void *worker_main(void *arg)
{
	worker *w = arg;
	for (int i = 0; i < w->n; i++) {
		req *q = &w->reqs[i];
		snprintf(q->id, sizeof(q->id), "w%d-%d", w->k, i);
		snprintf(q->json, sizeof(q->json),
			 "{\"worker\":%d,\"i\":%d,\"text\":\"some words\"}", w->k, i);
		q->op = (store_op){
			.kind = STORE_OP_INSERT,
			.id = q->id,
			.row = {.data = q->json, .data_len = strlen(q->json), .json = q->json}};
		q->r = (store_write_req){.ops = &q->op, .nops = 1, .done = on_done};
		q->w = w;
		pthread_mutex_lock(&w->mu);
		while (w->in_flight >= w->depth)
			pthread_cond_wait(&w->cv, &w->mu);
		w->in_flight++;
		pthread_mutex_unlock(&w->mu);
		int rc;
		while ((rc = store_coll_write(w->c, &q->r)) == -EAGAIN)
			usleep(100);
		if (rc) {
			fprintf(stderr, "store_coll_write: %s\n", store_err_msg());
			exit(1);
		}
	}
	pthread_mutex_lock(&w->mu);
	while (w->in_flight)
		pthread_cond_wait(&w->cv, &w->mu);
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static void run(const char *dir, const char *mode, size_t group_max, bool normal, int threads,
		int n, int depth)
{
	store *s;
	store_options o = {.group_max = group_max, .sync_normal = normal};
	store_collection def = {.ns = "bench", .name = mode};
	store_coll *c;
	if (store_open(dir, &o, &s) || store_collection_create(s, &def, 0) ||
	    store_coll_acquire(s, "bench", mode, &c)) {
		fprintf(stderr, "%s\n", store_err_msg());
		exit(1);
	}
	worker *w = calloc((size_t)threads, sizeof(*w));
	pthread_t *th = calloc((size_t)threads, sizeof(*th));
	int64_t t0 = clock_now_ns();
	for (int k = 0; k < threads; k++) {
		w[k] = (worker){.c = c, .k = k, .n = n, .depth = depth};
		w[k].reqs = calloc((size_t)n, sizeof(req));
		pthread_mutex_init(&w[k].mu, NULL);
		pthread_cond_init(&w[k].cv, NULL);
		pthread_create(&th[k], NULL, worker_main, &w[k]);
	}
	int failed = 0;
	for (int k = 0; k < threads; k++) {
		pthread_join(th[k], NULL);
		failed += w[k].failed;
		free(w[k].reqs);
	}
	double secs = (double)(clock_now_ns() - t0) / 1e9;
	uint64_t commits, acked;
	store_coll_group_stats(c, &commits, &acked);
	printf("%-7s sync=%-6s threads=%d in-flight/thread=%d: %llu writes, %llu commits, "
	       "%.2f requests/commit, %.0f writes/s (%.2f s)%s\n",
	       mode, normal ? "NORMAL" : "FULL", threads, depth, (unsigned long long)acked,
	       (unsigned long long)commits, (double)acked / (double)commits, (double)acked / secs,
	       secs, failed ? " FAILURES" : "");
	store_coll_release(c);
	store_close(s);
	free(w);
	free(th);
}

int main(int argc, char **argv)
{
	int threads = 8, n = 500, depth = 1, opt;
	bool normal = false;
	const char *data = NULL;
	while ((opt = getopt(argc, argv, "t:n:d:s:D:")) != -1) {
		switch (opt) {
		case 't':
			threads = atoi(optarg);
			break;
		case 'n':
			n = atoi(optarg);
			break;
		case 'd':
			depth = atoi(optarg);
			break;
		case 's':
			normal = !strcmp(optarg, "normal");
			break;
		case 'D':
			data = optarg;
			break;
		default:
			fprintf(stderr,
				"usage: %s [-t threads] [-n per thread] [-d in flight] "
				"[-s normal|full] [-D dir]\n",
				argv[0]);
			return 2;
		}
	}
	if (threads < 1 || n < 1 || depth < 1)
		return 2;
	char tmp[] = "/tmp/store_bench-XXXXXX";
	const char *dir = data ? data : mkdtemp(tmp);
	if (!dir)
		return 1;
	run(dir, "grouped", 0, normal, threads, n, depth);
	run(dir, "single", 1, normal, threads, n, depth);
	if (!data)
		nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}
