"""Workflows on real nodes: a task handler process (a grpcio server of a service built at run
time, that counts its calls and can fail, stall or loop on request), the CollectiveWorker
calls, and waits bounded in time. Used by test_workflows*.py and bench/wf_bench.py."""

import collections
import threading
import time
from concurrent import futures

import grpc
from google.protobuf import any_pb2, struct_pb2

from collector import common_pb2, worker_pb2, worker_pb2_grpc
from registry_util import INT32, STRING, Classes, Reg, field, message, method, proto_file, service

FDP_INT64 = 3  # FieldDescriptorProto.TYPE_INT64
FILE = "wf/steps.proto"
PKG = "wf"
SERVICE = "wf.Steps"
DONE = {worker_pb2.WORKFLOW_SUCCEEDED, worker_pb2.WORKFLOW_FAILED, worker_pb2.WORKFLOW_CANCELLED}


def steps_file():
    """wf/steps.proto: message Num { int64 n = 1; string tag = 2; int32 fail = 3; int32 ms = 4; }
    and service Steps, every method Num -> Num."""
    return proto_file(
        FILE, package=PKG,
        messages=[message("Num", field("n", 1, FDP_INT64), field("tag", 2, STRING),
                          field("fail", 3, INT32), field("ms", 4, INT32))],
        services=[service("Steps", *[method(m, "Num", "Num") for m in
                                      ("Inc", "Double", "Flaky", "Bad", "Slow", "Internal")])])


NUM = Classes(steps_file())["wf.Num"]


def num_any(n=0, tag="", fail=0, ms=0):
    a = any_pb2.Any()
    a.Pack(NUM(n=n, tag=tag, fail=fail, ms=ms))
    return a


def num_of(any_):
    assert any_.type_url.endswith("wf.Num"), any_.type_url
    return NUM.FromString(any_.value)


class StepsHandler:
    """wf.Steps in a grpc.server of this process. Every call is logged with the execution id
    and attempt metadata the node sends.
      Inc: n+1.  Double: 2n.  Slow: n+1 after `ms` ms (sets `cancelled` if cut short).
      Flaky: UNAVAILABLE for the first `fail` calls with the same tag, then n+1.
      Bad: INVALID_ARGUMENT.  Internal: INTERNAL."""

    def __init__(self):
        self.lock = threading.Lock()
        self.calls = []  # (method, tag, n, exec_id, attempt, start, end)
        self.by_tag = collections.Counter()
        self.cancelled = threading.Event()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
        handlers = {m: grpc.unary_unary_rpc_method_handler(
            getattr(self, m.lower()), request_deserializer=NUM.FromString,
            response_serializer=NUM.SerializeToString)
            for m in ("Inc", "Double", "Flaky", "Bad", "Slow", "Internal")}
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()
        self.endpoint = f"127.0.0.1:{self.port}"

    def stop(self):
        self.server.stop(grace=None).wait(10)

    def _log(self, name, req, ctx, start):
        md = dict(ctx.invocation_metadata())
        with self.lock:
            self.calls.append((name, req.tag, req.n, md.get("x-collector-execution-id", ""),
                               md.get("x-collector-attempt", ""), start, time.monotonic()))
            self.by_tag[(name, req.tag)] += 1
            return self.by_tag[(name, req.tag)]

    def calls_of(self, tag, name=None):
        with self.lock:
            return [c for c in self.calls if c[1] == tag and (name is None or c[0] == name)]

    def inc(self, req, ctx):
        self._log("Inc", req, ctx, time.monotonic())
        return NUM(n=req.n + 1, tag=req.tag)

    def double(self, req, ctx):
        self._log("Double", req, ctx, time.monotonic())
        return NUM(n=req.n * 2, tag=req.tag)

    def slow(self, req, ctx):
        start = time.monotonic()
        end = start + min(req.ms, 20000) / 1000
        while time.monotonic() < end:
            if not ctx.is_active():
                self.cancelled.set()
                self._log("Slow", req, ctx, start)
                return NUM()
            time.sleep(0.005)
        self._log("Slow", req, ctx, start)
        return NUM(n=req.n + 1, tag=req.tag, ms=req.ms)

    def flaky(self, req, ctx):
        k = self._log("Flaky", req, ctx, time.monotonic())
        if k <= req.fail:
            ctx.abort(grpc.StatusCode.UNAVAILABLE, f"flaky: call {k} of {req.fail} failing")
        return NUM(n=req.n + 1, tag=req.tag)

    def bad(self, req, ctx):
        self._log("Bad", req, ctx, time.monotonic())
        ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad: refused")

    def internal(self, req, ctx):
        self._log("Internal", req, ctx, time.monotonic())
        ctx.abort(grpc.StatusCode.INTERNAL, "internal: broken")


