"""Collections that stay flat as they grow (README, Collections): what the indexes, the kept
record count and the keyset page tokens must not change, against a real node.

- List's default order is (created_at, rid): records come back in the order they were
  written, ties broken by the order of insertion; every order is total.
- Keyset paging: a record that exists throughout a paging is returned exactly once,
  whatever is inserted or deleted between pages; one deleted before its page is not.
- A filtered List counts its matches on its first page; its page tokens carry that count
  to the later pages (total_count is the count as of the first page). An unfiltered
  List's total_count and Describe's record_count are the exact count at each call.
- The count is right after every kind of write (Create, Batch, Update, Delete, a refused
  Batch), after kill -9 and restart, after a restore, and in a collection made by an
  older schema (no kept count, no order index) once the node opens it.
These tests check results only, never speed (bench/coll_scale.py measures that).
"""

import signal
import sqlite3

import pytest

from collections_util import (
    BACKUP, OK, C, Api, Coll, assert_ok, call, cs_pb2, expect_error, flt, nn, pack, repo_pb2,
    uniq, unpack,
)
from collector import common_pb2

B = repo_pb2.BackupMetadata
OP = cs_pb2.FilterOperator
TYPES = ("disk", "s3", "gcs")


@pytest.fixture(scope="module")
def api(shared_node):
    return Api(shared_node)


def op_create(item, id=""):
    return cs_pb2.RequestOp(create=cs_pb2.CreateRequest(item=item, id=id))


def batch(coll, *ops):
    return call(coll.svc.Batch, coll.req(cs_pb2.BatchRequest, operations=list(ops)))


def rec(i):
    return B(backup_id=f"b{i:04d}", size_bytes=i % 7, storage_type=TYPES[i % 3],
             storage_path=f"/srv/{i}")


def load(coll, ids, size=40):
    """Creates records rec(i) under id r<i> for each i, by Batch, in order."""
    ids = list(ids)
    for k in range(0, len(ids), size):
        r = batch(coll, *[op_create(pack(rec(i)), f"r{i:04d}") for i in ids[k:k + size]])
        assert r.status.code == OK, r.status


def ids_of(items):
    return ["r" + unpack(a, BACKUP).backup_id[1:] for a in items]


def pages(coll, filter=None, order_by="", page_size=7, between=None):
    """Pages to the end: (ids in order, total_count of each page). between(n) runs after
    the n-th page, before the next."""
    out, totals, token, n = [], [], "", 0
    while True:
        r = coll.list(filter, order_by, page_size, token)
        out += ids_of(r.items)
        totals.append(r.total_count)
        n += 1
        assert n < 1000, "List never ends"
        if not r.next_page_token:
            return out, totals
        token = r.next_page_token
        if between:
            between(n)


def scale_coll(api):
    return api.coll(BACKUP, prefix="scale", indexed=("storage_type", "size_bytes"))


def count(coll):
    d = coll.describe().record_count
    t = coll.list(page_size=1).total_count
    assert d == t, f"Describe counts {d}, List's total_count {t}"
    return d


def test_default_order_is_the_order_of_writing(api):
    coll = scale_coll(api)
    load(coll, range(100))
    want = [f"r{i:04d}" for i in range(100)]
    got, totals = pages(coll)
    assert got == want
    assert set(totals) == {100}
    assert pages(coll, order_by="@created_at desc")[0] == want[::-1]
    assert pages(coll, order_by="@id desc", page_size=9)[0] == sorted(want, reverse=True)
    # Two keys: updated records move after the others, in their own order.
    for i in (5, 50, 17):
        coll.update(f"r{i:04d}", rec(i))
    moved = [f"r{i:04d}" for i in (5, 50, 17)]
    got = pages(coll, order_by="@updated_at asc, @id asc", page_size=6)[0]
    assert got[-3:] == moved and sorted(got) == want
    got = pages(coll, order_by="@updated_at desc, @id desc", page_size=6)[0]
    assert got[:3] == moved[::-1] and sorted(got) == want


@pytest.mark.parametrize("order_by", ["", "@created_at desc", "@id"])
def test_paging_across_inserts_and_deletes(api, order_by):
    coll = scale_coll(api)
    load(coll, range(60))
    before = pages(coll, order_by=order_by)[0]
    seen = before[:10]
    unseen_gone = before[30:35]
    seen_gone = before[2:4]
    new = [f"r{i:04d}" for i in range(1000, 1005)]

    def between(n):
        if n == 2:
            for id in unseen_gone + seen_gone:
                coll.delete(id)
            load(coll, range(1000, 1005))

    got, _ = pages(coll, order_by=order_by, page_size=5, between=between)
    assert len(got) == len(set(got)), "a record came twice"
    assert got[:10] == seen
    assert not set(unseen_gone) & set(got), "a record deleted before its page came"
    kept = [i for i in before if i not in unseen_gone]
    assert [i for i in got if i not in new] == kept, "a record that stayed was missed"
    # New records sort after the position in ascending created_at or id order: seen; in
    # newest-first order before it: not seen.
    came = [i for i in got if i in new]
    assert came == ([] if order_by == "@created_at desc" else new)


