"""CollectionRepo.SearchCollections: one query (a Struct: "full_text" and field filters)
over the named collections of a namespace, or all of them; results grouped per
collection with a score per record id."""

import pytest
from google.protobuf import struct_pb2

from collections_util import C, Api, assert_ok, call, expect_error, pack, repo_pb2, unpack, uniq, BACKUP


@pytest.fixture(scope="module")
def api(shared_node):
    return Api(shared_node)


@pytest.fixture(scope="module")
def zoo(api):
    ns = uniq("zoo")
    a, b, c = (api.coll(BACKUP, ns=ns, prefix=p) for p in ("a", "b", "c"))
    B = repo_pb2.BackupMetadata
    a.put(pack(B(storage_path="zebra stripes", size_bytes=1)), id="a1")
    a.put(pack(B(storage_path="lion mane", size_bytes=9)), id="a2")
    b.put(pack(B(storage_path="zebra crossing zebra", size_bytes=7)), id="b1")
    c.put(pack(B(storage_path="nothing here", size_bytes=3)), id="c1")
    return ns, a, b, c


def query(d):
    s = struct_pb2.Struct()
    s.update(d)
    return s


def search(api, ns, q, names=(), limit=0):
    req = repo_pb2.SearchCollectionsRequest(namespace=ns, collection_names=list(names), query=query(q),
                                            limit=limit)
    return assert_ok(call(api.repo.SearchCollections, req))


def test_full_text_over_the_whole_namespace(api, zoo):
    ns, a, b, c = zoo
    r = search(api, ns, {"full_text": "zebra"})
    got = {res.collection_name: sorted(res.scores) for res in r.results if res.items}
    assert got == {a.name: ["a1"], b.name: ["b1"]}, got
    assert r.total_matches == 2
    for res in r.results:
        assert len(res.items) == len(res.scores)
        for item in res.items:
            assert unpack(item, BACKUP).storage_path.startswith("zebra")
        assert all(s > 0 for s in res.scores.values())


def test_named_collections_and_field_filters(api, zoo):
    ns, a, b, c = zoo
    r = search(api, ns, {"size_bytes": {"operator": "OP_GREATER_THAN", "value": 5}}, [a.name, c.name])
    assert [res.collection_name for res in r.results] == [a.name, c.name]
    assert sorted(r.results[0].scores) == ["a2"] and not r.results[1].items
    assert r.total_matches == 1


def test_limit_is_per_collection(api, zoo):
    ns, a, b, c = zoo
    r = search(api, ns, {}, limit=1)
    assert all(len(res.items) <= 1 for res in r.results)
    assert r.total_matches == 4


@pytest.mark.parametrize("q,names,code", [
    ({"full_text": "x"}, ["no-such-collection"], C.NOT_FOUND),
    ({"no_such_field": 1}, [], C.INVALID_ARGUMENT),
    ({"size_bytes": {"operator": "OP_GREATER_THAN", "value": True}}, [], C.INVALID_ARGUMENT),
    ({"full_text": "x"}, ["bad/name"], C.INVALID_ARGUMENT),
])
def test_bad_searches(api, zoo, q, names, code):
    ns = zoo[0]
    req = repo_pb2.SearchCollectionsRequest(namespace=ns, collection_names=names, query=query(q))
    expect_error(code, api.repo.SearchCollections, req)


def test_full_text_alone_matches_the_general_form(api):
    """Full text alone takes a faster plan (FTS5 ranks and cuts the page); with any extra
    condition the general plan runs. Both must give the same rows, order and count,
    ties (equal scores) included, in both directions and across pages."""
    from collections_util import cs_pb2, flt
    coll = api.coll(BACKUP, prefix="fts-same")
    B = repo_pb2.BackupMetadata
    for i in range(40):
        text = "zebra " * (1 + i % 3) + ("lion" if i % 2 else "tiger")
        coll.put(pack(B(storage_path=text, size_bytes=i)), id=f"r{i:02d}")
    everything = {"@id": flt(cs_pb2.OP_NOT_EQUALS, "none")}
    for asc in (False, True):
        for limit, offset in ((7, 0), (7, 7), (50, 0), (5, 33)):
            fast = coll.search("zebra", limit=limit, offset=offset, ascending=asc)
            general = coll.search("zebra", filters=everything, limit=limit, offset=offset, ascending=asc)
            ids = lambda r: [unpack(x.item, BACKUP).size_bytes for x in r.results]
            assert ids(fast) == ids(general), (asc, limit, offset)
            assert [x.score for x in fast.results] == pytest.approx([x.score for x in general.results])
            assert fast.total_count == general.total_count == 40
