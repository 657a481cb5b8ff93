#!/usr/bin/python3
"""Mounts the request-level attacks of issue 13 against a `collector` binary, each on a
fresh node with default flags (two reactors), and prints one line per case: the answer
and how long it took, whether the node survived, the slowest health check meanwhile (on
another connection, from tests/e2e/health_probe.py, a process of its own) and the growth
of the node's RSS. Run it on two builds to compare them; not part of `make test`.

  bench/attack_requests.py build/collector [--only NAME-SUBSTRING] [--deadline S]

Needs the python stubs (tests/gen_stubs.sh build/pygen). The memory cases send about
2 GiB over loopback and may take a minute each.
"""

import argparse
import json
import os
import re
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYGEN = REPO / "build" / "pygen"
sys.path.insert(0, str(PYGEN))
sys.path.insert(0, str(REPO / "tests" / "e2e"))

import grpc  # noqa: E402
from google.protobuf import descriptor_pb2  # noqa: E402

from h2raw import H2Client  # noqa: E402
from wirebytes import deep_descriptor, deep_list_value, deep_struct, ld, s, vint  # noqa: E402

CS = "/collector.CollectionService/"
REPO_SVC = "/collector.CollectionRepo/"
REG = "/collector.CollectorRegistry/"
CHECK = "/grpc.health.v1.Health/Check"
MiB = 1 << 20


