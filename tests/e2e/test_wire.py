"""gRPC over HTTP/2, end to end: the wire behaviours of the server core.

Two clients: grpcio (a real gRPC client) and the raw HTTP/2 client of h2raw.py, which
sees every frame and flag. The test service is the interop
server (grpc.testing.TestService, same core as the node); node-only behaviours (health,
Collector methods, flags, shutdown) run against a real `collector`.
"""

import base64
import gzip
import os
import queue
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import grpc
import pytest

from conftest import INTEROP_SERVER_BIN, binary_has_asan
from h2raw import CANCEL, H2Client, frame_msg, parse_msgs, raw_call

from collector import worker_pb2, worker_pb2_grpc
from stdgrpc.health.v1 import health_pb2, health_pb2_grpc
from stdgrpc.testing import empty_pb2, messages_pb2, test_pb2_grpc

TS = "/grpc.testing.TestService/"
CHECK = "/grpc.health.v1.Health/Check"
WATCH = "/grpc.health.v1.Health/Watch"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
MiB = 1 << 20

SPECIAL_MESSAGE = "\t\ntest with whitespace\r\nand Unicode BMP \u263a and non-BMP \U0001f608\t\n"
ALL_BYTES = bytes(range(256))


# ---------------------------------------------------------------------------------------
# The raw HTTP/2 client lives in h2raw.py


def server(request, name):
    return request.getfixturevalue(name)


def wait_exit(n, c, deadline):
    """Waits for process n to exit, answering connection c (PINGs, GOAWAYs) meanwhile."""
    while n.alive() and time.monotonic() < deadline:
        if c.closed:
            try:
                n.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            return
        c.pump(lambda: not n.alive(), 0.1)


# ---------------------------------------------------------------------------------------
# grpcio helpers

M = messages_pb2


def payload(n):
    return M.Payload(body=b"\0" * n)


@pytest.fixture(scope="module")
def tstub(shared_interop):
    return test_pb2_grpc.TestServiceStub(shared_interop.channel())


@pytest.fixture(scope="module")
def hstub(shared_node):
    return health_pb2_grpc.HealthStub(shared_node.channel())


def rpc_error(fn, *args, **kw):
    with pytest.raises(grpc.RpcError) as ei:
        r = fn(*args, **kw)
        if hasattr(r, "__iter__") and not isinstance(r, (bytes, str)):
            list(r)
    return ei.value


# ---------------------------------------------------------------------------------------
# The four call kinds (grpcio against the interop server)


def test_empty_unary(tstub):
    assert tstub.EmptyCall(empty_pb2.Empty(), timeout=10) == empty_pb2.Empty()


def test_large_unary(tstub):
    resp = tstub.UnaryCall(M.SimpleRequest(response_size=314159, payload=payload(271828)), timeout=10)
    assert resp.payload.body == b"\0" * 314159


def test_client_streaming(tstub):
    sizes = [27182, 8, 1828, 45904]
    resp = tstub.StreamingInputCall(
        iter([M.StreamingInputCallRequest(payload=payload(n)) for n in sizes]), timeout=10
    )
    assert resp.aggregated_payload_size == 74922


def test_server_streaming(tstub):
    sizes = [31415, 9, 2653, 58979]
    req = M.StreamingOutputCallRequest(response_parameters=[M.ResponseParameters(size=n) for n in sizes])
    call = tstub.StreamingOutputCall(req, timeout=10)
    assert [len(r.payload.body) for r in call] == sizes
    assert call.code() == grpc.StatusCode.OK


def test_bidi_ping_pong(tstub):
    pairs = [(27182, 31415), (8, 9), (1828, 2653), (45904, 58979)]
    q = queue.Queue()

    def requests():
        while (item := q.get()) is not None:
            yield item

    call = tstub.FullDuplexCall(requests(), timeout=10)
    for req_size, resp_size in pairs:
        q.put(
            M.StreamingOutputCallRequest(
                response_parameters=[M.ResponseParameters(size=resp_size)], payload=payload(req_size)
            )
        )
        assert len(next(call).payload.body) == resp_size
    q.put(None)
    assert list(call) == []
    assert call.code() == grpc.StatusCode.OK


def test_bidi_empty_stream(tstub):
    call = tstub.FullDuplexCall(iter([]), timeout=10)
    assert list(call) == []
    assert call.code() == grpc.StatusCode.OK


