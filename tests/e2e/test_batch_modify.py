"""CollectionService.Batch (all operations in one transaction, a status per operation) and
Modify (indexed fields built or dropped), against a real node."""

import sqlite3

import pytest

from collections_util import (
    C, OK, Api, assert_ok, call, cs_pb2, expect_error, flt, pack, sr, unpack, SIMPLE,
)
from collector import common_pb2

ABORTED = common_pb2.Status.ABORTED


@pytest.fixture(scope="module")
def api(shared_node):
    return Api(shared_node)


def op_create(item, id=""):
    return cs_pb2.RequestOp(create=cs_pb2.CreateRequest(item=item, id=id))


def op_update(id, item, mask=()):
    return cs_pb2.RequestOp(update=cs_pb2.UpdateRequest(id=id, item=item, update_mask=list(mask)))


def op_delete(id):
    return cs_pb2.RequestOp(delete=cs_pb2.DeleteRequest(id=id))


def batch(coll, *ops):
    return call(coll.svc.Batch, coll.req(cs_pb2.BatchRequest, operations=list(ops)))


def test_batch_applies_every_operation(api):
    coll = api.coll()
    coll.put(pack(sr(1)), id="keep")
    coll.put(pack(sr(2)), id="gone")
    r = batch(coll, op_create(pack(sr(10)), "new"), op_create(pack(sr(11))),
              op_update("keep", pack(sr(5, fill=True)), ["fill_username"]), op_delete("gone"))
    assert r.status.code == OK, r.status
    assert [o.status.code for o in r.responses] == [OK] * 4
    assert r.responses[0].create.id == "new"
    made = r.responses[1].create.id
    assert made and made != "new"
    kept = unpack(coll.get("keep"), SIMPLE)
    assert (kept.response_size, kept.fill_username) == (1, True)  # only the masked field
    assert len(coll.snapshot()) == 3
    for id in ("new", made):
        coll.get(id)
    expect_error(C.NOT_FOUND, coll.svc.Get, coll.req(cs_pb2.GetRequest, id="gone"))


def test_batch_is_all_or_nothing(api):
    coll = api.coll()
    coll.put(pack(sr(1)), id="a")
    before = coll.snapshot()
    r = batch(coll, op_create(pack(sr(2)), "b"), op_create(pack(sr(3)), "a"), op_delete("a"))
    assert r.status.code == ABORTED and "operation 1" in r.status.message, r.status
    codes = [o.status.code for o in r.responses]
    assert codes == [ABORTED, common_pb2.Status.ALREADY_EXISTS, ABORTED], codes
    assert "already exists" in r.responses[1].status.message
    assert coll.snapshot() == before
    r = batch(coll, op_update("missing", pack(sr(4))))
    assert r.responses[0].status.code == common_pb2.Status.NOT_FOUND
    assert coll.snapshot() == before


@pytest.mark.parametrize("ops,word", [
    ([], "1 to"),
    ([cs_pb2.RequestOp()], "empty"),
    ([op_create(pack(sr(1)), "x"), op_update("x", pack(sr(1)), ["nope"])], "operation 1"),
    ([op_create(pack(sr(1)), "bad\x7fid")], "operation 0"),
])
def test_batch_bad_requests_rejected(api, ops, word):
    coll = api.coll()
    before = coll.snapshot()
    e = expect_error(C.INVALID_ARGUMENT, coll.svc.Batch, coll.req(cs_pb2.BatchRequest, operations=ops))
    assert word in e.details(), e.details()
    assert coll.snapshot() == before


def test_batch_op_naming_another_collection_rejected(api):
    coll, other = api.coll(), api.coll()
    op = cs_pb2.RequestOp(create=cs_pb2.CreateRequest(collection_name=other.name, item=pack(sr(1))))
    e = expect_error(C.INVALID_ARGUMENT, coll.svc.Batch, coll.req(cs_pb2.BatchRequest, operations=[op]))
    assert "another collection" in e.details()
    assert coll.snapshot() == [] and other.snapshot() == []


def test_batch_too_many_operations(api):
    coll = api.coll()
    ops = [op_create(pack(sr(1))) for _ in range(1001)]
    expect_error(C.INVALID_ARGUMENT, coll.svc.Batch, coll.req(cs_pb2.BatchRequest, operations=ops))
    assert coll.snapshot() == []


def indexes(node, coll):
    db = node.data_dir / coll.ns / coll.name / "records.db"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        return sorted(r[0] for r in c.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND name LIKE 'ix_%'"))


def test_modify_builds_and_drops_indexes(api, shared_node):
    coll = api.coll()
    for i in range(20):
        coll.put(pack(sr(i, fill=i % 2 == 0)))
    assert indexes(shared_node, coll) == []
    assert_ok(call(coll.svc.Modify, coll.req(cs_pb2.ModifyRequest,
                                             indexed_fields=["response_size", "payload.body"])))
    got = indexes(shared_node, coll)
    assert len(got) == 2 and any("$.response_size" in s for s in got), got
    d = coll.describe()
    assert list(d.collection_definition.indexed_fields) == ["response_size", "payload.body"]
    # Queries on the indexed path give the same answers as before.
    r = coll.search(filters={"response_size": flt(cs_pb2.OP_GREATER_EQUAL, 15)})
    assert r.total_count == 5
    assert_ok(call(coll.svc.Modify, coll.req(cs_pb2.ModifyRequest, indexed_fields=["fill_username"])))
    got = indexes(shared_node, coll)
    assert len(got) == 1 and "$.fill_username" in got[0], got
    assert list(coll.describe().collection_definition.indexed_fields) == ["fill_username"]


def test_modify_then_describe_and_query(api):
    """Modify changes the definition the node keeps in memory for an open collection: the
    next Describe sees the new indexed fields at once, and queries (which write indexed
    paths as the index's expression) keep their answers."""
    coll = api.coll(indexed=["response_size"])
    ids = [coll.put(pack(sr(i, fill=i % 2 == 0))) for i in range(10)]
    assert list(coll.describe().collection_definition.indexed_fields) == ["response_size"]
    for fields in (["fill_username"], [], ["payload.body", "response_size"], ["response_size"]):
        coll.get(ids[0])  # the definition in use just before
        assert_ok(call(coll.svc.Modify, coll.req(cs_pb2.ModifyRequest, indexed_fields=fields)))
        d = coll.describe().collection_definition
        assert list(d.indexed_fields) == fields
        assert d.metadata.HasField("updated_at")
        r = coll.search(filters={"response_size": flt(cs_pb2.OP_GREATER_EQUAL, 6)})
        assert r.total_count == 4
    # Records are untouched by the definition's changes.
    assert sorted(unpack(coll.get(i), SIMPLE).response_size for i in ids) == list(range(10))


@pytest.mark.parametrize("field", ["no_such_field", "a b", "x'); DROP TABLE records; --", "@id"])
def test_modify_rejects_bad_fields(api, shared_node, field):
    coll = api.coll(indexed=["response_size"])
    before = indexes(shared_node, coll)
    expect_error(C.INVALID_ARGUMENT, coll.svc.Modify,
                 coll.req(cs_pb2.ModifyRequest, indexed_fields=["fill_username", field]))
    assert indexes(shared_node, coll) == before
    assert list(coll.describe().collection_definition.indexed_fields) == ["response_size"]


def test_modify_unknown_collection(api):
    expect_error(C.NOT_FOUND, api.svc.Modify,
                 cs_pb2.ModifyRequest(collection_name="never-made", indexed_fields=[]))
