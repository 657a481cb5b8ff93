"""Browser and JSON access on the node's own port (issue 20): HTTP/1.1 beside HTTP/2 on
one port (told apart by the preface, or by ALPN under TLS), /healthz, /metrics, and the
Connect protocol's unary calls in JSON and binary, over HTTP/1.1 and HTTP/2, through the
same call path as gRPC (method table, registry gate, deadline, namespace header). Also
the HTTP/1.1 side's limits against hostile peers: huge and slow headers, body floods,
slow bodies, unbounded pipelining, malformed requests.

Clients: curl (/usr/bin/curl) and python's http.client and raw sockets; every wait is
bounded."""

import base64
import http.client
import json
import re
import shutil
import signal
import socket
import subprocess
import time

import grpc
import pytest

from collector import collection_server_pb2 as cs_pb2
from collector import collection_server_pb2_grpc
from collections_util import NS_HEADER, SIMPLE, uniq
from stdgrpc.health.v1 import health_pb2, health_pb2_grpc
from tls_util import make_ca, make_cert

CURL = "/usr/bin/curl"
T = 10  # seconds: the bound of every wait


def curl(*args, timeout=T, stdin=None):
    """curl's status line and headers (-i) and body; returns (status, headers, body,
    status line)."""
    r = subprocess.run([CURL, "-sS", "-i", "--max-time", str(timeout), *args],
                       input=stdin, capture_output=True, timeout=timeout + 5)
    assert r.returncode == 0, r.stderr
    head, _, body = r.stdout.partition(b"\r\n\r\n")
    while head.startswith(b"HTTP/1.1 100"):  # Expect: 100-continue's interim answer
        head, _, body = body.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return status, headers, body, lines[0]


def connect_json(node, method, body, *extra, http2=False):
    args = ["-H", "content-type: application/json", "--data-binary", "@-", *extra,
            f"http://127.0.0.1:{node.port}/{method}"]
    if http2:
        args.insert(0, "--http2-prior-knowledge")
    status, headers, raw, line = curl(*args, stdin=json.dumps(body).encode())
    return status, headers, json.loads(raw) if raw else None, line