# ---------------------------------------------------------------------------------------
# Framing: the 5-byte prefix across DATA frames, empty messages, many messages per frame


@pytest.mark.parametrize("cuts", [(3, 1500), (5,), (1, 2, 3, 4, 5, 6)], ids=["in-prefix", "after-prefix", "bytewise"])
def test_message_split_across_data_frames(shared_interop, cuts):
    req = M.SimpleRequest(response_size=7, payload=payload(3000))
    raw = frame_msg(req.SerializeToString())
    pieces = [raw[a:b] for a, b in zip((0,) + cuts, cuts + (len(raw),))]
    with H2Client(shared_interop.address) as c:
        s = c.request(TS + "UnaryCall", end_stream=False)
        for p in pieces:
            assert c.send_data(s.id, p)
        assert c.send_data(s.id, b"", end_stream=True)  # half-close in an empty DATA frame
        c.wait(s)
    assert s.status() == 0, s.trailers
    [(flag, body)] = s.messages()
    assert flag == 0
    assert M.SimpleResponse.FromString(body).payload.body == b"\0" * 7


def test_zero_length_message_interop(shared_interop):
    with H2Client(shared_interop.address) as c:
        s = raw_call(c, TS + "EmptyCall", b"")
    assert s.status() == 0, s.trailers
    assert s.messages() == [(0, b"")]


def test_zero_length_message_node(shared_node):
    with H2Client(shared_node.address) as c:
        s = raw_call(c, CHECK, b"")
    assert s.status() == 0, s.trailers
    [(flag, body)] = s.messages()
    assert health_pb2.HealthCheckResponse.FromString(body).status == SERVING


def test_many_messages_in_one_data_frame(shared_interop):
    reqs = [
        M.StreamingInputCallRequest(payload=payload(10)),
        M.StreamingInputCallRequest(),  # serializes to 0 bytes
        M.StreamingInputCallRequest(payload=payload(100)),
        M.StreamingInputCallRequest(payload=payload(1000)),
    ]
    body = b"".join(frame_msg(r.SerializeToString()) for r in reqs)
    assert len(body) < 16384  # request() sends a body this small as a single DATA frame
    with H2Client(shared_interop.address) as c:
        s = c.request(TS + "StreamingInputCall", body)
        c.wait(s)
    assert s.status() == 0, s.trailers
    [(_, out)] = s.messages()
    assert M.StreamingInputCallResponse.FromString(out).aggregated_payload_size == 1110


# ---------------------------------------------------------------------------------------
# Status and message in trailers; Trailers-Only


@pytest.mark.parametrize("message", ["test status message", SPECIAL_MESSAGE], ids=["plain", "special"])
def test_status_code_and_message(tstub, message):
    status = M.EchoStatus(code=2, message=message)
    e = rpc_error(tstub.UnaryCall, M.SimpleRequest(response_status=status), timeout=10)
    assert e.code() == grpc.StatusCode.UNKNOWN
    assert e.details() == message
    e = rpc_error(tstub.FullDuplexCall, iter([M.StreamingOutputCallRequest(response_status=status)]), timeout=10)
    assert e.code() == grpc.StatusCode.UNKNOWN
    assert e.details() == message


def test_status_message_percent_encoded_on_the_wire(shared_interop):
    req = M.SimpleRequest(response_status=M.EchoStatus(code=3, message=SPECIAL_MESSAGE + "100% done"))
    with H2Client(shared_interop.address) as c:
        s = raw_call(c, TS + "UnaryCall", req.SerializeToString())
    assert s.status() == 3
    wire = s.trailers["grpc-message"]
    assert all(0x20 <= ord(ch) <= 0x7E for ch in wire), f"grpc-message not percent-encoded: {wire!r}"
    assert "%25" in wire  # a literal '%' must be escaped
    assert s.status_message() == SPECIAL_MESSAGE + "100% done"


