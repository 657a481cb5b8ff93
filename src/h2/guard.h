/* Defences against peers that make us work without asking for anything: a scanner that
 * sees every inbound HTTP/2 frame header (nghttp2 1.52 drops unknown frames before any
 * callback, so it cannot count them for us), a rate limiter, and gRPC's ping policy.
 * Pure logic: time comes in as monotonic nanoseconds, nothing here does I/O. */
#ifndef H2_GUARD_H
#define H2_GUARD_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define H2_FRAME_HEADER_LEN 9
#define H2_CLIENT_PREFACE_LEN 24

enum {
	H2_DATA = 0,
	H2_HEADERS = 1,
	H2_PRIORITY = 2,
	H2_RST_STREAM = 3,
	H2_SETTINGS = 4,
	H2_PUSH_PROMISE = 5,
	H2_PING = 6,
	H2_GOAWAY = 7,
	H2_WINDOW_UPDATE = 8,
	H2_CONTINUATION = 9,
};

enum { H2_FLAG_END_STREAM = 0x1, H2_FLAG_ACK = 0x1, H2_FLAG_END_HEADERS = 0x4, H2_FLAG_PADDED = 0x8 };

typedef struct h2_frame_info {
	uint8_t type, flags;
	uint32_t length;
	uint32_t stream_id;
	/* DATA only: payload bytes without padding; known once the pad length byte arrived. */
	uint32_t data_length;
} h2_frame_info;

/* Reports each frame once its header (and, for padded DATA, its pad length) is in. */
typedef void (*frame_scan_fn)(void *user, const h2_frame_info *f);

typedef struct frame_scan {
	size_t skip;	  /* preface bytes, then payload bytes, still to skip */
	uint8_t hdr[H2_FRAME_HEADER_LEN];
	size_t hdr_have;
	bool want_pad;	  /* the next byte is a padded DATA frame's pad length */
	h2_frame_info cur;
	bool in_header_block; /* a HEADERS/PUSH_PROMISE block has not ended yet */
	bool block_ends;      /* the frame being skipped carries END_HEADERS */
} frame_scan;

/* server: the input starts with the 24-byte client preface. */
void frame_scan_init(frame_scan *s, bool server);
void frame_scan_feed(frame_scan *s, const uint8_t *p, size_t n, frame_scan_fn fn, void *user);
/* True from a HEADERS frame's header until the last byte of the frame with END_HEADERS. */
static inline bool frame_scan_in_header_block(const frame_scan *s) { return s->in_header_block; }

/* Frames that cost work and carry nothing a call needs: empty DATA without END_STREAM,
 * PRIORITY, SETTINGS and PING (not ACKs), and frame types HTTP/2 does not define. */
bool frame_is_glitch(const h2_frame_info *f);

/* Generic cell rate algorithm: `rate` events per second on average, `burst` at once. */
typedef struct rate_limit {
	int64_t tat; /* theoretical arrival time of the next event */
	int64_t interval, tolerance;
} rate_limit;

/* rate 0 disables the limit. */
void rate_limit_init(rate_limit *r, uint32_t rate, uint32_t burst);
/* Records one event at now; false when it goes over the limit. */
bool rate_limit_take(rate_limit *r, int64_t now);

/* gRPC's server ping policy: a PING that comes sooner than the allowed interval after the
 * previous one is a strike, unless we sent HEADERS or DATA in between; more than
 * max_strikes strikes -> GOAWAY ENHANCE_YOUR_CALM "too_many_pings". */
typedef struct ping_policy {
	int64_t min_interval;	   /* while calls are active */
	int64_t idle_min_interval; /* while the connection has no calls */
	uint32_t max_strikes;
	uint32_t strikes;
	int64_t last_ping; /* INT64_MIN: none since the last reset */
} ping_policy;

void ping_policy_init(ping_policy *p, int64_t min_interval, int64_t idle_min_interval,
		      uint32_t max_strikes);
/* A PING arrived; true when the peer is over its strikes. */
bool ping_policy_on_ping(ping_policy *p, int64_t now, bool idle);
/* We sent HEADERS or DATA: the peer may ping again. */
void ping_policy_reset(ping_policy *p);

#endif
