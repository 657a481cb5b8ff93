/* A closed-loop load generator on this project's client (src/h2/client.h), checking the
 * grpc-status of every call:
 *
 *   loadgen --target 127.0.0.1:PORT --connections C --streams S --duration SEC
 *           --warmup SEC --payload BYTES --mode unary|pingpong [--threads T]
 *   loadgen --target 127.0.0.1:PORT ... --path /pkg.Service/Method --requests FILE [--once]
 *
 * The first form drives grpc.testing.BenchmarkService and checks the payload size of every
 * response. The second sends the requests of FILE (gRPC-framed messages, one after the
 * other, prepared in advance) to any unary method, each call taking the next request in
 * turn, cycling; a call must end OK with one response message. With --once every request
 * is sent exactly once, from the start (no warm-up), and the run ends with the last; the
 * duration is then only a limit.
 *
 * C channels (one HTTP/2 connection each) with S calls outstanding on each. unary: every
 * finished UnaryCall starts the next at once. pingpong: S StreamingCall streams per
 * connection, each sending its next SimpleRequest when the previous response arrives;
 * a latency is one round trip. Requests carry BYTES of payload and ask for BYTES back.
 * T threads (default 1), each with its own reactor and share of the connections.
 *
 * Only calls that complete inside the measured window (after the warm-up) count, and
 * their latencies go to a log-linear histogram; any call that ends with a status other
 * than OK, or whose response is not the expected size, is an error wherever it falls.
 * At the end the streams are half-closed and the outstanding calls drained. Prints one
 * JSON line: {"calls":N,"errors":E,"first_error":"...","seconds":S,"rps":R,
 * "p50_us":..,"p99_us":..,"p999_us":..}; exits 1 when there was any error. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/container_of.h"
#include "grpc/testing/messages.pb-c.h"
#include "h2/client.h"
#include "h2/status.h"
#include "io/reactor.h"
#include "io/tls.h"

#define UNARY_PATH "/grpc.testing.BenchmarkService/UnaryCall"
#define STREAM_PATH "/grpc.testing.BenchmarkService/StreamingCall"
/* A slot whose call failed starts again after this pause, not in a tight loop. */
#define RETRY_NS NS_PER_MS
#define CHECK_NS (10 * NS_PER_MS)
/* How long the calls still outstanding at the end may take to finish. */
#define DRAIN_NS (5 * NS_PER_SEC)
#define MAX_MESSAGE (64 * 1024 * 1024)

/* ---- histogram: 64 linear sub-buckets per power of two, about 1.6 % resolution ---- */

#define SUB_BITS 6
#define SUB_COUNT (1 << SUB_BITS)
#define HIST_BUCKETS (SUB_COUNT * 64)

typedef struct hist {
	uint64_t n[HIST_BUCKETS];
	uint64_t total;
} hist;

static unsigned hist_index(uint64_t v)
{
	if (v < SUB_COUNT)
		return (unsigned)v;
	unsigned msb = 63 - (unsigned)__builtin_clzll(v);
	unsigned shift = msb - SUB_BITS;
	return ((shift + 1) << SUB_BITS) + (unsigned)((v >> shift) - SUB_COUNT);
}

/* The middle of bucket i. */
static double hist_value(unsigned i)
{
	if (i < SUB_COUNT)
		return i;
	unsigned shift = (i >> SUB_BITS) - 1;
	uint64_t lo = ((uint64_t)(i & (SUB_COUNT - 1)) + SUB_COUNT) << shift;
	return (double)lo + (double)((uint64_t)1 << shift) / 2.0;
}

static void hist_add(hist *h, int64_t ns)
{
	h->n[hist_index(ns > 0 ? (uint64_t)ns : 0)]++;
	h->total++;
}

static void hist_merge(hist *into, const hist *h)
{
	for (unsigned i = 0; i < HIST_BUCKETS; i++)
		into->n[i] += h->n[i];
	into->total += h->total;
}

