"""Collections, bad input (issue 13): each of these requests is refused with
INVALID_ARGUMENT and a message naming what is wrong, and changes nothing.

- CreateCollection: a negative backup_policy.max_backups or retention_seconds.
"""

import pytest

from collections_util import Api, C, assert_ok, call, collection_msg, expect_error, repo_pb2, uniq


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
