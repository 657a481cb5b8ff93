/* The collector program: flags in, a node out (collector.h), until SIGTERM or SIGINT;
 * SIGHUP reads the TLS certificate again. */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>

#include "collector.h"
#include "config.h"
#include "sdnotify.h"

static collector *node;

static void on_signal(int sig)
{
	if (sig == SIGHUP) {
		collector_reload(node);
	} else {
		sdnotify("STOPPING=1");
		collector_stop(node);
	}
}

/* The watchdog is fed while every reactor's loop turns (a stuck one gets the node
 * restarted by systemd). */
static int node_alive(void *ctx)
{
	(void)ctx;
	return collector_alive(node, 5 * 1000000000LL);
}

int main(int argc, char **argv)
{
	collector_config cfg;
	collector_config_defaults(&cfg);
	int rc = config_parse(&cfg, argc, argv);
	if (rc)
		return rc > 0 ? 0 : 2;
	signal(SIGPIPE, SIG_IGN);
	sdnotify_init();
	/* Calls allocate and free their buffers in waves: with glibc's default (and dynamic)
	 * trim threshold every thread's heap shrinks after a wave (madvise) and faults its
	 * pages back in for the next one, a third of the CPU of small calls. The heaps keep up
	 * to this much free memory instead. */
	mallopt(M_TRIM_THRESHOLD, 32 << 20);

	/* Held back until the node exists: a signal during start-up then stops it as soon as
	 * it serves, instead of killing it half-open. */
	sigset_t sigs, saved;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, &saved);
	char err[600];
	rc = collector_open(&cfg, &node, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "collector: %s\n", err);
		return rc == -EINVAL ? 2 : 1;
	}
	printf("collector %s\nid %s\nnamespace %s\nvalidation %s\nlistening on %s\nservices: ",
	       collector_version(), collector_id(node), cfg.default_namespace,
	       cfg.no_validation ? "off" : "on", collector_address(node));
	for (size_t i = 0; collector_service(node, i); i++)
		printf("%s%s", i ? ", " : "", collector_service(node, i));
	printf("\n");
	fflush(stdout);
	/* The node's threads block these signals: they arrive here, on the thread that
	 * serves, and a second one during the grace period changes nothing. */
	struct sigaction sa = {.sa_handler = on_signal};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
	char ready[300];
	snprintf(ready, sizeof(ready), "READY=1\nSTATUS=serving on %s", collector_address(node));
	sdnotify(ready);
	sdnotify_watchdog_start(node_alive, NULL);
	rc = collector_serve(node);
	collector_close(node);
	return rc ? 1 : 0;
}
