/* systemd's readiness protocol, spoken directly (sd_notify(3)): datagrams to the unix
 * socket named by $NOTIFY_SOCKET. READY=1 once the node serves, STOPPING=1 when a stop is
 * asked, WATCHDOG=1 every half of $WATCHDOG_USEC. Without $NOTIFY_SOCKET nothing is sent.
 * The collector program's, not the library's: an embedding program speaks for itself. */
#ifndef SDNOTIFY_H
#define SDNOTIFY_H

/* Reads the environment once (and unsets it, so that children do not inherit it). */
void sdnotify_init(void);
/* Sends msg ("READY=1\nSTATUS=..."). Async-signal-safe: a signal handler may call it. */
void sdnotify(const char *msg);
/* With $WATCHDOG_USEC meant for this process: a thread sends WATCHDOG=1 every half of it
 * while alive_fn(ctx) says the node is alive. */
void sdnotify_watchdog_start(int (*alive_fn)(void *ctx), void *ctx);

#endif
