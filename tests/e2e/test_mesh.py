"""The mesh on loopback (issue 17): links made by Link and --peer, kept across restarts,
shared namespaces, health and reconnection, routing (local, targeted, remote, two hops),
load balancing, the one retry of a call that surely did not run, loop refusal, and the
refusals of bad links. Every node is a real collector process."""

import signal
import time

import grpc
import pytest

from collector import dispatcher_pb2
from collections_util import C, expect_error
from mesh_util import (
    code_of, disp, dispatch, handled_by, link, peers, start, state, wait_state, wait_until,
)


def test_link_is_usable_both_ways_and_shares_namespaces(servers):
    a = start(servers, "node-a", "--mesh-namespaces", "default,shop,orders")
    b = start(servers, "node-b", "--mesh-namespaces", "default,orders,stock")
    r = link(a, b)
    assert r.target_collector_id == "node-b"
    assert sorted(r.shared_namespaces) == ["default", "orders"]
    assert r.connection_id
    wait_state(a, "node-b", "up")
    wait_state(b, "node-a", "up")
    ca, la = peers(a)["node-b"]
    cb, lb = peers(b)["node-a"]
    assert (la["direction"], lb["direction"]) == ("outbound", "inbound")
    assert sorted(ca.namespaces) == sorted(cb.namespaces) == ["default", "orders"]
    assert (la["connection_id"], lb["connection_id"]) == (r.connection_id, r.connection_id)
    assert ca.address == b.address and cb.address == a.address
    # Both sides route over the one link.
    assert handled_by(a, target="node-b") == "node-b"
    assert handled_by(b, target="node-a") == "node-a"


def test_link_with_namespaces_of_its_own(servers):
    a = start(servers, "node-a")
    b = start(servers, "node-b", "--mesh-namespaces", "default,orders")
    r = link(a, b, namespaces=["orders", "stock"])
    assert list(r.shared_namespaces) == ["orders"]
    # The link does not share "default": no route there, in either direction.
    wait_state(a, "node-b", "up")
    e = expect_error(C.UNAVAILABLE, lambda req, **kw: dispatch(a, target="node-b"), None)
    assert "node-b" in e.details()


def test_routing_local_targeted_and_remote(servers):
    a = start(servers, "node-a")
    b = start(servers, "node-b")
    link(a, b)
    wait_state(a, "node-b", "up")
    assert handled_by(a) == "node-a"  # served here: local first
    assert handled_by(a, hints={"prefer": "local"}) == "node-a"
    assert handled_by(a, target="node-a") == "node-a"
    assert handled_by(a, target="node-b") == "node-b"
    assert handled_by(a, hints={"prefer": "remote"}) == "node-b"
    out = dispatch(a, target="node-b").output
    assert out.type_url.endswith("collector.DiscoverResponse")
    expect_error(C.INVALID_ARGUMENT, lambda req, **kw: dispatch(a, hints={"prefer": "sideways"}), None)
    e = expect_error(C.UNAVAILABLE, lambda req, **kw: dispatch(a, target="node-zzz"), None)
    assert "node-zzz" in e.details()
    # Inner errors come back from the far node as they are.
    e = expect_error(C.NOT_FOUND, lambda req, **kw: dispatch(a, target="node-b", service="collector.Nothing"),
                     None)
    assert "collector.Nothing" in e.details()
    # What was dispatched is counted and kept.
    r = disp(a).ListDispatches(dispatcher_pb2.ListDispatchesRequest(limit=3), timeout=10)
    assert len(r.dispatches) == 3
    assert r.dispatches[0].service.service_name == "collector.Nothing"
    assert r.dispatches[0].result_status.message
    counts = {(c.collector_id, c.method): c.calls for c in r.counts}
    assert counts[("node-b", "/collector.CollectionRepo/Discover")] >= 3
    assert counts[("node-a", "/collector.CollectionRepo/Discover")] >= 3


def test_two_hops_and_what_a_node_knows(servers):
    a = start(servers, "node-a")
    b = start(servers, "node-b")
    c = start(servers, "node-c")
    link(a, b)
    link(b, c)
    wait_state(b, "node-c", "up")
    # A learns of C from B's advertisements (at B's next Connect to... A's heartbeat to B).
    wait_until("a reaches node-c through node-b", lambda: "node-c" in peers(a))
    cc, labels = peers(a)["node-c"]
    assert not cc.is_direct_peer and labels["via"] == "node-b"
    assert handled_by(a, target="node-c") == "node-c"
    assert handled_by(c, target="node-a") == "node-a"  # back through b: inbound links route too


