"""Collections moved between nodes (README, Backups: Clone and Fetch between nodes): Clone
with dest_endpoint, Fetch, PullCollection and PushCollection, on two real nodes over
loopback: round trips equal to the source, every refusal, interrupted transfers (a client
that cancels, kill -9 of either node) leaving nothing behind, and retries.
"""

import hashlib
import json
import os
import signal
import threading
import time
from pathlib import Path

import grpc
import pytest

from collections_util import (C, SIMPLE, Api, Coll, assert_ok, call, expect_error, nn, sr,
                              uniq, unpack)
from collector import collection_repo_pb2 as repo_pb2
from conftest import _Factory, _finish
from test_files import put as put_file
from test_files import paced_msgs
from test_backups import body_ids, get_file
from test_tls import pki  # noqa: F401 (the fixture)

STAGE_PREFIX = ".new-"  # store_stage_begin's staged directories


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    f = _Factory(tmp_path_factory)
    a, b = f.node(), f.node()
    yield a, b
    _finish(f.procs)


def stages(node, ns="default"):
    d = Path(node.data_dir) / ns
    return sorted(p.name for p in d.iterdir() if p.name.startswith(STAGE_PREFIX)) if d.is_dir() else []


def wait_until(what, fn, timeout=20.0, step=0.02):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = fn()
        if v:
            return v
        time.sleep(step)
    pytest.fail(f"timed out after {timeout}s waiting for {what}", pytrace=False)


def source(api, n=25, files=True):
    coll = api.coll(indexed=("response_size",), labels={"team": "x"})
    for i in range(n):
        coll.put(sr(size=i, body=f"rec{i}".encode()))
    if files:
        put_file(coll, "a.txt", b"alpha")
        put_file(coll, "dir/sub/b.bin", bytes(range(256)) * 100)
        put_file(coll, "empty", b"")
    return coll


def assert_same(src, dst, files=True):
    assert body_ids(dst) == body_ids(src)
    d1, d2 = src.describe(), dst.describe()
    assert d2.record_count == d1.record_count
    a, b = d1.collection_definition, d2.collection_definition
    assert list(b.indexed_fields) == list(a.indexed_fields)
    assert b.message_type.message_name == a.message_type.message_name
    assert dict(b.metadata.labels) == dict(a.metadata.labels)
    if files:
        assert get_file(dst, "a.txt") == b"alpha"
        assert get_file(dst, "dir/sub/b.bin") == bytes(range(256)) * 100
        assert get_file(dst, "empty") == b""


def clone_req(coll, endpoint, dest, files=True, dest_ns=""):
    return repo_pb2.CloneRequest(source_collection=nn(coll.ns, coll.name), dest_name=dest,
                                 dest_namespace=dest_ns, dest_endpoint=endpoint, include_files=files)


def fetch_req(coll, endpoint, dest, files=True):
    return repo_pb2.FetchRequest(source_endpoint=endpoint, source_collection=nn(coll.ns, coll.name),
                                 dest_name=dest, include_files=files)


def test_clone_and_fetch_round_trip(two):
    a, b = two
    A, B = Api(a), Api(b)
    src = source(A)
    dest = uniq("cl")
    r = assert_ok(call(A.repo.Clone, clone_req(src, b.address, dest), timeout=60))
    assert r.collection_id == f"default/{dest}"
    assert r.records_cloned == 25 and r.files_cloned == 3 and r.bytes_transferred > 25600
    assert_same(src, Coll(B, "default", dest))
    assert stages(a) == [] and stages(b) == []

    # Fetch it back from B to A under another name: the copy of the copy equals the source.
    back = uniq("fe")
    f = assert_ok(call(A.repo.Fetch, fetch_req(Coll(B, "default", dest), b.address, back), timeout=60))
    assert f.collection_id == f"default/{back}"
    assert f.records_fetched == 25 and f.files_fetched == 3
    assert f.bytes_transferred == r.bytes_transferred
    assert_same(src, Coll(A, "default", back))

    # Without include_files only the records move.
    nofiles = uniq("nf")
    r2 = assert_ok(call(B.repo.Fetch, fetch_req(src, a.address, nofiles, files=False), timeout=60))
    assert r2.records_fetched == 25 and r2.files_fetched == 0
    assert_same(src, Coll(B, "default", nofiles), files=False)
    assert stages(a) == [] and stages(b) == []


