"""The node driven the way client code written against upstream Collector (the Go seeds)
drives it (issue 15): upstream's file names for the API files, bare service names,
methods registered by name only, upstream's id formats, top-level registered messages,
ListServices of an empty namespace, Discover and SearchCollections across every
namespace, and Route to a collection's own endpoint. Each changed behaviour has its
negative case beside it. Untyped collections are in test_upstream_untyped.py."""

import grpc
import pytest
from google.protobuf import descriptor_pb2, struct_pb2

from collections_util import (
    NS_HEADER, SIMPLE, Api, C, assert_ok, call, cm, cs_pb2, expect_error, pack, repo_pb2, uniq,
)
from collector import common_pb2, registry_pb2
from registry_util import (
    INT32, MESSAGE, STRING, Classes, Reg, animal_file, changed, field, hdr, map_entry, message, method,
    proto_file, service,
)
from stdgrpc.testing import messages_pb2
from test_reflection import VERSIONS, ask_once, check_closure, files_of, load_pool


@pytest.fixture(scope="module")
def reg(shared_node):
    return Reg(shared_node)


@pytest.fixture(scope="module")
def api(shared_node):
    return Api(shared_node)


def upstream_copy(module, name):
    """An API file as upstream's clients hold it: the same file under upstream's name."""
    fd = descriptor_pb2.FileDescriptorProto()
    module.DESCRIPTOR.CopyToProto(fd)
    fd.name = name
    return fd


def order_file(imports="common.proto"):
    """shop/order.proto, written against upstream: `import "common.proto";` and a field of
    collector.Metadata."""
    return proto_file("shop/order.proto", package="shop", deps=[imports], messages=[
        message("Order", field("sku", 1, STRING), field("qty", 2, INT32),
                field("meta", 3, MESSAGE, ".collector.Metadata")),
    ])


def proto_id(reg, ns, fd, deps=()):
    return assert_ok(call(reg.stub.RegisterProto, reg.proto_req(ns, fd, deps))).proto_id


def name_only(svc_name, *methods):
    """What upstream's Register*Service helpers send: methods with names and no types."""
    return descriptor_pb2.ServiceDescriptorProto(
        name=svc_name, method=[descriptor_pb2.MethodDescriptorProto(name=m) for m in methods])


def register_service(reg, ns, sd, fd=None):
    return assert_ok(call(reg.stub.RegisterService, reg.service_req(ns, sd, fd)))


def reflection_in(reg, ns):
    """Reflection for calls naming ns, registered the upstream way: the bare name, by
    method name only; it admits both /grpc.reflection.v1.ServerReflection/... and
    v1alpha's."""
    register_service(reg, ns, name_only("ServerReflection", "ServerReflectionInfo"))
    return ns


# ---------------------------------------------------------------------------------------
# 5. Upstream's file names


@pytest.mark.parametrize("given", ["bare", "with_upstream_copy"])
def test_import_common_proto_resolves_to_the_api_file(reg, api, given):
    ns = uniq("alias")
    deps = [upstream_copy(common_pb2, "common.proto")] if given == "with_upstream_copy" else []
    r = assert_ok(call(reg.stub.RegisterProto, reg.proto_req(ns, order_file(), deps)))
    assert list(r.registered_messages) == ["shop.Order"]
    # The type works: a collection of it stores and filters on the imported message.
    Order = Classes(order_file("collector/common.proto"))["shop.Order"]
    coll = api.coll("shop.Order", ns=ns)
    coll.put(pack(Order(sku="a1", qty=2, meta={"labels": {"k": "v"}})), id="o1")
    got = Order.FromString(coll.get("o1").value)
    assert got.meta.labels["k"] == "v"
    # The same file again is the same registration (the alias is stable).
    assert proto_id(reg, ns, order_file(), deps) == r.proto_id


