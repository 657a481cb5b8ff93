"""Hostile and broken peers (issue 3): each attack is mounted from a raw HTTP/2 client
(h2raw.py) against a real server while a well-behaved grpcio client keeps calling it on its
own connection. The attack must be contained (GOAWAY, RST_STREAM, a gRPC error or a close
for the attacker), every good call must succeed, and the server's memory must stay bounded.
"""

import gzip
import socket
import struct
import threading
import time

import grpc
import pytest
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
)

from h2raw import CANCEL, H2Client, frame_msg, raw_call
from stdgrpc.health.v1 import health_pb2, health_pb2_grpc

CHECK = "/grpc.health.v1.Health/Check"
SLEEP = "/collector.test.Pool/Sleep"
STATS = "/collector.test.Pool/Stats"
NO_ERROR, PROTOCOL_ERROR, SETTINGS_TIMEOUT, ENHANCE_YOUR_CALM = 0x0, 0x1, 0x4, 0xB
INTERNAL, RESOURCE_EXHAUSTED = 13, 8
MiB = 1 << 20


class GoodClient:
    """Calls `fn` in a loop on its own connection for the length of a `with` block. The
    connection is up (one call done) before the block's body, i.e. before the attack."""

    def __init__(self, fn):
        self.fn = fn
        self.ok = 0
        self.failures = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                self.fn()
                self.ok += 1
            except grpc.RpcError as e:
                self.failures.append(f"{e.code()}: {e.details()}")
            time.sleep(0.005)

    def __enter__(self):
        self.fn()
        # Counted, so that check's three calls are this one and the two of __exit__ even
        # when the attack is over before the thread's first call (seen under ASan and load).
        self.ok = 1
        self._thread.start()
        return self

    def __exit__(self, *exc):
        # Two more calls after the attack: the server still serves, not only during it.
        target = self.ok + 2
        deadline = time.monotonic() + 15
        while self.ok < target and time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(0.01)
        self._stop.set()
        self._thread.join(15)

    def check(self, min_calls=3):
        assert not self.failures, f"good client failed during the attack: {self.failures[:5]}"
        assert self.ok >= min_calls, f"good client made only {self.ok} calls"


def health_client(srv):
    stub = health_pb2_grpc.HealthStub(srv.channel())
    return lambda: stub.Check(health_pb2.HealthCheckRequest(), timeout=10)


def check_frame():
    return frame_msg(health_pb2.HealthCheckRequest().SerializeToString())


def assert_rss_bounded(srv, before_kib, limit_mib):
    grown = (srv.rss_kib() - before_kib) / 1024
    assert grown < limit_mib, f"server RSS grew by {grown:.1f} MiB (limit {limit_mib} MiB)"


def goaway_within(c, timeout):
    c.pump(lambda: c.goaways or c.closed, timeout)
    assert c.goaways, f"no GOAWAY within {timeout} s (closed={c.closed})"
    return c.goaways[-1]


def settle(c):
    """Waits for the server's SETTINGS (the connection is up)."""
    assert c.pump(lambda: c.peer_settings, 5), "no SETTINGS from the server"


def headers_frame(c, sid, path, end_stream=False, **kw):
    hf = HeadersFrame(sid, data=c.header_block(path, **kw))
    hf.flags.add("END_HEADERS")
    if end_stream:
        hf.flags.add("END_STREAM")
    return hf


def data_frame(sid, data, end_stream=False):
    df = DataFrame(sid, data=data)
    if end_stream:
        df.flags.add("END_STREAM")
    return df


