/* The interop client cases driven by this project's own client (src/h2/client.c), so that
 * the client is checked against our server and against a stock gRPC server alike.
 * Same command line as stock interop clients:
 *   c_client --server_host 127.0.0.1 --server_port N --test_case all|name[,name...]
 * Prints "PASS name" or "FAIL name: reason" per case; exits 1 if any failed. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/pbdecode.h"
#include "grpc/health/v1/health.pb-c.h"
#include "grpc/testing/empty.pb-c.h"
#include "grpc/testing/messages.pb-c.h"
#include "h2/client.h"

#define MAX_MSGS 16

typedef struct sync_call {
	client_call *c;
	bool done, headers;
	int code;
	char msg[512];
	size_t nmsgs;
	uint8_t *msgs[MAX_MSGS];
	size_t lens[MAX_MSGS];
	bool compressed[MAX_MSGS];
	char initial_echo[128];
	uint8_t trailing_echo[64];
	size_t trailing_echo_len;
} sync_call;

/* Responses are peer bytes: decoded with the node's bounds, as every decode of them. */
static void *response(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t len)
{
	ProtobufCMessage *m;
	char err[160];
	return pbdecode(d, data, len, &m, err, sizeof(err)) ? NULL : m;
}

static reactor *r;
static client_channel *ch;
static char failure[512];

static void on_headers(client_call *c)
{
	sync_call *s = client_call_user(c);
	s->headers = true;
}

static void on_message(client_call *c, const uint8_t *data, size_t len)
{
	sync_call *s = client_call_user(c);
	if (s->nmsgs == MAX_MSGS)
		return;
	s->msgs[s->nmsgs] = malloc(len + 1);
	memcpy(s->msgs[s->nmsgs], data, len);
	s->lens[s->nmsgs] = len;
	s->compressed[s->nmsgs] = client_call_response_compressed(c);
	s->nmsgs++;
}

static void on_done(client_call *c, int code, const char *msg)
{
	sync_call *s = client_call_user(c);
	s->done = true;
	s->code = code;
	snprintf(s->msg, sizeof(s->msg), "%s", msg ? msg : "");
	const call_md *m = client_call_md_get(c, false, "x-grpc-test-echo-initial");
	if (m)
		snprintf(s->initial_echo, sizeof(s->initial_echo), "%.*s", (int)m->value_len,
			 (const char *)m->value);
	m = client_call_md_get(c, true, "x-grpc-test-echo-trailing-bin");
	if (m && m->value_len <= sizeof(s->trailing_echo)) {
		memcpy(s->trailing_echo, m->value, m->value_len);
		s->trailing_echo_len = m->value_len;
	}
	s->c = NULL;
}

static const client_call_ops ops = {
	.on_headers = on_headers, .on_message = on_message, .on_done = on_done};

static void reset(sync_call *s)
{
	for (size_t i = 0; i < s->nmsgs; i++)
		free(s->msgs[i]);
	memset(s, 0, sizeof(*s));
}

static bool fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(failure, sizeof(failure), fmt, ap);
	va_end(ap);
	return false;
}

/* Runs the reactor until *flag is set or 10 s pass. */
static bool wait_for(const bool *flag, size_t *count, size_t want)
{
	int64_t end = clock_now_ns() + 10 * NS_PER_SEC;
	while (!*flag && (!count || *count < want) && clock_now_ns() < end)
		reactor_run_once(r, 10 * NS_PER_MS);
	return *flag || (count && *count >= want);
}

static bool start(sync_call *s, const char *path, int64_t timeout_ns, const call_md *md, size_t nmd,
		  bool compress)
{
	reset(s);
	client_call_args a = {.path = path,
			      .timeout_ns = timeout_ns,
			      .md = md,
			      .nmd = nmd,
			      .compress = compress,
			      .ops = &ops,
			      .user = s};
	s->c = client_call_start(ch, &a);
	return s->c ? true : fail("client_call_start failed");
}

static bool send_pb(sync_call *s, const ProtobufCMessage *m)
{
	return s->c && client_call_send_pb(s->c, m) == 0 ? true : fail("send failed");
}

static bool finish(sync_call *s)
{
	if (s->c)
		client_call_half_close(s->c);
	return wait_for(&s->done, NULL, 0) ? true : fail("call did not finish in 10 s");
}

static bool expect_code(sync_call *s, int code)
{
	if (s->code != code)
		return fail("status %s (%s), want %s", grpc_code_name(s->code), s->msg,
			    grpc_code_name(code));
	return true;
}

