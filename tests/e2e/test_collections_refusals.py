"""Collections, bad input (issue 13): each of these requests is refused with
INVALID_ARGUMENT and a message naming what is wrong, and changes nothing.

- CreateCollection: a negative backup_policy.max_backups or retention_seconds.
- Search: a filter whose operator needs a value (all but OP_EXISTS and OP_NOT_EXISTS)
  without one, or with one of the wrong kind (OP_IN takes a list); the same in
  SearchCollections' query.
"""

import pytest
from google.protobuf import struct_pb2

from collections_util import (
    BACKUP, Api, C, assert_ok, call, collection_msg, cs_pb2, expect_error, flt, pack, repo_pb2, struct,
    uniq,
)

OP = cs_pb2.FilterOperator


@pytest.fixture(scope="module")
def api(shared_node):
    return Api(shared_node)


def catalog(api, ns):
    """The namespace's collections as Discover shows them (definitions included)."""
    return [c.SerializeToString() for c in api.discover_all(ns)]


# =======================================================================================
# CreateCollection: backup_policy


@pytest.mark.parametrize("field,value", [("max_backups", -1), ("max_backups", -2147483648),
                                         ("retention_seconds", -1), ("retention_seconds", -(2 ** 63))])
def test_negative_backup_policy_refused(api, field, value):
    ns = uniq("bp")
    api.create_collection("keep", ns=ns)
    before = catalog(api, ns)
    name = uniq("neg")
    c = collection_msg(ns, name)
    c.backup_policy.enabled = True
    setattr(c.backup_policy, field, value)
    expect_error(C.INVALID_ARGUMENT, api.repo.CreateCollection, repo_pb2.CreateCollectionRequest(collection=c),
                 mentions=[f"backup_policy.{field}"])
    api.assert_absent(ns, name)
    assert catalog(api, ns) == before, "a refused CreateCollection changed the catalog"


def test_backup_policy_zero_and_positive_kept(api):
    ns = uniq("bp")
    for name, mb, rs in (("zero", 0, 0), ("pos", 3, 86400)):
        c = collection_msg(ns, name)
        c.backup_policy.max_backups, c.backup_policy.retention_seconds = mb, rs
        assert_ok(call(api.repo.CreateCollection, repo_pb2.CreateCollectionRequest(collection=c)))
        p = api.route(ns, name).collection.backup_policy
        assert (p.max_backups, p.retention_seconds) == (mb, rs)


# =======================================================================================
# Search filters need a value of the right kind


@pytest.fixture(scope="module")
def backups(api):
    coll = api.coll(BACKUP, prefix="fv")
    B = repo_pb2.BackupMetadata
    for bid, size in (("alpha", 5), ("beta", 40), ("gamma", 300)):
        coll.put(pack(B(backup_id=bid, size_bytes=size, storage_path=f"/srv/{bid}")), id=bid)
    return coll


NEEDS_VALUE = [OP.OP_EQUALS, OP.OP_NOT_EQUALS, OP.OP_GREATER_THAN, OP.OP_LESS_THAN, OP.OP_GREATER_EQUAL,
               OP.OP_LESS_EQUAL, OP.OP_CONTAINS, OP.OP_IN]


def _search_req(coll, key, f):
    req = coll.req(cs_pb2.SearchRequest)
    req.filters[key].CopyFrom(f)
    return req


@pytest.mark.parametrize("op", NEEDS_VALUE, ids=[OP.Name(o) for o in NEEDS_VALUE])
@pytest.mark.parametrize("how", ["absent", "no-kind"])
def test_search_filter_without_value_refused(api, backups, op, how):
    f = cs_pb2.Filter(operator=op)
    if how == "no-kind":
        f.value.SetInParent()  # a Value message with none of its kinds set
    backups.rejected(C.INVALID_ARGUMENT, api.svc.Search, _search_req(backups, "size_bytes", f),
                     mentions=["size_bytes", "value"])


