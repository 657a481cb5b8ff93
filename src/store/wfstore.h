/* The workflow engine's durable state (DATA/system/workflows.db): workflow definitions
 * and continuations, started workflows, the state of each of their tasks, and every
 * execution (one attempt or iteration of a task's call), in the order they began.
 *
 * One writer (the engine's thread) batches its changes in transactions (wfstore_begin,
 * wfstore_commit): what it acts on is committed first. Readers (the RPCs, on pool
 * threads) use their own connection under a lock, so they see committed state only and
 * never wait for a commit (WAL). Messages are kept as the engine packed them; the store
 * knows their keys and states, not their shapes. */
#ifndef STORE_WFSTORE_H
#define STORE_WFSTORE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/err.h"

typedef struct wfstore wfstore;

/* Opens (creating) the database at path. sync_normal as store_options. */
int wfstore_open(const char *path, bool sync_normal, wfstore **out);
void wfstore_close(wfstore *s);

/* The writer's transaction (the engine thread only). */
int wfstore_begin(wfstore *s);
int wfstore_commit(wfstore *s);
void wfstore_rollback(wfstore *s);

/* ---- definitions: kind 'w' (a workflow, key its name) or 'c' (a continuation, key its
 * id), per namespace ---- */

int wfstore_def_put(wfstore *s, char kind, const char *ns, const char *key, const uint8_t *body,
		    size_t len, int64_t now_us);
typedef int (*wfstore_def_fn)(void *ctx, char kind, const char *ns, const char *key,
			      const uint8_t *body, size_t len);
/* Every definition of ns (NULL: all), by kind, namespace and key (reader as wfstore_wf_get). */
int wfstore_def_each(wfstore *s, bool reader, const char *ns, wfstore_def_fn fn, void *ctx);

/* ---- workflows ---- */

typedef struct wfstore_wf {
	const char *id, *ns, *name; /* name: the definition's */
	int state;		    /* collector.WorkflowState */
	const uint8_t *def;	    /* the WorkflowDefinition it runs, as started */
	size_t def_len;
	const uint8_t *input, *output; /* packed google.protobuf.Any; output NULL: none */
	size_t input_len, output_len;
	const uint8_t *meta; /* packed collector.Metadata */
	size_t meta_len;
	const char *error;    /* why it failed or was cancelled; "" */
	const char *idem_key; /* NULL: none */
	int64_t created_us, updated_us;
} wfstore_wf;

int wfstore_wf_insert(wfstore *s, const wfstore_wf *w);
/* Its state, output (NULL: kept) and error. */
int wfstore_wf_update(wfstore *s, const char *id, int state, const uint8_t *output,
		      size_t output_len, const char *error, int64_t now_us);
/* The workflow started in ns with this idempotency key: its id in id (cap bytes); -ENOENT. */
int wfstore_wf_by_key(wfstore *s, const char *ns, const char *key, char *id, size_t cap);
typedef int (*wfstore_wf_fn)(void *ctx, const wfstore_wf *w);
/* One workflow (a reader when reader, else the writer); -ENOENT. */
int wfstore_wf_get(wfstore *s, bool reader, const char *id, wfstore_wf_fn fn, void *ctx);
/* Workflows in state (the writer, at start: the running ones), oldest first. */
int wfstore_wf_each_in_state(wfstore *s, int state, wfstore_wf_fn fn, void *ctx);
/* A page of workflows of ns (NULL: every namespace), in a state of state_mask (bit k for
 * state k; 0: any), newest first,
 * after the row before_rowid (0: from the newest); *last the rowid of the last row given. A
 * reader. */
int wfstore_wf_page(wfstore *s, const char *ns, unsigned state_mask, int64_t before_rowid,
		    size_t limit, wfstore_wf_fn fn, void *ctx, int64_t *last);
/* Counts by state (states[0..6)), in ns (NULL: every namespace). A reader. */
int wfstore_wf_counts(wfstore *s, const char *ns, int64_t counts[6]);
/* Deletes at most limit workflows that ended before before_us (their last change), with
 * their tasks and executions, oldest first (the writer); *n how many. */
int wfstore_wf_delete_ended_before(wfstore *s, int64_t before_us, size_t limit, int64_t *n);
/* Deletes the workflows of ns (NULL: all) with their tasks and executions (the writer);
 * *n the workflows deleted, *execs their executions. */
int wfstore_wf_delete_ns(wfstore *s, const char *ns, int64_t *n, int64_t *execs);

/* Deletes the executions of the workflows of ns (NULL: all) that ended; *n how many. */
int wfstore_exec_delete_ended(wfstore *s, const char *ns, int64_t *n);

/* ---- a workflow's tasks ---- */

typedef struct wfstore_task {
	const char *wf_id, *task_id;
	int state; /* collector.ExecutionState */
	int attempt, iteration;
	const char *exec_id;   /* the current (or last) execution; "" */
	const uint8_t *output; /* packed Any: the last output; NULL: none */
	size_t output_len;
	int64_t next_at_us; /* RETRYING: when the next attempt is due (wall clock) */
} wfstore_task;

int wfstore_task_put(wfstore *s, const wfstore_task *t);
typedef int (*wfstore_task_fn)(void *ctx, const wfstore_task *t);
/* The tasks of a workflow (reader as wfstore_wf_get). */
int wfstore_task_each(wfstore *s, bool reader, const char *wf_id, wfstore_task_fn fn, void *ctx);

/* ---- executions ---- */

/* Inserts or replaces (by id) a packed collector.Execution of wf_id. A new one takes the next
 * place in the history. */
int wfstore_exec_put(wfstore *s, const char *id, const char *wf_id, const char *ns, int state,
		     const uint8_t *body, size_t len);
typedef int (*wfstore_exec_fn)(void *ctx, int64_t seq, const uint8_t *body, size_t len);
/* The executions of wf_id after place `after` (0: from the first), in order, at most limit. A
 * reader. */
int wfstore_exec_page(wfstore *s, const char *wf_id, int64_t after, size_t limit,
		      wfstore_exec_fn fn, void *ctx);
/* The execution with id (the writer); -ENOENT. */
int wfstore_exec_get(wfstore *s, const char *id, wfstore_exec_fn fn, void *ctx);
/* Executions of wf_id so far (the writer). */
int wfstore_exec_count(wfstore *s, const char *wf_id, int64_t *n);
/* The most recent executions of every workflow of ns (NULL: all), newest first (a reader). */
int wfstore_exec_recent(wfstore *s, const char *ns, size_t limit, wfstore_exec_fn fn, void *ctx);

#endif