def pull(api, coll, files=True):
    return list(api.repo.PullCollection(repo_pb2.PullCollectionRequest(
        source_collection=nn(coll.ns, coll.name), include_files=files), timeout=60))


def test_pull_stream_is_checked_and_pushable(two):
    a, b = two
    A, B = Api(a), Api(b)
    src = source(A)
    msgs = pull(A, src)
    assert msgs[0].WhichOneof("data") == "metadata"
    md = msgs[0].metadata
    assert all(m.WhichOneof("data") == "chunk" for m in msgs[1:])
    data = b"".join(m.chunk for m in msgs[1:])
    assert md.total_size == len(data) and md.record_count == 25 and md.file_count == 3
    man = json.loads(md.manifest)
    db = man["database"]
    assert hashlib.sha256(data[:db["size"]]).hexdigest() == db["sha256"]
    off = db["size"]
    for f in man["files"]:
        assert hashlib.sha256(data[off:off + f["size"]]).hexdigest() == f["sha256"]
        off += f["size"]
    assert off == len(data)
    assert man["definition"] and man["collection"] == src.name

    def meta(name):
        m = repo_pb2.PushCollectionRequest.Metadata(
            source_collection=nn("default", src.name), dest_name=name, include_files=True,
            total_size=md.total_size, record_count=md.record_count, file_count=md.file_count,
            manifest=md.manifest)
        return repo_pb2.PushCollectionRequest(metadata=m)

    def chunks(buf, size=50000):
        return [repo_pb2.PushCollectionRequest(chunk=buf[i:i + size]) for i in range(0, len(buf), size)]

    name = uniq("pushed")
    r = assert_ok(call(B.repo.PushCollection, iter([meta(name)] + chunks(data)), timeout=60))
    assert r.collection_id == f"default/{name}" and r.records_cloned == 25 and r.files_cloned == 3
    assert r.bytes_received == len(data)
    assert_same(src, Coll(B, "default", name))

    # Refusals: each leaves neither a collection nor a staged directory.
    bad = uniq("bad")
    flipped = bytearray(data)
    flipped[db["size"] + 2] ^= 0xFF  # in the first file
    flipped_db = bytearray(data)
    flipped_db[db["size"] // 2] ^= 0x01
    no_manifest = meta(bad)
    no_manifest.metadata.ClearField("manifest")
    wrong_total = meta(bad)
    wrong_total.metadata.total_size += 1
    wrong_count = meta(bad)
    wrong_count.metadata.record_count += 1
    cases = [
        (C.INVALID_ARGUMENT, chunks(data), "metadata"),
        (C.INVALID_ARGUMENT, [meta(bad), meta(bad)] + chunks(data), "second metadata"),
        (C.INVALID_ARGUMENT, [meta(bad)] + chunks(data) + [repo_pb2.PushCollectionRequest(chunk=b"x")], "total_size"),
        (C.INVALID_ARGUMENT, [meta(bad)] + chunks(data[:-1]), "total_size"),
        (C.INVALID_ARGUMENT, [meta(bad)], "total_size"),
        (C.INVALID_ARGUMENT, [no_manifest] + chunks(data), "manifest"),
        (C.INVALID_ARGUMENT, [wrong_total] + chunks(data), "total_size"),
        (C.INVALID_ARGUMENT, [wrong_count] + chunks(data), "record_count"),
        (C.DATA_LOSS, [meta(bad)] + chunks(bytes(flipped)), "SHA-256"),
        (C.DATA_LOSS, [meta(bad)] + chunks(bytes(flipped_db)), "SHA-256"),
        (C.INVALID_ARGUMENT, [], "metadata"),
        (C.ALREADY_EXISTS, [meta(name)] + chunks(data), name),
        (C.INVALID_ARGUMENT, [repo_pb2.PushCollectionRequest(metadata=repo_pb2.PushCollectionRequest.Metadata(
             dest_namespace="system", dest_name=bad, total_size=md.total_size,
             record_count=md.record_count, file_count=md.file_count, manifest=md.manifest))] +
         chunks(data), "system"),
    ]
    for code, seq, mention in cases:
        expect_error(code, B.repo.PushCollection, iter(seq), mentions=(mention,), timeout=30)
        B.assert_absent("default", bad)
        wait_until("the staged directory removed", lambda: stages(b) == [], timeout=10)
    expect_error(C.NOT_FOUND, A.repo.PullCollection, repo_pb2.PullCollectionRequest(
        source_collection=nn("default", "nosuch")))
    expect_error(C.INVALID_ARGUMENT, A.repo.PullCollection, repo_pb2.PullCollectionRequest())


def test_clone_fetch_refusals(two):
    a, b = two
    A, B = Api(a), Api(b)
    src = source(A, n=3, files=False)
    free = uniq("free")
    # Nobody listens on port 1.
    expect_error(C.UNAVAILABLE, A.repo.Clone, clone_req(src, "127.0.0.1:1", free),
                 mentions=("dest_endpoint",))
    expect_error(C.UNAVAILABLE, B.repo.Fetch, fetch_req(src, "127.0.0.1:1", free),
                 mentions=("source_endpoint",))
    expect_error(C.INVALID_ARGUMENT, B.repo.Fetch, fetch_req(src, "not an endpoint", free))
    expect_error(C.INVALID_ARGUMENT, B.repo.Fetch, fetch_req(src, "", free))
    expect_error(C.NOT_FOUND, B.repo.Fetch, repo_pb2.FetchRequest(
        source_endpoint=a.address, source_collection=nn("default", "nosuch"), dest_name=free),
        mentions=("nosuch",))
    expect_error(C.NOT_FOUND, A.repo.Clone, repo_pb2.CloneRequest(
        source_collection=nn("default", "nosuch"), dest_name=free, dest_endpoint=b.address))
    taken = source(B, n=1, files=False)
    expect_error(C.ALREADY_EXISTS, A.repo.Clone, clone_req(src, b.address, taken.name))
    expect_error(C.ALREADY_EXISTS, B.repo.Fetch, fetch_req(src, a.address, taken.name))
    expect_error(C.INVALID_ARGUMENT, A.repo.Clone, clone_req(src, b.address, free, dest_ns="system"))
    B.assert_absent("default", free)
    assert stages(a) == [] and stages(b) == []
    # The name is still free: a retry works.
    assert_ok(call(A.repo.Clone, clone_req(src, b.address, free), timeout=60))
    assert_same(src, Coll(B, "default", free), files=False)


BIG = 96 << 20  # bytes of attachments: long enough a transfer to interrupt


def big_source(api):
    coll = api.coll(prefix="big")
    for i in range(5):
        coll.put(sr(size=i, body=f"big{i}".encode()))
    block = os.urandom(1 << 20)
    for k in range(3):
        data = block * (BIG // 3 >> 20)
        # Paced: PutFile cannot pause its client (test_files.paced_msgs).
        assert_ok(call(coll.svc.PutFile, paced_msgs(coll, f"blob{k}.bin", data[:-1] + bytes([k]),
                                                    mib_per_s=100), timeout=60))
    return coll


def test_client_cancels_push_then_retry(two):
    a, b = two
    A, B = Api(a), Api(b)
    src = source(A, n=5)
    msgs = pull(A, src)
    md = msgs[0].metadata
    data = b"".join(m.chunk for m in msgs[1:])
    name = uniq("cancelled")
    sent_half = threading.Event()

    def gen():
        yield repo_pb2.PushCollectionRequest(metadata=repo_pb2.PushCollectionRequest.Metadata(
            dest_name=name, total_size=md.total_size, record_count=md.record_count,
            file_count=md.file_count, manifest=md.manifest))
        yield repo_pb2.PushCollectionRequest(chunk=data[:len(data) // 2])
        sent_half.set()
        time.sleep(30)  # never sends the rest: the client cancels

    fut = B.repo.PushCollection.future(gen(), timeout=60)
    assert sent_half.wait(10)
    wait_until("the staged directory", lambda: stages(b), timeout=10)
    fut.cancel()
    wait_until("the staged directory removed", lambda: stages(b) == [], timeout=10)
    B.assert_absent("default", name)
    # The same push cut by its deadline.
    sent_half.clear()
    fut = B.repo.PushCollection.future(gen(), timeout=1.5)
    assert sent_half.wait(10)
    with pytest.raises(grpc.RpcError) as e:
        fut.result(timeout=20)
    assert e.value.code() == C.DEADLINE_EXCEEDED
    wait_until("the staged directory removed", lambda: stages(b) == [], timeout=10)
    B.assert_absent("default", name)
    r = assert_ok(call(B.repo.PushCollection, iter([
        repo_pb2.PushCollectionRequest(metadata=repo_pb2.PushCollectionRequest.Metadata(
            dest_name=name, total_size=md.total_size, record_count=md.record_count,
            file_count=md.file_count, manifest=md.manifest)),
        repo_pb2.PushCollectionRequest(chunk=data)]), timeout=60))
    assert r.records_cloned == 5
    assert_same(src, Coll(B, "default", name))


def _kill_mid_transfer(servers, direction):
    """Node `victim` is killed with SIGKILL while a transfer to/from it runs; the survivor
    answers an error and keeps nothing; the victim restarted keeps nothing; a retry works."""
    a = servers.node()
    b = servers.node()
    A, B = Api(a), Api(b)
    src = big_source(A)
    name = uniq("k")
    result = {}

    def run():
        try:
            if direction == "clone":  # A pushes to B; B dies
                result["r"] = A.repo.Clone(clone_req(src, b.address, name), timeout=60)
            else:  # B pulls from A; A dies
                result["r"] = B.repo.Fetch(fetch_req(src, a.address, name), timeout=60)
        except grpc.RpcError as e:
            result["e"] = e

    t = threading.Thread(target=run)
    t.start()
    # The receiver's staged directory with bytes in it: the transfer is under way.
    def receiving():
        for s in stages(b):
            p = Path(b.data_dir) / "default" / s / "files"
            if any(p.iterdir()) if p.is_dir() else False:
                return True
        return False
    wait_until("the transfer under way", receiving, timeout=30, step=0.005)
    victim = b if direction == "clone" else a
    victim.stop(signal.SIGKILL, timeout=10)
    t.join(timeout=60)
    assert not t.is_alive()
    assert "e" in result, "the transfer succeeded although a side was killed"
    assert result["e"].code() in (C.UNAVAILABLE, C.CANCELLED, C.INTERNAL), result["e"]
    survivor = a if direction == "clone" else b
    wait_until("the survivor's staged directories removed", lambda: stages(survivor) == [], timeout=20)
    # The victim restarted on its data: the start sweeps the staged leftovers.
    v2 = servers.node(data_dir=victim.data_dir, listen=victim.address)
    wait_until("the victim's leftovers swept", lambda: stages(v2) == [], timeout=20)
    if direction == "clone":
        B2 = Api(v2)
        B2.assert_absent("default", name)
        r = assert_ok(call(A.repo.Clone, clone_req(src, v2.address, name), timeout=120))
        assert_big_same(src, Coll(B2, "default", name), r.records_cloned)
    else:
        A2 = Api(v2)
        B.assert_absent("default", name)
        r = assert_ok(call(B.repo.Fetch, fetch_req(Coll(A2, "default", src.name), v2.address, name),
                           timeout=120))
        assert_big_same(Coll(A2, "default", src.name), Coll(B, "default", name), r.records_fetched)


def assert_big_same(src, dst, records):
    assert records == 5
    assert body_ids(dst) == body_ids(src)
    for k in range(3):
        assert hashlib.sha256(get_file(dst, f"blob{k}.bin")).digest() == \
            hashlib.sha256(get_file(src, f"blob{k}.bin")).digest()


def test_kill_receiver_mid_clone_then_retry(servers):
    _kill_mid_transfer(servers, "clone")


def test_kill_sender_mid_fetch_then_retry(servers):
    _kill_mid_transfer(servers, "fetch")


def test_memory_stays_bounded(servers):
    """A transfer holds a few MiB whatever the collection's size: moving 96 MiB both ways,
    neither node's RSS grows by half of it (a sender or receiver that held the collection
    whole would grow by all of it)."""
    from conftest import COLLECTOR_BIN, binary_has_asan, vmrss_kib
    if binary_has_asan(COLLECTOR_BIN):
        pytest.skip("ASan's allocator keeps freed memory: RSS says nothing here")
    a, b = servers.node(), servers.node()
    A, B = Api(a), Api(b)
    src = big_source(A)
    base = {n.pid: vmrss_kib(n.pid) for n in (a, b)}
    peak = dict(base)
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            for n in (a, b):
                peak[n.pid] = max(peak[n.pid], vmrss_kib(n.pid))
            time.sleep(0.01)

    t = threading.Thread(target=sample)
    t.start()
    try:
        name = uniq("mem")
        r = assert_ok(call(A.repo.Clone, clone_req(src, b.address, name), timeout=120))
        assert r.bytes_transferred > BIG - (1 << 20)
        back = uniq("memback")
        assert_ok(call(A.repo.Fetch, fetch_req(Coll(B, "default", name), b.address, back), timeout=120))
    finally:
        stop.set()
        t.join(timeout=10)
    for n in (a, b):
        grown = (peak[n.pid] - base[n.pid]) / 1024
        print(f"RSS growth of {n.address}: {grown:.1f} MiB")
        assert grown < 48, f"RSS of the node at {n.address} grew by {grown:.1f} MiB moving 96 MiB"
    assert_big_same(src, Coll(A, "default", back), 5)


def test_clone_and_fetch_carry_a_registered_type(two):
    """The other node has never seen the collection's type: the manifest's descriptors
    register it there (in the destination namespace) before the collection appears."""
    from collections_util import raw_any
    from collector import registry_pb2
    from registry_util import animal_file, keeper_file
    a, b = two
    A, B = Api(a), Api(b)
    ns, back_ns = uniq("tx"), uniq("txback")
    assert_ok(call(A.registry.RegisterProto, registry_pb2.RegisterProtoRequest(
        namespace=ns, file_descriptor=keeper_file(), dependencies=[animal_file()])))
    name = uniq("keepers")
    A.create_collection(name, "zoo.Keeper", ns=ns)
    coll = Coll(A, ns, name, "zoo.Keeper")
    for i in range(4):
        coll.put(raw_any("zoo.Keeper", b"\n\x02k" + str(i).encode()))
    before = coll.snapshot()
    r = assert_ok(call(A.repo.Clone, repo_pb2.CloneRequest(
        source_collection=nn(ns, name), dest_endpoint=b.address), timeout=60))
    assert r.collection_id == f"{ns}/{name}" and r.records_cloned == 4
    copy = Coll(B, ns, name, "zoo.Keeper")
    assert copy.snapshot() == before
    d = copy.describe().collection_definition
    assert d.namespace == ns and d.message_type.message_name == "zoo.Keeper"
    B.create_collection(uniq("probe"), "zoo.Keeper", ns=ns)  # the type is registered on B now
    f = assert_ok(call(A.repo.Fetch, repo_pb2.FetchRequest(
        source_endpoint=b.address, source_collection=nn(ns, name), dest_namespace=back_ns),
        timeout=60))
    assert f.collection_id == f"{back_ns}/{name}"
    assert Coll(A, back_ns, name, "zoo.Keeper").snapshot() == before


def test_clone_and_fetch_with_auth_on(servers, tmp_path):
    """With auth on, the far node admits the push or pull on the mesh credential that nodes
    sharing --mesh-token-file carry; a node without it is refused, and nothing is made."""
    from collections_util import pack
    from collector import collection_server_pb2 as cs_pb2
    from test_auth import admin_token, md
    mesh = tmp_path / "mesh.tok"
    a = servers.node("--auth", "on", "--mesh-token-file", mesh)
    b = servers.node("--auth", "on", "--mesh-token-file", mesh)
    c = servers.node("--auth", "on")
    ta, tb, tc = admin_token(a), admin_token(b), admin_token(c)
    A, B, Cn = Api(a), Api(b), Api(c)
    name = uniq("authsrc")
    A.create_collection(name, metadata=md(ta))
    src = Coll(A, "default", name)
    for i in range(3):
        A.svc.Create(cs_pb2.CreateRequest(namespace="default", collection_name=name,
                                          item=pack(sr(size=i, body=b"x"))), metadata=md(ta), timeout=10)
    r = assert_ok(call(A.repo.Clone, clone_req(src, b.address, uniq("authcl")), metadata=md(ta),
                       timeout=60))
    assert r.records_cloned == 3
    f = assert_ok(call(B.repo.Fetch, fetch_req(src, a.address, uniq("authfe")), metadata=md(tb),
                       timeout=60))
    assert f.records_fetched == 3
    # c has no mesh token: it refuses a's push, and a refuses its pull.
    for fn, tok, req in ((A.repo.Clone, ta, clone_req(src, c.address, uniq("no"))),
                         (Cn.repo.Fetch, tc, fetch_req(src, a.address, uniq("no")))):
        try:
            fn(req, metadata=md(tok), timeout=30)
            pytest.fail("a transfer without the mesh credential succeeded")
        except grpc.RpcError as e:
            assert e.code() in (C.UNAUTHENTICATED, C.PERMISSION_DENIED), (e.code(), e.details())
    assert stages(a) == [] and stages(b) == [] and stages(c) == []


def test_clone_cancelled_by_its_caller(servers):
    """The caller of Clone goes mid-push: the push stops on both nodes and leaves nothing;
    the same Clone again works."""
    a, b = servers.node(), servers.node()
    A, B = Api(a), Api(b)
    src = big_source(A)
    name = uniq("cc")
    fut = A.repo.Clone.future(clone_req(src, b.address, name), timeout=60)

    def receiving():
        for s in stages(b):
            p = Path(b.data_dir) / "default" / s / "files"
            if p.is_dir() and any(p.iterdir()):
                return True
        return False
    wait_until("the push under way", receiving, timeout=30, step=0.005)
    fut.cancel()
    wait_until("both nodes' staged directories removed",
               lambda: stages(a) == [] and stages(b) == [], timeout=20)
    B.assert_absent("default", name)
    r = assert_ok(call(A.repo.Clone, clone_req(src, b.address, name), timeout=120))
    assert_big_same(src, Coll(B, "default", name), r.records_cloned)


def test_clone_and_fetch_over_mutual_tls(servers, pki):
    """Nodes that serve mutual TLS push and pull over TLS, each presenting its certificate."""
    from collector import collection_repo_pb2_grpc, collection_server_pb2_grpc
    from collector import collection_server_pb2 as cs_pb2
    from collections_util import create_collection_req, pack
    from test_tls import secure, tls_peer
    a, b = tls_peer(servers, pki, "tls-a"), tls_peer(servers, pki, "tls-b")
    ca, cb = secure(a, pki, client=pki["client"]), secure(b, pki, client=pki["client"])
    ra, rb = collection_repo_pb2_grpc.CollectionRepoStub(ca), collection_repo_pb2_grpc.CollectionRepoStub(cb)
    sa, sb = collection_server_pb2_grpc.CollectionServiceStub(ca), collection_server_pb2_grpc.CollectionServiceStub(cb)
    name = uniq("tls")
    assert_ok(call(ra.CreateCollection, create_collection_req("default", name)))
    for i in range(4):
        sa.Create(cs_pb2.CreateRequest(namespace="default", collection_name=name,
                                       item=pack(sr(size=i, body=b"t"))), timeout=10)
    r = assert_ok(call(ra.Clone, repo_pb2.CloneRequest(
        source_collection=nn("default", name), dest_endpoint=f"127.0.0.1:{b.port}"), timeout=60))
    assert r.records_cloned == 4
    f = assert_ok(call(ra.Fetch, repo_pb2.FetchRequest(
        source_endpoint=f"127.0.0.1:{b.port}", source_collection=nn("default", name),
        dest_name=name + "-back"), timeout=60))
    assert f.records_fetched == 4
    for stub, n in ((sb, name), (sa, name + "-back")):
        lst = stub.List(cs_pb2.ListRequest(namespace="default", collection_name=n), timeout=10)
        assert len(lst.items) == 4


def test_open_transfers_are_bounded(servers):
    """At most 32 transfers open at once (each holds a few MiB and a staged directory): the
    next is RESOURCE_EXHAUSTED, and once they end a new one goes."""
    a, b = servers.node(), servers.node()
    A, B = Api(a), Api(b)
    src = source(A, n=2, files=False)
    msgs = pull(A, src, files=False)
    md = msgs[0].metadata
    data = b"".join(m.chunk for m in msgs[1:])
    release = threading.Event()

    def stalled(name):
        yield repo_pb2.PushCollectionRequest(metadata=repo_pb2.PushCollectionRequest.Metadata(
            dest_name=name, total_size=md.total_size, record_count=md.record_count,
            file_count=md.file_count, manifest=md.manifest))
        yield repo_pb2.PushCollectionRequest(chunk=data[:10])
        release.wait(30)

    futs = [B.repo.PushCollection.future(stalled(uniq("held")), timeout=60) for _ in range(32)]
    try:
        wait_until("32 staged pushes", lambda: len(stages(b)) == 32, timeout=30)
        expect_error(C.RESOURCE_EXHAUSTED, B.repo.PushCollection, iter([
            repo_pb2.PushCollectionRequest(metadata=repo_pb2.PushCollectionRequest.Metadata(
                dest_name=uniq("over"), total_size=md.total_size, record_count=md.record_count,
                file_count=md.file_count, manifest=md.manifest))]), mentions=("32",))
    finally:
        for f in futs:
            f.cancel()
        release.set()
    wait_until("the held pushes gone", lambda: stages(b) == [], timeout=30)
    r = assert_ok(call(A.repo.Clone, clone_req(src, b.address, uniq("after"), files=False), timeout=60))
    assert r.records_cloned == 2
