"""Registered services served by another process (issue 17, part 3(b)): RegisterService
names a handler_endpoint, and a call to `/pkg.Service/Method` that the node does not serve
itself is forwarded there, unary and streaming, with metadata, deadline, cancellation,
status and flow control carried over. The handler is a real grpcio server in this
process, serving a service built from a FileDescriptorProto at run time."""

import socket
import threading
import time
from concurrent import futures

import grpc
import pytest
from google.protobuf import descriptor_pb2

from collections_util import T, check_details
from collector import registry_pb2
from registry_util import (
    BOOL, INT32, STRING, Classes, Reg, field, hdr, message, method, proto_file, service,
)

NS = "fwdtest"
FILE = "fwd/echo.proto"
BYTES = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
CHUNK = 256 * 1024


def echo_file():
    """fwd/echo.proto: message Msg { string text = 1; int32 n = 2; bytes blob = 3;
    bool flag = 4; } and service Echo with one method of each kind and a few for the
    tests below."""
    msg = "Msg"
    return proto_file(
        FILE, package="fwd",
        messages=[message(msg, field("text", 1, STRING), field("n", 2, INT32),
                          field("blob", 3, BYTES), field("flag", 4, BOOL))],
        services=[service(
            "Echo",
            method("Unary", msg, msg),
            method("Collect", msg, msg, client_streaming=True),
            method("Spread", msg, msg, server_streaming=True),
            method("Chat", msg, msg, client_streaming=True, server_streaming=True),
            method("Fail", msg, msg),
            method("Deadline", msg, msg),
            method("Hang", msg, msg, server_streaming=True),
            method("Source", msg, msg, server_streaming=True),
            method("Sink", msg, msg, client_streaming=True),
            method("Slow", msg, msg),
        )])


MSG = Classes(echo_file())["fwd.Msg"]


