#!/usr/bin/python3
"""The benchmark: this project's core against stock gRPC (Debian's libgrpc++, callback and
sync APIs) on grpc.testing.BenchmarkService, side by side on this machine.

Every server runs pinned to core 0 and every load generator to core 1 (taskset). Each
figure is the median of --runs runs after a warm-up. Beside req/s and latency, the server's
CPU time per call is read from /proc/<pid>/stat before and after each run: that ratio holds
even where the load generator is the bottleneck.

Then the Collections scenarios (bench/coll_scenarios.py): CollectionService on a real node
beside the in-process limit of the same SQL.

Writes bench/results/latest.json, PNG charts (gnuplot) and docs/benchmarks.md.
Then the registry's validation cost (bench/validation_cost.py): one node, validation on and off.
Then the mesh's cost per hop (bench/mesh_scenarios.py): two linked nodes.
Then TLS beside stock gRPC's (bench/tls_scenarios.py).
Then the worker's durable workflows per second (bench/wf_scenarios.py).
Then Clone and Fetch between two nodes beside a plain TCP copy (bench/transfer_scenarios.py).
Then the peers side by side: grpc-go, grpc-js, stock C++ and nghttpd's raw HTTP/2 (bench/peers.py).
Then a bounded soak of mixed Collections load on one node (bench/soak.py).
Then Collections as they grow, 1k to 1M records (bench/coll_scale.py).

Usage: bench/run.py [--build DIR] [--runs N] [--seconds S] [--quick]
                    [--only core|collections|validation|mesh|tls|workflows|transfers|peers|soak|scale]
                    [--transfer-mib N] [--soak-minutes N] [--max-records N]
"""
import argparse
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import coll_scale
import coll_scenarios
import mesh_scenarios
import peers
import soak
import tls_scenarios
import transfer_scenarios
import validation_cost
import wf_scenarios
from benchlib import (Server, fmt, h2load_unary, machine, median_of, ratio, run_loadgen,
                      varint as _varint)

REPO = Path(__file__).resolve().parents[1]


def servers(build):
    b = Path(build) / "bench"
    return {
        "node": [str(b / "bench_server"), "--port", "0", "--threads", "1"],
        # The same core on the epoll backend (where io_uring is refused): what it costs.
        "node-epoll": [str(b / "bench_server"), "--port", "0", "--threads", "1", "--io", "epoll"],
        "stock-callback": [str(b / "stock_server"), "--port", "0", "--api", "callback"],
        # No thread quota: the sync API needs a thread per call in flight.
        "stock-sync": [str(b / "stock_server"), "--port", "0", "--api", "sync",
                       "--sync-max-threads", "0"],
    }


# name, load tool, connections, streams, payload bytes, mode
SCENARIOS = [
    ("unary 1x1 100B", "loadgen", 1, 1, 100, "unary"),
    ("unary 4x32 100B", "loadgen", 4, 32, 100, "unary"),
    ("unary 50x10 0B", "loadgen", 50, 10, 0, "unary"),
    ("unary 50x10 100B", "loadgen", 50, 10, 100, "unary"),
    ("unary 50x10 16KiB", "loadgen", 50, 10, 16384, "unary"),
    ("unary 100x100 100B", "loadgen", 100, 100, 100, "unary"),
    ("pingpong 1x1 100B", "loadgen", 1, 1, 100, "pingpong"),
    ("h2load unary 50x10 100B", "h2load", 50, 10, 100, "unary"),
    ("h2load unary 50x10 16KiB", "h2load", 50, 10, 16384, "unary"),
]
IDLE_CONNECTIONS = 10000


def simple_request(payload):
    """A framed SimpleRequest{response_size=payload, payload{body=payload zeros}}."""
    inner = b"\x12" + _varint(payload) + b"\0" * payload  # Payload.body = 2
    msg = (b"\x10" + _varint(payload) if payload else b"")  # response_size = 2
    msg += b"\x1a" + _varint(len(inner)) + inner  # payload = 3
    return struct.pack(">BI", 0, len(msg)) + msg