/* The value at quantile q, in ns (0 for an empty histogram). */
static double hist_quantile(const hist *h, double q)
{
	if (!h->total)
		return 0;
	uint64_t rank = (uint64_t)(q * (double)h->total + 0.5);
	if (rank < 1)
		rank = 1;
	uint64_t seen = 0;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		seen += h->n[i];
		if (seen >= rank)
			return hist_value(i);
	}
	return hist_value(HIST_BUCKETS - 1);
}

/* ---- settings and the shared request ---- */

typedef enum { MODE_UNARY, MODE_PINGPONG } lg_mode;

typedef struct lg_opts {
	const char *target;
	long conns, streams, threads, payload;
	double duration, warmup;
	lg_mode mode;
	const char *path, *requests; /* --requests: any unary method */
	bool once;
	bool tls; /* --tls: over TLS, the server's certificate not checked (a benchmark) */
} lg_opts;

static tls_ctx *tls;

static lg_opts opts;
/* The serialized SimpleRequest every call sends; read-only once the threads run. */
static uint8_t *request;
static size_t request_len;
static int64_t window_start, window_end;

/* --requests: the file's bytes and where each message lies in them; read-only once the
 * threads run. Calls take the next index from file_next, shared by every thread. */
static struct {
	uint8_t *bytes;
	size_t *off, *len;
	size_t n;
} file;
static atomic_size_t file_next;

/* ---- workers ---- */

typedef struct worker worker;

typedef struct slot {
	worker *w;
	client_channel *ch;
	client_call *c;
	int64_t sent_at;
	unsigned msgs;	  /* responses in the current unary call */
	const char *bad;  /* why the current call is bad (reported at its end), or NULL */
	bool half_closed; /* pingpong: the end was announced to the server */
	timer retry;
} slot;

struct worker {
	pthread_t thread;
	reactor *r;
	long nconns;
	client_channel **chans;
	slot *slots;
	size_t nslots;
	size_t active; /* calls started and not yet done */
	bool stopping; /* the window is over: no new calls */
	bool expired;  /* the drain took too long: what is left is cancelled */
	timer end_timer, check_timer;
	hist h;
	uint64_t calls, errors;
	int64_t first_error_at, finished_at;
	char first_error[256];
	int err;
};

static void worker_error(worker *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void worker_error(worker *w, const char *fmt, ...)
{
	w->errors++;
	if (w->errors > 1)
		return;
	w->first_error_at = clock_now_ns();
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(w->first_error, sizeof(w->first_error), fmt, ap);
	va_end(ap);
}

/* Walks a SimpleResponse for the length of payload.body (absent: 0). false when the bytes
 * are not a well-formed message. Hand-rolled so that checking costs no allocation. */
static bool varint_get(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	uint64_t x = 0;
	for (unsigned shift = 0; shift < 70 && *p < end; shift += 7) {
		uint8_t b = *(*p)++;
		x |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*v = x;
			return true;
		}
	}
	return false;
}

/* Finds the last occurrence of length-delimited field `field` in a message; other fields
 * are skipped after checking their encoding. *found tells whether it was there. */
static bool find_bytes_field(const uint8_t *p, size_t len, unsigned field, const uint8_t **out,
			     size_t *out_len, bool *found)
{
	const uint8_t *end = p + len;
	*found = false;
	while (p < end) {
		uint64_t key, v;
		if (!varint_get(&p, end, &key) || key >> 3 == 0)
			return false;
		switch (key & 7) {
		case 0:
			if (!varint_get(&p, end, &v))
				return false;
			break;
		case 1:
			if (end - p < 8)
				return false;
			p += 8;
			break;
		case 2:
			if (!varint_get(&p, end, &v) || v > (uint64_t)(end - p))
				return false;
			if (key >> 3 == field) {
				*out = p;
				*out_len = (size_t)v;
				*found = true;
			}
			p += v;
			break;
		case 5:
			if (end - p < 4)
				return false;
			p += 4;
			break;
		default:
			return false;
		}
	}
	return true;
}

