"""Helpers for test_collections.py: stubs, request builders, Any packing, expected-error
checks and record snapshots (a rejected call must leave the records as they were)."""

import itertools
import re
import uuid

import grpc
import pytest
from google.protobuf import any_pb2, descriptor_pb2, json_format, struct_pb2

from collector import collection_pb2, common_pb2
from collector import collection_repo_pb2 as repo_pb2
from collector import collection_repo_pb2_grpc
from collector import collection_server_pb2 as cs_pb2
from collector import collection_server_pb2_grpc
from collector import registry_pb2, registry_pb2_grpc
from stdgrpc.testing import messages_pb2

T = 10  # seconds, every call's deadline
NS_HEADER = "x-collector-namespace"
DEFAULT_NS = "default"
TYPE_PREFIX = "type.googleapis.com/"

SIMPLE = "grpc.testing.SimpleRequest"
COLL = "collector.Collection"
BACKUP = "collector.BackupMetadata"
STREAMOUT = "grpc.testing.StreamingOutputCallRequest"
STRUCT = "google.protobuf.Struct"

MESSAGE_CLASSES = {
    SIMPLE: messages_pb2.SimpleRequest,
    COLL: collection_pb2.Collection,
    BACKUP: repo_pb2.BackupMetadata,
    STREAMOUT: messages_pb2.StreamingOutputCallRequest,
    STRUCT: struct_pb2.Struct,
}

UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
OK = common_pb2.Status.OK
C = grpc.StatusCode

_seq = itertools.count(1)


def uniq(prefix="c"):
    """A fresh valid name: prefix-N-xxxxxxxx (well under 63 characters)."""
    return f"{prefix}-{next(_seq)}-{uuid.uuid4().hex[:8]}"


# ---------------------------------------------------------------------------------------
# Messages


def pack(msg, prefix=TYPE_PREFIX):
    return any_pb2.Any(type_url=prefix + msg.DESCRIPTOR.full_name, value=msg.SerializeToString())


def raw_any(type_name, value, prefix=TYPE_PREFIX):
    return any_pb2.Any(type_url=prefix + type_name, value=value)


def unpack(item, type_name):
    """Decodes an item the node returned; its type URL must be the canonical one."""
    assert item.type_url == TYPE_PREFIX + type_name, f"type_url {item.type_url!r}"
    return MESSAGE_CLASSES[type_name].FromString(item.value)


def sr(size=0, body=b"", fill=False, compressed=None):
    m = messages_pb2.SimpleRequest(response_size=size, fill_username=fill)
    if body:
        m.payload.body = body.encode() if isinstance(body, str) else body
    if compressed is not None:
        m.response_compressed.value = compressed
    return m


def cm(name="", ns="", type_name="", type_ns="", indexed=(), labels=None, endpoint=""):
    """A collector.Collection used as a record."""
    m = collection_pb2.Collection(name=name, namespace=ns, indexed_fields=list(indexed), server_endpoint=endpoint)
    if type_name or type_ns:
        m.message_type.namespace = type_ns
        m.message_type.message_name = type_name
    if labels:
        m.metadata.labels.update(labels)
    return m


def struct(d):
    s = struct_pb2.Struct()
    s.update(d)
    return s


def value(x):
    v = struct_pb2.Value()
    json_format.ParseDict(x, v)
    return v


def flt(op, x=None):
    f = cs_pb2.Filter(operator=op)
    if x is not None:
        f.value.CopyFrom(value(x))
    return f


def nn(ns, name):
    return common_pb2.NamespacedName(namespace=ns, name=name)


def collection_msg(ns, name, type_name=SIMPLE, indexed=(), labels=None, type_ns=""):
    c = collection_pb2.Collection(namespace=ns, name=name, indexed_fields=list(indexed))
    if type_name is not None:
        c.message_type.CopyFrom(common_pb2.MessageTypeRef(namespace=type_ns, message_name=type_name))
    if labels:
        c.metadata.labels.update(labels)
    return c


