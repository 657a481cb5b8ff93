#!/usr/bin/python3
"""A bounded soak (`bench/soak.py`, or `bench/run.py --only soak`): a fixed-rate mixed load on
three collections of a real node for N minutes (10 by default), to see whether latency and
memory stay level.

The node: build-bench/collector, one reactor, pinned to core 0, on a fresh data directory.
Three collections (collector.Collection records, server_endpoint indexed), each preloaded
with PRELOAD records of ~1 KB. The load: one python3-grpcio client process per call kind,
all on core 1, each sending on a fixed schedule (open loop: a call starts at its time
whatever the previous ones are doing, up to MAX_INFLIGHT outstanding, beyond which a call is
counted as skipped), cycling over the three collections:

  Create  new records (the node makes the id), so the collections grow during the soak
  Get     a random preloaded record
  Search  full text, one word of the records' vocabulary, limit 10
  List    the first page of 20, default order
  Health  grpc.health.v1.Health/Check

Per minute: p50 and p99 of each kind (from each call's start to its answer), calls and
errors, and the node's VmRSS and VmData at the minute's end. The verdict: p99 of the last
minute within 1.5x of minute 1 for each kind, and VmRSS and VmData level after warm-up
(the last minute within LEVEL of minute 2).

Usage: bench/soak.py [--build DIR] [--minutes N] [--out DIR]
"""
import argparse
import json
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchlib import LOAD_CORE, Server, machine

REPO = Path(__file__).resolve().parents[1]
NS, TYPE, INDEXED = "soak", "collector.Collection", "server_endpoint"
COLLECTIONS = ["soak-a", "soak-b", "soak-c"]
PRELOAD = 2000  # records per collection before the soak
RATES = {"Create": 40, "Get": 100, "Search": 20, "List": 20, "Health": 20}  # calls per second
KINDS = list(RATES)
MAX_INFLIGHT = 64
VOCABULARY = 2000
P99_LIMIT = 1.5
LEVEL = 0.10  # "level": the last minute's memory within 10 % of minute 2's
SAMPLE_S = 1.0


def stubs(build):
    out = Path(build) / "pygen"
    if not (out / "collector" / "collection_server_pb2.py").exists():
        subprocess.run([str(REPO / "tests" / "gen_stubs.sh"), str(out)], check=True)
    if str(out) not in sys.path:
        sys.path.insert(0, str(out))


def vocabulary():
    rng = random.Random(7)
    words = set()
    while len(words) < VOCABULARY:
        words.add("".join(rng.choice("bcdfghjklmnprstvz") + rng.choice("aeiou")
                          for _ in range(rng.randint(2, 4))))
    return sorted(words)


def record(rng, vocab, name, i):
    from google.protobuf import any_pb2
    from collector import collection_pb2
    m = collection_pb2.Collection(namespace=NS, name=name,
                                  server_endpoint=f"host-{i % 1000:03d}.soak:50051",
                                  indexed_fields=[" ".join(rng.choices(vocab, k=16))
                                                  for _ in range(8)])
    return any_pb2.Any(type_url="type.googleapis.com/" + TYPE, value=m.SerializeToString())


def setup(port):
    """Creates the collections and preloads them; returns the preloaded ids per collection."""
    import grpc
    from collector import collection_pb2, collection_repo_pb2, collection_repo_pb2_grpc
    from collector import collection_server_pb2 as cs
    from collector import collection_server_pb2_grpc, common_pb2

    ch = grpc.insecure_channel(f"127.0.0.1:{port}")
    repo = collection_repo_pb2_grpc.CollectionRepoStub(ch)
    svc = collection_server_pb2_grpc.CollectionServiceStub(ch)
    rng, vocab = random.Random(1), vocabulary()
    ids = {}
    for coll in COLLECTIONS:
        c = collection_pb2.Collection(namespace=NS, name=coll, indexed_fields=[INDEXED])
        c.message_type.CopyFrom(common_pb2.MessageTypeRef(message_name=TYPE))
        repo.CreateCollection(collection_repo_pb2.CreateCollectionRequest(collection=c),
                              timeout=30)
        ids[coll] = [f"{coll}-{i:06d}" for i in range(PRELOAD)]
        futs = [svc.Create.future(cs.CreateRequest(namespace=NS, collection_name=coll, id=rid,
                                                   item=record(rng, vocab, rid, i)), timeout=60)
                for i, rid in enumerate(ids[coll])]
        for f in futs:
            f.result()
    ch.close()
    return ids


