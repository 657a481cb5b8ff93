"""The mesh's cost per hop (issue 17): the same unary method (grpc.health.v1.Health/Check,
answered on the reactor, so that the hops are most of the work) called

  direct    on node B itself;
  local     through B's own Dispatch (target B: the run is a call of its own over loopback);
  via A     through Dispatch on node A, which forwards it to B's Dispatch (one hop more).

and a registered service with a handler process: grpc.testing.BenchmarkService/UnaryCall
(100 B) served by bench/bench_server, called directly on it, and through node A, where the
service is registered with bench_server as its handler (a direct call proxied by A).

Both nodes run one reactor pinned to core 0 (this machine has two cores: the load takes the
other), so the forwarding node and the target share a core, as a sidecar and its service
would. Server CPU per call is read per process from /proc/<pid>/stat. Median of --runs."""
import struct
import tempfile
import time
from pathlib import Path

from benchlib import Server, fmt, machine, median_of, run_loadgen, varint as _varint

CHECK = "/grpc.health.v1.Health/Check"
DISPATCH = "/collector.CollectiveDispatcher/Dispatch"
SHAPES = [(1, 1), (50, 10)]


def _field(num, data):
    return _varint(num << 3 | 2) + _varint(len(data)) + data


def _framed(msg):
    return struct.pack(">BI", 0, len(msg)) + msg


def dispatch_request(target):
    """DispatchRequest{service{service_name}, method_name, input: Any of an empty
    HealthCheckRequest, target_collector_id}."""
    svc = _field(2, b"grpc.health.v1.Health")
    any_ = _field(1, b"type.googleapis.com/grpc.health.v1.HealthCheckRequest")
    return _framed(_field(2, svc) + _field(3, b"Check") + _field(4, any_) +
                   _field(5, target.encode()))


def _node(build, data, node_id, *extra):
    argv = [str(Path(build) / "collector"), "--listen", "127.0.0.1:0", "--auth", "off", "--data", data,
            "--threads", "1", "--id", node_id, *extra]
    return Server(argv)


def _link(a_port, b_port, build, tmp):
    """A links to B through its Link RPC (loadgen --once sends one call and checks it)."""
    req = Path(tmp) / "link.bin"
    req.write_bytes(_framed(_field(1, f"127.0.0.1:{b_port}".encode())))
    run_loadgen(build, a_port, 1, 1, 1, ["--path", "/collector.CollectiveDispatcher/Link",
                                         "--requests", str(req), "--once"])


def _measure(build, srv, others, flags, conns, streams, seconds):
    """One run against srv; CPU per call of srv and of the others (the other node)."""
    cpu0 = {s.pid: s.cpu_seconds() for s in [srv, *others]}
    r = run_loadgen(build, srv.port, conns, streams, seconds, flags)
    calls = r["calls"] + r["rps"]  # the warm-up second is served too
    r["cpu_us_per_call"] = (srv.cpu_seconds() - cpu0[srv.pid]) * 1e6 / calls
    r["others_cpu_us_per_call"] = sum(s.cpu_seconds() - cpu0[s.pid] for s in others) * 1e6 / calls
    return r


def register_request(endpoint):
    """RegisterServiceRequest{service_descriptor{name, method{name}}, handler_endpoint}: the
    method by name only (upstream's way), forwarded as unary bytes."""
    method = _field(1, b"UnaryCall")
    sd = _field(1, b"grpc.testing.BenchmarkService") + _field(2, method)
    return _framed(_field(2, sd) + _field(4, endpoint.encode()))


def _proxied(args, tmp, out):
    """Direct on bench_server vs through node A's gateway, 100 B unary."""
    with tempfile.TemporaryDirectory() as da:
        handler = Server([str(Path(args.build) / "bench" / "bench_server"), "--port", "0",
                          "--threads", "1"])
        a = _node(args.build, da, "node-a")
        try:
            req = Path(tmp) / "register.bin"
            req.write_bytes(register_request(f"127.0.0.1:{handler.port}"))
            run_loadgen(args.build, a.port, 1, 1, 1, [
                "--path", "/collector.CollectorRegistry/RegisterService", "--requests", str(req),
                "--once"])
            for conns, streams in SHAPES:
                runs = {"handler direct": [], "proxied by A": []}
                for _ in range(args.runs):
                    for name, srv, others in (("handler direct", handler, [a]),
                                              ("proxied by A", a, [handler])):
                        runs[name].append(_measure(args.build, srv, others,
                                                   ["--payload", "100", "--mode", "unary"],
                                                   conns, streams, args.seconds))
                shape = f"{conns}x{streams}"
                out["proxied"][shape] = {k: {f: median_of(rs, f) for f in
                                             ("rps", "p50_us", "p99_us", "cpu_us_per_call",
                                              "others_cpu_us_per_call")}
                                         for k, rs in runs.items()}
                print(f"mesh proxied {shape}: {out['proxied'][shape]}", flush=True)
        finally:
            a.stop()
            handler.stop()


