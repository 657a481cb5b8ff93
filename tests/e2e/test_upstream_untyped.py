"""Untyped collections, as the original Collector's clients use them, and collections of
google.protobuf.Struct, end to end against a real node.

What these tests encode (README, Collections, "Untyped collections"):
- CreateCollection without a message type (none, or an empty message_name) makes an
  untyped collection: any google.protobuf.Any per record. Get, List and Search return the
  Any exactly as written (type_url and value bytes).
- A record whose type_url names a known type (compiled in, or registered in the
  namespace) is decoded: filters, order keys and full text read its proto3 JSON. A record
  whose value is a JSON object's text (what upstream clients store) is indexed as that
  JSON. Anything else is opaque: found by id, not by field.
- A value that claims a known type and is neither that message nor a JSON object, or
  that looks like a JSON object ('{' ... '}') and is not valid JSON, is INVALID_ARGUMENT
  and changes nothing.
- Field paths of untyped and Struct records are JSON paths: checked for syntax only
  (INVALID_ARGUMENT for bad ones), a path no record has matches nothing. Quoted segments
  ("first-name") reach keys that are no identifiers.
- A masked Update of a JSON record merges the mask's keys (nested ones too) from the item
  into the stored object; the record's type_url must be the item's, and an opaque record
  or item has no fields to merge.
- Typed collections keep their strict check.
"""

import json
import signal

import pytest
from collections_util import (
    C, DEFAULT_NS, STRUCT, Api, Coll, assert_ok, call, create_collection_req, cs_pb2, expect_error,
    flt, pack, raw_any, sr, struct, uniq, unpack,
)
from collector import collection_repo_pb2 as repo
from collector import registry_pb2
from google.protobuf import any_pb2, descriptor_pb2, json_format

OP = cs_pb2.FilterOperator
UNKNOWN_URL = "type.googleapis.com/unknown"  # what the original Collector answers for untyped records

USERS = {
    "u1": {"name": "ann", "age": 31, "address": {"city": "Paris", "zip": "75001"}, "tags": ["admin", "ops"],
           "first-name": "Ann", "bio": "likes mountains"},
    "u2": {"name": "bob", "age": 25, "address": {"city": "Berlin"}, "tags": ["dev"], "first-name": "Bob",
           "bio": "sails boats"},
    "u3": {"name": "cy", "age": 47.5, "address": {"city": "Paris", "zip": "75002"}, "tags": [],
           "first-name": "Cy", "bio": "reads books about mountains"},
}


@pytest.fixture(scope="module")
def api(shared_node):
    return Api(shared_node)


def untyped(api, message_type="none", prefix="u", **kw):
    """A fresh untyped collection: message_type left out ("none") or with an empty name."""
    name = uniq(prefix)
    c = repo.CreateCollectionRequest()
    c.collection.namespace = DEFAULT_NS
    c.collection.name = name
    c.collection.indexed_fields.extend(kw.get("indexed", ()))
    if message_type != "none":
        c.collection.message_type.message_name = message_type
    assert_ok(call(api.repo.CreateCollection, c))
    return Coll(api, DEFAULT_NS, name, type_name=None)


def jany(obj, url=UNKNOWN_URL, raw=None):
    """A JSON record as upstream clients write it: the UTF-8 bytes of a JSON object text."""
    return any_pb2.Any(type_url=url, value=raw if raw is not None else json.dumps(obj).encode())


def ids(items):
    return [json.loads(a.value)["name"] for a in items]


def search_names(coll, **kw):
    return [json.loads(r.item.value)["name"] for r in coll.search(**kw).results]


@pytest.fixture(scope="module")
def users(api):
    coll = untyped(api)
    for k, u in USERS.items():
        coll.put(jany(u), id=k)
    return coll


# =======================================================================================
# Creating untyped collections


