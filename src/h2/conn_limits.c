/* What a server connection may hold and for how long: its timers (handshake, header
 * block, idle, keepalive, send stall, stalled request bodies), the floods it may send,
 * and the node-wide budget of message bytes that all connections share. */
#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "h2/server_int.h"

/* ---- memory held for messages: per connection, per endpoint, node-wide ---- */

/* While an endpoint holds message bytes, it looks this often whether the node is over its
 * budget (a reactor whose connections stall silently would otherwise never look). */
#define BUDGET_CHECK (100 * NS_PER_MS)

static void budget_tick(timer *t);
static void conn_tick(timer *t);

bool server_over_budget(const h2_server *s)
{
	return s->o.max_buffered_bytes &&
	       atomic_load_explicit(&s->held, memory_order_relaxed) > s->o.max_buffered_bytes;
}

/* The budget timer is armed from the endpoint's start to its end, parked at INT64_MAX
 * while the endpoint holds nothing: moving it then needs no memory, so it cannot fail
 * when memory is short, which is when it matters. */
int endpoint_budget_start(h2_endpoint *e)
{
	if (!e->s->o.max_buffered_bytes)
		return 0;
	return reactor_timer_arm(e->r, &e->budget_timer, INT64_MAX, budget_tick);
}

static void budget_watch(h2_endpoint *e)
{
	if (!e->s->o.max_buffered_bytes)
		return;
	int64_t at = reactor_now(e->r) + (server_over_budget(e->s) ? 0 : BUDGET_CHECK);
	if (at < e->budget_timer.deadline_ns)
		reactor_timer_arm(e->r, &e->budget_timer, at, budget_tick);
}

void conn_held_add(h2_conn *h, size_t n)
{
	if (!n)
		return;
	h->e->held += n;
	atomic_fetch_add_explicit(&h->e->s->held, n, memory_order_relaxed);
	budget_watch(h->e);
}

void conn_held_sub(h2_conn *h, size_t n)
{
	if (!n)
		return;
	h->e->held -= n;
	atomic_fetch_sub_explicit(&h->e->s->held, n, memory_order_relaxed);
}

void conn_send_add(h2_conn *h, size_t n)
{
	h->send_queued += n;
	conn_held_add(h, n);
}

void conn_send_sub(h2_conn *h, size_t n)
{
	h->send_queued -= n;
	conn_held_sub(h, n);
}

/* ---- connection guards: misbehaviour and time ---- */

/* After a GOAWAY for misbehaviour or a timeout, the time the peer gets to read it. */
#define CLOSE_GRACE (5 * NS_PER_SEC)

/* GOAWAY with a reason; the connection takes no more input and closes once the GOAWAY
 * is out (or when the send stall timeout finds that it cannot go out). */
void conn_terminate(h2_conn *h, uint32_t code, const char *why)
{
	if (h->closing)
		return;
	h->closing = true;
	h->closing_at = h->io ? reactor_now(h->e->r) : 0;
	if (h->proto == PROTO_H1) {
		/* No GOAWAY in HTTP/1.1: what is queued goes, then the close. */
		log_info("connection from %s (HTTP/1.1): closed: %s", h->peer, why);
		if (h->io)
			reactor_conn_close(h->io);
		return;
	}
	log_msg(code == NGHTTP2_NO_ERROR ? LOG_DEBUG : LOG_INFO,
		"connection from %s: GOAWAY %s: %s", h->peer, nghttp2_http2_strerror(code), why);
	nghttp2_submit_goaway(h->ng, NGHTTP2_FLAG_NONE,
			      nghttp2_session_get_last_proc_stream_id(h->ng), code,
			      (const uint8_t *)why, strlen(why));
	h->goaway_sent = true;
	conn_want_send(h);
}

static void on_scanned_frame(void *user, const frame_info *f)
{
	h2_conn *h = user;
	if (h->closing)
		return;
	int64_t now = h->io ? reactor_now(h->e->r) : 0;
	if (f->type == FRAME_PING && !(f->flags & FRAME_FLAG_ACK) &&
	    ping_policy_on_ping(&h->pings, now, conn_live_calls(h) == 0)) {
		conn_terminate(h, NGHTTP2_ENHANCE_YOUR_CALM, "too_many_pings");
		return;
	}
	if (frame_is_glitch(f) && !rate_limit_take(&h->flood, now))
		conn_terminate(h, NGHTTP2_ENHANCE_YOUR_CALM,
			       "too many frames that carry no request (empty DATA, PRIORITY, "
			       "SETTINGS, PING or unknown types)");
}