static bool response_ok(const uint8_t *data, size_t len)
{
	const uint8_t *payload, *body;
	size_t plen, blen = 0;
	bool found;
	if (!find_bytes_field(data, len, 1, &payload, &plen, &found))
		return false;
	if (found && !find_bytes_field(payload, plen, 2, &body, &blen, &found))
		return false;
	if (!found)
		blen = 0;
	return blen == (size_t)opts.payload;
}

static bool in_window(int64_t t) { return t >= window_start && t < window_end; }

static void slot_start(slot *s);

static void slot_retry_fired(timer *t)
{
	slot *s = container_of(t, slot, retry);
	if (!s->w->stopping)
		slot_start(s);
}

static void slot_retry_later(slot *s)
{
	if (!s->w->stopping)
		reactor_timer_arm(s->w->r, &s->retry, reactor_now(s->w->r) + RETRY_NS,
				  slot_retry_fired);
}

/* client_call_cancel must not run inside on_message (the client touches the call after that
 * callback returns): a bad stream is cancelled from a timer instead. */
static void slot_cancel_fired(timer *t)
{
	slot *s = container_of(t, slot, retry);
	if (s->c)
		client_call_cancel(s->c);
}

static void unary_message(client_call *c, const uint8_t *data, size_t len)
{
	slot *s = client_call_user(c);
	s->msgs++;
	if (!file.n && !response_ok(data, len))
		s->bad = "the response does not carry the payload size asked for";
}

static void unary_done(client_call *c, int code, const char *msg)
{
	slot *s = client_call_user(c);
	worker *w = s->w;
	int64_t now = clock_now_ns();
	s->c = NULL;
	w->active--;
	bool ok = code == GRPC_OK && s->msgs == 1 && !s->bad;
	if (ok) {
		if (in_window(now)) {
			w->calls++;
			hist_add(&w->h, now - s->sent_at);
		}
		if (!w->stopping)
			slot_start(s);
		return;
	}
	if (w->expired)
		worker_error(w, "%s still running %d s after the end", opts.path,
			     (int)(DRAIN_NS / NS_PER_SEC));
	else if (s->bad)
		worker_error(w, "%s: %s (%ld bytes)", opts.path, s->bad, opts.payload);
	else if (code != GRPC_OK)
		worker_error(w, "%s: %s: %s", opts.path, grpc_code_name(code), msg ? msg : "");
	else
		worker_error(w, "%s: OK with %u response messages", opts.path, s->msgs);
	slot_retry_later(s);
}

static void pingpong_message(client_call *c, const uint8_t *data, size_t len)
{
	slot *s = client_call_user(c);
	worker *w = s->w;
	int64_t now = clock_now_ns();
	if (s->bad)
		return;
	if (!response_ok(data, len)) {
		s->bad = "a response does not carry the payload size asked for"; /* see _done */
		reactor_timer_arm(w->r, &s->retry, reactor_now(w->r), slot_cancel_fired);
		return;
	}
	if (in_window(now)) {
		w->calls++;
		hist_add(&w->h, now - s->sent_at);
	}
	if (w->stopping) {
		s->half_closed = true;
		client_call_half_close(c);
		return;
	}
	s->sent_at = now;
	int rc = client_call_send(c, request, request_len);
	if (rc) {
		s->bad = "cannot send the next request";
		reactor_timer_arm(w->r, &s->retry, reactor_now(w->r), slot_cancel_fired);
	}
}