class Handler:
    """The Echo service in a grpc.server of this process, on a port of its own."""

    def __init__(self):
        self.cancelled = threading.Event()
        self.slow_cancelled = threading.Event()
        self.hang_started = threading.Event()
        self.source_ended = threading.Event()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        h = grpc.method_handlers_generic_handler("fwd.Echo", {
            "Unary": self._uu(self.unary),
            "Collect": grpc.stream_unary_rpc_method_handler(
                self.collect, request_deserializer=MSG.FromString,
                response_serializer=MSG.SerializeToString),
            "Spread": grpc.unary_stream_rpc_method_handler(
                self.spread, request_deserializer=MSG.FromString,
                response_serializer=MSG.SerializeToString),
            "Chat": grpc.stream_stream_rpc_method_handler(
                self.chat, request_deserializer=MSG.FromString,
                response_serializer=MSG.SerializeToString),
            "Fail": self._uu(self.fail),
            "Slow": self._uu(self.slow),
            "Deadline": self._uu(self.deadline),
            "Hang": grpc.unary_stream_rpc_method_handler(
                self.hang, request_deserializer=MSG.FromString,
                response_serializer=MSG.SerializeToString),
            "Source": grpc.unary_stream_rpc_method_handler(
                self.source, request_deserializer=MSG.FromString,
                response_serializer=MSG.SerializeToString),
            "Sink": grpc.stream_unary_rpc_method_handler(
                self.sink, request_deserializer=MSG.FromString,
                response_serializer=MSG.SerializeToString),
        })
        self.server.add_generic_rpc_handlers((h,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()
        self.endpoint = f"127.0.0.1:{self.port}"

    @staticmethod
    def _uu(fn):
        return grpc.unary_unary_rpc_method_handler(
            fn, request_deserializer=MSG.FromString, response_serializer=MSG.SerializeToString)

    def stop(self):
        self.server.stop(grace=None).wait(10)

    # -- methods --

    def unary(self, req, ctx):
        md = dict(ctx.invocation_metadata())
        ctx.send_initial_metadata((("x-init", "i1"),))
        ctx.set_trailing_metadata((("x-trail", "t1"), ("x-trail-bin", b"\x00\xff")))
        return MSG(text="|".join([req.text, md.get("x-token", ""), md.get("x-collector-hops", ""),
                                  md.get("x-collector-namespace", "")]),
                   n=req.n + 1)

    def collect(self, it, ctx):
        texts = [m.text for m in it]
        return MSG(text=",".join(texts), n=len(texts))

    def spread(self, req, ctx):
        for i in range(req.n):
            yield MSG(text=f"{req.text}{i}", n=i)

    def chat(self, it, ctx):
        for m in it:
            yield MSG(text=m.text.upper(), n=m.n)

    def fail(self, req, ctx):
        ctx.set_trailing_metadata((("x-why", "because"),))
        ctx.abort(grpc.StatusCode.FAILED_PRECONDITION, f"no way: {req.text}")

    def slow(self, req, ctx):
        """Answers after req.n ms (the mesh's cap on calls in flight needs calls that last);
        a call cancelled meanwhile sets slow_cancelled."""
        end = time.monotonic() + min(req.n, 5000) / 1000
        while time.monotonic() < end:
            if not ctx.is_active():
                self.slow_cancelled.set()
                return MSG()
            time.sleep(0.01)
        return MSG(text="slow", n=req.n)

    def deadline(self, req, ctx):
        left = ctx.time_remaining()
        return MSG(n=-1 if left is None else min(int(left * 1000), 2**31 - 1))

    def hang(self, req, ctx):
        ctx.add_callback(self.cancelled.set)
        yield MSG(text="first")
        self.hang_started.set()
        # Ends when the RPC does: the node's cancel is what ends it.
        self.cancelled.wait(20)

    def source(self, req, ctx):
        ctx.add_callback(self.source_ended.set)
        blob = b"s" * req.n
        for _ in range(int(req.text)):
            yield MSG(blob=blob)

    def sink(self, it, ctx):
        total = 0
        for m in it:
            total += len(m.blob)
            time.sleep(0.01)  # a slow reader: the node must stop the client meanwhile
        return MSG(n=total)


@pytest.fixture(scope="module")
def handler():
    h = Handler()
    yield h
    h.stop()


def register(reg, ns, endpoint=None):
    req = Reg.service_req(ns, echo_file().service[0], echo_file())
    if endpoint is not None:
        req.handler_endpoint = endpoint
    return reg.stub.RegisterService(req, timeout=T)


@pytest.fixture(scope="module")
def gw(shared_node, handler):
    """The shared node with fwd.Echo registered in NS, handled by `handler`."""
    reg = Reg(shared_node)
    r = register(reg, NS, handler.endpoint)
    assert r.status.code == 0
    return shared_node


def stub(ch, name, kind="unary_unary"):
    return getattr(ch, kind)(f"/fwd.Echo/{name}", request_serializer=MSG.SerializeToString,
                             response_deserializer=MSG.FromString)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---- registration ----


def test_lookup_and_list_show_the_handler(gw, handler):
    reg = Reg(gw)
    s = reg.lookup(NS, "fwd.Echo")
    assert s.handler_endpoint == handler.endpoint
    listed = {x.service_name: x for x in reg.list(NS)}
    assert listed["fwd.Echo"].handler_endpoint == handler.endpoint


@pytest.mark.parametrize("endpoint", [
    "example.com:80", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:http",
    "0.0.0.0:5000", "[::]:5000", ":5000", "[::1:5000", "x" * 200 + ":1",
])
def test_bad_handler_endpoint_refused_nothing_stored(shared_node, endpoint):
    reg = Reg(shared_node)
    ns = "fwdbad"
    with pytest.raises(grpc.RpcError) as ei:
        register(reg, ns, endpoint)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT, ei.value.details()
    check_details(ei.value, ["handler_endpoint"])
    with pytest.raises(grpc.RpcError) as ei:
        reg.stub.LookupService(registry_pb2.LookupServiceRequest(namespace=ns, service_name="fwd.Echo"),
                               timeout=T)
    assert ei.value.code() == grpc.StatusCode.NOT_FOUND


def test_ipv6_and_localhost_endpoints_accepted(shared_node):
    reg = Reg(shared_node)
    for ep in ("[::1]:7000", "localhost:7001"):
        assert register(reg, "fwdv6", ep).status.code == 0
        assert reg.lookup("fwdv6", "fwd.Echo").handler_endpoint == ep


# ---- calls forwarded ----


def test_unary_with_metadata_both_ways(gw):
    ch = gw.channel()
    resp, c = stub(ch, "Unary").with_call(MSG(text="hi", n=1), timeout=T,
                                          metadata=hdr(NS) + (("x-token", "tok"),))
    text, token, hops, ns = resp.text.split("|")
    assert (text, token, hops, ns, resp.n) == ("hi", "tok", "1", NS, 2)
    assert ("x-init", "i1") in c.initial_metadata()
    trailing = dict(c.trailing_metadata())
    assert trailing["x-trail"] == "t1"
    assert trailing["x-trail-bin"] == b"\x00\xff"


def test_namespace_sent_when_the_client_named_none(servers, handler):
    """The node tells the far side the namespace it validated the call in, also when it
    was the node's default (the client sent no header)."""
    n = servers.node("--namespace", "fwddefault")
    assert register(Reg(n), "fwddefault", handler.endpoint).status.code == 0
    r = stub(n.channel(), "Unary")(MSG(text="d"), timeout=T)
    assert r.text.split("|")[3] == "fwddefault"


def test_hops_counted_and_limited(gw):
    ch = gw.channel()
    resp = stub(ch, "Unary")(MSG(text="h"), timeout=T, metadata=hdr(NS) + (("x-collector-hops", "3"),))
    assert resp.text.split("|")[2] == "4"
    with pytest.raises(grpc.RpcError) as ei:
        stub(ch, "Unary")(MSG(text="h"), timeout=T, metadata=hdr(NS) + (("x-collector-hops", "8"),))
    assert ei.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    check_details(ei.value)


def test_client_stream(gw):
    msgs = [MSG(text=f"m{i}") for i in range(5)]
    resp = stub(gw.channel(), "Collect", "stream_unary")(iter(msgs), timeout=T, metadata=hdr(NS))
    assert (resp.text, resp.n) == ("m0,m1,m2,m3,m4", 5)


def test_server_stream(gw):
    out = list(stub(gw.channel(), "Spread", "unary_stream")(MSG(text="x", n=4), timeout=T,
                                                            metadata=hdr(NS)))
    assert [m.text for m in out] == ["x0", "x1", "x2", "x3"]


def test_bidi_interleaved(gw):
    """Each reply comes before the next request is sent: messages are passed one by one,
    not collected until the half-close."""
    sent = []
    got = threading.Event()

    def requests():
        for i in range(3):
            got.clear()
            sent.append(i)
            yield MSG(text=f"b{i}", n=i)
            assert got.wait(T), f"no reply to message {i} before the next"

    replies = []
    for m in stub(gw.channel(), "Chat", "stream_stream")(requests(), timeout=T, metadata=hdr(NS)):
        replies.append((m.text, m.n))
        got.set()
    assert replies == [("B0", 0), ("B1", 1), ("B2", 2)]


def test_error_status_and_trailers_passed_back(gw):
    with pytest.raises(grpc.RpcError) as ei:
        stub(gw.channel(), "Fail")(MSG(text="sorry"), timeout=T, metadata=hdr(NS))
    e = ei.value
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert e.details() == "no way: sorry"
    assert dict(e.trailing_metadata()).get("x-why") == "because"


def test_deadline_reaches_handler(gw):
    r = stub(gw.channel(), "Deadline")(MSG(), timeout=5, metadata=hdr(NS))
    # grpcio rounds the timeout it puts on the wire up a little (to few significant digits).
    assert 0 < r.n <= 5100, r.n
    r = stub(gw.channel(), "Deadline")(MSG(), metadata=hdr(NS))
    assert r.n == -1 or r.n > 100_000  # no deadline, or grpcio's "infinite" one


def test_client_cancel_reaches_handler(gw, handler):
    handler.cancelled.clear()
    handler.hang_started.clear()
    it = stub(gw.channel(), "Hang", "unary_stream")(MSG(), timeout=30, metadata=hdr(NS))
    assert next(it).text == "first"
    assert handler.hang_started.wait(T)
    it.cancel()
    assert handler.cancelled.wait(T), "the handler's call was not cancelled"


# ---- no handler, handler down ----


def test_handler_down_unavailable(shared_node):
    reg = Reg(shared_node)
    ep = f"127.0.0.1:{free_port()}"
    assert register(reg, "fwddown", ep).status.code == 0
    with pytest.raises(grpc.RpcError) as ei:
        stub(shared_node.channel(), "Unary")(MSG(), timeout=T, metadata=hdr("fwddown"))
    assert ei.value.code() == grpc.StatusCode.UNAVAILABLE
    check_details(ei.value, [ep])


def test_no_handler_unimplemented_and_reregister_clears(shared_node, handler):
    reg = Reg(shared_node)
    ns = "fwdnone"
    assert register(reg, ns).status.code == 0
    ch = shared_node.channel()
    with pytest.raises(grpc.RpcError) as ei:
        stub(ch, "Unary")(MSG(), timeout=T, metadata=hdr(ns))
    assert ei.value.code() == grpc.StatusCode.UNIMPLEMENTED
    # Given one, calls go through; taken away again, UNIMPLEMENTED again.
    assert register(reg, ns, handler.endpoint).status.code == 0
    assert stub(ch, "Unary")(MSG(text="y"), timeout=T, metadata=hdr(ns)).text.startswith("y|")
    assert register(reg, ns, "").status.code == 0
    assert reg.lookup(ns, "fwd.Echo").handler_endpoint == ""
    with pytest.raises(grpc.RpcError) as ei:
        stub(ch, "Unary")(MSG(), timeout=T, metadata=hdr(ns))
    assert ei.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_other_namespace_does_not_see_it(gw):
    with pytest.raises(grpc.RpcError) as ei:
        stub(gw.channel(), "Unary")(MSG(), timeout=T, metadata=hdr("fwdelsewhere"))
    assert ei.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_persists_across_restart(servers, handler, tmp_path):
    data = tmp_path / "data"
    n1 = servers.node(data_dir=data)
    assert register(Reg(n1), NS, handler.endpoint).status.code == 0
    assert n1.stop() == 0
    n2 = servers.node(data_dir=data)
    assert Reg(n2).lookup(NS, "fwd.Echo").handler_endpoint == handler.endpoint
    r = stub(n2.channel(), "Unary")(MSG(text="again"), timeout=T, metadata=hdr(NS))
    assert r.text.startswith("again|")


# ---- flow control: a slow side does not make the node hold the stream ----


class RssWatch:
    """Samples a process's RSS every 50 ms in a thread; .peak in KiB."""

    def __init__(self, node):
        self.node = node
        self.base = node.rss_kib()
        self.peak = self.base
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self.node.rss_kib())

    def stop(self):
        self._stop.set()
        self._t.join(5)
        return (self.peak - self.base) // 1024


TOTAL_MIB = 64
GROWTH_MIB = 32  # loose: the windows and high-water marks hold a few MiB per call


def test_slow_client_bounded_memory(gw):
    """The handler streams 64 MiB as fast as it can; the client reads slowly. The node
    stops reading the handler while the client lags instead of buffering the stream."""
    ch = gw.channel(options=[("grpc.max_receive_message_length", 8 << 20)])
    # Warm the path up so that the baseline includes the connection's buffers.
    list(stub(ch, "Source", "unary_stream")(MSG(text="2", n=CHUNK), timeout=T, metadata=hdr(NS)))
    watch = RssWatch(gw)
    n = TOTAL_MIB * 1024 * 1024 // CHUNK
    got = 0
    try:
        for m in stub(ch, "Source", "unary_stream")(MSG(text=str(n), n=CHUNK), timeout=60,
                                                     metadata=hdr(NS)):
            got += len(m.blob)
            time.sleep(0.01)
    finally:
        growth = watch.stop()
    assert got == n * CHUNK
    assert growth < GROWTH_MIB, f"the node grew by {growth} MiB passing {TOTAL_MIB} MiB"


def test_slow_handler_bounded_memory(gw):
    """The client streams 64 MiB as fast as it can to a handler that reads slowly."""
    ch = gw.channel()
    stub(ch, "Sink", "stream_unary")(iter([MSG(blob=b"w" * CHUNK)]), timeout=T, metadata=hdr(NS))
    watch = RssWatch(gw)
    n = TOTAL_MIB * 1024 * 1024 // CHUNK
    blob = b"c" * CHUNK
    try:
        r = stub(ch, "Sink", "stream_unary")((MSG(blob=blob) for _ in range(n)), timeout=60,
                                             metadata=hdr(NS))
    finally:
        growth = watch.stop()
    assert r.n == n * CHUNK
    assert growth < GROWTH_MIB, f"the node grew by {growth} MiB passing {TOTAL_MIB} MiB"


def test_cancel_while_the_node_holds_the_stream(gw, handler):
    """The client stops reading (the node pauses the handler, holding what arrived), then
    cancels: the handler's call ends and the node lets go of what it held."""
    handler.source_ended.clear()
    ch = gw.channel()
    it = stub(ch, "Source", "unary_stream")(MSG(text="256", n=CHUNK), timeout=30, metadata=hdr(NS))
    assert len(next(it).blob) == CHUNK
    time.sleep(0.5)  # the windows fill up meanwhile
    it.cancel()
    assert handler.source_ended.wait(T), "the handler's stream did not end"
    assert stub(ch, "Unary")(MSG(text="after"), timeout=T, metadata=hdr(NS)).text.startswith("after|")


def test_deadline_passes_while_paused(gw, handler):
    handler.source_ended.clear()
    it = stub(gw.channel(), "Source", "unary_stream")(MSG(text="256", n=CHUNK), timeout=1.5,
                                                      metadata=hdr(NS))
    with pytest.raises(grpc.RpcError) as ei:
        for _ in it:
            time.sleep(0.2)
    assert ei.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert handler.source_ended.wait(T)


def test_response_over_the_message_limit(gw):
    """The node's --max-message-bytes (4 MiB) holds for what a handler answers too."""
    with pytest.raises(grpc.RpcError) as ei:
        list(stub(gw.channel(), "Source", "unary_stream")(MSG(text="1", n=5 << 20), timeout=T,
                                                          metadata=hdr(NS)))
    assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    check_details(ei.value)


def test_handler_goes_away_mid_stream(shared_node):
    """A handler that dies while streaming: the client gets an error, not a hang."""
    h = Handler()
    try:
        assert register(Reg(shared_node), "fwdgone", h.endpoint).status.code == 0
        it = stub(shared_node.channel(), "Source", "unary_stream")(
            MSG(text="100000", n=1024), timeout=T, metadata=hdr("fwdgone"))
        assert len(next(it).blob) == 1024
    finally:
        h.stop()
    with pytest.raises(grpc.RpcError) as ei:
        for _ in it:
            pass
    assert ei.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED,
                               grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), ei.value