def test_filtered_paging_and_its_carried_count(api):
    coll = scale_coll(api)
    load(coll, range(90))
    s3 = [f"r{i:04d}" for i in range(90) if TYPES[i % 3] == "s3"]
    got, totals = pages(coll, {"storage_type": "s3"}, page_size=4)
    assert got == s3 and set(totals) == {len(s3)}
    # An int64 field, indexed: its JSON is a string; a number and a string both match.
    threes = [f"r{i:04d}" for i in range(90) if i % 7 == 3]
    assert pages(coll, {"size_bytes": 3})[0] == threes
    assert pages(coll, {"size_bytes": "3"})[0] == threes
    assert pages(coll, {"size_bytes": 3}, order_by="@created_at desc")[0] == threes[::-1]
    both = [i for i in threes if i in s3]
    assert pages(coll, {"size_bytes": 3, "storage_type": "s3"}, page_size=2)[0] == both

    # Matches written between pages come (they sort after), while the count stays the
    # first page's; a new first page counts them.
    def between(n):
        if n == 1:
            load(coll, [1003, 1005, 1006])
    extra = [f"r{i:04d}" for i in (1003, 1006)]  # s3, as i % 3 == 1
    got, totals = pages(coll, {"storage_type": "s3"}, page_size=4, between=between)
    assert got == s3 + extra
    assert set(totals) == {len(s3)}
    assert coll.list({"storage_type": "s3"}, page_size=4).total_count == len(s3) + len(extra)

    # Search by the indexed fields: newest first, counted.
    r = coll.search(filters={"size_bytes": flt(OP.OP_EQUALS, 3)}, limit=5)
    assert r.total_count == len(threes)
    assert ids_of(x.item for x in r.results) == threes[::-1][:5]
    r = coll.search(filters={"size_bytes": flt(OP.OP_EQUALS, "3")}, limit=5, offset=5)
    assert ids_of(x.item for x in r.results) == threes[::-1][5:10]
    r = coll.search(filters={"storage_type": flt(OP.OP_EQUALS, "s3")}, limit=1000,
                    ascending=True)
    assert ids_of(x.item for x in r.results) == s3 + extra
    assert r.total_count == len(s3) + len(extra)


def test_count_after_every_kind_of_write(api):
    coll = scale_coll(api)
    assert count(coll) == 0
    coll.put(rec(1), id="one")
    assert count(coll) == 1
    load(coll, range(3))
    assert count(coll) == 4
    coll.update("one", rec(2))
    assert count(coll) == 4
    coll.delete("one")
    assert count(coll) == 3
    expect_error(C.NOT_FOUND, coll.svc.Delete, coll.req(cs_pb2.DeleteRequest, id="one"))
    assert count(coll) == 3
    # A Batch that fails applies nothing, and counts nothing.
    r = batch(coll, op_create(pack(rec(7)), "seven"), op_create(pack(rec(0)), "r0000"))
    assert r.status.code == common_pb2.Status.ABORTED
    assert count(coll) == 3
    r = batch(coll, op_create(pack(rec(7)), "seven"),
              cs_pb2.RequestOp(delete=cs_pb2.DeleteRequest(id="r0001")),
              cs_pb2.RequestOp(update=cs_pb2.UpdateRequest(id="r0002", item=pack(rec(9)))))
    assert r.status.code == OK, r.status
    assert count(coll) == 3
    got = [unpack(a, BACKUP).backup_id for a in coll.list_all()]
    assert sorted(got) == ["b0000", "b0007", "b0009"]


@pytest.fixture
def bnode(servers, tmp_path_factory):
    bdir = tmp_path_factory.mktemp("allowed")
    n = servers.node("--backup-dir", str(bdir))
    return n


