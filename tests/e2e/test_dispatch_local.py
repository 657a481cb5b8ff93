"""CollectiveDispatcher on one node: Serve and Dispatch run a unary method of the node's own
services by name, input and output in Anys, as a call of their own to the node over
loopback (so the registry's validation, limits and deadline apply). A node without links:
Dispatch to another collector id is UNAVAILABLE. Links and routing: test_mesh.py."""

from pathlib import Path

import grpc
import pytest
from google.protobuf import any_pb2

from collections_util import (
    DEFAULT_NS, SIMPLE, Api, C, assert_ok, call, cs_pb2, expect_error, pack, sr, uniq,
)
from collector import common_pb2, dispatcher_pb2, dispatcher_pb2_grpc
from registry_util import hdr

PREFIX = "type.googleapis.com/"


@pytest.fixture(scope="module")
def api(shared_node):
    return Api(shared_node)


@pytest.fixture(scope="module")
def disp(shared_node):
    return dispatcher_pb2_grpc.CollectiveDispatcherStub(shared_node.channel())


@pytest.fixture(scope="module")
def node_id(shared_node):
    return (Path(shared_node.data_dir) / "node-id").read_text().strip()


def any_of(msg):
    a = any_pb2.Any()
    a.Pack(msg)
    return a


def serve_req(service, method, msg, ns=""):
    return dispatcher_pb2.ServeRequest(namespace=ns, service=common_pb2.ServiceTypeRef(service_name=service),
                                       method_name=method, input=any_of(msg) if msg is not None else None)


def dispatch_req(service, method, msg, ns="", target=""):
    return dispatcher_pb2.DispatchRequest(namespace=ns, service=common_pb2.ServiceTypeRef(service_name=service),
                                          method_name=method, input=any_of(msg), target_collector_id=target)


def test_serve_runs_the_nodes_methods(api, disp, node_id):
    coll = api.coll()
    create = cs_pb2.CreateRequest(namespace=DEFAULT_NS, collection_name=coll.name, item=pack(sr(body="hi")), id="a")
    r = assert_ok(call(disp.Serve, serve_req("collector.CollectionService", "Create", create)))
    assert r.executor_id == node_id
    assert r.output.type_url == PREFIX + "collector.CreateResponse"
    out = cs_pb2.CreateResponse.FromString(r.output.value)
    assert out.id == "a"
    # The record is there, read back directly and through Serve by the bare service name.
    assert coll.get("a").value == pack(sr(body="hi")).value
    get = cs_pb2.GetRequest(namespace=DEFAULT_NS, collection_name=coll.name, id="a")
    r = assert_ok(call(disp.Serve, serve_req("CollectionService", "Get", get)))
    assert cs_pb2.GetResponse.FromString(r.output.value).item.value == pack(sr(body="hi")).value


def test_dispatch_runs_locally(api, disp, node_id):
    coll = api.coll()
    create = cs_pb2.CreateRequest(namespace=DEFAULT_NS, collection_name=coll.name, item=pack(sr()), id="d")
    for target in ("", node_id):
        r = assert_ok(call(disp.Dispatch, dispatch_req("collector.CollectionService", "Create",
                                                       create if not target else cs_pb2.CreateRequest(
                                                           namespace=DEFAULT_NS, collection_name=coll.name,
                                                           item=pack(sr()), id="e"),
                                                       target=target)))
        assert r.handled_by_collector_id == node_id
        assert r.output.type_url == PREFIX + "collector.CreateResponse"
    assert {i for i in ("d", "e") if coll.get(i)} == {"d", "e"}
    # No links: another collector is unreachable.
    e = expect_error(C.UNAVAILABLE, disp.Dispatch, dispatch_req("collector.CollectionService", "Create", create,
                                                                target="some-other-node"))
    assert "some-other-node" in e.details()


def test_inner_errors_come_back(api, disp):
    coll = api.coll()
    get = cs_pb2.GetRequest(namespace=DEFAULT_NS, collection_name=coll.name, id="missing")
    e = expect_error(C.NOT_FOUND, disp.Serve, serve_req("collector.CollectionService", "Get", get))
    assert "missing" in e.details()


def test_validation_applies_in_the_namespace(api, disp):
    ns = uniq("unserved")
    get = cs_pb2.GetRequest(namespace=ns, collection_name="x", id="a")
    e = expect_error(C.UNIMPLEMENTED, disp.Serve, serve_req("collector.CollectionService", "Get", get, ns=ns))
    assert ns in e.details()
    # Registered there (upstream's way, by name), the call runs and finds no collection.
    api.serve_in(ns)
    expect_error(C.NOT_FOUND, disp.Serve, serve_req("collector.CollectionService", "Get", get, ns=ns))


@pytest.mark.parametrize("kind", ["no-service", "no-method", "unknown-service", "unknown-method", "streaming",
                                  "wrong-type", "no-input"])
def test_bad_requests(disp, kind):
    get = cs_pb2.GetRequest(namespace=DEFAULT_NS, collection_name="x", id="a")
    req, code = {
        "no-service": (serve_req("", "Get", get), C.INVALID_ARGUMENT),
        "no-method": (serve_req("collector.CollectionService", "", get), C.INVALID_ARGUMENT),
        "unknown-service": (serve_req("shop.Nothing", "Get", get), C.NOT_FOUND),
        "unknown-method": (serve_req("collector.CollectionService", "Fly", get), C.NOT_FOUND),
        "streaming": (serve_req("collector.CollectionService", "GetFile", get), C.INVALID_ARGUMENT),
        "wrong-type": (serve_req("collector.CollectionService", "Get", cs_pb2.ListRequest()), C.INVALID_ARGUMENT),
        "no-input": (serve_req("collector.CollectionService", "Get", None), C.INVALID_ARGUMENT),
    }[kind]
    e = expect_error(code, disp.Serve, req)
    assert e.details()


def _nested(depth, inner):
    """Serve(Serve(...(inner)...)) depth times."""
    req = inner
    for _ in range(depth):
        req = serve_req("collector.CollectiveDispatcher", "Serve", req)
    return req


def test_nested_runs_are_bounded(api, disp):
    coll = api.coll()
    get = cs_pb2.GetRequest(namespace=DEFAULT_NS, collection_name=coll.name, id="n")
    coll.put(sr(body="deep"), id="n")
    inner = serve_req("collector.CollectionService", "Get", get)
    # Three levels: each answer is a ServeResponse holding the next.
    r = assert_ok(call(disp.Serve, _nested(3, inner)))
    for _ in range(3):
        assert r.output.type_url == PREFIX + "collector.ServeResponse"
        r = dispatcher_pb2.ServeResponse.FromString(r.output.value)
    assert cs_pb2.GetResponse.FromString(r.output.value).item.value == pack(sr(body="deep")).value
    # Past the hop limit (8): refused, never looping.
    e = expect_error(C.FAILED_PRECONDITION, disp.Serve, _nested(9, inner))
    assert "limit" in e.details()
    # A client cannot claim hops it has not made to get past it: the count only grows.
    e = expect_error(C.FAILED_PRECONDITION, disp.Serve, inner, metadata=(("x-collector-hops", "8"),))
    expect_error(C.INVALID_ARGUMENT, disp.Serve, inner, metadata=(("x-collector-hops", "many"),))


def test_connect_names_the_caller(disp):
    e = expect_error(C.INVALID_ARGUMENT, disp.Connect, dispatcher_pb2.ConnectRequest(address="127.0.0.1:1"))
    assert "collector_id" in e.details()
