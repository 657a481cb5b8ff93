/* Socket set-up: address parsing and listening sockets. Blocking calls; used at start-up
 * only, never on a reactor's hot path. */
#ifndef IO_SOCK_H
#define IO_SOCK_H
#include <stdbool.h>
#include <sys/socket.h>

/* Parses "host:port", "[v6]:port" or ":port" (numeric hosts and "localhost").
 * Returns 0 or -EINVAL. */
int sock_parse_addr(const char *hostport, struct sockaddr_storage *ss, socklen_t *len);
/* Whether addr is a loopback address (127.0.0.0/8, ::1, or ::ffff:127.x.y.z). */
bool sock_is_loopback(const struct sockaddr *addr);
/* A non-blocking listening socket with SO_REUSEPORT, so that each reactor can own one on
 * the same address. Returns the fd or a negative errno. */
int sock_listen(const struct sockaddr *addr, socklen_t len, int backlog);
/* The port a socket is bound to (to resolve port 0). */
int sock_local_port(int fd);
/* Formats an address as host:port into buf. */
void sock_format_addr(const struct sockaddr *addr, char *buf, size_t cap);

#endif