def raw_frame(ftype, flags, sid, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


# ---------------------------------------------------------------------------------------
# Rapid reset (CVE-2023-44487) and the cap on handlers per connection


def pool_stats(srv):
    text = srv.channel().unary_unary(STATS)(b"", timeout=10).decode()
    return dict((k, int(v)) for k, v in (kv.split("=") for kv in text.split()))


def test_rapid_reset_cancels_queued_work_and_is_cut_off(servers):
    srv = servers.interop("--pool-threads", "2")
    sleep = srv.channel().unary_unary(SLEEP)
    rss0 = srv.rss_kib()
    with GoodClient(lambda: sleep(b"0", timeout=20)) as good:
        c = H2Client(srv.address)
        settle(c)
        sent = 0
        while sent < 20000 and not c.goaways and not c.closed:
            frames = []
            for _ in range(100):
                s = c.open_stream()
                frames += [headers_frame(c, s.id, SLEEP), data_frame(s.id, frame_msg(b"300"), True),
                           RstStreamFrame(s.id, error_code=CANCEL)]
            if not c.send_frames(frames):
                break
            sent += 100
            c.pump(lambda: c.goaways or c.closed, 0.001)
        c.pump(lambda: c.goaways or c.closed, 10)
    good.check()
    assert c.goaways or c.closed, f"{sent} reset streams and the attacker is still connected"
    assert sent <= 5000, f"cut off only after {sent} reset streams"
    stats = pool_stats(srv)
    # Every good call ran its job; of the attacker's, only those a thread picked up before
    # the reset arrived: the rest left the queue without running.
    attacker_started = stats["started"] - good.ok - 1
    assert attacker_started <= 40, stats
    assert stats["skipped"] >= 200, stats
    assert stats["queued"] == 0, stats
    assert_rss_bounded(srv, rss0, 64)


def test_reset_calls_still_count_until_their_work_ends(servers):
    srv = servers.interop("--pool-threads", "8", "--max-calls-per-connection", "4")
    sleep = srv.channel().unary_unary(SLEEP)
    with GoodClient(lambda: sleep(b"0", timeout=20)) as good:
        c = H2Client(srv.address)
        settle(c)
        busy = [c.request(SLEEP, frame_msg(b"2000")) for _ in range(4)]
        time.sleep(0.3)  # their jobs are running on the pool
        over = raw_call(c, SLEEP, b"0")
        assert over.status() == RESOURCE_EXHAUSTED, over.trailers
        assert "too many calls" in over.status_message()
        # Resetting the streams does not free their places while the work runs.
        for s in busy:
            c.rst(s.id)
        again = raw_call(c, SLEEP, b"0")
        assert again.status() == RESOURCE_EXHAUSTED, again.trailers
        # Once the jobs end, the connection may start calls again.
        time.sleep(2.2)
        later = raw_call(c, SLEEP, b"0")
        assert later.status() == 0, later.trailers
    good.check()


# ---------------------------------------------------------------------------------------
# Header blocks: CONTINUATION flood (CVE-2024-28182) and the header list size


def test_continuation_flood_closes_the_connection(node):
    with GoodClient(health_client(node)) as good:
        c = H2Client(node.address)
        settle(c)
        s = c.open_stream()
        block = c.header_block(CHECK)
        frames = [HeadersFrame(s.id, data=block[:1])]
        frames += [ContinuationFrame(s.id, data=block[i : i + 1]) for i in range(1, len(block))]
        frames += [ContinuationFrame(s.id, data=b"") for _ in range(200)]
        c.send_frames(frames)
        c.pump(lambda: c.closed, 5)
        assert c.closed or c.goaways, "the connection survived a CONTINUATION flood"
        assert not s.blocks, "a request split over 200+ CONTINUATIONs was answered"
    good.check()


def test_header_list_over_limit_refused_connection_lives(node):
    with GoodClient(health_client(node)) as good:
        c = H2Client(node.address)
        settle(c)
        s = c.open_stream()
        block = c.header_block(CHECK, headers=[("x-big-a", "~" * 9000), ("x-big-b", "~" * 9000)])
        assert len(block) > 16384
        hf = HeadersFrame(s.id, data=block[:16000])
        cf = ContinuationFrame(s.id, data=block[16000:])
        cf.flags.add("END_HEADERS")
        c.send_frames([hf, cf, data_frame(s.id, check_frame(), True)])
        c.wait(s)
        assert s.status() == RESOURCE_EXHAUSTED, s.trailers
        ok = raw_call(c, CHECK, health_pb2.HealthCheckRequest().SerializeToString())
        assert ok.status() == 0, ok.trailers
        assert not c.goaways
    good.check()


# ---------------------------------------------------------------------------------------
# Floods of frames that carry no request


def flood_frames(c, kind, sid, i):
    if kind == "empty-data":
        return data_frame(sid, b"")
    if kind == "priority":
        return PriorityFrame(sid, depends_on=0, stream_weight=15)
    if kind == "unknown":
        return raw_frame(0xFA, 0, 0, b"junk")
    if kind == "settings":
        return SettingsFrame(0)
    if kind == "ping":
        return PingFrame(0, opaque_data=struct.pack(">Q", i))
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["empty-data", "priority", "unknown", "settings", "ping"])
def test_flood_gets_enhance_your_calm(servers, kind):
    # The ping policy is off here so that the flood limit itself is what stops PINGs.
    srv = servers.node("--ping-min-interval", "0")
    rss0 = srv.rss_kib()
    with GoodClient(health_client(srv)) as good:
        c = H2Client(srv.address)
        settle(c)
        s = c.request(CHECK, None, end_stream=False)  # open, for the DATA and PRIORITY kinds
        sent = 0
        while sent < 20000 and not c.goaways and not c.closed:
            if not c.send_frames([flood_frames(c, kind, s.id, sent + i) for i in range(200)]):
                break
            sent += 200
            c.pump(lambda: c.goaways, 0.001)
        last_id, code, debug = goaway_within(c, 5)
        assert code == ENHANCE_YOUR_CALM, (code, debug)
        assert b"carry no request" in debug, debug
        assert sent <= 3000, f"GOAWAY only after {sent} frames"
        c.pump(lambda: c.closed, 5)
        assert c.closed, "the attacker's connection stayed open after GOAWAY"
    good.check()
    assert_rss_bounded(srv, rss0, 32)


