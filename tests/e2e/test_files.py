"""Collection attachments end to end: CollectionService PutFile, GetFile, ListFiles and
DeleteFile against a real node.

The contract these tests encode (see src/services/files_svc.h):
- Paths are relative and '/'-separated: no '..' or '.', no leading '/', no empty segment,
  no backslash or NUL, at most 255 bytes a segment, 32 segments, 1024 bytes; a bad path,
  or one through a symbolic link, is INVALID_ARGUMENT. Names and namespaces as in the
  other methods (empty namespace: the header's, else the node's default).
- PutFile: header first, then chunks; the file appears atomically at the client's
  half-close; failed or cancelled uploads leave nothing (not even in staging/).
- GetFile: FileInfo first, then chunks of at most 64 KiB; offset past the end is
  OUT_OF_RANGE; a slow reader does not make the node buffer the file.
- ListFiles: a CollectionDir tree keyed by entry name; DeleteFile: a file, or a directory
  with recursive; both count files and bytes.
"""

import hashlib
import os
import random
import signal
import threading
import time

import grpc
import pytest
from collections_util import (
    NS_HEADER, Api, C, assert_ok, call, cs_pb2, expect_error, nn, repo_pb2, uniq,
)

T = 30
KiB, MiB = 1024, 1024 * 1024
CHUNK_MAX = 64 * KiB


@pytest.fixture(scope="module")
def api(shared_node):
    return Api(shared_node)


def blob(n, seed=0):
    """n pseudo-random bytes, the same for the same seed."""
    return random.Random(seed).randbytes(n)


def header(coll, path, total=0, ns=None):
    return cs_pb2.PutFileRequest(header=cs_pb2.PutFileHeader(
        namespace=coll.ns if ns is None else ns, collection_name=coll.name, path=path, total_size=total))


def put_msgs(coll, path, data, chunk=CHUNK_MAX, total=0, ns=None):
    yield header(coll, path, total, ns)
    for i in range(0, len(data), chunk):
        yield cs_pb2.PutFileRequest(chunk=data[i:i + chunk])


def put(coll, path, data, chunk=CHUNK_MAX, total=0, ns=None, metadata=None):
    resp = call(coll.svc.PutFile, put_msgs(coll, path, data, chunk, total, ns), metadata, timeout=T)
    return assert_ok(resp)


def paced_msgs(coll, path, data, chunk=256 * KiB, mib_per_s=40):
    """An upload no faster than a slow disk (a fast one is slowed by flow control:
    test_fast_upload_is_bounded)."""
    yield header(coll, path, len(data))
    for i in range(0, len(data), chunk):
        yield cs_pb2.PutFileRequest(chunk=data[i:i + chunk])
        time.sleep(chunk / (mib_per_s * MiB))


def put_paced(coll, path, data, **kw):
    return assert_ok(call(coll.svc.PutFile, paced_msgs(coll, path, data, **kw), timeout=120))


def get_req(coll, path, offset=0, length=0, ns=None):
    return cs_pb2.GetFileRequest(namespace=coll.ns if ns is None else ns, collection_name=coll.name,
                                 path=path, offset=offset, length=length)


def get(coll, path, offset=0, length=0, ns=None, metadata=None):
    """(FileInfo, content, chunk sizes)."""
    try:
        msgs = list(coll.svc.GetFile(get_req(coll, path, offset, length, ns), timeout=T, metadata=metadata))
    except grpc.RpcError as e:
        pytest.fail(f"GetFile {path!r} failed: {e.code().name}: {e.details()}", pytrace=False)
    assert msgs and msgs[0].WhichOneof("data") == "info", "GetFile did not start with a FileInfo"
    assert all(m.WhichOneof("data") == "chunk" for m in msgs[1:]), "GetFile sent a second FileInfo"
    sizes = [len(m.chunk) for m in msgs[1:]]
    return msgs[0].info, b"".join(m.chunk for m in msgs[1:]), sizes


def listing(coll, path="", recursive=True):
    req = cs_pb2.ListFilesRequest(namespace=coll.ns, collection_name=coll.name, path=path, recursive=recursive)
    return assert_ok(call(coll.svc.ListFiles, req)).root