static void pingpong_done(client_call *c, int code, const char *msg)
{
	slot *s = client_call_user(c);
	worker *w = s->w;
	s->c = NULL;
	w->active--;
	if (code == GRPC_OK && s->half_closed)
		return;
	if (s->bad)
		worker_error(w, "StreamingCall: %s (%ld bytes)", s->bad, opts.payload);
	else if (w->expired)
		worker_error(w, "StreamingCall still running %d s after the end",
			     (int)(DRAIN_NS / NS_PER_SEC));
	else if (code == GRPC_OK)
		worker_error(w, "StreamingCall: the server ended the stream before the client");
	else
		worker_error(w, "StreamingCall: %s: %s", grpc_code_name(code), msg ? msg : "");
	slot_retry_later(s);
}

static const client_call_ops unary_ops = {.on_message = unary_message, .on_done = unary_done};
static const client_call_ops pingpong_ops = {.on_message = pingpong_message,
					     .on_done = pingpong_done};

static void end_fired(timer *t);

static void slot_start(slot *s)
{
	worker *w = s->w;
	bool unary = opts.mode == MODE_UNARY;
	const uint8_t *msg = request;
	size_t len = request_len;
	if (file.n) {
		size_t i = atomic_fetch_add(&file_next, 1);
		if (opts.once && i >= file.n) {
			/* All sent: this worker ends once its last call is done. From a timer, not
			 * here: this may run inside a call's on_done, and ending the worker frees
			 * that call's channel. */
			if (!w->active && !w->stopping) {
				reactor_timer_disarm(w->r, &w->end_timer);
				reactor_timer_arm(w->r, &w->end_timer, reactor_now(w->r),
						  end_fired);
			}
			return;
		}
		msg = file.bytes + file.off[i % file.n];
		len = file.len[i % file.n];
	}
	client_call_args a = {
		.path = opts.path,
		.ops = unary ? &unary_ops : &pingpong_ops,
		.user = s,
	};
	s->msgs = 0;
	s->bad = NULL;
	s->half_closed = false;
	s->sent_at = clock_now_ns();
	s->c = client_call_start(s->ch, &a);
	if (!s->c) {
		worker_error(w, "cannot start a call");
		slot_retry_later(s);
		return;
	}
	w->active++;
	if (client_call_send(s->c, msg, len)) {
		s->bad = "cannot send the request"; /* on_done reports it */
		client_call_cancel(s->c);
		return;
	}
	if (unary)
		client_call_half_close(s->c);
}

/* Ends the worker's calls and connections; its reactor_run returns once they are gone. */
static void worker_close(worker *w)
{
	w->stopping = w->expired = true;
	for (size_t i = 0; w->slots && i < w->nslots; i++)
		reactor_timer_disarm(w->r, &w->slots[i].retry);
	for (long i = 0; w->chans && i < w->nconns; i++) {
		client_channel_free(w->chans[i]);
		w->chans[i] = NULL;
	}
	reactor_timer_disarm(w->r, &w->end_timer);
	reactor_timer_disarm(w->r, &w->check_timer);
	reactor_stop(w->r);
}

static void check_fired(timer *t)
{
	worker *w = container_of(t, worker, check_timer);
	int64_t now = reactor_now(w->r);
	if (w->active == 0) {
		worker_close(w);
		return;
	}
	if (now >= window_end + DRAIN_NS && !w->expired) {
		w->expired = true;
		for (size_t i = 0; i < w->nslots; i++)
			if (w->slots[i].c)
				client_call_cancel(w->slots[i].c);
	}
	reactor_timer_arm(w->r, t, now + CHECK_NS, check_fired);
}

static void end_fired(timer *t)
{
	worker *w = container_of(t, worker, end_timer);
	w->stopping = true;
	/* Retries are off; a pending cancel of a bad stream (slot with a call) still runs. */
	for (size_t i = 0; i < w->nslots; i++)
		if (!w->slots[i].c)
			reactor_timer_disarm(w->r, &w->slots[i].retry);
	check_fired(&w->check_timer);
}

