/* HTTP/2 frames as they arrive, before nghttp2 sees them: a scanner that reports every
 * inbound frame header (nghttp2 1.52 drops unknown frames before any callback, so it
 * cannot count them for us), and which frames cost work without carrying a request (the
 * flood guard of conn_limits.c counts them). Pure logic, no I/O. */
#ifndef H2_FRAME_H
#define H2_FRAME_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FRAME_HEADER_LEN 9
#define FRAME_PREFACE_LEN 24

enum {
	FRAME_DATA = 0,
	FRAME_HEADERS = 1,
	FRAME_PRIORITY = 2,
	FRAME_RST_STREAM = 3,
	FRAME_SETTINGS = 4,
	FRAME_PUSH_PROMISE = 5,
	FRAME_PING = 6,
	FRAME_GOAWAY = 7,
	FRAME_WINDOW_UPDATE = 8,
	FRAME_CONTINUATION = 9,
};

enum {
	FRAME_FLAG_END_STREAM = 0x1,
	FRAME_FLAG_ACK = 0x1,
	FRAME_FLAG_END_HEADERS = 0x4,
	FRAME_FLAG_PADDED = 0x8
};

typedef struct frame_info {
	uint8_t type, flags;
	uint32_t length;
	uint32_t stream_id;
	/* DATA only: payload bytes without padding; known once the pad length byte arrived. */
	uint32_t data_length;
} frame_info;

/* Reports each frame once its header (and, for padded DATA, its pad length) is in. */
typedef void (*frame_scan_fn)(void *user, const frame_info *f);

typedef struct frame_scan {
	size_t skip; /* preface bytes, then payload bytes, still to skip */
	uint8_t hdr[FRAME_HEADER_LEN];
	size_t hdr_have;
	bool want_pad; /* the next byte is a padded DATA frame's pad length */
	frame_info cur;
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
bool frame_is_glitch(const frame_info *f);

#endif