def tree(d):
    """A CollectionDir as nested dicts: files map to None, directories to their dict."""
    out = {}
    for key, sub in d.subdirs.items():
        assert sub.name == key, f"subdir {key!r} is named {sub.name!r}"
        out[key] = tree(sub)
    for key, f in d.files.items():
        assert f.name == key, f"file {key!r} is named {f.name!r}"
        assert f.WhichOneof("content") is None, f"file {key!r} carries content"
        out[key] = None
    return out


def delete(coll, path, recursive=False):
    req = cs_pb2.DeleteFileRequest(namespace=coll.ns, collection_name=coll.name, path=path, recursive=recursive)
    r = assert_ok(call(coll.svc.DeleteFile, req))
    return r.files_deleted, r.bytes_freed


def coll_dir(node, coll):
    return node.data_dir / coll.ns / coll.name


def on_disk(node, coll):
    """Every regular file under files/ (relative path -> bytes) and what staging/ holds."""
    root = coll_dir(node, coll)
    files = {}
    for dirpath, _dirs, names in os.walk(root / "files"):
        for n in names:
            p = os.path.join(dirpath, n)
            if os.path.isfile(p) and not os.path.islink(p):
                files[os.path.relpath(p, root / "files")] = open(p, "rb").read()
    staging = sorted(os.listdir(root / "staging")) if (root / "staging").exists() else []
    return files, staging


def wait_staging_empty(node, coll, timeout=10):
    until = time.monotonic() + timeout
    while True:
        _, staging = on_disk(node, coll)
        if not staging:
            return
        assert time.monotonic() < until, f"staging/ still holds {staging}"
        time.sleep(0.05)


def delete_collection_promptly(api, coll, limit=10):
    """DeleteCollection waits for every handle on the collection: it finishing in time
    shows that no transfer still holds one."""
    t0 = time.monotonic()
    r = assert_ok(call(api.repo.DeleteCollection,
                       repo_pb2.DeleteCollectionRequest(collection=nn(coll.ns, coll.name)), timeout=limit))
    assert time.monotonic() - t0 < limit
    return r


# =======================================================================================
# Round trips


@pytest.mark.parametrize("size,chunk", [
    (0, CHUNK_MAX), (1, CHUNK_MAX), (1000, 7), (CHUNK_MAX, CHUNK_MAX), (CHUNK_MAX + 1, CHUNK_MAX),
    (3 * MiB + 12345, 100_000), (5 * MiB + 3, MiB + 17), (6 * MiB, 3 * MiB),
], ids=["empty", "one", "tiny-chunks", "one-chunk", "chunk+1", "3MiB-odd", "5MiB-1MiB+17", "6MiB-3MiB"])
def test_round_trip(api, shared_node, size, chunk):
    coll = api.coll()
    data = blob(size, seed=size)
    r = put(coll, "f.bin", data, chunk=chunk, total=size)
    assert (r.path, r.size_bytes, r.sha256) == ("f.bin", size, hashlib.sha256(data).hexdigest())
    info, got, sizes = get(coll, "f.bin")
    assert (info.path, info.size_bytes) == ("f.bin", size)
    assert info.HasField("modified_at") and abs(info.modified_at.seconds - time.time()) < 300
    assert got == data
    assert all(0 < s <= CHUNK_MAX for s in sizes), f"chunk sizes {sorted(set(sizes))}"
    assert on_disk(shared_node, coll) == ({"f.bin": data}, [])


def test_total_size_is_optional(api):
    coll = api.coll()
    data = blob(200_000, 3)
    assert put(coll, "x", data, chunk=30_000).size_bytes == len(data)
    assert get(coll, "x")[1] == data


def test_empty_and_missing_chunks_add_nothing(api):
    coll = api.coll()

    def msgs():
        yield header(coll, "e.txt")
        yield cs_pb2.PutFileRequest(chunk=b"")
        yield cs_pb2.PutFileRequest()
        yield cs_pb2.PutFileRequest(chunk=b"abc")
        yield cs_pb2.PutFileRequest(chunk=b"")

    r = assert_ok(call(coll.svc.PutFile, msgs()))
    assert (r.size_bytes, r.sha256) == (3, hashlib.sha256(b"abc").hexdigest())
    assert get(coll, "e.txt")[1] == b"abc"


