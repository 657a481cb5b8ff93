"""Collections: responses are bounded by bytes as well as by count (issue 13).

A page whose items add up to more than --max-message-bytes is cut short instead of failing
with RESOURCE_EXHAUSTED: List and Discover return fewer items with a next_page_token that
continues right after the last one returned, so paging visits every record exactly once;
Search returns fewer results (total_count still counts every match: the next offset is
offset + len(results)); SearchCollections leaves out the items that do not fit, and the
collections after them (total_matches still counts every match). One item always goes
when it fits in a response by itself; one that cannot fit even alone is RESOURCE_EXHAUSTED
naming it, and changes nothing.
"""

import pytest

from collections_util import (
    C, SIMPLE, Api, assert_ok, call, collection_msg, cs_pb2, expect_error, pack, raw_any, repo_pb2, sr,
    struct, uniq,
)
from conftest import _Factory, _finish
from stdgrpc.testing import messages_pb2

LIMIT = 65536
SEARCH_REQ = "collector.SearchRequest"

# Record sizes (bytes of text): a mix, so that pages hold one, several, or many records,
# and one record just under the limit.
SIZES = [30000, 30000, 100, 20000, 50000, 10, LIMIT - 400, 5, 40000, 40000, 40000, 1, 200, 300, 63000]


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    """One node with a small limit, so that a few records overflow a page."""
    f = _Factory(tmp_path_factory)
    yield f.node("--max-message-bytes", str(LIMIT))
    _finish(f.procs)


@pytest.fixture(scope="module")
def api(node):
    return Api(node)


def rec(i, size):
    """A SimpleRequest with `size` bytes of searchable text (the word zebra, then filler)."""
    m = messages_pb2.SimpleRequest(response_size=i)
    m.response_status.message = "zebra " + "y" * size
    return m


@pytest.fixture(scope="module")
def mixed(api):
    coll = api.coll(prefix="bytes")
    for i, size in enumerate(SIZES):
        coll.put(rec(i, size), id=f"r{i:02d}")
    return coll


def fits(resp):
    n = len(resp.SerializeToString())
    assert n <= LIMIT, f"{type(resp).__name__} of {n} bytes is over the {LIMIT}-byte limit"
    return n


def item_bytes(item):
    """What one more item adds to a response, at least."""
    return len(item.SerializeToString()) + 4


def ids_of(items):
    return [messages_pb2.SimpleRequest.FromString(a.value).response_size for a in items]


def page_all(coll, page_size, order_by=""):
    """Every page of a List, each checked to fit in a response and to hold something."""
    pages, token = [], ""
    while True:
        r = coll.list(order_by=order_by, page_size=page_size, page_token=token)
        fits(r)
        assert r.items, "a page with no items"
        assert r.total_count == len(SIZES)
        pages.append(list(r.items))
        assert len(pages) <= len(SIZES), "paging never ends"
        if not r.next_page_token:
            return pages
        assert r.next_page_token != token
        token = r.next_page_token


@pytest.mark.parametrize("order_by", ["", "@id desc", "response_size"])
@pytest.mark.parametrize("page_size", [1000, 10, 3])
def test_list_pages_bounded_by_bytes(mixed, order_by, page_size):
    # One record per page always fits: that is the order every paging must reproduce.
    want = [x for p in page_all(mixed, 1, order_by) for x in ids_of(p)]
    assert sorted(want) == list(range(len(SIZES)))
    pages = page_all(mixed, page_size, order_by)
    got = [x for p in pages for x in ids_of(p)]
    assert got == want, "every record exactly once, in order"
    assert any(len(p) > 1 for p in pages), "records that fit together share a page"
    # A page cut before page_size was full: the next record would not have fitted.
    flat = [item for p in pages for item in p]
    at = 0
    for p in pages[:-1]:
        at += len(p)
        if len(p) < page_size:
            size = sum(item_bytes(x) for x in p) + item_bytes(flat[at])
            assert size > LIMIT - 400, f"a page of {len(p)} was cut with room for the next record"


def test_search_results_bounded_by_bytes(mixed):
    for kw in ({"order_by": "@id", "ascending": True}, {"full_text": "zebra"},
               {"full_text": "zebra", "order_by": "response_size"}):
        got, offset, calls = [], 0, 0
        while offset < len(SIZES):
            r = mixed.search(limit=1000, offset=offset, **kw)
            fits(r)
            assert r.total_count == len(SIZES), "total_count counts every match"
            assert r.results, "at least one result when one fits"
            got += ids_of(x.item for x in r.results)
            offset += len(r.results)
            calls += 1
            assert calls <= len(SIZES)
        assert sorted(got) == list(range(len(SIZES))), kw
        assert calls < len(SIZES), "results that fit together share a response"
        if kw.get("order_by") == "@id":
            assert got == list(range(len(SIZES)))