static void *worker_main(void *arg)
{
	worker *w = arg;
	w->r = reactor_new(&w->err);
	if (!w->r)
		return NULL;
	w->nslots = (size_t)w->nconns * (size_t)opts.streams;
	w->chans = calloc((size_t)w->nconns, sizeof(*w->chans));
	w->slots = calloc(w->nslots, sizeof(*w->slots));
	if (!w->chans || !w->slots) {
		w->err = -ENOMEM;
		goto out;
	}
	for (long i = 0; i < w->nconns; i++) {
		w->chans[i] = client_channel_new_tls(w->r, opts.target, MAX_MESSAGE, tls);
		if (!w->chans[i]) {
			w->err = -EINVAL;
			goto out;
		}
	}
	for (size_t i = 0; i < w->nslots; i++) {
		w->slots[i].w = w;
		w->slots[i].ch = w->chans[i / (size_t)opts.streams];
	}
	/* Arming first: with --once a worker left without requests stops at its first slot. */
	reactor_timer_arm(w->r, &w->end_timer, window_end, end_fired);
	for (size_t i = 0; i < w->nslots; i++)
		slot_start(&w->slots[i]);
	int rc = reactor_run(w->r);
	if (rc)
		w->err = rc;
	w->finished_at = clock_now_ns();
out:
	if (w->chans) {
		/* Lets the aborted connections finish closing before the ring goes. */
		worker_close(w);
		reactor_run(w->r);
	}
	free(w->chans);
	free(w->slots);
	reactor_free(w->r);
	return NULL;
}

/* ---- process ---- */

static int usage(const char *why)
{
	fprintf(stderr,
		"loadgen: %s\nusage: loadgen --target HOST:PORT --connections C --streams S "
		"--duration SEC --warmup SEC --payload BYTES --mode unary|pingpong [--threads T]\n"
		"       loadgen --target HOST:PORT ... --path /pkg.Service/Method --requests FILE "
		"[--once]\n       (either form) [--tls]: over TLS, the certificate not checked\n",
		why);
	return 2;
}

