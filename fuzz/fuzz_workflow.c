/* Workflow definitions (services/wf_def.h) and the data between tasks (services/wf_data.h)
 * on arbitrary input: what RegisterWorkflow takes from a client, and the input_config
 * references and loop conditions the engine evaluates at run time.
 *
 * Input: a packed collector.WorkflowDefinition (decoded with the node's bounds). It is
 * checked in namespace "fz" of a type pool holding the Collector API, with continuations
 * unknown and with one known. Every task's input_config is walked for references, built
 * into a collector.GetRequest from a workflow input and task outputs that are Anys of
 * collector.GetRequest holding the task's name bytes (often not protobuf at all), and
 * checked and evaluated as a loop condition on such an output.
 *
 * Invariants: a refusal says why; an input that builds is a GetRequest that decodes; a
 * condition is 1, 0 or -1, and -1 says why. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/mem.h"
#include "collector/collection_server.pb-c.h"
#include "services/wf_def.h"
#include "store/typepool.h"

#include "fuzz_check.h"

extern const uint8_t api_descriptor_set[];
extern const size_t api_descriptor_set_len;

static tp_pool *tp;
static svc_env env;
static Collector__Continuation cont = COLLECTOR__CONTINUATION__INIT;
static Collector__ServiceTypeRef cont_svc = COLLECTOR__SERVICE_TYPE_REF__INIT;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	tp = tp_new();
	if (!tp || tp_add_set(tp, NULL, api_descriptor_set, api_descriptor_set_len))
		abort();
	env.types = tp;
	cont_svc.service_name = "collector.CollectionService";
	cont.id = "loop";
	cont.service = &cont_svc;
	cont.method_name = "Get";
	return 0;
}

static const Collector__Continuation *no_conts(void *ctx, const char *ns, const char *id)
{
	(void)ctx, (void)ns, (void)id;
	return NULL;
}

static const Collector__Continuation *one_cont(void *ctx, const char *ns, const char *id)
{
	(void)ctx, (void)ns;
	return !strcmp(id, "loop") ? &cont : NULL;
}

static Google__Protobuf__Any any;

static const Google__Protobuf__Any *outputs(void *ctx, const char *task, size_t len)
{
	(void)ctx, (void)task;
	return len % 5 == 4 ? NULL : &any; /* some tasks have no output */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	Collector__WorkflowDefinition *d =
		svc_decode(&collector__workflow_definition__descriptor, data, size);
	if (!d)
		return 0;
	char err[700] = "";
	if (!wf_def_check(&env, "fz", d, 64, no_conts, NULL, err, sizeof(err)))
		CHECK(err[0]);
	err[0] = 0;
	if (!wf_def_check(&env, "fz", d, 64, one_cont, NULL, err, sizeof(err)))
		CHECK(err[0]);
	else
		CHECK(wf_def_output_task(d) < d->n_tasks);
	const tp_message *target = tp_find_message(tp, NULL, "collector.GetRequest");
	CHECK(target);
	for (size_t i = 0; i < d->n_tasks; i++) {
		const Collector__Task *t = d->tasks[i];
		google__protobuf__any__init(&any);
		any.type_url = "type.googleapis.com/collector.GetRequest";
		any.value.data = (uint8_t *)(t->name ? t->name : "");
		any.value.len = t->name ? strlen(t->name) : 0;
		if (!t->input_config)
			continue;
		buf out = BUF_INIT;
		err[0] = 0;
		if (wf_build_input(tp, "fz", t->input_config, &any, outputs, NULL, target, &out,
				   err, sizeof(err))) {
			CHECK(err[0]);
		} else {
			Collector__GetRequest *g =
				svc_decode(&collector__get_request__descriptor, out.data, out.len);
			CHECK(g);
			collector__get_request__free_unpacked(g, NULL);
		}
		buf_free(&out);
		err[0] = 0;
		if (wf_cond_check(t->input_config, err, sizeof(err))) {
			int holds = wf_cond_eval(tp, "fz", t->input_config, &any, err, sizeof(err));
			CHECK(holds >= -1 && holds <= 1);
			CHECK(holds != -1 || err[0]);
		} else {
			CHECK(err[0]);
		}
	}
	collector__workflow_definition__free_unpacked(d, NULL);
	return 0;
}