def test_vector_search_bounded_by_bytes(api):
    coll = api.coll(SEARCH_REQ, prefix="vbytes", labels={"embedding_field": "vector"})
    for i, size in enumerate(SIZES):
        coll.put(pack(cs_pb2.SearchRequest(full_text="v" * size, vector=[1.0, i / 100])), id=f"v{i:02d}")
    got, offset = [], 0
    while offset < len(SIZES):
        r = assert_ok(call(api.svc.Search, coll.req(cs_pb2.SearchRequest, vector=[1.0, 0.0],
                                                    similarity_threshold=-1, limit=100, offset=offset)))
        fits(r)
        assert r.total_count == len(SIZES) and r.results
        got += [len(cs_pb2.SearchRequest.FromString(x.item.value).full_text) for x in r.results]
        offset += len(r.results)
    # Ranked by similarity with (1, 0): the smaller the second component the better.
    assert got == SIZES


def test_vector_hit_that_fits_no_response_is_named(api):
    """The best hit of a vector search is a record no response holds: RESOURCE_EXHAUSTED
    naming it, as for List and Search."""
    coll = api.coll(SEARCH_REQ, prefix="vhuge", labels={"embedding_field": "vector"})
    coll.put(pack(cs_pb2.SearchRequest(full_text="small", vector=[0.0, 1.0])), id="small")
    # A Create of exactly LIMIT bytes, with the shortest type URL: the response carries more.
    def huge(n):
        return cs_pb2.SearchRequest(full_text="h" * n, vector=[1.0, 0.0]).SerializeToString()
    req = coll.req(cs_pb2.CreateRequest, id="huge", item=raw_any(SEARCH_REQ, huge(0), "/"))
    n = LIMIT - req.ByteSize()
    while req.ByteSize() != LIMIT:
        req.item.value = huge(n)
        n += LIMIT - req.ByteSize()
    assert_ok(call(coll.svc.Create, req))
    expect_error(C.RESOURCE_EXHAUSTED, api.svc.Search,
                 coll.req(cs_pb2.SearchRequest, vector=[1.0, 0.0], similarity_threshold=-1),
                 mentions=["'huge'", str(LIMIT)])
    r = assert_ok(call(api.svc.Search, coll.req(cs_pb2.SearchRequest, vector=[0.0, 1.0],
                                                similarity_threshold=0.5)))
    assert [x.item.value for x in r.results] == [
        pack(cs_pb2.SearchRequest(full_text="small", vector=[0.0, 1.0])).value]


def test_search_collections_bounded_by_bytes(api, mixed):
    other = api.coll(prefix="bytes2")
    for i, size in enumerate([20000, 20000, 20000]):
        other.put(rec(100 + i, size), id=f"o{i}")
    names = [mixed.name, other.name]
    req = repo_pb2.SearchCollectionsRequest(namespace=mixed.ns, collection_names=names,
                                            query=struct({"full_text": "zebra"}), limit=100)
    r = assert_ok(call(api.repo.SearchCollections, req))
    fits(r)
    assert r.total_matches == len(SIZES) + 3, "total_matches counts every match"
    got = [res.collection_name for res in r.results]
    assert got == names[:len(got)] and got, "the collections reached, in order"
    assert 0 < sum(len(res.items) for res in r.results) < len(SIZES) + 3
    for res in r.results:
        assert len(res.scores) == len(res.items)
    # Small enough, everything comes.
    req.limit = 2
    req.collection_names[:] = [other.name]
    r = assert_ok(call(api.repo.SearchCollections, req))
    assert [len(res.items) for res in r.results] == [2] and r.total_matches == 3


def test_discover_pages_bounded_by_bytes(api):
    ns = uniq("dbytes")
    names = []
    for i, size in enumerate([25000, 25000, 10, 25000, 60000, 10, 10, 30000]):
        name = f"d{i}"
        c = collection_msg(ns, name, labels={"blob": "b" * size})
        assert_ok(call(api.repo.CreateCollection, repo_pb2.CreateCollectionRequest(collection=c)))
        names.append(name)
    seen, token, pages = [], "", []
    while True:
        r = assert_ok(call(api.repo.Discover, repo_pb2.DiscoverRequest(namespace=ns, page_size=10, page_token=token)))
        fits(r)
        assert r.collections
        pages.append(len(r.collections))
        seen += [c.name for c in r.collections]
        token = r.next_page_token
        if not token:
            break
        assert len(pages) < 10
    assert seen == names, "every collection exactly once, in order"
    assert len(pages) > 1 and max(pages) > 1