def test_dispatch_proto_is_the_dispatcher_file(reg):
    ns = uniq("alias")
    fd = proto_file("shop/route.proto", package="shop", deps=["dispatch.proto"], messages=[
        message("Hop", field("req", 1, MESSAGE, ".collector.DispatchRequest"))])
    assert list(assert_ok(call(reg.stub.RegisterProto, reg.proto_req(ns, fd))).registered_messages) == ["shop.Hop"]


def test_a_file_of_ones_own_named_like_an_api_file_is_kept(shared_node, reg, api):
    ns = reflection_in(reg, uniq("own"))
    mine = proto_file("common.proto", package="myapp", messages=[message("Thing", field("n", 1, INT32))])
    user = proto_file("myapp/user.proto", package="myapp", deps=["common.proto"],
                      messages=[message("User", field("thing", 1, MESSAGE, ".myapp.Thing"))])
    r = assert_ok(call(reg.stub.RegisterProto, reg.proto_req(ns, user, [mine])))
    assert r.proto_id == f"{ns}/myapp/user.proto"
    # myapp.Thing lives: common.proto is theirs in this namespace, not the API file.
    Thing = Classes(mine)["myapp.Thing"]
    api.coll("myapp.Thing", ns=ns).put(pack(Thing(n=3)), id="t")
    # Their file keeps its name and its importers keep importing it (reflection shows it).
    ver = VERSIONS[0]
    stub = ver.grpc.ServerReflectionStub(shared_node.channel())
    resp = list(stub.ServerReflectionInfo(iter([
        ver.pb2.ServerReflectionRequest(file_containing_symbol="myapp.User")]), metadata=hdr(ns), timeout=30))[0]
    fds = {f.name: f for f in files_of(resp)}
    assert list(fds["myapp/user.proto"].dependency) == ["common.proto"]
    assert fds["common.proto"].package == "myapp"
    assert "collector/common.proto" not in fds


@pytest.mark.parametrize("ver", VERSIONS, ids=repr)
def test_reflection_serves_the_api_file_for_upstreams_name(shared_node, reg, ver):
    ns = reflection_in(reg, uniq("alias"))
    assert_ok(call(reg.stub.RegisterProto, reg.proto_req(ns, order_file())))
    stub = ver.grpc.ServerReflectionStub(shared_node.channel())
    md = hdr(ns)
    resp = list(stub.ServerReflectionInfo(iter([ver.pb2.ServerReflectionRequest(file_by_filename="common.proto")]),
                                          metadata=md, timeout=30))[0]
    fds = files_of(resp)
    assert fds[0].name == "collector/common.proto"
    # The registered file names its import the node's way, so the closure loads.
    resp = list(stub.ServerReflectionInfo(
        iter([ver.pb2.ServerReflectionRequest(file_containing_symbol="shop.Order")]), metadata=md, timeout=30))[0]
    fds = files_of(resp)
    assert fds[0].name == "shop/order.proto" and list(fds[0].dependency) == ["collector/common.proto"]
    check_closure(fds)
    assert load_pool(fds).FindMessageTypeByName("shop.Order")
    # A name that is no API file is still NOT_FOUND.
    resp = ask_once(stub, ver.pb2.ServerReflectionRequest(file_by_filename="nothing.proto"))
    assert resp.WhichOneof("message_response") == "error_response"


# ---------------------------------------------------------------------------------------
# 6, 7. Bare service names and methods registered by name only