def test_too_many_pings_goaway(node):
    c = H2Client(node.address)
    settle(c)
    for i in range(4):
        c.send_frames([PingFrame(0, opaque_data=struct.pack(">Q", i))])
        c.pump(lambda: c.goaways, 0.2)
    last_id, code, debug = goaway_within(c, 5)
    assert (code, debug) == (ENHANCE_YOUR_CALM, b"too_many_pings")


def test_pings_after_our_data_are_welcome(node):
    """gRPC clients probe bandwidth with a PING after data arrives: no strike for those."""
    c = H2Client(node.address)
    settle(c)
    for i in range(10):
        s = raw_call(c, CHECK, health_pb2.HealthCheckRequest().SerializeToString())
        assert s.status() == 0
        c.send_frames([PingFrame(0, opaque_data=struct.pack(">Q", i))])
    c.pump(lambda: c.goaways, 0.5)
    assert not c.goaways, c.goaways


# ---------------------------------------------------------------------------------------
# Connection caps


@pytest.mark.parametrize("flag,why", [("--max-connections-per-peer", b"from this address"),
                                      ("--max-connections", b"too many connections")])
def test_connection_caps(servers, flag, why):
    srv = servers.node(flag, "3")
    held = [H2Client(srv.address) for _ in range(3)]
    for c in held:
        assert raw_call(c, CHECK, health_pb2.HealthCheckRequest().SerializeToString()).status() == 0
    extra = H2Client(srv.address)
    last_id, code, debug = goaway_within(extra, 5)
    assert code == ENHANCE_YOUR_CALM and why in debug, (code, debug)
    extra.pump(lambda: extra.closed, 5)
    assert extra.closed
    held[0].sock.close()
    time.sleep(0.2)
    fresh = H2Client(srv.address)
    assert raw_call(fresh, CHECK, health_pb2.HealthCheckRequest().SerializeToString()).status() == 0