static bool parse_long(const char *s, long lo, long hi, long *out)
{
	char *end;
	errno = 0;
	long v = s ? strtol(s, &end, 10) : 0;
	if (!s || !*s || *end || errno || v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

static bool parse_seconds(const char *s, double lo, double *out)
{
	char *end;
	double v = s ? strtod(s, &end) : 0;
	if (!s || !*s || *end || !(v >= lo) || v > 86400)
		return false;
	*out = v;
	return true;
}

static int parse_args(int argc, char **argv)
{
	opts = (lg_opts){.conns = 1,
			 .streams = 1,
			 .threads = 1,
			 .duration = 10,
			 .warmup = 1,
			 .mode = MODE_UNARY};
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		if (!strcmp(arg, "--once")) { /* the flags without a value */
			opts.once = true;
			continue;
		}
		if (!strcmp(arg, "--tls")) {
			opts.tls = true;
			continue;
		}
		const char *val = strchr(arg, '=');
		size_t n = val ? (size_t)(val - arg) : strlen(arg);
		if (val)
			val++;
		else if (i + 1 < argc)
			val = argv[++i];
#define IS(name) (n == sizeof(name) - 1 && !strncmp(arg, name, n))
		if (IS("--target")) {
			if (!val)
				return usage("--target needs HOST:PORT");
			opts.target = val;
		} else if (IS("--connections")) {
			if (!parse_long(val, 1, 100000, &opts.conns))
				return usage("--connections needs a number from 1 to 100000");
		} else if (IS("--streams")) {
			if (!parse_long(val, 1, 100000, &opts.streams))
				return usage("--streams needs a number from 1 to 100000");
		} else if (IS("--threads")) {
			if (!parse_long(val, 1, 1024, &opts.threads))
				return usage("--threads needs a number from 1 to 1024");
		} else if (IS("--payload")) {
			if (!parse_long(val, 0, 16 * 1024 * 1024, &opts.payload))
				return usage("--payload needs a byte count from 0 to 16 MiB");
		} else if (IS("--duration")) {
			if (!parse_seconds(val, 0.001, &opts.duration))
				return usage("--duration needs seconds (> 0)");
		} else if (IS("--warmup")) {
			if (!parse_seconds(val, 0, &opts.warmup))
				return usage("--warmup needs seconds (>= 0)");
		} else if (IS("--path")) {
			if (!val || val[0] != '/')
				return usage("--path needs /package.Service/Method");
			opts.path = val;
		} else if (IS("--requests")) {
			if (!val)
				return usage("--requests needs a file");
			opts.requests = val;
		} else if (IS("--mode")) {
			if (val && !strcmp(val, "unary"))
				opts.mode = MODE_UNARY;
			else if (val && !strcmp(val, "pingpong"))
				opts.mode = MODE_PINGPONG;
			else
				return usage("--mode needs unary or pingpong");
		} else {
			char why[300];
			snprintf(why, sizeof(why), "unknown argument '%.250s'", arg);
			return usage(why);
		}
#undef IS
	}
	if (!opts.target)
		return usage("--target is required");
	if (!opts.requests != !opts.path || (opts.once && !opts.requests))
		return usage("--path and --requests go together (and --once needs them)");
	if (opts.requests && opts.mode != MODE_UNARY)
		return usage("--requests sends unary calls only");
	if (!opts.path)
		opts.path = opts.mode == MODE_UNARY ? UNARY_PATH : STREAM_PATH;
	if (opts.once)
		opts.warmup = 0;
	if (opts.threads > opts.conns)
		opts.threads = opts.conns;
	return 0;
}

static int build_request(void)
{
	uint8_t *zeros = calloc(1, (size_t)opts.payload + 1);
	if (!zeros)
		return -ENOMEM;
	Grpc__Testing__SimpleRequest req = GRPC__TESTING__SIMPLE_REQUEST__INIT;
	Grpc__Testing__Payload p = GRPC__TESTING__PAYLOAD__INIT;
	p.body.data = zeros;
	p.body.len = (size_t)opts.payload;
	req.payload = &p;
	req.response_size = (int32_t)opts.payload;
	request_len = protobuf_c_message_get_packed_size(&req.base);
	request = malloc(request_len + 1);
	if (request)
		protobuf_c_message_pack(&req.base, request);
	free(zeros);
	return request ? 0 : -ENOMEM;
}

/* Reads --requests: gRPC frames (flag 0, 4-byte big-endian length, message) back to back.
 * 0, or -1 after saying what is wrong. */
static int load_requests(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "loadgen: %s: %s\n", path, strerror(errno));
		return -1;
	}
	size_t cap = 1 << 20, size = 0, n;
	file.bytes = malloc(cap);
	while (file.bytes && (n = fread(file.bytes + size, 1, cap - size, f)) > 0) {
		size += n;
		if (size == cap) {
			uint8_t *b = realloc(file.bytes, cap *= 2);
			if (!b)
				free(file.bytes);
			file.bytes = b;
		}
	}
	fclose(f);
	if (!file.bytes) {
		fprintf(stderr, "loadgen: out of memory\n");
		return -1;
	}
	size_t cap_n = 0;
	for (size_t at = 0; at < size;) {
		if (size - at < 5 || file.bytes[at] != 0) {
			fprintf(stderr, "loadgen: %s: bad frame header at byte %zu\n", path, at);
			return -1;
		}
		size_t len = (size_t)file.bytes[at + 1] << 24 | (size_t)file.bytes[at + 2] << 16 |
			     (size_t)file.bytes[at + 3] << 8 | file.bytes[at + 4];
		if (len > size - at - 5 || len > MAX_MESSAGE) {
			fprintf(stderr, "loadgen: %s: frame at byte %zu overruns the file\n", path,
				at);
			return -1;
		}
		if (file.n == cap_n) {
			cap_n = cap_n ? cap_n * 2 : 1024;
			size_t *o = realloc(file.off, cap_n * sizeof(*o));
			if (o)
				file.off = o;
			size_t *l = realloc(file.len, cap_n * sizeof(*l));
			if (l)
				file.len = l;
			if (!o || !l) {
				fprintf(stderr, "loadgen: out of memory\n");
				return -1;
			}
		}
		file.off[file.n] = at + 5;
		file.len[file.n++] = len;
		at += 5 + len;
	}
	if (!file.n) {
		fprintf(stderr, "loadgen: %s holds no request\n", path);
		return -1;
	}
	return 0;
}