def test_bare_name_registration_admits_the_nodes_calls(reg, api):
    """Upstream's RegisterCollectionService(ctx, registry, ns): the bare name, methods by
    name, and then the node's own /collector.CollectionService/... calls in ns."""
    ns = uniq("bare")
    get = cs_pb2.GetRequest(namespace=ns, collection_name="nothing", id="x")
    with pytest.raises(grpc.RpcError) as before:
        api.svc.Get(get, metadata=hdr(ns), timeout=10)
    assert before.value.code() == C.UNIMPLEMENTED, before.value
    r = register_service(reg, ns, name_only("CollectionService", "Get", "Create", "List"))
    assert r.service_id == f"{ns}/CollectionService"
    assert sorted(r.registered_methods) == ["Create", "Get", "List"]
    # Admitted now: the call reaches the service, which finds no such collection.
    with pytest.raises(grpc.RpcError) as after:
        api.svc.Get(get, metadata=hdr(ns), timeout=10)
    assert after.value.code() == C.NOT_FOUND, after.value
    # A method the bare registration does not name stays refused.
    with pytest.raises(grpc.RpcError) as other:
        api.svc.Delete(cs_pb2.DeleteRequest(namespace=ns, collection_name="nothing", id="x"),
                       metadata=hdr(ns), timeout=10)
    assert other.value.code() == C.UNIMPLEMENTED and "Delete" in other.value.details()
    # Looked up and validated by either name.
    for name in ("CollectionService", "collector.CollectionService"):
        s = reg.lookup(ns, name)
        assert s.service_name == "CollectionService" and s.id == r.service_id
        v = assert_ok(call(reg.stub.ValidateMethod, registry_pb2.ValidateMethodRequest(
            namespace=ns, service_name=name, method_name="Get")))
        assert v.is_valid, v.message
        v = assert_ok(call(reg.stub.ValidateMethod, registry_pb2.ValidateMethodRequest(
            namespace=ns, service_name=name, method_name="Delete")))
        assert not v.is_valid


def test_full_name_found_by_bare_name(reg):
    ns = uniq("bare")
    fd = proto_file("shop/svc.proto", package="shop", messages=[message("Req"), message("Resp")],
                    services=[service("Orders", method("Place", ".shop.Req", ".shop.Resp"))])
    r = register_service(reg, ns, fd.service[0], fd)
    assert r.service_id == f"{ns}/shop.Orders"
    assert reg.lookup(ns, "Orders").service_name == "shop.Orders"
    v = assert_ok(call(reg.stub.ValidateMethod, registry_pb2.ValidateMethodRequest(
        namespace=ns, service_name="Orders", method_name="Place")))
    assert v.is_valid, v.message
    # Not a suffix match: "rders" names nothing.
    expect_error(C.NOT_FOUND, reg.stub.LookupService,
                 registry_pb2.LookupServiceRequest(namespace=ns, service_name="rders"))


def test_ambiguous_bare_name_says_so(reg, api):
    ns = uniq("ambig")
    for pkg in ("shop", "farm"):
        fd = proto_file(f"{pkg}/svc.proto", package=pkg, messages=[message("Req"), message("Resp")],
                        services=[service("Orders", method("Place", f".{pkg}.Req", f".{pkg}.Resp"))])
        register_service(reg, ns, fd.service[0], fd)
    e = expect_error(C.FAILED_PRECONDITION, reg.stub.LookupService,
                     registry_pb2.LookupServiceRequest(namespace=ns, service_name="Orders"))
    assert "ambiguous" in e.details() and "shop.Orders" in e.details() and "farm.Orders" in e.details()
    v = assert_ok(call(reg.stub.ValidateMethod, registry_pb2.ValidateMethodRequest(
        namespace=ns, service_name="Orders", method_name="Place")))
    assert not v.is_valid and "ambiguous" in v.message
    # The full names still work.
    assert reg.lookup(ns, "farm.Orders").service_name == "farm.Orders"
    # A bare registration beside them: a call by another package is ambiguous, and refused.
    register_service(reg, ns, name_only("Orders", "Place"))
    e = expect_raw_error_call(api, "/other.Orders/Place", ns)
    assert e.code() == C.UNIMPLEMENTED and "ambiguous" in e.details(), e.details()
    # Without the others, the same call passes the registry (the node serves no such method).
    ns2 = uniq("ambig")
    register_service(reg, ns2, name_only("Orders", "Place"))
    e = expect_raw_error_call(api, "/other.Orders/Place", ns2)
    assert e.code() == C.UNIMPLEMENTED and "not served by this node" in e.details(), e.details()


