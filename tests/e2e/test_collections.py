"""Collections end to end: CollectionRepo and CollectionService against a real node.

Conventions of the contract these tests encode:
- Namespace and collection names match [A-Za-z0-9][A-Za-z0-9_-]{0,62}; anything else is
  INVALID_ARGUMENT in any request. Namespaces system, repo, backups, files (any case) are
  reserved. An empty namespace means the caller's: the x-collector-namespace header, else
  the node's --namespace (default "default"). A missing collection is NOT_FOUND.
- Failures are gRPC status codes with a clear details() message; on success a response's
  `status` field is present and says OK.
- A collection's message type is a full name known to the node, or a bare name that is
  unique. Records are messages of that type in an Any: input type URLs may have any prefix
  before the last '/', the node answers type.googleapis.com/<full name>, and the bytes given
  are the bytes stored and returned. Ids: given (1..256 printable bytes) or a UUIDv7.
- Field paths (indexed_fields, update_mask, filter keys, order_by, Search filters) use
  proto field names: a.b.c for nested messages and map keys, items[2] for an element;
  bad syntax or a field the type does not have is INVALID_ARGUMENT. Record columns in
  order_by: @id, @created_at, @updated_at. Filters compare by the field's type.
- Paging: 0 means 50, at most 1000, negative or more is INVALID_ARGUMENT; page tokens are
  opaque, bound to their query, "" at the end; keyset paging is stable under writes.
- A rejected call changes nothing: the records are listed before and after.
- Acknowledged writes survive SIGTERM and SIGKILL of the node.
"""

import random
import signal
import threading
import time

import grpc
import pytest
from collections_util import (
    BACKUP, COLL, DEFAULT_NS, NS_HEADER, SIMPLE, STREAMOUT, STRUCT, TYPE_PREFIX, UUID7, Api,
    C, Coll, Lazy, assert_ok, call, cm, create_collection_req, cs_pb2, expect_error, flt, nn,
    pack, raw_any, repo_pb2, sr, struct, T, uniq, unpack,
)
from collector import registry_pb2
from stdgrpc.testing import messages_pb2

OP = cs_pb2.FilterOperator


@pytest.fixture(scope="module")
def api(shared_node):
    return Api(shared_node)


def hdr(ns):
    return ((NS_HEADER, ns),)


def body_of(item):
    return unpack(item, SIMPLE).payload.body.decode()


def bodies(items):
    return [body_of(a) for a in items]


# =======================================================================================
# Names and namespaces

BAD_NAMES = [
    ("dotdot", ".."), ("dot", "."), ("slash", "a/b"), ("dotted", "a.b"), ("len64", "x" * 64),
    ("unicode", "caf\u00e9"), ("cjk", "\u540d\u524d"), ("traversal", "../etc"), ("lead-dash", "-a"),
    ("lead-underscore", "_a"), ("space", "a b"), ("lead-space", " a"), ("newline", "a\n"),
    ("backslash", "a\\b"), ("percent", "a%2Fb"), ("nul", "a\x00b"), ("tilde", "~a"),
]


@pytest.mark.parametrize("bad", [v for _, v in BAD_NAMES] + [""], ids=[i for i, _ in BAD_NAMES] + ["empty"])
def test_create_collection_rejects_bad_name(api, shared_node, bad):
    expect_error(C.INVALID_ARGUMENT, api.repo.CreateCollection, create_collection_req(DEFAULT_NS, bad))
    names = {c.name for c in api.discover_all(DEFAULT_NS)}
    assert bad not in names
    assert not (shared_node.data_dir.parent / "etc").exists()


@pytest.mark.parametrize("bad", [v for _, v in BAD_NAMES], ids=[i for i, _ in BAD_NAMES])
def test_create_collection_rejects_bad_namespace(api, shared_node, bad):
    name = uniq("n")
    expect_error(C.INVALID_ARGUMENT, api.repo.CreateCollection, create_collection_req(bad, name))
    # Nothing was made anywhere under that name, in or out of the data directory.
    assert not list(shared_node.data_dir.parent.glob(f"**/{name}"))
    # The same name in a valid namespace is free.
    api.create_collection(name)


def test_bad_names_rejected_by_every_method(api):
    good = api.coll()
    for bad in ("../etc", "a/b", "a.b", "x" * 64, "caf\u00e9"):
        for ns, name in ((bad, good.name), (good.ns, bad)):
            expect_error(C.INVALID_ARGUMENT, api.repo.Route, repo_pb2.RouteRequest(collection=nn(ns, name)))
            expect_error(C.INVALID_ARGUMENT, api.repo.DeleteCollection,
                         repo_pb2.DeleteCollectionRequest(collection=nn(ns, name)))
            expect_error(C.INVALID_ARGUMENT, api.svc.Describe,
                         cs_pb2.DescribeRequest(namespace=ns, collection_name=name))
            expect_error(C.INVALID_ARGUMENT, api.svc.Get,
                         cs_pb2.GetRequest(namespace=ns, collection_name=name, id="x"))
            good.rejected(C.INVALID_ARGUMENT, api.svc.Create,
                          cs_pb2.CreateRequest(namespace=ns, collection_name=name, item=pack(sr(1))))
        expect_error(C.INVALID_ARGUMENT, api.repo.Discover, repo_pb2.DiscoverRequest(namespace=bad))
    expect_error(C.INVALID_ARGUMENT, api.svc.Describe, cs_pb2.DescribeRequest(collection_name=""))
    # A bad namespace in the header is as bad as in the request.
    expect_error(C.INVALID_ARGUMENT, api.svc.Describe, cs_pb2.DescribeRequest(collection_name=good.name),
                 metadata=hdr("../etc"))
    api.route(good.ns, good.name)


def test_name_edges_accepted(api):
    for ns, name in ((DEFAULT_NS, "a"), (DEFAULT_NS, "Z"), (DEFAULT_NS, "0"), (DEFAULT_NS, "y" * 63),
                     (DEFAULT_NS, "A_b-9"), (DEFAULT_NS, "9-_"), ("N" * 63, "x1"), ("ns-_9", "y-_0")):
        api.create_collection(name, ns=ns)
        r = api.route(ns, name)
        assert (r.collection.namespace, r.collection.name) == (ns, name)


@pytest.mark.parametrize("ns", ["system", "repo", "backups", "files", "SYSTEM", "Repo", "bAcKuPs", "FILES"])
@pytest.mark.parametrize("via", ["request", "header"])
def test_reserved_namespaces_rejected(api, shared_node, ns, via):
    name = uniq("r")
    if via == "request":
        e = expect_error(C.INVALID_ARGUMENT, api.repo.CreateCollection, create_collection_req(ns, name))
    else:
        e = expect_error(C.INVALID_ARGUMENT, api.repo.CreateCollection, create_collection_req("", name),
                         metadata=hdr(ns))
    assert "reserved" in e.details().lower() or ns.lower() in e.details().lower(), e.details()
    # Nothing was made: no directory of that name, and the name is free elsewhere.
    assert not list(shared_node.data_dir.glob(f"**/{name}"))
    api.assert_absent(DEFAULT_NS, name)
    api.create_collection(name)


@pytest.mark.parametrize("name", ["RegisteredProtos", "RegisteredServices"])
def test_system_collections_are_not_for_clients(api, name):
    """The registry's own collections exist, but no client call may write, read or delete
    them: a forged registration would otherwise be replayed at the next start."""
    sys_ns = "system"
    expect_error(C.INVALID_ARGUMENT, api.repo.DeleteCollection,
                 repo_pb2.DeleteCollectionRequest(collection=nn(sys_ns, name)), mentions=("reserved",))
    expect_error(C.INVALID_ARGUMENT, api.svc.Create,
                 cs_pb2.CreateRequest(namespace=sys_ns, collection_name=name, item=pack(sr(1))),
                 mentions=("reserved",))
    expect_error(C.INVALID_ARGUMENT, api.svc.List,
                 cs_pb2.ListRequest(namespace=sys_ns, collection_name=name), mentions=("reserved",))
    # The registry still works: its collections were not touched.
    assert api.registry.ListServices(registry_pb2.ListServicesRequest(namespace=DEFAULT_NS),
                                     timeout=10).services


def test_empty_namespace_is_header_namespace(api):
    ns, name = api.serve_in(uniq("hdr")), uniq("h")
    api.create_collection(name, ns="", metadata=hdr(ns))
    r = api.route(ns, name)
    assert r.collection.namespace == ns and r.collection.name == name
    api.assert_absent(DEFAULT_NS, name)
    d = assert_ok(call(api.svc.Describe, cs_pb2.DescribeRequest(collection_name=name), hdr(ns)))
    assert d.collection_definition.namespace == ns
    # Records through the header land in that namespace's collection.
    created = assert_ok(call(api.svc.Create, cs_pb2.CreateRequest(collection_name=name, item=pack(sr(3))), hdr(ns)))
    assert Coll(api, ns, name).get(created.id).value == sr(3).SerializeToString()
    assert [c.name for c in api.discover_all("", metadata=hdr(ns))] == [name]
    assert api.route("", name, metadata=hdr(ns)).collection.namespace == ns
    # An explicit namespace wins over the header.
    d = assert_ok(call(api.svc.Describe, cs_pb2.DescribeRequest(namespace=ns, collection_name=name),
                       hdr(api.serve_in(uniq("other")))))
    assert d.collection_definition.namespace == ns