def test_count_after_kill_restart_and_restore(servers, bnode):
    api = Api(bnode)
    coll = scale_coll(api)
    load(coll, range(75))
    for i in range(0, 75, 5):
        coll.delete(f"r{i:04d}")
    assert count(coll) == 60
    bnode.stop(signal.SIGKILL)

    n2 = servers.node(data_dir=bnode.data_dir)
    api2 = Api(n2)
    c2 = Coll(api2, coll.ns, coll.name, BACKUP)
    assert count(c2) == 60
    assert len(c2.list_all()) == 60
    b = assert_ok(call(api2.repo.BackupCollection, repo_pb2.BackupCollectionRequest(
        collection=nn(coll.ns, coll.name)), timeout=60)).backup
    load(c2, range(2000, 2010))
    assert count(c2) == 70
    dest = uniq("restored")
    assert_ok(call(api2.repo.RestoreBackup, repo_pb2.RestoreBackupRequest(
        backup_id=b.backup_id, dest_name=dest), timeout=60))
    r = Coll(api2, coll.ns, dest, BACKUP)
    assert count(r) == 60
    load(r, range(3000, 3003))
    assert count(r) == 63
    got, totals = pages(r, {"storage_type": "disk"})
    want = [f"r{i:04d}" for i in list(range(75)) + [3000, 3001, 3002]
            if (i >= 3000 or i % 5) and TYPES[i % 3] == "disk"]
    assert got == want and set(totals) == {len(want)}


def test_collection_of_the_old_schema_is_migrated(servers):
    n1 = servers.node()
    api = Api(n1)
    coll = scale_coll(api)
    load(coll, range(50))
    n1.stop(signal.SIGTERM)

    # As the schema before version 1 made it: no order index, no kept count, field
    # indexes on the field alone; and a record deleted meanwhile.
    db = sqlite3.connect(n1.data_dir / coll.ns / coll.name / "records.db")
    ix = db.execute("SELECT name, sql FROM sqlite_master WHERE name LIKE 'ix_%'").fetchall()
    assert len(ix) == 2 and all(s.endswith(", created_at)") for _, s in ix), ix
    db.executescript(
        "DROP TRIGGER records_count_ins; DROP TRIGGER records_count_del;"
        " DROP TABLE records_count; DROP INDEX records_by_created;"
        " DELETE FROM records_fts WHERE rowid = (SELECT rid FROM records WHERE id = 'r0003');"
        " DELETE FROM records WHERE id = 'r0003';")
    for name, s in ix:
        db.execute(f"DROP INDEX {name}")
        db.execute(s.replace(", created_at)", ")"))
    db.execute("PRAGMA user_version = 0")
    db.commit()
    db.close()

    n2 = servers.node(data_dir=n1.data_dir)
    c2 = Coll(Api(n2), coll.ns, coll.name, BACKUP)
    assert count(c2) == 49
    want = [f"r{i:04d}" for i in range(50) if i != 3]
    assert pages(c2)[0] == want
    assert pages(c2, {"size_bytes": 3})[0] == [i for i in want if int(i[1:]) % 7 == 3]
    c2.delete("r0004")
    assert count(c2) == 48
    db = sqlite3.connect(f"file:{n1.data_dir / coll.ns / coll.name / 'records.db'}?mode=ro",
                         uri=True)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 1
        names = {r[0]: r[1] for r in db.execute("SELECT name, sql FROM sqlite_master"
                                                " WHERE type IN ('index', 'trigger', 'table')")}
        assert "records_by_created" in names and "records_count" in names
        assert {"records_count_ins", "records_count_del"} <= set(names)
        assert sorted(s for n, s in names.items() if n.startswith("ix_")) == sorted(s for _, s in ix)
    finally:
        db.close()


def test_full_text_ranks_the_newest_matches_then_the_rest(api):
    """Ranked full text scores the newest 10,000 matches; the older follow unranked (score
    0), newest first; total_count counts them all. order_by @created_at gives the newest
    matches first without ranking."""
    coll = scale_coll(api)
    n = 10_050
    load(coll, range(n), size=1000)
    r = coll.search(full_text="srv", limit=100, offset=n - 125)
    assert r.total_count == n
    got = [(unpack(x.item, BACKUP).backup_id, x.score) for x in r.results]
    assert len(got) == 100
    assert all(s > 0 and int(b[1:]) >= 50 for b, s in got[:75]), got[:3]
    assert got[75:] == [(f"b{i:04d}", 0.0) for i in range(49, 24, -1)]
    r = coll.search(full_text="srv", limit=20, order_by="@created_at")
    assert [unpack(x.item, BACKUP).backup_id for x in r.results] == \
        [f"b{i:04d}" for i in range(n - 1, n - 21, -1)]
    r = coll.search(full_text="srv", limit=20, offset=30, order_by="@created_at", ascending=True)
    assert [unpack(x.item, BACKUP).backup_id for x in r.results] == \
        [f"b{i:04d}" for i in range(30, 50)]
    assert r.total_count == n
