"""CollectiveWorker on a real node: definitions checked at registration, DAG order and
concurrency, data passed between tasks, the node's own methods as tasks, retries with
execution ids and attempts, failures, continuations, cancellation, idempotent starts,
listing and history pages. Task handlers are a real grpcio server (wf_util.StepsHandler)."""

import subprocess
import time

import grpc
import pytest

from collector import collection_pb2, collection_repo_pb2, collection_repo_pb2_grpc, common_pb2
from collector import worker_pb2
from wf_util import (
    SERVICE, StepsHandler, code_of, definition, history, num_any, num_of, register,
    register_steps, start, status, task, wait_done, worker,
)

NS = "wftest"
COLLECTOR = __import__("conftest").COLLECTOR_BIN
E = worker_pb2


@pytest.fixture(scope="module")
def handler():
    h = StepsHandler()
    yield h
    h.stop()


@pytest.fixture(scope="module")
def wnode(shared_node, handler):
    register_steps(shared_node, NS, handler.endpoint)
    return shared_node


def ok(node, d):
    r = register(node, d)
    assert r.status.code == 0 and r.workflow_id
    return r.workflow_id


def refused(node, d, *words):
    code, msg = code_of(lambda: register(node, d))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, msg)
    for w in words:
        assert w in msg, (w, msg)
    return msg


# ---- definitions ----

def test_bad_definitions_are_refused_naming_what_is_wrong(wnode):
    refused(wnode, definition(NS, "cyc", [task("a", "Inc", ["c"]), task("b", "Inc", ["a"]),
                                          task("c", "Inc", ["b"])]), "cycle")
    refused(wnode, definition(NS, "dep", [task("a", "Inc", ["nope"])]), "nope", "not a task")
    refused(wnode, definition(NS, "self", [task("a", "Inc", ["a"])]), "itself")
    refused(wnode, definition(NS, "dup", [task("a", "Inc"), task("a", "Double")]), "twice")
    refused(wnode, definition(NS, "meth", [task("a", "Nope")]), "no method Nope")
    refused(wnode, definition(NS, "svc", [task("a", "Inc", service_name="wf.Missing")]), "wf.Missing")
    refused(wnode, definition(NS, "typ", [task("a", "Inc")], input_type="wf.Nothing"), "wf.Nothing")
    refused(wnode, definition(NS, "ref", [task("a", "Inc", config={"n": "$.inputs.n"})]), "$.inputs.n")
    refused(wnode, definition(NS, "ref2", [task("a", "Inc"), task("b", "Inc", config={"n": "$.tasks.a.output.n"})]),
            "does not depend on")
    refused(wnode, definition(NS, "ref3", [task("a", "Inc", config={"n": "$.tasks.zz.output.n"})]), "zz")
    refused(wnode, definition(NS, "cont", [task("a", "Inc", cont="nothere")]), "nothere")
    refused(wnode, definition(NS, "types", [task("a", "Inc")], input_type="collector.GetRequest"),
            "takes wf.Num")
    refused(wnode, definition(NS, "", [task("a", "Inc")]), "name")
    refused(wnode, definition(NS, "empty", []), "1 to")
    # Streaming methods cannot be tasks.
    refused(wnode, definition(NS, "strm", [task("a", "Watch", service_name="grpc.health.v1.Health")],
                              input_type=""), "streams")
    # Nothing of the refused definitions was kept.
    names = {d.name for d in worker(wnode).ListWorkflowDefinitions(
        E.ListWorkflowDefinitionsRequest(namespace=NS), timeout=10).workflows}
    assert not names & {"cyc", "dep", "self", "dup", "meth", "svc", "typ", "ref", "cont", "types"}