def test_empty_namespace_is_node_default_flag(servers):
    n = servers.node("--namespace", "teamx")
    a = Api(n)
    name = uniq("d")
    a.create_collection(name, ns="")
    r = a.route("teamx", name)
    assert r.collection.namespace == "teamx"
    a.assert_absent(DEFAULT_NS, name)
    assert [c.namespace for c in a.discover_all("")] == ["teamx"]
    coll = Coll(a, "", name)
    i = coll.put(sr(7))
    assert Coll(a, "teamx", name).get(i).value == sr(7).SerializeToString()


def test_empty_namespace_defaults_to_default(api):
    name = uniq("d")
    api.create_collection(name, ns="")
    r = api.route(DEFAULT_NS, name)
    assert r.collection.namespace == DEFAULT_NS
    assert Coll(api, DEFAULT_NS, name).describe().collection_definition.namespace == DEFAULT_NS


def _missing_calls(ns, name):
    item = pack(sr(1))
    return [
        ("Create", "svc", "Create", cs_pb2.CreateRequest(namespace=ns, collection_name=name, item=item)),
        ("Create-id", "svc", "Create", cs_pb2.CreateRequest(namespace=ns, collection_name=name, item=item, id="i1")),
        ("Get", "svc", "Get", cs_pb2.GetRequest(namespace=ns, collection_name=name, id="i1")),
        ("Update", "svc", "Update", cs_pb2.UpdateRequest(namespace=ns, collection_name=name, id="i1", item=item)),
        ("Delete", "svc", "Delete", cs_pb2.DeleteRequest(namespace=ns, collection_name=name, id="i1")),
        ("List", "svc", "List", cs_pb2.ListRequest(namespace=ns, collection_name=name)),
        ("Search", "svc", "Search", cs_pb2.SearchRequest(namespace=ns, collection_name=name, full_text="x")),
        ("Describe", "svc", "Describe", cs_pb2.DescribeRequest(namespace=ns, collection_name=name)),
        ("Route", "repo", "Route", repo_pb2.RouteRequest(collection=nn(ns, name))),
        ("DeleteCollection", "repo", "DeleteCollection", repo_pb2.DeleteCollectionRequest(collection=nn(ns, name))),
    ]


MISSING_IDS = [c[0] for c in _missing_calls("n", "c")]


@pytest.fixture(scope="module")
def populated_ns(api):
    """A namespace that has a collection (built inside the first test that needs it)."""
    return Lazy(lambda: api.coll(ns=uniq("pop")))


@pytest.mark.parametrize("where", ["namespace-without-collections", "other-collection"])
@pytest.mark.parametrize("method", MISSING_IDS)
def test_missing_collection_not_found(api, populated_ns, method, where):
    if where == "other-collection":
        ns = populated_ns().ns
    else:
        ns = uniq("void")
    name = uniq("missing")
    _, stub, m, req = next(c for c in _missing_calls(ns, name) if c[0] == method)
    expect_error(C.NOT_FOUND, getattr(getattr(api, stub), m), req, mentions=[name])
    # No call creates the collection on the way.
    api.assert_absent(ns, name)


# =======================================================================================
# CollectionRepo


def test_create_collection_response_and_route(api):
    name = uniq("cc")
    r = api.create_collection(name, SIMPLE, indexed=["response_size"], labels={"team": "a", "env": "prod"})
    assert r.collection_id, "empty collection_id"
    assert r.server_endpoint == api.address
    other = api.create_collection(uniq("cc"))
    assert other.collection_id != r.collection_id
    rt = api.route(DEFAULT_NS, name)
    assert rt.server_endpoint == api.address
    c = rt.collection
    assert (c.namespace, c.name, c.message_type.message_name) == (DEFAULT_NS, name, SIMPLE)
    assert list(c.indexed_fields) == ["response_size"]
    assert dict(c.metadata.labels) == {"team": "a", "env": "prod"}


MESSAGE_TYPES = [
    ("grpc.testing.SimpleRequest", SIMPLE, sr(5, "x")),
    ("collector.Collection", COLL, cm("n", labels={"k": "v"})),
    ("google.protobuf.Struct", STRUCT, struct({"a": 1, "b": {"c": "d"}})),
    ("SimpleRequest", SIMPLE, sr(6)),
    ("BackupMetadata", BACKUP, repo_pb2.BackupMetadata(backup_id="b")),
]


@pytest.mark.parametrize("given,full,sample", MESSAGE_TYPES, ids=[m[0] for m in MESSAGE_TYPES])
def test_create_collection_message_types(api, given, full, sample):
    coll = api.coll(given)
    item = pack(sample)
    i = coll.put(item)
    got = coll.get(i)
    assert got.type_url == TYPE_PREFIX + full
    assert got.value == item.value
    # A record of another type is refused, whichever form named the type.
    other = sr(1) if full != SIMPLE else cm("n")
    coll.rejected(C.INVALID_ARGUMENT, api.svc.Create, coll.req(cs_pb2.CreateRequest, item=pack(other)))


UNKNOWN_TYPES = [
    ("no-such-full", "grpc.testing.NoSuchMessage"),
    ("no-such-bare", "NoSuchMessage"),
    ("ambiguous-bare", "Empty"),  # grpc.testing.Empty and google.protobuf.Empty
    ("package", "grpc.testing"),
    ("enum", "grpc.testing.PayloadType"),
    ("field", "grpc.testing.SimpleRequest.payload"),
    ("wrong-case", "grpc.testing.simplerequest"),
    ("trailing-space", "grpc.testing.SimpleRequest "),
    ("service", "collector.CollectionRepo"),
]


# Without a message type (unset, or an empty name) a collection is untyped:
# test_upstream_untyped.py.
@pytest.mark.parametrize("type_name", [t for _, t in UNKNOWN_TYPES], ids=[i for i, _ in UNKNOWN_TYPES])
def test_create_collection_unknown_message_type(api, type_name):
    name = uniq("t")
    mentions = [type_name.strip()] if type_name and type_name.strip() else []
    expect_error(C.INVALID_ARGUMENT, api.repo.CreateCollection, create_collection_req(DEFAULT_NS, name, type_name),
                 mentions=mentions)
    api.assert_absent(DEFAULT_NS, name)
    api.create_collection(name, SIMPLE)


INDEXED_OK = [
    (SIMPLE, ["response_size", "payload.body", "response_compressed.value", "fill_username"]),
    (STREAMOUT, ["response_parameters[2].size", "payload.type", "response_parameters[0].compressed.value"]),
    (COLL, ["name", "message_type.message_name", "indexed_fields[0]", "metadata.created_at"]),
]


@pytest.mark.parametrize("type_name,paths", INDEXED_OK, ids=[t for t, _ in INDEXED_OK])
def test_indexed_fields_accepted(api, type_name, paths):
    coll = api.coll(type_name, indexed=paths)
    d = coll.describe().collection_definition
    assert list(d.indexed_fields) == paths
    assert list(api.route(coll.ns, coll.name).collection.indexed_fields) == paths


INDEXED_BAD = [
    (SIMPLE, "no_such_field"), (SIMPLE, "payload.nope"), (SIMPLE, "payload..body"), (SIMPLE, ".payload"),
    (SIMPLE, "payload."), (SIMPLE, "payload body"), (SIMPLE, "payload["), (SIMPLE, "response_size.sub"),
    (SIMPLE, "$.payload"), (SIMPLE, "payload.body; DROP TABLE records"), (SIMPLE, "response_parameters[2].size"),
    (SIMPLE, ""), (SIMPLE, "Payload"), (SIMPLE, "payload/body"), (SIMPLE, "payload['body']"),
    (SIMPLE, "json_extract(json,'$.a')"), (STREAMOUT, "response_parameters[x].size"),
    (STREAMOUT, "response_parameters[-1].size"), (STREAMOUT, "response_parameters[].size"),
    (STREAMOUT, "response_parameters[1"), (STREAMOUT, "response_parameters[0].nope"),
]


@pytest.mark.parametrize("type_name,path", INDEXED_BAD, ids=[f"{t.split('.')[-1]}:{p!r}" for t, p in INDEXED_BAD])
def test_indexed_fields_rejected(api, type_name, path):
    name = uniq("ix")
    req = create_collection_req(DEFAULT_NS, name, type_name, indexed=["payload.type", path])
    expect_error(C.INVALID_ARGUMENT, api.repo.CreateCollection, req)
    api.assert_absent(DEFAULT_NS, name)
    api.create_collection(name, type_name, indexed=["payload.type"])


def test_duplicate_collection(api):
    ns = uniq("dup")
    coll = api.coll(SIMPLE, ns=ns, labels={"v": "1"})
    coll.put(sr(1), id="keep")
    for type_name, labels in ((SIMPLE, {"v": "1"}), (COLL, {"v": "2"})):
        coll.rejected(C.ALREADY_EXISTS, api.repo.CreateCollection,
                      create_collection_req(ns, coll.name, type_name, labels=labels), mentions=[coll.name])
    rt = api.route(ns, coll.name).collection
    assert rt.message_type.message_name == SIMPLE and dict(rt.metadata.labels) == {"v": "1"}
    assert coll.get("keep").value == sr(1).SerializeToString()
    # The same name in another namespace is another collection.
    api.create_collection(coll.name, COLL, ns=uniq("dup"))