def test_nested_paths_and_overwrite(api, shared_node):
    coll = api.coll()
    files = {
        "a.txt": b"top",
        "d1/b.txt": b"one level",
        "d1/d2/d3/c.bin": blob(70_000, 1),
        "d1/d2/e": b"",
        "weird name with spaces/caf\u00e9-\u540d.txt": b"unicode",
        "x" * 255: b"long segment",
        "/".join(["s"] * 32): b"deepest",
    }
    for p, d in files.items():
        put(coll, p, d)
    for p, d in files.items():
        info, got, _ = get(coll, p)
        assert (info.path, info.size_bytes, got) == (p, len(d), d)
    # Overwrite: the new content replaces the old, sizes included.
    r = put(coll, "d1/d2/d3/c.bin", b"short now")
    assert r.size_bytes == 9
    assert get(coll, "d1/d2/d3/c.bin")[1] == b"short now"
    big = blob(2 * MiB, 9)
    put(coll, "a.txt", big)
    assert get(coll, "a.txt")[1] == big
    disk, staging = on_disk(shared_node, coll)
    assert staging == [] and disk["a.txt"] == big and disk["d1/d2/d3/c.bin"] == b"short now"
    assert len(disk) == len(files)


def test_same_name_in_other_collection_and_namespace(api):
    a, b = api.coll(), api.coll()
    ns = api.serve_in(uniq("fns"))
    c = api.coll(ns=ns)
    put(a, "f", b"in a")
    put(b, "f", b"in b")
    # Empty namespace in the message: the header's.
    put(c, "f", b"in c", ns="", metadata=((NS_HEADER, ns),))
    assert [get(x, "f")[1] for x in (a, b, c)] == [b"in a", b"in b", b"in c"]
    assert get(c, "f", ns="", metadata=((NS_HEADER, ns),))[1] == b"in c"
    # Empty namespace and no header: the node's default namespace.
    assert get(a, "f", ns="")[1] == b"in a"


def test_concurrent_uploads_to_one_path(api):
    coll = api.coll()
    datas = [blob(MiB + i, seed=100 + i) for i in range(4)]
    errs = []

    def up(d):
        try:
            coll.svc.PutFile(put_msgs(coll, "same", d, chunk=50_000), timeout=T)
        except grpc.RpcError as e:
            errs.append(e)

    threads = [threading.Thread(target=up, args=(d,)) for d in datas]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errs, [(e.code(), e.details()) for e in errs]
    assert get(coll, "same")[1] in datas  # one whole upload, never a mix


# =======================================================================================
# Paths, names and headers

BAD_PATHS = [
    ("empty", ""), ("dot", "."), ("dotdot", ".."), ("parent", "a/../b"), ("leading-parent", "../x"),
    ("dot-seg", "a/./b"), ("absolute", "/etc/passwd"), ("double-slash", "a//b"), ("trailing-slash", "a/"),
    ("backslash", "a\\b"), ("nul", "a\x00b"), ("segment-256", "x" * 256),
    ("depth-33", "/".join(["s"] * 33)), ("len-1025", "/".join(["y" * 200] * 5) + "/" + "z" * 20),
]


@pytest.mark.parametrize("bad", [p for _, p in BAD_PATHS], ids=[i for i, _ in BAD_PATHS])
def test_bad_paths_rejected_everywhere(api, shared_node, bad):
    coll = api.coll()
    put(coll, "keep", b"k")
    expect_error(C.INVALID_ARGUMENT, coll.svc.PutFile, put_msgs(coll, bad, b"data"))
    expect_error(C.INVALID_ARGUMENT, coll.svc.GetFile, get_req(coll, bad))
    expect_error(C.INVALID_ARGUMENT, coll.svc.DeleteFile,
                 cs_pb2.DeleteFileRequest(namespace=coll.ns, collection_name=coll.name, path=bad, recursive=True))
    if bad:  # "" lists the whole tree
        expect_error(C.INVALID_ARGUMENT, coll.svc.ListFiles,
                     cs_pb2.ListFilesRequest(namespace=coll.ns, collection_name=coll.name, path=bad))
    assert on_disk(shared_node, coll) == ({"keep": b"k"}, [])
    assert not (shared_node.data_dir / "etc").exists()


