"""Load smoke: 100,000 unary health checks from h2load over 50 connections complete without
an error, and the node's memory returns to its baseline afterwards."""

import re
import shutil
import struct
import subprocess
import time

import pytest

from conftest import COLLECTOR_BIN, binary_has_asan
from stdgrpc.health.v1 import health_pb2

H2LOAD = shutil.which("h2load") or "/usr/bin/h2load"
KiB = 1024


def framed(msg):
    raw = msg.SerializeToString()
    return struct.pack(">BI", 0, len(raw)) + raw


REQUEST = framed(health_pb2.HealthCheckRequest())
RESPONSE = framed(health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING))


def h2load(address, body, n, clients=50, streams=10):
    cmd = [
        H2LOAD, "-n", str(n), "-c", str(clients), "-m", str(streams), "-d", str(body),
        "-H", "content-type: application/grpc", "-H", "te: trailers",
        f"http://{address}/grpc.health.v1.Health/Check",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    req = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout",
        out,
    )
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    traffic = re.search(r"traffic: .*?\((\d+)\) total, .*?\((\d+)\) headers.*?, .*?\((\d+)\) data", out)
    assert req and codes and traffic, f"unexpected h2load output:\n{out}"
    total, started, done, ok, failed, errored, timeouts = map(int, req.groups())
    assert (total, done, ok, failed, errored, timeouts) == (n, n, n, 0, 0, 0), out
    assert int(codes.group(1)) == n, out
    # h2load counts a gRPC error (HTTP 200 + grpc-status != 0, no message) as a success;
    # every reply carrying exactly one SERVING message proves each call succeeded.
    assert int(traffic.group(3)) == n * len(RESPONSE), out
    return out


@pytest.mark.load
def test_h2load_100k_unary_calls(node, tmp_path):
    if not shutil.which(H2LOAD):
        pytest.fail("h2load (Debian nghttp2-client) is not installed")
    body = tmp_path / "check.bin"
    body.write_bytes(REQUEST)

    h2load(node.address, body, 10_000)  # warm-up: pools, arenas and buffers reach steady size
    baseline = node.rss_kib()
    out = h2load(node.address, body, 100_000)
    print(out)

    limit = baseline + max(10 * KiB, baseline // 2)
    deadline = time.monotonic() + 10
    rss = node.rss_kib()
    while rss > limit and time.monotonic() < deadline:
        time.sleep(0.1)
        rss = node.rss_kib()
    print(f"node VmRSS: baseline {baseline} KiB after warm-up, {rss} KiB after 100k calls")
    if not binary_has_asan(COLLECTOR_BIN):
        # (ASan's quarantine holds freed memory by design; leaks there are LeakSanitizer's job
        # at exit, checked by the fixture.)
        assert rss <= limit, f"VmRSS {rss} KiB did not return near the baseline {baseline} KiB"
    assert node.stop() == 0, node.output()