def test_max_concurrent_streams_advertised(node):
    c = H2Client(node.address)
    settle(c)
    assert c.peer_settings.get(SettingsFrame.MAX_CONCURRENT_STREAMS) == 100
    assert c.peer_settings.get(SettingsFrame.MAX_HEADER_LIST_SIZE) == 16384


# ---------------------------------------------------------------------------------------
# Time limits


def test_silent_tcp_peer_closed_after_handshake_timeout(servers):
    srv = servers.node("--handshake-timeout", "1")
    with GoodClient(health_client(srv)) as good:
        host, port = srv.address.rsplit(":", 1)
        t0 = time.monotonic()
        sock = socket.create_connection((host, int(port)), timeout=6)
        try:
            while sock.recv(4096):  # our SETTINGS, then the close
                pass
        except ConnectionResetError:
            pass
        waited = time.monotonic() - t0
        sock.close()
        assert 0.8 < waited < 4, f"closed after {waited:.1f} s"
    good.check()


def test_settings_never_acknowledged(servers):
    srv = servers.node("--handshake-timeout", "1")
    c = H2Client(srv.address, ack_settings=False)
    last_id, code, debug = goaway_within(c, 5)
    assert code == SETTINGS_TIMEOUT, (code, debug)


def test_header_block_never_completed(servers):
    srv = servers.node("--header-timeout", "1")
    with GoodClient(health_client(srv)) as good:
        c = H2Client(srv.address)
        settle(c)
        s = c.open_stream()
        c.send_frames([HeadersFrame(s.id, data=c.header_block(CHECK))])  # no END_HEADERS
        t0 = time.monotonic()
        last_id, code, debug = goaway_within(c, 5)
        assert code == ENHANCE_YOUR_CALM and b"header block" in debug, (code, debug)
        assert time.monotonic() - t0 < 4
    good.check()


def test_idle_connection_goaway(servers):
    srv = servers.node("--idle-timeout", "1")
    c = H2Client(srv.address)
    assert raw_call(c, CHECK, health_pb2.HealthCheckRequest().SerializeToString()).status() == 0
    last_id, code, debug = goaway_within(c, 5)
    assert (code, debug) == (NO_ERROR, b"idle")
    c.pump(lambda: c.closed, 5)
    assert c.closed


def test_idle_timeout_spares_connections_with_calls(servers):
    srv = servers.node("--idle-timeout", "1")
    c = H2Client(srv.address)
    settle(c)
    watch = c.request("/grpc.health.v1.Health/Watch", check_frame())  # stays open
    c.pump(lambda: c.goaways, 2.5)
    assert not c.goaways and not watch.done


def test_keepalive_ping_unanswered_closes(servers):
    srv = servers.node("--keepalive-time", "1", "--keepalive-timeout", "1")
    quiet = H2Client(srv.address, ack_pings=False)
    polite = H2Client(srv.address)
    t0 = time.monotonic()
    while not quiet.closed and time.monotonic() - t0 < 6:
        quiet.pump(lambda: quiet.closed, 0.05)
        polite.pump(lambda: polite.closed, 0.05)
    assert quiet.closed and quiet.pings_received >= 1, (quiet.closed, quiet.pings_received)
    assert time.monotonic() - t0 < 5
    for _ in range(20):
        polite.pump(lambda: polite.closed, 0.05)
    assert not polite.closed and polite.pings_received >= 2, polite.pings_received


def test_peer_that_never_reads_is_dropped(servers):
    srv = servers.node("--send-stall-timeout", "1")
    with GoodClient(health_client(srv)) as good:
        # A zero window: not one byte of any response can be sent to this peer.
        c = H2Client(srv.address, initial_window=0, auto_window=False)
        settle(c)
        for _ in range(20):
            c.request(CHECK, check_frame())
        t0 = time.monotonic()
        c.pump(lambda: c.closed, 6)
        assert c.closed, "a peer that reads nothing was kept"
        assert time.monotonic() - t0 < 5
    good.check()