def test_symlinks_lead_nowhere(api, shared_node, tmp_path):
    coll = api.coll()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"secret")
    files = coll_dir(shared_node, coll) / "files"
    put(coll, "real/inner.txt", b"inner")
    os.symlink(outside, files / "link")
    os.symlink(outside / "secret.txt", files / "slink")
    os.symlink(outside, files / "real" / "dlink")
    for p in ("link/secret.txt", "slink", "real/dlink/secret.txt"):
        expect_error(C.INVALID_ARGUMENT, coll.svc.GetFile, get_req(coll, p))
        expect_error(C.INVALID_ARGUMENT, coll.svc.DeleteFile,
                     cs_pb2.DeleteFileRequest(namespace=coll.ns, collection_name=coll.name, path=p, recursive=True))
    for p in ("link/new.txt", "real/dlink/new.txt", "link/sub/new.txt"):
        expect_error(C.INVALID_ARGUMENT, coll.svc.PutFile, put_msgs(coll, p, b"escaped"))
    expect_error(C.INVALID_ARGUMENT, coll.svc.ListFiles,
                 cs_pb2.ListFilesRequest(namespace=coll.ns, collection_name=coll.name, path="link"))
    # Links are not listed.
    assert tree(listing(coll)) == {"real": {"inner.txt": None}}
    # A recursive delete removes a link inside the tree, never what it points to.
    assert delete(coll, "real", recursive=True) == (1, 5)
    assert sorted(os.listdir(outside)) == ["secret.txt"]
    assert (outside / "secret.txt").read_bytes() == b"secret"
    wait_staging_empty(shared_node, coll)


def test_unknown_collection_and_bad_names(api):
    coll = api.coll()
    put(coll, "f", b"x")
    ghost = type(coll)(api, coll.ns, uniq("ghost"))
    other_ns = type(coll)(api, uniq("nons"), coll.name)
    for c in (ghost, other_ns):
        expect_error(C.NOT_FOUND, c.svc.PutFile, put_msgs(c, "f", b"x"))
        expect_error(C.NOT_FOUND, c.svc.GetFile, get_req(c, "f"))
        expect_error(C.NOT_FOUND, c.svc.ListFiles, cs_pb2.ListFilesRequest(namespace=c.ns, collection_name=c.name))
        expect_error(C.NOT_FOUND, c.svc.DeleteFile,
                     cs_pb2.DeleteFileRequest(namespace=c.ns, collection_name=c.name, path="f"))
    for bad in ("..", "a/b", "", "-x"):
        b1 = type(coll)(api, coll.ns, bad)
        b2 = type(coll)(api, bad if bad else "a/b", coll.name)
        for c in (b1, b2):
            expect_error(C.INVALID_ARGUMENT, c.svc.PutFile, put_msgs(c, "f", b"x"))
            expect_error(C.INVALID_ARGUMENT, c.svc.GetFile, get_req(c, "f"))
            expect_error(C.INVALID_ARGUMENT, c.svc.ListFiles,
                         cs_pb2.ListFilesRequest(namespace=c.ns, collection_name=c.name))
            expect_error(C.INVALID_ARGUMENT, c.svc.DeleteFile,
                         cs_pb2.DeleteFileRequest(namespace=c.ns, collection_name=c.name, path="f"))
    assert get(coll, "f")[1] == b"x"