def test_starts_that_cannot_run_are_refused(wnode):
    ok(wnode, definition(NS, "one", [task("a", "Inc")]))
    code, msg = code_of(lambda: start(wnode, NS, "missing", num_any(1)))
    assert code == grpc.StatusCode.NOT_FOUND and "missing" in msg
    code, msg = code_of(lambda: start(wnode, NS, "one", common_any()))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "wf.Num" in msg
    code, _ = code_of(lambda: start(wnode, "system", "one", num_any(1)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, _ = code_of(lambda: status(wnode, NS, "no-such-id"))
    assert code == grpc.StatusCode.NOT_FOUND
    # Another namespace does not see this one's workflows.
    wid = start(wnode, NS, "one", num_any(1))
    code, _ = code_of(lambda: status(wnode, "otherns", wid))
    assert code == grpc.StatusCode.NOT_FOUND


def common_any():
    from google.protobuf import any_pb2
    a = any_pb2.Any()
    a.Pack(common_pb2.MessageTypeRef(message_name="x"))
    return a


# ---- running ----

def test_a_dag_runs_in_dependency_order_with_independent_tasks_at_once(wnode, handler):
    # a -> (b, c) -> d; b and c take 300 ms each and must overlap.
    d = definition(NS, "diamond", [
        task("a", "Inc"),
        task("b", "Slow", ["a"], config={"n": "$.tasks.a.output.n", "tag": "$.input.tag", "ms": 300}),
        task("c", "Slow", ["a"], config={"n": 100, "tag": "$.input.tag", "ms": 300}),
        task("d", "Inc", ["b", "c"], config={"n": "$.tasks.b.output.n", "tag": "$.tasks.c.output.tag"}),
    ])
    ok(wnode, d)
    wid = start(wnode, NS, "diamond", num_any(5, "dag"))
    w = wait_done(wnode, NS, wid)
    assert w.state == E.WORKFLOW_SUCCEEDED, w
    # a: 5+1=6; b: 6+1=7; d: 7+1=8 with c's tag.
    out = num_of(w.current_output)
    assert (out.n, out.tag) == (8, "dag")
    calls = handler.calls_of("dag")
    starts = {c[0] + str(c[2]): (c[5], c[6]) for c in calls}
    a_end = starts["Inc5"][1]
    b, c = starts["Slow6"], starts["Slow100"]
    assert b[0] >= a_end and c[0] >= a_end
    assert b[0] < c[1] and c[0] < b[1], "b and c did not run at the same time"
    assert starts["Inc7"][0] >= max(b[1], c[1])
    # Every task has one execution, SUCCEEDED, with its own id.
    hist = history(wnode, NS, wid)
    assert sorted(x.task_id for x in hist) == ["a", "b", "c", "d"]
    assert all(x.state == E.EXECUTION_SUCCEEDED and x.attempt_number == 1 for x in hist)
    assert len({x.id for x in hist}) == 4
    assert {c[3] for c in calls} == {x.id for x in hist}
    st = {k: v for k, v in w.task_executions.items()}
    assert set(st) == {"a", "b", "c", "d"}
    assert all(v.state == E.EXECUTION_SUCCEEDED for v in st.values())


def test_the_nodes_own_methods_are_tasks(wnode):
    # As for any call in a namespace, the node's services are registered there (upstream's way).
    from google.protobuf import descriptor_pb2
    from collector import collection_server_pb2, registry_pb2
    from registry_util import Reg
    for module in (collection_repo_pb2, collection_server_pb2):
        fdp = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(fdp)
        for sd in fdp.service:
            r = Reg(wnode).stub.RegisterService(registry_pb2.RegisterServiceRequest(
                namespace=NS, service_descriptor=sd, file_descriptor=fdp), timeout=10)
            assert r.status.code == 0
    repo = collection_repo_pb2_grpc.CollectionRepoStub(wnode.channel())
    coll = collection_pb2.Collection(namespace=NS, name="wfitems")
    r = repo.CreateCollection(collection_repo_pb2.CreateCollectionRequest(collection=coll), timeout=10)
    assert r.status.code == 0
    item = {"@type": "type.googleapis.com/google.protobuf.Struct", "value": {"made": "by a workflow"}}
    d = definition(NS, "own", [
        task("put", "Create", service_name="collector.CollectionService",
             config={"namespace": NS, "collection_name": "wfitems", "id": "$.input.tag", "item": item}),
        task("get", "Get", ["put"], service_name="CollectionService",
             config={"namespace": NS, "collection_name": "wfitems", "id": "$.tasks.put.output.id"}),
    ])
    ok(wnode, d)
    wid = start(wnode, NS, "own", num_any(0, "rec-1"))
    w = wait_done(wnode, NS, wid)
    assert w.state == E.WORKFLOW_SUCCEEDED, w
    from collector import collection_server_pb2
    out = collection_server_pb2.GetResponse.FromString(w.current_output.value)
    assert w.current_output.type_url.endswith("collector.GetResponse")
    assert b"by a workflow" in out.item.value
    executors = {x.executor_id for x in history(wnode, NS, wid)}
    assert len(executors) == 1 and executors.pop()  # this node ran both


def test_retries_carry_the_execution_id_and_attempt_and_keep_every_attempt(wnode, handler):
    d = definition(NS, "flaky", [task("f", "Flaky", retry={"max_attempts": 5, "initial_delay_seconds": 0})])
    ok(wnode, d)
    wid = start(wnode, NS, "flaky", num_any(1, "flaky-1", fail=2))
    w = wait_done(wnode, NS, wid)
    assert w.state == E.WORKFLOW_SUCCEEDED, w
    hist = history(wnode, NS, wid, page_size=1)  # one per page: the tokens are followed
    assert [(x.attempt_number, x.state) for x in hist] == [
        (1, E.EXECUTION_FAILED), (2, E.EXECUTION_FAILED), (3, E.EXECUTION_SUCCEEDED)]
    assert hist[0].error.message.startswith("flaky") and hist[0].error.details["grpc_code"] == "UNAVAILABLE"
    calls = handler.calls_of("flaky-1", "Flaky")
    assert [c[4] for c in calls] == ["1", "2", "3"]
    assert [c[3] for c in calls] == [x.id for x in hist]
    assert w.task_executions["f"].attempt_number == 3


def test_a_retry_waits_its_backoff(wnode, handler):
    d = definition(NS, "backoff", [task("f", "Flaky", retry={"max_attempts": 3, "initial_delay_seconds": 1})])
    ok(wnode, d)
    wid = start(wnode, NS, "backoff", num_any(1, "backoff-1", fail=1))
    # While it waits, the task is RETRYING with its due time.
    deadline = time.monotonic() + 5
    while status(wnode, NS, wid).task_executions["f"].state != E.EXECUTION_RETRYING:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    te = status(wnode, NS, wid).task_executions["f"]
    assert "next_attempt_at_us" in te.metadata.labels
    w = wait_done(wnode, NS, wid)
    assert w.state == E.WORKFLOW_SUCCEEDED
    calls = handler.calls_of("backoff-1")
    assert calls[1][5] - calls[0][6] >= 0.75, "the retry came before its delay (1 s, -20% jitter)"


def test_failures_end_the_workflow_and_say_why(wnode, handler):
    ok(wnode, definition(NS, "bad", [task("a", "Inc"), task("b", "Bad", ["a"]), task("c", "Inc", ["b"])]))
    wid = start(wnode, NS, "bad", num_any(1, "bad-1"))
    w = wait_done(wnode, NS, wid)
    assert w.state == E.WORKFLOW_FAILED
    assert "task b" in w.metadata.labels["error"] and "INVALID_ARGUMENT" in w.metadata.labels["error"]
    assert len(handler.calls_of("bad-1", "Bad")) == 1  # not retryable
    assert w.task_executions["c"].state == E.EXECUTION_PENDING  # never ran
    # Retries exhausted.
    ok(wnode, definition(NS, "tired", [task("f", "Flaky", retry={"max_attempts": 2, "initial_delay_seconds": 0})]))
    wid = start(wnode, NS, "tired", num_any(1, "tired-1", fail=10))
    w = wait_done(wnode, NS, wid)
    assert w.state == E.WORKFLOW_FAILED and "after 2 attempt" in w.metadata.labels["error"]
    assert len(handler.calls_of("tired-1")) == 2
    # INTERNAL is retried unless the policy says otherwise.
    ok(wnode, definition(NS, "int1", [task("f", "Internal", retry={"max_attempts": 3, "initial_delay_seconds": 0})]))
    ok(wnode, definition(NS, "int2", [task("f", "Internal", retry={"max_attempts": 3, "initial_delay_seconds": 0,
                                                                   "do_not_retry_internal": True})]))
    w1 = wait_done(wnode, NS, start(wnode, NS, "int1", num_any(1, "int-1")))
    w2 = wait_done(wnode, NS, start(wnode, NS, "int2", num_any(1, "int-2")))
    assert w1.state == w2.state == E.WORKFLOW_FAILED
    assert (len(handler.calls_of("int-1")), len(handler.calls_of("int-2"))) == (3, 1)


def test_a_failing_task_cancels_the_others_in_flight(wnode, handler):
    handler.cancelled.clear()
    ok(wnode, definition(NS, "halt", [
        task("slow", "Slow", config={"ms": 5000, "tag": "halt"}),
        task("bad", "Bad", config={"tag": "halt"})]))
    wid = start(wnode, NS, "halt", num_any(0, "halt"))
    w = wait_done(wnode, NS, wid, timeout=4)
    assert w.state == E.WORKFLOW_FAILED
    assert w.task_executions["slow"].state == E.EXECUTION_CANCELLED
    assert handler.cancelled.wait(4), "the slow call was not cancelled"


def test_continuations_loop_while_their_condition_holds(wnode, handler):
    cont = E.Continuation(id="count-up", namespace=NS, method_name="Inc",
                          service=common_pb2.ServiceTypeRef(service_name=SERVICE), max_iterations=50)
    cont.loop_condition.update({"n": {"operator": "OP_LESS_THAN", "value": 5}})
    r = worker(wnode).RegisterContinuation(E.RegisterContinuationRequest(continuation=cont), timeout=10)
    assert r.status.code == 0 and r.continuation_id == "count-up"
    ok(wnode, definition(NS, "loop", [task("l", "Inc", cont="count-up")]))
    w = wait_done(wnode, NS, start(wnode, NS, "loop", num_any(0, "loop-1")))
    assert w.state == E.WORKFLOW_SUCCEEDED and num_of(w.current_output).n == 5
    assert len(handler.calls_of("loop-1", "Inc")) == 5
    # Capped by max_iterations.
    capped = E.Continuation(id="forever", namespace=NS, method_name="Inc",
                            service=common_pb2.ServiceTypeRef(service_name=SERVICE), max_iterations=3)
    capped.loop_condition.update({"tag": "loop-2"})
    worker(wnode).RegisterContinuation(E.RegisterContinuationRequest(continuation=capped), timeout=10)
    ok(wnode, definition(NS, "loop2", [task("l", "Inc", cont="forever")]))
    wid = start(wnode, NS, "loop2", num_any(0, "loop-2"))
    w = wait_done(wnode, NS, wid)
    assert num_of(w.current_output).n == 4  # the task's call, then 3 iterations
    hist = history(wnode, NS, wid)
    assert [x.metadata.labels["iteration"] for x in hist] == ["0", "1", "2", "3"]
    # A malformed condition is refused at registration.
    bad = E.Continuation(id="badcond", namespace=NS, method_name="Inc",
                         service=common_pb2.ServiceTypeRef(service_name=SERVICE))
    bad.loop_condition.update({"n": {"operator": "SOMETIMES", "value": 1}})
    code, msg = code_of(lambda: worker(wnode).RegisterContinuation(
        E.RegisterContinuationRequest(continuation=bad), timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "operator" in msg


def test_cancel_stops_the_calls_in_flight(wnode, handler):
    handler.cancelled.clear()
    ok(wnode, definition(NS, "long", [task("s", "Slow", config={"ms": 10000, "tag": "long"})]))
    wid = start(wnode, NS, "long", num_any(0, "long"))
    deadline = time.monotonic() + 5
    while not handler.calls_of("long") and not _running(wnode, wid):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    r = worker(wnode).CancelWorkflow(E.CancelWorkflowRequest(namespace=NS, workflow_id=wid, reason="enough"),
                                     timeout=10)
    assert r.state == E.WORKFLOW_CANCELLED
    assert handler.cancelled.wait(5)
    w = status(wnode, NS, wid)
    assert w.state == E.WORKFLOW_CANCELLED and "enough" in w.metadata.labels["error"]
    assert w.task_executions["s"].state == E.EXECUTION_CANCELLED
    assert history(wnode, NS, wid)[-1].state == E.EXECUTION_CANCELLED
    code, _ = code_of(lambda: worker(wnode).CancelWorkflow(
        E.CancelWorkflowRequest(namespace=NS, workflow_id=wid), timeout=10))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    code, _ = code_of(lambda: worker(wnode).CancelWorkflow(
        E.CancelWorkflowRequest(namespace=NS, workflow_id="nope"), timeout=10))
    assert code == grpc.StatusCode.NOT_FOUND


def _running(node, wid):
    return status(node, NS, wid).task_executions["s"].state == E.EXECUTION_RUNNING


def test_a_start_with_an_idempotency_key_happens_once(wnode, handler):
    ok(wnode, definition(NS, "idem", [task("a", "Inc")]))
    ids = {start(wnode, NS, "idem", num_any(1, "idem-1"), {"idempotency_key": "k-1"}) for _ in range(5)}
    assert len(ids) == 1
    wait_done(wnode, NS, ids.pop())
    assert len(handler.calls_of("idem-1")) == 1
    other = start(wnode, NS, "idem", num_any(1, "idem-2"), {"idempotency_key": "k-2"})
    wait_done(wnode, NS, other)


def test_workflows_are_listed_newest_first_by_state_in_pages(wnode):
    ok(wnode, definition(NS, "listed", [task("a", "Inc")]))
    ids = [start(wnode, NS, "listed", num_any(i, "list")) for i in range(7)]
    for i in ids:
        wait_done(wnode, NS, i)
    seen, token = [], ""
    for _ in range(100):
        r = worker(wnode).ListWorkflows(E.ListWorkflowsRequest(namespace=NS, page_size=3, page_token=token,
                                                                states=[E.WORKFLOW_SUCCEEDED]), timeout=10)
        seen += [w.id for w in r.workflows if w.metadata.labels["workflow_name"] == "listed"]
        assert all(w.state == E.WORKFLOW_SUCCEEDED for w in r.workflows)
        token = r.next_page_token
        if not token:
            break
    assert seen == ids[::-1]
    r = worker(wnode).ListWorkflows(E.ListWorkflowsRequest(namespace=NS, states=[E.WORKFLOW_CANCELLED]), timeout=10)
    assert all(w.state == E.WORKFLOW_CANCELLED for w in r.workflows)
    code, _ = code_of(lambda: worker(wnode).ListWorkflows(E.ListWorkflowsRequest(namespace=NS, page_token="zz"),
                                                          timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def test_caps_refuse_with_resource_exhausted_and_start_nothing(servers, handler):
    node = servers.node("--workflow-max-active", "2", "--workflow-max-tasks", "3",
                        "--workflow-max-history", "4")
    register_steps(node, NS, handler.endpoint)
    refused(node, definition(NS, "big", [task(f"t{i}", "Inc") for i in range(4)]), "1 to 3")
    ok(node, definition(NS, "hold", [task("s", "Slow", config={"ms": 3000, "tag": "cap"})]))
    a = start(node, NS, "hold", num_any(0, "cap"))
    b = start(node, NS, "hold", num_any(0, "cap"))
    code, msg = code_of(lambda: start(node, NS, "hold", num_any(0, "cap")))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "workflow-max-active" in msg
    r = worker(node).ListWorkflows(E.ListWorkflowsRequest(namespace=NS), timeout=10)
    assert sorted(w.id for w in r.workflows) == sorted([a, b])
    for w in (a, b):
        assert wait_done(node, NS, w).state == E.WORKFLOW_SUCCEEDED
    start(node, NS, "hold", num_any(0, "cap"))  # room again
    # A workflow that would keep more executions than --workflow-max-history fails saying so.
    cont = E.Continuation(id="long-loop", namespace=NS, method_name="Inc",
                          service=common_pb2.ServiceTypeRef(service_name=SERVICE), max_iterations=100)
    cont.loop_condition.update({"tag": "hist"})
    worker(node).RegisterContinuation(E.RegisterContinuationRequest(continuation=cont), timeout=10)
    ok(node, definition(NS, "longloop", [task("l", "Inc", cont="long-loop")]))
    wid = start(node, NS, "longloop", num_any(0, "hist"))
    w = wait_done(node, NS, wid)
    assert w.state == E.WORKFLOW_FAILED and "workflow-max-history" in w.metadata.labels["error"]
    assert len(history(node, NS, wid)) == 4


def test_the_console_shows_and_resets_workflows(servers, handler):
    from google.protobuf import json_format
    from collector import console_pb2, console_pb2_grpc
    node = servers.node("--admin")
    register_steps(node, NS, handler.endpoint)
    ok(node, definition(NS, "shown", [task("a", "Inc"), task("b", "Double", ["a"])]))
    ok(node, definition(NS, "held", [task("s", "Slow", config={"ms": 10000, "tag": "held"})]))
    done = wait_done(node, NS, start(node, NS, "shown", num_any(1, "shown")))
    held = start(node, NS, "held", num_any(0, "held"))
    console = console_pb2_grpc.CollectorConsoleStub(node.channel())
    D = console_pb2.DisplayRequest
    r = console.Display(D(display_type=D.WORKFLOWS, namespace=NS), timeout=10)
    data = json_format.MessageToDict(r.display_data)
    assert data["counts"]["SUCCEEDED"] == 1 and data["counts"]["RUNNING"] == 1
    assert {w["id"] for w in data["workflows"]} == {done.id, held}
    shown = [d for d in data["definitions"] if d["name"] == "shown"][0]
    assert [t["id"] for t in shown["tasks"]] == ["a", "b"] and shown["tasks"][1]["dependencies"] == ["a"]
    assert "1 running" in r.summary and "1 succeeded" in r.summary
    r = console.Display(D(display_type=D.EXECUTIONS, namespace=NS), timeout=10)
    data = json_format.MessageToDict(r.display_data)
    assert [x["task_id"] for x in data["executions"]][:3] == ["s", "b", "a"]
    # Reset EXECUTIONS keeps the running workflow's history; WORKFLOWS cancels and deletes.
    R = console_pb2.ResetRequest
    r = console.Reset(R(scope=R.EXECUTIONS, namespace=NS, confirm=True), timeout=10)
    assert dict(r.deleted_counts) == {"executions": 2}
    assert history(node, NS, done.id) == [] and len(history(node, NS, held)) == 1
    handler.cancelled.clear()
    r = console.Reset(R(scope=R.WORKFLOWS, namespace=NS, confirm=True), timeout=10)
    assert dict(r.deleted_counts) == {"workflows": 2, "executions": 1}
    assert handler.cancelled.wait(5), "the running workflow's call was not cancelled"
    assert code_of(lambda: status(node, NS, held))[0] == grpc.StatusCode.NOT_FOUND
    # The definitions stay: the workflow starts again.
    wait_done(node, NS, start(node, NS, "shown", num_any(1, "shown-2")))


@pytest.mark.parametrize("auth", ["off", "on"])
def test_the_readme_example_runs_as_written(servers, auth):
    """README.md's worked example: its Python block, run as a user would (from the
    repository's root), against a real node instead of `make run`'s port."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text()
    code = readme.split("<!-- workflow-example -->", 1)[1].split("```python\n")[1].split("\n```\n")[0]
    assert "127.0.0.1:50051" in code
    node = servers.node("--auth", auth)
    code = code.replace("127.0.0.1:50051", node.address)
    env = dict(os.environ)
    env.pop("COLLECTOR_TOKEN", None)
    if auth == "on":  # the first admin token, as make run prints it
        env["COLLECTOR_TOKEN"] = (Path(node.data_dir) / "system" / "admin-token").read_text().strip()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYGEN_DIR", ""), env.get("PYTHONPATH", "")) if p)
    r = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("WORKFLOW_SUCCEEDED") and "GetResponse" in lines[0], r.stdout
    assert [ln.split()[:3] for ln in lines[-2:]] == [["put", "EXECUTION_SUCCEEDED", "1"],
                                                    ["get", "EXECUTION_SUCCEEDED", "1"]], r.stdout


def test_pause_holds_new_calls_and_resume_goes_on(servers, handler):
    node = servers.node()
    register_steps(node, NS, handler.endpoint)
    ok(node, definition(NS, "pausable", [
        task("a", "Slow", config={"n": "$.input.n", "tag": "$.input.tag", "ms": 400}),
        task("b", "Inc", ["a"])]))
    wid = start(node, NS, "pausable", num_any(1, "pause-1"))
    deadline = time.monotonic() + 5
    while status(node, NS, wid).task_executions["a"].state != E.EXECUTION_RUNNING:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    pause = E.PauseWorkflowRequest(namespace=NS, workflow_id=wid)
    assert worker(node).PauseWorkflow(pause, timeout=10).state == E.WORKFLOW_PAUSED
    # a's call in flight ends and is kept; b does not start while paused, not even across a restart.
    time.sleep(0.8)
    w = status(node, NS, wid)
    assert w.state == E.WORKFLOW_PAUSED
    assert w.task_executions["a"].state == E.EXECUTION_SUCCEEDED
    assert w.task_executions["b"].state == E.EXECUTION_PENDING
    node.proc.send_signal(9)
    node.proc.wait()
    node = servers.node(listen=f"127.0.0.1:{node.port}", data_dir=node.data_dir)
    time.sleep(0.3)
    assert status(node, NS, wid).state == E.WORKFLOW_PAUSED
    assert not handler.calls_of("pause-1", "Inc")
    r = worker(node).ResumeWorkflow(pause, timeout=10)
    assert r.state == E.WORKFLOW_RUNNING
    w = wait_done(node, NS, wid)
    assert w.state == E.WORKFLOW_SUCCEEDED and num_of(w.current_output).n == 3
    code, msg = code_of(lambda: worker(node).PauseWorkflow(pause, timeout=10))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "SUCCEEDED" in msg
    code, _ = code_of(lambda: worker(node).ResumeWorkflow(
        E.PauseWorkflowRequest(namespace=NS, workflow_id="nope"), timeout=10))
    assert code == grpc.StatusCode.NOT_FOUND


def test_ended_workflows_go_after_their_retention(servers, handler):
    node = servers.node("--workflow-retention-seconds", "1")
    register_steps(node, NS, handler.endpoint)
    ok(node, definition(NS, "brief", [task("a", "Inc")]))
    ok(node, definition(NS, "lasting", [task("s", "Slow", config={"ms": 3000, "tag": "lasting"})]))
    done = wait_done(node, NS, start(node, NS, "brief", num_any(1, "brief")))
    running = start(node, NS, "lasting", num_any(0, "lasting"))
    deadline = time.monotonic() + 10
    while code_of(lambda: status(node, NS, done.id))[0] != grpc.StatusCode.NOT_FOUND:
        assert time.monotonic() < deadline, "the ended workflow outlived its retention"
        time.sleep(0.1)
    assert code_of(lambda: worker(node).GetWorkflowHistory(
        E.GetWorkflowHistoryRequest(namespace=NS, workflow_id=done.id), timeout=10))[0] == grpc.StatusCode.NOT_FOUND
    # A running workflow is not ended: it stays, and ends well.
    assert status(node, NS, running).state == E.WORKFLOW_RUNNING
    assert wait_done(node, NS, running).state == E.WORKFLOW_SUCCEEDED
    # The flag's bad values are refused at start.
    for bad in ("0", "-2", "x"):
        r = subprocess.run(__import__("conftest").with_io(
            [COLLECTOR, "--listen", "127.0.0.1:0", "--data", str(node.data_dir) + "-x",
             "--workflow-retention-seconds", bad]), capture_output=True, text=True, timeout=20)
        assert r.returncode == 2 and "workflow-retention-seconds" in r.stderr, (bad, r.stderr)