/* Sees every frame header before nghttp2 does. */
void conn_scan(h2_conn *h, const uint8_t *data, size_t len)
{
	frame_scan_feed(&h->scan, data, len, on_scanned_frame, h);
	bool in_block = frame_scan_in_header_block(&h->scan);
	if (in_block && !h->header_block_since && h->io) {
		h->header_block_since = reactor_now(h->e->r);
		conn_schedule(h);
	} else if (!in_block) {
		h->header_block_since = 0;
	}
}

static bool conn_output_waiting(h2_conn *h)
{
	return h->send_queued > 0 || reactor_conn_out_pending(h->io) > 0;
}

static int64_t conn_next_deadline(h2_conn *h, int64_t now)
{
	const h2_server_opts *o = &h->e->s->o;
	int64_t next = INT64_MAX;
#define CONSIDER(cond, at)                                                                         \
	do {                                                                                       \
		if ((cond) && (at) < next)                                                         \
			next = (at);                                                               \
	} while (0)
	CONSIDER(h->closing, h->closing_at + CLOSE_GRACE);
	CONSIDER(o->handshake_timeout && !h->closing && !(h->got_settings && h->settings_acked),
		 h->accepted_at + o->handshake_timeout);
	CONSIDER(o->header_timeout && !h->closing && h->header_block_since,
		 h->header_block_since + o->header_timeout);
	CONSIDER(o->idle_timeout && !h->closing && conn_live_calls(h) == 0,
		 h->idle_since + o->idle_timeout);
	CONSIDER(o->keepalive_time && h->ping_sent_at, h->ping_sent_at + o->keepalive_timeout);
	CONSIDER(o->keepalive_time && !h->ping_sent_at && !h->closing,
		 h->last_recv + o->keepalive_time);
	CONSIDER(o->send_stall_timeout && h->stall_since, h->stall_since + o->send_stall_timeout);
	CONSIDER(o->body_timeout && h->body_check_at && !h->closing, h->body_check_at);
#undef CONSIDER
	/* Never at or before now: the timer heap would fire it again in the same run. */
	return next <= now ? now + NS_PER_MS : next;
}

/* One timer per connection, armed for the earliest deadline. Deadlines that move later
 * (activity) do not re-arm it: the tick finds out and arms again. */
void conn_schedule(h2_conn *h)
{
	if (!h->io)
		return;
	if (h->proto == PROTO_H1) {
		http1_schedule(h);
		return;
	}
	reactor *r = h->e->r;
	int64_t next = conn_next_deadline(h, reactor_now(r));
	if (next == INT64_MAX)
		reactor_timer_disarm(r, &h->tick);
	else if ((!timer_armed(&h->tick) || next < h->tick.deadline_ns) &&
		 reactor_timer_arm(r, &h->tick, next, conn_tick))
		reactor_conn_abort(h->io, -ENOMEM); /* its timeouts could not be watched */
}

/* Output is waiting: start watching for progress if not already. */
void conn_watch_stall(h2_conn *h)
{
	if (!h->e->s->o.send_stall_timeout || h->stall_since)
		return;
	if (conn_output_waiting(h)) {
		h->stall_since = reactor_now(h->e->r);
		h->sent_mark = reactor_conn_bytes_sent(h->io);
		conn_schedule(h);
	}
}

/* Calls whose request message stopped arriving part way are ended: a peer must not keep
 * memory (and a call slot) by never sending a message's last bytes. */
static void conn_check_bodies(h2_conn *h, int64_t now)
{
	int64_t timeout = h->e->s->o.body_timeout;
	h->body_check_at = 0;
	list_each_safe (it, &h->calls) {
		call *c = container_of(it, call, link);
		if (!c->body_since || call_done(c))
			continue;
		if (now - c->body_since >= timeout) {
			call_release_input(c);
			char msg[120];
			snprintf(msg, sizeof(msg),
				 "no bytes of the request message for %lld s (--body-timeout)",
				 (long long)(timeout / NS_PER_SEC));
			call_fail(c, GRPC_CANCELLED, msg);
		} else if (!h->body_check_at || c->body_since + timeout < h->body_check_at) {
			h->body_check_at = c->body_since + timeout;
		}
	}
}

/* Over the node's budget, the connections of this endpoint that hold the most message
 * bytes for the longest without progress are closed, until the node is back under 7/8 of
 * its budget or no connection holds a noticeable amount. */
#define SHED_MIN_BYTES (64 * 1024)

