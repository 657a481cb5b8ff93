#!/usr/bin/python3
"""What checking a bearer token costs the node per call: a collector with --auth off and one
with --auth on (an admin token from --admin-token-file), taking turns, each sent the same
empty call by h2load (an unknown method, so that the call is the check and an UNIMPLEMENTED
answer). Server on core 0, h2load on core 1; server CPU per call from /proc/<pid>/stat.

Usage: bench/auth_cost.py [--build DIR] [--calls N] [--rounds R]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import LOAD_CORE, Server  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TOKEN = "col_" + "a" * 16 + "_" + "b" * 64


def h2load(port, calls, body, token):
    hdr = ["-H", f"authorization: Bearer {token}"] if token else []
    out = subprocess.run(["taskset", "-c", LOAD_CORE, "h2load", "-n", str(calls), "-c", "4",
                          "-m", "32", "-d", body, "-H", "content-type: application/grpc", "-H",
                          "te: trailers", *hdr, f"http://127.0.0.1:{port}/collector.Nope/X"],
                         capture_output=True, text=True, timeout=600).stdout
    m = re.search(r"(\d+) succeeded", out)
    if not m:
        raise RuntimeError(f"h2load: {out}")
    return int(m.group(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=str(REPO / "build-bench"))
    ap.add_argument("--calls", type=int, default=200000)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    res = {"off": [], "on": []}
    with tempfile.TemporaryDirectory() as tmp:
        body = os.path.join(tmp, "empty.grpc")
        Path(body).write_bytes(b"\0\0\0\0\0")
        tok = os.path.join(tmp, "admin.tok")
        Path(tok).write_text(TOKEN + "\n")
        for r in range(a.rounds):
            for mode in ("off", "on"):
                argv = [str(Path(a.build) / "collector"), "--listen", "127.0.0.1:0", "--data",
                        os.path.join(tmp, f"d{r}{mode}"), "--threads", "1", "--auth", mode]
                if mode == "on":
                    argv += ["--admin-token-file", tok]
                s = Server(argv)
                try:
                    token = TOKEN if mode == "on" else None
                    h2load(s.port, a.calls // 10, body, token)
                    c0 = s.cpu_seconds()
                    ok = h2load(s.port, a.calls, body, token)
                    res[mode].append((s.cpu_seconds() - c0) * 1e6 / ok)
                finally:
                    s.stop()
    off, on = statistics.median(res["off"]), statistics.median(res["on"])
    print(f"empty call, 4x32, {a.calls} calls, median of {a.rounds}: --auth off {off:.2f} us, "
          f"--auth on {on:.2f} us: the check costs {on - off:.2f} us per call "
          f"({(on - off) / off * 100:.0f}%)")


if __name__ == "__main__":
    main()
