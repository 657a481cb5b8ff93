"""The mesh across network namespaces (netlab.py): four nodes, each in a namespace of its
own on one bridge, linked A-B, A-C, B-D, C-D (A is not linked to D). Calls from A to D go
through B or C; a cut link (the node's bridge port down, as a pulled cable) is seen down
within 3 s, routing moves to the healthy path, and comes back after the link does. A delay
(tc netem) bounds a forwarded call by the caller's deadline; skipped where the kernel has
no sch_netem, as the lab says."""

import time

import grpc
import pytest

from collector import dispatcher_pb2
from conftest import COLLECTOR_BIN, _finish, start_server
from mesh_util import disp, dispatch, handled_by, link, peers, state, wait_state, wait_until
from netlab import NetLab

PORT = 50051
IDS = ["node-a", "node-b", "node-c", "node-d"]


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    with NetLab(len(IDS)) as lab:
        procs = []
        try:
            for i, node_id in enumerate(IDS):
                argv = lab.exec_argv(i, [COLLECTOR_BIN, "--listen", f"{lab.addr(i)}:{PORT}", "--data",
                                         tmp_path_factory.mktemp(f"mesh-{node_id}"), "--threads", 1,
                                         "--id", node_id, "--auth", "off", "--insecure"])
                sp = start_server(argv, f"{node_id} in {lab.nodes[i]}")
                sp.node_id = node_id
                procs.append(sp)
            a, b, c, d = procs
            link(a, b)
            link(a, c)
            link(b, d)
            link(c, d)
            for x, y in ((a, "node-b"), (a, "node-c"), (b, "node-d"), (c, "node-d")):
                wait_state(x, y, "up")
            wait_until("a knows node-d through b and c", lambda: "node-d" in peers(a))
            lab.nodes_procs = procs
            yield lab
        finally:
            _finish(procs)


def forwarded(node):
    """Dispatches this node has forwarded or run, by the node that ran them."""
    r = disp(node).ListDispatches(dispatcher_pb2.ListDispatchesRequest(), timeout=5)
    return {c.collector_id: c.calls for c in r.counts if c.method.endswith("/Discover")}


def to_d(a, n):
    return [handled_by(a, target="node-d", hints={"lb": "round_robin"}, timeout=5) for _ in range(n)]


def test_two_hops_spread_over_both_paths(mesh):
    a, b, c, d = mesh.nodes_procs

    # a learns that node-d is behind b and behind c from each of them at its next exchange
    # (the fixture waits for the first path only): within a few heartbeats both are known,
    # and from then on a batch of ten calls spreads over both.
    def spread():
        before_b, before_c = forwarded(b).get("node-d", 0), forwarded(c).get("node-d", 0)
        assert set(to_d(a, 10)) == {"node-d"}
        return (forwarded(b).get("node-d", 0) - before_b >= 3 and
                forwarded(c).get("node-d", 0) - before_c >= 3)

    wait_until("ten calls from node-a to node-d spread over node-b and node-c", spread,
               timeout=15, step=0.2)


def test_a_cut_link_moves_routing_and_comes_back(mesh):
    a, b, c, d = mesh.nodes_procs
    mesh.cut(1)  # node-b's cable
    try:
        t0 = time.monotonic()
        wait_state(a, "node-b", "down", timeout=3.5)
        assert time.monotonic() - t0 <= 3.5
        wait_state(d, "node-b", "down", timeout=4)  # d hears no heartbeat from b
        before_c = forwarded(c).get("node-d", 0)
        assert set(to_d(a, 10)) == {"node-d"}
        assert forwarded(c).get("node-d", 0) - before_c == 10
        e = None
        try:
            dispatch(a, target="node-b", timeout=3)
        except grpc.RpcError as err:
            e = err
        assert e is not None and e.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        mesh.restore(1)
    wait_state(a, "node-b", "up", timeout=20)
    wait_state(d, "node-b", "up", timeout=20)
    # Once a hears again from b that b reaches node-d, calls go both ways again.
    before_b = forwarded(b).get("node-d", 0)
    wait_until("routes through node-b again",
               lambda: set(to_d(a, 4)) == {"node-d"} and forwarded(b).get("node-d", 0) > before_b,
               timeout=10)


def test_a_slow_path_is_bounded_by_the_deadline(mesh):
    a, b, c, d = mesh.nodes_procs
    mesh.netem(3, delay_ms=400)  # the way to node-d (skips where the kernel has no netem)
    try:
        t0 = time.monotonic()
        try:
            dispatch(a, target="node-d", timeout=0.3)
            code = grpc.StatusCode.OK
        except grpc.RpcError as e:
            code = e.code()
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - t0 < 1.0
    finally:
        mesh.clear_netem(3)


def test_the_deadline_travels_with_the_forwarded_call(mesh):
    """node-d's cable is cut just before a call to it: the call hangs at the node in the
    middle, which must end its own forwarded call when the caller's deadline passes (it
    carries grpc-timeout), not when a heartbeat notices."""
    a, b, c, d = mesh.nodes_procs
    mesh.cut(3)
    try:
        t0 = time.monotonic()
        try:
            dispatch(a, target="node-d", timeout=0.5)
            code = grpc.StatusCode.OK
        except grpc.RpcError as e:
            code = e.code()
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - t0 < 1.5

        def middle_gave_up():
            for node in (b, c):
                r = disp(node).ListDispatches(dispatcher_pb2.ListDispatchesRequest(limit=1), timeout=5)
                last = r.dispatches[0] if r.dispatches else None
                if last and last.result_status.code != 0 and last.method_name == "Discover" \
                        and time.time() - last.completed_at.seconds < 5:
                    return True
            return False
        wait_until("the middle node ended its forwarded call at the deadline", middle_gave_up, timeout=1.5)
    finally:
        mesh.restore(3)
    wait_state(b, "node-d", "up", timeout=20)
    wait_state(c, "node-d", "up", timeout=20)