@pytest.mark.parametrize(
    "fixture,path",
    [
        ("shared_interop", TS + "NoSuchMethod"),
        ("shared_interop", "/grpc.testing.NoSuchService/EmptyCall"),
        ("shared_node", "/collector.CollectionService/NoSuchMethod"),
        ("shared_node", "/no.such.Service/Method"),
    ],
)
def test_trailers_only_for_immediate_error(request, fixture, path):
    srv = server(request, fixture)
    with H2Client(srv.address) as c:
        s = raw_call(c, path, b"")
    assert s.ended
    assert s.reset in (None, 0), f"stream reset with {s.reset}"
    assert len(s.blocks) == 1 and s.blocks[0][1], f"want one header block with END_STREAM: {s.blocks}"
    assert s.headers_frames == 1 and s.continuation_frames == 0
    assert s.data_frames == 0
    h = s.headers
    assert h[":status"] == "200"
    assert h["content-type"].startswith("application/grpc")
    assert h["grpc-status"] == "12"


@pytest.mark.parametrize(
    "fixture,path",
    [
        ("shared_interop", TS + "NoSuchMethod"),
        ("shared_interop", "/grpc.testing.NoSuchService/EmptyCall"),
        ("shared_interop", TS + "UnimplementedCall"),
        ("shared_interop", "/grpc.testing.UnimplementedService/UnimplementedCall"),
        ("shared_node", "/collector.CollectionService/NoSuchMethod"),
        ("shared_node", "/no.such.Service/Method"),
        ("shared_node", "/grpc.health.v1.Health/NoSuchMethod"),
    ],
)
def test_unknown_service_or_method_unimplemented(request, fixture, path):
    srv = server(request, fixture)
    ch = srv.channel()
    e = rpc_error(ch.unary_unary(path), b"", timeout=10)
    assert e.code() == grpc.StatusCode.UNIMPLEMENTED
    # the connection is still good
    if fixture == "shared_node":
        assert health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10).status == SERVING
    else:
        assert test_pb2_grpc.TestServiceStub(ch).EmptyCall(empty_pb2.Empty(), timeout=10) == empty_pb2.Empty()


@pytest.mark.parametrize("fixture,path", [("shared_interop", TS + "EmptyCall"), ("shared_node", CHECK)])
def test_non_grpc_content_type_is_415(request, fixture, path):
    srv = server(request, fixture)
    with H2Client(srv.address) as c:
        s = raw_call(c, path, b"", content_type="text/plain")
        assert s.headers.get(":status") == "415", s.blocks
        ok = raw_call(c, path, b"")  # same connection, proper content-type
        assert ok.status() == 0, ok.trailers


# ---------------------------------------------------------------------------------------
# Deadlines


def test_deadline_exceeded_grpcio(tstub):
    req = M.StreamingOutputCallRequest(response_parameters=[M.ResponseParameters(size=1, interval_us=2_000_000)])
    t0 = time.monotonic()
    e = rpc_error(tstub.StreamingOutputCall, req, timeout=0.1)
    elapsed = time.monotonic() - t0
    assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert elapsed < 1.0, f"call took {elapsed:.2f} s"


@pytest.mark.parametrize("timeout", ["100m", "100000u", "99999999n"])
def test_grpc_timeout_enforced_by_server(shared_interop, timeout):
    """No client-side deadline here: only the server's grpc-timeout handling ends the call."""
    req = M.StreamingOutputCallRequest(response_parameters=[M.ResponseParameters(size=1, interval_us=2_000_000)])
    with H2Client(shared_interop.address) as c:
        t0 = time.monotonic()
        s = c.request(TS + "StreamingOutputCall", frame_msg(req.SerializeToString()), headers=[("grpc-timeout", timeout)])
        c.wait(s, 5)
        elapsed = time.monotonic() - t0
        assert 0.08 <= elapsed < 1.0, f"call ended after {elapsed:.3f} s (deadline 0.1 s, reply due at 2 s)"
        assert s.messages() == []
        assert s.status() == 4 or (s.status() is None and s.reset is not None), (s.blocks, s.reset)
        ok = raw_call(c, TS + "EmptyCall", b"")
        assert ok.status() == 0


# ---------------------------------------------------------------------------------------
# Metadata


def _md(md, key):
    return [v for k, v in md if k == key]


