"""A raw HTTP/2 client for the end-to-end tests, built on hyperframe + hpack (h2's
dependencies): it sees every frame and flag, can send any frame sequence, and keeps
working after a GOAWAY (h2's own state machine stops there)."""

import socket
import struct
import time
import urllib.parse

import hpack
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

CANCEL = 0x8
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

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
    def __init__(self, address, initial_window=65535, auto_window=True, timeout=10.0,
                 ack_pings=True, ack_settings=True, preface=True):
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
        self.ack_pings = ack_pings
        self.ack_settings = ack_settings
        self.pings_received = 0
        self.goaways = []  # [(last_stream_id, error_code, debug data)]
        self.frames = []  # [(frame type name, stream id, flags)]
        self.flow_violations = []
        self.closed = False
        self._hdr = None  # (stream id, end_stream, fragments) while CONTINUATIONs follow
        settings = {SettingsFrame.ENABLE_PUSH: 0, SettingsFrame.INITIAL_WINDOW_SIZE: initial_window}
        if preface:
            self.sock.sendall(PREFACE + SettingsFrame(0, settings=settings).serialize())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.sock.close()

    def _send(self, *frames):
        try:
            self.sock.sendall(b"".join(f.serialize() for f in frames))
        except (BrokenPipeError, ConnectionResetError):
            # The server closed first (after a GOAWAY, say): what it sent is still read.
            self.closed = True

    def send_frames(self, frames):
        """Sends frames as they are, in one write; False if the server closed first."""
        try:
            self.sock.sendall(b"".join(f.serialize() if isinstance(f, Frame) else f for f in frames))
            return True
        except (BrokenPipeError, ConnectionResetError):
            self.closed = True
            return False

    def header_block(self, path, headers=(), content_type="application/grpc", te=True):
        """The HPACK block of a request's headers (the encoder's state advances)."""
        hdrs = [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", self.authority)]
        if content_type:
            hdrs.append(("content-type", content_type))
        if te:
            hdrs.append(("te", "trailers"))
        return self.enc.encode(hdrs + list(headers))

    def open_stream(self):
        sid = self.next_id
        self.next_id += 2
        s = Stream(sid, self.peer_initial_window, self.initial_window)
        self.streams[sid] = s
        return s

    def request(self, path, body=None, headers=(), content_type="application/grpc", end_stream=True):
        """Opens a stream: HEADERS, then `body` (if any) as DATA; END_STREAM if asked."""
        s = self.open_stream()
        sid = s.id
        block = self.header_block(path, headers, content_type)
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
            if "ACK" in f.flags or not self.ack_settings:
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
                self.pings_received += 1
            if "ACK" not in f.flags and self.ack_pings:
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