def response_size(payload):
    """Framed size of SimpleResponse{payload{body=payload zeros}} (what h2load must see)."""
    inner = 1 + len(_varint(payload)) + payload if payload else 0
    return 5 + 1 + len(_varint(inner)) + inner


def run_h2load(port, conns, streams, payload, seconds, tmp):
    body = Path(tmp) / f"req{payload}.bin"
    body.write_bytes(simple_request(payload))
    r = h2load_unary(port, "/grpc.testing.BenchmarkService/UnaryCall", conns, streams, seconds,
                     body)
    # The response bytes tell whether every call really got its payload.
    want = r["ok"] * response_size(payload)
    if r["failed"] or r["bytes"] != want:
        raise RuntimeError(f"h2load: {r['failed']} failed, data {r['bytes']} bytes, want {want}")
    return {"calls": r["done"], "rps": r["rps"], "p50_us": r["mean_us"] or 0, "p99_us": None,
            "p999_us": None}


def measure(build, server, scenario, seconds, tmp):
    name, tool, conns, streams, payload, mode = scenario
    cpu0 = server.cpu_seconds()
    if tool == "h2load":
        r = run_h2load(server.port, conns, streams, payload, seconds, tmp)
    else:
        r = run_loadgen(build, server.port, conns, streams, seconds,
                        ["--payload", str(payload), "--mode", mode])
    cpu = server.cpu_seconds() - cpu0
    # The loadgen's warm-up second is served too: spread CPU over every call served.
    calls = r["calls"] + (r["rps"] if tool == "loadgen" else 0)
    r["cpu_us_per_call"] = cpu * 1e6 / calls if calls else None
    r["peak_rss_kib"] = server.status_kib("VmHWM")
    return r


def idle_memory(argv, count):
    """RSS per idle HTTP/2 connection: preface + SETTINGS sent, then nothing."""
    srv = Server(argv)
    socks = []
    try:
        preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
        time.sleep(0.2)
        base = srv.status_kib("VmRSS")
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", srv.port))
            s.sendall(preface)
            socks.append(s)
        time.sleep(2.0)
        rss = srv.status_kib("VmRSS")
        return {"connections": count, "base_kib": base, "rss_kib": rss,
                "bytes_per_conn": (rss - base) * 1024 / count}
    finally:
        for s in socks:
            s.close()
        srv.stop()