def create_collection_req(ns, name, type_name=SIMPLE, **kw):
    return repo_pb2.CreateCollectionRequest(collection=collection_msg(ns, name, type_name, **kw))


# ---------------------------------------------------------------------------------------
# Calls


def _name(fn):
    m = getattr(fn, "_method", None)
    return m.decode() if isinstance(m, bytes) else str(m or fn)


def call(fn, req, metadata=None, timeout=T):
    """A call expected to succeed; a failure reads `<method> failed: CODE: details`."""
    try:
        return fn(req, timeout=timeout, metadata=metadata)
    except grpc.RpcError as e:
        err = e
    pytest.fail(f"{_name(fn)} failed: {err.code().name}: {err.details()}", pytrace=False)


def assert_ok(resp):
    name = type(resp).__name__
    assert resp.HasField("status"), f"{name} carries no status"
    assert resp.status.code == OK, f"{name}.status = {resp.status}"
    return resp


def check_details(e, mentions=()):
    """A clear message: says something beyond the code's name, names what it is about."""
    d = e.details() or ""
    assert len(d.strip()) >= 8, f"{e.code().name} with an unclear message {d!r}"
    assert d.strip().upper().replace(" ", "_") != e.code().name, f"message {d!r} only repeats the code"
    for m in mentions:
        assert m in d, f"{e.code().name} message {d!r} does not mention {m!r}"


def expect_error(code, fn, req, metadata=None, mentions=(), timeout=T):
    """Calls fn and requires status `code` with a clear message; returns the RpcError."""
    try:
        r = fn(req, timeout=timeout, metadata=metadata)
        if hasattr(r, "__iter__") and not hasattr(r, "ListFields"):
            r = list(r)
    except grpc.RpcError as e:
        err = e
    else:
        pytest.fail(f"{_name(fn)}: expected {code.name}, the call succeeded: {str(r)[:300]}", pytrace=False)
    if err.code() != code:
        pytest.fail(f"{_name(fn)}: expected {code.name}, got {err.code().name}: {err.details()!r}", pytrace=False)
    check_details(err, mentions)
    return err


# ---------------------------------------------------------------------------------------
# A node's API and a collection on it


class Api:
    def __init__(self, node):
        ch = node.channel()
        self.node = node
        self.address = node.address
        self.repo = collection_repo_pb2_grpc.CollectionRepoStub(ch)
        self.svc = collection_server_pb2_grpc.CollectionServiceStub(ch)

        self.registry = registry_pb2_grpc.CollectorRegistryStub(ch)

    def serve_in(self, ns):
        """Registers the node's CollectionRepo and CollectionService in ns, so that calls
        naming ns in the x-collector-namespace header pass the registry's validation."""
        for module in (repo_pb2, cs_pb2):
            fdp = descriptor_pb2.FileDescriptorProto()
            module.DESCRIPTOR.CopyToProto(fdp)
            for sd in fdp.service:
                assert_ok(call(self.registry.RegisterService, registry_pb2.RegisterServiceRequest(
                    namespace=ns, service_descriptor=sd, file_descriptor=fdp)))
        return ns

    def create_collection(self, name, type_name=SIMPLE, ns=DEFAULT_NS, metadata=None, **kw):
        resp = call(self.repo.CreateCollection, create_collection_req(ns, name, type_name, **kw), metadata)
        return assert_ok(resp)

    def coll(self, type_name=SIMPLE, ns=DEFAULT_NS, prefix="c", **kw):
        """Creates a fresh collection; returns its Coll."""
        name = uniq(prefix)
        self.create_collection(name, type_name, ns, **kw)
        return Coll(self, ns, name, type_name)

    def route(self, ns, name, metadata=None):
        return assert_ok(call(self.repo.Route, repo_pb2.RouteRequest(collection=nn(ns, name)), metadata))

    def assert_absent(self, ns, name):
        expect_error(C.NOT_FOUND, self.repo.Route, repo_pb2.RouteRequest(collection=nn(ns, name)))

    def discover_all(self, ns, page_size=0, metadata=None, **kw):
        """Every collection Discover returns, following next_page_token to the end."""
        out, token, pages = [], "", 0
        while True:
            req = repo_pb2.DiscoverRequest(namespace=ns, page_size=page_size, page_token=token, **kw)
            r = assert_ok(call(self.repo.Discover, req, metadata))
            out.extend(r.collections)
            pages += 1
            assert pages < 1000, "Discover never ends"
            if not r.next_page_token:
                return out
            assert r.next_page_token != token, "Discover repeated its page token"
            token = r.next_page_token