def requests(kind, ids, n):
    """n requests of a kind (cycled by the client): built before the clock starts."""
    from collector import collection_server_pb2 as cs
    from stdgrpc.health.v1 import health_pb2
    rng, vocab = random.Random(KINDS.index(kind)), vocabulary()
    out = []
    for i in range(n):
        coll = COLLECTIONS[i % len(COLLECTIONS)]
        if kind == "Create":
            out.append(cs.CreateRequest(namespace=NS, collection_name=coll,
                                        item=record(rng, vocab, f"new-{i}", i)))
        elif kind == "Get":
            out.append(cs.GetRequest(namespace=NS, collection_name=coll,
                                     id=rng.choice(ids[coll])))
        elif kind == "Search":
            out.append(cs.SearchRequest(namespace=NS, collection_name=coll,
                                        full_text=rng.choice(vocab), limit=10))
        elif kind == "List":
            out.append(cs.ListRequest(namespace=NS, collection_name=coll, page_size=20))
        else:
            out.append(health_pb2.HealthCheckRequest())
    return out


def client(build, port, kind, rate, ids, start_at, seconds, queue):
    """One call kind at a fixed rate; puts [(start offset s, latency µs, ok)] on the queue."""
    os.sched_setaffinity(0, {int(LOAD_CORE)})
    stubs(build)
    import grpc
    from collector import collection_server_pb2_grpc
    from stdgrpc.health.v1 import health_pb2_grpc

    reqs = requests(kind, ids, min(int(rate * seconds), 5000))
    ch = grpc.insecure_channel(f"127.0.0.1:{port}")
    if kind == "Health":
        method = health_pb2_grpc.HealthStub(ch).Check
    else:
        method = getattr(collection_server_pb2_grpc.CollectionServiceStub(ch), kind)
    grpc.channel_ready_future(ch).result(timeout=10)
    results, lock, inflight = [], threading.Lock(), [0]
    skipped = 0

    def done(fut, t0):
        lat = (time.monotonic() - t0) * 1e6
        ok = fut.exception() is None
        with lock:
            inflight[0] -= 1
            results.append((t0 - start_mono, lat, ok))

    while time.time() < start_at:
        time.sleep(0.001)
    start_mono = time.monotonic()
    total = int(rate * seconds)
    for i in range(total):
        due = start_mono + i / rate
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        with lock:
            if inflight[0] >= MAX_INFLIGHT:
                skipped += 1
                continue
            inflight[0] += 1
        t0 = time.monotonic()
        fut = method.future(reqs[i % len(reqs)], timeout=10)
        fut.add_done_callback(lambda f, t0=t0: done(f, t0))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with lock:
            if inflight[0] == 0:
                break
        time.sleep(0.05)
    ch.close()
    with lock:
        queue.put((kind, results, skipped))


def pct(vals, q):
    if not vals:
        return None
    vals = sorted(vals)
    return vals[min(len(vals) - 1, int(q * len(vals)))]


def run(args, tmp, minutes):
    build = args.build
    if getattr(args, "quick", False):  # run.py --quick: a try of the machinery, not a soak
        minutes = min(minutes, 1)
    stubs(build)
    seconds = minutes * 60
    srv = Server([str(Path(build) / "collector"), "--listen", "127.0.0.1:0", "--auth", "off",
                  "--data", str(Path(tmp) / "soak-data"), "--threads", "1", "--log-level",
                  "warn"])
    try:
        ids = setup(srv.port)
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        start_at = time.time() + 8  # the clients build their requests first
        procs = [ctx.Process(target=client, args=(build, srv.port, k, RATES[k], ids, start_at,
                                                  seconds, queue)) for k in KINDS]
        for p in procs:
            p.start()
        while time.time() < start_at:
            time.sleep(0.05)
        mem = []  # (offset s, VmRSS KiB, VmData KiB, CPU s)
        t0 = time.time()
        while time.time() - t0 < seconds:
            mem.append((time.time() - t0, srv.status_kib("VmRSS"), srv.status_kib("VmData"),
                        srv.cpu_seconds()))
            time.sleep(SAMPLE_S)
        mem.append((time.time() - t0, srv.status_kib("VmRSS"), srv.status_kib("VmData"),
                    srv.cpu_seconds()))
        got = {}
        for _ in procs:
            kind, results, skipped = queue.get(timeout=120)
            got[kind] = (results, skipped)
        for p in procs:
            p.join(30)
    finally:
        srv.stop()
    return summarize(got, mem, minutes)


