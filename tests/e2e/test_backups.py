"""Backups and local clones end to end (README, Backups): BackupCollection, ListBackups,
RestoreBackup, DeleteBackup, VerifyBackup, retention and scheduled backups, Clone without
dest_endpoint, against real nodes.
"""

import json
import os
import threading
import time
from pathlib import Path

import grpc
import pytest

from collections_util import (C, SIMPLE, Api, assert_ok, call, expect_error, nn, pack, sr,
                              uniq, unpack)
from collector import collection_pb2, common_pb2
from collector import collection_repo_pb2 as repo_pb2
from collector import collection_server_pb2 as cs_pb2

from test_files import put as put_file


def body_ids(coll):
    return sorted(unpack(a, SIMPLE).payload.body.decode() for a in coll.list_all())


def get_file(coll, path):
    msgs = list(coll.svc.GetFile(cs_pb2.GetFileRequest(namespace=coll.ns, collection_name=coll.name,
                                                       path=path), timeout=10))
    return b"".join(m.chunk for m in msgs[1:])


def backup(api, coll, **kw):
    req = repo_pb2.BackupCollectionRequest(collection=nn(coll.ns, coll.name), **kw)
    return assert_ok(call(api.repo.BackupCollection, req, timeout=60))


def verify(api, bid):
    return assert_ok(call(api.repo.VerifyBackup, repo_pb2.VerifyBackupRequest(backup_id=bid)))


def list_backups(api, **kw):
    return assert_ok(call(api.repo.ListBackups, repo_pb2.ListBackupsRequest(**kw)))


def policy_coll(api, **policy):
    name = uniq("p")
    c = collection_pb2.Collection(namespace="default", name=name)
    c.message_type.message_name = SIMPLE
    c.backup_policy.CopyFrom(collection_pb2.BackupPolicy(enabled=True, **policy))
    assert_ok(call(api.repo.CreateCollection, repo_pb2.CreateCollectionRequest(collection=c)))
    from collections_util import Coll
    return Coll(api, "default", name, SIMPLE)


def flip_byte(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))


@pytest.fixture(scope="module")
def bnode(tmp_path_factory):
    from conftest import _Factory, _finish
    f = _Factory(tmp_path_factory)
    bdir = tmp_path_factory.mktemp("allowed")
    n = f.node("--backup-dir", str(bdir))
    n.backup_dir = bdir
    yield n
    _finish(f.procs)