def test_header_rules(api, shared_node):
    coll = api.coll()
    chunk = cs_pb2.PutFileRequest(chunk=b"data")
    expect_error(C.INVALID_ARGUMENT, coll.svc.PutFile, iter([chunk, header(coll, "f")]), mentions=("header",))
    expect_error(C.INVALID_ARGUMENT, coll.svc.PutFile, iter([]), mentions=("header",))
    expect_error(C.INVALID_ARGUMENT, coll.svc.PutFile, iter([cs_pb2.PutFileRequest()]), mentions=("header",))
    expect_error(C.INVALID_ARGUMENT, coll.svc.PutFile, iter([header(coll, "f"), chunk, header(coll, "g"), chunk]),
                 mentions=("header",))
    expect_error(C.INVALID_ARGUMENT, coll.svc.PutFile, iter([header(coll, "f", total=-1), chunk]))
    expect_error(C.RESOURCE_EXHAUSTED, coll.svc.PutFile, iter([header(coll, "f", total=(1 << 30) + 1), chunk]))
    wait_staging_empty(shared_node, coll)
    assert on_disk(shared_node, coll) == ({}, [])


def test_size_mismatch_stores_nothing(api, shared_node):
    coll = api.coll()
    put(coll, "f", b"old content")
    expect_error(C.INVALID_ARGUMENT, coll.svc.PutFile, put_msgs(coll, "f", b"12345", total=10), mentions=("total_size",))
    expect_error(C.INVALID_ARGUMENT, coll.svc.PutFile, put_msgs(coll, "f", blob(300_000), chunk=1000, total=10))
    expect_error(C.INVALID_ARGUMENT, coll.svc.PutFile, put_msgs(coll, "new", b"12345", total=6))
    wait_staging_empty(shared_node, coll)
    assert on_disk(shared_node, coll) == ({"f": b"old content"}, [])
    assert get(coll, "f")[1] == b"old content"


def test_directory_and_file_clashes(api):
    coll = api.coll()
    put(coll, "d/f", b"x")
    expect_error(C.FAILED_PRECONDITION, coll.svc.PutFile, put_msgs(coll, "d", b"over a dir"))
    expect_error(C.FAILED_PRECONDITION, coll.svc.PutFile, put_msgs(coll, "d/f/g", b"under a file"))
    expect_error(C.FAILED_PRECONDITION, coll.svc.GetFile, get_req(coll, "d"))
    expect_error(C.NOT_FOUND, coll.svc.GetFile, get_req(coll, "d/f/g"))
    expect_error(C.FAILED_PRECONDITION, coll.svc.ListFiles,
                 cs_pb2.ListFilesRequest(namespace=coll.ns, collection_name=coll.name, path="d/f"))
    assert get(coll, "d/f")[1] == b"x"


# =======================================================================================
# GetFile ranges


def test_offset_and_length(api):
    coll = api.coll()
    data = blob(300_001, 5)
    put(coll, "r", data)
    cases = [(0, 0), (0, 1), (1, 0), (5, 10), (65535, 65538), (200_000, 0), (299_999, 5), (300_000, 0),
             (300_001, 0), (300_001, 7), (0, 300_001), (0, 10 ** 12), (123, 1)]
    for off, ln in cases:
        info, got, sizes = get(coll, "r", off, ln)
        want = data[off:off + ln] if ln else data[off:]
        assert got == want, (off, ln)
        assert info.size_bytes == len(data)
        assert all(0 < s <= CHUNK_MAX for s in sizes)
    expect_error(C.OUT_OF_RANGE, coll.svc.GetFile, get_req(coll, "r", 300_002), mentions=("offset",))
    expect_error(C.OUT_OF_RANGE, coll.svc.GetFile, get_req(coll, "r", 10 ** 12, 5))
    expect_error(C.INVALID_ARGUMENT, coll.svc.GetFile, get_req(coll, "r", -1))
    expect_error(C.INVALID_ARGUMENT, coll.svc.GetFile, get_req(coll, "r", 0, -5))
    put(coll, "empty", b"")
    info, got, sizes = get(coll, "empty")
    assert (info.size_bytes, got, sizes) == (0, b"", [])
    expect_error(C.OUT_OF_RANGE, coll.svc.GetFile, get_req(coll, "empty", 1))


def test_get_missing_file(api):
    coll = api.coll()
    expect_error(C.NOT_FOUND, coll.svc.GetFile, get_req(coll, "nope"))
    expect_error(C.NOT_FOUND, coll.svc.GetFile, get_req(coll, "no/such/dir/f"))