static bool unary(sync_call *s, const char *path, const ProtobufCMessage *req, const call_md *md,
		  size_t nmd, bool compress)
{
	return start(s, path, 10 * NS_PER_SEC, md, nmd, compress) && send_pb(s, req) && finish(s);
}

static uint8_t zeros[1 << 20];

static void set_payload(Grpc__Testing__Payload *p, size_t n)
{
	p->body.data = zeros;
	p->body.len = n;
}

static bool check_simple_response(sync_call *s, size_t idx, size_t size)
{
	if (s->nmsgs <= idx)
		return fail("missing response %zu", idx);
	Grpc__Testing__SimpleResponse *resp =
		response(&grpc__testing__simple_response__descriptor, s->msgs[idx], s->lens[idx]);
	if (!resp)
		return fail("unparsable response");
	size_t got = resp->payload ? resp->payload->body.len : 0;
	bool zero = !got || !memcmp(resp->payload->body.data, zeros, got);
	grpc__testing__simple_response__free_unpacked(resp, NULL);
	if (got != size || !zero)
		return fail("payload of %zu bytes (zeros: %d), want %zu", got, zero, size);
	return true;
}

static bool check_stream_response(sync_call *s, size_t idx, size_t size)
{
	if (s->nmsgs <= idx)
		return fail("missing response %zu", idx);
	Grpc__Testing__StreamingOutputCallResponse *resp =
		response(&grpc__testing__streaming_output_call_response__descriptor, s->msgs[idx],
			 s->lens[idx]);
	if (!resp)
		return fail("unparsable response");
	size_t got = resp->payload ? resp->payload->body.len : 0;
	grpc__testing__streaming_output_call_response__free_unpacked(resp, NULL);
	return got == size ? true : fail("response %zu has %zu bytes, want %zu", idx, got, size);
}

#define TS "/grpc.testing.TestService/"

static bool case_empty_unary(sync_call *s)
{
	Grpc__Testing__Empty e = GRPC__TESTING__EMPTY__INIT;
	if (!unary(s, TS "EmptyCall", &e.base, NULL, 0, false) || !expect_code(s, GRPC_OK))
		return false;
	return s->nmsgs == 1 && s->lens[0] == 0 ? true : fail("want one empty response");
}

static bool simple(sync_call *s, size_t req_size, size_t resp_size, int compressed_req,
		   int expect_compressed, int response_compressed)
{
	Grpc__Testing__SimpleRequest req = GRPC__TESTING__SIMPLE_REQUEST__INIT;
	Grpc__Testing__Payload p = GRPC__TESTING__PAYLOAD__INIT;
	Grpc__Testing__BoolValue ec = GRPC__TESTING__BOOL_VALUE__INIT;
	Grpc__Testing__BoolValue rc = GRPC__TESTING__BOOL_VALUE__INIT;
	set_payload(&p, req_size);
	req.payload = &p;
	req.response_size = (int32_t)resp_size;
	if (expect_compressed >= 0) {
		ec.value = expect_compressed;
		req.expect_compressed = &ec;
	}
	if (response_compressed >= 0) {
		rc.value = response_compressed;
		req.response_compressed = &rc;
	}
	return unary(s, TS "UnaryCall", &req.base, NULL, 0, compressed_req);
}

static bool case_large_unary(sync_call *s)
{
	return simple(s, 271828, 314159, 0, -1, -1) && expect_code(s, GRPC_OK) &&
	       check_simple_response(s, 0, 314159);
}

static bool case_client_compressed_unary(sync_call *s)
{
	if (!simple(s, 271828, 314159, 0, 1, -1) || !expect_code(s, GRPC_INVALID_ARGUMENT))
		return false;
	if (!simple(s, 271828, 314159, 1, 1, -1) || !expect_code(s, GRPC_OK) ||
	    !check_simple_response(s, 0, 314159))
		return false;
	return simple(s, 271828, 314159, 0, 0, -1) && expect_code(s, GRPC_OK) &&
	       check_simple_response(s, 0, 314159);
}

static bool case_server_compressed_unary(sync_call *s)
{
	if (!simple(s, 271828, 314159, 0, -1, 1) || !expect_code(s, GRPC_OK) ||
	    !check_simple_response(s, 0, 314159))
		return false;
	if (!s->compressed[0])
		return fail("response was not compressed");
	if (!simple(s, 271828, 314159, 0, -1, 0) || !expect_code(s, GRPC_OK) ||
	    !check_simple_response(s, 0, 314159))
		return false;
	return !s->compressed[0] ? true : fail("response was compressed");
}