def expect_raw_error_call(api, path, ns):
    fn = api.node.channel().unary_unary(path, request_serializer=lambda b: b, response_deserializer=lambda b: b)
    with pytest.raises(grpc.RpcError) as e:
        fn(b"", metadata=hdr(ns), timeout=10)
    return e.value


def test_name_only_methods(shared_node, reg):
    ns = reflection_in(reg, uniq("names"))
    fd = proto_file("shop/mixed.proto", package="shop", messages=[message("Req"), message("Resp")])
    assert_ok(call(reg.stub.RegisterProto, reg.proto_req(ns, fd)))
    sd = service("shop.Mixed", method("Typed", ".shop.Req", ".shop.Resp"))
    sd.method.add(name="ByName")
    r = register_service(reg, ns, sd)
    assert sorted(r.registered_methods) == ["ByName", "Typed"]
    for m in ("Typed", "ByName"):
        v = assert_ok(call(reg.stub.ValidateMethod, registry_pb2.ValidateMethodRequest(
            namespace=ns, service_name="shop.Mixed", method_name=m)))
        assert v.is_valid, v.message
    # Reflection describes the typed method only; a service of name-only methods is not listed.
    register_service(reg, ns, name_only("shop.Plain", "A", "B"))
    ver = VERSIONS[0]
    stub = ver.grpc.ServerReflectionStub(shared_node.channel())
    resp = list(stub.ServerReflectionInfo(iter([
        ver.pb2.ServerReflectionRequest(file_containing_symbol="shop.Mixed")]), metadata=hdr(ns), timeout=30))[0]
    methods = [m.name for f in files_of(resp) for s in f.service if s.name == "Mixed" for m in s.method]
    assert methods == ["Typed"]
    resp = list(stub.ServerReflectionInfo(iter([
        ver.pb2.ServerReflectionRequest(list_services="*")]), metadata=hdr(ns), timeout=30))[0]
    listed = [s.name for s in resp.list_services_response.service]
    assert "shop.Mixed" in listed and "shop.Plain" not in listed, listed
    # One type without the other is refused, naming the method.
    bad = service("shop.Half", method("Half", ".shop.Req", ""))
    e = expect_error(C.INVALID_ARGUMENT, reg.stub.RegisterService, reg.service_req(ns, bad))
    assert "Half" in e.details()


# ---------------------------------------------------------------------------------------
# 8, 9, 10. Ids, registered messages, empty namespaces


def test_upstream_proto_ids(reg):
    ns = uniq("ids")
    fd = animal_file()
    first = proto_id(reg, ns, fd)
    assert first == f"{ns}/{fd.name}"
    assert proto_id(reg, ns, fd) == first  # the same file: the same registration
    v2 = changed(fd, lambda f: f.message_type.append(message("Plant", field("name", 1, STRING))))
    assert proto_id(reg, ns, v2) == f"{ns}/{fd.name}@2"
    v3 = changed(v2, lambda f: f.message_type.append(message("Rock", field("name", 1, STRING))))
    assert proto_id(reg, ns, v3) == f"{ns}/{fd.name}@3"
    assert proto_id(reg, ns, v3) == f"{ns}/{fd.name}@3"
    # Removed, then registered again: its ids start over.
    assert_ok(call(reg.stub.UnregisterProto, registry_pb2.UnregisterProtoRequest(namespace=ns, file_name=fd.name)))
    assert proto_id(reg, ns, fd) == first
    # An API file registered under its own name: the node's file stands, with the same form.
    assert proto_id(reg, ns, upstream_copy(common_pb2, "collector/common.proto")) == f"{ns}/collector/common.proto"