def summarize(got, mem, minutes):
    rows = []
    for m in range(minutes):
        lo, hi = m * 60, (m + 1) * 60
        row = {"minute": m + 1, "kinds": {}}
        for kind in KINDS:
            results, _ = got.get(kind, ([], 0))
            lat = [r[1] for r in results if lo <= r[0] < hi and r[2]]
            err = sum(1 for r in results if lo <= r[0] < hi and not r[2])
            row["kinds"][kind] = {"calls": len(lat), "errors": err, "p50_us": pct(lat, 0.50),
                                  "p99_us": pct(lat, 0.99)}
        at_end = [s for s in mem if s[0] <= hi] or mem[:1]
        in_min = [s for s in mem if lo <= s[0] <= hi] or at_end[-1:]
        row["rss_kib"], row["vmdata_kib"] = at_end[-1][1], at_end[-1][2]
        row["cpu_pct"] = ((in_min[-1][3] - in_min[0][3]) / (in_min[-1][0] - in_min[0][0]) * 100
                          if len(in_min) > 1 and in_min[-1][0] > in_min[0][0] else None)
        rows.append(row)
    verdict = {}
    first, last = rows[0], rows[-1]
    for kind in KINDS:
        a, b = first["kinds"][kind]["p99_us"], last["kinds"][kind]["p99_us"]
        verdict[kind] = {"p99_ratio": (b / a) if a and b else None,
                         "ok": bool(a and b and b <= P99_LIMIT * a)}
    base = rows[1] if len(rows) > 1 else rows[0]
    for key in ("rss_kib", "vmdata_kib"):
        r = last[key] / base[key] if base[key] else None
        verdict[key] = {"ratio": r, "ok": r is not None and r <= 1 + LEVEL}
    return {"minutes": minutes, "rates": RATES, "preload": PRELOAD, "rows": rows,
            "skipped": {k: got.get(k, ([], 0))[1] for k in KINDS},
            "errors": {k: sum(1 for r in got.get(k, ([], 0))[0] if not r[2]) for k in KINDS},
            "verdict": verdict, "machine": machine()}


def us(v):
    return "-" if v is None else f"{v / 1000:.2f}"


def table(s):
    head = "| minute | " + " | ".join(f"{k} p50 / p99 ms" for k in KINDS) + \
        " | node CPU % | VmRSS MiB | VmData MiB |"
    lines = [head, "| --- |" + " --- |" * (len(KINDS) + 3)]
    for row in s["rows"]:
        cells = [f"{us(row['kinds'][k]['p50_us'])} / {us(row['kinds'][k]['p99_us'])}"
                 for k in KINDS]
        cpu = "-" if row["cpu_pct"] is None else f"{row['cpu_pct']:.0f}"
        lines.append(f"| {row['minute']} | " + " | ".join(cells) +
                     f" | {cpu} | {row['rss_kib'] / 1024:.1f} | {row['vmdata_kib'] / 1024:.1f} |")
    return "\n".join(lines) + "\n"


