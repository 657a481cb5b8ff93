/* The server the connection harnesses talk to: the standard services (health, reflection)
 * and a small raw test service, on one reactor, with a 64 KiB message limit. */
#ifndef FUZZ_SERVER_FIXTURE_H
#define FUZZ_SERVER_FIXTURE_H
#include "h2/server.h"

/* Made once per process; aborts if it cannot be. */
h2_endpoint *fuzz_server_endpoint(void);
/* The same methods on a server that also speaks HTTP/1.1 (its connections tell the
 * protocols apart by their first bytes), with the node's JSON hooks over a type pool of
 * the compiled-in API. Made once per process; aborts if it cannot be. */
h2_endpoint *fuzz_http1_endpoint(void);
/* Runs what the input armed (deadlines) so that nothing outlives a connection. */
void fuzz_server_run_timers(void);

#endif