def test_ids_survive_a_restart(servers):
    n1 = servers.node()
    reg = Reg(n1)
    ns = uniq("ids")
    fd = animal_file()
    proto_id(reg, ns, fd)
    v2 = changed(fd, lambda f: f.message_type.append(message("Plant", field("name", 1, STRING))))
    assert proto_id(reg, ns, v2) == f"{ns}/{fd.name}@2"
    sid = register_service(reg, ns, name_only("Feeder", "Feed")).service_id
    n1.stop()
    n2 = servers.node(data_dir=n1.data_dir)
    reg = Reg(n2)
    assert proto_id(reg, ns, v2) == f"{ns}/{fd.name}@2"
    v3 = changed(v2, lambda f: f.message_type.append(message("Rock", field("name", 1, STRING))))
    assert proto_id(reg, ns, v3) == f"{ns}/{fd.name}@3"
    assert register_service(reg, ns, name_only("Feeder", "Feed", "Water")).service_id == sid == f"{ns}/Feeder"


def test_registered_messages_are_top_level(reg):
    ns = uniq("top")
    fd = proto_file("shop/cart.proto", package="shop", messages=[
        message("Cart", field("items", 1, MESSAGE, ".shop.Cart.Item", repeated=True),
                field("tags", 2, MESSAGE, ".shop.Cart.TagsEntry", repeated=True),
                nested=[message("Item", field("sku", 1, STRING)), map_entry("TagsEntry")]),
        message("Coupon", field("code", 1, STRING)),
    ])
    r = assert_ok(call(reg.stub.RegisterProto, reg.proto_req(ns, fd)))
    assert list(r.registered_messages) == ["shop.Cart", "shop.Coupon"]
    # A file without a package: bare names.
    plain = proto_file("plain.proto", package="", messages=[message("Thing", field("n", 1, INT32))])
    assert list(assert_ok(call(reg.stub.RegisterProto, reg.proto_req(ns, plain))).registered_messages) == ["Thing"]


def test_list_services_of_an_empty_namespace(reg):
    r = assert_ok(call(reg.stub.ListServices, registry_pb2.ListServicesRequest(namespace=uniq("empty"))))
    assert list(r.services) == []
    # An invalid namespace is still an error, not an empty list.
    expect_error(C.INVALID_ARGUMENT, reg.stub.ListServices, registry_pb2.ListServicesRequest(namespace="bad name"))


# ---------------------------------------------------------------------------------------
# 3. Discover and SearchCollections with namespace ""


def _two_namespaces(api):
    a, b = uniq("every"), uniq("every")
    names = {}
    for ns in (a, b):
        coll = api.coll(SIMPLE, ns=ns, prefix="shared")
        names[ns] = coll
    return a, b, names


def test_discover_every_namespace(api):
    a, b, colls = _two_namespaces(api)
    mine = {(c.ns, c.name) for c in colls.values()}
    everything = api.discover_all("")
    seen = [(c.namespace, c.name) for c in everything]
    assert mine <= set(seen), (mine, seen)
    assert len(seen) == len(set(seen)), "a collection came twice"
    assert seen == sorted(seen), "not in (namespace, name) order"
    assert not [s for s in seen if s[0].lower() in ("system", "repo", "backups", "files")], seen
    # One at a time: the same set through page tokens.
    assert [(c.namespace, c.name) for c in api.discover_all("", page_size=1)] == seen
    # A type filter across namespaces matches by full name.
    typed = api.discover_all("", message_type_filter=common_pb2.MessageTypeRef(message_name=SIMPLE))
    assert mine <= {(c.namespace, c.name) for c in typed}
    # The header still names one namespace; a token of one query is refused by the other.
    api.serve_in(a)
    only_a = api.discover_all("", metadata=((NS_HEADER, a),))
    assert {(c.namespace, c.name) for c in only_a} == {(colls[a].ns, colls[a].name)}
    r = assert_ok(call(api.repo.Discover, repo_pb2.DiscoverRequest(namespace=a, page_size=1)))
    api.coll(SIMPLE, ns=a)
    r = assert_ok(call(api.repo.Discover, repo_pb2.DiscoverRequest(namespace=a, page_size=1)))
    assert r.next_page_token
    expect_error(C.INVALID_ARGUMENT, api.repo.Discover, repo_pb2.DiscoverRequest(namespace="", page_token=r.next_page_token))