def run(args, tmp):
    files = {"check": Path(tmp) / "check.bin", "local": Path(tmp) / "local.bin",
             "via": Path(tmp) / "via.bin"}
    files["check"].write_bytes(_framed(b""))
    files["local"].write_bytes(dispatch_request("node-b"))
    files["via"].write_bytes(dispatch_request("node-b"))
    out = {"machine": machine(), "runs": args.runs, "seconds": args.seconds, "shapes": {},
           "proxied": {}}
    with tempfile.TemporaryDirectory() as da, tempfile.TemporaryDirectory() as db:
        b = _node(args.build, db, "node-b")
        a = _node(args.build, da, "node-a")
        try:
            _link(a.port, b.port, args.build, tmp)
            time.sleep(1.5)  # the first heartbeat
            for conns, streams in SHAPES:
                runs = {"direct": [], "local": [], "via A": []}
                for _ in range(args.runs):
                    for name, srv, other, path, req in (
                            ("direct", b, a, CHECK, files["check"]),
                            ("local", b, a, DISPATCH, files["local"]),
                            ("via A", a, b, DISPATCH, files["via"])):
                        runs[name].append(_measure(args.build, srv, [other],
                                                   ["--path", path, "--requests", str(req)],
                                                   conns, streams, args.seconds))
                name = f"{conns}x{streams}"
                out["shapes"][name] = {k: {f: median_of(rs, f) for f in
                                           ("rps", "p50_us", "p99_us", "cpu_us_per_call",
                                            "others_cpu_us_per_call")}
                                       for k, rs in runs.items()}
                print(f"mesh {name}: {out['shapes'][name]}", flush=True)
        finally:
            a.stop()
            b.stop()
    _proxied(args, tmp, out)
    return out


def docs(v):
    m = v["machine"]
    lines = ["## Mesh: the cost of a hop", "",
             "The same unary method, `grpc.health.v1.Health/Check`, called directly on node B; "
             "through B's own Dispatch (`target_collector_id` B: the run is a call of its own "
             "over loopback); and through Dispatch on node A, which forwards it to B. Both "
             "nodes `build-bench/collector --threads 1` pinned to core 0, `bench/loadgen` on "
             f"core 1; median of {v['runs']} runs of {v['seconds']} s.", "",
             f"Machine: {m['cpu']}, {m['cores']} cores; {m['date']}.", "",
             "Command: `bench/run.py --only mesh` (part of `make bench`).", "",
             "| shape | path | req/s | p50 µs | p99 µs | CPU µs/call, node called | CPU µs/call, "
             "other node |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, paths in v["shapes"].items():
        for path, r in paths.items():
            lines.append(f"| {name} | {path} | {fmt(r['rps'])} | {fmt(r['p50_us'])} | "
                         f"{fmt(r['p99_us'])} | {fmt(r['cpu_us_per_call'])} | "
                         f"{fmt(r['others_cpu_us_per_call'])} |")
    one = v["shapes"].get("1x1")
    if one:
        hop50 = one["via A"]["p50_us"] - one["local"]["p50_us"]
        hop99 = one["via A"]["p99_us"] - one["local"]["p99_us"]
        run50 = one["local"]["p50_us"] - one["direct"]["p50_us"]
        fwd = one["via A"]["cpu_us_per_call"] / one["direct"]["cpu_us_per_call"]
        lines += ["", f"At 1x1 the hop through A adds {hop50:.0f} µs at p50 and {hop99:.0f} µs "
                  f"at p99 (target: 50 and 200); a Dispatch run on the node itself adds "
                  f"{run50:.0f} µs over the direct call; forwarding costs node A "
                  f"{fwd:.2f}x the CPU of serving the call directly on B (target: 2x)."]
    if v.get("proxied"):
        lines += ["", "A registered service whose handler is another process "
                  "(`bench/bench_server`, grpc.testing.BenchmarkService/UnaryCall, 100 B): called "
                  "on the handler directly, and on node A, whose gateway forwards it (registered "
                  "in A with `handler_endpoint`).", "",
                  "| shape | path | req/s | p50 µs | p99 µs | CPU µs/call, server called | "
                  "CPU µs/call, other |", "| --- | --- | --- | --- | --- | --- | --- |"]
        for name, paths in v["proxied"].items():
            for path, r in paths.items():
                lines.append(f"| {name} | {path} | {fmt(r['rps'])} | {fmt(r['p50_us'])} | "
                             f"{fmt(r['p99_us'])} | {fmt(r['cpu_us_per_call'])} | "
                             f"{fmt(r['others_cpu_us_per_call'])} |")
        one = v["proxied"].get("1x1")
        if one:
            d, p = one["handler direct"], one["proxied by A"]
            lines += ["", f"At 1x1 the gateway adds {p['p50_us'] - d['p50_us']:.0f} µs at p50 and "
                      f"{p['p99_us'] - d['p99_us']:.0f} µs at p99; forwarding costs node A "
                      f"{p['cpu_us_per_call'] / d['cpu_us_per_call']:.2f}x the CPU the handler "
                      "spends serving the call."]
    lines += ["", "Beside a sidecar mesh: Istio publishes, for 1.13.4 (Envoy sidecars, 1000 services, "
              "70,000 requests/s mesh-wide, with its telemetry), that \"the Envoy proxy adds "
              "2.65 ms to the 90th percentile latency\" and \"uses 0.35 vCPU ... per 1000 "
              "requests per second going through the proxy\" (350 µs of CPU per request) "
              "(https://istio.io/v1.13/docs/ops/deployment/performance-and-scalability). Their "
              "load, machines and features (mTLS, telemetry) are not ours, so this is an order of "
              "magnitude, not a race: a hop through a node here is counted in tens of "
              "microseconds of latency and of CPU per call.", ""]
    return "\n".join(lines)
