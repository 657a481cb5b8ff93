"""TLS on the node's own reactor (io/tls.c, issue 21, first part): grpcio over TLS and
mutual TLS, ALPN h2, the minimum version, a plaintext client refused without harm, bad
certificate settings refused at start, and the certificate read again on SIGHUP without
dropping the connections that run."""

import shutil
import signal
import subprocess
import time

import grpc
import pytest

from collections_util import Api, sr
from conftest import COLLECTOR_BIN, with_io
from stdgrpc.health.v1 import health_pb2, health_pb2_grpc
from tls_util import make_ca, make_cert

SERVING = health_pb2.HealthCheckResponse.SERVING


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    if not shutil.which("openssl"):
        pytest.skip("the openssl program is not installed")
    d = tmp_path_factory.mktemp("pki")
    ca = make_ca(d)
    srv = make_cert(d, "server", "localhost")
    client = make_cert(d, "client", "alice")
    make_ca(d, "other-ca")
    stranger = make_cert(d, "stranger", "mallory", ca="other-ca")
    return {"dir": d, "ca": ca, "server": srv, "client": client, "stranger": stranger}


def tls_node(servers, pki, *extra):
    cert, key = pki["server"]
    return servers.node("--tls-cert", cert, "--tls-key", key, *extra)


def secure(node, pki, client=None, target=None):
    creds = grpc.ssl_channel_credentials(
        root_certificates=pki["ca"].read_bytes(),
        private_key=client[1].read_bytes() if client else None,
        certificate_chain=client[0].read_bytes() if client else None)
    # The certificate names localhost and 127.0.0.1: dial the name.
    return grpc.secure_channel(target or f"localhost:{node.port}", creds)


def check(ch, timeout=5):
    return health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=timeout).status


def s_client(node, *args, stdin=b""):
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{node.port}", *args],
                       input=stdin, capture_output=True, timeout=15)
    return r.stdout.decode("utf-8", "replace") + r.stderr.decode("utf-8", "replace")


def test_grpc_over_tls(servers, pki):
    node = tls_node(servers, pki)
    with secure(node, pki) as ch:
        assert check(ch) == SERVING
    # 127.0.0.1 is in the certificate too.
    with secure(node, pki, target=f"127.0.0.1:{node.port}") as ch:
        assert check(ch) == SERVING
    assert node.alive()


def test_collections_over_tls(servers, pki):
    node = tls_node(servers, pki)
    ch = secure(node, pki)
    node.channel = lambda options=(): ch  # the Api helper takes the node's channel
    api = Api(node)
    coll = api.coll()
    coll.put(sr(body="over tls"), id="x")
    assert coll.get("x").value
    ch.close()


def test_alpn_and_versions(servers, pki):
    node = tls_node(servers, pki, "--tls-min-version", "1.3")
    out = s_client(node, "-alpn", "h2", "-CAfile", str(pki["ca"]))
    assert "ALPN protocol: h2" in out, out
    assert "TLSv1.3" in out
    out = s_client(node, "-tls1_2", "-CAfile", str(pki["ca"]))
    assert "ALPN protocol" not in out and ("alert" in out or "error" in out.lower()), out
    # HTTP/1.1 is served on the same port (browsers, curl: test_http1.py); a client that
    # offers only a protocol the node does not speak is refused.
    out = s_client(node, "-alpn", "http/1.1", "-CAfile", str(pki["ca"]))
    assert "ALPN protocol: http/1.1" in out, out
    out = s_client(node, "-alpn", "spdy/3", "-CAfile", str(pki["ca"]))
    assert "no application protocol" in out or "alert" in out, out
    with secure(node, pki) as ch:
        assert check(ch) == SERVING


def test_plaintext_client_on_the_tls_port_is_refused_cleanly(servers, pki):
    node = tls_node(servers, pki)
    with grpc.insecure_channel(f"127.0.0.1:{node.port}") as ch:
        with pytest.raises(grpc.RpcError) as e:
            check(ch, timeout=3)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    with secure(node, pki) as ch:
        assert check(ch) == SERVING