def test_search_collections_every_namespace(api):
    a, b, colls = _two_namespaces(api)
    word = uniq("needle").replace("-", "")
    for ns, c in colls.items():
        c.put(pack(messages_pb2.SimpleRequest(fill_username=True, payload={"body": word.encode()})), id=f"in-{ns}")
    query = struct_pb2.Struct()
    query.update({"id": f"in-{a}"})
    label = {ns: f"{ns}/{c.name}" for ns, c in colls.items()}
    r = assert_ok(call(api.repo.SearchCollections, repo_pb2.SearchCollectionsRequest(
        namespace="", collection_names=[label[a], label[b]])))
    assert [x.collection_name for x in r.results] == [label[a], label[b]]
    assert r.total_matches == 2
    # A bare name means that name in every namespace that has one.
    name = colls[a].name
    r = assert_ok(call(api.repo.SearchCollections, repo_pb2.SearchCollectionsRequest(
        namespace="", collection_names=[name])))
    assert [x.collection_name for x in r.results] == [label[a]]
    # No names: every collection of every user namespace (ours among them).
    r = assert_ok(call(api.repo.SearchCollections, repo_pb2.SearchCollectionsRequest(namespace="", limit=1)))
    got = {x.collection_name for x in r.results}
    assert {label[a], label[b]} <= got, got
    # One namespace named: plain names, as before.
    r = assert_ok(call(api.repo.SearchCollections, repo_pb2.SearchCollectionsRequest(
        namespace=a, collection_names=[name])))
    assert [x.collection_name for x in r.results] == [name]
    # Names that exist nowhere.
    expect_error(C.NOT_FOUND, api.repo.SearchCollections, repo_pb2.SearchCollectionsRequest(
        namespace="", collection_names=["no-such-collection-anywhere"]))
    expect_error(C.NOT_FOUND, api.repo.SearchCollections, repo_pb2.SearchCollectionsRequest(
        namespace="", collection_names=[f"{b}/{name}"]))
    expect_error(C.NOT_FOUND, api.repo.SearchCollections, repo_pb2.SearchCollectionsRequest(
        namespace="", collection_names=[a + "x" * 70 + "/" + name]))
    # The node's own namespaces are not searched, even by name.
    expect_error(C.NOT_FOUND, api.repo.SearchCollections, repo_pb2.SearchCollectionsRequest(
        namespace="", collection_names=["system/RegisteredProtos"]))


# ---------------------------------------------------------------------------------------
# 4. Route honours Collection.server_endpoint


def test_route_to_the_collections_endpoint(api):
    ns = uniq("route")
    req = repo_pb2.CreateCollectionRequest(collection=cm(name="far", ns=ns, type_name=SIMPLE,
                                                         endpoint="collector-b.example:7000"))
    r = assert_ok(call(api.repo.CreateCollection, req))
    assert r.server_endpoint == "collector-b.example:7000"
    routed = api.route(ns, "far")
    assert routed.server_endpoint == "collector-b.example:7000"
    assert routed.collection.server_endpoint == "collector-b.example:7000"
    # Without one: this node.
    api.create_collection("near", ns=ns)
    near = api.route(ns, "near")
    assert near.server_endpoint and near.server_endpoint != "collector-b.example:7000"
    assert near.server_endpoint.rsplit(":", 1)[1] == api.address.rsplit(":", 1)[1]


@pytest.mark.parametrize("endpoint", ["no-port", "host:", "host:0", "host:70000", "a b:1", "host:12x", "h" * 300 + ":1"])
def test_route_endpoint_refused(api, endpoint):
    ns = uniq("route")
    req = repo_pb2.CreateCollectionRequest(collection=cm(name="bad", ns=ns, type_name=SIMPLE, endpoint=endpoint))
    e = expect_error(C.INVALID_ARGUMENT, api.repo.CreateCollection, req)
    assert "server_endpoint" in e.details()
    api.assert_absent(ns, "bad")