def test_custom_metadata_both_ways(tstub):
    md = (("x-grpc-test-echo-initial", "test_initial_metadata_value"), ("x-grpc-test-echo-trailing-bin", ALL_BYTES))
    resp, call = tstub.UnaryCall.with_call(
        M.SimpleRequest(response_size=314159, payload=payload(271828)), metadata=md, timeout=10
    )
    assert len(resp.payload.body) == 314159
    assert _md(call.initial_metadata(), "x-grpc-test-echo-initial") == ["test_initial_metadata_value"]
    assert _md(call.trailing_metadata(), "x-grpc-test-echo-trailing-bin") == [ALL_BYTES]

    call = tstub.FullDuplexCall(
        iter([M.StreamingOutputCallRequest(response_parameters=[M.ResponseParameters(size=314159)], payload=payload(271828))]),
        metadata=md,
        timeout=10,
    )
    assert [len(r.payload.body) for r in call] == [314159]
    assert _md(call.initial_metadata(), "x-grpc-test-echo-initial") == ["test_initial_metadata_value"]
    assert _md(call.trailing_metadata(), "x-grpc-test-echo-trailing-bin") == [ALL_BYTES]


@pytest.mark.parametrize("padded", [True, False])
def test_binary_metadata_base64_on_the_wire(shared_interop, padded):
    b64 = base64.b64encode(ALL_BYTES).decode()
    if not padded:
        b64 = b64.rstrip("=")  # senders may omit padding; receivers must accept both
    md = [("x-grpc-test-echo-initial", "v a l u e"), ("x-grpc-test-echo-trailing-bin", b64)]
    with H2Client(shared_interop.address) as c:
        s = raw_call(c, TS + "EmptyCall", b"", headers=md)
    assert s.status() == 0, s.trailers
    assert s.headers.get("x-grpc-test-echo-initial") == "v a l u e"
    wire = s.trailers["x-grpc-test-echo-trailing-bin"]
    assert re.fullmatch(r"[A-Za-z0-9+/]*={0,2}", wire), wire
    assert base64.b64decode(wire + "=" * (-len(wire) % 4)) == ALL_BYTES


# ---------------------------------------------------------------------------------------
# Compression


def test_client_compressed_unary_grpcio(tstub):
    req = M.SimpleRequest(response_size=314159, payload=payload(271828), expect_compressed=M.BoolValue(value=True))
    resp = tstub.UnaryCall(req, compression=grpc.Compression.Gzip, timeout=10)
    assert len(resp.payload.body) == 314159
    # the interop probe: expect_compressed but sent plain -> INVALID_ARGUMENT
    e = rpc_error(tstub.UnaryCall, req, compression=grpc.Compression.NoCompression, timeout=10)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    plain = M.SimpleRequest(response_size=314159, payload=payload(271828), expect_compressed=M.BoolValue(value=False))
    assert len(tstub.UnaryCall(plain, timeout=10).payload.body) == 314159


def test_client_compressed_on_the_wire(shared_interop):
    req = M.SimpleRequest(response_size=10, payload=payload(10000), expect_compressed=M.BoolValue(value=True))
    with H2Client(shared_interop.address) as c:
        s = raw_call(c, TS + "UnaryCall", gzip.compress(req.SerializeToString()), flag=1, headers=[("grpc-encoding", "gzip")])
        assert s.status() == 0, s.trailers
        [(flag, body)] = s.messages()
        assert flag == 0
        assert M.SimpleResponse.FromString(body).payload.body == b"\0" * 10
        req.expect_compressed.value = False
        s = raw_call(c, TS + "UnaryCall", req.SerializeToString(), headers=[("grpc-encoding", "identity")])
        assert s.status() == 0, s.trailers


def test_server_compressed_on_the_wire(shared_interop):
    accept = [("grpc-accept-encoding", "identity,deflate,gzip")]
    with H2Client(shared_interop.address) as c:
        req = M.SimpleRequest(response_size=314159, response_compressed=M.BoolValue(value=True))
        s = raw_call(c, TS + "UnaryCall", req.SerializeToString(), headers=accept)
        assert s.status() == 0, s.trailers
        assert s.headers.get("grpc-encoding") == "gzip", s.headers
        [(flag, body)] = s.messages()
        assert flag == 1
        assert len(body) < 314159
        assert M.SimpleResponse.FromString(gzip.decompress(body)).payload.body == b"\0" * 314159

        req = M.SimpleRequest(response_size=314159, response_compressed=M.BoolValue(value=False))
        s = raw_call(c, TS + "UnaryCall", req.SerializeToString(), headers=accept)
        assert s.status() == 0, s.trailers
        [(flag, body)] = s.messages()
        assert flag == 0
        assert M.SimpleResponse.FromString(body).payload.body == b"\0" * 314159


