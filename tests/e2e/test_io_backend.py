"""The reactors' I/O backend (`--io`, issue 20): the node starts where io_uring is refused.

tests/tools/no_uring runs the collector under a seccomp filter that refuses io_uring_setup,
io_uring_enter and io_uring_register with EPERM, as Docker's default profile does. There
`--io auto` (the default) falls back to epoll, says so once, and serves real gRPC calls;
`--io uring` refuses to start with a message naming the cause and the way out. The whole
suite also runs on epoll with COLLECTOR_IO=epoll (conftest; `make e2e`)."""

import os
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

from collections_util import Api, sr
from conftest import COLLECTOR_BIN, start_server, _finish
from stdgrpc.health.v1 import health_pb2, health_pb2_grpc

NO_URING = Path(os.environ.get("NO_URING_BIN", COLLECTOR_BIN.parent / "tests" / "tools" / "no_uring"))
FALLBACK = "io_uring is refused here"


def node_argv(data, *extra):
    return [COLLECTOR_BIN, "--listen", "127.0.0.1:0", "--data", data, "--threads", "2",
            "--auth", "off", *extra]


def exercise(sp):
    """Real calls on the node: health, a collection's writes from many threads at once, a
    response larger than the socket's buffers (partial writes), a record read back."""
    health = health_pb2_grpc.HealthStub(sp.channel())
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == \
        health_pb2.HealthCheckResponse.SERVING
    api = Api(sp)
    coll = api.coll()
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda i: coll.put(sr(i, body=f"record {i}")), range(64)))
    assert len(set(ids)) == 64
    assert {m.payload.body for m in coll.msgs()} == {f"record {i}".encode() for i in range(64)}
    big = b"x" * (3 << 20)
    i = coll.put(sr(1, body=big))
    assert coll.get_msg(i).payload.body == big


def test_auto_falls_back_to_epoll_where_io_uring_is_refused(tmp_path):
    sp = start_server([NO_URING, *node_argv(tmp_path / "d", "--io", "auto")], "collector (no io_uring)")
    try:
        exercise(sp)
        sp.wait_for_line(r"reactor\(s\) on epoll", 10, stream="stderr")
        err = sp.stderr()
        # One line, however many reactors started.
        assert err.count(FALLBACK) == 1, err
        assert "running on epoll" in err
        assert sp.stop() == 0, sp.output()
    finally:
        _finish([sp])


def test_the_default_is_auto(tmp_path):
    sp = start_server([NO_URING, *node_argv(tmp_path / "d")], "collector (no io_uring, default)",
                      add_io=False)
    try:
        health = health_pb2_grpc.HealthStub(sp.channel())
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == \
            health_pb2.HealthCheckResponse.SERVING
        sp.wait_for_line(FALLBACK, 10, stream="stderr")
    finally:
        _finish([sp])


def test_uring_where_refused_fails_with_a_clear_message(tmp_path):
    r = subprocess.run([str(a) for a in [NO_URING, *node_argv(tmp_path / "d", "--io", "uring")]],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0, r.stdout + r.stderr
    assert "cannot start a reactor: Operation not permitted" in r.stderr, r.stderr
    assert FALLBACK in r.stderr and "--io epoll" in r.stderr, r.stderr
    assert "listening on" not in r.stdout


def test_epoll_by_choice(tmp_path):
    """`--io epoll` where io_uring works: epoll all the same, without the fallback's line."""
    sp = start_server(node_argv(tmp_path / "d", "--io", "epoll"), "collector (epoll)")
    try:
        exercise(sp)
        sp.wait_for_line(r"reactor\(s\) on epoll", 10, stream="stderr")
        assert FALLBACK not in sp.stderr()
        assert sp.stop() == 0, sp.output()
    finally:
        _finish([sp])


def test_uring_by_choice(tmp_path):
    sp = start_server(node_argv(tmp_path / "d", "--io", "uring"), "collector (io_uring)")
    try:
        sp.wait_for_line(r"reactor\(s\) on io_uring", 10, stream="stderr")
        assert sp.stop(signal.SIGTERM) == 0
    finally:
        _finish([sp])


def test_bad_io_value_is_refused_at_start(tmp_path):
    r = subprocess.run([str(a) for a in node_argv(tmp_path / "d", "--io", "kqueue")],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "--io: expected auto, uring or epoll, not 'kqueue'" in r.stderr
    assert not (tmp_path / "d").exists()


def test_help_names_the_flag():
    r = subprocess.run([str(COLLECTOR_BIN), "--help"], capture_output=True, text=True, timeout=20)
    assert "--io auto|uring|epoll" in r.stdout
