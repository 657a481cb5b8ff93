/* The store's error reporting, below every other store module: functions of store/ return
 * 0 or a negative errno and leave a message saying what went wrong for the calling thread,
 * so that a service can answer with it without knowing which module failed. */
#ifndef STORE_ERR_H
#define STORE_ERR_H

/* The message of this thread's last failure in the store (never NULL). */
const char *store_err_msg(void);
/* For store modules: sets this thread's message and returns rc. The arguments may quote
 * the message set before (store_err_msg()), to add context to it. */
int store_err_set(int rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