def test_backup_verify_restore_round_trip(bnode):
    api = Api(bnode)
    coll = api.coll(indexed=("response_size",))
    for i in range(20):
        coll.put(sr(size=i, body=f"r{i}".encode()))
    put_file(coll, "a.txt", b"first version")
    put_file(coll, "dir/b.bin", bytes(range(256)) * 10)
    r = backup(api, coll, include_files=True, metadata={"who": "test"})
    b = r.backup
    assert b.record_count == 20 and b.file_count == 2 and b.includes_files
    assert b.collection.namespace == "default" and b.collection.name == coll.name
    assert b.metadata["who"] == "test" and b.storage_type == "local"
    assert r.bytes_transferred > 0 and b.size_bytes > 0
    assert Path(b.storage_path).is_dir()
    assert Path(b.storage_path).parent == Path(bnode.data_dir) / "backups" / "default" / coll.name
    man = json.loads((Path(b.storage_path) / "manifest.json").read_text())
    assert man["records"] == 20 and man["file_count"] == 2 and len(man["database"]["sha256"]) == 64
    assert {f["path"] for f in man["files"]} == {"a.txt", "dir/b.bin"}
    before = body_ids(coll)
    definition = coll.describe().collection_definition

    # Later writes change neither the backup nor its hard-linked file (uploads rename).
    coll.put(sr(body=b"later"))
    put_file(coll, "a.txt", b"second version, longer")
    v = verify(api, b.backup_id)
    assert v.is_valid, v.error_message
    assert v.backup.backup_id == b.backup_id

    lst = list_backups(api, collection=nn("default", coll.name))
    assert [x.backup_id for x in lst.backups] == [b.backup_id] and lst.total_count == 1

    # Restore beside the source.
    dest = uniq("restored")
    rr = assert_ok(call(api.repo.RestoreBackup, repo_pb2.RestoreBackupRequest(
        backup_id=b.backup_id, dest_name=dest), timeout=60))
    assert rr.records_restored == 20 and rr.files_restored == 2
    assert rr.collection_id == f"default/{dest}"
    from collections_util import Coll
    restored = Coll(api, "default", dest, SIMPLE)
    assert body_ids(restored) == before
    assert get_file(restored, "a.txt") == b"first version"
    assert get_file(restored, "dir/b.bin") == bytes(range(256)) * 10
    d2 = restored.describe().collection_definition
    assert list(d2.indexed_fields) == list(definition.indexed_fields)
    assert d2.message_type.message_name == definition.message_type.message_name
    assert d2.name == dest
    restored.put(sr(body=b"writable"))  # the restored collection takes writes

    # Onto the source: refused without overwrite, an atomic swap with it.
    expect_error(C.ALREADY_EXISTS, api.repo.RestoreBackup,
                 repo_pb2.RestoreBackupRequest(backup_id=b.backup_id), mentions=(coll.name,))
    assert "later" in body_ids(coll)
    rr = assert_ok(call(api.repo.RestoreBackup, repo_pb2.RestoreBackupRequest(
        backup_id=b.backup_id, overwrite=True), timeout=60))
    assert body_ids(coll) == before
    assert get_file(coll, "a.txt") == b"first version"

    # DeleteBackup frees it; then it is gone everywhere.
    d = assert_ok(call(api.repo.DeleteBackup, repo_pb2.DeleteBackupRequest(backup_id=b.backup_id)))
    assert d.bytes_freed > 0
    assert not Path(b.storage_path).exists()
    for fn, req in ((api.repo.VerifyBackup, repo_pb2.VerifyBackupRequest(backup_id=b.backup_id)),
                    (api.repo.RestoreBackup, repo_pb2.RestoreBackupRequest(backup_id=b.backup_id)),
                    (api.repo.DeleteBackup, repo_pb2.DeleteBackupRequest(backup_id=b.backup_id))):
        expect_error(C.NOT_FOUND, fn, req, mentions=(b.backup_id,))


def test_refusals_change_nothing(bnode):
    api = Api(bnode)
    coll = api.coll()
    coll.put(sr(body=b"x"))
    expect_error(C.NOT_FOUND, api.repo.BackupCollection,
                 repo_pb2.BackupCollectionRequest(collection=nn("default", "nosuch")))
    expect_error(C.INVALID_ARGUMENT, api.repo.BackupCollection,
                 repo_pb2.BackupCollectionRequest(collection=nn("default", "bad/name")))
    allowed = Path(bnode.backup_dir)
    outside = allowed.parent / uniq("outside")
    outside.mkdir()
    (allowed / "link").symlink_to(outside)
    before = sorted(p.name for p in allowed.iterdir())
    for dest, code in (("../escape", C.INVALID_ARGUMENT), ("a/../../escape", C.INVALID_ARGUMENT),
                       ("/etc", C.PERMISSION_DENIED), (str(outside), C.PERMISSION_DENIED),
                       ("link/inside", C.PERMISSION_DENIED), (str(allowed / "link"), C.PERMISSION_DENIED)):
        expect_error(code, api.repo.BackupCollection,
                     repo_pb2.BackupCollectionRequest(collection=nn("default", coll.name), dest_path=dest))
    assert sorted(p.name for p in allowed.iterdir()) == before
    assert list(outside.iterdir()) == []
    # Allowed: a directory below --backup-dir, relative or absolute.
    b = backup(api, coll, dest_path="nightly/one").backup
    assert b.storage_path.startswith(str(allowed.resolve() / "nightly" / "one"))
    b2 = backup(api, coll, dest_path=str(allowed / "abs")).backup
    assert b2.storage_path.startswith(str(allowed.resolve() / "abs"))
    assert verify(api, b.backup_id).is_valid
    for bid in ("", "nosuch"):
        code = C.INVALID_ARGUMENT if not bid else C.NOT_FOUND
        expect_error(code, api.repo.RestoreBackup, repo_pb2.RestoreBackupRequest(backup_id=bid))
        expect_error(code, api.repo.VerifyBackup, repo_pb2.VerifyBackupRequest(backup_id=bid))
        expect_error(code, api.repo.DeleteBackup, repo_pb2.DeleteBackupRequest(backup_id=bid))
    expect_error(C.INVALID_ARGUMENT, api.repo.RestoreBackup,
                 repo_pb2.RestoreBackupRequest(backup_id=b.backup_id, dest_namespace="system"))
    expect_error(C.INVALID_ARGUMENT, api.repo.ListBackups, repo_pb2.ListBackupsRequest(limit=-1))
    expect_error(C.UNAVAILABLE, api.repo.Clone, repo_pb2.CloneRequest(
        source_collection=nn("default", coll.name), dest_name="x", dest_endpoint="127.0.0.1:1"),
        mentions=("dest_endpoint",))
    expect_error(C.ALREADY_EXISTS, api.repo.Clone, repo_pb2.CloneRequest(
        source_collection=nn("default", coll.name), dest_name=coll.name))
    expect_error(C.NOT_FOUND, api.repo.Clone, repo_pb2.CloneRequest(
        source_collection=nn("default", "nosuch"), dest_name=uniq("x")))