class Node:
    def __init__(self, binary, *flags):
        self.dir = tempfile.mkdtemp(prefix="attack-")
        self.p = subprocess.Popen([binary, "--listen", "127.0.0.1:0", "--auth", "off", "--data", self.dir,
                                   "--threads", "2", *flags],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.time() + 20
        while time.time() < deadline:
            m = re.match(r"listening on (\S+):(\d+)", self.p.stdout.readline())
            if m:
                self.address = f"{m.group(1)}:{m.group(2)}"
                break
        else:
            raise RuntimeError("the node did not start")
        self.ch = grpc.insecure_channel(self.address, options=[("grpc.enable_http_proxy", 0)])

    def rss_mib(self):
        with open(f"/proc/{self.p.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def alive(self):
        return self.p.poll() is None

    def call(self, path, body, deadline, gzip=False):
        kw = {"compression": grpc.Compression.Gzip} if gzip else {}
        t0 = time.monotonic()
        try:
            self.ch.unary_unary(path)(body, timeout=deadline, **kw)
            code, details = "OK", ""
        except grpc.RpcError as e:
            code, details = e.code().name, e.details() or ""
        return code, details, time.monotonic() - t0

    def close(self):
        self.ch.close()
        if self.alive():
            self.p.send_signal(signal.SIGKILL)
        self.p.wait()
        subprocess.run(["rm", "-rf", self.dir])


class Probe:
    def __init__(self, node):
        self.p = subprocess.Popen([sys.executable, str(REPO / "tests" / "e2e" / "health_probe.py"),
                                   node.address, str(PYGEN)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.p.stdout.readline()

    def result(self):
        try:
            out, _ = self.p.communicate(input="", timeout=60)
            return json.loads(out.strip().splitlines()[-1])
        except Exception:
            self.p.kill()
            return {"calls": 0, "max_ms": float("nan"), "failures": ["probe gave no answer"]}


def file_with(msg):
    return s(1, "a.proto") + s(2, "p") + ld(4, msg)


def repeated(prefix, field, part, size=4 * MiB - 64):
    one = ld(field, part)
    return prefix + one * ((size - len(prefix)) // len(one))


ENTRY = ld(1, s(1, "a") + ld(2, b""))

UNARY = {
    "deep List.filter (5,000 Structs, 68 KB)":
        (CS + "List", lambda: s(1, "default") + s(2, "x") + ld(3, deep_struct(5000))),
    "deep Search.filters value (8,000 lists, 55 KB)":
        (CS + "Search", lambda: s(1, "default") + s(2, "x")
         + ld(4, s(1, "k") + ld(2, vint(1, 0) + ld(2, deep_list_value(8000))))),
    "deep SearchCollections.query (5,000 Structs)":
        (REPO_SVC + "SearchCollections", lambda: s(1, "default") + ld(3, deep_struct(5000))),
    "deep RegisterProto.file_descriptor (15,000, 102 KB)":
        (REG + "RegisterProto", lambda: s(1, "default") + ld(2, file_with(deep_descriptor(15000)))),
    "deep RegisterProto.dependencies (15,000)":
        (REG + "RegisterProto", lambda: s(1, "default") + ld(2, file_with(s(1, "M")))
         + ld(3, s(1, "b.proto") + ld(4, deep_descriptor(15000)))),
    "deep RegisterService.file_descriptor (15,000)":
        (REG + "RegisterService", lambda: s(1, "default") + ld(2, s(1, "S"))
         + ld(3, file_with(deep_descriptor(15000)))),
    "repeated List.filter x60,000 (720 KB)":
        (CS + "List", lambda: s(1, "default") + s(2, "x") + ld(3, ENTRY) * 60000),
    "repeated List.filter x349,000 (4 MiB)":
        (CS + "List", lambda: repeated(s(1, "default") + s(2, "x"), 3, ENTRY)),
    "repeated CreateCollection.collection (4 MiB)":
        (REPO_SVC + "CreateCollection", lambda: repeated(b"", 1, s(4, "f"))),
    "repeated RegisterProto.file_descriptor (4 MiB)":
        (REG + "RegisterProto", lambda: repeated(s(1, "default"), 2, s(3, "d.proto"))),
    "repeated RegisterService.service_descriptor (4 MiB)":
        (REG + "RegisterService", lambda: repeated(s(1, "default"), 2, ld(2, s(1, "m")))),
    "repeated SearchCollections.query (4 MiB)":
        (REPO_SVC + "SearchCollections", lambda: repeated(s(1, "default"), 3, ENTRY)),
}


def unary_case(binary, name, path, body, deadline, gzip):
    node = Node(binary)
    try:
        rss0 = node.rss_mib()
        probe = Probe(node)
        code, details, took = node.call(path, body, deadline, gzip)
        alive = node.alive()
        health = probe.result()
        return dict(case=name + (" gzip" if gzip else ""), answer=f"{code} {details[:40]}",
                    seconds=took, alive=alive, health=health,
                    rss=(node.rss_mib() - rss0) if alive else float("nan"))
    finally:
        node.close()


def partial_messages(binary, conns=128, streams=4):
    """conns connections x streams streams, each 4 MiB declared and all but one byte sent."""
    node = Node(binary)
    try:
        rss0 = node.rss_mib()
        probe = Probe(node)
        t0 = time.monotonic()
        clients, refused, cut = [], 0, 0
        for _ in range(conns):
            try:
                c = H2Client(node.address, timeout=5)
            except OSError:
                cut += 1
                continue
            clients.append(c)
            for _ in range(streams):
                try:
                    st = c.request(CHECK, None, end_stream=False)
                    c.send_data(st.id, struct.pack(">BI", 0, 4 * MiB) + b"\0" * (4 * MiB - 1),
                                timeout=5)
                except (OSError, AssertionError):
                    break
        for c in clients:
            c.pump(lambda: c.closed, 0.05)
            refused += sum(1 for st in c.streams.values() if st.done)
            cut += 1 if (c.closed or c.goaways) else 0
        took = time.monotonic() - t0
        peak = node.rss_mib() - rss0
        for c in clients:
            c.sock.close()
        alive = node.alive()
        return dict(case=f"partial 4 MiB messages, {conns} conns x {streams} streams",
                    answer=f"{refused} streams refused, {cut} conns refused or closed",
                    seconds=took, alive=alive, health=probe.result(), rss=peak)
    finally:
        node.close()


def registry_growth(binary, files=100):
    """files RegisterProto calls, each a distinct file of ~1 MiB (long field names)."""
    node = Node(binary)
    try:
        rss0 = node.rss_mib()
        probe = Probe(node)
        ok, last, t0 = 0, "", time.monotonic()
        for i in range(files):
            f = descriptor_pb2.FileDescriptorProto(name=f"big/f{i}.proto", package=f"big{i}",
                                                   syntax="proto3")
            for m in range(64):
                msg = f.message_type.add(name=f"M{m}")
                for k in range(1, 33):
                    msg.field.add(name=f"f{k}_" + "x" * 480, number=k, type=9, label=1)
            body = s(1, "default") + ld(2, f.SerializeToString())
            code, details, _ = node.call(REG + "RegisterProto", body, 60)
            ok += code == "OK"
            last = f"{code} {details[:50]}" if code != "OK" else last
        took = time.monotonic() - t0
        grown = node.rss_mib() - rss0
        size = sum(p.stat().st_size for p in Path(node.dir).rglob("*") if p.is_file()) / MiB
        health = probe.result()
        return dict(case=f"{files} distinct 1 MiB files registered",
                    answer=f"{ok} accepted; {last}", seconds=took, alive=node.alive(),
                    health=health, rss=grown, extra=f"data dir {size:.0f} MiB")
    finally:
        node.close()


def fmt(r):
    h = r["health"]
    hs = f"{h['max_ms']:.0f} ms" + (f", {len(h['failures'])}+ failed" if h["failures"] else "")
    extra = f"; {r['extra']}" if r.get("extra") else ""
    return (f"| {r['case']} | {r['answer']} | {r['seconds']:.2f} s | "
            f"{'yes' if r['alive'] else 'NO'} | {hs} | {r['rss']:+.0f} MiB{extra} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--only", default="")
    ap.add_argument("--deadline", type=float, default=30)
    a = ap.parse_args()
    print("| case | answer | time | alive | slowest health | RSS |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, (path, body) in UNARY.items():
        for gz in (False, True):
            label = name + (" gzip" if gz else "")
            if a.only in label:
                print(fmt(unary_case(a.binary, name, path, body(), a.deadline, gz)), flush=True)
    if a.only in "partial 4 MiB messages":
        print(fmt(partial_messages(a.binary)), flush=True)
    if a.only in "distinct 1 MiB files registered":
        print(fmt(registry_growth(a.binary)), flush=True)


if __name__ == "__main__":
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    main()
