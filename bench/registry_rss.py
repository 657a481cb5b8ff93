#!/usr/bin/python3
"""What one MiB of registered descriptors costs the node in RSS (the type pool, the kept
bytes, the ledger of field numbers, the service index), per shape of descriptor, measured
on a real node: after the registrations, and again after a restart (replay alone, without
the transient memory of the requests). The figures choose the registry quotas' defaults.

    bench/registry_rss.py [--bin build/collector] [--mib 16] [--shape fields,...]
        [--flag=--registry-max-total-bytes=...]

Shapes (each registers about --mib MiB of serialized FileDescriptorProto bytes):
  fields    messages of 400 int32 fields with short names (the worst ratio per byte)
  messages  many messages of one field each
  empty     many messages without fields
  longnames messages of 20 fields whose names are 60 characters long
  versions  one message gaining a field per version (100 versions per file)
  tiny      many files of one small message each (the cost of a file, whatever its size)
  services  services of 200 methods each, registered without a file (synthesized file)
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
os.environ.setdefault("PYGEN_DIR", str(REPO / "build" / "pygen"))
sys.path.insert(0, os.environ["PYGEN_DIR"])

import grpc  # noqa: E402
from google.protobuf import descriptor_pb2  # noqa: E402

from collector import registry_pb2, registry_pb2_grpc  # noqa: E402

FDP = descriptor_pb2.FieldDescriptorProto
MiB = 1 << 20


def fld(name, number):
    return FDP(name=name, number=number, type=FDP.TYPE_INT32, label=FDP.LABEL_OPTIONAL)


def file_of(name, messages, package="m"):
    return descriptor_pb2.FileDescriptorProto(name=name, package=package, syntax="proto3",
                                              message_type=messages)


def shape_files(shape, budget):
    """Yields (namespace, request) until about budget serialized bytes are produced."""
    total, i = 0, 0
    while total < budget:
        i += 1
        ns = f"rss{i // 100}"
        if shape == "fields":
            ms = [descriptor_pb2.DescriptorProto(name=f"M{k}", field=[fld(f"f{j}", j) for j in range(1, 401)])
                  for k in range(40)]
            fd = file_of(f"f{i}.proto", ms, package=f"p{i}")
        elif shape == "messages":
            ms = [descriptor_pb2.DescriptorProto(name=f"M{k}", field=[fld("a", 1)]) for k in range(4000)]
            fd = file_of(f"m{i}.proto", ms, package=f"p{i}")
        elif shape == "empty":
            ms = [descriptor_pb2.DescriptorProto(name=f"M{k}") for k in range(8000)]
            fd = file_of(f"e{i}.proto", ms, package=f"p{i}")
        elif shape == "longnames":
            ms = [descriptor_pb2.DescriptorProto(name=f"M{k}", field=[fld(f"{'x' * 56}{j:04d}", j) for j in range(1, 21)])
                  for k in range(200)]
            fd = file_of(f"l{i}.proto", ms, package=f"p{i}")
        elif shape == "versions":
            v = (i - 1) % 100
            base = (i - 1) // 100
            ms = [descriptor_pb2.DescriptorProto(name=f"M{k}", field=[fld(f"f{j}", j) for j in range(1, 50 + v)])
                  for k in range(20)]
            fd = file_of(f"v{base}.proto", ms, package=f"p{base}")
            ns = f"rss{base // 10}"
        elif shape == "tiny":
            fd = file_of(f"t{i}.proto", [descriptor_pb2.DescriptorProto(name="T", field=[fld("a", 1)])],
                         package=f"p{i}")
        elif shape == "services":
            sd = descriptor_pb2.ServiceDescriptorProto(
                name=f"p{i}.S", method=[descriptor_pb2.MethodDescriptorProto(
                    name=f"Method{j}", input_type=".google.protobuf.Empty",
                    output_type=".google.protobuf.Empty") for j in range(200)])
            req = registry_pb2.RegisterServiceRequest(namespace=ns, service_descriptor=sd)
            total += sd.ByteSize()
            yield ns, req
            continue
        else:
            raise SystemExit(f"unknown shape {shape}")
        total += fd.ByteSize()
        yield ns, registry_pb2.RegisterProtoRequest(namespace=ns, file_descriptor=fd)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Node:
    def __init__(self, binary, data, flags):
        self.p = subprocess.Popen([binary, "--listen", "127.0.0.1:0", "--auth", "off", "--data", data, "--threads", "1",
                                   "--log-level", "error", *flags],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for line in self.p.stdout:
            if line.startswith("listening on "):
                self.addr = line.split()[-1]
                break
        else:
            raise SystemExit("the node did not start")
        self.ch = grpc.insecure_channel(self.addr, options=[("grpc.max_send_message_length", 64 * MiB)])
        self.stub = registry_pb2_grpc.CollectorRegistryStub(self.ch)

    def rss(self):
        time.sleep(0.5)
        return rss_kib(self.p.pid)

    def stop(self):
        self.ch.close()
        self.p.send_signal(signal.SIGTERM)
        self.p.wait(30)


def measure(binary, shape, mib, flags):
    data = tempfile.mkdtemp(prefix="regrss-")
    try:
        n = Node(binary, data, flags)
        base = n.rss()
        sent = refused = 0
        for ns, req in shape_files(shape, mib * MiB):
            try:
                if isinstance(req, registry_pb2.RegisterProtoRequest):
                    n.stub.RegisterProto(req, timeout=60)
                    sent += req.file_descriptor.ByteSize()
                else:
                    n.stub.RegisterService(req, timeout=60)
                    sent += req.service_descriptor.ByteSize()
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                    raise
                refused += 1
        after = n.rss()
        n.stop()
        n = Node(binary, data, flags)
        replayed = n.rss()
        n.stop()
        # The base of the second start is the first's: the same binary, the same flags.
        per = lambda kib: (kib - base) / 1024 / (sent / MiB) if sent else float("nan")  # noqa: E731
        print(f"{shape:10s} {sent / MiB:7.2f} MiB kept  refused {refused:5d}  "
              f"RSS +{(after - base) / 1024:7.1f} MiB ({per(after):5.1f}/MiB)  "
              f"after restart +{(replayed - base) / 1024:7.1f} MiB ({per(replayed):5.1f}/MiB)", flush=True)
    finally:
        shutil.rmtree(data, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=str(REPO / "build" / "collector"))
    ap.add_argument("--mib", type=float, default=16)
    ap.add_argument("--shape", default="fields,messages,empty,longnames,versions,tiny,services")
    ap.add_argument("--flag", action="append", default=[], help="a node flag, e.g. --flag=--x=1")
    a = ap.parse_args()
    for s in a.shape.split(","):
        measure(a.bin, s, a.mib, a.flag)


if __name__ == "__main__":
    main()
