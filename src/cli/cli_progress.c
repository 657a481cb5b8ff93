#include "cli/cli_progress.h"

#include <string.h>
#include <unistd.h>

#include "base/clock.h"

#define BAR 30
#define TTY_EVERY_NS (100 * NS_PER_MS)
#define PLAIN_EVERY_NS (2 * NS_PER_SEC)

void cli_progress_start(cli_progress *p, FILE *out, const char *what, bool bytes)
{
	*p = (cli_progress){.out = out, .what = what, .bytes = bytes};
	p->tty = isatty(fileno(out));
	p->started_ns = clock_now_ns();
}

/* n as a person reads it: bytes with a unit, counts as they are. */
static void amount(const cli_progress *p, double n, char *out, size_t cap)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	if (!p->bytes) {
		snprintf(out, cap, "%.0f", n);
		return;
	}
	int u = 0;
	while (n >= 1024 && u < 4) {
		n /= 1024;
		u++;
	}
	snprintf(out, cap, u ? "%.1f %s" : "%.0f %s", n, units[u]);
}

static void line(cli_progress *p, int64_t done, int64_t total, const char *state, bool last)
{
	int64_t now = clock_now_ns();
	double secs = (double)(now - p->started_ns) / NS_PER_SEC;
	double rate = secs > 0 ? (double)done / secs : 0;
	char d[32], t[32], r[32], eta[32] = "";
	amount(p, (double)done, d, sizeof(d));
	amount(p, (double)total, t, sizeof(t));
	amount(p, rate, r, sizeof(r));
	if (total > done && rate > 0 && !last)
		snprintf(eta, sizeof(eta), ", ETA %.0f s", (double)(total - done) / rate);
	char text[256];
	int n;
	if (p->tty) {
		char bar[BAR + 1];
		int fill = total > 0 ? (int)(BAR * (done > total ? total : done) / total) : 0;
		memset(bar, '#', (size_t)fill);
		memset(bar + fill, '.', (size_t)(BAR - fill));
		bar[BAR] = 0;
		n = snprintf(text, sizeof(text), "\r[%s] %s/%s %s, %s/s%s, %.1f s %s", bar, d,
			     total ? t : "?", p->what, r, eta, secs, state ? state : "");
		fprintf(p->out, "%s%*s", text, p->shown > n ? p->shown - n : 0, "");
		p->shown = n;
		if (last)
			fputc('\n', p->out);
	} else {
		fprintf(p->out, "%s/%s %s done, %s/s%s, %.1f s %s\n", d, total ? t : "?", p->what,
			r, eta, secs, state ? state : "");
	}
	fflush(p->out);
	p->printed_ns = now;
}

void cli_progress_update(cli_progress *p, int64_t done, int64_t total, const char *state)
{
	int64_t every = p->tty ? TTY_EVERY_NS : PLAIN_EVERY_NS;
	if (clock_now_ns() - p->printed_ns >= every)
		line(p, done, total, state, false);
}

void cli_progress_end(cli_progress *p, int64_t done, int64_t total, const char *state)
{
	line(p, done, total, state, true);
}
