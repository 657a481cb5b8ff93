#!/usr/bin/python3
"""Mounts the frame floods of tests/e2e/test_attacks.py against any gRPC server and prints
how many frames it took in before it cut the attacker off (GOAWAY), if it did. Used to
compare this node with stock gRPC; not part of `make test`.

  bench/attack_compare.py PATH SERVER-COMMAND...
  bench/attack_compare.py /grpc.health.v1.Health/Check build/collector --listen 127.0.0.1:0 --data /tmp/d
  bench/attack_compare.py /grpc.testing.BenchmarkService/UnaryCall build-bench/bench/stock_server --port 0 --api callback

The server must print its port on a line containing "listen".
"""

import re
import struct
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
from h2raw import H2Client  # noqa: E402
from hyperframe.frame import DataFrame, PingFrame, PriorityFrame, SettingsFrame  # noqa: E402

LIMIT = 50000


def raw_frame(ftype, flags, sid, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def flood(kind, sid, n):
    if kind == "ping":
        return [PingFrame(0, opaque_data=struct.pack(">Q", n + i)) for i in range(200)]
    if kind == "priority":
        return [PriorityFrame(sid, depends_on=0, stream_weight=15) for _ in range(200)]
    if kind == "unknown":
        return [raw_frame(0xFA, 0, 0, b"junk") for _ in range(200)]
    if kind == "settings":
        return [SettingsFrame(0) for _ in range(200)]
    return [DataFrame(sid, data=b"") for _ in range(200)]


def main():
    path, argv = sys.argv[1], sys.argv[2:]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    port, deadline = None, time.time() + 10
    while port is None and time.time() < deadline:
        line = proc.stdout.readline()
        m = re.search(r":(\d+)", line)
        if m and "listen" in line.lower():
            port = m.group(1)
    try:
        for kind in ["ping", "priority", "unknown", "settings", "empty-data"]:
            c = H2Client(f"127.0.0.1:{port}")
            c.pump(lambda: c.peer_settings, 5)
            s = c.request(path, None, end_stream=False)
            sent, t0 = 0, time.time()
            while sent < LIMIT and not c.goaways and not c.closed:
                if not c.send_frames(flood(kind, s.id, sent)):
                    break
                sent += 200
                c.pump(lambda: c.goaways or c.closed, 0.001)
            c.pump(lambda: c.goaways or c.closed, 2)
            verdict = f"GOAWAY {c.goaways[-1][1]} {c.goaways[-1][2][:40]!r}" if c.goaways else "not cut off"
            print(f"{kind:10s} frames sent {sent:6d} in {time.time() - t0:4.1f} s: {verdict}")
            c.sock.close()
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
