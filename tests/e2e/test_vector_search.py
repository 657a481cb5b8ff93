"""Vector search: SearchRequest.vector ranks the records by cosine similarity with the
repeated float field that the collection's label `embedding_field` names (an exact scan);
similarity_threshold drops the weaker ones; SearchResult.score is the similarity and
distance is 1 - similarity."""

import math

import pytest

from collections_util import C, Api, assert_ok, call, cs_pb2, expect_error, pack

SEARCH_REQ = "collector.SearchRequest"  # compiled in, and it has a repeated float: vector


@pytest.fixture(scope="module")
def api(shared_node):
    return Api(shared_node)


@pytest.fixture(scope="module")
def vecs(api):
    coll = api.coll(SEARCH_REQ, prefix="vec", labels={"embedding_field": "vector"})
    for name, v in (("east", [1, 0]), ("north", [0, 1]), ("northeast", [1, 1]),
                    ("west", [-1, 0]), ("none", []), ("three", [1, 0, 0])):
        coll.put(pack(cs_pb2.SearchRequest(full_text=name, vector=v)), id=name)
    return coll


def vsearch(coll, vector, threshold=0.0, **kw):
    req = coll.req(cs_pb2.SearchRequest, vector=vector, similarity_threshold=threshold, **kw)
    return assert_ok(call(coll.svc.Search, req))


def names(r):
    return [cs_pb2.SearchRequest.FromString(x.item.value).full_text for x in r.results]


def test_ranked_by_cosine_similarity(vecs):
    r = vsearch(vecs, [2, 0], threshold=-1)
    assert names(r) == ["east", "northeast", "north", "west"], names(r)
    sims = [x.score for x in r.results]
    assert sims == pytest.approx([1, math.sqrt(0.5), 0, -1], abs=1e-6)
    assert [x.distance for x in r.results] == pytest.approx([1 - s for s in sims], abs=1e-6)
    assert r.total_count == 4  # no vector, or another length: not comparable


def test_threshold_limit_and_offset(vecs):
    r = vsearch(vecs, [1, 0], threshold=0.5)
    assert names(r) == ["east", "northeast"]
    assert names(vsearch(vecs, [1, 0], threshold=-1, limit=2, offset=1)) == ["northeast", "north"]


def test_collection_without_embedding_field(api):
    coll = api.coll(SEARCH_REQ, prefix="novec")
    expect_error(C.FAILED_PRECONDITION, coll.svc.Search, coll.req(cs_pb2.SearchRequest, vector=[1.0]))


@pytest.mark.parametrize("label", ["full_text", "no_such_field", "vector[0]"])
def test_embedding_field_must_be_a_float_list(api, label):
    coll = api.coll(SEARCH_REQ, prefix="badvec", labels={"embedding_field": label})
    expect_error(C.FAILED_PRECONDITION, coll.svc.Search, coll.req(cs_pb2.SearchRequest, vector=[1.0]))


def test_vector_with_other_criteria_rejected(vecs):
    expect_error(C.INVALID_ARGUMENT, vecs.svc.Search,
                 vecs.req(cs_pb2.SearchRequest, vector=[1.0, 0.0], full_text="east"))
