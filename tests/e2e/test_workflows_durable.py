"""Workflows survive the death of nodes: a retry timer outlives a restart; kill -9 of the node
in 20 cycles mid-workflow loses nothing (every workflow completes, every finished task is
recorded once, a start that was answered is never lost, one whose answer was lost starts
once when retried with its idempotency key); a task run by another node of the mesh, and
the death of that node mid-task."""

import random
import signal
import time

import grpc
import pytest

from collector import worker_pb2 as E
from mesh_util import link, peers, start as start_node, wait_state, wait_until
from wf_util import (
    StepsHandler, definition, history, num_any, num_of, register, register_steps, start, status,
    task, wait_done, worker,
)

NS = "wfdurable"
INTERRUPTED = "the node stopped while the call ran"


@pytest.fixture(scope="module")
def handler():
    h = StepsHandler()
    yield h
    h.stop()


def kill9(node):
    node.proc.send_signal(signal.SIGKILL)
    node.proc.wait()


def restart(servers, node, *extra):
    return servers.node(*extra, listen=f"127.0.0.1:{node.port}", data_dir=node.data_dir)


def test_a_retry_timer_survives_a_restart(servers, handler):
    node = servers.node()
    register_steps(node, NS, handler.endpoint)
    register(node, definition(NS, "later", [task("f", "Flaky", retry={"max_attempts": 3,
                                                                       "initial_delay_seconds": 2})]))
    wid = start(node, NS, "later", num_any(1, "timer-1", fail=1))
    wait_until("the task waits for its retry",
               lambda: status(node, NS, wid).task_executions["f"].state == E.EXECUTION_RETRYING)
    kill9(node)
    node = restart(servers, node)
    w = wait_done(node, NS, wid, timeout=15)
    assert w.state == E.WORKFLOW_SUCCEEDED and num_of(w.current_output).n == 2
    calls = handler.calls_of("timer-1")
    assert len(calls) == 2, calls
    assert calls[1][5] - calls[0][6] >= 1.5, "the retry did not wait its delay across the restart"


def test_kill_9_in_20_cycles_loses_and_repeats_nothing(servers, handler):
    node = servers.node()
    register_steps(node, NS, handler.endpoint)
    retry = {"max_attempts": 50, "initial_delay_seconds": 0}
    register(node, definition(NS, "chain", [
        task("a", "Slow", config={"n": "$.input.n", "tag": "$.input.tag", "ms": 20}, retry=retry),
        task("b", "Slow", ["a"], config={"n": "$.tasks.a.output.n", "tag": "$.input.tag", "ms": 20},
             retry=retry),
        task("c", "Inc", ["b"], retry=retry),
    ]))
    rng = random.Random(7)
    answered = {}  # idempotency key -> id the node answered
    unanswered = []  # keys whose start got no answer (the node died)
    for cycle in range(20):
        for k in range(5):
            key = f"c{cycle}-{k}"
            try:
                answered[key] = start(node, NS, "chain", num_any(cycle * 10 + k, key),
                                      {"idempotency_key": key}, timeout=5)
            except grpc.RpcError:
                unanswered.append(key)
            time.sleep(rng.uniform(0, 0.03))
        time.sleep(rng.uniform(0, 0.1))
        kill9(node)
        node = restart(servers, node)
        # A start that got no answer is retried with its key: once, whatever happened.
        for key in list(unanswered):
            n = int(key[1:].split("-")[0]) * 10 + int(key.split("-")[1])
            answered[key] = start(node, NS, "chain", num_any(n, key), {"idempotency_key": key})
            unanswered.remove(key)
    assert len(answered) == 100
    interrupted = 0
    for key, wid in answered.items():
        w = wait_done(node, NS, wid, timeout=60)
        assert w.state == E.WORKFLOW_SUCCEEDED, (key, w)
        n = int(key[1:].split("-")[0]) * 10 + int(key.split("-")[1])
        assert num_of(w.current_output).n == n + 3, (key, w)
        hist = history(node, NS, wid)
        for t in "abc":
            done = [x for x in hist if x.task_id == t and x.state == E.EXECUTION_SUCCEEDED]
            assert len(done) == 1, (key, t, hist)
        others = [x for x in hist if x.state != E.EXECUTION_SUCCEEDED]
        assert all(x.state == E.EXECUTION_FAILED and INTERRUPTED in x.error.message for x in others), others
        interrupted += len(others)
        # At least once: every recorded execution was a call the handler saw, or one cut by
        # the kill before it reached it.
        seen = {c[3] for c in handler.calls_of(key)}
        assert {x.id for x in hist if x.state == E.EXECUTION_SUCCEEDED} <= seen
    # The kills did fall mid-task (else this test proves nothing).
    assert interrupted >= 5, interrupted
    # One workflow per key.
    r = worker(node).ListWorkflows(E.ListWorkflowsRequest(namespace=NS, page_size=1000), timeout=10)
    chains = [w for w in r.workflows if w.metadata.labels["workflow_name"] == "chain"]
    assert len(chains) == 100


def test_a_task_runs_on_another_node_and_survives_its_death(servers, handler):
    a = start_node(servers, "wf-a")
    b = start_node(servers, "wf-b")
    register_steps(a, NS)  # known on a, served by b's handler
    register_steps(b, NS, handler.endpoint)
    link(a, b)
    wait_state(a, "wf-b", "up")
    wait_until("a learns what b serves", lambda: f"{NS}/wf.Steps" in peers(a)["wf-b"][0].capabilities)
    register(a, definition(NS, "remote", [task("r", "Inc")]))
    w = wait_done(a, NS, start(a, NS, "remote", num_any(1, "remote-1")))
    assert w.state == E.WORKFLOW_SUCCEEDED and num_of(w.current_output).n == 2
    assert [x.executor_id for x in history(a, NS, w.id)] == ["wf-b"]
    calls = handler.calls_of("remote-1")
    assert calls[0][3] == history(a, NS, w.id)[0].id and calls[0][4] == "1"  # carried through b
    # b dies mid-task: the call fails, the retries wait for b, and b's return finishes it.
    register(a, definition(NS, "remote-slow", [task("s", "Slow", config={"ms": 3000, "tag": "remote-2"},
                                                   retry={"max_attempts": 20, "initial_delay_seconds": 1,
                                                          "max_delay_seconds": 1})]))
    wid = start(a, NS, "remote-slow", num_any(0, "remote-2"))
    wait_until("b runs the task", lambda: status(a, NS, wid).task_executions["s"].state == E.EXECUTION_RUNNING
               and handler.cancelled is not None, timeout=5)
    time.sleep(0.5)
    kill9(b)
    wait_until("the cut call is recorded failed",
               lambda: any(x.state == E.EXECUTION_FAILED for x in history(a, NS, wid)), timeout=10)
    assert status(a, NS, wid).state == E.WORKFLOW_RUNNING
    time.sleep(1.5)  # retries meanwhile find no node up
    b = start_node(servers, "wf-b", listen=f"127.0.0.1:{b.port}", data_dir=b.data_dir)
    w = wait_done(a, NS, wid, timeout=30)
    assert w.state == E.WORKFLOW_SUCCEEDED, w
    hist = history(a, NS, wid)
    assert hist[-1].state == E.EXECUTION_SUCCEEDED and hist[-1].executor_id == "wf-b"
    failed = [x for x in hist if x.state == E.EXECUTION_FAILED]
    assert failed and all(x.error.details["grpc_code"] == "UNAVAILABLE" for x in failed), hist
