/* Data between a workflow's tasks: a task's input built from its input_config, and a
 * continuation's loop_condition tested on an output. Both work on the proto3 JSON of the
 * messages (.proto field names), through the type pool, so any registered type can flow
 * from one task to the next.
 *
 * input_config is a Struct; a string value that starts with "$." is a reference:
 *   $.input                      the workflow's input, whole
 *   $.input.<path>               a field inside it
 *   $.tasks.<task_id>.output     a finished task's output, whole
 *   $.tasks.<task_id>.output.<path>
 * <path> is dot-separated .proto field names (or map keys), a number indexing a list. A
 * reference to a field the source does not have gives null (the field left unset). Every
 * other value is literal. The object built is transcoded to the task's input type.
 *
 * loop_condition is a Struct of key: spec pairs, all of which must hold. The key is a path
 * into the output as above; spec is a value (equality) or {"operator": OP, "value": v},
 * with OP one of the Search filters' operators (OP_EQUALS or EQUALS, ..., or its number),
 * compared by the runtime JSON types as Search does without a schema. */
#ifndef SERVICES_WF_DATA_H
#define SERVICES_WF_DATA_H
#include <stdbool.h>
#include <stddef.h>

#include "base/buf.h"
#include "google/protobuf/any.pb-c.h"
#include "google/protobuf/struct.pb-c.h"
#include "store/typepool.h"

#define WF_ID_MAX 128 /* task, workflow and continuation ids */

/* A reference as parsed: the task it reads (NULL: the workflow's input) and the path after
 * it ("" for the whole message). Pointers into the text parsed, with task_len bytes. */
typedef struct wf_ref {
	const char *task;
	size_t task_len;
	const char *path;
} wf_ref;

/* 1 when s is a reference (*r filled), 0 when it is a literal, -1 when it starts like one
 * but is malformed (err says why). */
int wf_ref_parse(const char *s, wf_ref *r, char *err, size_t cap);

/* Calls fn for each reference in config (depth first); fn's nonzero value stops the walk
 * and is returned. -1 (err filled) for a malformed reference or a config nested too deep. */
typedef int (*wf_ref_fn)(void *ctx, const wf_ref *r);
int wf_config_refs(const Google__Protobuf__Struct *config, wf_ref_fn fn, void *ctx, char *err,
		   size_t cap);

/* The output of a finished task, by id (task_len bytes); NULL when it has none. */
typedef const Google__Protobuf__Any *(*wf_output_fn)(void *ctx, const char *task, size_t len);

/* Builds the input of target from config into out (protobuf bytes). 0, or -1 with err (a
 * reference that does not resolve to the types, a value the target does not take). */
int wf_build_input(tp_pool *tp, const char *ns, const Google__Protobuf__Struct *config,
		   const Google__Protobuf__Any *wf_input, wf_output_fn outputs, void *ctx,
		   const tp_message *target, buf *out, char *err, size_t cap);

/* Checks a loop_condition's shape (paths, operators, values): true, or false with err. */
bool wf_cond_check(const Google__Protobuf__Struct *cond, char *err, size_t cap);
/* Whether cond holds on output: 1, 0, or -1 with err (an output that does not render). An
 * empty condition always holds. */
int wf_cond_eval(tp_pool *tp, const char *ns, const Google__Protobuf__Struct *cond,
		 const Google__Protobuf__Any *output, char *err, size_t cap);

#endif
