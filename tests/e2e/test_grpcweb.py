"""gRPC-Web on the node's port (issue 20): application/grpc-web(+proto) and
grpc-web-text over HTTP/1.1 and HTTP/2, unary and server-streaming, statuses and trailing
metadata in the trailer frame, deadlines (grpc-timeout) and the namespace header through
the call path, and CORS for --cors-origin (preflight and the response headers a browser
needs). The client is curl and raw framing written here; every wait is bounded."""

import base64
import struct

import pytest

from collector import collection_server_pb2 as cs_pb2
from stdgrpc.health.v1 import health_pb2
from test_http1 import curl

T = 10


def frame(msg, flag=0):
    return struct.pack(">BI", flag, len(msg)) + msg


def unframe(body):
    """[(flag, bytes)] of a gRPC-Web body."""
    out, i = [], 0
    while i < len(body):
        flag, n = struct.unpack(">BI", body[i:i + 5])
        out.append((flag, body[i + 5:i + 5 + n]))
        i += 5 + n
    assert i == len(body), body
    return out


def trailers(block):
    lines = block.decode().split("\r\n")
    return {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines if ln)}


def web_call(node, path, msg, *extra, text=False, http2=False):
    """(HTTP status, headers, [messages], trailer dict)."""
    body = frame(msg)
    ctype = "application/grpc-web-text+proto" if text else "application/grpc-web+proto"
    if text:
        body = base64.b64encode(body)
    args = ["-H", f"content-type: {ctype}", "-H", "x-grpc-web: 1", "--data-binary", "@-",
            *extra, f"http://127.0.0.1:{node.port}{path}"]
    if http2:
        args.insert(0, "--http2-prior-knowledge")
    st, h, raw, _ = curl(*args, stdin=body)
    assert h["content-type"] == ctype, h
    if text:
        raw = base64.b64decode(raw)
    frames = unframe(raw)
    assert frames and frames[-1][0] == 0x80, frames
    assert all(f == 0 for f, _ in frames[:-1])
    return st, h, [m for _, m in frames[:-1]], trailers(frames[-1][1])


@pytest.mark.parametrize("text", [False, True])
@pytest.mark.parametrize("http2", [False, True])
def test_unary_binary_and_text_over_both_protocols(shared_node, text, http2):
    st, h, msgs, tr = web_call(shared_node, "/grpc.health.v1.Health/Check",
                               health_pb2.HealthCheckRequest().SerializeToString(),
                               text=text, http2=http2)
    assert st == 200 and tr["grpc-status"] == "0", tr
    assert len(msgs) == 1
    assert health_pb2.HealthCheckResponse.FromString(msgs[0]).status == \
        health_pb2.HealthCheckResponse.SERVING
    st, h, msgs, tr = web_call(shared_node, "/collector.CollectionService/Meta",
                               cs_pb2.MetaRequest().SerializeToString(), text=text, http2=http2)
    assert cs_pb2.MetaResponse.FromString(msgs[0]).server_version


def test_errors_in_the_trailer_frame(shared_node):
    st, h, msgs, tr = web_call(shared_node, "/collector.CollectionService/Get",
                               cs_pb2.GetRequest(namespace="n", collection_name="c",
                                                 id="x").SerializeToString())
    assert st == 200 and msgs == [] and tr["grpc-status"] == "5", tr  # NOT_FOUND
    assert "no collection" in tr["grpc-message"]
    st, h, msgs, tr = web_call(shared_node, "/no.Such/Method", b"")
    assert tr["grpc-status"] == "12", tr
    # grpc-timeout is the call's deadline, as for gRPC.
    st, h, msgs, tr = web_call(shared_node, "/collector.CollectionService/Meta", b"",
                               "-H", "grpc-timeout: 0n")
    assert tr["grpc-status"] == "4", tr
    # A body that is no framed message: the reader's error.
    st, h, raw, _ = curl("-H", "content-type: application/grpc-web+proto", "--data-binary",
                         "@-", f"http://127.0.0.1:{shared_node.port}"
                         "/collector.CollectionService/Meta", stdin=b"\x00\x00\x00")
    assert trailers(unframe(raw)[-1][1])["grpc-status"] == "13"


def test_server_streaming_through_a_registered_handler(servers):
    from registry_util import Reg
    from test_handler_forward import MSG, NS as FNS, Handler, register
    handler = Handler()
    try:
        node = servers.node()
        assert register(Reg(node), FNS, handler.endpoint).status.code == 0
        for http2 in (False, True):
            st, h, msgs, tr = web_call(node, "/fwd.Echo/Spread",
                                       MSG(text="s", n=3).SerializeToString(),
                                       "-H", f"x-collector-namespace: {FNS}", http2=http2)
            assert tr["grpc-status"] == "0", tr
            got = [MSG.FromString(m) for m in msgs]
            assert [(m.text, m.n) for m in got] == [("s0", 0), ("s1", 1), ("s2", 2)], got
        st, h, msgs, tr = web_call(node, "/fwd.Echo/Fail", MSG(text="x").SerializeToString(),
                                   "-H", f"x-collector-namespace: {FNS}")
        assert tr["grpc-status"] == "9" and tr["grpc-message"] == "no way: x", tr
        assert tr["x-why"] == "because", tr  # trailing metadata in the trailer frame
    finally:
        handler.stop()


def test_cors_for_configured_origins(servers):
    node = servers.node("--cors-origin", "https://console.example, http://localhost:3000")
    url = f"http://127.0.0.1:{node.port}/grpc.health.v1.Health/Check"
    for http2 in ([], ["--http2-prior-knowledge"]):
        st, h, body, _ = curl(*http2, "-X", "OPTIONS", "-H", "origin: https://console.example",
                              "-H", "access-control-request-method: POST",
                              "-H", "access-control-request-headers: content-type,x-grpc-web",
                              url)
        assert st == 204, (st, h)
        assert h["access-control-allow-origin"] == "https://console.example"
        assert "POST" in h["access-control-allow-methods"]
        assert h["access-control-allow-headers"] == "content-type,x-grpc-web"
    # A page from another origin gets no grant.
    st, h, body, _ = curl("-X", "OPTIONS", "-H", "origin: https://evil.example",
                          "-H", "access-control-request-method: POST", url)
    assert st == 403 and "access-control-allow-origin" not in h
    # The call itself carries the grant and exposes gRPC-Web's headers.
    st, h, msgs, tr = web_call(node, "/grpc.health.v1.Health/Check", b"",
                               "-H", "origin: http://localhost:3000")
    assert h["access-control-allow-origin"] == "http://localhost:3000"
    assert "grpc-status" in h["access-control-expose-headers"]
    st, h, msgs, tr = web_call(node, "/grpc.health.v1.Health/Check", b"",
                               "-H", "origin: https://evil.example")
    assert "access-control-allow-origin" not in h and tr["grpc-status"] == "0"


def test_no_cors_without_the_flag(shared_node):
    st, h, body, _ = curl("-X", "OPTIONS", "-H", "origin: https://console.example",
                          "-H", "access-control-request-method: POST",
                          f"http://127.0.0.1:{shared_node.port}/grpc.health.v1.Health/Check")
    assert st == 403 and "access-control-allow-origin" not in h