# ---------------------------------------------------------------------------------------
# Memory bounds


def test_connection_receive_buffer_bounded(servers):
    srv = servers.node("--max-message-bytes", str(MiB), "--conn-buffer-bytes", str(2 * MiB))
    rss0 = srv.rss_kib()
    with GoodClient(health_client(srv)) as good:
        c = H2Client(srv.address)
        settle(c)
        streams = []
        for _ in range(6):
            s = c.request(CHECK, None, end_stream=False)
            # Declares a message of 1,000,000 bytes and sends 900,000 of them.
            c.send_data(s.id, struct.pack(">BI", 0, 1_000_000) + b"\0" * 900_000)
            streams.append(s)
        c.pump(lambda: any(s.done for s in streams), 5)
        refused = [s for s in streams if s.done]
        assert refused, "six partial 1 MB messages fit in a 2 MiB connection buffer"
        for s in refused:
            assert s.status() == RESOURCE_EXHAUSTED and "receive buffer" in s.status_message()
        ok = raw_call(c, CHECK, health_pb2.HealthCheckRequest().SerializeToString())
        assert ok.status() == 0
    good.check()
    assert_rss_bounded(srv, rss0, 48)


def test_gzip_bomb_resource_exhausted(node):
    rss0 = node.rss_kib()
    bomb = gzip.compress(b"\0" * (256 * MiB), 9)
    with GoodClient(health_client(node)) as good:
        c = H2Client(node.address)
        settle(c)
        s = raw_call(c, CHECK, bomb, flag=1, headers=[("grpc-encoding", "gzip")])
        assert s.status() == RESOURCE_EXHAUSTED, s.trailers
    good.check()
    assert_rss_bounded(node, rss0, 32)


# ---------------------------------------------------------------------------------------
# Malformed requests: the status PROTOCOL-HTTP2 prescribes, and the connection goes on


MALFORMED = {
    "missing-te": dict(te=False),
    "bad-timeout": dict(headers=[("grpc-timeout", "12parsecs")]),
    "bad-base64": dict(headers=[("x-thing-bin", "not base64!")]),
    "truncated": dict(body=struct.pack(">BI", 0, 10) + b"abc"),
    "compressed-no-encoding": dict(body=struct.pack(">BI", 1, 0)),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_request_internal(shared_node, case):
    spec = MALFORMED[case]
    c = H2Client(shared_node.address)
    settle(c)
    s = c.open_stream()
    block = c.header_block(CHECK, headers=spec.get("headers", ()), te=spec.get("te", True))
    hf = HeadersFrame(s.id, data=block)
    hf.flags.add("END_HEADERS")
    c.send_frames([hf, data_frame(s.id, spec.get("body", check_frame()), True)])
    c.wait(s)
    assert s.status() == INTERNAL, (case, s.trailers)
    again = raw_call(c, CHECK, health_pb2.HealthCheckRequest().SerializeToString())
    assert again.status() == 0 and not c.goaways


@pytest.mark.parametrize("bad", [[(":foo", "bar")], [("X-Upper", "1")], [("connection", "close")]])
def test_invalid_http_headers_reset_stream(shared_node, bad):
    c = H2Client(shared_node.address)
    settle(c)
    s = c.open_stream()
    # hpack refuses nothing, so the invalid field goes on the wire as given.
    c.send_frames([headers_frame(c, s.id, CHECK, headers=bad, end_stream=True)])
    c.wait(s)
    assert s.reset == PROTOCOL_ERROR, (bad, s.reset, s.trailers)
    again = raw_call(c, CHECK, health_pb2.HealthCheckRequest().SerializeToString())
    assert again.status() == 0 and not c.goaways
