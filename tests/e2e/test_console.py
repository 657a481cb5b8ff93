"""CollectorConsole.Display: every view of the node as a Struct a console can draw, with a
summary line; parts not built yet (the worker) empty with a note. Stop and Reset are not
built yet: UNIMPLEMENTED."""

import grpc
import pytest
from google.protobuf import json_format

from collections_util import Api, C, expect_error, uniq
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
    assert data["workflows"] == [] and "not built" in data["note"]
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
        assert data[field] == [] and "not built" in data["note"] and "not built" in summary


def test_bad_display_type_and_unbuilt_admin_methods(shared_node):
    stub = console_pb2_grpc.CollectorConsoleStub(shared_node.channel())
    expect_error(C.INVALID_ARGUMENT, stub.Display, D(display_type=42))
    expect_error(C.UNIMPLEMENTED, stub.Stop, console_pb2.StopRequest())
    expect_error(C.UNIMPLEMENTED, stub.Reset, console_pb2.ResetRequest(confirm=True))