def test_dest_path_needs_backup_dir(node):
    api = Api(node)
    coll = api.coll()
    expect_error(C.PERMISSION_DENIED, api.repo.BackupCollection, repo_pb2.BackupCollectionRequest(
        collection=nn("default", coll.name), dest_path="anywhere"), mentions=("--backup-dir",))
    assert not (Path(node.data_dir) / "backups").exists() or not any((Path(node.data_dir) / "backups").iterdir())


def test_verify_catches_one_flipped_byte(bnode):
    api = Api(bnode)
    coll = api.coll()
    for i in range(50):
        coll.put(sr(body=f"v{i}".encode() * 20))
    put_file(coll, "f.txt", b"attached bytes" * 100)
    # In the database.
    b = backup(api, coll, include_files=True).backup
    db = Path(b.storage_path) / "records.db"
    flip_byte(db, db.stat().st_size // 2)
    v = verify(api, b.backup_id)
    assert not v.is_valid and "records.db" in v.error_message
    expect_error(C.DATA_LOSS, api.repo.RestoreBackup, repo_pb2.RestoreBackupRequest(
        backup_id=b.backup_id, dest_name=uniq("bad")), mentions=("records.db",))
    # In a file (a hard link shares its bytes with the collection: a new upload first).
    put_file(coll, "f.txt", b"fresh bytes" * 100)
    b2 = backup(api, coll, include_files=True).backup
    assert verify(api, b2.backup_id).is_valid
    put_file(coll, "f.txt", b"newer bytes" * 100)  # the collection moves to a new inode
    flip_byte(Path(b2.storage_path) / "files" / "f.txt", 5)
    v = verify(api, b2.backup_id)
    assert not v.is_valid and "files/f.txt" in v.error_message
    assert get_file(coll, "f.txt") == b"newer bytes" * 100
    dest = uniq("bad")
    expect_error(C.DATA_LOSS, api.repo.RestoreBackup, repo_pb2.RestoreBackupRequest(
        backup_id=b2.backup_id, dest_name=dest), mentions=("f.txt",))
    api.assert_absent("default", dest)


def test_list_backups_filters(bnode):
    api = Api(bnode)
    a, b = api.coll(), api.coll()
    ids_a = [backup(api, a).backup.backup_id for _ in range(3)]
    backup(api, b)
    lst = list_backups(api, collection=nn("default", a.name))
    assert [x.backup_id for x in lst.backups] == ids_a[::-1] and lst.total_count == 3
    lst = list_backups(api, collection=nn("default", a.name), limit=2)
    assert [x.backup_id for x in lst.backups] == ids_a[::-1][:2] and lst.total_count == 3
    lst = list_backups(api, namespace="default")
    got = [x.backup_id for x in lst.backups]
    assert set(ids_a) <= set(got) and lst.total_count >= 4
    ts = [x.timestamp for x in lst.backups]
    assert ts == sorted(ts, reverse=True)
    lst = list_backups(api, collection=nn("default", a.name), since_timestamp=int(time.time()) + 3600)
    assert not lst.backups and lst.total_count == 0


def test_retention_by_count_and_age(bnode):
    api = Api(bnode)
    c = policy_coll(api, max_backups=2)
    ids = [backup(api, c).backup.backup_id for _ in range(4)]
    lst = list_backups(api, collection=nn("default", c.name))
    assert [x.backup_id for x in lst.backups] == ids[::-1][:2]
    c2 = policy_coll(api, retention_seconds=1)
    first = backup(api, c2).backup
    time.sleep(2.2)
    second = backup(api, c2).backup
    lst = list_backups(api, collection=nn("default", c2.name))
    assert [x.backup_id for x in lst.backups] == [second.backup_id]
    assert not Path(first.storage_path).exists()


def test_local_clone_with_files(bnode):
    api = Api(bnode)
    coll = api.coll()
    for i in range(10):
        coll.put(sr(body=f"c{i}".encode()))
    put_file(coll, "x/y.txt", b"clone me")
    dest = uniq("clone")
    r = assert_ok(call(api.repo.Clone, repo_pb2.CloneRequest(
        source_collection=nn("default", coll.name), dest_name=dest, include_files=True), timeout=60))
    assert r.records_cloned == 10 and r.files_cloned == 1 and r.collection_id == f"default/{dest}"
    from collections_util import Coll
    cl = Coll(api, "default", dest, SIMPLE)
    assert body_ids(cl) == body_ids(coll)
    assert get_file(cl, "x/y.txt") == b"clone me"
    cl.put(sr(body=b"only in the clone"))
    assert "only in the clone" not in body_ids(coll)


def test_backup_during_write_load(bnode):
    api = Api(bnode)
    coll = api.coll()
    acks = {}  # body -> ack time (unix s)
    lock = threading.Lock()
    stop = threading.Event()
    errors = []

    def writer(k):
        i = 0
        while not stop.is_set():
            a, b = f"w{k}-{i}-a", f"w{k}-{i}-b"
            req = cs_pb2.BatchRequest(namespace="default", collection_name=coll.name, operations=[
                cs_pb2.RequestOp(create=cs_pb2.CreateRequest(item=pack(sr(body=a.encode())))),
                cs_pb2.RequestOp(create=cs_pb2.CreateRequest(item=pack(sr(body=b.encode()))))])
            try:
                api.svc.Batch(req, timeout=10)
            except grpc.RpcError as e:
                errors.append(e)
                return
            with lock:
                acks[a] = acks[b] = time.time()
            i += 1

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.7)
    b = backup(api, coll).backup
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(15)
    assert not errors, errors[0]
    man = json.loads((Path(b.storage_path) / "manifest.json").read_text())
    taken = man["timestamp_us"] / 1e6
    dest = uniq("load")
    assert_ok(call(api.repo.RestoreBackup, repo_pb2.RestoreBackupRequest(
        backup_id=b.backup_id, dest_name=dest), timeout=60))
    from collections_util import Coll
    got = set(body_ids(Coll(api, "default", dest, SIMPLE)))
    assert len(got) == b.record_count
    for body, t in acks.items():
        if t < taken:
            assert body in got, f"{body} acknowledged before the backup's time is not in it"
    for body in got:
        twin = body[:-1] + ("b" if body.endswith("a") else "a")
        assert twin in got, f"half a batch in the backup: {body} without {twin}"
    assert got and len(got) < len(acks) + 1


