"""CollectionService.Invoke: a unary method run once per item, the stored record as its
input (or once on `input`), routed as Dispatch routes; outputs in item order; the first
failing item fails the call and is named."""

import grpc
import pytest
from google.protobuf import any_pb2

from collections_util import DEFAULT_NS, Api, C, assert_ok, call, cs_pb2, expect_error, pack, sr
from collector import collection_repo_pb2, collection_server_pb2_grpc
from mesh_util import link, start, wait_state


@pytest.fixture(scope="module")
def api(shared_node):
    return Api(shared_node)


@pytest.fixture(scope="module")
def svc(shared_node):
    return collection_server_pb2_grpc.CollectionServiceStub(shared_node.channel())


def get_requests(api):
    """A collection of records, and a collection of GetRequests pointing at them."""
    data = api.coll()
    for i in range(5):
        data.put(sr(body=f"body-{i}"), id=f"r{i}")
    reqs = api.coll(type_name="collector.GetRequest")
    for i in (3, 1, 4):
        reqs.put(cs_pb2.GetRequest(namespace=DEFAULT_NS, collection_name=data.name, id=f"r{i}"), id=f"q{i}")
    return data, reqs


def invoke(svc, coll, ids, method="collector.CollectionService/Get", input=None):
    return svc.Invoke(cs_pb2.InvokeRequest(namespace=DEFAULT_NS, collection_name=coll.name if coll else "",
                                           method_name=method, item_ids=ids, input=input), timeout=10)


def test_invoke_runs_the_method_on_each_record_in_order(api, svc):
    data, reqs = get_requests(api)
    ids = ["q4", "q1", "q3", "q1"]
    r = assert_ok(invoke(svc, reqs, ids))
    assert len(r.outputs) == 4
    got = []
    for out in r.outputs:
        assert out.type_url.endswith("collector.GetResponse")
        got.append(cs_pb2.GetResponse.FromString(out.value).item.value)
    assert got == [pack(sr(body=f"body-{i}")).value for i in (4, 1, 3, 1)]
    # Both spellings of the method, the service bare.
    r = assert_ok(invoke(svc, reqs, ["q3"], method="CollectionService.Get"))
    assert len(r.outputs) == 1


def test_invoke_without_ids_runs_once_on_input(svc):
    a = any_pb2.Any()
    a.Pack(collection_repo_pb2.DiscoverRequest())
    r = assert_ok(invoke(svc, None, [], method="collector.CollectionRepo/Discover", input=a))
    assert len(r.outputs) == 1 and r.outputs[0].type_url.endswith("collector.DiscoverResponse")


def test_a_failing_item_fails_the_call_and_is_named(api, svc):
    data, reqs = get_requests(api)
    reqs.put(cs_pb2.GetRequest(namespace=DEFAULT_NS, collection_name=data.name, id="gone"), id="qbad")
    e = expect_error(C.NOT_FOUND, lambda req, **kw: invoke(svc, reqs, ["q1", "qbad", "q3"]), None)
    assert "qbad" in e.details() and "gone" in e.details()
    e = expect_error(C.NOT_FOUND, lambda req, **kw: invoke(svc, reqs, ["q1", "nope"]), None)
    assert "nope" in e.details()


@pytest.mark.parametrize("kind", ["no-service", "unknown-method", "wrong-type", "nothing", "too-many",
                                  "no-collection"])
def test_bad_invokes(api, svc, kind):
    data, reqs = get_requests(api)
    run = {
        "no-service": lambda: invoke(svc, reqs, ["q1"], method="Get"),
        "unknown-method": lambda: invoke(svc, reqs, ["q1"], method="collector.CollectionService/Fly"),
        "wrong-type": lambda: invoke(svc, data, ["r1"]),  # records of another type than GetRequest
        "nothing": lambda: invoke(svc, reqs, []),
        "too-many": lambda: invoke(svc, reqs, [f"q{i}" for i in range(1001)]),
        "no-collection": lambda: invoke(svc, None, ["q1"]),
    }[kind]
    code = {"unknown-method": C.NOT_FOUND, "no-collection": C.INVALID_ARGUMENT}.get(kind, C.INVALID_ARGUMENT)
    try:
        run()
    except grpc.RpcError as e:
        assert e.code() in (code, C.NOT_FOUND) if kind == "no-collection" else e.code() == code, (kind, e)
        assert len(e.details()) > 8
    else:
        pytest.fail(f"{kind}: succeeded")


def test_invoke_routes_like_dispatch(servers):
    a = start(servers, "node-a")
    b = start(servers, "node-b")
    link(a, b)
    wait_state(a, "node-b", "up")
    # The records live on a; the method runs where Dispatch would run it (here: locally).
    api_a = Api(a)
    data, reqs = get_requests(api_a)
    svc_a = collection_server_pb2_grpc.CollectionServiceStub(a.channel())
    r = assert_ok(invoke(svc_a, reqs, ["q1", "q4"]))
    assert len(r.outputs) == 2