@pytest.mark.parametrize("message_type", ["none", ""], ids=["unset", "empty-name"])
def test_create_untyped_collection(api, message_type):
    coll = untyped(api, message_type)
    d = coll.describe()
    assert not d.collection_definition.HasField("message_type")
    assert d.record_count == 0
    names = {c.name for c in api.discover_all(DEFAULT_NS)}
    assert coll.name in names
    # A name that is not empty must still be a known type.
    expect_error(C.INVALID_ARGUMENT, api.repo.CreateCollection,
                 create_collection_req(DEFAULT_NS, uniq("u"), "no.such.Type"), mentions=["no.such.Type"])


# =======================================================================================
# JSON records


def test_json_crud_returns_exactly_what_was_written(api):
    coll = untyped(api)
    raw = b'{ "name": "ann",\n  "n": 1 }  '
    rid = coll.put(jany(None, raw=raw))
    got = coll.get(rid)
    assert (got.type_url, got.value) == (UNKNOWN_URL, raw)
    # Any type URL comes back unchanged, whatever its prefix.
    for url in ("example.com/custom/Thing", "application/json", ""):
        r = coll.put(jany({"name": "x", "url": url}, url=url))
        assert coll.get(r).type_url == url
    # Whole replace: the new type_url and value.
    coll.update(rid, jany({"name": "ann2"}, url="x/y.Z"))
    got = coll.get(rid)
    assert got.type_url == "x/y.Z" and json.loads(got.value) == {"name": "ann2"}
    assert coll.search(filters={"name": flt(OP.OP_EQUALS, "ann2")}).total_count == 1
    assert coll.search(filters={"name": flt(OP.OP_EQUALS, "ann")}).total_count == 0
    coll.delete(rid)
    expect_error(C.NOT_FOUND, coll.svc.Get, coll.req(cs_pb2.GetRequest, id=rid))
    assert coll.describe().record_count == 3


def test_json_filters_on_nested_paths(users):
    def names(**filters):
        return sorted(search_names(users, filters=filters))

    assert names(**{"address.city": flt(OP.OP_EQUALS, "Paris")}) == ["ann", "cy"]
    assert names(**{"address.zip": flt(OP.OP_EXISTS)}) == ["ann", "cy"]
    assert names(**{"address.zip": flt(OP.OP_NOT_EXISTS)}) == ["bob"]
    assert names(age=flt(OP.OP_GREATER_THAN, 30)) == ["ann", "cy"]
    assert names(age=flt(OP.OP_LESS_EQUAL, 25)) == ["bob"]
    assert names(tags=flt(OP.OP_CONTAINS, "dev")) == ["bob"]
    assert names(**{"tags[1]": flt(OP.OP_EQUALS, "ops")}) == ["ann"]
    assert names(name=flt(OP.OP_IN, ["bob", "cy", "zed"])) == ["bob", "cy"]
    assert names(bio=flt(OP.OP_CONTAINS, "mountain")) == ["ann", "cy"]
    # A key that is no identifier, through a quoted segment.
    assert names(**{'"first-name"': flt(OP.OP_EQUALS, "Bob")}) == ["bob"]
    # List's filter Struct: nested Structs are nested paths.
    assert sorted(ids(users.list_all({"address": {"city": "Paris"}, "age": 31}))) == ["ann"]
    assert sorted(ids(users.list_all({'"first-name"': "Cy"}))) == ["cy"]


def test_json_order_by_paths(users):
    assert ids(users.list_all(order_by="age desc")) == ["cy", "ann", "bob"]
    assert ids(users.list_all(order_by="address.city, name desc")) == ["bob", "cy", "ann"]
    assert ids(users.list_all(order_by='"first-name" desc')) == ["cy", "bob", "ann"]
    assert search_names(users, order_by="age", ascending=True) == ["bob", "ann", "cy"]
    # Paging by a JSON path visits every record once.
    seen, token = [], ""
    while True:
        r = users.list(order_by="age", page_size=1, page_token=token)
        seen += ids(r.items)
        token = r.next_page_token
        if not token:
            break
    assert seen == ["bob", "ann", "cy"]