def table(results, scen):
    rows = results[scen]
    stock = [k for k in rows if k.startswith("stock")]
    best_rps = max((rows[k]["rps"] for k in stock if rows[k]), default=None)
    best_cpu = min((rows[k]["cpu_us_per_call"] for k in stock if rows[k]), default=None)
    lines = [f"### {scen}", "",
             "| server | req/s | p50 µs | p99 µs | p99.9 µs | server CPU µs/call | peak RSS MiB |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for k, r in rows.items():
        if not r:
            lines.append(f"| {k} | failed | | | | | |")
            continue
        lines.append(f"| {k} | {fmt(r['rps'])} | {fmt(r['p50_us'])} | {fmt(r['p99_us'])} | "
                     f"{fmt(r['p999_us'])} | {fmt(r['cpu_us_per_call'])} | "
                     f"{r['peak_rss_kib'] / 1024:.1f} |")
    node = rows.get("node")
    if node and best_rps:
        lines.append("")
        lines.append(f"node / best stock: req/s {ratio(node['rps'], best_rps)}, "
                     f"CPU per call {ratio(node['cpu_us_per_call'], best_cpu, invert=True)} less")
    epoll = rows.get("node-epoll")
    if node and epoll:
        lines.append(f"node-epoll / node: req/s {ratio(epoll['rps'], node['rps'])}, "
                     f"CPU per call {ratio(epoll['cpu_us_per_call'], node['cpu_us_per_call'])}")
    lines.append("")
    return "\n".join(lines)


def charts(results, outdir):
    if not shutil.which("gnuplot"):
        print("gnuplot not found: no charts", file=sys.stderr)
        return []
    made = []
    for metric, title, fname in [("rps", "requests per second (higher is better)", "rps.png"),
                                 ("cpu_us_per_call", "server CPU µs per call (lower is better)",
                                  "cpu_per_call.png")]:
        data = Path(outdir) / f"{metric}.dat"
        names = list(next(iter(results.values())).keys())
        with open(data, "w") as f:
            f.write("scenario " + " ".join(names) + "\n")
            for scen, rows in results.items():
                vals = [str(rows[n][metric]) if rows.get(n) and rows[n][metric] is not None
                        else "0" for n in names]
                f.write('"' + scen + '" ' + " ".join(vals) + "\n")
        script = f"""
set terminal pngcairo size 1200,600 noenhanced
set output '{Path(outdir) / fname}'
set title '{title}'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set xtics rotate by -30
set key top right autotitle columnheader
set grid ytics
plot for [i=2:{len(names) + 1}] '{data}' using i:xtic(1)
"""
        subprocess.run(["gnuplot"], input=script, text=True, check=True)
        made.append(fname)
    return made


def run_core(args, tmp):
    srv_argv = servers(args.build)
    results = {}
    for scen in SCENARIOS:
        results[scen[0]] = {}
        for name, argv in srv_argv.items():
            srv = Server(argv)
            try:
                measure(args.build, srv, scen, 1, tmp)  # warm-up
                runs = [measure(args.build, srv, scen, args.seconds, tmp)
                        for _ in range(args.runs)]
                results[scen[0]][name] = {k: median_of(runs, k) for k in runs[0]}
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                print(f"{scen[0]} / {name}: {e}", file=sys.stderr)
                results[scen[0]][name] = None
            finally:
                srv.stop()
        print(table(results, scen[0]), flush=True)
    idle = {}
    for name, argv in srv_argv.items():
        try:
            idle[name] = idle_memory(argv, IDLE_CONNECTIONS)
        except OSError as e:
            print(f"idle / {name}: {e}", file=sys.stderr)
    print(idle_table(idle))
    return {"machine": machine(), "runs": args.runs, "seconds": args.seconds,
            "results": results, "idle": idle}


def idle_table(idle):
    lines = ["### idle connections (memory per connection)", "",
             "| server | connections | RSS before MiB | RSS after MiB | bytes per connection |",
             "| --- | --- | --- | --- | --- |"]
    for name, r in idle.items():
        lines.append(f"| {name} | {r['connections']} | {r['base_kib'] / 1024:.1f} | "
                     f"{r['rss_kib'] / 1024:.1f} | {r['bytes_per_conn']:,.0f} |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=str(REPO / "build-bench"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--quick", action="store_true", help="one run of 2 s per scenario")
    ap.add_argument("--only", choices=["core", "collections", "validation", "mesh", "tls", "workflows",
                                       "transfers", "peers", "soak", "scale"],
                    help="run one part; the others keep their figures from the last latest.json")
    ap.add_argument("--transfer-mib", type=int, default=0,
                    help="MiB moved by the transfers part (default 1024; 256 with --quick)")
    ap.add_argument("--soak-minutes", type=int, default=10, help="length of the soak part")
    ap.add_argument("--max-records", type=int, default=1_000_000,
                    help="the largest collection of the scale part (default 1,000,000)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results"))
    ap.add_argument("--docs", default=str(REPO / "docs" / "benchmarks.md"))
    args = ap.parse_args()
    if args.quick:
        args.runs, args.seconds = 1, 2
    os.makedirs(args.out, exist_ok=True)
    latest = Path(args.out) / "latest.json"
    data = json.loads(latest.read_text()) if args.only and latest.exists() else {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "core"):
            data.update(run_core(args, tmp))
        if args.only in (None, "collections"):
            data["collections"] = coll_scenarios.run(args, tmp)
            print(coll_scenarios.tables(data["collections"]), flush=True)
        if args.only in (None, "validation"):
            data["validation"] = validation_cost.run(args, tmp)
        if args.only in (None, "mesh"):
            data["mesh"] = mesh_scenarios.run(args, tmp)
        if args.only in (None, "tls"):
            data["tls"] = tls_scenarios.run(args, tmp)
        if args.only in (None, "workflows"):
            data["workflows"] = wf_scenarios.run(args, tmp)
        if args.only in (None, "transfers"):
            data["transfers"] = transfer_scenarios.run(args, tmp)
        if args.only in (None, "peers"):
            data["peers"] = peers.run(args, tmp)
        if args.only in (None, "soak"):
            data["soak"] = soak.run(args, tmp, args.soak_minutes)
        if args.only in (None, "scale"):
            data["scale"] = coll_scale.run(args, tmp)
            print(coll_scale.table(data["scale"]), flush=True)
    latest.write_text(json.dumps(data, indent=2) + "\n")
    if args.only in ("collections", "validation", "mesh", "tls", "workflows", "transfers",
                     "peers", "soak", "scale"):
        made = [c for c in ("rps.png", "cpu_per_call.png") if (Path(args.out) / c).exists()]
    else:
        made = charts(data["results"], args.out)
    write_docs(args, data, made)