def test_unknown_message_encoding_unimplemented(shared_interop):
    with H2Client(shared_interop.address) as c:
        s = raw_call(c, TS + "EmptyCall", b"\x00\x01not snappy", flag=1, headers=[("grpc-encoding", "snappy")])
        assert s.status() == 12, s.blocks
        accepted = ",".join(v for k, v in s.all_headers() if k == "grpc-accept-encoding")
        assert "gzip" in accepted and "snappy" not in accepted, accepted
        assert raw_call(c, TS + "EmptyCall", b"").status() == 0


def test_compressed_flag_without_encoding_internal(shared_interop):
    with H2Client(shared_interop.address) as c:
        s = raw_call(c, TS + "EmptyCall", gzip.compress(b""), flag=1)
        assert s.status() == 13, s.blocks
        assert raw_call(c, TS + "EmptyCall", b"").status() == 0


def test_gzip_request_to_node(hstub):
    resp = hstub.Check(health_pb2.HealthCheckRequest(), compression=grpc.Compression.Gzip, timeout=10)
    assert resp.status == SERVING


# ---------------------------------------------------------------------------------------
# Message size limit


def test_message_over_limit_resource_exhausted(servers):
    n = servers.node("--max-message-bytes", "65536")
    stub = health_pb2_grpc.HealthStub(n.channel())
    e = rpc_error(stub.Check, health_pb2.HealthCheckRequest(service="x" * 100_000), timeout=10)
    assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert stub.Check(health_pb2.HealthCheckRequest(), timeout=10).status == SERVING
    e = rpc_error(stub.Check, health_pb2.HealthCheckRequest(service="y" * 60_000), timeout=10)
    assert e.code() == grpc.StatusCode.NOT_FOUND  # under the limit: judged on its content

    with H2Client(n.address) as c:
        big = health_pb2.HealthCheckRequest(service="x" * 100_000).SerializeToString()
        s = raw_call(c, CHECK, big)
        assert s.status() == 8, (s.blocks, s.reset)
        ok = raw_call(c, CHECK, b"")  # the same connection still serves
        assert ok.status() == 0
        assert not c.goaways and not c.closed


def test_config_file_sets_flags_and_flags_win(servers, tmp_path):
    cfg = tmp_path / "collector.conf"
    cfg.write_text("# limits\nmax-message-bytes = 65536\n")
    big = health_pb2.HealthCheckRequest(service="x" * 100_000)
    n = servers.node("--config", cfg)
    e = rpc_error(health_pb2_grpc.HealthStub(n.channel()).Check, big, timeout=10)
    assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    n = servers.node("--config", cfg, "--max-message-bytes", "1048576")
    e = rpc_error(health_pb2_grpc.HealthStub(n.channel()).Check, big, timeout=10)
    assert e.code() == grpc.StatusCode.NOT_FOUND


# ---------------------------------------------------------------------------------------
# Cancellation and flow control


def test_rst_stream_cancels_call_interop(shared_interop):
    req = M.StreamingOutputCallRequest(
        response_parameters=[M.ResponseParameters(size=10), M.ResponseParameters(size=10, interval_us=10_000_000)]
    )
    with H2Client(shared_interop.address) as c:
        s = c.request(TS + "StreamingOutputCall", frame_msg(req.SerializeToString()))
        assert c.pump(lambda: len(parse_msgs(s.data)[0]) >= 1 or s.done, 5)
        assert not s.done, s.blocks
        c.rst(s.id, CANCEL)
        ok = raw_call(c, TS + "EmptyCall", b"")
        assert ok.status() == 0
        assert not c.goaways and not c.closed


def test_rst_stream_cancels_call_node(servers):
    """After the client resets its only call, SIGTERM ends the node at once: nothing is in
    flight, so it must not sit out its 10 s grace period."""
    n = servers.node("--grace-seconds", "10")
    with H2Client(n.address) as c:
        s = c.request(WATCH, frame_msg(b""))
        assert c.pump(lambda: len(parse_msgs(s.data)[0]) >= 1 or s.done, 5)
        assert not s.done, s.blocks
        [(_, first)] = parse_msgs(s.data)[0]
        assert health_pb2.HealthCheckResponse.FromString(first).status == SERVING
        c.rst(s.id, CANCEL)
        ok = raw_call(c, CHECK, b"")
        assert ok.status() == 0
        assert not c.goaways and not c.closed

        t0 = time.monotonic()
        n.proc.send_signal(signal.SIGTERM)
        wait_exit(n, c, t0 + 6)
        assert not n.alive(), "node still running 6 s after SIGTERM with no call in flight"
    assert n.stop() == 0, n.output()
    assert not re.search(r"^\S+ error ", n.stderr(), re.M), n.stderr()