class Coll:
    def __init__(self, api, ns, name, type_name=SIMPLE):
        self.api, self.ns, self.name, self.type_name = api, ns, name, type_name
        self.svc = api.svc

    def req(self, cls, **kw):
        return cls(namespace=self.ns, collection_name=self.name, **kw)

    def put(self, item, id="", metadata=None):
        """Creates a record (a message or a ready Any); returns its id."""
        if not isinstance(item, any_pb2.Any):
            item = pack(item)
        r = assert_ok(call(self.svc.Create, self.req(cs_pb2.CreateRequest, item=item, id=id), metadata))
        assert r.id, "CreateResponse.id is empty"
        if id:
            assert r.id == id, f"asked for id {id!r}, got {r.id!r}"
        return r.id

    def get(self, id):
        r = assert_ok(call(self.svc.Get, self.req(cs_pb2.GetRequest, id=id)))
        assert r.HasField("item"), "GetResponse has no item"
        return r.item

    def get_msg(self, id):
        return unpack(self.get(id), self.type_name)

    def update(self, id, item, mask=()):
        if not isinstance(item, any_pb2.Any):
            item = pack(item)
        req = self.req(cs_pb2.UpdateRequest, id=id, item=item, update_mask=list(mask))
        return assert_ok(call(self.svc.Update, req))

    def delete(self, id):
        return assert_ok(call(self.svc.Delete, self.req(cs_pb2.DeleteRequest, id=id)))

    def list(self, filter=None, order_by="", page_size=0, page_token=""):
        req = self.req(cs_pb2.ListRequest, order_by=order_by, page_size=page_size, page_token=page_token)
        if filter is not None:
            req.filter.CopyFrom(struct(filter))
        return assert_ok(call(self.svc.List, req))

    def list_all(self, filter=None, order_by="", page_size=1000):
        out, token, pages = [], "", 0
        while True:
            r = self.list(filter, order_by, page_size, token)
            out.extend(r.items)
            pages += 1
            assert pages < 10000, "List never ends"
            if not r.next_page_token:
                return out
            assert r.next_page_token != token, "List repeated its page token"
            token = r.next_page_token

    def msgs(self, filter=None, order_by=""):
        return [unpack(a, self.type_name) for a in self.list_all(filter, order_by)]

    def search(self, full_text="", filters=None, limit=0, offset=0, order_by="", ascending=False, **kw):
        req = self.req(cs_pb2.SearchRequest, full_text=full_text, limit=limit, offset=offset,
                       order_by=order_by, ascending=ascending, **kw)
        for path, f in (filters or {}).items():
            req.filters[path].CopyFrom(f)
        return assert_ok(call(self.svc.Search, req))

    def describe(self):
        return assert_ok(call(self.svc.Describe, self.req(cs_pb2.DescribeRequest)))

    def snapshot(self):
        """Every record as (type_url, bytes), in id order."""
        return [(a.type_url, a.value) for a in self.list_all(order_by="@id")]

    def rejected(self, code, fn, req, mentions=(), metadata=None):
        """fn(req) must fail with `code` and a clear message, and change no record."""
        before = self.snapshot()
        e = expect_error(code, fn, req, metadata=metadata, mentions=mentions)
        after = self.snapshot()
        assert after == before, f"a call rejected with {code.name} changed the records"
        return e


class Lazy:
    """A value built on first use inside a test (so a failure fails that test), then kept."""

    def __init__(self, build):
        self.build = build
        self.value = None

    def __call__(self):
        if self.value is None:
            self.value = self.build()
        return self.value