/* JSON string body: quotes, backslashes and control characters escaped. */
static void json_string(FILE *f, const char *s)
{
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
}

int main(int argc, char **argv)
{
	int rc = parse_args(argc, argv);
	if (rc)
		return rc;
	if (build_request()) {
		fprintf(stderr, "loadgen: out of memory\n");
		return 1;
	}
	if (opts.requests && load_requests(opts.requests))
		return 2;
	if (opts.tls) {
		tls_opts to = {.alpn = "h2"};
		char why[300];
		if (tls_ctx_new(&to, &tls, why, sizeof(why))) {
			fprintf(stderr, "loadgen: %s\n", why);
			return 2;
		}
	}
	worker *ws = calloc((size_t)opts.threads, sizeof(*ws));
	if (!ws) {
		fprintf(stderr, "loadgen: out of memory\n");
		return 1;
	}
	int64_t t0 = clock_now_ns();
	window_start = t0 + (int64_t)(opts.warmup * NS_PER_SEC);
	window_end = window_start + (int64_t)(opts.duration * NS_PER_SEC);
	long started = 0;
	for (long i = 0; i < opts.threads; i++) {
		ws[i].nconns = opts.conns / opts.threads + (i < opts.conns % opts.threads);
		if (pthread_create(&ws[i].thread, NULL, worker_main, &ws[i])) {
			fprintf(stderr, "loadgen: cannot start a thread\n");
			break;
		}
		started++;
	}
	hist *all = calloc(1, sizeof(*all));
	uint64_t calls = 0, errors = 0;
	const char *first_error = "";
	int64_t first_at = INT64_MAX, last_end = 0;
	int failed = started < opts.threads;
	for (long i = 0; i < started; i++) {
		pthread_join(ws[i].thread, NULL);
		if (ws[i].err) {
			fprintf(stderr, "loadgen: thread %ld: %s\n", i,
				ws[i].err == -EINVAL ? "bad --target" : strerror(-ws[i].err));
			failed = 1;
		}
		if (all)
			hist_merge(all, &ws[i].h);
		calls += ws[i].calls;
		errors += ws[i].errors;
		if (ws[i].finished_at > last_end)
			last_end = ws[i].finished_at;
		if (ws[i].errors && ws[i].first_error_at < first_at) {
			first_at = ws[i].first_error_at;
			first_error = ws[i].first_error;
		}
	}
	if (failed || !all) {
		free(all);
		free(ws);
		free(request);
		return 2;
	}
	/* --once: the run lasted until its last call, unless the limit cut it short. */
	if (opts.once && last_end < window_end)
		window_end = last_end;
	if (opts.once && calls + errors < file.n) {
		errors += file.n - calls - errors;
		if (!*first_error)
			first_error = "the duration ended before every request was sent";
	}
	double secs = (double)(window_end - window_start) / NS_PER_SEC;
	printf("{\"calls\":%llu,\"errors\":%llu,\"first_error\":\"", (unsigned long long)calls,
	       (unsigned long long)errors);
	json_string(stdout, first_error);
	printf("\",\"seconds\":%.3f,\"rps\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f}\n",
	       secs, (double)calls / secs, hist_quantile(all, 0.5) / 1000,
	       hist_quantile(all, 0.99) / 1000, hist_quantile(all, 0.999) / 1000);
	fflush(stdout);
	free(all);
	free(ws);
	free(request);
	free(file.bytes);
	free(file.off);
	free(file.len);
	return errors ? 1 : 0;
}
