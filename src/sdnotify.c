#include "sdnotify.h"

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int fd = -1;
static struct sockaddr_un addr;
static socklen_t addr_len;
static int64_t watchdog_us;

void sdnotify_init(void)
{
	const char *path = getenv("NOTIFY_SOCKET");
	size_t n = path ? strlen(path) : 0;
	if (n && n < sizeof(addr.sun_path) && (path[0] == '/' || path[0] == '@')) {
		addr.sun_family = AF_UNIX;
		memcpy(addr.sun_path, path, n);
		if (path[0] == '@') /* the abstract namespace */
			addr.sun_path[0] = 0;
		addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
		fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	}
	const char *usec = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
	if (usec && (!pid || strtol(pid, NULL, 10) == (long)getpid()))
		watchdog_us = strtoll(usec, NULL, 10);
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
}

void sdnotify(const char *msg)
{
	if (fd < 0)
		return;
	int saved = errno;
	(void)!sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (const struct sockaddr *)&addr, addr_len);
	errno = saved;
}

typedef struct watchdog {
	int (*alive)(void *ctx);
	void *ctx;
} watchdog;

static watchdog dog;

static void *pet(void *arg)
{
	(void)arg;
	struct timespec every = {.tv_sec = watchdog_us / 2 / 1000000,
				 .tv_nsec = watchdog_us / 2 % 1000000 * 1000};
	for (;;) {
		nanosleep(&every, NULL);
		/* A node that stopped answering is left to the watchdog: systemd restarts it. */
		if (!dog.alive || dog.alive(dog.ctx))
			sdnotify("WATCHDOG=1");
	}
	return NULL;
}

void sdnotify_watchdog_start(int (*alive_fn)(void *ctx), void *ctx)
{
	if (fd < 0 || watchdog_us <= 0)
		return;
	dog = (watchdog){alive_fn, ctx};
	pthread_t t;
	pthread_attr_t a;
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &a, pet, NULL))
		fprintf(stderr, "collector: the watchdog thread cannot start\n");
	pthread_attr_destroy(&a);
}
