/* The client's response path: a call is started on a detached channel and the input is
 * fed as the server's bytes (SETTINGS, HEADERS, DATA, trailers, resets, GOAWAY...). */
#include <stdint.h>
#include <stdlib.h>

#include "h2/client.h"

static reactor *r;
static size_t messages;

static void on_message(client_call *c, const uint8_t *data, size_t len)
{
	(void)data;
	messages += len;
	for (size_t i = 0; i < client_call_md_count(c, false); i++)
		messages += client_call_md_at(c, false, i)->value_len;
}

static void on_done(client_call *c, int code, const char *msg)
{
	(void)msg;
	for (size_t i = 0; i < client_call_md_count(c, true); i++)
		messages += client_call_md_at(c, true, i)->value_len;
	if (code < 0 || code > 16)
		abort(); /* a status outside the canonical set must have been mapped */
}

static const client_call_ops ops = {.on_message = on_message, .on_done = on_done};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	int err;
	r = reactor_new(&err);
	return r ? 0 : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	client_channel *ch = client_channel_new_detached(r, 64 * 1024);
	if (!ch)
		return 0;
	client_call_args a = {.path = "/fuzz.Test/Call", .timeout_ns = 1000000000, .ops = &ops};
	client_call *c = client_call_start(ch, &a);
	if (c) {
		static const uint8_t req[] = {0x0a, 0x01, 0x41};
		client_call_send(c, req, sizeof(req));
		client_call_half_close(c);
		/* Stream 1 is the call: a second call makes frames for stream 3 meaningful. */
		client_call_start(ch, &a);
	}
	size_t piece = size ? (size_t)data[0] * 5 + 1 : 1;
	for (size_t off = size ? 1 : 0; off < size; off += piece) {
		size_t n = size - off < piece ? size - off : piece;
		if (client_channel_feed(ch, data + off, n) < 0)
			break;
	}
	client_channel_free(ch);
	return 0;
}
