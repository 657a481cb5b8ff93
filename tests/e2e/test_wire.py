"""gRPC over HTTP/2, end to end: the wire behaviours of the server core.

Two clients: grpcio (a real gRPC client) and a small raw HTTP/2 client built here on
hyperframe + hpack (h2's dependencies), which sees every frame and flag and keeps working
after a GOAWAY (h2's own state machine stops there). The test service is the interop
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
import struct
import subprocess
import time
import urllib.parse

import grpc
import hpack
import pytest
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from collector import collection_server_pb2, collection_server_pb2_grpc
from collector import registry_pb2, registry_pb2_grpc
from stdgrpc.health.v1 import health_pb2, health_pb2_grpc
from stdgrpc.testing import empty_pb2, messages_pb2, test_pb2_grpc

TS = "/grpc.testing.TestService/"
CHECK = "/grpc.health.v1.Health/Check"
WATCH = "/grpc.health.v1.Health/Watch"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
CANCEL = 0x8
MiB = 1 << 20

SPECIAL_MESSAGE = "\t\ntest with whitespace\r\nand Unicode BMP \u263a and non-BMP \U0001f608\t\n"
ALL_BYTES = bytes(range(256))


# ---------------------------------------------------------------------------------------
# A raw HTTP/2 client


def frame_msg(payload, flag=0):
    return struct.pack(">BI", flag, len(payload)) + payload


def parse_msgs(buf):
    """Splits length-prefixed messages; returns ([(flag, bytes)], bytes left over)."""
    out, i = [], 0
    while len(buf) - i >= 5:
        flag, n = struct.unpack_from(">BI", buf, i)
        if len(buf) - i - 5 < n:
            break
        out.append((flag, bytes(buf[i + 5 : i + 5 + n])))
        i += 5 + n
    return out, len(buf) - i


class Stream:
    def __init__(self, sid, send_window, recv_window):
        self.id = sid
        self.blocks = []  # [(headers [(name, value)], end_stream)]
        self.data = bytearray()
        self.data_frames = 0
        self.headers_frames = 0
        self.continuation_frames = 0
        self.ended = False  # the server ended its side (END_STREAM)
        self.reset = None  # RST_STREAM error code received
        self.local_reset = False  # we sent RST_STREAM
        self.send_window = send_window
        self.recv_window = recv_window

    @property
    def done(self):
        return self.ended or self.reset is not None

    @property
    def headers(self):
        return dict(self.blocks[0][0]) if self.blocks else {}

    @property
    def trailers(self):
        """The block that ended the stream (for Trailers-Only, the only block)."""
        if self.blocks and self.blocks[-1][1]:
            return dict(self.blocks[-1][0])
        return {}

    def all_headers(self):
        return [kv for block, _ in self.blocks for kv in block]

    def status(self):
        t = self.trailers
        return int(t["grpc-status"]) if "grpc-status" in t else None

    def status_message(self):
        return urllib.parse.unquote(self.trailers.get("grpc-message", ""), errors="strict")

    def messages(self):
        msgs, left = parse_msgs(self.data)
        if self.ended:
            assert left == 0, f"stream {self.id} ended inside a message ({left} bytes left)"
        return msgs


class H2Client:
    def __init__(self, address, initial_window=65535, auto_window=True, timeout=10.0):
        host, port = address.rsplit(":", 1)
        self.authority = address
        self.sock = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.enc = hpack.Encoder()
        self.dec = hpack.Decoder()
        self.buf = bytearray()
        self.streams = {}
        self.next_id = 1
        self.initial_window = initial_window
        self.peer_initial_window = 65535
        self.peer_max_frame = 16384
        self.peer_settings = {}
        self.conn_send_window = 65535
        self.conn_recv_window = 65535
        self.auto_window = auto_window
        self.goaways = []  # [(last_stream_id, error_code, debug data)]
        self.frames = []  # [(frame type name, stream id, flags)]
        self.flow_violations = []
        self.closed = False
        self._hdr = None  # (stream id, end_stream, fragments) while CONTINUATIONs follow
        settings = {SettingsFrame.ENABLE_PUSH: 0, SettingsFrame.INITIAL_WINDOW_SIZE: initial_window}
        self.sock.sendall(
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + SettingsFrame(0, settings=settings).serialize()
        )

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.sock.close()

    def _send(self, *frames):
        self.sock.sendall(b"".join(f.serialize() for f in frames))

    def request(self, path, body=None, headers=(), content_type="application/grpc", end_stream=True):
        """Opens a stream: HEADERS, then `body` (if any) as DATA; END_STREAM if asked."""
        sid = self.next_id
        self.next_id += 2
        s = Stream(sid, self.peer_initial_window, self.initial_window)
        self.streams[sid] = s
        hdrs = [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", self.authority)]
        if content_type:
            hdrs.append(("content-type", content_type))
        hdrs.append(("te", "trailers"))
        hdrs += list(headers)
        block = self.enc.encode(hdrs)
        assert len(block) <= 16384, "header block too large for this client"
        hf = HeadersFrame(sid, data=block)
        hf.flags.add("END_HEADERS")
        if body is None and end_stream:
            hf.flags.add("END_STREAM")
        fits = body is not None and len(body) <= min(self.peer_max_frame, self.conn_send_window, s.send_window)
        if fits:
            df = DataFrame(sid, data=body)
            if end_stream:
                df.flags.add("END_STREAM")
            self.conn_send_window -= len(body)
            s.send_window -= len(body)
            self._send(hf, df)
        else:
            self._send(hf)
            if body is not None:
                self.send_data(sid, body, end_stream)
        return s

    def send_data(self, sid, data, end_stream=False, timeout=10.0):
        """Sends DATA within the peer's windows. Returns False (and resets the stream) if
        the server finished or reset the stream before all of it was sent."""
        s = self.streams[sid]
        view = memoryview(bytes(data))
        deadline = time.monotonic() + timeout
        while True:
            if s.done:
                if s.reset is None:
                    self.rst(sid, CANCEL)
                return False
            n = min(len(view), self.peer_max_frame, self.conn_send_window, s.send_window)
            last = n == len(view)
            if n > 0 or (last and end_stream):
                f = DataFrame(sid, data=bytes(view[:n]))
                if last and end_stream:
                    f.flags.add("END_STREAM")
                self._send(f)
                view = view[n:]
                self.conn_send_window -= n
                s.send_window -= n
            if last:
                return True
            if n == 0:
                ok = self.pump(
                    lambda: s.done or (self.conn_send_window > 0 and s.send_window > 0),
                    deadline - time.monotonic(),
                )
                assert ok, f"stream {sid}: no flow-control window from the server within {timeout} s"

    def rst(self, sid, code=CANCEL):
        self.streams[sid].local_reset = True
        self._send(RstStreamFrame(sid, error_code=code))

    def grant(self, sid, n):
        """Returns n bytes of receive window to the connection and (if open) the stream."""
        frames = [WindowUpdateFrame(0, window_increment=n)]
        self.conn_recv_window += n
        s = self.streams.get(sid)
        if s and not s.done and not s.local_reset:
            frames.append(WindowUpdateFrame(sid, window_increment=n))
            s.recv_window += n
        self._send(*frames)

    def pump(self, cond, timeout=10.0):
        """Reads and handles frames until cond() holds (True) or the time is up (False)."""
        deadline = time.monotonic() + timeout
        while not cond():
            left = deadline - time.monotonic()
            if self.closed or left <= 0:
                return cond()
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(1 << 20)
            except socket.timeout:
                continue
            except (ConnectionResetError, BrokenPipeError):
                chunk = b""
            if not chunk:
                self.closed = True
                continue
            self.buf += chunk
            self._parse()
        return True

    def wait(self, s, timeout=10.0):
        assert self.pump(lambda: s.done, timeout), f"stream {s.id} did not finish in {timeout} s"
        return s

    def _parse(self):
        while len(self.buf) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(bytes(self.buf[:9])))
            if len(self.buf) < 9 + length:
                return
            body = bytes(self.buf[9 : 9 + length])
            del self.buf[: 9 + length]
            frame.parse_body(memoryview(body))
            self._handle(frame)

    def _header_block(self, sid, end_stream, block):
        headers = [(str(k), str(v)) for k, v in self.dec.decode(block)]
        s = self.streams.get(sid)
        if s is not None:
            s.blocks.append((headers, end_stream))
            if end_stream:
                s.ended = True

    def _handle(self, f):
        self.frames.append((type(f).__name__, f.stream_id, set(f.flags)))
        s = self.streams.get(f.stream_id)
        if isinstance(f, SettingsFrame):
            if "ACK" in f.flags:
                return
            for k, v in f.settings.items():
                self.peer_settings[k] = v
                if k == SettingsFrame.INITIAL_WINDOW_SIZE:
                    delta = v - self.peer_initial_window
                    self.peer_initial_window = v
                    for st in self.streams.values():
                        st.send_window += delta
                elif k == SettingsFrame.MAX_FRAME_SIZE:
                    self.peer_max_frame = v
                elif k == SettingsFrame.HEADER_TABLE_SIZE:
                    self.enc.header_table_size = v
            ack = SettingsFrame(0)
            ack.flags.add("ACK")
            self._send(ack)
        elif isinstance(f, WindowUpdateFrame):
            if f.stream_id == 0:
                self.conn_send_window += f.window_increment
            elif s is not None:
                s.send_window += f.window_increment
        elif isinstance(f, PingFrame):
            if "ACK" not in f.flags:
                ack = PingFrame(0, opaque_data=f.opaque_data)
                ack.flags.add("ACK")
                self._send(ack)
        elif isinstance(f, GoAwayFrame):
            self.goaways.append((f.last_stream_id, f.error_code, f.additional_data))
        elif isinstance(f, RstStreamFrame):
            if s is not None:
                s.reset = f.error_code
        elif isinstance(f, HeadersFrame):
            if s is not None:
                s.headers_frames += 1
            end = "END_STREAM" in f.flags
            if "END_HEADERS" in f.flags:
                self._header_block(f.stream_id, end, f.data)
            else:
                self._hdr = (f.stream_id, end, [f.data])
        elif isinstance(f, ContinuationFrame):
            assert self._hdr and self._hdr[0] == f.stream_id, "stray CONTINUATION"
            if s is not None:
                s.continuation_frames += 1
            self._hdr[2].append(f.data)
            if "END_HEADERS" in f.flags:
                sid, end, parts = self._hdr
                self._hdr = None
                self._header_block(sid, end, b"".join(parts))
        elif isinstance(f, DataFrame):
            n = f.flow_controlled_length
            self.conn_recv_window -= n
            if self.conn_recv_window < 0:
                self.flow_violations.append(f"connection window overrun by {-self.conn_recv_window}")
            if s is not None:
                s.recv_window -= n
                if s.recv_window < 0:
                    self.flow_violations.append(f"stream {s.id} window overrun by {-s.recv_window}")
                s.data += f.data
                s.data_frames += 1
                if "END_STREAM" in f.flags:
                    s.ended = True
            if self.auto_window and n:
                self.grant(f.stream_id, n)


def raw_call(c, path, payload=b"", flag=0, headers=(), timeout=10.0, **kw):
    s = c.request(path, frame_msg(payload, flag), headers=headers, **kw)
    return c.wait(s, timeout)


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
    assert grown_mib < 20, f"server RSS grew by {grown_mib:.1f} MiB while the reader stalled (50 MiB stream)"

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


def test_collector_methods_unimplemented(shared_node):
    ch = shared_node.channel()
    e = rpc_error(collection_server_pb2_grpc.CollectionServiceStub(ch).Get, collection_server_pb2.GetRequest(), timeout=10)
    assert e.code() == grpc.StatusCode.UNIMPLEMENTED and e.details()
    e = rpc_error(registry_pb2_grpc.CollectorRegistryStub(ch).ListServices, registry_pb2.ListServicesRequest(), timeout=10)
    assert e.code() == grpc.StatusCode.UNIMPLEMENTED and e.details()


# ---------------------------------------------------------------------------------------
# Flags and the node id

FLAGS = [
    "--listen", "--data", "--threads", "--pool-threads", "--pool-queue", "--max-message-bytes",
    "--namespace", "--id", "--log-level", "--config", "--help",
]
SANITIZED = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def run_collector(binary, cwd, *args):
    r = subprocess.run([str(binary), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=20)
    assert not any(m in r.stderr for m in SANITIZED), r.stderr
    return r


def test_help_documents_every_flag(collector_bin, tmp_path):
    r = run_collector(collector_bin, tmp_path, "--help")
    assert r.returncode == 0, r.stderr
    missing = [f for f in FLAGS if f not in r.stdout + r.stderr]
    assert not missing, f"--help does not mention {missing}"


@pytest.mark.parametrize(
    "args,word",
    [
        (["--no-such-flag", "1"], "no-such-flag"),
        (["--threads", "lots"], "threads"),
        (["--max-message-bytes", "-5"], "max-message-bytes"),
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
                        f"--data {tmp_path} --threads 1"], "collector")
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
