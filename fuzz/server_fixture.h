/* The server the connection harnesses talk to: the standard services (health, reflection)
 * and a small raw test service, on one reactor, with a 64 KiB message limit. */
#ifndef FUZZ_SERVER_FIXTURE_H
#define FUZZ_SERVER_FIXTURE_H
#include "h2/server.h"

/* Made once per process; aborts if it cannot be. */
h2_endpoint *fuzz_server_endpoint(void);
/* Runs what the input armed (deadlines) so that nothing outlives a connection. */
void fuzz_server_run_timers(void);

#endif
