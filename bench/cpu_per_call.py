#!/usr/bin/python3
"""Server CPU per call of one or more bench_server binaries, side by side: the measure that
holds on a shared, noisy machine where req/s does not (a change's effect on the node's own
work, A/B between two builds).

Each round starts every binary in turn (pinned to core 0), warms it with a tenth of the
calls, then sends N calls with h2load (pinned to core 1) and reads the server's user+system
time from /proc/<pid>/stat before and after. Prints the median per binary over the rounds,
with every round's figure, and the ratio to the first binary.

Usage: bench/cpu_per_call.py [--conns C] [--streams M] [--payload BYTES] [--calls N]
                             [--rounds R] BIN [BIN...]
e.g.   bench/cpu_per_call.py --conns 100 --streams 100 /tmp/old/bench_server \\
           build-bench/bench/bench_server
"""
import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import LOAD_CORE, Server  # noqa: E402
from run import simple_request  # noqa: E402


def h2load(port, conns, streams, calls, body):
    argv = ["taskset", "-c", LOAD_CORE, "h2load", "-n", str(calls), "-c", str(conns), "-m",
            str(streams), "-d", body, "-H", "content-type: application/grpc", "-H",
            "te: trailers", f"http://127.0.0.1:{port}/grpc.testing.BenchmarkService/UnaryCall"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600).stdout
    m = re.search(r"(\d+) succeeded, (\d+) failed", out)
    if not m or int(m.group(2)):
        raise RuntimeError(f"h2load: {out}")
    return int(m.group(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--conns", type=int, default=4)
    ap.add_argument("--streams", type=int, default=32)
    ap.add_argument("--payload", type=int, default=100)
    ap.add_argument("--calls", type=int, default=300000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("bins", nargs="+")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        body = str(Path(tmp) / "req.bin")
        Path(body).write_bytes(simple_request(a.payload))
        res = {b: [] for b in a.bins}
        for _ in range(a.rounds):
            for b in a.bins:
                s = Server([b, "--port", "0", "--threads", "1"])
                try:
                    h2load(s.port, a.conns, a.streams, max(a.calls // 10, 1), body)
                    c0 = s.cpu_seconds()
                    ok = h2load(s.port, a.conns, a.streams, a.calls, body)
                    res[b].append(((s.cpu_seconds() - c0) * 1e6 / ok, s.status_kib("VmHWM")))
                finally:
                    s.stop()
    first = None
    print(f"{a.conns}x{a.streams} {a.payload} B, {a.calls} calls, median of {a.rounds}")
    for b in a.bins:
        cpu = statistics.median(x[0] for x in res[b])
        first = first or cpu
        hwm = max(x[1] for x in res[b]) / 1024
        runs = ", ".join(f"{x[0]:.2f}" for x in res[b])
        print(f"  {b}: {cpu:.2f} us/call (first / this: {first / cpu:.2f}), peak RSS "
              f"{hwm:.1f} MiB [{runs}]")


if __name__ == "__main__":
    main()