def verdict_lines(s):
    v, n = s["verdict"], s["minutes"]
    out = []
    for k in KINDS:
        r = v[k]["p99_ratio"]
        out.append(f"- {k}: p99 in minute {n} is {'-' if r is None else f'{r:.2f}x'} minute 1's "
                   f"({'within' if v[k]['ok'] else 'NOT within'} {P99_LIMIT}x)")
    for key, name in (("rss_kib", "VmRSS"), ("vmdata_kib", "VmData")):
        r = v[key]["ratio"]
        out.append(f"- {name}: minute {n} is {'-' if r is None else f'{r:.2f}x'} minute 2's "
                   f"({'level' if v[key]['ok'] else 'NOT level'}: the bound is "
                   f"{1 + LEVEL:.2f}x)")
    worst = max(((row["kinds"][k]["p99_us"] or 0, row["minute"], k) for row in s["rows"]
                 for k in KINDS), default=None)
    if worst and worst[0]:
        out.append(f"- the worst minute: {worst[1]}, {worst[2]} p99 {worst[0] / 1000:.0f} ms "
                   "(the table shows whether every kind stalled at once, as a store or machine "
                   "stall does, or one alone)")
    errs = sum(s["errors"].values())
    skipped = sum(s["skipped"].values())
    out.append(f"- errors: {errs}; calls skipped because {MAX_INFLIGHT} of a kind were "
               f"outstanding: {skipped}")
    return "\n".join(out) + "\n"


def chart(s, outdir):
    if not shutil.which("gnuplot"):
        return None
    data = Path(outdir) / "soak.dat"
    with open(data, "w") as f:
        f.write("minute " + " ".join(f'"{k} p50" "{k} p99"' for k in KINDS) +
                ' "VmRSS" "VmData"\n')
        for row in s["rows"]:
            vals = []
            for k in KINDS:
                for q in ("p50_us", "p99_us"):
                    v = row["kinds"][k][q]
                    vals.append("NaN" if v is None else f"{v / 1000:.3f}")
            f.write(f"{row['minute']} " + " ".join(vals) +
                    f" {row['rss_kib'] / 1024:.1f} {row['vmdata_kib'] / 1024:.1f}\n")
    png = Path(outdir) / "soak.png"
    n = len(KINDS)
    script = f"""
set terminal pngcairo size 1400,900 noenhanced
set output '{png}'
set multiplot layout 2,1 title 'soak: fixed-rate mixed load on one node, per minute'
set key outside right autotitle columnheader
set grid
set xlabel 'minute'
set ylabel 'latency ms (log)'
set logscale y
plot for [k=0:{n - 1}] '{data}' using 1:(column(2+2*k)) title columnhead(2+2*k) with linespoints dt 2 lc (k+1), \\
     for [k=0:{n - 1}] '{data}' using 1:(column(3+2*k)) title columnhead(3+2*k) with linespoints lw 2 lc (k+1)
unset logscale y
set ylabel 'MiB'
set yrange [0:*]
plot '{data}' using 1:{2 * n + 2} with linespoints lw 2, '' using 1:{2 * n + 3} with linespoints lw 2
unset multiplot
"""
    subprocess.run(["gnuplot"], input=script, text=True, check=True)
    return png.name


def docs(s, rel, png):
    rates = ", ".join(f"{k} {r}/s" for k, r in s["rates"].items())
    lines = [
        "## Soak: a fixed-rate mixed load that should stay level", "",
        f"One node (`build-bench/collector --threads 1`, core 0) for {s['minutes']} minutes "
        f"under {rates} (open loop, one python3-grpcio client process per kind on core 1), "
        f"cycling over three collections preloaded with {s['preload']:,} records of ~1 KB each "
        "(Create adds to them throughout: Search ranks and List pages more records as the "
        "soak goes). Latency is from each call's start to its answer, per minute of start; "
        "memory is the node's VmRSS and VmData at each minute's end. The other engineers were "
        "building and testing on this 2-core machine at the same time: single minutes are "
        f"noisy. Measured {s['machine']['date']}.", "", table(s), verdict_lines(s)]
    if png:
        lines += [f"![soak]({rel}/{png})", ""]
    lines += ["Command: `bench/soak.py --minutes N` or `bench/run.py --only soak "
              "--soak-minutes N` (part of `make bench`, 10 minutes).", ""]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=str(REPO / "build-bench"))
    ap.add_argument("--minutes", type=int, default=10)
    ap.add_argument("--out", default=str(REPO / "bench" / "results"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        s = run(args, tmp, args.minutes)
    (Path(args.out) / "soak.json").write_text(json.dumps(s, indent=2) + "\n")
    print(table(s))
    print(verdict_lines(s))
    png = chart(s, args.out)
    if png:
        print(f"chart: {Path(args.out) / png}")


if __name__ == "__main__":
    main()
