"""The worker's throughput and latency (issue 19), every step durable (synchronous=FULL on
the data directory's file system):

  1-task    a workflow of one task, grpc.health.v1.Health/Check on the node itself (a
            local no-op method: the call is a call of the node's own over loopback);
  10-task   a chain of ten such tasks, each depending on the one before.

Throughput: bench/loadgen sends StartWorkflow for --seconds (after its warm-up second) at
4 connections x 16 streams; the figure is the workflows the node finished divided by the
time from the first start to the last one's end (read from the console's counts), so a
backlog the engine works off after the load stops counts against it. Steps/s are task
executions finished per second. Latency at low load: one workflow at a time, the time from
StartWorkflow's call to GetWorkflowStatus answering SUCCEEDED (polled every 0.5 ms), p50/p99
of --latency-runs workflows. The node runs one reactor pinned to core 0 (with its engine and
pool threads), the load core 1. Median of --runs."""
import statistics
import struct
import tempfile
import time
from pathlib import Path

import grpc
from google.protobuf import struct_pb2

from benchlib import Server, fmt, machine, run_loadgen, varint as _varint

START = "/collector.CollectiveWorker/StartWorkflow"
REGISTER = "/collector.CollectiveWorker/RegisterWorkflow"
STATUS = "/collector.CollectiveWorker/GetWorkflowStatus"
DISPLAY = "/collector.CollectorConsole/Display"
NS = "default"
SHAPE = (4, 16)
LATENCY_RUNS = 200


def _field(num, data):
    return _varint(num << 3 | 2) + _varint(len(data)) + data


def _framed(msg):
    return struct.pack(">BI", 0, len(msg)) + msg


def definition(name, ntasks):
    """RegisterWorkflowRequest{workflow{namespace, name, tasks: Health/Check, each after the
    one before, with an empty input_config (an empty HealthCheckRequest)}}."""
    tasks = b""
    for i in range(ntasks):
        t = (_field(1, f"t{i}".encode()) + _field(3, _field(2, b"grpc.health.v1.Health")) +
             _field(4, b"Check") + _field(7, b""))
        if i:
            t += _field(8, f"t{i - 1}".encode())
        tasks += _field(4, t)
    return _field(1, _field(2, NS.encode()) + _field(3, name.encode()) + tasks)


def start_request(name):
    return _field(1, NS.encode()) + _field(2, name.encode())


def _raw(ch, path):
    return ch.unary_unary(path, request_serializer=lambda b: b, response_deserializer=lambda b: b)


def _uvarint(b, i):
    n, shift = 0, 0
    while True:
        c = b[i]
        i += 1
        n |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return n, i


def fields(msg):
    """{field number: value} of a message's varint and length-delimited fields (last wins)."""
    out, i = {}, 0
    while i < len(msg):
        key, i = _uvarint(msg, i)
        if key & 7 == 0:
            out[key >> 3], i = _uvarint(msg, i)
        elif key & 7 == 2:
            n, i = _uvarint(msg, i)
            out[key >> 3] = msg[i:i + n]
            i += n
        else:
            raise ValueError(f"wire type {key & 7} not expected here")
    return out


def counts(ch):
    """The console's counts of workflows by state."""
    resp = _raw(ch, DISPLAY)(_varint(1 << 3) + _varint(3), timeout=10)  # display_type=WORKFLOWS
    s = struct_pb2.Struct.FromString(fields(resp)[2])  # DisplayResponse.display_data
    return {k: int(v) for k, v in s["counts"].items()}


def _throughput(args, srv, ch, name, steps, tmp):
    req = Path(tmp) / f"start-{name}.bin"
    req.write_bytes(_framed(start_request(name)))
    before = counts(ch)
    cpu0, t0 = srv.cpu_seconds(), time.monotonic()
    run_loadgen(args.build, srv.port, SHAPE[0], SHAPE[1], args.seconds,
                ["--path", START, "--requests", str(req)])
    deadline = time.monotonic() + 300
    while True:
        c = counts(ch)
        if c["RUNNING"] + c["PENDING"] == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    t1, cpu1 = time.monotonic(), srv.cpu_seconds()
    done = c["SUCCEEDED"] - before["SUCCEEDED"]
    failed = c["FAILED"] - before["FAILED"]
    return {"workflows": done, "failed": failed, "wf_per_s": done / (t1 - t0),
            "steps_per_s": done * steps / (t1 - t0),
            "cpu_us_per_wf": (cpu1 - cpu0) * 1e6 / max(done, 1)}


