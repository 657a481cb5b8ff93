"""Registered services with a handler process, across the mesh: Serve and Dispatch run them
through their handler; a node that has the service registered without a handler sends
Dispatch and direct calls (unary and streaming) to a linked node that has one, also two
hops away; peers learn what each other serves from their heartbeats. A cap on calls
forwarded to one node answers RESOURCE_EXHAUSTED beyond it."""

import threading
import time

import grpc
import pytest
from google.protobuf import any_pb2

from collector import common_pb2, dispatcher_pb2
from mesh_util import disp, link, peers, start, wait_state, wait_until
from registry_util import Reg
from test_handler_forward import MSG, Handler, register, stub

NS = "meshfwd"


@pytest.fixture(scope="module")
def handler():
    h = Handler()
    yield h
    h.stop()


def echo_any(text, n=1):
    a = any_pb2.Any()
    a.Pack(MSG(text=text, n=n))
    return a


def run(node, method="Unary", target="", serve=False, text="hi", timeout=10, hints=None, n=1):
    svc = common_pb2.ServiceTypeRef(service_name="fwd.Echo")
    if serve:
        r = disp(node).Serve(dispatcher_pb2.ServeRequest(namespace=NS, service=svc, method_name=method,
                                                          input=echo_any(text, n)), timeout=timeout)
        return r.executor_id, r.output
    r = disp(node).Dispatch(dispatcher_pb2.DispatchRequest(namespace=NS, service=svc, method_name=method,
                                                           input=echo_any(text, n), target_collector_id=target,
                                                           routing_hints=hints or {}), timeout=timeout)
    return r.handled_by_collector_id, r.output


def ns_channel(node):
    return grpc.insecure_channel(node.address, options=[("grpc.use_local_subchannel_pool", 1)])


MD = (("x-collector-namespace", NS),)


def test_serve_and_dispatch_run_a_registered_service_through_its_handler(servers, handler):
    a = start(servers, "node-a")
    assert register(Reg(a), NS, handler.endpoint).status.code == 0
    for serve in (True, False):
        by, out = run(a, serve=serve, text="x")
        assert by == "node-a"
        assert out.type_url.endswith("fwd.Msg")
        got = MSG.FromString(out.value)
        assert got.text.startswith("x|") and got.n == 2
    # A streaming method is refused by Serve, a wrong input type too.
    with pytest.raises(grpc.RpcError) as e:
        run(a, method="Spread", serve=True)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_node_without_the_handler_routes_to_one_with_it(servers, handler):
    a = start(servers, "node-a")
    b = start(servers, "node-b")
    assert register(Reg(a), NS).status.code == 0  # known here, handled elsewhere
    assert register(Reg(b), NS, handler.endpoint).status.code == 0
    link(a, b)
    wait_state(a, "node-b", "up")
    wait_until("a learns what b serves", lambda: f"{NS}/fwd.Echo" in peers(a)["node-b"][0].capabilities)
    by, out = run(a, text="routed")
    assert by == "node-b" and MSG.FromString(out.value).text.startswith("routed|")
    # Direct calls to a, unary and streaming, go to b and on to the handler.
    with ns_channel(a) as ch:
        r = stub(ch, "Unary")(MSG(text="direct", n=4), metadata=MD, timeout=10)
        assert r.text.startswith("direct|") and r.n == 5
        got = [m.n for m in stub(ch, "Spread", "unary_stream")(MSG(text="s", n=5), metadata=MD, timeout=10)]
        assert got == [0, 1, 2, 3, 4]
        r = stub(ch, "Collect", "stream_unary")(iter([MSG(text=t) for t in "abc"]), metadata=MD, timeout=10)
        assert r.text == "a,b,c"
    # Unlinked: nothing serves it from a any more.
    disp(a).Unlink(dispatcher_pb2.UnlinkRequest(collector_id="node-b"), timeout=10)
    with pytest.raises(grpc.RpcError) as e:
        run(a)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    with ns_channel(a) as ch, pytest.raises(grpc.RpcError) as e:
        stub(ch, "Unary")(MSG(text="direct"), metadata=MD, timeout=10)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_two_hops_to_the_handler(servers, handler):
    a = start(servers, "node-a")
    b = start(servers, "node-b")
    c = start(servers, "node-c")
    for n in (a, b):
        assert register(Reg(n), NS).status.code == 0
    assert register(Reg(c), NS, handler.endpoint).status.code == 0
    link(a, b)
    link(b, c)
    wait_state(b, "node-c", "up")
    wait_until("a learns that b reaches the handler",
               lambda: f"{NS}/fwd.Echo" in peers(a).get("node-b", (None, {}))[0].capabilities
               or "node-c" in peers(a))
    wait_until("a's advertisement from b lists c's service", lambda: run_ok(a))
    by, out = run(a, text="far")
    assert by == "node-c"
    with ns_channel(a) as ch:
        r = stub(ch, "Unary")(MSG(text="far-direct"), metadata=MD, timeout=10)
        assert r.text.startswith("far-direct|")
        # Two hops more than the client's call: a -> b -> c -> handler.
        assert r.text.split("|")[2] == "3"