def test_slow_reader_keeps_node_memory_bounded(servers):
    n = servers.node()
    a = Api(n)
    coll = a.coll()
    data = blob(48 * MiB, 11)
    put_paced(coll, "big", data)
    assert get(coll, "big", length=4 * MiB)[1] == data[:4 * MiB]  # warm the read path
    base = n.rss_kib()
    stream = coll.svc.GetFile(get_req(coll, "big"), timeout=120)
    first = next(stream)
    assert first.info.size_bytes == len(data)
    got = [next(stream).chunk]
    peak, until = base, time.monotonic() + 2.0
    while time.monotonic() < until:
        peak = max(peak, n.rss_kib())
        time.sleep(0.05)
    grown_mib = (peak - base) / 1024
    assert grown_mib < 16, f"node RSS grew by {grown_mib:.1f} MiB while the reader stalled (48 MiB file)"
    # Reading slowly at first, then at full speed: every byte arrives, in order.
    for i, m in enumerate(stream):
        got.append(m.chunk)
        if i < 40:
            time.sleep(0.01)
    assert stream.code() == grpc.StatusCode.OK
    assert hashlib.sha256(b"".join(got)).digest() == hashlib.sha256(data).digest()


class RssSampler:
    def __init__(self, node):
        self.node, self.peak = node, node.rss_kib()
        self.base = self.peak
        self.stop = threading.Event()
        self.t = threading.Thread(target=self._run)

    def _run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, self.node.rss_kib())
            time.sleep(0.02)

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.t.join()

    def grown_mib(self):
        return (self.peak - self.base) / 1024


def test_big_upload_keeps_node_memory_bounded(servers):
    n = servers.node()
    coll = Api(n).coll()
    put(coll, "warm", blob(4 * MiB, 1), chunk=MiB)
    data = blob(64 * MiB, 12)
    with RssSampler(n) as rss:
        r = put_paced(coll, "big", data)
    assert r.sha256 == hashlib.sha256(data).hexdigest()
    assert rss.grown_mib() < 24, f"node RSS grew by {rss.grown_mib():.1f} MiB during a 64 MiB upload"
    assert get(coll, "big")[1] == data


def test_fast_upload_is_bounded(servers):
    """A client that sends faster than the disk writes is slowed by flow control (the
    node pauses reading at 2 MiB ahead): the upload succeeds and the node's memory stays
    bounded."""
    n = servers.node()
    coll = Api(n).coll()
    put(coll, "warm", blob(4 * MiB, 1), chunk=MiB)
    data = blob(96 * MiB, 13)
    with RssSampler(n) as rss:
        r = coll.svc.PutFile(put_msgs(coll, "fast", data, chunk=MiB, total=len(data)), timeout=120)
        assert r.sha256 == hashlib.sha256(data).hexdigest()
    assert rss.grown_mib() < 40, f"node RSS grew by {rss.grown_mib():.1f} MiB during a fast 96 MiB upload"


# =======================================================================================
# Atomic uploads and cancellation


class Gate:
    """A PutFile request stream that stops after `before` and waits for open()."""

    def __init__(self, msgs, before):
        self.msgs, self.before = list(msgs), before
        self.sent = threading.Event()
        self.gate = threading.Event()

    def __iter__(self):
        for i, m in enumerate(self.msgs):
            if i == self.before:
                self.sent.set()
                self.gate.wait(60)
            yield m


def test_file_appears_only_at_half_close(api, shared_node):
    coll = api.coll()
    put(coll, "f", b"old")
    data = blob(3 * MiB, 21)
    g = Gate(put_msgs(coll, "f", data, chunk=100_000), before=20)
    fut = coll.svc.PutFile.future(iter(g), timeout=T)
    assert g.sent.wait(10)
    time.sleep(0.3)  # the chunks before the gate reach the node and its disk
    assert get(coll, "f")[1] == b"old"
    assert tree(listing(coll)) == {"f": None}
    g.gate.set()
    r = fut.result()
    assert r.sha256 == hashlib.sha256(data).hexdigest()
    assert get(coll, "f")[1] == data
    assert on_disk(shared_node, coll) == ({"f": data}, [])