def test_service_registered_bare(shared_node, handler):
    """Upstream registers services bare ("Echo"): the call keeps the full path the client
    used, which is what the handler serves."""
    reg = Reg(shared_node)
    ns = "fwdbare"
    reg.proto(ns, echo_file())
    sd = descriptor_pb2.ServiceDescriptorProto()
    sd.CopyFrom(echo_file().service[0])
    for m in sd.method:
        m.input_type, m.output_type = ".fwd.Msg", ".fwd.Msg"
    req = Reg.service_req(ns, sd)
    req.handler_endpoint = handler.endpoint
    assert reg.stub.RegisterService(req, timeout=T).status.code == 0
    assert reg.lookup(ns, "Echo").handler_endpoint == handler.endpoint
    r = stub(shared_node.channel(), "Unary")(MSG(text="bare"), timeout=T, metadata=hdr(ns))
    assert r.text.startswith("bare|")


def test_forwarded_without_validation(servers, handler):
    n = servers.node("--no-validation")
    assert register(Reg(n), NS, handler.endpoint).status.code == 0
    out = list(stub(n.channel(), "Spread", "unary_stream")(MSG(text="v", n=2), timeout=T,
                                                          metadata=hdr(NS)))
    assert [m.text for m in out] == ["v0", "v1"]


def test_handler_that_is_the_node_itself_stops_at_the_hop_limit(shared_node):
    """A registration pointing back at the node goes round through it until the hop
    limit, then fails: no endless loop."""
    reg = Reg(shared_node)
    assert register(reg, "fwdloop", shared_node.address).status.code == 0
    with pytest.raises(grpc.RpcError) as ei:
        stub(shared_node.channel(), "Unary")(MSG(), timeout=T, metadata=hdr("fwdloop"))
    assert ei.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    check_details(ei.value, ["8"])
