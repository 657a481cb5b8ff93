"""The peers part of the benchmark (`bench/run.py --only peers`): the node beside every serious
gRPC server a user may already run, and beside raw HTTP/2, on grpc.testing.BenchmarkService
UnaryCall (a SimpleRequest carrying SIZE bytes, answered by SIZE zero bytes):

  node            bench_server --threads 1 (one reactor), protobuf-c codec
  stock C++       stock_server --api callback (Debian's libgrpc++ 1.51)
  grpc-go         bench/peers/go (Debian's golang-google-grpc-dev 1.33, Go 1.19), GOMAXPROCS=1
  grpc-js         bench/peers/node (@grpc/grpc-js as tests/interop/node pins it)
  ceiling         nghttpd (nghttp2 1.52) serving the framed SimpleResponse bytes as a static
                  file, with a `grpc-status: 0` trailer: raw HTTP/2, no gRPC in it

Every server on core 0, the load on core 1. The gRPC peers are driven by bench/loadgen
(latency percentiles, every status and response size checked). The ceiling speaks no gRPC
framing of its own, so node/ceiling compares h2load against the node with the same h2load
command against nghttpd (h2load's response bytes checked against calls x expected size).

Per row every server is started once and the runs take turns (run 1 of each server, then
run 2 of each, ...), so that a neighbour's load on this shared machine falls on all of them
alike; each figure is the median of --runs runs after a warm-up of one second.
"""
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

from benchlib import (SERVER_CORE, Server, fmt, h2load_unary, median_of, ratio, run_loadgen,
                      varint)

REPO = Path(__file__).resolve().parents[1]
PATH = "/grpc.testing.BenchmarkService/UnaryCall"
KIB, MIB = 1024, 1024 * 1024
SIZES = [100, 16 * KIB, MIB]
# c x m per size. At 1 MiB, 100x100 would put 10 GiB of requests in flight: the 1 MiB rows
# keep what this machine (2 cores, shared) carries for every peer.
ROWS = {100: [(1, 1), (4, 32), (50, 10), (100, 100)],
        16 * KIB: [(1, 1), (4, 32), (50, 10), (100, 100)],
        MIB: [(1, 1), (4, 4), (8, 8)]}
PEERS = ["node", "stock C++", "grpc-go", "grpc-js"]
# nghttpd: 1 MiB stream and 16 MiB connection windows, so that flow control is not what
# bounds the ceiling at 1 MiB (it is raw HTTP/2: nothing is sent back before the request's
# end, so the window only paces the upload).
NGHTTPD_FLAGS = ["-w", "20", "-W", "24", "-m", "1024"]


def size_name(n):
    return f"{n // MIB} MiB" if n >= MIB else f"{n // KIB} KiB" if n >= KIB else f"{n} B"


def request(size):
    """A framed SimpleRequest{response_size=size, payload{body=size zeros}}."""
    inner = b"\x12" + varint(size) + b"\0" * size
    msg = b"\x10" + varint(size) + b"\x1a" + varint(len(inner)) + inner
    return struct.pack(">BI", 0, len(msg)) + msg


def response(size):
    """The framed SimpleResponse{payload{body=size zeros}} every server sends back."""
    inner = b"\x12" + varint(size) + b"\0" * size
    msg = b"\x0a" + varint(len(inner)) + inner
    return struct.pack(">BI", 0, len(msg)) + msg


def argvs(build):
    b = Path(build)
    return {
        "node": [str(b / "bench" / "bench_server"), "--port", "0", "--threads", "1"],
        "stock C++": [str(b / "bench" / "stock_server"), "--port", "0", "--api", "callback"],
        "grpc-go": ["env", "GOMAXPROCS=1", str(b / "peers" / "go_server"), "--port", "0"],
        "grpc-js": ["node", str(REPO / "bench" / "peers" / "node" / "server.js"), "--port", "0"],
    }