def test_delete_collection(api):
    coll = api.coll(SIMPLE, labels={"a": "b"})
    ids = [coll.put(sr(i, f"r{i}")) for i in range(1, 4)]
    r = assert_ok(call(api.repo.DeleteCollection, repo_pb2.DeleteCollectionRequest(collection=nn(coll.ns, coll.name))))
    assert (r.records_deleted, r.files_deleted) == (3, 0)
    api.assert_absent(coll.ns, coll.name)
    expect_error(C.NOT_FOUND, api.svc.Describe, coll.req(cs_pb2.DescribeRequest))
    expect_error(C.NOT_FOUND, api.svc.Get, coll.req(cs_pb2.GetRequest, id=ids[0]))
    expect_error(C.NOT_FOUND, api.svc.List, coll.req(cs_pb2.ListRequest))
    assert coll.name not in {c.name for c in api.discover_all(coll.ns)}
    expect_error(C.NOT_FOUND, api.repo.DeleteCollection,
                 repo_pb2.DeleteCollectionRequest(collection=nn(coll.ns, coll.name)))
    # Created again, it is a new, empty collection of the new definition.
    api.create_collection(coll.name, COLL)
    again = Coll(api, coll.ns, coll.name, COLL)
    d = again.describe()
    assert d.record_count == 0 and d.collection_definition.message_type.message_name == COLL
    assert dict(d.collection_definition.metadata.labels) == {}
    assert again.list_all() == []
    expect_error(C.NOT_FOUND, api.svc.Get, again.req(cs_pb2.GetRequest, id=ids[0]))
    again.put(cm("new"))
    r = assert_ok(call(api.repo.DeleteCollection, repo_pb2.DeleteCollectionRequest(collection=nn(coll.ns, coll.name))))
    assert r.records_deleted == 1


def test_recreated_collection_never_served_stale(api):
    """The node keeps open collections' definitions in memory: a collection deleted and made
    again with another type must be seen with its new definition by the very next call, and
    by every call started after the create returned, under concurrent reads."""
    coll = api.coll(SIMPLE, indexed=["response_size"], labels={"gen": "1"})
    coll.put(sr(7, "old"), id="same")
    assert coll.get("same").type_url == TYPE_PREFIX + SIMPLE  # open, definition cached
    stop, seen, errors = threading.Event(), [], []

    def reader():
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                r = api.svc.Get(coll.req(cs_pb2.GetRequest, id="same"), timeout=T)
                seen.append((t0, r.item.type_url))
            except grpc.RpcError as e:
                # While the name changes hands: gone, or changed under a call in flight.
                if e.code() not in (C.NOT_FOUND, C.ABORTED):
                    errors.append(f"{e.code().name}: {e.details()}")

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for gen in range(2, 5):
            time.sleep(0.05)
            assert_ok(call(api.repo.DeleteCollection,
                           repo_pb2.DeleteCollectionRequest(collection=nn(coll.ns, coll.name))))
            api.create_collection(coll.name, COLL, indexed=["server_endpoint"], labels={"gen": str(gen)})
            again = Coll(api, coll.ns, coll.name, COLL)
            # The very next calls: the old type is refused, the new one taken.
            e = expect_error(C.INVALID_ARGUMENT, api.svc.Create,
                             again.req(cs_pb2.CreateRequest, item=pack(sr(1, "stale")), id="x"),
                             mentions=(COLL,))
            assert "stale" not in e.details()
            again.put(cm(f"gen{gen}"), id="same")
            done = time.monotonic()
            d = again.describe().collection_definition
            assert (d.message_type.message_name, list(d.indexed_fields), dict(d.metadata.labels)) == \
                (COLL, ["server_endpoint"], {"gen": str(gen)})
            assert unpack(again.get("same"), COLL).name == f"gen{gen}"
            time.sleep(0.05)
            late = [url for t0, url in list(seen) if t0 > done]
            assert late and set(late) == {TYPE_PREFIX + COLL}, set(late)
            # Back to the first type for the next round.
            assert_ok(call(api.repo.DeleteCollection,
                           repo_pb2.DeleteCollectionRequest(collection=nn(coll.ns, coll.name))))
            api.create_collection(coll.name, SIMPLE)
            coll.put(sr(gen, "old"), id="same")
            done = time.monotonic()
            assert coll.describe().collection_definition.message_type.message_name == SIMPLE
            time.sleep(0.05)
            late = [url for t0, url in list(seen) if t0 > done]
            assert late and set(late) == {TYPE_PREFIX + SIMPLE}, set(late)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []


def _defn(c):
    return (c.namespace, c.name, c.message_type.message_name, list(c.indexed_fields), dict(c.metadata.labels))


def test_discover_definitions_and_filters(api):
    ns, ns2 = uniq("disc"), uniq("disc")
    specs = {
        "c1": (SIMPLE, ["response_size"], {"team": "a", "env": "prod"}),
        "c2": (SIMPLE, [], {"team": "a", "env": "dev"}),
        "c3": (COLL, ["name", "metadata.created_at"], {"team": "b", "env": "prod"}),
    }
    for name, (t, ix, labels) in specs.items():
        api.create_collection(name, t, ns=ns, indexed=ix, labels=labels)
    api.create_collection("c4", SIMPLE, ns=ns2, labels={"team": "a"})

    got = {c.name: _defn(c) for c in api.discover_all(ns)}
    assert got == {name: (ns, name, t, ix, labels) for name, (t, ix, labels) in specs.items()}

    def names(**kw):
        return sorted(c.name for c in api.discover_all(ns, **kw))

    assert names(label_filter={"team": "a"}) == ["c1", "c2"]
    assert names(label_filter={"team": "a", "env": "prod"}) == ["c1"]
    assert names(label_filter={"team": "z"}) == []
    assert names(label_filter={"nolabel": "a"}) == []
    assert names(message_type_filter={"message_name": SIMPLE}) == ["c1", "c2"]
    assert names(message_type_filter={"message_name": COLL}, label_filter={"team": "b"}) == ["c3"]
    assert names(message_type_filter={"message_name": COLL}, label_filter={"team": "a"}) == []
    api.serve_in(ns)
    assert sorted(c.name for c in api.discover_all("", metadata=hdr(ns))) == ["c1", "c2", "c3"]
    assert [c.name for c in api.discover_all(ns2)] == ["c4"]


def test_discover_paging(api):
    ns = uniq("page")
    names = [f"p{i}" for i in range(7)]
    for n in names:
        api.create_collection(n, ns=ns)
    seen, token, sizes = [], "", []
    for _ in range(10):
        r = assert_ok(call(api.repo.Discover, repo_pb2.DiscoverRequest(namespace=ns, page_size=3, page_token=token)))
        sizes.append(len(r.collections))
        seen += [c.name for c in r.collections]
        token = r.next_page_token
        if not token:
            break
    assert sizes == [3, 3, 1]
    assert sorted(seen) == names, "every collection exactly once"
    r = assert_ok(call(api.repo.Discover, repo_pb2.DiscoverRequest(namespace=ns, page_size=1000)))
    assert len(r.collections) == 7 and r.next_page_token == ""
    r = assert_ok(call(api.repo.Discover, repo_pb2.DiscoverRequest(namespace=ns)))
    assert len(r.collections) == 7 and r.next_page_token == ""


