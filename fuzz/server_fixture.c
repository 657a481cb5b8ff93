#include "server_fixture.h"

#include <stdint.h>
#include <stdlib.h>

#include "base/log.h"
#include "h2/call.h"
#include "services/health.h"
#include "services/reflection.h"
#include "services/web_json.h"
#include "store/typepool.h"

extern const uint8_t api_descriptor_set[];
extern const size_t api_descriptor_set_len;

static reactor *r;
static h2_endpoint *ep, *ep1;
static method_table *table;

static void echo_raw(call *c, const uint8_t *data, size_t len)
{
	const call_md *md = call_md_get(c, "x-echo-bin");
	if (md)
		call_add_initial_md(c, "x-echo-bin", md->value, md->value_len);
	call_set_response_compression(c, len & 1);
	call_send_raw(c, data, len);
	if (call_method(c)->kind == METHOD_UNARY)
		call_finish(c, GRPC_OK, NULL);
}

static void stream_raw(call *c, const uint8_t *data, size_t len)
{
	for (int i = 0; i < 3; i++)
		call_send_raw(c, data, len);
	call_finishf(c, len ? GRPC_OK : GRPC_INVALID_ARGUMENT, "sent %zu", len);
}

static void half_close_finish(call *c)
{
	call_add_trailing_md(c, "x-trailer", "t", 1);
	call_finish(c, GRPC_OK, NULL);
}

static const method test_methods[] = {
	{"/fuzz.Test/Unary", METHOD_UNARY, NULL, NULL, {.on_raw = echo_raw}},
	{"/fuzz.Test/ServerStream", METHOD_SERVER_STREAM, NULL, NULL, {.on_raw = stream_raw}},
	{"/fuzz.Test/Bidi",
	 METHOD_BIDI,
	 NULL,
	 NULL,
	 {.on_raw = echo_raw, .on_half_close = half_close_finish}},
	{"/fuzz.Test/ClientStream",
	 METHOD_CLIENT_STREAM,
	 NULL,
	 NULL,
	 {.on_half_close = half_close_finish}},
};

h2_endpoint *fuzz_server_endpoint(void)
{
	if (ep)
		return ep;
	/* Closing a misbehaving connection is logged; fuzz input misbehaves all the time. */
	log_set_level(LOG_ERROR);
	int err;
	r = reactor_new(&err);
	method_table *t = table = method_table_new();
	if (!r || !t || health_register(t) ||
	    reflection_register(t, api_descriptor_set, api_descriptor_set_len, NULL))
		abort();
	for (size_t i = 0; i < sizeof(test_methods) / sizeof(test_methods[0]); i++)
		if (method_table_add(t, &test_methods[i]))
			abort();
	h2_server_opts o;
	h2_server_opts_default(&o);
	o.max_message_bytes = 64 * 1024;
	ep = h2_endpoint_new(h2_server_new(t, &o), r);
	if (!ep)
		abort();
	return ep;
}

h2_endpoint *fuzz_http1_endpoint(void)
{
	if (ep1)
		return ep1;
	fuzz_server_endpoint();
	static svc_env env;
	env.types = tp_new();
	env.default_ns = "default";
	env.max_message_bytes = 64 * 1024;
	if (!env.types || tp_add_set(env.types, NULL, api_descriptor_set, api_descriptor_set_len))
		abort();
	h2_server_opts o;
	h2_server_opts_default(&o);
	o.max_message_bytes = 64 * 1024;
	o.max_header_list_bytes = 4096;
	o.http1 = true;
	o.cors_origins = "http://x";
	h2_server *s = h2_server_new(table, &o);
	if (!s)
		abort();
	h2_web_hooks hooks;
	web_json_hooks(&env, &hooks);
	h2_server_set_web(s, &hooks);
	if (!(ep1 = h2_endpoint_new(s, r)))
		abort();
	return ep1;
}

void fuzz_server_run_timers(void) { reactor_run_once(r, 0); }