def register_steps(node, ns, endpoint=None):
    """Registers wf.Steps in ns, handled at endpoint (None: known here, served elsewhere)."""
    req = Reg.service_req(ns, steps_file().service[0], steps_file())
    if endpoint is not None:
        req.handler_endpoint = endpoint
    r = Reg(node).stub.RegisterService(req, timeout=10)
    assert r.status.code == 0, r


def worker(node):
    return worker_pb2_grpc.CollectiveWorkerStub(node.channel())


def struct(d):
    s = struct_pb2.Struct()
    s.update(d)
    return s


def task(id_, method_name, deps=(), service_name=SERVICE, config=None, retry=None, cont=""):
    t = worker_pb2.Task(id=id_, method_name=method_name, dependencies=list(deps),
                        service=common_pb2.ServiceTypeRef(service_name=service_name),
                        continuation_id=cont)
    if config is not None:
        t.input_config.CopyFrom(struct(config))
    if retry is not None:
        t.retry_policy.CopyFrom(worker_pb2.RetryPolicy(**retry))
    return t


def definition(ns, name, tasks, input_type="wf.Num", output_task=None):
    d = worker_pb2.WorkflowDefinition(namespace=ns, name=name, tasks=tasks)
    if input_type:
        d.input_type.message_name = input_type
    if output_task:
        d.metadata.labels["output_task"] = output_task
    return d


def register(node, d, timeout=10):
    return worker(node).RegisterWorkflow(worker_pb2.RegisterWorkflowRequest(workflow=d), timeout=timeout)


def start(node, ns, name, inp=None, metadata=None, timeout=10):
    req = worker_pb2.StartWorkflowRequest(namespace=ns, workflow_name=name, metadata=metadata or {})
    if inp is not None:
        req.input.CopyFrom(inp)
    return worker(node).StartWorkflow(req, timeout=timeout).workflow_id


def status(node, ns, wf_id, timeout=10):
    return worker(node).GetWorkflowStatus(
        worker_pb2.GetWorkflowStatusRequest(namespace=ns, workflow_id=wf_id), timeout=timeout).workflow


def history(node, ns, wf_id, page_size=0):
    """Every execution of the workflow, in order, following the page tokens."""
    out, token = [], ""
    for _ in range(10000):
        r = worker(node).GetWorkflowHistory(worker_pb2.GetWorkflowHistoryRequest(
            namespace=ns, workflow_id=wf_id, page_size=page_size, page_token=token), timeout=10)
        out.extend(r.executions)
        token = r.next_page_token
        if not token:
            return out
    raise AssertionError("history pages do not end")


def wait_done(node, ns, wf_id, timeout=30.0):
    """Waits for the workflow to end; returns its ActiveWorkflow."""
    end = time.monotonic() + timeout
    while True:
        w = status(node, ns, wf_id)
        if w.state in DONE:
            return w
        if time.monotonic() > end:
            raise AssertionError(f"workflow {wf_id} still {worker_pb2.WorkflowState.Name(w.state)} "
                                 f"after {timeout}s: {w}")
        time.sleep(0.02)


def code_of(fn):
    try:
        fn()
    except grpc.RpcError as e:
        return e.code(), e.details()
    return grpc.StatusCode.OK, ""