def run_ok(node):
    try:
        return run(node, timeout=3)[0] == "node-c"
    except grpc.RpcError:
        return False


def test_calls_forwarded_to_one_node_are_capped(servers, handler):
    a = start(servers, "node-a", "--mesh-max-outstanding", "2")
    b = start(servers, "node-b")
    assert register(Reg(a), NS).status.code == 0
    assert register(Reg(b), NS, handler.endpoint).status.code == 0
    link(a, b)
    wait_state(a, "node-b", "up")
    wait_until("a learns what b serves", lambda: f"{NS}/fwd.Echo" in peers(a)["node-b"][0].capabilities)
    # Slow answers after n ms: two of them hold both places, the third is refused at once.
    results = []

    def slow():
        try:
            run(a, method="Slow", n=1500, timeout=5)
            results.append("ok")
        except grpc.RpcError as e:
            results.append(e.code())

    threads = [threading.Thread(target=slow) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    with pytest.raises(grpc.RpcError) as e:
        run(a, method="Slow", n=1500, timeout=5)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "node-b" not in e.value.details() or "calls" in e.value.details()
    assert time.monotonic() - t0 < 1.0
    for t in threads:
        t.join(10)
    assert results == ["ok", "ok"]
    # Once they ended, a call goes through again.
    assert run(a)[0] == "node-b"


def test_a_cancelled_dispatch_cancels_the_call_two_nodes_away(servers, handler):
    a = start(servers, "node-a")
    b = start(servers, "node-b")
    assert register(Reg(a), NS).status.code == 0
    assert register(Reg(b), NS, handler.endpoint).status.code == 0
    link(a, b)
    wait_state(a, "node-b", "up")
    wait_until("a learns what b serves", lambda: f"{NS}/fwd.Echo" in peers(a)["node-b"][0].capabilities)
    handler.slow_cancelled.clear()
    svc = common_pb2.ServiceTypeRef(service_name="fwd.Echo")
    fut = disp(a).Dispatch.future(dispatcher_pb2.DispatchRequest(
        namespace=NS, service=svc, method_name="Slow", input=echo_any("c", 4000)), timeout=10)
    time.sleep(0.5)
    assert not fut.done()
    t0 = time.monotonic()
    fut.cancel()
    # a cancels its forwarded Dispatch, b cancels its call to the handler.
    assert handler.slow_cancelled.wait(3), "the handler never saw the cancel"
    assert time.monotonic() - t0 < 3


def test_what_a_node_serves_is_told_again_when_it_changes(servers, handler):
    a = start(servers, "node-a")
    b = start(servers, "node-b")
    link(a, b)
    wait_state(a, "node-b", "up")
    key = f"{NS}/fwd.Echo"
    assert key not in peers(a)["node-b"][0].capabilities
    assert register(Reg(b), NS, handler.endpoint).status.code == 0
    wait_until("a learns of b's new handler", lambda: key in peers(a)["node-b"][0].capabilities, timeout=5)
    Reg(b).unregister_service(NS, "fwd.Echo")
    wait_until("a hears that b has it no more", lambda: key not in peers(a)["node-b"][0].capabilities, timeout=5)
