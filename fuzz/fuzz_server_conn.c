/* A whole server connection fed raw bytes: the client preface is prepended, then the
 * input goes through nghttp2 and our callbacks into the method table, the standard
 * services and a small test service, in pieces whose sizes come from the input. */
#include <stdint.h>
#include <stdlib.h>

#include "server_fixture.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
	h2_conn *h = h2_conn_new_detached(fuzz_server_endpoint());
	if (!h)
		return 0;
	h2_conn_feed(h, (const uint8_t *)preface, sizeof(preface) - 1);
	/* The first byte picks the piece size, so that frame boundaries fall anywhere. */
	size_t piece = size ? (size_t)data[0] * 7 + 1 : 1;
	for (size_t off = size ? 1 : 0; off < size; off += piece) {
		size_t n = size - off < piece ? size - off : piece;
		if (h2_conn_feed(h, data + off, n) < 0)
			break;
	}
	/* Deadlines armed by the input would outlive the connection: run them now. */
	fuzz_server_run_timers();
	h2_conn_free_detached(h);
	return 0;
}
