"""Collections, bad input (issue 13): each of these requests is refused with
INVALID_ARGUMENT and a message naming what is wrong, and changes nothing.

- CreateCollection: a negative backup_policy.max_backups or retention_seconds.
- List: a page token from another collection (another name, another namespace, or the
  same name deleted and created again); Discover: a token from another namespace or
  other filters, or one the node did not issue.
- Search: a filter whose operator needs a value (all but OP_EXISTS and OP_NOT_EXISTS)
  without one, or with one of the wrong kind (OP_IN takes a list); the same in
  SearchCollections' query.
"""

import pytest
from google.protobuf import struct_pb2

from collections_util import (
    BACKUP, DEFAULT_NS, Api, C, Coll, assert_ok, call, collection_msg, cs_pb2, expect_error, flt,
    nn, pack, repo_pb2, sr, struct, uniq,
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
# Page tokens belong to the collection they came from


def _filled(api, ns=DEFAULT_NS, name=None, n=6):
    """A collection (a fresh name unless given) of n SimpleRequests r0..r{n-1}."""
    if name:
        api.create_collection(name, ns=ns)
        coll = Coll(api, ns, name)
    else:
        coll = api.coll(ns=ns)
    for i in range(n):
        coll.put(sr(i + 1, f"r{i}", fill=True), id=f"r{i}")
    return coll


def _first_token(coll, **kw):
    r = coll.list(page_size=2, **kw)
    assert r.next_page_token, "a first page of 2 out of 6 has a next_page_token"
    return r.next_page_token


def test_list_token_from_another_collection_refused(api):
    a, b = _filled(api), _filled(api)
    for kw in ({}, {"order_by": "response_size desc"}, {"order_by": "@id", "filter": {"fill_username": True}}):
        tok = _first_token(a, **kw)
        req = b.req(cs_pb2.ListRequest, page_size=2, page_token=tok, order_by=kw.get("order_by", ""))
        if "filter" in kw:
            req.filter.CopyFrom(struct(kw["filter"]))
        b.rejected(C.INVALID_ARGUMENT, api.svc.List, req, mentions=["page_token", "collection"])
        # The token still works where it came from.
        req.collection_name = a.name
        assert len(assert_ok(call(api.svc.List, req)).items) == 2


def test_list_token_from_same_name_in_another_namespace_refused(api):
    ns2 = api.serve_in(uniq("tok"))
    name = uniq("same")
    a = _filled(api, DEFAULT_NS, name)
    b = _filled(api, ns2, name)
    tok = _first_token(a)
    b.rejected(C.INVALID_ARGUMENT, api.svc.List, b.req(cs_pb2.ListRequest, page_size=2, page_token=tok),
               mentions=["page_token", "collection"])


def test_list_token_from_deleted_and_recreated_collection_refused(api):
    name = uniq("again")
    a = _filled(api, DEFAULT_NS, name)
    tok = _first_token(a)
    assert_ok(call(api.repo.DeleteCollection, repo_pb2.DeleteCollectionRequest(collection=nn(DEFAULT_NS, name))))
    again = _filled(api, DEFAULT_NS, name)
    again.rejected(C.INVALID_ARGUMENT, api.svc.List, again.req(cs_pb2.ListRequest, page_size=2, page_token=tok),
                   mentions=["page_token", "collection"])
    # A token of the new collection pages it to the end.
    assert len(again.list_all()) == 6


def _discover(api, ns, **kw):
    return assert_ok(call(api.repo.Discover, repo_pb2.DiscoverRequest(namespace=ns, **kw)))


def test_discover_token_bound_to_namespace_and_filters(api):
    ns, ns2 = uniq("dt"), uniq("dt")
    for n in ("p0", "p1", "p2", "p3"):
        api.create_collection(n, ns=ns, labels={"team": "a"})
        api.create_collection(n, ns=ns2, labels={"team": "a"})
    tok = _discover(api, ns, page_size=2).next_page_token
    assert tok
    assert [c.name for c in _discover(api, ns, page_size=2, page_token=tok).collections] == ["p2", "p3"]
    before = catalog(api, ns2)
    expect_error(C.INVALID_ARGUMENT, api.repo.Discover,
                 repo_pb2.DiscoverRequest(namespace=ns2, page_size=2, page_token=tok), mentions=["page_token"])
    for kw in ({"label_filter": {"team": "a"}}, {"message_type_filter": {"message_name": BACKUP}}):
        expect_error(C.INVALID_ARGUMENT, api.repo.Discover,
                     repo_pb2.DiscoverRequest(namespace=ns, page_size=2, page_token=tok, **kw),
                     mentions=["page_token"])
    # A token made by hand is not one the node issued, even one naming a real position.
    for forged in ((ns + "\0p1").encode().hex(), (ns + "\0").encode().hex()):
        expect_error(C.INVALID_ARGUMENT, api.repo.Discover,
                     repo_pb2.DiscoverRequest(namespace=ns, page_size=2, page_token=forged), mentions=["page_token"])
    # A List token is no Discover token, nor the other way round.
    coll = _filled(api, ns)
    expect_error(C.INVALID_ARGUMENT, api.repo.Discover,
                 repo_pb2.DiscoverRequest(namespace=ns, page_token=_first_token(coll)), mentions=["page_token"])
    coll.rejected(C.INVALID_ARGUMENT, api.svc.List, coll.req(cs_pb2.ListRequest, page_size=2, page_token=tok),
                  mentions=["page_token"])
    assert catalog(api, ns2) == before


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


# =======================================================================================
# List: a page that ends on an order key no page token holds (issue 13's weak point)


def test_list_page_ending_on_an_untokenable_key_is_refused(api):
    """A List ordered by a string longer than a page token holds (64 KiB) used to end its
    paging there with an empty next_page_token: the records after it were silently
    missed. Such a page is refused, naming the record; pages that end elsewhere, or need
    no token, still work."""
    coll = api.coll()
    big = 50_000  # bytes: their base64 text in the JSON is ~66,700 characters
    for i, size in enumerate([big, big, 10, big]):
        coll.put(sr(body=bytes([65 + i]) * size), id=f"r{i}")
    order = "payload.body"
    # Ascending, the base64 keys sort "Q0ND.." (r2, short) < "QUFB.." (r0) < "QkJC.." (r1)
    # < "RERE.." (r3). A page ending on the short key carries a token...
    first = coll.list(order_by=order, page_size=1)
    assert first.next_page_token and len(first.items) == 1
    # ...and the next page, ending on r0's long key with records after it, is refused.
    e = coll.rejected(C.FAILED_PRECONDITION, coll.svc.List,
                      coll.req(cs_pb2.ListRequest, order_by=order, page_size=1, page_token=first.next_page_token),
                      mentions=["r0", "65536"])
    assert "order" in e.details()
    coll.rejected(C.FAILED_PRECONDITION, coll.svc.List,
                  coll.req(cs_pb2.ListRequest, order_by=order + " desc", page_size=1), mentions=["r3"])
    # One page for all, or a last page: no token needed.
    assert len(coll.list(order_by=order, page_size=10).items) == 4
    last = coll.list(order_by=order, page_size=3, page_token=first.next_page_token)
    assert len(last.items) == 3 and not last.next_page_token