def test_loops_and_hop_limits_are_refused(servers):
    a = start(servers, "node-a")
    b = start(servers, "node-b")
    link(a, b)
    wait_state(a, "node-b", "up")
    # A call that passed node-b already does not go there again.
    e = expect_error(C.FAILED_PRECONDITION,
                     lambda req, **kw: dispatch(b, metadata=[("x-collector-visited", "node-a,node-b")]), None)
    assert "loop" in e.details()
    e = expect_error(C.FAILED_PRECONDITION, lambda req, **kw: dispatch(a, target="node-b",
                                                                          metadata=[("x-collector-hops", "8")]), None)
    assert "limit" in e.details()
    expect_error(C.INVALID_ARGUMENT, lambda req, **kw: dispatch(a, metadata=[("x-collector-hops", "x")]), None)
    # A forwarded call carries the path: a route through a-b-a is refused at a.
    e = expect_error(C.FAILED_PRECONDITION,
                     lambda req, **kw: dispatch(b, target="node-a", metadata=[("x-collector-visited", "node-a")]),
                     None)


def test_links_are_kept_across_restarts(servers, tmp_path):
    b = start(servers, "node-b")
    a = start(servers, "node-a", data_dir=tmp_path / "a")
    link(a, b)
    wait_state(a, "node-b", "up")
    port = a.port
    assert a.stop() == 0
    a = start(servers, "node-a", listen=f"127.0.0.1:{port}", data_dir=tmp_path / "a")
    wait_state(a, "node-b", "up", timeout=5)
    assert handled_by(a, target="node-b") == "node-b"
    # Unlink: gone now, and after the next restart too.
    r = disp(a).Unlink(dispatcher_pb2.UnlinkRequest(collector_id="node-b"), timeout=10)
    assert r.removed
    assert "node-b" not in peers(a)
    assert not disp(a).Unlink(dispatcher_pb2.UnlinkRequest(address=b.address), timeout=10).removed
    assert a.stop() == 0
    a = start(servers, "node-a", listen=f"127.0.0.1:{port}", data_dir=tmp_path / "a")
    time.sleep(1.5)
    assert "node-b" not in peers(a)
    # B forgets the inbound link once its heartbeats stop (down after 3 s).
    wait_state(b, "node-a", "down", timeout=6)


def test_peer_flag_links_at_start(servers):
    b = start(servers, "node-b")
    a = start(servers, "node-a", "--peer", b.address)
    wait_state(a, "node-b", "up", timeout=5)
    wait_state(b, "node-a", "up", timeout=5)
    assert peers(a)["node-b"][1]["direction"] == "outbound"


def test_a_dead_peer_is_down_within_3s_and_back_after_restart(servers):
    a = start(servers, "node-a")
    b = start(servers, "node-b")
    link(a, b)
    wait_state(a, "node-b", "up")
    port = b.port
    b.proc.send_signal(signal.SIGKILL)
    b.proc.wait()
    t0 = time.monotonic()
    wait_state(a, "node-b", "down", timeout=3)
    assert time.monotonic() - t0 <= 3
    assert code_of(lambda: dispatch(a, target="node-b")) == grpc.StatusCode.UNAVAILABLE
    # Routing skips it: the call runs here instead of failing.
    assert handled_by(a, hints={"prefer": "remote"}) == "node-a"
    time.sleep(2)  # a few failed heartbeats: the backoff grows
    b = start(servers, "node-b", listen=f"127.0.0.1:{port}", data_dir=b.data_dir)
    t0 = time.monotonic()
    wait_state(a, "node-b", "up", timeout=5)
    assert handled_by(a, target="node-b") == "node-b"


def test_load_is_spread_over_peers(servers):
    a = start(servers, "node-a")
    b = start(servers, "node-b")
    c = start(servers, "node-c")
    link(a, b)
    link(a, c)
    wait_state(a, "node-b", "up")
    wait_state(a, "node-c", "up")
    for lb in ("round_robin", "least_loaded"):
        seen = [handled_by(a, hints={"prefer": "remote", "lb": lb}) for _ in range(20)]
        assert set(seen) == {"node-b", "node-c"}, seen
        assert abs(seen.count("node-b") - seen.count("node-c")) <= 2, seen