def test_search_filter_entry_without_filter_refused(api, backups):
    req = backups.req(cs_pb2.SearchRequest)
    req.filters["backup_id"]  # a map entry whose Filter is absent: no operator, no value
    raw = req.SerializeToString()
    req = cs_pb2.SearchRequest.FromString(raw)
    assert "backup_id" in req.filters
    backups.rejected(C.INVALID_ARGUMENT, api.svc.Search, req, mentions=["backup_id"])


def _null(op):
    """A filter whose value is JSON null (flt(op, None) sends no value at all)."""
    f = cs_pb2.Filter(operator=op)
    f.value.null_value = struct_pb2.NULL_VALUE
    return f


@pytest.mark.parametrize("val", ["alpha", 5, True, None, {"a": 1}], ids=["string", "number", "bool", "null", "struct"])
def test_search_in_needs_a_list(api, backups, val):
    f = _null(OP.OP_IN) if val is None else flt(OP.OP_IN, val)
    backups.rejected(C.INVALID_ARGUMENT, api.svc.Search, _search_req(backups, "backup_id", f),
                     mentions=["backup_id", "list"])


def test_search_in_list_item_without_kind_refused(api, backups):
    f = flt(OP.OP_IN, ["alpha"])
    f.value.list_value.values.add()  # an element with no kind
    backups.rejected(C.INVALID_ARGUMENT, api.svc.Search, _search_req(backups, "backup_id", f),
                     mentions=["backup_id"])


@pytest.mark.parametrize("op", [OP.OP_EXISTS, OP.OP_NOT_EXISTS], ids=["EXISTS", "NOT_EXISTS"])
def test_exists_needs_no_value(backups, op):
    r = backups.search(filters={"storage_path": cs_pb2.Filter(operator=op)}, limit=10)
    assert r.total_count == (3 if op == OP.OP_EXISTS else 0)


def test_equals_null_still_means_missing(backups):
    r = backups.search(filters={"metadata.owner": _null(OP.OP_EQUALS)}, limit=10)
    assert r.total_count == 3
    r = backups.search(filters={"metadata.owner": _null(OP.OP_NOT_EQUALS)}, limit=10)
    assert r.total_count == 0


def _sc_req(ns, names, q):
    return repo_pb2.SearchCollectionsRequest(namespace=ns, collection_names=names, query=q)


def test_search_collections_filter_without_value_refused(api, backups):
    ns, names = backups.ns, [backups.name]
    before = backups.snapshot()
    for op in ("OP_EQUALS", "OP_GREATER_THAN", "OP_IN", "OP_CONTAINS"):
        expect_error(C.INVALID_ARGUMENT, api.repo.SearchCollections,
                     _sc_req(ns, names, struct({"size_bytes": {"operator": op}})), mentions=["size_bytes", "value"])
        q = struct_pb2.Struct()
        inner = q.fields["size_bytes"].struct_value
        inner.fields["operator"].string_value = op
        inner.fields["value"].SetInParent()  # present, but a Value of no kind
        expect_error(C.INVALID_ARGUMENT, api.repo.SearchCollections, _sc_req(ns, names, q),
                     mentions=["size_bytes", "value"])
    expect_error(C.INVALID_ARGUMENT, api.repo.SearchCollections,
                 _sc_req(ns, names, struct({"backup_id": {"operator": "OP_IN", "value": "alpha"}})),
                 mentions=["backup_id", "list"])
    q = struct_pb2.Struct()
    q.fields["backup_id"].SetInParent()  # a plain equality whose Value has no kind
    expect_error(C.INVALID_ARGUMENT, api.repo.SearchCollections, _sc_req(ns, names, q), mentions=["backup_id"])
    r = assert_ok(call(api.repo.SearchCollections,
                       _sc_req(ns, names, struct({"storage_path": {"operator": "OP_EXISTS"}}))))
    assert r.total_matches == 3
    assert backups.snapshot() == before


def test_list_filter_value_without_kind_refused(api, backups):
    req = backups.req(cs_pb2.ListRequest)
    req.filter.fields["backup_id"].SetInParent()
    backups.rejected(C.INVALID_ARGUMENT, api.svc.List, req, mentions=["backup_id"])
