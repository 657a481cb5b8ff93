"""The cost of the registry's validation of every call (issue 5): the same unary method on
the same node binary, with validation on (default) and off (--no-validation), alternating
run by run so that the machine's drift hits both alike.

The method is grpc.health.v1.Health/Check: answered on the reactor, with no pool hand-off
and no storage, so that the check is the largest share of a call it can be."""
import tempfile
from pathlib import Path

from benchlib import Server, fmt, machine, median_of, ratio, run_loadgen

PATH = "/grpc.health.v1.Health/Check"
SHAPES = [(1, 1), (50, 10)]


def _request_file(tmp):
    path = Path(tmp) / "health_check.bin"
    path.write_bytes(b"\x00\x00\x00\x00\x00")  # one empty HealthCheckRequest, gRPC framed
    return path


def _one_run(build, requests, validation, conns, streams, seconds):
    with tempfile.TemporaryDirectory() as data:
        argv = [str(Path(build) / "collector"), "--listen", "127.0.0.1:0", "--auth", "off", "--data", data,
                "--threads", "1"] + ([] if validation else ["--no-validation"])
        srv = Server(argv)
        try:
            cpu0 = srv.cpu_seconds()
            r = run_loadgen(build, srv.port, conns, streams, seconds,
                            ["--path", PATH, "--requests", str(requests)])
            r["cpu_us_per_call"] = (srv.cpu_seconds() - cpu0) * 1e6 / (r["calls"] + r["rps"])
        finally:
            srv.stop()
    return r


def run(args, tmp):
    requests = _request_file(tmp)
    out = {"machine": machine(), "runs": args.runs, "seconds": args.seconds, "shapes": {}}
    for conns, streams in SHAPES:
        runs = {"on": [], "off": []}
        for _ in range(args.runs):
            for mode in ("on", "off"):
                runs[mode].append(_one_run(args.build, requests, mode == "on", conns, streams,
                                           args.seconds))
        name = f"{conns}x{streams}"
        out["shapes"][name] = {mode: {k: median_of(rs, k) for k in
                                      ("rps", "p50_us", "p99_us", "cpu_us_per_call")}
                               for mode, rs in runs.items()}
        print(f"validation {name}: {out['shapes'][name]}", flush=True)
    return out


def docs(v):
    m = v["machine"]
    lines = ["## Registry validation", "",
             "Every call is checked against the registry of its namespace before its handler "
             "runs (an in-memory hash lookup under a read lock). Same node binary "
             f"(`build-bench/collector --threads 1`, core 0), unary `{PATH}` from "
             "`bench/loadgen` (core 1), validation on (default) and off (`--no-validation`), "
             f"alternating; median of {v['runs']} runs of {v['seconds']} s each.", "",
             f"Machine: {m['cpu']}, {m['cores']} cores; {m['date']}.", "",
             "Command: `bench/run.py --only validation` (part of `make bench`).", "",
             "| shape | validation | req/s | p50 µs | p99 µs | server CPU µs/call |",
             "| --- | --- | --- | --- | --- | --- |"]
    ratios = []
    for name, modes in v["shapes"].items():
        for mode in ("on", "off"):
            r = modes[mode]
            lines.append(f"| {name} | {mode} | {fmt(r['rps'])} | {fmt(r['p50_us'])} | "
                         f"{fmt(r['p99_us'])} | {fmt(r['cpu_us_per_call'])} |")
        ratios.append(f"{name}: on/off req/s {ratio(modes['on']['rps'], modes['off']['rps'])}")
    lines += ["", "; ".join(ratios), ""]
    return "\n".join(lines)