def test_flow_control_window_respected(shared_interop):
    """The server may send no more than the client's 65535-byte windows until WINDOW_UPDATE."""
    req = M.StreamingOutputCallRequest(response_parameters=[M.ResponseParameters(size=65536)] * 4)
    with H2Client(shared_interop.address, auto_window=False) as c:
        s = c.request(TS + "StreamingOutputCall", frame_msg(req.SerializeToString()))
        c.pump(lambda: len(s.data) >= 65535 or s.done, 3)
        assert not c.flow_violations, c.flow_violations
        assert 0 < len(s.data) <= 65535 and not s.done
        c.auto_window = True
        c.grant(s.id, len(s.data))
        c.wait(s)
        assert not c.flow_violations, c.flow_violations
    assert s.status() == 0, s.trailers
    bodies = [M.StreamingOutputCallResponse.FromString(b).payload.body for _, b in s.messages()]
    assert [len(b) for b in bodies] == [65536] * 4


def test_slow_reader_does_not_pile_up_in_server_memory(interop):
    stub = test_pb2_grpc.TestServiceStub(interop.channel())
    warm = M.StreamingOutputCallRequest(response_parameters=[M.ResponseParameters(size=MiB)] * 3)
    assert len(list(stub.StreamingOutputCall(warm, timeout=30))) == 3
    base = interop.rss_kib()

    req = M.StreamingOutputCallRequest(response_parameters=[M.ResponseParameters(size=MiB)] * 50)
    call = stub.StreamingOutputCall(req, timeout=60)
    assert len(next(call).payload.body) == MiB
    # The reader now stalls for 2 s; sample the server's memory meanwhile.
    peak, until = base, time.monotonic() + 2.0
    while time.monotonic() < until:
        peak = max(peak, interop.rss_kib())
        time.sleep(0.05)
    grown_mib = (peak - base) / 1024
    # ASan keeps freed 1 MiB messages in its quarantine and adds shadow memory: a looser
    # bound there, still well under the 50 MiB that piling up would take.
    limit = 32 if binary_has_asan(INTEROP_SERVER_BIN) else 20
    assert grown_mib < limit, f"server RSS grew by {grown_mib:.1f} MiB while the reader stalled (50 MiB stream)"

    rest = list(call)
    assert len(rest) == 49 and all(len(r.payload.body) == MiB for r in rest)
    assert call.code() == grpc.StatusCode.OK


# ---------------------------------------------------------------------------------------
# Shutdown


def test_goaway_on_shutdown(servers):
    grace = 3
    n = servers.node("--grace-seconds", str(grace))
    with H2Client(n.address) as c:
        s = c.request(WATCH, frame_msg(b""))
        assert c.pump(lambda: len(parse_msgs(s.data)[0]) >= 1 or s.done, 5)
        assert not s.done, s.blocks
        t0 = time.monotonic()
        n.proc.send_signal(signal.SIGTERM)
        assert c.pump(lambda: c.goaways, 5), "no GOAWAY after SIGTERM"
        assert all(code == 0 for _, code, _ in c.goaways), c.goaways
        assert all(last >= s.id for last, _, _ in c.goaways), f"GOAWAY disowns an accepted stream: {c.goaways}"
        # the call in flight finishes or is cancelled cleanly within the grace period
        assert c.pump(lambda: s.done or c.closed, grace + 3), "watch neither ended nor was cancelled"
        assert time.monotonic() - t0 < grace + 3
        msgs = s.messages() if s.ended else parse_msgs(s.data)[0]
        later = [health_pb2.HealthCheckResponse.FromString(b).status for _, b in msgs[1:]]
        assert all(st == NOT_SERVING for st in later), later
        wait_exit(n, c, t0 + grace + 5)
    assert n.stop(timeout=max(0.1, grace + 5 - (time.monotonic() - t0))) == 0, n.output()


# ---------------------------------------------------------------------------------------
# The node's services


