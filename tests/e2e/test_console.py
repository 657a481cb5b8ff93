"""CollectorConsole: Display, every view of the node as a Struct a console can draw, with a
summary line (workflows as test_workflows.py shows them); Stop and Reset, admin
operations refused without --admin, Reset without confirm, and what is not built yet
(stopping one component, resetting the registry) UNIMPLEMENTED."""

import grpc
import pytest
from google.protobuf import json_format

from collections_util import Api, C, expect_error, sr, uniq
from collector import console_pb2, console_pb2_grpc
from mesh_util import link, start, wait_state

D = console_pb2.DisplayRequest


def display(node, kind, ns=""):
    stub = console_pb2_grpc.CollectorConsoleStub(node.channel())
    r = stub.Display(D(display_type=kind, namespace=ns), timeout=10)
    assert r.summary
    return json_format.MessageToDict(r.display_data), r.summary


def test_overview_collections_registries_connections(servers):
    a = start(servers, "node-a")
    b = start(servers, "node-b")
    api = Api(a)
    ns = uniq("cons")
    api.serve_in(ns)
    api.coll(ns=ns, prefix="shown")
    link(a, b)
    wait_state(a, "node-b", "up")
    data, summary = display(a, D.OVERVIEW)
    assert data["node_id"] == "node-a" and data["version"] and data["uptime_seconds"] >= 0
    assert any(c["namespace"] == ns for c in data["collections"])
    assert [p["id"] for p in data["peers"]] == ["node-b"] and data["peers"][0]["state"] == "up"
    assert data["workflows"] == [] and data["counts"]["RUNNING"] == 0
    assert "node-a" in summary and "1/1" in summary
    data, summary = display(a, D.COLLECTIONS, ns)
    assert [c["namespace"] for c in data["collections"]] == [ns] and data["more"] is False
    assert "1 collection" in summary
    data, _ = display(a, D.REGISTRIES, ns)
    names = {s["name"] for s in data["services"]}
    assert "collector.CollectionService" in names
    assert all(s["namespace"] == ns for s in data["services"])
    data, summary = display(a, D.CONNECTIONS)
    assert data["peers"][0]["direction"] == "outbound" and data["peers"][0]["address"] == b.address
    assert "1 linked node" in summary
    for kind, field in ((D.WORKFLOWS, "workflows"), (D.EXECUTIONS, "executions")):
        data, summary = display(a, kind)
        assert data[field] == [] and "not built" not in summary


def test_bad_display_type(shared_node):
    stub = console_pb2_grpc.CollectorConsoleStub(shared_node.channel())
    expect_error(C.INVALID_ARGUMENT, stub.Display, D(display_type=42))


def test_admin_operations_need_admin(shared_node):
    stub = console_pb2_grpc.CollectorConsoleStub(shared_node.channel())
    api = Api(shared_node)
    coll = api.coll()
    expect_error(C.PERMISSION_DENIED, stub.Stop, console_pb2.StopRequest(), mentions=("--admin",))
    expect_error(C.PERMISSION_DENIED, stub.Reset,
                 console_pb2.ResetRequest(scope=console_pb2.ResetRequest.COLLECTIONS, confirm=True))
    assert coll.describe()  # still there
    assert shared_node.alive()


def test_reset(servers):
    node = start(servers, "node-a", "--admin")
    stub = console_pb2_grpc.CollectorConsoleStub(node.channel())
    api = Api(node)
    doomed_ns, kept_ns = uniq("doomed"), uniq("kept")
    for ns in (doomed_ns, kept_ns):
        api.serve_in(ns)
    doomed = [api.coll(ns=doomed_ns) for _ in range(2)]
    for c in doomed:
        c.put(sr(body="x"), id="1")
        c.put(sr(body="y"), id="2")
    kept = api.coll(ns=kept_ns)
    kept.put(sr(body="k"), id="1")
    R = console_pb2.ResetRequest
    expect_error(C.FAILED_PRECONDITION, stub.Reset, R(scope=R.COLLECTIONS, namespace=doomed_ns),
                 mentions=("confirm",))
    assert doomed[0].describe()
    expect_error(C.UNIMPLEMENTED, stub.Reset, R(scope=R.REGISTRIES, namespace=doomed_ns, confirm=True))
    expect_error(C.UNIMPLEMENTED, stub.Reset, R(scope=R.EVERYTHING, confirm=True))
    r = stub.Reset(R(scope=R.COLLECTIONS, namespace=doomed_ns, confirm=True), timeout=10)
    assert list(r.reset_components) == ["collections"]
    assert dict(r.deleted_counts) == {"collections": 2, "records": 4, "files": 0}
    for c in doomed:
        api.assert_absent(doomed_ns, c.name)
    assert kept.get("1")
    data, _ = display(node, D.COLLECTIONS, doomed_ns)
    assert data["collections"] == []
    # The node's own state is not a user's collection: the registry still answers.
    api.serve_in(uniq("after"))
    r = stub.Reset(R(scope=R.WORKFLOWS, confirm=True), timeout=10)
    assert list(r.reset_components) == ["workflows"]
    assert dict(r.deleted_counts) == {"workflows": 0, "executions": 0}


def test_stop(servers):
    node = start(servers, "node-a", "--admin")
    stub = console_pb2_grpc.CollectorConsoleStub(node.channel())
    S = console_pb2.StopRequest
    expect_error(C.UNIMPLEMENTED, stub.Stop, S(target=S.DISPATCHER))
    expect_error(C.INVALID_ARGUMENT, stub.Stop, S(graceful=True, timeout_seconds=-1))
    r = stub.Stop(S(target=S.ALL, graceful=True, timeout_seconds=2), timeout=10)
    assert list(r.stopped_components) == ["node"]
    node.proc.wait(10)
    assert node.proc.returncode == 0