def test_scheduled_backups_survive_restart(servers, tmp_path):
    data = tmp_path / "data"
    n = servers.node(data_dir=data)
    api = Api(n)
    c = policy_coll(api, interval_seconds=4)
    deadline = time.time() + 15
    while time.time() < deadline:
        lst = list_backups(api, collection=nn("default", c.name))
        if lst.backups:
            break
        time.sleep(0.3)
    assert lst.backups, "no scheduled backup within 15 s"
    first = lst.backups[0]
    assert first.metadata["scheduled"] == "true"
    n.stop()
    # What an interrupted backup leaves is swept at the start.
    leftover = data / "backups" / "default" / c.name / ".tmp-interrupted"
    (leftover / "files").mkdir(parents=True)
    n2 = servers.node(data_dir=data)
    api2 = Api(n2)
    assert not leftover.exists()
    # Due from the last backup's time, not from the start: none at once...
    lst = list_backups(api2, collection=nn("default", c.name))
    if time.time() < first.timestamp + 3:
        assert [x.backup_id for x in lst.backups] == [first.backup_id]
    # ...and the next one comes.
    deadline = time.time() + 15
    while time.time() < deadline:
        lst = list_backups(api2, collection=nn("default", c.name))
        if len(lst.backups) >= 2:
            break
        time.sleep(0.3)
    assert len(lst.backups) >= 2, "no scheduled backup after the restart"
    assert lst.backups[0].timestamp >= first.timestamp + 4
    assert verify(api2, lst.backups[0].backup_id).is_valid