static void conn_shed(h2_conn *h)
{
	log_info("connection from %s: closed, it held %zu bytes of messages while the node was "
		 "over its budget (--max-buffered-bytes)",
		 h->peer, h->recv_held + h->send_queued);
	list_each_safe (it, &h->calls) {
		call *c = container_of(it, call, link);
		call_release_input(c);
		call_fail(
			c, GRPC_RESOURCE_EXHAUSTED,
			"the node's budget for buffered messages is spent (--max-buffered-bytes)");
	}
	conn_terminate(h, NGHTTP2_ENHANCE_YOUR_CALM,
		       "over the node's budget for buffered messages");
	/* Response bytes it holds go only with the connection: a peer that was not reading
	 * them will not read the GOAWAY either. */
	if (h->send_queued && h->io)
		reactor_conn_abort(h->io, -ENOBUFS);
}

static void endpoint_shed(h2_endpoint *e)
{
	h2_server *s = e->s;
	size_t target = s->o.max_buffered_bytes - s->o.max_buffered_bytes / 8;
	int64_t now = reactor_now(e->r);
	while (atomic_load_explicit(&s->held, memory_order_relaxed) > target) {
		h2_conn *victim = NULL;
		double worst = 0;
		list_each (it, &e->conns) {
			h2_conn *h = container_of(it, h2_conn, link);
			size_t held = h->recv_held + h->send_queued;
			if (held < SHED_MIN_BYTES || h->closing)
				continue; /* a closing connection's memory goes with it soon */
			double score = (double)held * (double)(now - h->progress_at + NS_PER_MS);
			if (score > worst) {
				worst = score;
				victim = h;
			}
		}
		if (!victim)
			return;
		conn_shed(victim);
	}
}

static void budget_tick(timer *t)
{
	h2_endpoint *e = container_of(t, h2_endpoint, budget_timer);
	if (server_over_budget(e->s))
		endpoint_shed(e);
	/* Its own slot, just given up: re-arming needs no memory. */
	reactor_timer_arm(e->r, t, e->held ? reactor_now(e->r) + BUDGET_CHECK : INT64_MAX,
			  budget_tick);
}

static void conn_tick(timer *t)
{
	h2_conn *h = container_of(t, h2_conn, tick);
	const h2_server_opts *o = &h->e->s->o;
	int64_t now = reactor_now(h->e->r);
	if (h->closing && now - h->closing_at >= CLOSE_GRACE) {
		reactor_conn_abort(h->io, -ETIMEDOUT); /* our GOAWAY could not even be delivered */
		return;
	}
	if (h->stall_since) {
		uint64_t sent = reactor_conn_bytes_sent(h->io);
		if (!conn_output_waiting(h)) {
			h->stall_since = 0;
		} else if (sent != h->sent_mark) {
			h->sent_mark = sent;
			h->stall_since = now;
		} else if (now - h->stall_since >= o->send_stall_timeout) {
			log_info("connection from %s: dropped, it read nothing for %lld s", h->peer,
				 (long long)(o->send_stall_timeout / NS_PER_SEC));
			reactor_conn_abort(h->io, -ETIMEDOUT);
			return;
		}
	}
	if (o->handshake_timeout && !h->closing && !(h->got_settings && h->settings_acked) &&
	    now - h->accepted_at >= o->handshake_timeout) {
		if (!h->got_settings) {
			/* No HTTP/2 client at the other end: nothing to say to it. */
			log_info("connection from %s: no HTTP/2 preface in time, closed", h->peer);
			reactor_conn_abort(h->io, -ETIMEDOUT);
			return;
		}
		conn_terminate(h, NGHTTP2_SETTINGS_TIMEOUT, "SETTINGS not acknowledged in time");
	}
	if (o->body_timeout && h->body_check_at && now >= h->body_check_at)
		conn_check_bodies(h, now);
	if (o->header_timeout && h->header_block_since &&
	    now - h->header_block_since >= o->header_timeout)
		conn_terminate(h, NGHTTP2_ENHANCE_YOUR_CALM, "header block not completed in time");
	if (o->idle_timeout && conn_live_calls(h) == 0 && now - h->idle_since >= o->idle_timeout)
		conn_terminate(h, NGHTTP2_NO_ERROR, "idle");
	if (o->keepalive_time && h->ping_sent_at && now - h->ping_sent_at >= o->keepalive_timeout) {
		log_info("connection from %s: keepalive PING unanswered, closed", h->peer);
		reactor_conn_abort(h->io, -ETIMEDOUT);
		return;
	}
	if (o->keepalive_time && !h->ping_sent_at && !h->closing &&
	    now - h->last_recv >= o->keepalive_time) {
		if (nghttp2_submit_ping(h->ng, NGHTTP2_FLAG_NONE, NULL) == 0) {
			h->ping_sent_at = now;
			conn_want_send(h);
		}
	}
	conn_schedule(h);
}