def test_a_call_that_surely_did_not_run_is_retried_once_elsewhere(servers):
    a = start(servers, "node-a")
    b = start(servers, "node-b")
    c = start(servers, "node-c")
    link(a, b)
    link(a, c)
    wait_state(a, "node-b", "up")
    wait_state(a, "node-c", "up")
    # Right after a heartbeat to node-c, so that the next one is a second away.
    seen_at = peers(a)["node-c"][0].last_seen.ToNanoseconds()
    wait_until("a heartbeat to node-c", lambda: peers(a)["node-c"][0].last_seen.ToNanoseconds() != seen_at,
               step=0.01)
    c.proc.send_signal(signal.SIGKILL)
    c.proc.wait()
    # Once a has seen its connection to node-c close (a call written on it before that may
    # have run, and is not retried), and until its next heartbeat, node-c still looks up:
    # the first call sent there finds the port closed (it surely did not run), goes to
    # node-b instead, and marks node-c down.
    time.sleep(0.2)
    assert state(a, "node-c") == "up"
    seen = [handled_by(a, hints={"prefer": "remote", "lb": "round_robin"}) for _ in range(6)]
    assert set(seen) == {"node-b"}, seen
    assert state(a, "node-c") == "down"
    r = disp(a).ListDispatches(dispatcher_pb2.ListDispatchesRequest(), timeout=10)
    assert all(d.result_status.code == 0 for d in r.dispatches[:6])


@pytest.mark.parametrize("what", ["self", "not-a-collector", "nothing-there", "bad-address"])
def test_bad_links_are_refused_and_not_kept(servers, what, tmp_path):
    a = start(servers, "node-a", data_dir=tmp_path / "a")
    target, code = {
        "self": (a.address, C.FAILED_PRECONDITION),
        "not-a-collector": (servers.interop().address, C.FAILED_PRECONDITION),
        "nothing-there": ("127.0.0.1:1", C.UNAVAILABLE),
        "bad-address": ("nowhere", C.INVALID_ARGUMENT),
    }[what]
    e = expect_error(code, disp(a).Link, dispatcher_pb2.LinkRequest(address=target))
    assert target in e.details() or what == "bad-address"
    assert peers(a) == {}
    port = a.port
    assert a.stop() == 0
    a = start(servers, "node-a", listen=f"127.0.0.1:{port}", data_dir=tmp_path / "a")
    time.sleep(0.5)
    assert peers(a) == {}


def test_bad_connects_are_refused(servers):
    a = start(servers, "node-a")
    d = disp(a)
    expect_error(C.INVALID_ARGUMENT, d.Connect, dispatcher_pb2.ConnectRequest(address="127.0.0.1:9"))
    expect_error(C.INVALID_ARGUMENT, d.Connect,
                 dispatcher_pb2.ConnectRequest(address="", metadata={"collector_id": "x"}))
    expect_error(C.FAILED_PRECONDITION, d.Connect,
                 dispatcher_pb2.ConnectRequest(address="127.0.0.1:9", metadata={"collector_id": "node-a"}))
    assert peers(a) == {}
    # A well-formed Connect from a node that then goes quiet: inbound, and down after 3 s.
    r = d.Connect(dispatcher_pb2.ConnectRequest(address="127.0.0.1:9", namespaces=["default"],
                                                metadata={"collector_id": "ghost"}), timeout=10)
    assert r.target_collector_id == "node-a" and list(r.shared_namespaces) == ["default"]
    assert state(a, "ghost") == "up"
    wait_state(a, "ghost", "down", timeout=5)


def test_kill_under_load_fails_only_the_calls_in_flight(servers):
    """A client calls through node-a, which spreads the calls over node-b and node-c; node-c
    is killed mid-run: only the calls in flight there fail (at most one per client thread),
    the rest succeed, and node-c is back in the rotation after it restarts."""
    import threading

    a = start(servers, "node-a")
    b = start(servers, "node-b")
    c = start(servers, "node-c")
    link(a, b)
    link(a, c)
    wait_state(a, "node-b", "up")
    wait_state(a, "node-c", "up")
    threads, stop = 4, threading.Event()
    results = [[] for _ in range(threads)]

    def client(k):
        while not stop.is_set():
            try:
                results[k].append(handled_by(a, hints={"prefer": "remote", "lb": "round_robin"}))
            except grpc.RpcError as e:
                results[k].append(e.code())

    workers = [threading.Thread(target=client, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    try:
        time.sleep(1.0)
        c.proc.send_signal(signal.SIGKILL)
        c.proc.wait()
        time.sleep(1.5)
    finally:
        stop.set()
        for w in workers:
            w.join(10)
    flat = [r for rs in results for r in rs]
    failed = [r for r in flat if not isinstance(r, str)]
    assert len(flat) > 100, len(flat)
    assert flat.count("node-c") > 10 and flat.count("node-b") > 10
    assert len(failed) <= threads, failed
    assert all(f == grpc.StatusCode.UNAVAILABLE for f in failed), failed
    # Every call after the kill that did not fail ran on node-b.
    assert set(rs[-1] for rs in results) == {"node-b"}
    c = start(servers, "node-c", listen=f"127.0.0.1:{c.port}", data_dir=c.data_dir)
    wait_state(a, "node-c", "up", timeout=8)
    seen = {handled_by(a, hints={"prefer": "remote", "lb": "round_robin"}) for _ in range(6)}
    assert seen == {"node-b", "node-c"}