def raw_exchange(port, data, timeout=T, chunks=None):
    """Sends data (or chunks, with pauses) and reads until the peer closes or timeout;
    returns (bytes read, closed_by_peer)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        for piece, pause in chunks or [(data, 0)]:
            s.sendall(piece)
            time.sleep(pause)
        out = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                d = s.recv(65536)
            except socket.timeout:
                return out, False
            except ConnectionResetError:
                return out, True
            if not d:
                return out, True
            out += d
        return out, False
    finally:
        s.close()


def grpc_healthy(node):
    with grpc.insecure_channel(node.address) as ch:
        r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
        return r.status == health_pb2.HealthCheckResponse.SERVING


@pytest.fixture(scope="module", autouse=True)
def need_curl():
    if not shutil.which(CURL):
        pytest.fail("curl is not installed (make deps installs it)")


# ---------------------------------------------------------------------------------------
# /healthz and one port for both protocols


def test_healthz_over_http1_and_http2_on_the_grpc_port(shared_node):
    status, headers, body, line = curl(f"http://127.0.0.1:{shared_node.port}/healthz")
    assert line.startswith("HTTP/1.1 200") and body == b"ok\n"
    status, headers, body, line = curl("--http2-prior-knowledge",
                                       f"http://127.0.0.1:{shared_node.port}/healthz")
    assert line.startswith("HTTP/2 200") and body == b"ok\n"
    # gRPC on the same port, unchanged.
    assert grpc_healthy(shared_node)
    # Only GET; unknown paths are 404.
    assert curl("-X", "POST", f"http://127.0.0.1:{shared_node.port}/healthz")[0] == 405
    assert curl(f"http://127.0.0.1:{shared_node.port}/nothing-here")[0] == 404


def test_keep_alive_serves_many_requests_on_one_connection(shared_node):
    c = http.client.HTTPConnection("127.0.0.1", shared_node.port, timeout=T)
    c.connect()
    sock = c.sock
    for _ in range(5):
        c.request("GET", "/healthz")
        r = c.getresponse()
        assert r.status == 200 and r.read() == b"ok\n"
        assert c.sock is sock  # the same socket: kept alive
    c.request("POST", "/collector.CollectionService/Meta", body=b"{}",
              headers={"content-type": "application/json"})
    r = c.getresponse()
    assert r.status == 200 and "serverVersion" in json.loads(r.read())
    assert c.sock is sock
    c.close()


def test_healthz_turns_503_while_the_node_drains(servers):
    node = servers.node("--grace-seconds", "5")
    s = socket.create_connection(("127.0.0.1", node.port), timeout=T)
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # the rest after SIGTERM
        time.sleep(0.2)
        node.proc.send_signal(signal.SIGTERM)
        node.wait_for_line(r"stopping", T, stream="stderr")
        s.sendall(b"\r\n")
        out = b""
        deadline = time.monotonic() + T
        while b"\r\n\r\n" not in out or not out.endswith(b"\n"):
            assert time.monotonic() < deadline, out
            d = s.recv(4096)
            if not d:
                break
            out += d
        assert out.startswith(b"HTTP/1.1 503"), out
        assert b"Connection: close" in out and out.endswith(b"draining\n")
    finally:
        s.close()
    assert node.stop(timeout=T) == 0


# ---------------------------------------------------------------------------------------
# Connect: JSON and binary, every unary method through the call path


def test_connect_json_create_get_and_errors(shared_node):
    ns, name = uniq("ns"), uniq()
    st, h, body, _ = connect_json(shared_node, "collector.CollectionRepo/CreateCollection", {
        "collection": {"namespace": ns, "name": name,
                       "messageType": {"messageName": SIMPLE}}})
    assert st == 200 and h["content-type"] == "application/json", body
    item = {"@type": "type.googleapis.com/grpc.testing.SimpleRequest", "responseSize": 7,
            "payload": {"body": "aGVsbG8="}}
    st, _, body, _ = connect_json(shared_node, "collector.CollectionService/Create",
                                  {"namespace": ns, "collectionName": name, "id": "r1",
                                   "item": item})
    assert st == 200 and body["id"] == "r1", body
    st, _, body, _ = connect_json(shared_node, "collector.CollectionService/Get",
                                  {"namespace": ns, "collectionName": name, "id": "r1"})
    assert st == 200 and body["item"] == item, body
    # The same over HTTP/2 (curl with prior knowledge): the same answer.
    st, h, body2, line = connect_json(shared_node, "collector.CollectionService/Get",
                                      {"namespace": ns, "collectionName": name, "id": "r1"},
                                      http2=True)
    assert line.startswith("HTTP/2 200") and body2 == body
    # A gRPC client sees what Connect wrote.
    with grpc.insecure_channel(shared_node.address) as ch:
        r = collection_server_pb2_grpc.CollectionServiceStub(ch).Get(
            cs_pb2.GetRequest(namespace=ns, collection_name=name, id="r1"), timeout=T)
        assert r.item.type_url.endswith("grpc.testing.SimpleRequest")
    # Errors: Connect's JSON body with the code's name and its HTTP status.
    st, h, body, _ = connect_json(shared_node, "collector.CollectionService/Get",
                                  {"namespace": ns, "collectionName": name, "id": "nope"})
    assert st == 404 and body["code"] == "not_found" and "message" in body, body
    assert h["content-type"] == "application/json"
    st, _, body, _ = connect_json(shared_node, "collector.CollectionService/Get",
                                  {"namespace": ns, "collectionName": name, "idd": "x"})
    assert st == 400 and body["code"] == "invalid_argument" and "idd" in body["message"], body
    st, _, body, _ = connect_json(shared_node, "collector.CollectionRepo/CreateCollection", {
        "collection": {"namespace": ns, "name": name, "messageType": {"messageName": SIMPLE}}})
    assert st == 409 and body["code"] == "already_exists", body
    for http2 in (False, True):
        st, _, body, _ = connect_json(shared_node, "collector.Nothing/Here", {}, http2=http2)
        assert st == 501 and body["code"] == "unimplemented", body


def test_connect_json_large_messages_both_ways(shared_node):
    """Requests and responses past the inline bound (64 KiB) are transcoded on the pool:
    the same answers as small ones, and the node keeps answering meanwhile."""
    ns, name = uniq("big"), uniq()
    st, _, body, _ = connect_json(shared_node, "collector.CollectionRepo/CreateCollection", {
        "collection": {"namespace": ns, "name": name, "messageType": {"messageName": SIMPLE}}})
    assert st == 200, body
    blob = base64.b64encode(bytes(range(256)) * 1024).decode()  # 256 KiB -> 349 KB of JSON
    item = {"@type": "type.googleapis.com/grpc.testing.SimpleRequest",
            "payload": {"body": blob}}
    for i in range(3):
        st, _, body, _ = connect_json(shared_node, "collector.CollectionService/Create",
                                      {"namespace": ns, "collectionName": name, "id": f"b{i}",
                                       "item": item}, http2=bool(i % 2))
        assert st == 200 and body["id"] == f"b{i}", body
    for i in range(3):
        st, _, body, _ = connect_json(shared_node, "collector.CollectionService/Get",
                                      {"namespace": ns, "collectionName": name, "id": f"b{i}"},
                                      http2=bool(i % 2))
        assert st == 200 and body["item"] == item
    # A bad big request: the transcoder's error, from the pool.
    st, _, body, _ = connect_json(shared_node, "collector.CollectionService/Create",
                                  {"namespace": ns, "collectionName": name, "id": "bad",
                                   "item": item, "nope": blob})
    assert st == 400 and body["code"] == "invalid_argument" and "nope" in body["message"]


def test_connect_binary_proto(shared_node):
    req = cs_pb2.MetaRequest().SerializeToString()
    for http2 in ([], ["--http2-prior-knowledge"]):
        st, h, body, _ = curl(*http2, "-H", "content-type: application/proto", "--data-binary",
                              req, f"http://127.0.0.1:{shared_node.port}/"
                              "collector.CollectionService/Meta")
        assert st == 200 and h["content-type"] == "application/proto"
        assert cs_pb2.MetaResponse.FromString(body).server_version
    # Bytes that are no protobuf: the decode's error, as Connect JSON.
    st, h, body, _ = curl("-H", "content-type: application/proto", "--data-binary", "\xff\xff",
                          f"http://127.0.0.1:{shared_node.port}/collector.CollectionService/Get")
    assert st >= 400 and json.loads(body)["code"] in ("internal", "invalid_argument")


def test_connect_deadline_and_namespace_header_ride_the_call_path(shared_node):
    # connect-timeout-ms is the call's deadline: 0 has passed when the call starts.
    st, _, body, _ = connect_json(shared_node, "collector.CollectionService/Meta", {},
                                  "-H", "connect-timeout-ms: 0")
    assert st == 504 and body["code"] == "deadline_exceeded", body
    st, _, body, _ = connect_json(shared_node, "collector.CollectionService/Meta", {},
                                  "-H", "connect-timeout-ms: 5000")
    assert st == 200
    # x-collector-namespace reaches the call path: the registry's gate checks the method
    # against that namespace (where nothing is registered), as for a gRPC call.
    ns, name = uniq("hdr"), uniq()
    req = {"collection": {"name": name, "messageType": {"messageName": SIMPLE}}}
    st, _, body, _ = connect_json(shared_node, "collector.CollectionRepo/CreateCollection",
                                  req, "-H", f"{NS_HEADER}: {ns}")
    assert st == 501 and ns in body["message"], body
    st, _, body, _ = connect_json(shared_node, "collector.CollectionRepo/CreateCollection", req)
    assert st == 200, body
    # Streaming methods are gRPC's alone.
    st, _, body, _ = connect_json(shared_node, "grpc.health.v1.Health/Watch", {})
    assert st == 501 and body["code"] == "unimplemented", body


def test_connect_goes_through_the_registry_gate(servers):
    """The gate (registry validation) runs on Connect calls as on gRPC ones: a service
    that the registry does not know in the call's namespace is refused before any
    handler, in both protocols alike."""
    node = servers.node()
    path = "zoo.Keeper/Feed"
    st, _, body, _ = connect_json(node, path, {}, "-H", f"{NS_HEADER}: zoo")
    with grpc.insecure_channel(node.address) as ch:
        with pytest.raises(grpc.RpcError) as e:
            ch.unary_unary("/" + path)(b"", timeout=T, metadata=((NS_HEADER, "zoo"),))
    assert body["code"] == e.value.code().name.lower(), (body, e.value)
    assert body["message"] == e.value.details(), (body, e.value.details())


def test_connect_reaches_a_registered_service_with_a_handler(servers):
    """A registered service served by another process: Connect JSON is transcoded with
    the registered descriptor and the call is forwarded like a gRPC one (metadata both
    ways, the namespace header, the handler's trailers as trailer- headers)."""
    from registry_util import Reg
    from test_handler_forward import NS as FNS, Handler, register
    handler = Handler()
    try:
        node = servers.node()
        assert register(Reg(node), FNS, handler.endpoint).status.code == 0
        for http2 in (False, True):
            st, h, body, _ = connect_json(node, "fwd.Echo/Unary", {"text": "hi", "n": 1},
                                          "-H", f"{NS_HEADER}: {FNS}", "-H", "x-token: tok",
                                          http2=http2)
            assert st == 200, body
            assert body == {"text": f"hi|tok|1|{FNS}", "n": 2}, body
            assert h["x-init"] == "i1" and h["trailer-x-trail"] == "t1", h
        st, h, body, _ = connect_json(node, "fwd.Echo/Fail", {"text": "x"},
                                      "-H", f"{NS_HEADER}: {FNS}")
        assert (st, body["code"], body["message"]) == (400, "failed_precondition", "no way: x")
        assert h["trailer-x-why"] == "because", h
    finally:
        handler.stop()


# ---------------------------------------------------------------------------------------
# /metrics


def parse_prometheus(text):
    """Prometheus text format 0.0.4 into {(name, frozenset(labels)): value}; checks every
    sample line's shape and that each family is TYPEd before its samples."""
    out, typed = {}, set()
    sample = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
    label = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
    for ln in text.splitlines():
        if ln.startswith("# TYPE "):
            typed.add(ln.split()[2])
            continue
        if ln.startswith("#") or not ln:
            continue
        m = sample.match(ln)
        assert m, ln
        name, labels = m.group(1), m.group(3) or ""
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in typed or family in typed, ln
        pairs = frozenset(label.findall(labels))
        assert len(pairs) == labels.count('="'), ln
        out[(name, pairs)] = float(m.group(4))
    return out


def scrape(node):
    st, h, body, _ = curl(f"http://127.0.0.1:{node.port}/metrics")
    assert st == 200 and h["content-type"].startswith("text/plain; version=0.0.4")
    return parse_prometheus(body.decode())


def test_metrics_count_calls_by_method_and_code(servers):
    node = servers.node()
    meta = "collector.CollectionService/Meta"
    get = "collector.CollectionService/Get"
    for _ in range(3):
        assert connect_json(node, meta, {})[0] == 200
    with grpc.insecure_channel(node.address) as ch:
        stub = collection_server_pb2_grpc.CollectionServiceStub(ch)
        for _ in range(2):
            stub.Meta(cs_pb2.MetaRequest(), timeout=T)
        with pytest.raises(grpc.RpcError):
            stub.Get(cs_pb2.GetRequest(namespace="n", collection_name="c", id="x"), timeout=T)
    assert connect_json(node, get, {"namespace": "n", "collectionName": "c", "id": "y"})[0] == 404
    # A connection held open shows in the gauge while it lives.
    held = http.client.HTTPConnection("127.0.0.1", node.port, timeout=T)
    held.request("GET", "/healthz")
    assert held.getresponse().read() == b"ok\n"
    m = scrape(node)
    ok = frozenset({("method", meta), ("code", "OK")})
    nf = frozenset({("method", get), ("code", "NOT_FOUND")})
    assert m[("collector_calls_total", ok)] == 5, m
    assert m[("collector_calls_total", nf)] == 2, m
    count = frozenset({("method", meta)})
    assert m[("collector_call_duration_seconds_count", count)] == 5
    inf = frozenset({("method", meta), ("le", "+Inf")})
    assert m[("collector_call_duration_seconds_bucket", inf)] == 5
    assert m[("collector_connections_open", frozenset({("protocol", "http1")}))] >= 2
    assert m[("collector_connections_total", frozenset({("protocol", "h2")}))] >= 1
    assert m[("collector_streams_total", frozenset())] >= 9  # the calls, /healthz, /metrics
    assert ("collector_pool_queue_depth", frozenset()) in m
    held.close()
    # Counters only grow; the scrapes themselves are no calls.
    again = scrape(node)
    assert again[("collector_calls_total", ok)] == 5


# ---------------------------------------------------------------------------------------
# TLS: ALPN picks the protocol


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    if not shutil.which("openssl"):
        pytest.fail("the openssl program is not installed")
    d = tmp_path_factory.mktemp("pki")
    make_ca(d)
    return {"ca": d / "test-ca.pem", "server": make_cert(d, "server", "localhost")}


def test_tls_alpn_http1_and_h2(servers, pki):
    cert, key = pki["server"]
    node = servers.node("--tls-cert", cert, "--tls-key", key)
    url = f"https://localhost:{node.port}/healthz"
    st, _, body, line = curl("--cacert", str(pki["ca"]), "--http1.1", url)
    assert line.startswith("HTTP/1.1 200") and body == b"ok\n"
    st, _, body, line = curl("--cacert", str(pki["ca"]), "--http2", url)
    assert line.startswith("HTTP/2 200") and body == b"ok\n"
    st, h, body, line = curl("--cacert", str(pki["ca"]), "--http1.1", "-H",
                             "content-type: application/json", "--data-binary", "{}",
                             f"https://localhost:{node.port}/collector.CollectionService/Meta")
    assert st == 200 and "serverVersion" in json.loads(body)
    creds = grpc.ssl_channel_credentials(root_certificates=pki["ca"].read_bytes())
    with grpc.secure_channel(f"localhost:{node.port}", creds) as ch:
        r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert r.status == health_pb2.HealthCheckResponse.SERVING


def test_no_http1_flag_serves_http2_alone(servers):
    node = servers.node("--no-http1")
    out, closed = raw_exchange(node.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", timeout=5)
    assert not out.startswith(b"HTTP/1.1"), out
    assert grpc_healthy(node)


# ---------------------------------------------------------------------------------------
# Hostile HTTP/1.1 peers


def test_huge_headers_get_431_and_close(shared_node):
    out, closed = raw_exchange(shared_node.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" +
                               b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 1000)
                                        for i in range(40)) + b"\r\n")
    assert out.startswith(b"HTTP/1.1 431") and b"Connection: close" in out and closed, out
    # One line longer than everything: the same.
    out, closed = raw_exchange(shared_node.port, b"GET /" + b"a" * 40000 + b" HTTP/1.1\r\n")
    assert out.startswith(b"HTTP/1.1 431") and closed, out
    assert grpc_healthy(shared_node)