def test_mutual_tls(servers, pki):
    node = tls_node(servers, pki, "--tls-client-ca", pki["ca"])
    with secure(node, pki, client=pki["client"]) as ch:
        assert check(ch) == SERVING
    for who in (None, pki["stranger"]):
        with secure(node, pki, client=who) as ch:
            with pytest.raises(grpc.RpcError) as e:
                check(ch, timeout=3)
            assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert node.alive()


@pytest.mark.parametrize("what", ["missing-cert", "key-mismatch", "no-key", "bad-version"])
def test_bad_tls_settings_stop_the_start(tmp_path, pki, what):
    cert, key = pki["server"]
    other_key = pki["client"][1]
    args = {
        "missing-cert": ["--tls-cert", tmp_path / "nothing.pem", "--tls-key", key],
        "key-mismatch": ["--tls-cert", cert, "--tls-key", other_key],
        "no-key": ["--tls-cert", cert],
        "bad-version": ["--tls-cert", cert, "--tls-key", key, "--tls-min-version", "1.1"],
    }[what]
    r = subprocess.run(with_io([COLLECTOR_BIN, "--listen", "127.0.0.1:0", "--data", tmp_path / "d",
                                *args]), capture_output=True, text=True, timeout=20)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "tls" in r.stderr.lower(), r.stderr


def test_sighup_reads_the_certificate_again(servers, pki, tmp_path):
    cert, key = pki["server"]
    live_cert, live_key = tmp_path / "live.pem", tmp_path / "live.key"
    shutil.copy(cert, live_cert)
    shutil.copy(key, live_key)
    node = servers.node("--tls-cert", live_cert, "--tls-key", live_key)
    ch = secure(node, pki)
    assert check(ch) == SERVING
    assert "CN = localhost" in s_client(node, "-CAfile", str(pki["ca"]))
    new_cert, new_key = make_cert(pki["dir"], "renewed", "localhost-renewed")
    shutil.copy(new_cert, live_cert)
    shutil.copy(new_key, live_key)
    node.proc.send_signal(signal.SIGHUP)
    node.wait_for_line(r"certificate, key and client CA read again", timeout=5, stream="stderr")
    assert "CN = localhost-renewed" in s_client(node, "-CAfile", str(pki["ca"]))
    assert check(ch) == SERVING  # the connection made before goes on
    # A broken file on SIGHUP keeps the old certificate.
    live_key.write_text("not a key\n")
    node.proc.send_signal(signal.SIGHUP)
    node.wait_for_line(r"was not reloaded", timeout=5, stream="stderr")
    assert "CN = localhost-renewed" in s_client(node, "-CAfile", str(pki["ca"]))
    ch.close()
    assert node.alive()


def tls_peer(servers, pki, node_id, cert=None, *extra):
    cert, key = cert or pki["server"]
    n = servers.node("--id", node_id, "--tls-cert", cert, "--tls-key", key,
                     "--tls-client-ca", pki["ca"], *extra)
    n.node_id = node_id
    return n


def mesh_stub(node, pki, client):
    from collector import dispatcher_pb2_grpc
    return dispatcher_pb2_grpc.CollectiveDispatcherStub(secure(node, pki, client=client))