class Nghttpd(Server):
    """nghttpd prints nothing when ready: a free port is picked here and polled."""

    def __init__(self, docroot):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen(
            ["taskset", "-c", SERVER_CORE, "nghttpd", "--no-tls", "-a", "127.0.0.1", "-d",
             str(docroot), "--trailer", "grpc-status: 0", *NGHTTPD_FLAGS, str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.pid = self.proc.pid
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("nghttpd did not start")


def h2load(port, conns, streams, size, seconds, body):
    r = h2load_unary(port, PATH, conns, streams, seconds, body)
    ok, each = r["ok"], len(response(size))
    # The response bytes tell whether every call really got its payload. Calls cut off by
    # the end of the run may have received part of theirs (at most one per open stream).
    got, least, most = r["bytes"], ok * each, (ok + conns * streams) * each
    if r["failed"] or not least <= got <= most:
        raise RuntimeError(f"h2load: {r['failed']} failed, data {got} bytes, want {least}"
                           f" to {most}")
    return {"calls": r["done"], "rps": r["rps"]}


def measure(build, srv, tool, conns, streams, size, seconds, body):
    cpu0 = srv.cpu_seconds()
    if tool == "h2load":
        r = h2load(srv.port, conns, streams, size, seconds, body)
        calls = r["calls"]
    else:
        r = run_loadgen(build, srv.port, conns, streams, seconds,
                        ["--payload", str(size), "--mode", "unary"])
        calls = r["calls"] + r["rps"]  # the warm-up second is served too
    cpu = srv.cpu_seconds() - cpu0
    r["cpu_us_per_call"] = cpu * 1e6 / calls if calls else None
    return r


def run_row(build, conns, streams, size, runs, seconds, tmp):
    """One c x m x size row: every server started, warmed up, then the runs in turns."""
    body = Path(tmp) / f"req{size}.bin"
    body.write_bytes(request(size))
    docroot = Path(tmp) / f"htdocs{size}"
    (docroot / PATH.split("/")[1]).mkdir(parents=True, exist_ok=True)
    (docroot / PATH.lstrip("/")).write_bytes(response(size))
    # name -> (server, tool); the node twice: once per load tool, so that each peak RSS
    # is one load's.
    targets = {}
    out = {}
    try:
        for name, argv in argvs(build).items():
            targets[name] = (Server(argv), "loadgen")
        targets["node (h2load)"] = (Server(argvs(build)["node"]), "h2load")
        targets["nghttpd (h2load)"] = (Nghttpd(docroot), "h2load")
        samples = {name: [] for name in targets}
        failed = {}
        for rnd in range(runs + 1):  # round 0 is the warm-up
            for name, (srv, tool) in targets.items():
                if name in failed:
                    continue
                try:
                    r = measure(build, srv, tool, conns, streams, size,
                                1 if rnd == 0 else seconds, body)
                    if rnd:
                        samples[name].append(r)
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    print(f"peers {size_name(size)} {conns}x{streams} / {name}: {e}",
                          file=sys.stderr)
                    failed[name] = str(e)[:200]
        for name, (srv, tool) in targets.items():
            rs = samples[name]
            if name in failed or not rs:
                out[name] = {"failed": failed.get(name, "no run")}
                continue
            out[name] = {k: median_of(rs, k) for k in rs[0]}
            out[name]["peak_rss_kib"] = srv.status_kib("VmHWM")
            out[name]["rps_runs"] = [r["rps"] for r in rs]
    finally:
        for srv, _ in targets.values():
            srv.stop()
    return out


def check_answers(build):
    """Each gRPC server answers one call per size as generated protobuf code reads it: the
    Go and JS peers' hand codecs are checked against python3-grpcio and protobuf, beyond the
    status and length bench/loadgen checks on every call."""
    out = Path(build) / "pygen"
    if not (out / "stdgrpc" / "testing" / "messages_pb2.py").exists():
        subprocess.run([str(REPO / "tests" / "gen_stubs.sh"), str(out)], check=True)
    if str(out) not in sys.path:
        sys.path.insert(0, str(out))
    import grpc
    from stdgrpc.testing import messages_pb2

    for name, argv in argvs(build).items():
        srv = Server(argv)
        try:
            with grpc.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
                call = ch.unary_unary(PATH, request_serializer=messages_pb2.SimpleRequest
                                      .SerializeToString,
                                      response_deserializer=messages_pb2.SimpleResponse.FromString)
                for size in SIZES + [0]:
                    req = messages_pb2.SimpleRequest(
                        response_size=size, payload=messages_pb2.Payload(body=b"\1" * size),
                        fill_username=True)  # a field the servers skip
                    resp = call(req, timeout=30)
                    if resp.payload.body != b"\0" * size:
                        raise RuntimeError(f"{name}: {len(resp.payload.body)} bytes back for "
                                           f"response_size {size}")
        finally:
            srv.stop()


def run(args, tmp):
    if not shutil.which("nghttpd"):
        raise SystemExit("nghttpd not found: `make bench-deps` installs nghttp2-server")
    go = Path(args.build) / "peers" / "go_server"
    if not go.exists():
        raise SystemExit(f"{go} missing: `make bench` builds it")
    check_answers(args.build)
    res = []
    for size in SIZES:
        for conns, streams in ROWS[size]:
            row = run_row(args.build, conns, streams, size, args.runs, args.seconds, tmp)
            res.append({"size": size, "conns": conns, "streams": streams, "servers": row})
            print(row_line(res[-1]), flush=True)
    return {"runs": args.runs, "seconds": args.seconds, "rows": res,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def good(r):
    return bool(r) and "failed" not in r


def ratios(row):
    s = {k: v for k, v in row["servers"].items() if good(v)}
    node = s.get("node")
    peers = [s[p]["rps"] for p in PEERS[1:] if s.get(p)]
    best = ratio(node["rps"], max(peers)) if node and peers else "-"
    hn, hc = s.get("node (h2load)"), s.get("nghttpd (h2load)")
    ceil = f"{hn['rps'] / hc['rps'] * 100:.0f}%" if hn and hc else "-"
    return best, ceil


def cell(r):
    if not good(r):
        return "failed*"
    busy = r["rps"] * r["cpu_us_per_call"] / 1e4 if r.get("cpu_us_per_call") else None
    return (f"**{fmt(r['rps'])}**<br>{fmt(r['cpu_us_per_call'])} µs ({fmt(busy)} %)<br>"
            f"{fmt(r.get('p50_us'))} / {fmt(r.get('p99_us'))} µs<br>"
            f"{r['peak_rss_kib'] / 1024:.0f} MiB")


def row_line(row):
    s = row["servers"]
    best, ceil = ratios(row)
    parts = [f"{p} {fmt(s[p]['rps']) if good(s.get(p)) else 'failed'}" for p in s]
    return (f"peers {size_name(row['size'])} {row['conns']}x{row['streams']}: "
            + ", ".join(parts) + f"; node/best peer {best}, node/ceiling {ceil}")


def table(p):
    lines = ["| size | c x m | " + " | ".join(PEERS) + " | node / best peer | "
             "h2load: node / nghttpd req/s | node / ceiling |",
             "| --- | --- |" + " --- |" * (len(PEERS) + 3)]
    for row in p["rows"]:
        s = row["servers"]
        best, ceil = ratios(row)
        hn, hc = s.get("node (h2load)"), s.get("nghttpd (h2load)")
        h2 = (f"{fmt(hn['rps']) if good(hn) else 'failed*'} / "
              f"{fmt(hc['rps']) if good(hc) else 'failed*'}")
        lines.append(f"| {size_name(row['size'])} | {row['conns']}x{row['streams']} | "
                     + " | ".join(cell(s.get(n)) for n in PEERS)
                     + f" | {best} | {h2} | {ceil} |")
    fails = [f"- \\* {name} at {size_name(row['size'])} {row['conns']}x{row['streams']}: "
             f"{(r or {}).get('failed') or 'no result'}" for row in p["rows"]
             for name, r in row["servers"].items() if not good(r)]
    if fails:
        lines += ["", "Failed (left out of the ratios):", *fails]
    return "\n".join(lines) + "\n"


def chart(p, outdir):
    if not shutil.which("gnuplot"):
        return None
    names = PEERS + ["node (h2load)", "nghttpd (h2load)"]
    data = Path(outdir) / "peers_rps.dat"
    with open(data, "w") as f:
        f.write("row " + " ".join(f'"{n}"' for n in names) + "\n")
        for row in p["rows"]:
            s = row["servers"]
            vals = [str(s[n]["rps"]) if good(s.get(n)) else "NaN" for n in names]
            f.write(f'"{size_name(row["size"])} {row["conns"]}x{row["streams"]}" '
                    + " ".join(vals) + "\n")
    png = Path(outdir) / "peers_rps.png"
    script = f"""
set terminal pngcairo size 1400,600 noenhanced
set output '{png}'
set title 'UnaryCall req/s, one core: gRPC servers under bench/loadgen; node and nghttpd (raw HTTP/2) under h2load (log scale)'
set format y '%.0f'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set logscale y
set yrange [100:*]
set xtics rotate by -30
set key top right autotitle columnheader
set grid ytics
plot for [i=2:{len(names) + 1}] '{data}' using i:xtic(1)
"""
    subprocess.run(["gnuplot"], input=script, text=True, check=True)
    return png.name


def summary(p):
    """Issue 16's targets for one reactor at 100 B, read off the table, and the other sizes."""
    out = []
    for row in p["rows"]:
        s = {k: v for k, v in row["servers"].items() if good(v)}
        node, name = s.get("node"), f"{size_name(row['size'])} {row['conns']}x{row['streams']}"
        peers = {k: s[k] for k in PEERS[1:] if k in s}
        if not node or not peers:
            continue
        best = max(peers, key=lambda k: peers[k]["rps"])
        x = node["rps"] / peers[best]["rps"]
        hn, hc = s.get("node (h2load)"), s.get("nghttpd (h2load)")
        ceil = hn["rps"] / hc["rps"] if hn and hc else None
        notes = [f"{x:.2f}x the best peer ({best})"]
        if row["size"] == 100 and (row["conns"], row["streams"]) != (1, 1):
            notes.append("target 3x: " + ("met" if x >= 3 else "missed"))
        if row["size"] == 100 and (row["conns"], row["streams"]) == (1, 1):
            p50 = all(node["p50_us"] < v["p50_us"] for v in peers.values())
            notes.append("ahead of every peer in req/s and p50: "
                         + ("yes" if x > 1 and p50 else "no"))
        if ceil is not None:
            notes.append(f"{ceil * 100:.0f}% of the ceiling"
                         + (" (target 80%: " + ("met)" if ceil >= 0.8 else "missed)")
                            if row["size"] == 100 else ""))
        cpu = min(peers, key=lambda k: peers[k]["cpu_us_per_call"] or 1e18)
        if node["cpu_us_per_call"] and peers[cpu]["cpu_us_per_call"]:
            notes.append(f"CPU per call {node['cpu_us_per_call'] / peers[cpu]['cpu_us_per_call']:.2f}x"
                         f" the leanest peer's ({cpu})")
        out.append(f"- {name}: " + "; ".join(notes))
    return "\n".join(out) + "\n"


def docs(p, rel, png):
    lines = [
        "## Peers: the node beside grpc-go, grpc-js, stock C++ and raw HTTP/2", "",
        "grpc.testing.BenchmarkService UnaryCall, a request of SIZE bytes answered by SIZE "
        "zero bytes, on one core (server on core 0, load on core 1): the node "
        "(`bench_server --threads 1`, one reactor, protobuf-c), stock gRPC C++ "
        "(Debian's libgrpc++ 1.51, callback API), grpc-go (Debian's golang-google-grpc-dev "
        "1.33 on Go 1.19, `GOMAXPROCS=1`, bench/peers/go) and grpc-js (@grpc/grpc-js 1.14 on "
        "Node 20, bench/peers/node). The Go and JS peers use a codec written for the two "
        "messages that does what generated code does (copies the request's payload out, "
        "builds the response body, serializes into a new buffer).", "",
        "The ceiling is **raw HTTP/2, not gRPC**: nghttpd (nghttp2 1.52, one worker, 1 MiB "
        "stream / 16 MiB connection windows) serving the framed SimpleResponse bytes as a "
        "static file, with a `grpc-status: 0` trailer, to the same h2load command that is "
        "sent to the node (node / ceiling = h2load req/s against the node / against nghttpd, "
        "same c x m and size).", "",
        "Each cell: **req/s** (bench/loadgen), server CPU µs per call (/proc/<pid>/stat) and "
        "in brackets the share of its core the server was busy (req/s x CPU per call), "
        "p50 / p99 latency, server peak RSS (VmHWM). Where a server was busy well under "
        "100 %, the one load core was the limit (bench/loadgen or h2load, each one thread, "
        "and the machine's other users), not the server: there req/s says as much about "
        "the client's cost against each server as about the server, and CPU per call is the "
        "fairer comparison. The same holds for the ceiling: nghttpd is rarely saturated, so "
        "node / ceiling mostly compares what one h2load thread gets from each. "
        f"Median of {p['runs']} runs of {p['seconds']} s after a warm-up; per row every "
        "server runs at once and the runs take turns, so that the other load on this shared "
        f"2-core machine falls on all of them alike. Measured {p['date']} while other "
        "engineers built and tested on the same machine: the absolute figures are noisy and "
        "below a quiet machine's; read the ratios within a row, which were measured side by "
        "side.", "",
        "The 1 MiB rows stop at 8x8 (64 MiB of requests in flight): 100x100 would be 10 GiB.",
        "", table(p), "Read off the table (issue 16's targets are for 100 B):", "",
        summary(p)]
    if png:
        lines += [f"![peers req/s]({rel}/{png})", ""]
    lines += ["Command: `bench/run.py --only peers` (part of `make bench`; `--quick` for one "
              "short run).", ""]
    return "\n".join(lines)