def test_slow_headers_get_408(servers):
    node = servers.node("--header-timeout", "1")
    t0 = time.monotonic()
    out, closed = raw_exchange(node.port, None, timeout=8, chunks=[
        (b"GET /healthz HTTP/1.1\r\n", 0.3), (b"Host: x\r\n", 0.3), (b"X-Slow: 1\r\n", 0)])
    assert out.startswith(b"HTTP/1.1 408") and closed, out
    assert time.monotonic() - t0 < 6
    assert grpc_healthy(node)


def test_body_floods_are_refused(servers):
    node = servers.node("--max-message-bytes", "65536", "--body-timeout", "1")
    path = b"/collector.CollectionService/Meta"
    # A declared length over the limit: 413 before a byte of the body is read.
    out, closed = raw_exchange(node.port, b"POST " + path + b" HTTP/1.1\r\nHost: x\r\n"
                               b"Content-Type: application/json\r\n"
                               b"Content-Length: 100000000\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 413") and closed, out
    # Chunked, no declared length: counted as it comes.
    chunk = b"%x\r\n%s\r\n" % (32768, b" " * 32768)
    out, closed = raw_exchange(node.port, b"POST " + path + b" HTTP/1.1\r\nHost: x\r\n"
                               b"Content-Type: application/json\r\n"
                               b"Transfer-Encoding: chunked\r\n\r\n" + chunk * 4)
    assert out.startswith(b"HTTP/1.1 413") and closed, out
    # A body that stops arriving: 408 after --body-timeout.
    t0 = time.monotonic()
    out, closed = raw_exchange(node.port, b"POST " + path + b" HTTP/1.1\r\nHost: x\r\n"
                               b"Content-Type: application/json\r\n"
                               b"Content-Length: 10\r\n\r\n{}", timeout=8)
    assert out.startswith(b"HTTP/1.1 408") and closed, out
    assert time.monotonic() - t0 < 6
    # A body at the limit is fine (and an empty JSON message is one).
    st, _, body, _ = curl("-H", "content-type: application/json", "--data-binary",
                          "{}" + " " * 60000,
                          f"http://127.0.0.1:{node.port}/collector.CollectionService/Meta")
    assert st == 200, body
    assert grpc_healthy(node)