static bool case_client_streaming(sync_call *s)
{
	static const size_t sizes[] = {27182, 8, 1828, 45904};
	if (!start(s, TS "StreamingInputCall", 10 * NS_PER_SEC, NULL, 0, false))
		return false;
	for (size_t i = 0; i < 4; i++) {
		Grpc__Testing__StreamingInputCallRequest req =
			GRPC__TESTING__STREAMING_INPUT_CALL_REQUEST__INIT;
		Grpc__Testing__Payload p = GRPC__TESTING__PAYLOAD__INIT;
		set_payload(&p, sizes[i]);
		req.payload = &p;
		if (!send_pb(s, &req.base))
			return false;
	}
	if (!finish(s) || !expect_code(s, GRPC_OK))
		return false;
	if (s->nmsgs != 1)
		return fail("want one response, got %zu", s->nmsgs);
	Grpc__Testing__StreamingInputCallResponse *resp = response(
		&grpc__testing__streaming_input_call_response__descriptor, s->msgs[0], s->lens[0]);
	int32_t total = resp ? resp->aggregated_payload_size : -1;
	if (resp)
		grpc__testing__streaming_input_call_response__free_unpacked(resp, NULL);
	return total == 74922 ? true : fail("aggregated size %d, want 74922", total);
}

/* One StreamingOutputCallRequest asking for responses of the given sizes. */
static bool send_output_request(sync_call *s, const size_t *sizes, size_t n, size_t payload,
				int32_t interval_us)
{
	Grpc__Testing__StreamingOutputCallRequest req =
		GRPC__TESTING__STREAMING_OUTPUT_CALL_REQUEST__INIT;
	Grpc__Testing__ResponseParameters params[8], *pp[8];
	for (size_t i = 0; i < n; i++) {
		grpc__testing__response_parameters__init(&params[i]);
		params[i].size = (int32_t)sizes[i];
		params[i].interval_us = interval_us;
		pp[i] = &params[i];
	}
	req.n_response_parameters = n;
	req.response_parameters = pp;
	Grpc__Testing__Payload p = GRPC__TESTING__PAYLOAD__INIT;
	if (payload) {
		set_payload(&p, payload);
		req.payload = &p;
	}
	return send_pb(s, &req.base);
}

static bool case_server_streaming(sync_call *s)
{
	static const size_t sizes[] = {31415, 9, 2653, 58979};
	if (!start(s, TS "StreamingOutputCall", 10 * NS_PER_SEC, NULL, 0, false) ||
	    !send_output_request(s, sizes, 4, 0, 0) || !finish(s) || !expect_code(s, GRPC_OK))
		return false;
	if (s->nmsgs != 4)
		return fail("got %zu responses, want 4", s->nmsgs);
	for (size_t i = 0; i < 4; i++)
		if (!check_stream_response(s, i, sizes[i]))
			return false;
	return true;
}

static bool case_ping_pong(sync_call *s)
{
	static const size_t resp[] = {31415, 9, 2653, 58979};
	static const size_t req[] = {27182, 8, 1828, 45904};
	if (!start(s, TS "FullDuplexCall", 10 * NS_PER_SEC, NULL, 0, false))
		return false;
	for (size_t i = 0; i < 4; i++) {
		if (!send_output_request(s, &resp[i], 1, req[i], 0))
			return false;
		if (!wait_for(&s->done, &s->nmsgs, i + 1) || s->nmsgs != i + 1)
			return fail("no response %zu", i);
		if (!check_stream_response(s, i, resp[i]))
			return false;
	}
	return finish(s) && expect_code(s, GRPC_OK);
}

static bool case_empty_stream(sync_call *s)
{
	if (!start(s, TS "FullDuplexCall", 10 * NS_PER_SEC, NULL, 0, false) || !finish(s) ||
	    !expect_code(s, GRPC_OK))
		return false;
	return s->nmsgs == 0 ? true : fail("got %zu responses, want none", s->nmsgs);
}

static bool case_cancel_after_begin(sync_call *s)
{
	if (!start(s, TS "StreamingInputCall", 10 * NS_PER_SEC, NULL, 0, false))
		return false;
	reactor_run_once(r, NS_PER_MS);
	client_call_cancel(s->c);
	return s->done ? expect_code(s, GRPC_CANCELLED) : fail("cancel did not end the call");
}