def test_discover_default_page_size_is_50(api):
    ns = uniq("fifty")
    errors = []

    def make(k):
        try:
            for i in range(k, 52, 2):
                api.create_collection(f"f{i:02d}", ns=ns)
        except BaseException as e:  # reported below, in the test's thread
            errors.append(e)

    ts = [threading.Thread(target=make, args=(k,)) for k in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise errors[0]
    r = assert_ok(call(api.repo.Discover, repo_pb2.DiscoverRequest(namespace=ns, page_size=0)))
    assert len(r.collections) == 50 and r.next_page_token
    r2 = assert_ok(call(api.repo.Discover, repo_pb2.DiscoverRequest(namespace=ns, page_token=r.next_page_token)))
    assert len(r2.collections) == 2 and r2.next_page_token == ""
    assert sorted(c.name for c in list(r.collections) + list(r2.collections)) == [f"f{i:02d}" for i in range(52)]


@pytest.mark.parametrize("page_size,token", [(-1, ""), (1001, ""), (-2147483648, ""), (2147483647, ""),
                                             (0, "garbage"), (3, "!!!"), (0, "AAAAAAAAAAAAAAAA"), (0, "\u00e9t\u00e9")],
                         ids=["size-1", "size1001", "size-min", "size-max", "tok-garbage", "tok-bang", "tok-AAAA",
                              "tok-unicode"])
def test_discover_bad_paging(api, populated_ns, page_size, token):
    ns = populated_ns().ns
    expect_error(C.INVALID_ARGUMENT, api.repo.Discover,
                 repo_pb2.DiscoverRequest(namespace=ns, page_size=page_size, page_token=token))


def _refused_transfers(api, ns, name, dest):
    src = nn(ns, name)
    push_meta = repo_pb2.PushCollectionRequest.Metadata(source_collection=src, dest_namespace=ns, dest_name=dest,
                                                        message_type={"message_name": SIMPLE}, record_count=1)
    return {
        # Built (test_clone.py); here: nothing is made when the other side is not there, or
        # when a push carries no manifest to check its bytes against.
        "Clone": (C.UNAVAILABLE, api.repo.Clone, repo_pb2.CloneRequest(
            source_collection=src, dest_namespace=ns, dest_name=dest, dest_endpoint="127.0.0.1:1")),
        "Fetch": (C.UNAVAILABLE, api.repo.Fetch, repo_pb2.FetchRequest(
            source_endpoint="127.0.0.1:1", source_collection=src, dest_namespace=ns, dest_name=dest)),
        "PushCollection": (C.INVALID_ARGUMENT, api.repo.PushCollection,
                           iter([repo_pb2.PushCollectionRequest(metadata=push_meta),
                                 repo_pb2.PushCollectionRequest(chunk=b"\0" * 16)])),
    }


@pytest.mark.parametrize("method", ["Clone", "Fetch", "PushCollection"])
def test_repo_transfers_refused(api, method):
    coll = api.coll()
    coll.put(sr(1, "only"))
    dest = uniq("dest")
    code, fn, req = _refused_transfers(api, coll.ns, coll.name, dest)[method]
    coll.rejected(code, fn, req)
    api.assert_absent(coll.ns, dest)


# =======================================================================================
# CollectionService: records


def test_create_generates_uuid7(api):
    coll = api.coll()
    made = {}
    for i in range(20):
        m = sr(i + 1, f"g{i}")
        i_d = coll.put(m)
        assert UUID7.match(i_d), f"generated id {i_d!r} is not a lowercase UUIDv7"
        made[i_d] = m.SerializeToString()
    assert len(made) == 20, "generated ids repeat"
    for i_d, b in made.items():
        assert coll.get(i_d).value == b


GOOD_IDS = ["a", "rec-1", "Order_2024.01:x", "with space", "~!@#$%^&*()+=[]{}|;'\",<>?`", "x" * 256, "0",
            "0190c2b4-7a3e-7000-8000-000000000000"]


def test_create_with_given_ids(api):
    coll = api.coll()
    for n, i_d in enumerate(GOOD_IDS):
        m = sr(n + 1, f"id{n}")
        r = assert_ok(call(api.svc.Create, coll.req(cs_pb2.CreateRequest, item=pack(m), id=i_d)))
        assert r.id == i_d
        assert coll.get(i_d).value == m.SerializeToString()
    assert coll.describe().record_count == len(GOOD_IDS)


@pytest.mark.parametrize("bad_id", ["x" * 257, "a\x00b", "a\nb", "a\tb", "\x7f", "\x01"],
                         ids=["len257", "nul", "newline", "tab", "del", "ctrl"])
def test_create_bad_ids(api, bad_id):
    coll = api.coll()
    coll.put(sr(1, "before"), id="before")
    coll.rejected(C.INVALID_ARGUMENT, api.svc.Create, coll.req(cs_pb2.CreateRequest, item=pack(sr(2)), id=bad_id))


def test_create_duplicate_id(api):
    coll = api.coll()
    first = sr(1, "first", fill=True)
    coll.put(first, id="dup")
    coll.rejected(C.ALREADY_EXISTS, api.svc.Create,
                  coll.req(cs_pb2.CreateRequest, item=pack(sr(2, "second")), id="dup"), mentions=["dup"])
    assert coll.get("dup").value == first.SerializeToString()


ITEM_REJECTS = [
    ("missing", None),
    ("other-type", pack(messages_pb2.SimpleResponse(username="u"))),
    ("other-type-same-bytes", raw_any("grpc.testing.StreamingInputCallRequest", sr(1, "x").SerializeToString())),
    ("empty-type-url", raw_any("", sr(1).SerializeToString(), prefix="")),
    ("longer-name", raw_any(SIMPLE + "X", sr(1).SerializeToString())),
    ("package-only", raw_any("grpc.testing", sr(1).SerializeToString())),
    ("prefix-only", raw_any("", sr(1).SerializeToString())),
    ("trailing-slash", raw_any(SIMPLE + "/", sr(1).SerializeToString())),
]


@pytest.mark.parametrize("item", [i for _, i in ITEM_REJECTS], ids=[n for n, _ in ITEM_REJECTS])
def test_create_rejects_item(api, item):
    coll = api.coll()
    coll.put(sr(1, "before"), id="before")
    req = coll.req(cs_pb2.CreateRequest, id="try")
    if item is not None:
        req.item.CopyFrom(item)
    coll.rejected(C.INVALID_ARGUMENT, api.svc.Create, req)
    expect_error(C.NOT_FOUND, api.svc.Get, coll.req(cs_pb2.GetRequest, id="try"))


@pytest.mark.parametrize("prefix", ["type.googleapis.com/", "example.com/types/", "/", "a/b/c/", "https://x.y/z/"])
def test_create_type_url_prefixes(api, prefix):
    coll = api.coll()
    m = sr(4, "p")
    i = coll.put(pack(m, prefix=prefix))
    got = coll.get(i)
    assert got.type_url == TYPE_PREFIX + SIMPLE
    assert got.value == m.SerializeToString()


def _ld(field, payload):
    """A length-delimited field (field number < 16, payload < 128 bytes)."""
    return bytes([field << 3 | 2, len(payload)]) + payload


BAD_ENCODINGS = [
    ("varint-overlong", b"\x10" + b"\xff" * 10 + b"\x01"),
    ("varint-truncated", b"\x10\xff"),
    ("length-past-end", b"\x1a\x05ab"),
    ("nested-length-past-end", _ld(3, b"\x12\x05a")),
    ("field-zero", b"\x00\x01"),
    ("wire-type-7", b"\x0f\x00"),
    ("wire-type-6", b"\x0e\x00"),
    ("end-group-unmatched", b"\x0c"),
    ("tag-truncated", b"\x80"),
    ("bad-utf8-string", _ld(7, b"\x12\x02\xff\xfe")),  # response_status.message
]


@pytest.mark.parametrize("value", [v for _, v in BAD_ENCODINGS], ids=[n for n, _ in BAD_ENCODINGS])
def test_create_rejects_bad_encoding(api, value):
    coll = api.coll()
    coll.put(sr(1, "before"), id="before")
    item = raw_any(SIMPLE, value)
    coll.rejected(C.INVALID_ARGUMENT, api.svc.Create, coll.req(cs_pb2.CreateRequest, item=item, id="bad"))
    coll.rejected(C.INVALID_ARGUMENT, api.svc.Update, coll.req(cs_pb2.UpdateRequest, item=item, id="before"))


def test_create_over_max_message_bytes(servers):
    n = servers.node("--max-message-bytes", "65536")
    a = Api(n)
    coll = a.coll()
    small = sr(1, b"s" * 60000)
    coll.put(small, id="small")
    big = sr(2, b"b" * 70000)
    coll.rejected(C.RESOURCE_EXHAUSTED, a.svc.Create, coll.req(cs_pb2.CreateRequest, item=pack(big), id="big"))
    coll.rejected(C.RESOURCE_EXHAUSTED, a.svc.Update, coll.req(cs_pb2.UpdateRequest, item=pack(big), id="small"))
    assert coll.get("small").value == small.SerializeToString()
    expect_error(C.NOT_FOUND, a.svc.Get, coll.req(cs_pb2.GetRequest, id="big"))


def test_get_returns_the_bytes_given(api):
    """Valid but non-canonical encodings come back byte for byte."""
    coll = api.coll()
    encodings = {
        "reordered": _ld(3, b"\x12\x01x") + b"\x10\x05",  # payload before response_size
        "explicit-default": b"\x10\x00\x20\x00",  # response_size=0, fill_username=false on the wire
        "repeated-scalar": b"\x10\x01\x10\x02",  # last one wins when parsed
        "empty": b"",
    }
    for name, b in encodings.items():
        messages_pb2.SimpleRequest.FromString(b)  # the test's own check: a valid encoding
        coll.put(raw_any(SIMPLE, b), id=name)
    for name, b in encodings.items():
        got = coll.get(name)
        assert got.type_url == TYPE_PREFIX + SIMPLE and got.value == b, name


def test_get_unknown_id(api):
    coll = api.coll()
    coll.put(sr(1), id="there")
    expect_error(C.NOT_FOUND, api.svc.Get, coll.req(cs_pb2.GetRequest, id="not-there"), mentions=["not-there"])
    expect_error(C.NOT_FOUND, api.svc.Get, coll.req(cs_pb2.GetRequest, id="THERE"))


def test_update_replaces_whole_record(api):
    coll = api.coll()
    coll.put(sr(5, "orig", fill=True, compressed=True), id="u")
    coll.put(sr(6, "other"), id="o")
    new = sr(9)
    coll.update("u", new)
    assert coll.get("u").value == new.SerializeToString()
    assert coll.get("o").value == sr(6, "other").SerializeToString()


def test_update_with_mask(api):
    coll = api.coll(COLL)
    orig = cm("orig", ns="ns0", type_name="m.Orig", type_ns="tns", indexed=["a", "b"], labels={"k": "v"},
              endpoint="h:1")
    coll.put(orig, id="m")
    item = cm("new", ns="ns1", type_name="m.New", type_ns="tns2", indexed=["z"], labels={"k2": "v2"})

    coll.update("m", item, ["name", "message_type.message_name", "indexed_fields", "server_endpoint"])
    want = cm("new", ns="ns0", type_name="m.New", type_ns="tns", indexed=["z"], labels={"k": "v"}, endpoint="")
    assert coll.get_msg("m") == want

    coll.update("m", item, ["metadata.labels"])
    want.metadata.labels.clear()
    want.metadata.labels["k2"] = "v2"
    assert coll.get_msg("m") == want

    coll.update("m", cm(type_name="only", type_ns="t3"), ["message_type"])
    want.message_type.namespace, want.message_type.message_name = "t3", "only"
    assert coll.get_msg("m") == want

    coll.update("m", cm(), ["namespace", "metadata"])
    want.namespace = ""
    want.ClearField("metadata")
    got = coll.get_msg("m")
    assert (got.namespace, dict(got.metadata.labels)) == ("", {})
    assert got.name == "new" and got.message_type.message_name == "only"


BAD_MASKS = [["nope"], ["message_type.nope"], ["name.sub"], [""], ["metadata..labels"], ["name", "nope"],
             ["name; DROP TABLE records"], ["$.name"], [".name"], ["indexed_fields.x"], ["Name"]]


@pytest.mark.parametrize("mask", BAD_MASKS, ids=[",".join(m) or "empty" for m in BAD_MASKS])
def test_update_rejects_bad_mask(api, mask):
    coll = api.coll(COLL)
    orig = cm("orig", ns="a", type_name="t.T")
    coll.put(orig, id="m")
    mentions = ["nope"] if any("nope" in p for p in mask) else []
    coll.rejected(C.INVALID_ARGUMENT, api.svc.Update,
                  coll.req(cs_pb2.UpdateRequest, id="m", item=pack(cm("new", ns="b")), update_mask=mask),
                  mentions=mentions)
    assert coll.get_msg("m") == orig


def test_update_errors(api):
    coll = api.coll()
    coll.put(sr(1, "one"), id="one")
    coll.rejected(C.NOT_FOUND, api.svc.Update, coll.req(cs_pb2.UpdateRequest, id="ghost", item=pack(sr(2))),
                  mentions=["ghost"])
    expect_error(C.NOT_FOUND, api.svc.Get, coll.req(cs_pb2.GetRequest, id="ghost"))
    coll.rejected(C.NOT_FOUND, api.svc.Update,
                  coll.req(cs_pb2.UpdateRequest, id="ghost", item=pack(sr(2)), update_mask=["response_size"]))
    coll.rejected(C.INVALID_ARGUMENT, api.svc.Update, coll.req(cs_pb2.UpdateRequest, id="one", item=pack(cm("x"))))
    coll.rejected(C.INVALID_ARGUMENT, api.svc.Update, coll.req(cs_pb2.UpdateRequest, id="one"))
    coll.rejected(C.INVALID_ARGUMENT, api.svc.Update,
                  coll.req(cs_pb2.UpdateRequest, id="one", item=pack(cm("x")), update_mask=["response_size"]))


def test_delete_record(api):
    coll = api.coll()
    ms = {k: sr(n + 1, k) for n, k in enumerate(["d1", "d2", "d3"])}
    for k, m in ms.items():
        coll.put(m, id=k)
    coll.delete("d2")
    expect_error(C.NOT_FOUND, api.svc.Get, coll.req(cs_pb2.GetRequest, id="d2"))
    coll.rejected(C.NOT_FOUND, api.svc.Delete, coll.req(cs_pb2.DeleteRequest, id="d2"), mentions=["d2"])
    coll.rejected(C.NOT_FOUND, api.svc.Delete, coll.req(cs_pb2.DeleteRequest, id="never"))
    assert sorted(bodies(coll.list_all())) == ["d1", "d3"]
    assert coll.describe().record_count == 2
    coll.put(sr(7, "again"), id="d2")
    assert coll.get("d2").value == sr(7, "again").SerializeToString()


# =======================================================================================
# List


@pytest.fixture(scope="module")
def sixty(api):
    """60 SimpleRequests: response_size i (1..60), fill_username for even i, body sNN."""
    def build():
        coll = api.coll(prefix="sixty")
        for i in range(1, 61):
            coll.put(sr(i, f"s{i:02d}", fill=i % 2 == 0), id=f"id{i:02d}")
        return coll
    return Lazy(build)


def test_list_filter_strings(api):
    coll = api.coll(COLL)
    recs = [cm("alpha", ns="x", type_name="t.A", labels={"env": "prod"}),
            cm("beta", ns="x", type_name="t.B", labels={"env": "dev"}),
            cm("gamma", ns="y", type_name="t.A", labels={"env": "prod"}),
            cm("delta", ns="y", type_name="t.B")]
    for m in recs:
        coll.put(m)

    def names(f):
        r = coll.list(f, page_size=100)
        got = sorted(unpack(a, COLL).name for a in r.items)
        assert r.total_count == len(got), f"total_count {r.total_count} for {len(got)} matches of {f}"
        return got

    assert names(None) == ["alpha", "beta", "delta", "gamma"]
    assert names({}) == ["alpha", "beta", "delta", "gamma"]
    assert names({"namespace": "x"}) == ["alpha", "beta"]
    assert names({"message_type": {"message_name": "t.A"}}) == ["alpha", "gamma"]
    assert names({"namespace": "y", "message_type": {"message_name": "t.B"}}) == ["delta"]
    assert names({"metadata": {"labels": {"env": "prod"}}}) == ["alpha", "gamma"]
    assert names({"name": "nobody"}) == []
    assert names({"name": "alpha", "namespace": "y"}) == []


def test_list_filter_numbers_and_bools(api):
    coll = api.coll()
    for m in (sr(3, "a", fill=True), sr(3, "b"), sr(4, "c", fill=True, compressed=True), sr(30, "d", compressed=False)):
        coll.put(m)

    def got(f):
        r = coll.list(f, page_size=100)
        assert r.total_count == len(r.items)
        return sorted(bodies(r.items))

    assert got({"response_size": 3}) == ["a", "b"]
    assert got({"response_size": 30}) == ["d"]
    assert got({"response_size": 3.5}) == []
    assert got({"fill_username": True}) == ["a", "c"]
    assert got({"response_size": 3, "fill_username": True}) == ["a"]
    assert got({"response_compressed": {"value": True}}) == ["c"]


LIST_BAD_FILTERS = [
    {"nope": 1}, {"payload": {"nope": 1}}, {"response_size; DROP TABLE records": 1}, {"$.response_size": 1},
    {"": 1}, {"a b": 1}, {"response_size')--": 1},
]


@pytest.mark.parametrize("f", LIST_BAD_FILTERS, ids=[next(iter(f)) or "empty" for f in LIST_BAD_FILTERS])
def test_list_rejects_bad_filter_key(api, f):
    coll = api.coll()
    coll.put(sr(1, "x"))
    req = coll.req(cs_pb2.ListRequest, filter=struct(f))
    coll.rejected(C.INVALID_ARGUMENT, api.svc.List, req)
    assert coll.describe().record_count == 1


def test_list_order_by_fields(api):
    coll = api.coll()
    for size, fill in ((5, True), (1, False), (4, True), (2, False), (3, False)):
        coll.put(sr(size, f"r{size}", fill=fill))

    def order(o):
        return bodies(coll.list_all(order_by=o))

    assert order("response_size") == ["r1", "r2", "r3", "r4", "r5"]
    assert order("response_size asc") == ["r1", "r2", "r3", "r4", "r5"]
    assert order("response_size desc") == ["r5", "r4", "r3", "r2", "r1"]
    assert order("fill_username desc, response_size") == ["r4", "r5", "r1", "r2", "r3"]
    assert order("fill_username asc, response_size desc") == ["r3", "r2", "r1", "r5", "r4"]

    cc = api.coll(COLL)
    for name, t in (("a", "t.B"), ("b", "t.A"), ("c", "t.B"), ("d", "t.A")):
        cc.put(cm(name, type_name=t))
    assert [m.name for m in cc.msgs(order_by="message_type.message_name desc, name")] == ["a", "c", "b", "d"]
    assert [m.name for m in cc.msgs(order_by="message_type.message_name, name desc")] == ["d", "b", "c", "a"]


def test_list_order_by_record_columns(api):
    coll = api.coll()
    ids = ["id-c", "id-a", "id-e", "id-b", "id-d"]
    for n, i in enumerate(ids):
        coll.put(sr(n + 1, i), id=i)
        time.sleep(0.01)  # distinct creation times, even at millisecond resolution

    def order(o):
        return bodies(coll.list_all(order_by=o))

    assert order("@created_at") == ids
    assert order("@created_at desc") == ids[::-1]
    assert order("@id") == sorted(ids)
    assert order("@id desc") == sorted(ids, reverse=True)
    coll.update("id-a", sr(2, "id-a", fill=True))
    assert order("@updated_at desc") == ["id-a", "id-d", "id-b", "id-e", "id-c"]
    assert order("@created_at") == ids  # an update keeps created_at


def test_list_page_size(api, sixty):
    coll = sixty()
    r = coll.list(page_size=0)
    assert len(r.items) == 50 and r.next_page_token and r.total_count == 60
    r2 = coll.list(page_size=0, page_token=r.next_page_token)
    assert len(r2.items) == 10 and r2.next_page_token == "" and r2.total_count == 60
    assert sorted(bodies(list(r.items) + list(r2.items))) == [f"s{i:02d}" for i in range(1, 61)]
    r = coll.list(page_size=1000)
    assert len(r.items) == 60 and r.next_page_token == ""
    got, token, pages = [], "", 0
    while True:
        r = coll.list({"fill_username": True}, page_size=7, page_token=token)
        assert r.total_count == 30
        got += bodies(r.items)
        pages += 1
        token = r.next_page_token
        if not token:
            break
    assert pages == 5 and sorted(got) == [f"s{i:02d}" for i in range(2, 61, 2)]
    for bad in (1001, -1, -2147483648):
        expect_error(C.INVALID_ARGUMENT, api.svc.List, coll.req(cs_pb2.ListRequest, page_size=bad))


@pytest.mark.parametrize("order_by", ["", "response_size desc", "@created_at", "@id desc"])
def test_list_keyset_paging_under_writes(api, order_by):
    """Between pages: inserts (ties included), updates of other fields, deletes of seen and
    unseen records. No record appears twice; none that stayed is skipped."""
    rnd = random.Random(7)
    coll = api.coll()
    initial = {}
    for i in range(30):
        initial[f"init{i:02d}"] = coll.put(sr(i % 4 + 1, f"init{i:02d}"))
    seen, deleted_unseen, token, n_new = [], set(), "", 0
    for _ in range(40):
        r = coll.list(order_by=order_by, page_size=7, page_token=token)
        page = bodies(r.items)
        seen += page
        token = r.next_page_token
        if not token:
            break
        for _ in range(2):
            coll.put(sr(rnd.randint(1, 4), f"new{n_new:02d}"))
            n_new += 1
        unseen = sorted(set(initial) - set(seen) - deleted_unseen)
        if unseen:
            victim = rnd.choice(unseen)
            coll.delete(initial[victim])
            deleted_unseen.add(victim)
        unseen = sorted(set(initial) - set(seen) - deleted_unseen)
        if unseen:
            b = rnd.choice(unseen)
            coll.update(initial[b], sr(int(b[4:]) % 4 + 1, b, fill=True))
        done = [b for b in seen if b in initial and initial[b] is not None]
        if done:
            b = rnd.choice(done)
            coll.delete(initial[b])
            initial[b] = None
    else:
        pytest.fail("paging never ended")
    dups = sorted({b for b in seen if seen.count(b) > 1})
    assert not dups, f"records listed twice: {dups}"
    missing = sorted(set(initial) - deleted_unseen - set(seen))
    assert not missing, f"records skipped: {missing}"
    assert not set(seen) & deleted_unseen, "a record deleted before its page was listed"


def test_list_page_token_bound_to_query(api, sixty):
    coll = sixty()
    r = coll.list(order_by="response_size", page_size=3)
    tok = r.next_page_token
    assert tok
    r2 = coll.list(order_by="response_size", page_size=3, page_token=tok)
    assert bodies(r2.items) == ["s04", "s05", "s06"]
    for kw in ({"order_by": "response_size desc"}, {"order_by": ""}, {"order_by": "@id"},
               {"order_by": "response_size", "filter": struct({"fill_username": True})},
               {"filter": struct({"response_size": 1})}):
        expect_error(C.INVALID_ARGUMENT, api.svc.List, coll.req(cs_pb2.ListRequest, page_size=3, page_token=tok, **kw))
    for garbage in ("garbage", "!!!", "AAAAAAAAAAAAAAAAAAAAAAAA", "%00", "\u00e9"):
        expect_error(C.INVALID_ARGUMENT, api.svc.List,
                     coll.req(cs_pb2.ListRequest, order_by="response_size", page_size=3, page_token=garbage))


BAD_ORDER = ["name; DROP TABLE records", "a b c", "$.x", "response_size; DELETE FROM records",
             "response_size asc desc", "response_size,", ",response_size", "response_size)", "@nope",
             "no_such_field", "json", "rid", "response_size sideways", "'response_size'", "(response_size)",
             "response_size/**/desc", "response_size -- x", "@id; DROP TABLE records", "payload..body",
             "response_size desc,, @id", "RANDOM()"]


@pytest.mark.parametrize("order_by", BAD_ORDER)
def test_list_rejects_bad_order_by(api, order_by):
    coll = api.coll()
    for i in range(3):
        coll.put(sr(i + 1, f"b{i}"), id=f"b{i}")
    coll.rejected(C.INVALID_ARGUMENT, api.svc.List, coll.req(cs_pb2.ListRequest, order_by=order_by))
    coll.put(sr(9, "after"), id="after")
    assert coll.describe().record_count == 4
    assert sorted(bodies(coll.list_all())) == ["after", "b0", "b1", "b2"]


# =======================================================================================
# Search


@pytest.fixture(scope="module")
def texts(api):
    """Collections for full-text search, keyed by name."""
    def build():
        coll = api.coll(COLL, prefix="fts")
        for m in (
            cm("zebra", ns="zebra", type_name="zebra", indexed=["zebra", "zebra"]),
            cm("lots-of-words", endpoint="a long note about the savanna where one zebra lives among lions "
               "giraffes elephants antelopes hippos rhinos and many other animals of the plains"),
            cm("lion", endpoint="the lion sleeps tonight"),
            cm("zebra-or-lion", endpoint="zebra or lion"),
            cm("quoted", endpoint='she said "hello world" (twice) and -- stop *star* NEAR x:y'),
            cm("nested", type_name="aardvark"),
            cm("repeated", indexed=["pangolin", "x"]),
            cm("mapped", labels={"animal": "okapi"}),
        ):
            coll.put(m)
        return coll
    return Lazy(build)


def _names(resp):
    return [unpack(r.item, COLL).name for r in resp.results]


def test_search_full_text(texts):
    coll = texts()
    r = coll.search("zebra")
    names = _names(r)
    assert sorted(names) == ["lots-of-words", "zebra", "zebra-or-lion"]
    assert r.total_count == 3
    scores = [x.score for x in r.results]
    assert scores == sorted(scores, reverse=True), f"not ordered by score: {list(zip(names, scores))}"
    by = dict(zip(names, scores))
    assert by["zebra"] > by["lots-of-words"], f"five zebras score no better than one in a long text: {by}"
    for word, want in (("aardvark", ["nested"]), ("pangolin", ["repeated"]), ("okapi", ["mapped"]),
                       ("sleeps", ["lion"]), ("xylophone", [])):
        r = coll.search(word)
        assert _names(r) == want, word
        assert r.total_count == len(want)
    r = coll.search("zebra", filters={"name": flt(OP.OP_EQUALS, "zebra-or-lion")})
    assert _names(r) == ["zebra-or-lion"] and r.total_count == 1


LITERAL_TEXTS = [
    ("zebra OR lion", ["zebra-or-lion"]),
    ("zeb*", []),
    ('"hello world"', ["quoted"]),
    ('"hello', ["quoted"]),
    ('hello"', ["quoted"]),
    ("(twice", ["quoted"]),
    ("twice)", ["quoted"]),
    ("NOT zebra", []),
    ("zebra AND", ["lots-of-words"]),
    ("NEAR(zebra lion)", None),
    ("-zebra", None),
    ("^zebra", None),
    ("name:zebra", None),
    ("{name}: zebra", None),
    ("zebra + lion", None),
    ("'", None),
    ('"', None),
    ("*", None),
    ("AND", None),
    ("OR", None),
    (":", None),
    ("x:y", None),
    ("*star*", None),
]


@pytest.mark.parametrize("text,want", LITERAL_TEXTS, ids=[t for t, _ in LITERAL_TEXTS])
def test_search_text_is_literal(texts, text, want):
    """FTS5 syntax in the text is searched for as words, never an error (want None: any result)."""
    coll = texts()
    r = coll.search(text)
    if want is not None:
        assert sorted(_names(r)) == want
        assert r.total_count == len(want)


def test_search_text_with_nul_refused(texts):
    """A NUL byte cannot reach C strings intact: refused, like in names and ids."""
    coll = texts()
    e = expect_error(C.INVALID_ARGUMENT, coll.svc.Search,
                     coll.req(cs_pb2.SearchRequest, full_text="zebra\x00lion"))
    assert "full_text" in e.details(), e.details()


@pytest.fixture(scope="module")
def backups(api):
    """BackupMetadata records: strings, int64 (JSON strings), bool, nested message, map."""
    def build():
        coll = api.coll(BACKUP, prefix="ops")
        B = repo_pb2.BackupMetadata
        for m in (
            B(backup_id="alpha", size_bytes=5, timestamp=1000, includes_files=True, collection=nn("n1", "c1"),
              storage_type="disk", storage_path="/srv/a/alpha", metadata={"owner": "ann"}),
            B(backup_id="beta", size_bytes=40, timestamp=2000, collection=nn("", "c2"), storage_type="s3",
              storage_path="/srv/b", metadata={"owner": "bob"}),
            B(backup_id="gamma", size_bytes=300, timestamp=3000, includes_files=True, collection=nn("", "c1"),
              storage_type="disk", storage_path="/mnt/gamma", metadata={"tier": "cold"}),
            B(backup_id="delta", size_bytes=2000, timestamp=4000, storage_type="gcs", storage_path="/mnt/d"),
            B(backup_id="a_b%c", size_bytes=9, timestamp=5000, collection=nn("", "c3"), storage_type="disk",
              storage_path="/x"),
        ):
            coll.put(m)
        return coll
    return Lazy(build)


@pytest.fixture(scope="module")
def simples(api):
    def build():
        coll = api.coll(prefix="sops")
        coll.put(sr(1, "s1", compressed=True))
        coll.put(sr(2, "s2"))
        coll.put(sr(10, "s3", compressed=False))
        return coll
    return Lazy(build)


@pytest.fixture(scope="module")
def lists(api):
    def build():
        coll = api.coll(COLL, prefix="rops")
        coll.put(cm("i1", indexed=["a.b", "c"]))
        coll.put(cm("i2", indexed=["c", "d"]))
        coll.put(cm("i3"))
        return coll
    return Lazy(build)


ALL_B = {"alpha", "beta", "gamma", "delta", "a_b%c"}
OPERATOR_CASES = [
    # BackupMetadata: int64 sizes compare as numbers (lexically "40" > "300").
    ("b", "backup_id", OP.OP_EQUALS, "beta", {"beta"}),
    ("b", "size_bytes", OP.OP_EQUALS, 40, {"beta"}),
    ("b", "includes_files", OP.OP_EQUALS, True, {"alpha", "gamma"}),
    ("b", "collection.name", OP.OP_EQUALS, "c1", {"alpha", "gamma"}),
    ("b", "metadata.owner", OP.OP_EQUALS, "bob", {"beta"}),
    ("b", "storage_type", OP.OP_NOT_EQUALS, "disk", {"beta", "delta"}),
    ("b", "size_bytes", OP.OP_NOT_EQUALS, 40, ALL_B - {"beta"}),
    ("b", "size_bytes", OP.OP_GREATER_THAN, 100, {"gamma", "delta"}),
    ("b", "size_bytes", OP.OP_GREATER_THAN, 40, {"gamma", "delta"}),
    ("b", "timestamp", OP.OP_GREATER_THAN, 3000, {"delta", "a_b%c"}),
    ("b", "backup_id", OP.OP_GREATER_THAN, "beta", {"gamma", "delta"}),
    ("b", "size_bytes", OP.OP_LESS_THAN, 40, {"alpha", "a_b%c"}),
    ("b", "backup_id", OP.OP_LESS_THAN, "b", {"alpha", "a_b%c"}),
    ("b", "size_bytes", OP.OP_GREATER_EQUAL, 300, {"gamma", "delta"}),
    ("b", "timestamp", OP.OP_GREATER_EQUAL, 4000.0, {"delta", "a_b%c"}),
    ("b", "size_bytes", OP.OP_LESS_EQUAL, 9, {"alpha", "a_b%c"}),
    ("b", "backup_id", OP.OP_LESS_EQUAL, "beta", {"alpha", "beta", "a_b%c"}),
    ("b", "storage_path", OP.OP_CONTAINS, "/mnt/", {"gamma", "delta"}),
    ("b", "storage_path", OP.OP_CONTAINS, "alpha", {"alpha"}),
    ("b", "backup_id", OP.OP_CONTAINS, "l_h", set()),  # no LIKE wildcards
    ("b", "backup_id", OP.OP_CONTAINS, "_b%", {"a_b%c"}),
    ("b", "backup_id", OP.OP_CONTAINS, "%", {"a_b%c"}),
    ("b", "backup_id", OP.OP_IN, ["alpha", "gamma", "zzz"], {"alpha", "gamma"}),
    ("b", "size_bytes", OP.OP_IN, [5, 2000], {"alpha", "delta"}),
    ("b", "collection.name", OP.OP_IN, ["c2", "c3"], {"beta", "a_b%c"}),
    ("b", "backup_id", OP.OP_IN, [], set()),
    ("b", "collection", OP.OP_EXISTS, None, {"alpha", "beta", "gamma", "a_b%c"}),
    ("b", "metadata.owner", OP.OP_EXISTS, None, {"alpha", "beta"}),
    ("b", "collection", OP.OP_NOT_EXISTS, None, {"delta"}),
    ("b", "metadata.owner", OP.OP_NOT_EXISTS, None, {"gamma", "delta", "a_b%c"}),
    # SimpleRequest: int32 numerically (lexically "10" < "2"), a nested bool, message presence.
    ("s", "response_size", OP.OP_GREATER_THAN, 2, {"s3"}),
    ("s", "response_size", OP.OP_LESS_EQUAL, 2, {"s1", "s2"}),
    ("s", "response_compressed.value", OP.OP_EQUALS, True, {"s1"}),
    ("s", "response_compressed", OP.OP_EXISTS, None, {"s1", "s3"}),
    ("s", "response_compressed", OP.OP_NOT_EXISTS, None, {"s2"}),
    ("s", "payload", OP.OP_EXISTS, None, {"s1", "s2", "s3"}),
    ("s", "response_status", OP.OP_NOT_EXISTS, None, {"s1", "s2", "s3"}),
    # Collection: CONTAINS on a repeated string is membership, not substring.
    ("r", "indexed_fields", OP.OP_CONTAINS, "c", {"i1", "i2"}),
    ("r", "indexed_fields", OP.OP_CONTAINS, "a.b", {"i1"}),
    ("r", "indexed_fields", OP.OP_CONTAINS, "a", set()),
]


def _key(item, kind):
    if kind == "b":
        return unpack(item, BACKUP).backup_id
    if kind == "s":
        return body_of(item)
    return unpack(item, COLL).name


@pytest.mark.parametrize("kind,path,op,val,want", OPERATOR_CASES,
                         ids=[f"{p}-{OP.Name(o)[3:]}-{v!r}" for _, p, o, v, _ in OPERATOR_CASES])
def test_search_filter_operators(backups, simples, lists, kind, path, op, val, want):
    coll = {"b": backups, "s": simples, "r": lists}[kind]()
    r = coll.search(filters={path: flt(op, val)}, limit=100)
    got = {_key(x.item, kind) for x in r.results}
    assert got == want
    assert r.total_count == len(want) and len(r.results) == len(want)


def test_search_filters_combine(backups):
    coll = backups()
    r = coll.search(filters={"storage_type": flt(OP.OP_EQUALS, "disk"), "size_bytes": flt(OP.OP_GREATER_THAN, 6)})
    assert {_key(x.item, "b") for x in r.results} == {"gamma", "a_b%c"} and r.total_count == 2


FILTER_REJECTS = [
    ("includes_files", OP.OP_GREATER_THAN, True),
    ("includes_files", OP.OP_LESS_EQUAL, False),
    ("includes_files", OP.OP_CONTAINS, True),
    ("size_bytes", OP.OP_CONTAINS, 4),
    ("collection", OP.OP_GREATER_THAN, "x"),
    ("collection", OP.OP_CONTAINS, "c1"),
    ("backup_id", OP.OP_IN, "alpha"),
    ("size_bytes", OP.OP_IN, 5),
    ("nope", OP.OP_EQUALS, 1),
    ("collection.nope", OP.OP_EQUALS, "x"),
    ("nope", OP.OP_EXISTS, None),
    ("backup_id.x", OP.OP_EQUALS, "x"),
    ("backup_id; DROP TABLE records", OP.OP_EQUALS, "x"),
    ("$.backup_id", OP.OP_EQUALS, "x"),
    ("", OP.OP_EQUALS, "x"),
    ("collection..name", OP.OP_EQUALS, "x"),
]


@pytest.mark.parametrize("path,op,val", FILTER_REJECTS,
                         ids=[f"{p or 'empty'}-{OP.Name(o)[3:]}" for p, o, _ in FILTER_REJECTS])
def test_search_rejects_bad_filter(api, backups, path, op, val):
    coll = backups()
    req = coll.req(cs_pb2.SearchRequest)
    req.filters[path].CopyFrom(flt(op, val))
    mentions = ["nope"] if "nope" in path else []
    coll.rejected(C.INVALID_ARGUMENT, api.svc.Search, req, mentions=mentions)


def test_search_limit_offset_order(backups, sixty):
    coll = backups()

    def ids(**kw):
        r = coll.search(**kw)
        assert r.total_count == 5, kw
        return [_key(x.item, "b") for x in r.results]

    assert ids(order_by="size_bytes", ascending=True, limit=2, offset=1) == ["a_b%c", "beta"]
    assert ids(order_by="size_bytes", ascending=False, limit=2, offset=1) == ["gamma", "beta"]
    assert ids(order_by="size_bytes", ascending=True) == ["alpha", "a_b%c", "beta", "gamma", "delta"]
    assert ids(order_by="backup_id", ascending=True) == ["a_b%c", "alpha", "beta", "delta", "gamma"]
    assert ids(order_by="timestamp", ascending=False, limit=1) == ["a_b%c"]
    assert ids(order_by="size_bytes", ascending=True, offset=10) == []
    assert len(ids(limit=0)) == 5
    big = sixty()
    r = big.search()
    assert len(r.results) == 50 and r.total_count == 60
    r = big.search(limit=1000)
    assert len(r.results) == 60 and r.total_count == 60
    r = big.search(filters={"fill_username": flt(OP.OP_EQUALS, True)}, limit=5, offset=28,
                   order_by="response_size", ascending=True)
    assert bodies(x.item for x in r.results) == ["s58", "s60"] and r.total_count == 30


@pytest.mark.parametrize("kw", [{"limit": 1001}, {"limit": -1}, {"offset": -1}, {"order_by": "nope"},
                                {"order_by": "size_bytes; DROP TABLE records"}],
                         ids=["limit1001", "limit-1", "offset-1", "order-unknown", "order-injection"])
def test_search_rejects_bad_paging(api, backups, kw):
    coll = backups()
    coll.rejected(C.INVALID_ARGUMENT, api.svc.Search, coll.req(cs_pb2.SearchRequest, **kw))


# =======================================================================================
# Describe, Meta, Invoke


def test_describe(api):
    coll = api.coll(SIMPLE, indexed=["response_size"], labels={"owner": "me"})
    d = coll.describe()
    c = d.collection_definition
    assert _defn(c) == (coll.ns, coll.name, SIMPLE, ["response_size"], {"owner": "me"})
    assert d.record_count == 0
    for i in range(5):
        coll.put(sr(i + 1, b"z" * 1000))
    d = coll.describe()
    assert d.record_count == 5
    assert d.storage_size_bytes > 0


def test_meta(api):
    r = assert_ok(call(api.svc.Meta, cs_pb2.MetaRequest()))
    assert r.server_version.strip()


def test_invoke_refuses_a_method_without_service(api):
    # Invoke itself: test_invoke.py. A refused Invoke changes nothing.
    coll = api.coll()
    i = coll.put(sr(1))
    coll.rejected(C.INVALID_ARGUMENT, api.svc.Invoke,
                  coll.req(cs_pb2.InvokeRequest, method_name="Anything", item_ids=[i], input=pack(sr(2))))


# =======================================================================================
# Durability


def test_restart_keeps_collections_and_records(servers):
    n1 = servers.node()
    a = Api(n1)
    s = a.coll(SIMPLE, indexed=["response_size"], labels={"k": "v"})
    ns2 = uniq("rs")
    c = a.coll(COLL, ns=ns2, indexed=["name"])
    for i in range(20):
        s.put(sr(i + 1, f"s{i}"), id=f"s{i}")
    gen = [s.put(sr(100 + i, f"g{i}")) for i in range(5)]
    for i in range(5):
        c.put(cm(f"c{i}", labels={"i": str(i)}), id=f"c{i}")
    s.delete("s3")
    s.update("s4", sr(44, "s4-updated"))
    c.update("c1", cm("c1-renamed"), ["name"])
    first = s.list(order_by="response_size", page_size=5)
    second = s.list(order_by="response_size", page_size=5, page_token=first.next_page_token)
    before = {
        "defs": sorted((_defn(x) for x in a.discover_all(DEFAULT_NS) + a.discover_all(ns2)), key=str),
        "s": s.snapshot(), "c": c.snapshot(),
        "order": bodies(s.list_all(order_by="@created_at")),
    }
    n1.stop(signal.SIGTERM)

    n2 = servers.node(data_dir=n1.data_dir)
    b = Api(n2)
    s2, c2 = Coll(b, s.ns, s.name, SIMPLE), Coll(b, c.ns, c.name, COLL)
    after = {
        "defs": sorted((_defn(x) for x in b.discover_all(DEFAULT_NS) + b.discover_all(ns2)), key=str),
        "s": s2.snapshot(), "c": c2.snapshot(),
        "order": bodies(s2.list_all(order_by="@created_at")),
    }
    assert after == before
    assert s2.get("s4").value == sr(44, "s4-updated").SerializeToString()
    # A page token made before the restart still opens the next page (the token key is
    # kept in the data directory).
    nxt = s2.list(order_by="response_size", page_size=5, page_token=first.next_page_token)
    assert list(nxt.items) == list(second.items) and len(nxt.items) == 5
    assert [s2.get(g).value for g in gen] == [sr(100 + i, f"g{i}").SerializeToString() for i in range(5)]
    assert c2.get_msg("c1").name == "c1-renamed"
    expect_error(C.NOT_FOUND, b.svc.Get, s2.req(cs_pb2.GetRequest, id="s3"))
    assert s2.describe().record_count == 24 and c2.describe().record_count == 5
    assert b.route(s.ns, s.name).server_endpoint == n2.address
    # Still a working collection: ids stay unique, new records go in.
    s2.rejected(C.ALREADY_EXISTS, b.svc.Create, s2.req(cs_pb2.CreateRequest, item=pack(sr(1)), id="s0"))
    s2.put(sr(7, "after-restart"), id="new")
    assert s2.search(filters={"response_size": flt(OP.OP_EQUALS, 44)}).total_count == 1


def test_crash_keeps_acknowledged_writes(servers):
    """Writers in several threads; SIGKILL mid-stream; every acknowledged record is back
    byte for byte, and no refused one is."""
    n1 = servers.node()
    a = Api(n1)
    coll = a.coll()
    acked, refused, anomalies = {}, set(), []
    dups = {}  # id -> the bytes first acknowledged, which a refused duplicate must not change
    stop = threading.Event()
    lock = threading.Lock()

    def writer(k):
        stub = Api(n1).svc
        rnd = random.Random(k)
        i = 0
        while not stop.is_set():
            i += 1
            rid = f"w{k}-{i:05d}"
            m = sr(i, f"{rid}:" + "x" * rnd.randint(0, 300), fill=bool(i % 2))
            req, expect = None, None
            try:
                if i % 10 == 0:
                    req = coll.req(cs_pb2.CreateRequest, id=f"bad{k}-{i}", item=pack(cm("wrong type")))
                    expect = C.INVALID_ARGUMENT
                elif i % 10 == 5 and acked:
                    with lock:
                        old = rnd.choice(sorted(acked))
                        dups.setdefault(old, acked[old])
                    req = coll.req(cs_pb2.CreateRequest, id=old, item=pack(sr(0, f"{old}:dup")))
                    expect = C.ALREADY_EXISTS
                else:
                    req = coll.req(cs_pb2.CreateRequest, id=rid, item=pack(m))
                    expect = None
                r = stub.Create(req, timeout=5)
                if expect is not None:
                    anomalies.append(f"{req.id}: expected {expect.name}, got OK")
                else:
                    with lock:
                        acked[r.id] = m.SerializeToString()
            except Exception as e:  # grpc.RpcError, or anything else the client raises
                code = getattr(e, "code", lambda: None)()
                if expect is not None and code == expect:
                    if expect == C.INVALID_ARGUMENT:
                        refused.add(req.id)
                elif code in (C.INVALID_ARGUMENT, C.ALREADY_EXISTS):
                    anomalies.append(f"{req.id}: {code.name}: {e.details()}")
                elif stop.is_set():
                    return
                # else: the node is going away; keep writing until told to stop

    threads = [threading.Thread(target=writer, args=(k,), daemon=True) for k in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline and len(acked) < 300:
        time.sleep(0.02)
    assert len(acked) >= 50, f"only {len(acked)} writes acknowledged in 8 s"
    n1.stop(signal.SIGKILL)
    stop.set()
    for t in threads:
        t.join(15)
    assert not any(t.is_alive() for t in threads), "writers hang after the node died"
    assert not anomalies, anomalies[:5]
    assert refused, "no refused write was tried"

    n2 = servers.node(data_dir=n1.data_dir)
    c2 = Coll(Api(n2), coll.ns, coll.name)
    stored = {}
    for item in c2.list_all(order_by="@id"):
        assert item.type_url == TYPE_PREFIX + SIMPLE
        body = messages_pb2.SimpleRequest.FromString(item.value).payload.body.decode()
        stored[body.split(":", 1)[0]] = item.value
    lost = sorted(i for i in acked if i not in stored)
    assert not lost, f"{len(lost)} acknowledged records lost, e.g. {lost[:5]}"
    changed = sorted(i for i, b in acked.items() if stored[i] != b)
    assert not changed, f"acknowledged records changed: {changed[:5]}"
    for i, b in dups.items():
        assert stored[i] == b
    assert not refused & set(stored), "a refused record is stored"
    for i in sorted(refused):
        expect_error(C.NOT_FOUND, c2.svc.Get, c2.req(cs_pb2.GetRequest, id=i))
    for i in sorted(acked)[:20]:
        assert c2.get(i).value == acked[i]