def test_json_full_text(users):
    assert sorted(search_names(users, full_text="mountains")) == ["ann", "cy"]
    assert search_names(users, full_text="boats") == ["bob"]
    # Keys are not text: "address" is in every record, as a key only.
    assert users.search(full_text="address").total_count == 0
    assert sorted(search_names(users, full_text="mountains", filters={"age": flt(OP.OP_GREATER_THAN, 40)})) == ["cy"]


def test_filter_on_a_path_no_record_has(users):
    r = users.search(filters={"no.such.path": flt(OP.OP_EQUALS, "x")})
    assert (len(r.results), r.total_count) == (0, 0)
    assert len(users.list({"nope": 1}).items) == 0
    # Missing is "not equal", as for typed records.
    assert users.search(filters={"nope": flt(OP.OP_NOT_EQUALS, 1)}).total_count == 3


BAD_PATHS = ["a..b", "$.a", "a b", '"unterminated', '"a\\b"', "a[-1]", "-a", '""', "a." + ".".join(["b"] * 16)]


@pytest.mark.parametrize("path", BAD_PATHS)
def test_bad_paths_are_invalid_argument(users, path):
    expect_error(C.INVALID_ARGUMENT, users.svc.Search,
                 users.req(cs_pb2.SearchRequest, filters={path: flt(OP.OP_EQUALS, "x")}))
    expect_error(C.INVALID_ARGUMENT, users.svc.List, users.req(cs_pb2.ListRequest, order_by=path))


def test_batch_of_untyped_records(api):
    coll = untyped(api)
    coll.put(jany({"name": "old"}), id="old")
    ops = [
        cs_pb2.RequestOp(create=cs_pb2.CreateRequest(id="j", item=jany({"name": "json", "n": 2}))),
        cs_pb2.RequestOp(create=cs_pb2.CreateRequest(id="t", item=pack(sr(size=7)))),
        cs_pb2.RequestOp(create=cs_pb2.CreateRequest(id="o", item=jany(None, raw=b"\x00\x01\x02"))),
        cs_pb2.RequestOp(update=cs_pb2.UpdateRequest(id="old", item=jany({"name": "new"}))),
    ]
    r = assert_ok(call(api.svc.Batch, coll.req(cs_pb2.BatchRequest, operations=ops)))
    assert [o.status.code for o in r.responses] == [0, 0, 0, 0]
    assert json.loads(coll.get("old").value) == {"name": "new"}
    assert coll.get("o").value == b"\x00\x01\x02"
    assert coll.search(filters={"response_size": flt(OP.OP_EQUALS, 7)}).total_count == 1
    # One bad item fails the whole batch, before anything is written.
    bad = ops[:1] + [cs_pb2.RequestOp(create=cs_pb2.CreateRequest(id="b", item=jany(None, raw=b'{"a":}')))]
    bad[0].create.id = "j2"
    coll.rejected(C.INVALID_ARGUMENT, api.svc.Batch, coll.req(cs_pb2.BatchRequest, operations=bad),
                  mentions=["operation 1"])


# =======================================================================================
# Records of known types in an untyped collection


SHOP_FILE = "shop/item.proto"


def shop_item(name, qty):
    n = name.encode()
    return bytes([0x0A, len(n)]) + n + bytes([0x10, qty])