def test_health_check_node(shared_node, hstub):
    assert hstub.Check(health_pb2.HealthCheckRequest(), timeout=10).status == SERVING
    e = rpc_error(hstub.Check, health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=10)
    assert e.code() == grpc.StatusCode.NOT_FOUND
    services = shared_node.wait_for_line(r"^services\b(.*)$", 5).group(1)
    assert "grpc.health.v1.Health" in services


def test_every_service_of_the_api_answers_its_own_errors(shared_node):
    """Routed to the worker, not to the table's UNIMPLEMENTED placeholder: an empty start is
    the worker's own INVALID_ARGUMENT."""
    ch = shared_node.channel()
    e = rpc_error(worker_pb2_grpc.CollectiveWorkerStub(ch).StartWorkflow, worker_pb2.StartWorkflowRequest(),
                  timeout=10)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "workflow_name" in e.details()


# ---------------------------------------------------------------------------------------
# Flags and the node id

def readme_flags():
    """Every flag the README's tables document (`--name ...` at the start of a row's first
    cell; a table may be indented inside a list)."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    return set(re.findall(r"^ *\| `(--[a-z0-9-]+)", text, re.M)) | set(
        re.findall(r"^ *\| `--[a-z0-9-]+ [A-Z/0-9]+`, `(--[a-z0-9-]+)", text, re.M))


SANITIZED = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def run_collector(binary, cwd, *args):
    r = subprocess.run([str(binary), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=20)
    assert not any(m in r.stderr for m in SANITIZED), r.stderr
    return r


def test_help_and_readme_document_the_same_flags(collector_bin, tmp_path):
    r = run_collector(collector_bin, tmp_path, "--help")
    assert r.returncode == 0, r.stderr
    in_help = set(re.findall(r"^\s+(--[a-z0-9-]+)", r.stdout, re.M))
    documented = readme_flags()
    assert len(documented) > 20, documented
    assert in_help - {"--help"} == documented, (
        f"only in --help: {in_help - documented - {'--help'}}; only in README: {documented - in_help}")


@pytest.mark.parametrize(
    "args,word",
    [
        (["--no-such-flag", "1"], "no-such-flag"),
        (["--threads", "lots"], "threads"),
        (["--max-message-bytes", "-5"], "max-message-bytes"),
        (["--store-group-max", "-1"], "store-group-max"),
        (["--log-level", "loud"], "log-level"),
        (["--data"], "data"),
    ],
)
def test_bad_flag_fails_with_message(collector_bin, tmp_path, args, word):
    r = run_collector(collector_bin, tmp_path, *args)
    assert r.returncode != 0
    assert word in r.stderr, r.stderr
    assert not (tmp_path / "data").exists(), "a rejected command line must not touch ./data"


UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def _node_id(n):
    return n.wait_for_line(r"^id (\S+)\s*$", 5).group(1)


def test_node_id_kept_across_restarts(servers, tmp_path):
    data = tmp_path / "data"
    first = servers.node(data_dir=data)
    node_id = _node_id(first)
    assert UUID7.match(node_id), node_id
    assert first.stop() == 0, first.output()
    second = servers.node(data_dir=data)
    assert _node_id(second) == node_id
    other = servers.node()
    assert _node_id(other) != node_id


def test_explicit_id(servers, tmp_path):
    n = servers.node("--id", "node-a", data_dir=tmp_path / "data")
    assert _node_id(n) == "node-a"


def _cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_out_of_descriptors_does_not_spin_and_recovers(tmp_path):
    """With its descriptor limit reached, the node backs off accepting instead of spinning
    on EMFILE, and serves again once descriptors are free."""
    from conftest import COLLECTOR_BIN, LISTEN_RE, ServerProcess, _finish

    sp = ServerProcess(["/bin/sh", "-c", f"ulimit -n 40; exec {COLLECTOR_BIN} --listen 127.0.0.1:0 "
                        f"--data {tmp_path} --threads 1 --auth off"], "collector")
    try:
        m = sp.wait_for_line(LISTEN_RE, 20)
        port = int(m.group(2))
        pid = sp.proc.pid
        socks = []
        for _ in range(60):
            s = socket.create_connection(("127.0.0.1", port))
            socks.append(s)
        time.sleep(0.3)
        before = _cpu_seconds(pid)
        time.sleep(1.0)
        spent = _cpu_seconds(pid) - before
        assert spent < 0.3, f"node used {spent:.2f} s of CPU in 1 s while out of descriptors"
        for s in socks:
            s.close()
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            resp = stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        _finish([sp])