def write_docs(args, data, made):
    rel = os.path.relpath(args.out, Path(args.docs).parent)
    doc = ["# Benchmarks", ""]
    if "results" in data:
        m = data["machine"]
        doc += ["This project's core against stock gRPC (Debian's libgrpc++ 1.51, callback and "
                "sync", "APIs) on grpc.testing.BenchmarkService, measured side by side by "
                "`make bench`.", "",
                f"Machine: {m['cpu']}, {m['cores']} cores, kernel {m['kernel']}; {m['date']}.",
                f"Each figure is the median of {data['runs']} runs of {data['seconds']} s after "
                "a warm-up; servers pinned to core 0 (one reactor / one core), load to core 1.", "",
                "Load: `bench/loadgen` (this project's client; checks every grpc-status; latency "
                "percentiles from its histogram) and h2load (mean latency only; its response "
                "bytes are checked against calls x expected size, since h2load counts gRPC "
                "errors as successes). Server CPU per call comes from /proc/<pid>/stat around "
                "each run.", "",
                "Commands: `make bench` (= `bench/run.py`; `bench/run.py --quick` for one short "
                "run; `--only core`, `--only collections` or `--only validation` for one part).", ""]
        for scen in data["results"]:
            doc.append(table(data["results"], scen))
        doc.append(idle_table(data["idle"]))
        for c in made:
            doc.append(f"![{c}]({rel}/{c})")
        doc.append("")
    if "collections" in data:
        doc.append(coll_scenarios.docs(data["collections"]))
    if "validation" in data:
        doc.append(validation_cost.docs(data["validation"]))
    if "mesh" in data:
        doc.append(mesh_scenarios.docs(data["mesh"]))
    if "tls" in data:
        doc.append(tls_scenarios.docs(data["tls"]))
    if "workflows" in data:
        doc.append(wf_scenarios.docs(data["workflows"]))
    if "transfers" in data:
        doc.append(transfer_scenarios.docs(data["transfers"]))
    if "peers" in data:
        doc.append(peers.docs(data["peers"], rel, peers.chart(data["peers"], args.out)))
    if "soak" in data:
        doc.append(soak.docs(data["soak"], rel, soak.chart(data["soak"], args.out)))
    if "scale" in data:
        doc.append(coll_scale.docs(data["scale"]))
    Path(args.docs).parent.mkdir(parents=True, exist_ok=True)
    Path(args.docs).write_text("\n".join(doc) + "\n")


if __name__ == "__main__":
    main()