static bool case_cancel_after_first_response(sync_call *s)
{
	static const size_t resp = 31415;
	if (!start(s, TS "FullDuplexCall", 10 * NS_PER_SEC, NULL, 0, false) ||
	    !send_output_request(s, &resp, 1, 27182, 0))
		return false;
	if (!wait_for(&s->done, &s->nmsgs, 1) || s->nmsgs != 1)
		return fail("no first response");
	client_call_cancel(s->c);
	return s->done ? expect_code(s, GRPC_CANCELLED) : fail("cancel did not end the call");
}

static bool case_timeout_on_sleeping_server(sync_call *s)
{
	static const size_t resp = 31415;
	if (!start(s, TS "FullDuplexCall", NS_PER_MS, NULL, 0, false) ||
	    !send_output_request(s, &resp, 1, 27182, 0))
		return false;
	if (!wait_for(&s->done, NULL, 0))
		return fail("call did not end");
	return expect_code(s, GRPC_DEADLINE_EXCEEDED);
}

static bool check_echo(sync_call *s)
{
	if (strcmp(s->initial_echo, "test_initial_metadata_value"))
		return fail("initial echo '%s'", s->initial_echo);
	static const uint8_t want[] = {0xab, 0xab, 0xab};
	if (s->trailing_echo_len != 3 || memcmp(s->trailing_echo, want, 3))
		return fail("trailing echo of %zu bytes", s->trailing_echo_len);
	return true;
}

static bool case_custom_metadata(sync_call *s)
{
	static const uint8_t bin[] = {0xab, 0xab, 0xab};
	call_md md[] = {
		{"x-grpc-test-echo-initial", 24, (const uint8_t *)"test_initial_metadata_value",
		 27},
		{"x-grpc-test-echo-trailing-bin", 29, bin, 3},
	};
	Grpc__Testing__SimpleRequest req = GRPC__TESTING__SIMPLE_REQUEST__INIT;
	Grpc__Testing__Payload p = GRPC__TESTING__PAYLOAD__INIT;
	set_payload(&p, 271828);
	req.payload = &p;
	req.response_size = 314159;
	if (!unary(s, TS "UnaryCall", &req.base, md, 2, false) || !expect_code(s, GRPC_OK) ||
	    !check_echo(s))
		return false;
	static const size_t resp = 314159;
	if (!start(s, TS "FullDuplexCall", 10 * NS_PER_SEC, md, 2, false) ||
	    !send_output_request(s, &resp, 1, 271828, 0) || !finish(s) || !expect_code(s, GRPC_OK))
		return false;
	return check_echo(s);
}

static bool echo_status(sync_call *s, const char *message)
{
	Grpc__Testing__SimpleRequest req = GRPC__TESTING__SIMPLE_REQUEST__INIT;
	Grpc__Testing__EchoStatus st = GRPC__TESTING__ECHO_STATUS__INIT;
	st.code = 2;
	st.message = (char *)message;
	req.response_status = &st;
	if (!unary(s, TS "UnaryCall", &req.base, NULL, 0, false) || !expect_code(s, GRPC_UNKNOWN))
		return false;
	return !strcmp(s->msg, message) ? true : fail("message '%s', want '%s'", s->msg, message);
}

static bool case_status_code_and_message(sync_call *s)
{
	if (!echo_status(s, "test status message"))
		return false;
	Grpc__Testing__StreamingOutputCallRequest req =
		GRPC__TESTING__STREAMING_OUTPUT_CALL_REQUEST__INIT;
	Grpc__Testing__EchoStatus st = GRPC__TESTING__ECHO_STATUS__INIT;
	st.code = 2;
	st.message = "test status message";
	req.response_status = &st;
	if (!start(s, TS "FullDuplexCall", 10 * NS_PER_SEC, NULL, 0, false) ||
	    !send_pb(s, &req.base) || !finish(s) || !expect_code(s, GRPC_UNKNOWN))
		return false;
	return !strcmp(s->msg, st.message) ? true : fail("message '%s'", s->msg);
}

static bool case_special_status_message(sync_call *s)
{
	return echo_status(s, "\t\ntest with whitespace\r\nand Unicode BMP \xe2\x98\xba and "
			      "non-BMP \xf0\x9f\x98\x88\t\n");
}

static bool case_unimplemented_method(sync_call *s)
{
	Grpc__Testing__Empty e = GRPC__TESTING__EMPTY__INIT;
	return unary(s, TS "UnimplementedCall", &e.base, NULL, 0, false) &&
	       expect_code(s, GRPC_UNIMPLEMENTED);
}