def test_restore_and_clone_register_the_type_elsewhere(bnode):
    from collections_util import Coll, raw_any
    from collector import registry_pb2
    from registry_util import animal_file, keeper_file
    api = Api(bnode)
    src_ns, dest_ns, clone_ns = uniq("tA"), uniq("tB"), uniq("tC")
    assert_ok(call(api.registry.RegisterProto, registry_pb2.RegisterProtoRequest(
        namespace=src_ns, file_descriptor=keeper_file(), dependencies=[animal_file()])))
    name = uniq("keepers")
    api.create_collection(name, "zoo.Keeper", ns=src_ns)
    coll = Coll(api, src_ns, name, "zoo.Keeper")
    for i in range(3):
        coll.put(raw_any("zoo.Keeper", b"\n\x02k" + str(i).encode()))
    before = coll.snapshot()
    b = backup(api, coll).backup
    man = json.loads((Path(b.storage_path) / "manifest.json").read_text())
    assert len(man["type_files"]) == 2 and man["type_namespace"] == src_ns
    # dest_ns has never seen zoo.Keeper: the restore registers it from the manifest.
    expect_error(C.INVALID_ARGUMENT, api.repo.CreateCollection, repo_pb2.CreateCollectionRequest(
        collection=collection_pb2.Collection(namespace=dest_ns, name="probe",
                                             message_type=common_pb2.MessageTypeRef(message_name="zoo.Keeper"))))
    assert_ok(call(api.repo.RestoreBackup, repo_pb2.RestoreBackupRequest(
        backup_id=b.backup_id, dest_namespace=dest_ns), timeout=60))
    restored = Coll(api, dest_ns, name, "zoo.Keeper")
    assert restored.snapshot() == before
    d = restored.describe().collection_definition
    assert d.namespace == dest_ns and d.message_type.message_name == "zoo.Keeper"
    assert d.message_type.namespace == dest_ns
    api.create_collection(uniq("probe"), "zoo.Keeper", ns=dest_ns)  # the type is there now
    # A local clone into a third namespace does the same.
    r = assert_ok(call(api.repo.Clone, repo_pb2.CloneRequest(
        source_collection=nn(src_ns, name), dest_namespace=clone_ns, dest_name=name), timeout=60))
    assert r.records_cloned == 3
    assert Coll(api, clone_ns, name, "zoo.Keeper").snapshot() == before