@pytest.mark.parametrize("stop_after", [0, 1, 5, 40], ids=["no-msg", "header", "few-chunks", "many-chunks"])
def test_cancelled_upload_leaves_nothing(api, shared_node, stop_after):
    coll = api.coll()
    put(coll, "old", b"old")
    g = Gate(put_msgs(coll, "new", blob(4 * MiB, 31), chunk=100_000), before=stop_after)
    g2 = Gate(put_msgs(coll, "old", blob(4 * MiB, 32), chunk=100_000), before=stop_after)
    futs = [coll.svc.PutFile.future(iter(x), timeout=T) for x in (g, g2)]
    assert g.sent.wait(10) and g2.sent.wait(10)
    time.sleep(0.3)
    for f in futs:
        f.cancel()
    for f in futs:
        with pytest.raises(grpc.FutureCancelledError):
            f.result()
    g.gate.set()
    g2.gate.set()
    wait_staging_empty(shared_node, coll)
    assert on_disk(shared_node, coll) == ({"old": b"old"}, [])
    assert tree(listing(coll)) == {"old": None}
    expect_error(C.NOT_FOUND, coll.svc.GetFile, get_req(coll, "new"))
    r = delete_collection_promptly(api, coll)
    assert r.files_deleted == 1


def test_upload_deadline_leaves_nothing(api, shared_node):
    coll = api.coll()
    g = Gate(put_msgs(coll, "slow", blob(2 * MiB, 41), chunk=100_000), before=8)
    with pytest.raises(grpc.RpcError) as ei:
        coll.svc.PutFile(iter(g), timeout=1.5)
    g.gate.set()
    assert ei.value.code() == C.DEADLINE_EXCEEDED
    wait_staging_empty(shared_node, coll)
    assert on_disk(shared_node, coll) == ({}, [])
    delete_collection_promptly(api, coll)


def test_cancelled_download_releases_the_file(api, shared_node):
    coll = api.coll()
    data = blob(16 * MiB, 51)
    put_paced(coll, "big", data)
    streams = []
    for _ in range(3):
        s = coll.svc.GetFile(get_req(coll, "big"), timeout=T)
        assert next(s).info.size_bytes == len(data)
        next(s)
        streams.append(s)
    # One cancelled right after opening, before any chunk could be read.
    s = coll.svc.GetFile(get_req(coll, "big"), timeout=T)
    streams.append(s)
    for s in streams:
        s.cancel()
    for s in streams:
        assert s.code() == grpc.StatusCode.CANCELLED
    delete_collection_promptly(api, coll)
    assert not coll_dir(shared_node, coll).exists()


def test_download_deadline_mid_stream(api):
    coll = api.coll()
    data = blob(32 * MiB, 61)
    put_paced(coll, "big", data)
    s = coll.svc.GetFile(get_req(coll, "big"), timeout=1.0)
    next(s)
    time.sleep(1.5)
    with pytest.raises(grpc.RpcError) as ei:
        for _ in s:
            pass
    assert ei.value.code() == C.DEADLINE_EXCEEDED
    delete_collection_promptly(api, coll)


# =======================================================================================
# ListFiles and DeleteFile


def test_list_files_shapes(api):
    coll = api.coll()
    assert tree(listing(coll)) == {}
    assert listing(coll).name == ""
    for p in ("a.txt", "b/c.txt", "b/d/e.bin", "b/d/f.bin", "g/h/i/j.txt", "k"):
        put(coll, p, p.encode())
    whole = {"a.txt": None, "k": None, "b": {"c.txt": None, "d": {"e.bin": None, "f.bin": None}},
             "g": {"h": {"i": {"j.txt": None}}}}
    assert tree(listing(coll)) == whole
    assert tree(listing(coll, recursive=False)) == {"a.txt": None, "k": None, "b": {}, "g": {}}
    sub = listing(coll, "b")
    assert sub.name == "b" and tree(sub) == whole["b"]
    assert tree(listing(coll, "b", recursive=False)) == {"c.txt": None, "d": {}}
    assert tree(listing(coll, "g/h")) == {"i": {"j.txt": None}}
    assert listing(coll, "g/h/i").name == "g/h/i"
    expect_error(C.NOT_FOUND, coll.svc.ListFiles,
                 cs_pb2.ListFilesRequest(namespace=coll.ns, collection_name=coll.name, path="nope"))
    expect_error(C.FAILED_PRECONDITION, coll.svc.ListFiles,
                 cs_pb2.ListFilesRequest(namespace=coll.ns, collection_name=coll.name, path="a.txt"))