static bool case_unimplemented_service(sync_call *s)
{
	Grpc__Testing__Empty e = GRPC__TESTING__EMPTY__INIT;
	return unary(s, "/grpc.testing.UnimplementedService/UnimplementedCall", &e.base, NULL, 0,
		     false) &&
	       expect_code(s, GRPC_UNIMPLEMENTED);
}

/* Not an interop case: checks the node's health service. */
static bool case_health(sync_call *s)
{
	Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	if (!unary(s, "/grpc.health.v1.Health/Check", &req.base, NULL, 0, false) ||
	    !expect_code(s, GRPC_OK) || s->nmsgs != 1)
		return false;
	Grpc__Health__V1__HealthCheckResponse *resp = response(
		&grpc__health__v1__health_check_response__descriptor, s->msgs[0], s->lens[0]);
	int status = resp ? (int)resp->status : -1;
	if (resp)
		grpc__health__v1__health_check_response__free_unpacked(resp, NULL);
	return status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
		       ? true
		       : fail("health status %d", status);
}

static const struct {
	const char *name;
	bool (*fn)(sync_call *s);
	bool interop;
} cases[] = {
	{"empty_unary", case_empty_unary, true},
	{"large_unary", case_large_unary, true},
	{"client_compressed_unary", case_client_compressed_unary, true},
	{"server_compressed_unary", case_server_compressed_unary, true},
	{"client_streaming", case_client_streaming, true},
	{"server_streaming", case_server_streaming, true},
	{"ping_pong", case_ping_pong, true},
	{"empty_stream", case_empty_stream, true},
	{"cancel_after_begin", case_cancel_after_begin, true},
	{"cancel_after_first_response", case_cancel_after_first_response, true},
	{"timeout_on_sleeping_server", case_timeout_on_sleeping_server, true},
	{"custom_metadata", case_custom_metadata, true},
	{"status_code_and_message", case_status_code_and_message, true},
	{"special_status_message", case_special_status_message, true},
	{"unimplemented_method", case_unimplemented_method, true},
	{"unimplemented_service", case_unimplemented_service, true},
	{"health", case_health, false},
};

static bool selected(const char *list, const char *name, bool interop)
{
	if (!strcmp(list, "all"))
		return interop;
	size_t n = strlen(name);
	for (const char *p = list; (p = strstr(p, name)); p += n)
		if ((p == list || p[-1] == ',') && (p[n] == 0 || p[n] == ','))
			return true;
	return false;
}

static const char *arg_value(int argc, char **argv, int *i, const char *name)
{
	size_t n = strlen(name);
	if (strncmp(argv[*i], name, n))
		return NULL;
	if (argv[*i][n] == '=')
		return argv[*i] + n + 1;
	if (argv[*i][n] == 0 && *i + 1 < argc)
		return argv[++*i];
	return NULL;
}

int main(int argc, char **argv)
{
	const char *host = "127.0.0.1", *port = NULL, *list = "all", *v;
	for (int i = 1; i < argc; i++) {
		if ((v = arg_value(argc, argv, &i, "--server_host")))
			host = v;
		else if ((v = arg_value(argc, argv, &i, "--server_port")))
			port = v;
		else if ((v = arg_value(argc, argv, &i, "--test_case")))
			list = v;
		else if (strncmp(argv[i], "--use_tls", 9)) {
			fprintf(stderr, "unknown argument %s\n", argv[i]);
			return 2;
		}
	}
	if (!port) {
		fprintf(stderr, "usage: %s --server_host H --server_port P --test_case all|names\n",
			argv[0]);
		return 2;
	}
	char target[300];
	snprintf(target, sizeof(target), "%s:%s", host, port);
	int err;
	r = reactor_new(&err);
	ch = r ? client_channel_new(r, target, 16 * 1024 * 1024) : NULL;
	if (!ch) {
		fprintf(stderr, "cannot set up a channel to %s\n", target);
		return 2;
	}
	int failed = 0, ran = 0;
	sync_call s = {0};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (!selected(list, cases[i].name, cases[i].interop))
			continue;
		ran++;
		failure[0] = 0;
		bool ok = cases[i].fn(&s);
		if (s.c)
			client_call_cancel(s.c);
		if (ok) {
			printf("PASS %s\n", cases[i].name);
		} else {
			printf("FAIL %s: %s\n", cases[i].name, failure);
			failed++;
		}
		fflush(stdout);
	}
	reset(&s);
	client_channel_free(ch);
	for (int i = 0; i < 20; i++)
		reactor_run_once(r, NS_PER_MS);
	reactor_free(r);
	printf("%d passed, %d failed\n", ran - failed, failed);
	return failed || !ran ? 1 : 0;
}