def test_discover_definition_that_fits_no_page_is_named(api):
    ns = uniq("dhuge")
    api.create_collection("a0", ns=ns, labels={"small": "y"})
    # The request is (about) the limit; the definition kept adds the endpoint and times.
    req = repo_pb2.CreateCollectionRequest(collection=collection_msg(ns, "b-huge", labels={"blob": ""}))
    labels = req.collection.metadata.labels
    while req.ByteSize() < LIMIT - 2 or req.ByteSize() > LIMIT:
        labels["blob"] = "b" * (len(labels["blob"]) + LIMIT - req.ByteSize() - 1)
    assert_ok(call(api.repo.CreateCollection, req))
    api.create_collection("c0", ns=ns, labels={"small": "y"})
    r = assert_ok(call(api.repo.Discover, repo_pb2.DiscoverRequest(namespace=ns, page_size=10)))
    assert [c.name for c in r.collections] == ["a0"] and r.next_page_token
    expect_error(C.RESOURCE_EXHAUSTED, api.repo.Discover,
                 repo_pb2.DiscoverRequest(namespace=ns, page_size=10, page_token=r.next_page_token),
                 mentions=[f"{ns}/b-huge", str(LIMIT)])
    # Filtered out, the rest pages on.
    r = assert_ok(call(api.repo.Discover, repo_pb2.DiscoverRequest(namespace=ns, page_size=10,
                                                                   label_filter={"small": "y"})))
    assert [c.name for c in r.collections] == ["a0", "c0"] and not r.next_page_token


def test_list_near_limit_record_with_small_pages(api):
    """The case reported: one record just under the limit made every page_size > 1 fail."""
    coll = api.coll(prefix="near")
    coll.put(rec(0, 300), id="a")
    coll.put(rec(1, LIMIT - 300), id="b")
    coll.put(rec(2, 300), id="c")
    r = coll.list(page_size=50)
    fits(r)
    assert ids_of(r.items) == [0] and r.next_page_token
    r = coll.list(page_size=50, page_token=r.next_page_token)
    assert ids_of(r.items) == [1] and r.next_page_token
    r = coll.list(page_size=50, page_token=r.next_page_token)
    assert ids_of(r.items) == [2] and not r.next_page_token


def _create_at_limit(coll):
    """Creates a record whose Create request is exactly LIMIT bytes (with the shortest type
    URL): it is stored, but a List page carries more around it and cannot hold it."""
    body = b""
    req = coll.req(cs_pb2.CreateRequest, id="huge", item=raw_any(SIMPLE, sr(1, body).SerializeToString(), "/"))
    grow = LIMIT - req.ByteSize()
    while req.ByteSize() != LIMIT:
        body = b"h" * (len(body) + grow)
        req.item.value = sr(1, body).SerializeToString()
        grow = LIMIT - req.ByteSize()
        assert abs(grow) < LIMIT
    assert_ok(call(coll.svc.Create, req))


def test_record_that_fits_no_page_is_named(api):
    coll = api.coll(prefix="huge")
    coll.put(sr(5, "small"), id="small")
    _create_at_limit(coll)
    assert len(coll.get("huge").value) > LIMIT - 200
    snapshot = coll.get("small"), coll.get("huge")
    # By id "huge" comes first: no page can start.
    for fn, req in ((api.svc.List, coll.req(cs_pb2.ListRequest, order_by="@id")),
                    (api.svc.Search, coll.req(cs_pb2.SearchRequest, order_by="@id", ascending=True))):
        expect_error(C.RESOURCE_EXHAUSTED, fn, req, mentions=["'huge'", str(LIMIT)])
    # The other way round the record before it comes, and the page after it is refused.
    r = coll.list(order_by="@id desc", page_size=10)
    assert [a.value for a in r.items] == [sr(5, "small").SerializeToString()] and r.next_page_token
    expect_error(C.RESOURCE_EXHAUSTED, api.svc.List,
                 coll.req(cs_pb2.ListRequest, order_by="@id desc", page_size=10, page_token=r.next_page_token),
                 mentions=["'huge'"])
    r = coll.search(order_by="@id", ascending=False)
    assert len(r.results) == 1 and r.total_count == 2
    assert (coll.get("small"), coll.get("huge")) == snapshot


def test_default_limit_record_just_under_4mib(shared_node):
    """The default limit, 4 MiB: a record just under it among small ones pages with any
    page_size (grpcio's own default receive limit is 4 MiB too)."""
    coll = Api(shared_node).coll(prefix="mib")
    coll.put(rec(0, 2000), id="a")
    coll.put(rec(1, 4 * 1024 * 1024 - 1024), id="b")
    coll.put(rec(2, 2000), id="c")
    coll.put(rec(3, 2000), id="d")
    pages, token = [], ""
    while True:
        r = coll.list(page_size=10, page_token=token)
        pages.append(ids_of(r.items))
        if not r.next_page_token:
            break
        token = r.next_page_token
    assert pages == [[0], [1], [2, 3]]
