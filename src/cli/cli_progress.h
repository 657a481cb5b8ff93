/* Progress of a long operation: on a terminal, one line redrawn in place (a bar, done of
 * total, rate, ETA); otherwise a plain line every few seconds, so that logs stay readable. */
#ifndef CLI_CLI_PROGRESS_H
#define CLI_CLI_PROGRESS_H
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct cli_progress {
	FILE *out;
	const char *what; /* "tasks", "bytes" */
	bool tty, bytes;
	int64_t started_ns, printed_ns;
	int shown; /* the last line's length, to clear it on a terminal */
} cli_progress;

void cli_progress_start(cli_progress *p, FILE *out, const char *what, bool bytes);
/* done of total (total 0: unknown), with a word of state ("RUNNING"). Prints when due. */
void cli_progress_update(cli_progress *p, int64_t done, int64_t total, const char *state);
/* The last line, always printed, ended. */
void cli_progress_end(cli_progress *p, int64_t done, int64_t total, const char *state);

#endif