def test_pipelining_is_answered_in_order_and_bounded(shared_node):
    reqs = b"".join(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" for _ in range(10))
    reqs += b"GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    out, closed = raw_exchange(shared_node.port, reqs)
    answers = re.findall(rb"HTTP/1.1 (\d+)", out)
    assert answers == [b"200"] * 10 + [b"404"] and closed, out
    # Far more than the bound, in one go: some answered, then the connection is closed
    # instead of buffering the rest.
    flood = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 20000  # 680 KB
    s = socket.create_connection(("127.0.0.1", shared_node.port), timeout=T)
    got, t0 = b"", time.monotonic()
    try:
        try:
            s.sendall(flood)
        except (BrokenPipeError, ConnectionResetError):
            pass
        while time.monotonic() - t0 < T:
            try:
                d = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not d:
                break
            got += d
    finally:
        s.close()
    n = got.count(b"HTTP/1.1 200")
    assert 1 <= n < 20000, n
    assert time.monotonic() - t0 < T
    assert grpc_healthy(shared_node)


def test_malformed_requests_get_400_and_close(shared_node):
    for bad in (b"BLAH / HTTP/1.1\r\n\r\n", b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
                b"GET / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                b"\x16\x03\x01\x00\x05hello", b"GET / HTTP/9.9\r\n\r\n"):
        out, closed = raw_exchange(shared_node.port, bad)
        assert re.match(rb"HTTP/1.1 (400|505)", out) and closed, (bad, out)
    # gRPC needs trailers: over HTTP/1.1 it is refused, not half served.
    out, closed = raw_exchange(shared_node.port, b"POST /collector.CollectionService/Meta "
                               b"HTTP/1.1\r\nHost: x\r\nContent-Type: application/grpc\r\n"
                               b"Content-Length: 5\r\nConnection: close\r\n\r\n\0\0\0\0\0")
    assert out.startswith(b"HTTP/1.1 415") and closed, out
    # HTTP/1.0 works, and closes; with keep-alive asked for, it is said back.
    out, closed = raw_exchange(shared_node.port, b"GET /healthz HTTP/1.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200") and out.endswith(b"ok\n") and closed, out
    out, closed = raw_exchange(shared_node.port, b"GET /healthz HTTP/1.0\r\n"
                               b"Connection: keep-alive\r\n\r\n" * 2, timeout=2)
    assert out.count(b"Connection: keep-alive\r\n") == 2 and not closed, out
    assert grpc_healthy(shared_node)