@pytest.fixture(scope="module")
def shop_type(api):
    fd = descriptor_pb2.FileDescriptorProto(name=SHOP_FILE, package="shop", syntax="proto3")
    m = fd.message_type.add(name="Item")
    m.field.add(name="name", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
                label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    m.field.add(name="qty", number=2, type=descriptor_pb2.FieldDescriptorProto.TYPE_INT32,
                label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    assert_ok(call(api.registry.RegisterProto, registry_pb2.RegisterProtoRequest(namespace=DEFAULT_NS, file_descriptor=fd)))
    return "shop.Item"


def test_typed_records_in_an_untyped_collection(api, shop_type):
    coll = untyped(api)
    url = "example.com/types/grpc.testing.SimpleRequest"  # any prefix names the type
    a = any_pb2.Any(type_url=url, value=sr(size=42, body="hello there", fill=True).SerializeToString())
    coll.put(a, id="compiled")
    coll.put(raw_any(shop_type, shop_item("hammer", 3)), id="registered")
    coll.put(jany({"qty": 9, "name": "json"}), id="json")
    got = coll.get("compiled")
    assert (got.type_url, got.value) == (a.type_url, a.value)
    assert coll.get("registered").value == shop_item("hammer", 3)
    # Decoded: filters read the proto3 JSON (proto field names).
    r = coll.search(filters={"response_size": flt(OP.OP_EQUALS, 42), "fill_username": flt(OP.OP_EQUALS, True)})
    assert [x.item.type_url for x in r.results] == [url]
    r = coll.search(filters={"qty": flt(OP.OP_GREATER_EQUAL, 3)}, order_by="qty", ascending=True)
    assert [x.item.value for x in r.results] == [shop_item("hammer", 3), jany({"qty": 9, "name": "json"}).value]
    assert coll.search(full_text="hammer").total_count == 1
    # A value that is not the message its type_url names (nor a JSON object): refused.
    coll.rejected(C.INVALID_ARGUMENT, api.svc.Create,
                  coll.req(cs_pb2.CreateRequest, item=raw_any("grpc.testing.SimpleRequest", b"\xff\xff\xff")),
                  mentions=["grpc.testing.SimpleRequest"])


def test_opaque_records_found_by_id_not_by_field(api):
    coll = untyped(api)
    blobs = {"bin": b"\x89PNG\r\n\x1a\n\x00", "arr": b"[1, 2, 3]", "num": b"42", "empty": b""}
    for k, v in blobs.items():
        coll.put(jany(None, url="type.googleapis.com/acme.Blob", raw=v), id=k)
    for k, v in blobs.items():
        got = coll.get(k)
        assert (got.type_url, got.value) == ("type.googleapis.com/acme.Blob", v)
    assert [a.value for a in coll.list_all(order_by="@id")] == [blobs[k] for k in sorted(blobs)]
    assert coll.search(filters={"@id": flt(OP.OP_EQUALS, "arr")}).total_count == 1
    assert coll.search(filters={"@id": flt(OP.OP_IN, ["num", "bin"])}).total_count == 2
    for path in ("a", "x", "PNG"):
        assert coll.search(filters={path: flt(OP.OP_EXISTS)}).total_count == 0
    assert coll.search(full_text="PNG").total_count == 0


# =======================================================================================
# Refusals


def test_json_that_is_not_an_object(api):
    coll = untyped(api)
    coll.put(jany({"name": "keep"}), id="keep")
    # Under a type URL that names a known type: neither that message nor a JSON object.
    for raw in (b"[1, 2]", b'"text"', b"3"):
        coll.rejected(C.INVALID_ARGUMENT, api.svc.Create,
                      coll.req(cs_pb2.CreateRequest, item=jany(None, url="type.googleapis.com/" + STRUCT, raw=raw)),
                      mentions=[STRUCT])
    # Looks like an object and is none: invalid JSON, invalid UTF-8, too deep.
    deep = b'{"a":' * 100 + b"1" + b"}" * 100
    for raw in (b'{"a": }', b'{"a": "\xff"}', b'{"a": 1,}', deep):
        e = coll.rejected(C.INVALID_ARGUMENT, api.svc.Create, coll.req(cs_pb2.CreateRequest, item=jany(None, raw=raw)),
                          mentions=["JSON"])
        assert "object" in e.details()
    # Updates are refused the same way and change nothing.
    coll.rejected(C.INVALID_ARGUMENT, api.svc.Update,
                  coll.req(cs_pb2.UpdateRequest, id="keep", item=jany(None, raw=b"{oops}")))
    assert json.loads(coll.get("keep").value) == {"name": "keep"}
    # An array under a URL no one knows is kept, opaque.
    coll.put(jany(None, raw=b"[1,2]"), id="arr")
    assert coll.search(filters={"name": flt(OP.OP_EXISTS)}).total_count == 1


def test_typed_collections_stay_strict(api):
    coll = api.coll()  # grpc.testing.SimpleRequest
    coll.put(sr(size=1))
    coll.rejected(C.INVALID_ARGUMENT, api.svc.Create, coll.req(cs_pb2.CreateRequest, item=jany({"response_size": 1})),
                  mentions=["grpc.testing.SimpleRequest"])
    coll.rejected(C.INVALID_ARGUMENT, api.svc.Create,
                  coll.req(cs_pb2.CreateRequest, item=jany({"a": 1}, url="type.googleapis.com/grpc.testing.SimpleRequest")))
    expect_error(C.INVALID_ARGUMENT, coll.svc.Search,
                 coll.req(cs_pb2.SearchRequest, filters={"no_such_field": flt(OP.OP_EQUALS, 1)}), mentions=["no_such_field"])
    expect_error(C.INVALID_ARGUMENT, coll.svc.List, coll.req(cs_pb2.ListRequest, order_by='"first-name"'))


# =======================================================================================
# Masked updates


def test_masked_update_merges_json_keys(api):
    coll = untyped(api)
    coll.put(jany({"a": 1, "b": {"c": 2, "d": 3}, "x": "gone"}), id="r")
    coll.update("r", jany({"b": {"c": 5, "e": 6}, "z": 9}), mask=["b.c", "x", "z"])
    assert json.loads(coll.get("r").value) == {"a": 1, "b": {"c": 5, "d": 3}, "z": 9}
    assert coll.search(filters={"b.c": flt(OP.OP_EQUALS, 5)}).total_count == 1
    coll.update("r", jany({"q": {"r": "s"}}), mask=['"q"'])
    assert json.loads(coll.get("r").value)["q"] == {"r": "s"}
    # The record's type_url must be the item's: a mask never changes a record's kind.
    e = coll.rejected(C.FAILED_PRECONDITION, api.svc.Update,
                      coll.req(cs_pb2.UpdateRequest, id="r", item=jany({"a": 2}, url="x/other"), update_mask=["a"]))
    assert "type_url" in e.details()
    # Opaque records and items have no fields to merge.
    coll.put(jany(None, raw=b"\x01\x02"), id="blob")
    coll.rejected(C.FAILED_PRECONDITION, api.svc.Update,
                  coll.req(cs_pb2.UpdateRequest, id="blob", item=jany({"a": 2}), update_mask=["a"]), mentions=["opaque"])
    coll.rejected(C.INVALID_ARGUMENT, api.svc.Update,
                  coll.req(cs_pb2.UpdateRequest, id="r", item=jany(None, raw=b"\x01"), update_mask=["a"]),
                  mentions=["opaque"])
    coll.rejected(C.INVALID_ARGUMENT, api.svc.Update,
                  coll.req(cs_pb2.UpdateRequest, id="r", item=jany({"b": [1]}), update_mask=["b[0]"]))
    coll.rejected(C.NOT_FOUND, api.svc.Update,
                  coll.req(cs_pb2.UpdateRequest, id="nope", item=jany({"a": 2}), update_mask=["a"]))


def test_masked_update_of_a_typed_record(api):
    coll = untyped(api)
    url = "type.googleapis.com/grpc.testing.SimpleRequest"
    coll.put(any_pb2.Any(type_url=url, value=sr(size=1, body="keep").SerializeToString()), id="t")
    coll.update("t", any_pb2.Any(type_url=url, value=sr(size=9, body="drop").SerializeToString()),
                mask=["response_size"])
    got = coll.get("t")
    m = unpack(got, "grpc.testing.SimpleRequest")
    assert (m.response_size, m.payload.body) == (9, b"keep")


# =======================================================================================
# Collections of google.protobuf.Struct


@pytest.fixture(scope="module")
def structs(api):
    coll = api.coll(STRUCT, prefix="s")
    for k, u in USERS.items():
        coll.put(struct(u), id=k)
    return coll


def struct_names(items):
    return [unpack(a, STRUCT)["name"] for a in items]


def test_struct_collection_filters_and_order(structs):
    r = structs.search(filters={"address.city": flt(OP.OP_EQUALS, "Paris"), "age": flt(OP.OP_LESS_THAN, 40)})
    assert struct_names(x.item for x in r.results) == ["ann"]
    r = structs.search(filters={'"first-name"': flt(OP.OP_IN, ["Bob", "Cy"])}, order_by="age desc")
    assert struct_names(x.item for x in r.results) == ["cy", "bob"]
    assert struct_names(structs.list_all(order_by="address.city desc, age")) == ["ann", "cy", "bob"]
    assert struct_names(structs.list_all({"address": {"zip": "75002"}})) == ["cy"]
    assert structs.search(filters={"tags": flt(OP.OP_CONTAINS, "ops")}).total_count == 1
    assert structs.search(filters={"missing.key": flt(OP.OP_EQUALS, 1)}).total_count == 0
    expect_error(C.INVALID_ARGUMENT, structs.svc.Search,
                 structs.req(cs_pb2.SearchRequest, filters={"a..b": flt(OP.OP_EQUALS, 1)}))


def test_struct_collection_mask_and_indexes(api):
    coll = api.coll(STRUCT, prefix="s", indexed=["address.city"])
    coll.put(struct({"name": "a", "address": {"city": "Oslo", "zip": "1"}}), id="a")
    coll.update("a", struct({"address": {"city": "Rome"}}), mask=["address.city"])
    assert json_format.MessageToDict(unpack(coll.get("a"), STRUCT))["address"] == {"city": "Rome", "zip": "1"}
    assert coll.search(filters={"address.city": flt(OP.OP_EQUALS, "Rome")}).total_count == 1
    assert_ok(call(api.svc.Modify, coll.req(cs_pb2.ModifyRequest, indexed_fields=["name", "address.zip"])))
    expect_error(C.INVALID_ARGUMENT, api.svc.Modify,
                 coll.req(cs_pb2.ModifyRequest, indexed_fields=['"first-name"']), mentions=["quoted"])
    # Still a typed collection: the records must be Structs.
    coll.rejected(C.INVALID_ARGUMENT, api.svc.Create, coll.req(cs_pb2.CreateRequest, item=pack(sr(size=1))))


def test_untyped_indexes_and_search_collections(api):
    coll = untyped(api, indexed=["user.name"])
    coll.put(jany({"user": {"name": "zed"}, "k": 1}), id="z")
    coll.put(jany({"user": {"name": "amy"}, "k": 2}), id="a")
    r = coll.search(filters={"user.name": flt(OP.OP_EQUALS, "zed")})
    assert [x.item.value for x in r.results] == [jany({"user": {"name": "zed"}, "k": 1}).value]
    q = struct({"k": {"operator": "OP_GREATER_THAN", "value": 1}})
    r = assert_ok(call(api.repo.SearchCollections,
                       repo.SearchCollectionsRequest(namespace=DEFAULT_NS, collection_names=[coll.name], query=q)))
    assert [json.loads(a.value)["k"] for a in r.results[0].items] == [2]
    assert r.results[0].items[0].type_url == UNKNOWN_URL


def test_untyped_records_survive_kill_9(servers):
    n1 = servers.node()
    coll = untyped(Api(n1))
    coll.put(jany({"name": "durable"}, url="t/u"), id="d")
    coll.put(jany(None, raw=b"\x00opaque"), id="o")
    n1.stop(signal.SIGKILL)
    n2 = servers.node(data_dir=n1.data_dir)
    again = Coll(Api(n2), coll.ns, coll.name, type_name=None)
    assert (again.get("d").type_url, json.loads(again.get("d").value)) == ("t/u", {"name": "durable"})
    assert again.get("o").value == b"\x00opaque"
    assert again.search(filters={"name": flt(OP.OP_EQUALS, "durable")}).total_count == 1