def test_a_mesh_over_mutual_tls(servers, pki):
    """Two nodes with certificates from one CA, each requiring client certificates from it:
    links, heartbeats, Dispatch to the other node and Serve (a call of the node to itself)
    all go over TLS, each side presenting its certificate."""
    from collector import common_pb2, dispatcher_pb2
    from google.protobuf import any_pb2
    from collector import collection_repo_pb2
    a = tls_peer(servers, pki, "node-a")
    b = tls_peer(servers, pki, "node-b")
    da, db = mesh_stub(a, pki, pki["client"]), mesh_stub(b, pki, pki["client"])
    r = da.Link(dispatcher_pb2.LinkRequest(address=f"127.0.0.1:{b.port}"), timeout=10)
    assert r.target_collector_id == "node-b"
    inp = any_pb2.Any()
    inp.Pack(collection_repo_pb2.DiscoverRequest())
    svc = common_pb2.ServiceTypeRef(service_name="collector.CollectionRepo")
    for target in ("node-b", "node-a"):
        d = da.Dispatch(dispatcher_pb2.DispatchRequest(service=svc, method_name="Discover", input=inp,
                                                       target_collector_id=target), timeout=10)
        assert d.handled_by_collector_id == target
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        peers = {c.id: dict(c.metadata.labels) for c in
                 db.ListPeers(dispatcher_pb2.ListPeersRequest(), timeout=5).collectors}
        if peers.get("node-a", {}).get("state") == "up":
            break
        time.sleep(0.1)
    assert peers["node-a"]["state"] == "up"


def test_a_node_with_a_certificate_from_another_ca_cannot_link(servers, pki):
    from collector import dispatcher_pb2
    a = tls_peer(servers, pki, "node-a")
    m = tls_peer(servers, pki, "node-m", pki["stranger"])
    with pytest.raises(grpc.RpcError) as e:
        mesh_stub(a, pki, pki["client"]).Link(dispatcher_pb2.LinkRequest(address=f"127.0.0.1:{m.port}"),
                                              timeout=10)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert a.alive() and m.alive()


def test_handshakes_in_progress_are_bounded(servers, pki):
    """Silent or junk TLS clients hold at most --max-tls-handshakes handshakes; beyond it a
    connection is closed at once, and the slots come back when they leave or time out."""
    import socket
    import ssl
    node = tls_node(servers, pki, "--max-tls-handshakes", "3", "--handshake-timeout", "2", "--threads", "1")
    silent = [socket.create_connection(("127.0.0.1", node.port), timeout=5) for _ in range(3)]
    time.sleep(0.3)

    def handshake():
        ctx = ssl.create_default_context(cafile=str(pki["ca"]))
        ctx.set_alpn_protocols(["h2"])
        with socket.create_connection(("127.0.0.1", node.port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                return tls.selected_alpn_protocol()

    with pytest.raises((ConnectionError, ssl.SSLError, OSError)):
        handshake()  # a fourth one is closed at once
    silent.pop().close()
    time.sleep(0.3)
    assert handshake() == "h2"  # a slot came back
    # The others time out (2 s) and free theirs; a flood of junk never takes the node down.
    time.sleep(2.5)
    junk = []
    for _ in range(50):
        try:
            s = socket.create_connection(("127.0.0.1", node.port), timeout=5)
            s.sendall(b"\x16\x03\x01\x00\x05junk!")
            junk.append(s)
        except OSError:
            pass
    for s in junk + silent:
        s.close()
    time.sleep(0.5)
    with secure(node, pki) as ch:
        assert check(ch) == SERVING
    assert node.alive()


def test_plaintext_beyond_the_loopback_only_when_asked(servers, pki, tmp_path):
    """Without a certificate the node serves plaintext on the loopback alone: another
    address is refused at start unless --insecure; with TLS it is served."""
    from conftest import COLLECTOR_BIN
    r = subprocess.run(with_io([COLLECTOR_BIN, "--listen", "0.0.0.0:0", "--data", tmp_path / "d"]),
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 2 and "--insecure" in r.stderr and "plaintext" in r.stderr
    assert not (tmp_path / "d").exists()  # refused before the data directory is made
    plain = servers.node("--insecure", listen="0.0.0.0:0")
    with grpc.insecure_channel(f"127.0.0.1:{plain.port}") as ch:
        assert check(ch) == SERVING
    node = servers.node("--tls-cert", pki["server"][0], "--tls-key", pki["server"][1], listen="0.0.0.0:0")
    with secure(node, pki) as ch:
        assert check(ch) == SERVING