def _latency(ch, name, runs):
    start, status = _raw(ch, START), _raw(ch, STATUS)
    out = []
    for _ in range(runs):
        t0 = time.monotonic()
        wid = fields(start(start_request(name), timeout=10))[2]  # workflow_id
        req = _field(1, NS.encode()) + _field(2, wid)
        while True:
            wf = fields(fields(status(req, timeout=10))[2])  # GetWorkflowStatusResponse.workflow
            if wf.get(4) == 2:  # state SUCCEEDED
                break
            if time.monotonic() - t0 > 10:
                raise RuntimeError("a workflow did not finish within 10 s")
            time.sleep(0.0005)
        out.append((time.monotonic() - t0) * 1e6)
        time.sleep(0.005)
    out.sort()
    return {"p50_us": statistics.median(out), "p99_us": out[int(len(out) * 0.99) - 1]}


def run(args, tmp):
    out = {"machine": machine(), "runs": args.runs, "seconds": args.seconds, "shape": SHAPE,
           "scenarios": {}}
    with tempfile.TemporaryDirectory(dir=str(Path(args.build).resolve())) as data:
        srv = Server([str(Path(args.build) / "collector"), "--listen", "127.0.0.1:0", "--auth", "off", "--data",
                      data, "--threads", "1", "--workflow-max-active", "10000000"])
        try:
            ch = grpc.insecure_channel(f"127.0.0.1:{srv.port}")
            for name, steps in (("one", 1), ("ten", 10)):
                _raw(ch, REGISTER)(definition(name, steps), timeout=10)
                runs = [_throughput(args, srv, ch, name, steps, tmp) for _ in range(args.runs)]
                r = {k: statistics.median(x[k] for x in runs) for k in runs[0]}
                r.update(_latency(ch, name, args.latency_runs if hasattr(args, "latency_runs")
                                  else LATENCY_RUNS))
                out["scenarios"][f"{steps}-task"] = r
                print(f"workflows {steps}-task: {r}", flush=True)
            ch.close()
        finally:
            srv.stop()
    return out


def docs(v):
    m = v["machine"]
    lines = ["## Workflows: durable steps per second", "",
             "A workflow of one task and a chain of ten, each task `grpc.health.v1.Health/Check` "
             "on the node itself (a local no-op method, called over loopback as any task is). "
             "Every step is committed before it is acted on (synchronous=FULL, on the machine's "
             "ext4 disk). `build-bench/collector --threads 1` pinned to core 0 (the engine "
             "and pool threads share it), `bench/loadgen` sending StartWorkflow at "
             f"{v['shape'][0]}x{v['shape'][1]} on core 1 for {v['seconds']} s; throughput is "
             "workflows finished over the time from the first start to the last end; median of "
             f"{v['runs']} runs. Latency: one workflow at a time, StartWorkflow's call to "
             "GetWorkflowStatus answering SUCCEEDED (polled every 0.5 ms).", "",
             f"Machine: {m['cpu']}, {m['cores']} cores; {m['date']}.", "",
             "Command: `bench/run.py --only workflows` (part of `make bench`).", "",
             "| workflow | workflows/s | steps/s | node CPU µs/workflow | latency p50 µs | "
             "p99 µs |", "| --- | --- | --- | --- | --- | --- |"]
    for name, r in v["scenarios"].items():
        lines.append(f"| {name} | {fmt(r['wf_per_s'])} | {fmt(r['steps_per_s'])} | "
                     f"{fmt(r['cpu_us_per_wf'])} | {fmt(r['p50_us'])} | {fmt(r['p99_us'])} |")
    lines += ["", "Targets: 1,000 one-task workflows/s and 5,000 steps/s on one core, every step "
              "durable.", "",
              "Beside durable-execution engines that keep their state in a database, their "
              "published figures (their hardware, cluster and durability settings are not "
              "ours: an order of magnitude, not a race):", "",
              "- DBOS Transact (workflows checkpointed in Postgres): \"a single server can "
              "support a sustained throughput of 144K writes per second, or process 43K "
              "workflows per second\", on an AWS RDS db.m7i.24xlarge Postgres (96 vCPUs, "
              "384 GB, 120K provisioned IOPS) "
              "(https://www.dbos.dev/blog/benchmarking-workflow-execution-scalability-on-"
              "postgres).",
              "- Temporal (self-hosted on Kubernetes, one replica of each service, Postgres "
              "with 2 CPUs, the benchmark-workers chart's 10-activity workflows at 10 "
              "concurrent): \"state transitions reached around 1k/s on average\" in a "
              "third-party test (https://piotrmucha.blog/2025/09/12/temporal-performance-tests). "
              "Temporal's own guide to scaling a self-hosted cluster measures in state "
              "transitions per second too (https://temporal.io/blog/scaling-temporal-the-basics).",
              "", "Here one core runs the node's RPCs, the task calls (over loopback, both "
              "sides) and the engine with its SQLite commits; a step is two durable writes "
              "(the execution begun, then its result), grouped with whatever else arrived in "
              "the same commit.", ""]
    return "\n".join(lines)
