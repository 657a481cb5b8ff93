#include "services/wf_data.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/jsonstr.h"
#include "base/mem.h"
#include "store/jdoc.h"
#include "store/json.h"

#define INPUT_PREFIX "$.input"
#define TASKS_PREFIX "$.tasks."
#define OUTPUT_WORD ".output"
#define CONFIG_DEPTH 32
#define MAX_SOURCES 64 /* distinct messages one input reads */

/* ---- references ---- */

/* A path: dot-separated segments of letters, digits, '_' and '-' (map keys), none empty. */
static bool path_ok(const char *p)
{
	if (!*p)
		return true;
	for (const char *seg = p;;) {
		size_t n = strspn(
			seg, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-");
		if (!n)
			return false;
		if (!seg[n])
			return true;
		if (seg[n] != '.')
			return false;
		seg += n + 1;
	}
}

int wf_ref_parse(const char *s, wf_ref *r, char *err, size_t cap)
{
	if (strncmp(s, "$.", 2))
		return 0;
	const char *rest = NULL;
	*r = (wf_ref){0};
	if (!strncmp(s, INPUT_PREFIX, strlen(INPUT_PREFIX))) {
		rest = s + strlen(INPUT_PREFIX);
	} else if (!strncmp(s, TASKS_PREFIX, strlen(TASKS_PREFIX))) {
		const char *id = s + strlen(TASKS_PREFIX);
		const char *out = strstr(id, OUTPUT_WORD);
		/* the last ".output" that ends the id part: ids may not hold dots anyway */
		if (out && out > id && !memchr(id, '.', (size_t)(out - id)) &&
		    (out[strlen(OUTPUT_WORD)] == 0 || out[strlen(OUTPUT_WORD)] == '.')) {
			r->task = id;
			r->task_len = (size_t)(out - id);
			rest = out + strlen(OUTPUT_WORD);
		}
	}
	if (rest && (*rest == 0 || (*rest == '.' && path_ok(rest + 1) && rest[1]))) {
		r->path = *rest ? rest + 1 : rest;
		return 1;
	}
	snprintf(
		err, cap,
		"'%.100s' is not a reference: use $.input[.path] or $.tasks.<task_id>.output[.path]",
		s);
	return -1;
}

static int refs_in_value(const Google__Protobuf__Value *v, int depth, wf_ref_fn fn, void *ctx,
			 char *err, size_t cap);

static int refs_in_struct(const Google__Protobuf__Struct *s, int depth, wf_ref_fn fn, void *ctx,
			  char *err, size_t cap)
{
	if (depth > CONFIG_DEPTH) {
		snprintf(err, cap, "input_config is nested deeper than %d", CONFIG_DEPTH);
		return -1;
	}
	for (size_t i = 0; s && i < s->n_fields; i++) {
		int rc = refs_in_value(s->fields[i]->value, depth + 1, fn, ctx, err, cap);
		if (rc)
			return rc;
	}
	return 0;
}

static int refs_in_value(const Google__Protobuf__Value *v, int depth, wf_ref_fn fn, void *ctx,
			 char *err, size_t cap)
{
	if (!v)
		return 0;
	if (depth > CONFIG_DEPTH) {
		snprintf(err, cap, "input_config is nested deeper than %d", CONFIG_DEPTH);
		return -1;
	}
	switch (v->kind_case) {
	case GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE: {
		wf_ref r;
		int k = wf_ref_parse(v->string_value, &r, err, cap);
		return k < 0 ? -1 : k ? fn(ctx, &r) : 0;
	}
	case GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE:
		return refs_in_struct(v->struct_value, depth + 1, fn, ctx, err, cap);
	case GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE:
		for (size_t i = 0; v->list_value && i < v->list_value->n_values; i++) {
			int rc = refs_in_value(v->list_value->values[i], depth + 1, fn, ctx, err,
					       cap);
			if (rc)
				return rc;
		}
		return 0;
	default:
		return 0;
	}
}

int wf_config_refs(const Google__Protobuf__Struct *config, wf_ref_fn fn, void *ctx, char *err,
		   size_t cap)
{
	return refs_in_struct(config, 0, fn, ctx, err, cap);
}

/* ---- messages as JSON documents ---- */

typedef struct source {
	const char *task; /* NULL: the workflow's input */
	size_t task_len;
	buf text;
	jdoc doc;
	bool parsed;
} source;

/* Renders any (a message of a type the pool knows) and parses it. */
static int source_load(tp_pool *tp, const char *ns, const Google__Protobuf__Any *any, source *s,
		       char *err, size_t cap)
{
	const char *url = any && any->type_url ? any->type_url : "";
	const tp_message *m = tp_find_type_url(tp, ns, url, strlen(url));
	if (!m) {
		snprintf(err, cap, "the type of '%.200s' is not known in namespace %.100s", url,
			 ns);
		return -1;
	}
	if (json_from_proto(tp, ns, m, any->value.data, any->value.len, JSON_PROTO_NAMES,
			    &s->text) ||
	    jdoc_parse(&s->doc, s->text.text, s->text.len, JSON_MAX_DEPTH + 2)) {
		snprintf(err, cap, "a %.200s does not render as JSON: %s",
			 tp_message_get(m)->full_name, store_err_msg());
		return -1;
	}
	s->parsed = true;
	return 0;
}

static void source_free(source *s)
{
	if (s->parsed)
		jdoc_free(&s->doc);
	buf_free(&s->text);
}

/* The member of object node o keyed key[0..n); -1 when missing. */
static long member(const jdoc *d, uint32_t o, const char *key, size_t n)
{
	const jdoc_node *obj = &d->nodes[o];
	for (uint32_t i = o + 1; i < obj->end;) {
		uint32_t v = i + 1; /* keys are strings: one node */
		if (jdoc_string_eq(d, &d->nodes[i], key, n))
			return v;
		i = d->nodes[v].end;
	}
	return -1;
}

/* The node path reaches from the root; -1 when it reaches nothing. */
static long node_at(const jdoc *d, const char *path)
{
	long at = 0;
	for (const char *seg = path; *seg && at >= 0;) {
		const char *dot = strchr(seg, '.');
		size_t n = dot ? (size_t)(dot - seg) : strlen(seg);
		const jdoc_node *j = &d->nodes[at];
		if (j->type == JDOC_OBJECT) {
			at = member(d, (uint32_t)at, seg, n);
		} else if (j->type == JDOC_ARRAY && n < 10 && strspn(seg, "0123456789") >= n) {
			unsigned long k = strtoul(seg, NULL, 10);
			uint32_t i = (uint32_t)at + 1;
			for (unsigned long e = 0; e < k && i < j->end; e++)
				i = d->nodes[i].end;
			at = k < j->len ? (long)i : -1;
		} else {
			at = -1;
		}
		seg += n + (dot ? 1 : 0);
	}
	return at;
}

/* ---- building an input ---- */

typedef struct build {
	tp_pool *tp;
	const char *ns;
	const Google__Protobuf__Any *wf_input;
	wf_output_fn outputs;
	void *ctx;
	source src[MAX_SOURCES];
	size_t nsrc;
	char *err;
	size_t cap;
} build;

static source *source_of(build *bd, const wf_ref *r)
{
	for (size_t i = 0; i < bd->nsrc; i++) {
		source *s = &bd->src[i];
		if (s->task_len == r->task_len &&
		    (!r->task || !memcmp(s->task, r->task, r->task_len)) &&
		    (!s->task) == (!r->task))
			return s;
	}
	if (bd->nsrc == MAX_SOURCES) {
		snprintf(bd->err, bd->cap, "input_config reads more than %d messages", MAX_SOURCES);
		return NULL;
	}
	const Google__Protobuf__Any *any =
		r->task ? bd->outputs(bd->ctx, r->task, r->task_len) : bd->wf_input;
	if (!any) {
		snprintf(bd->err, bd->cap, "task %.*s has no output to read", (int)r->task_len,
			 r->task);
		return NULL;
	}
	source *s = &bd->src[bd->nsrc++];
	*s = (source){.task = r->task, .task_len = r->task_len, .text = BUF_INIT};
	return source_load(bd->tp, bd->ns, any, s, bd->err, bd->cap) ? NULL : s;
}

static int put_value(build *bd, buf *b, const Google__Protobuf__Value *v);

static int put_struct(build *bd, buf *b, const Google__Protobuf__Struct *s)
{
	buf_putc(b, '{');
	for (size_t i = 0; s && i < s->n_fields; i++) {
		if (i)
			buf_putc(b, ',');
		const char *k = s->fields[i]->key ? s->fields[i]->key : "";
		jsonstr_put(b, k, strlen(k));
		buf_putc(b, ':');
		if (put_value(bd, b, s->fields[i]->value))
			return -1;
	}
	return buf_putc(b, '}');
}

static int put_value(build *bd, buf *b, const Google__Protobuf__Value *v)
{
	char num[40];
	switch (v ? v->kind_case : GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE) {
	case GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE:
		if (!isfinite(v->number_value))
			return buf_puts(b, "null");
		snprintf(num, sizeof(num), "%.17g", v->number_value);
		return buf_puts(b, num);
	case GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE:
		return buf_puts(b, v->bool_value ? "true" : "false");
	case GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE: {
		wf_ref r;
		int k = wf_ref_parse(v->string_value, &r, bd->err, bd->cap);
		if (k < 0)
			return -1;
		if (!k)
			return jsonstr_put(b, v->string_value, strlen(v->string_value));
		source *s = source_of(bd, &r);
		if (!s)
			return -1;
		long at = node_at(&s->doc, r.path);
		return at < 0 ? buf_puts(b, "null") : jdoc_write(b, &s->doc, (uint32_t)at);
	}
	case GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE:
		return put_struct(bd, b, v->struct_value);
	case GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE:
		buf_putc(b, '[');
		for (size_t i = 0; v->list_value && i < v->list_value->n_values; i++) {
			if (i)
				buf_putc(b, ',');
			if (put_value(bd, b, v->list_value->values[i]))
				return -1;
		}
		return buf_putc(b, ']');
	default:
		return buf_puts(b, "null");
	}
}

int wf_build_input(tp_pool *tp, const char *ns, const Google__Protobuf__Struct *config,
		   const Google__Protobuf__Any *wf_input, wf_output_fn outputs, void *ctx,
		   const tp_message *target, buf *out, char *err, size_t cap)
{
	build *bd = mem_calloc(1, sizeof(*bd));
	if (!bd) {
		snprintf(err, cap, "out of memory");
		return -1;
	}
	*bd = (build){.tp = tp,
		      .ns = ns,
		      .wf_input = wf_input,
		      .outputs = outputs,
		      .ctx = ctx,
		      .err = err,
		      .cap = cap};
	buf json = BUF_INIT;
	int rc = put_struct(bd, &json, config);
	if (!rc && json.failed) {
		snprintf(err, cap, "out of memory");
		rc = -1;
	}
	if (!rc && json_to_proto(tp, ns, target, json.text, json.len, out)) {
		snprintf(err, cap, "the input built from input_config is not a %.200s: %s",
			 tp_message_get(target)->full_name, store_err_msg());
		rc = -1;
	}
	for (size_t i = 0; i < bd->nsrc; i++)
		source_free(&bd->src[i]);
	mem_free(bd);
	buf_free(&json);
	return rc;
}

/* ---- conditions ---- */

enum { OP_EQ, OP_NE, OP_GT, OP_LT, OP_GE, OP_LE, OP_CONTAINS, OP_IN, OP_EXISTS, OP_NOT_EXISTS };
static const char *const op_names[] = {"EQUALS",	"NOT_EQUALS", "GREATER_THAN", "LESS_THAN",
				       "GREATER_EQUAL", "LESS_EQUAL", "CONTAINS",     "IN",
				       "EXISTS",	"NOT_EXISTS"};
#define N_OPS (int)(sizeof(op_names) / sizeof(op_names[0]))

/* The operator and value of one condition: spec is a value (equality) or a Struct with
 * "operator" and optionally "value". -1 when the operator is unknown. */
static int cond_spec(const Google__Protobuf__Value *spec, const Google__Protobuf__Value **value)
{
	*value = spec;
	if (!spec || spec->kind_case != GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE)
		return OP_EQ;
	const Google__Protobuf__Struct *s = spec->struct_value;
	const Google__Protobuf__Value *op = NULL;
	*value = NULL;
	for (size_t i = 0; s && i < s->n_fields; i++) {
		if (!strcmp(s->fields[i]->key, "operator"))
			op = s->fields[i]->value;
		else if (!strcmp(s->fields[i]->key, "value"))
			*value = s->fields[i]->value;
		else
			return -1;
	}
	if (!op)
		return -1;
	if (op->kind_case == GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE) {
		double n = op->number_value;
		return n >= 0 && n < N_OPS && n == floor(n) ? (int)n : -1;
	}
	if (op->kind_case != GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE)
		return -1;
	const char *name = op->string_value;
	if (!strncmp(name, "OP_", 3))
		name += 3;
	for (int k = 0; k < N_OPS; k++)
		if (!strcmp(name, op_names[k]))
			return k;
	return -1;
}

bool wf_cond_check(const Google__Protobuf__Struct *cond, char *err, size_t cap)
{
	for (size_t i = 0; cond && i < cond->n_fields; i++) {
		const char *key = cond->fields[i]->key;
		const Google__Protobuf__Value *v;
		int op = cond_spec(cond->fields[i]->value, &v);
		if (!path_ok(key) || !*key) {
			snprintf(err, cap, "loop_condition key '%.100s' is not a field path", key);
			return false;
		}
		if (op < 0) {
			snprintf(
				err, cap,
				"loop_condition '%.100s': give a value, or {\"operator\": OP, "
				"\"value\": v} with OP a filter operator (EQUALS, GREATER_THAN...)",
				key);
			return false;
		}
		if (op != OP_EXISTS && op != OP_NOT_EXISTS && !v) {
			snprintf(err, cap, "loop_condition '%.100s': %s needs a value", key,
				 op_names[op]);
			return false;
		}
		if (op == OP_IN && v->kind_case != GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE) {
			snprintf(err, cap, "loop_condition '%.100s': IN needs a list", key);
			return false;
		}
	}
	return true;
}

/* A node as a number: a JSON number, or a string holding one (int64 renders as a
 * string). */
static bool node_number(const jdoc *d, const jdoc_node *j, double *out)
{
	if (j->type != JDOC_NUMBER && j->type != JDOC_STRING)
		return false;
	char s[64];
	if (j->len >= sizeof(s) || (j->type == JDOC_STRING && j->esc))
		return false;
	memcpy(s, d->src + j->off, j->len);
	s[j->len] = 0;
	char *end;
	*out = strtod(s, &end);
	return end != s && !*end;
}

/* The unescaped text of a string node (malloc'd), or NULL. */
static char *node_text(const jdoc *d, const jdoc_node *j)
{
	if (j->type != JDOC_STRING)
		return NULL;
	char *t = mem_alloc(j->ulen + 1);
	if (t) {
		jdoc_unescape(d, j, t);
		t[j->ulen] = 0;
	}
	return t;
}

/* Compares node j with v: <0, 0, >0, or 2 when they do not compare. */
static int compare(const jdoc *d, const jdoc_node *j, const Google__Protobuf__Value *v)
{
	double a;
	switch (v->kind_case) {
	case GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE:
		if (!node_number(d, j, &a))
			return 2;
		return a < v->number_value ? -1 : a > v->number_value ? 1 : 0;
	case GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE: {
		char *t = node_text(d, j);
		if (!t)
			return 2;
		int c = strcmp(t, v->string_value);
		mem_free(t);
		return c < 0 ? -1 : c > 0;
	}
	case GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE:
		if (j->type != JDOC_TRUE && j->type != JDOC_FALSE)
			return 2;
		return (j->type == JDOC_TRUE) == v->bool_value ? 0 : 2;
	case GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE:
		return j->type == JDOC_NULL ? 0 : 2;
	default:
		return 2;
	}
}

static bool one_holds(const jdoc *d, long at, int op, const Google__Protobuf__Value *v)
{
	const jdoc_node *j = at >= 0 ? &d->nodes[at] : NULL;
	bool null_v = v && v->kind_case == GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE;
	if (!v && op != OP_EXISTS && op != OP_NOT_EXISTS)
		return false; /* refused at registration (wf_cond_check) */
	switch (op) {
	case OP_EXISTS:
		return j != NULL;
	case OP_NOT_EXISTS:
		return j == NULL;
	case OP_EQ:
		return j ? compare(d, j, v) == 0 : null_v;
	case OP_NE:
		return !one_holds(d, at, OP_EQ, v);
	case OP_IN:
		for (size_t i = 0; v->list_value && i < v->list_value->n_values; i++)
			if (one_holds(d, at, OP_EQ, v->list_value->values[i]))
				return true;
		return false;
	case OP_CONTAINS:
		if (!j)
			return false;
		if (j->type == JDOC_ARRAY) {
			for (uint32_t i = (uint32_t)at + 1; i < j->end; i = d->nodes[i].end)
				if (compare(d, &d->nodes[i], v) == 0)
					return true;
			return false;
		}
		if (j->type == JDOC_STRING &&
		    v->kind_case == GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE) {
			char *t = node_text(d, j);
			bool in = t && strstr(t, v->string_value);
			mem_free(t);
			return in;
		}
		return false;
	default: {
		int c = j ? compare(d, j, v) : 2;
		if (c == 2)
			return false;
		return op == OP_GT ? c > 0 : op == OP_LT ? c < 0 : op == OP_GE ? c >= 0 : c <= 0;
	}
	}
}

int wf_cond_eval(tp_pool *tp, const char *ns, const Google__Protobuf__Struct *cond,
		 const Google__Protobuf__Any *output, char *err, size_t cap)
{
	if (!cond || !cond->n_fields)
		return 1;
	source s = {.text = BUF_INIT};
	if (source_load(tp, ns, output, &s, err, cap)) {
		source_free(&s);
		return -1;
	}
	int holds = 1;
	for (size_t i = 0; holds && i < cond->n_fields; i++) {
		const Google__Protobuf__Value *v;
		int op = cond_spec(cond->fields[i]->value, &v);
		if (op < 0) {
			holds = 0;
			break;
		}
		holds = one_holds(&s.doc, node_at(&s.doc, cond->fields[i]->key), op, v);
	}
	source_free(&s);
	return holds;
}
