/* A connection of a server that speaks HTTP/1.1 beside HTTP/2, fed raw bytes: the sniffing
 * of the first bytes, libhttp-parser and our callbacks (limits, pipelining), /healthz and
 * /metrics, Connect requests (JSON through the type pool, binary), gRPC-Web (binary and
 * text) and CORS preflights into the method table, in pieces whose sizes come from the
 * input.
 *
 * Invariant: a connection that is not HTTP/2 answers nothing but HTTP/1.1 responses. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "server_fixture.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
	h2_conn *h = h2_conn_new_detached(fuzz_http1_endpoint());
	if (!h)
		return 0;
	buf out = {0};
	h2_conn_keep_output(h, &out);
	/* The first byte picks the piece size, so that requests split anywhere. */
	size_t piece = size ? (size_t)data[0] * 3 + 1 : 1;
	size_t start = size ? 1 : 0;
	for (size_t off = start; off < size; off += piece) {
		size_t n = size - off < piece ? size - off : piece;
		if (h2_conn_feed(h, data + off, n) < 0)
			break;
	}
	size_t plen = sizeof(preface) - 1, in = size - start;
	bool h2 = in >= plen && !memcmp(data + start, preface, plen);
	if (!h2 && out.len && (out.len < 9 || memcmp(out.data, "HTTP/1.1 ", 9)))
		abort();
	fuzz_server_run_timers();
	h2_conn_free_detached(h);
	buf_free(&out);
	return 0;
}