def test_list_many_files(api):
    coll = api.coll()
    names = {f"many/f{i:04d}": None for i in range(300)}
    for p in names:
        put(coll, p, b"")
    assert tree(listing(coll)) == {"many": {p.split("/")[1]: None for p in names}}


def test_delete_file_counts_and_rules(api, shared_node):
    coll = api.coll()
    layout = {"a": 10, "d/b": 20, "d/e/c": 30, "d/e/f/g": 40, "x/y": 1}
    for p, n in layout.items():
        put(coll, p, blob(n))
    assert delete(coll, "a") == (1, 10)
    expect_error(C.NOT_FOUND, coll.svc.GetFile, get_req(coll, "a"))
    expect_error(C.FAILED_PRECONDITION, coll.svc.DeleteFile,
                 cs_pb2.DeleteFileRequest(namespace=coll.ns, collection_name=coll.name, path="d"),
                 mentions=("recursive",))
    assert get(coll, "d/e/f/g")[1] == blob(40)
    assert delete(coll, "d/e", recursive=True) == (2, 70)
    assert tree(listing(coll)) == {"d": {"b": None}, "x": {"y": None}}
    assert delete(coll, "d/b", recursive=True) == (1, 20)  # recursive on a file: the file
    # An empty directory still needs recursive.
    expect_error(C.FAILED_PRECONDITION, coll.svc.DeleteFile,
                 cs_pb2.DeleteFileRequest(namespace=coll.ns, collection_name=coll.name, path="d"))
    assert delete(coll, "d", recursive=True) == (0, 0)
    for p in ("a", "d", "nope/deeper", "x/y/z"):
        expect_error(C.NOT_FOUND, coll.svc.DeleteFile,
                     cs_pb2.DeleteFileRequest(namespace=coll.ns, collection_name=coll.name, path=p, recursive=True))
    assert tree(listing(coll)) == {"x": {"y": None}}
    assert on_disk(shared_node, coll) == ({"x/y": blob(1)}, [])
    r = delete_collection_promptly(api, coll)
    assert r.files_deleted == 1


# =======================================================================================
# Durability


def test_files_survive_restart(servers):
    n1 = servers.node()
    a = Api(n1)
    coll = a.coll()
    data = {"a": blob(1000, 1), "d/b": blob(3 * MiB + 7, 2), "d/e/c": b""}
    for p, d in data.items():
        put(coll, p, d, chunk=200_000)
    before = {p: get(coll, p)[0] for p in data}
    n1.stop(signal.SIGTERM)

    n2 = servers.node(data_dir=n1.data_dir)
    b = Api(n2)
    c2 = type(coll)(b, coll.ns, coll.name)
    for p, d in data.items():
        info, got, _ = get(c2, p)
        assert got == d
        assert (info.size_bytes, info.modified_at) == (before[p].size_bytes, before[p].modified_at)
    assert tree(listing(c2)) == {"a": None, "d": {"b": None, "e": {"c": None}}}
    put(c2, "after", b"restart")
    assert delete(c2, "d", recursive=True) == (2, 3 * MiB + 7)


def test_acknowledged_upload_survives_kill(servers):
    n1 = servers.node()
    a = Api(n1)
    coll = a.coll()
    data = blob(2 * MiB, 77)
    put(coll, "k", data)
    n1.stop(signal.SIGKILL)
    n2 = servers.node(data_dir=n1.data_dir)
    c2 = type(coll)(Api(n2), coll.ns, coll.name)
    assert get(c2, "k")[1] == data
    assert on_disk(n2, c2)[1] == []
