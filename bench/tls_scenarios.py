"""TLS against stock gRPC (issue 21): grpc.testing.BenchmarkService/UnaryCall, 100 B, on
this project's core (bench_server, TLS on the reactor through OpenSSL memory BIOs) and on
stock gRPC C++ (callback API, grpc::SslServerCredentials), each over TLS and in plaintext,
the same certificate (an EC P-256 key, TLS 1.3 as both negotiate), the same load
(bench/loadgen --tls: this project's client, one handshake per connection, then
reused). Server on core 0, load on core 1; median of --runs."""
import subprocess
from pathlib import Path

from benchlib import Server, fmt, machine, median_of, ratio, run_loadgen

SHAPES = [(1, 1), (50, 10)]


def make_cert(d):
    d = Path(d)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", str(d / "bench.key"), "-out", str(d / "bench.pem"), "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=30)
    return d / "bench.pem", d / "bench.key"


def servers(build, cert, key):
    b = Path(build) / "bench"
    node = [str(b / "bench_server"), "--port", "0", "--threads", "1"]
    stock = [str(b / "stock_server"), "--port", "0", "--api", "callback"]
    tls = ["--tls-cert", str(cert), "--tls-key", str(key)]
    return {"node": (node, node + tls), "stock-callback": (stock, stock + tls)}


def run(args, tmp):
    cert, key = make_cert(tmp)
    out = {"machine": machine(), "runs": args.runs, "seconds": args.seconds, "shapes": {}}
    for conns, streams in SHAPES:
        shape = f"{conns}x{streams}"
        out["shapes"][shape] = {}
        for name, (plain, tls) in servers(args.build, cert, key).items():
            for mode, argv in (("plain", plain), ("tls", tls)):
                srv = Server(argv)
                try:
                    flags = ["--payload", "100", "--mode", "unary"] + (["--tls"] if mode == "tls" else [])
                    run_loadgen(args.build, srv.port, conns, streams, 1, flags)  # warm-up
                    runs = []
                    for _ in range(args.runs):
                        cpu0 = srv.cpu_seconds()
                        r = run_loadgen(args.build, srv.port, conns, streams, args.seconds, flags)
                        r["cpu_us_per_call"] = (srv.cpu_seconds() - cpu0) * 1e6 / (r["calls"] + r["rps"])
                        runs.append(r)
                    out["shapes"][shape][f"{name} {mode}"] = {
                        k: median_of(runs, k) for k in ("rps", "p50_us", "p99_us", "cpu_us_per_call")}
                finally:
                    srv.stop()
        print(f"tls {shape}: {out['shapes'][shape]}", flush=True)
    return out


def docs(v):
    m = v["machine"]
    lines = ["## TLS", "",
             "grpc.testing.BenchmarkService/UnaryCall with 100 B, over TLS and in plaintext: this "
             "project's core (`bench_server --threads 1 --tls-cert/--tls-key`: OpenSSL through "
             "memory BIOs on the io_uring reactor) beside stock gRPC C++ 1.51 (callback API, "
             "`SslServerCredentials`), one EC P-256 certificate for both, `bench/loadgen --tls` "
             f"(connections made once, then reused). Server on core 0, load on core 1; median of "
             f"{v['runs']} runs of {v['seconds']} s.", "",
             f"Machine: {m['cpu']}, {m['cores']} cores; {m['date']}.", "",
             "Command: `bench/run.py --only tls` (part of `make bench`).", "",
             "| shape | server | req/s | p50 µs | p99 µs | server CPU µs/call |",
             "| --- | --- | --- | --- | --- | --- |"]
    notes = []
    for shape, rows in v["shapes"].items():
        for name, r in rows.items():
            lines.append(f"| {shape} | {name} | {fmt(r['rps'])} | {fmt(r['p50_us'])} | "
                         f"{fmt(r['p99_us'])} | {fmt(r['cpu_us_per_call'])} |")
        node, stock = rows.get("node tls"), rows.get("stock-callback tls")
        plain = rows.get("node plain")
        if node and stock and plain:
            notes.append(f"{shape}: node/stock over TLS {ratio(node['rps'], stock['rps'])} req/s; "
                         f"over TLS the node keeps {ratio(node['rps'], plain['rps'])} of its plaintext "
                         "req/s")
    lines += ["", "; ".join(notes), ""]
    return "\n".join(lines)
