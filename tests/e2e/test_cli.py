"""collectorctl against a real node: any unary method as JSON, workflows (register from a
JSON file, start, wait with progress, history, status), backups; exit codes that follow the
gRPC status. Piped (plain progress lines) and in a real terminal under tmux (a bar redrawn in
place), as a person runs it."""

import json
import os
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from wf_util import StepsHandler, definition, register, register_steps, task

ROOT = Path(__file__).resolve().parents[2]
CTL = Path(os.environ.get("COLLECTORCTL_BIN", str(Path(os.environ.get("COLLECTOR_BIN", ROOT / "build" / "collector"))
                                                  .parent / "collectorctl")))
NS = "clitest"


def ctl(node, *args, stdin=None, ns=None, timeout=60):
    argv = [str(CTL), "--node", node.address] + (["--namespace", ns] if ns else []) + [str(a) for a in args]
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def handler():
    h = StepsHandler()
    yield h
    h.stop()


def test_any_method_as_json_and_exit_codes(node):
    r = ctl(node, "call", "CollectionRepo/CreateCollection",
            '{"collection": {"namespace": "default", "name": "clinotes"}}')
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["collectionId"] == "default/clinotes"
    # The request from stdin; the full path works as well as Service/Method.
    r = ctl(node, "call", "/collector.CollectionService/Create", "-",
            stdin='{"namespace": "default", "collection_name": "clinotes", "id": "a",'
                  ' "item": {"@type": "type.googleapis.com/google.protobuf.Struct", "value": {"x": 1}}}')
    assert r.returncode == 0 and json.loads(r.stdout)["id"] == "a", r.stderr
    # Errors: the gRPC code is the exit status, the message on stderr.
    r = ctl(node, "call", "CollectionService/Get", '{"namespace": "default", "collection_name": "clinotes", "id": "zz"}')
    assert r.returncode == 5 and "NOT_FOUND" in r.stderr
    r = ctl(node, "call", "CollectionService/Get", '{"nonsense": 1}')
    assert r.returncode == 3 and "INVALID_ARGUMENT" in r.stderr
    r = ctl(node, "frobnicate")
    assert r.returncode == 64 and "usage" in r.stderr
    dead = type("N", (), {"address": "127.0.0.1:1"})()
    r = ctl(dead, "call", "CollectionRepo/Discover", timeout=60)
    assert r.returncode == 14 and "UNAVAILABLE" in r.stderr


def test_backups_from_the_command_line(node):
    assert ctl(node, "call", "CollectionRepo/CreateCollection",
               '{"collection": {"namespace": "default", "name": "clibk"}}').returncode == 0
    r = ctl(node, "backup", "default/clibk")
    assert r.returncode == 0, r.stderr
    bid = json.loads(r.stdout)["backup"]["backupId"]
    r = ctl(node, "backups", "default/clibk")
    assert [b["backupId"] for b in json.loads(r.stdout)["backups"]] == [bid]
    r = ctl(node, "verify", bid)
    assert r.returncode == 0 and json.loads(r.stdout)["isValid"] is True
    r = ctl(node, "restore", bid, "--to", "default/clibk2")
    assert r.returncode == 0, r.stderr
    r = ctl(node, "restore", bid, "--to", "default/clibk2")
    assert r.returncode == 6 and "ALREADY_EXISTS" in r.stderr
    assert ctl(node, "delete-backup", bid).returncode == 0
    assert ctl(node, "verify", bid).returncode == 5


def _register_three_steps(node, handler, name, ms):
    register_steps(node, NS, handler.endpoint)
    register(node, definition(NS, name, [
        task("a", "Slow", config={"n": 1, "tag": name, "ms": ms}),
        task("b", "Slow", ["a"], config={"n": "$.tasks.a.output.n", "tag": name, "ms": ms}),
        task("c", "Inc", ["b"])], input_type=""))


def test_workflows_from_the_command_line_piped(node, handler, tmp_path):
    # Registered from a JSON file, as the README's example.
    readme = (ROOT / "README.md").read_text()
    example = readme.split("<!-- workflow-example -->\n```json\n", 1)[1].split("```")[0]
    f = tmp_path / "wf.json"
    f.write_text(example)
    r = ctl(node, "workflow", "register", f)
    assert r.returncode == 0, r.stderr
    _register_three_steps(node, handler, "cli-piped", 400)
    r = ctl(node, "workflow", "start", "cli-piped", "--key", "k1", ns=NS)
    assert r.returncode == 0, r.stderr
    wid = json.loads(r.stdout)["workflowId"]
    again = ctl(node, "workflow", "start", "cli-piped", "--key", "k1", ns=NS)
    assert json.loads(again.stdout)["workflowId"] == wid
    r = ctl(node, "workflow", "wait", wid, ns=NS)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["workflow"]["state"] == "WORKFLOW_SUCCEEDED"
    # Not a terminal: plain lines, the last one saying all tasks are done.
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines and "\r" not in r.stderr
    assert lines[-1].startswith("3/3 tasks done") and "WORKFLOW_SUCCEEDED" in lines[-1]
    r = ctl(node, "workflow", "history", wid, ns=NS)
    assert [json.loads(ln)["taskId"] for ln in r.stdout.splitlines()] == ["a", "b", "c"]
    r = ctl(node, "workflow", "list", ns=NS)
    assert wid in [json.loads(ln)["id"] for ln in r.stdout.splitlines()]
    # A workflow that fails: exit 10 (ABORTED), the reason on stderr.
    register(node, definition(NS, "cli-bad", [task("x", "Bad")], input_type=""))
    wid = json.loads(ctl(node, "workflow", "start", "cli-bad", ns=NS).stdout)["workflowId"]
    r = ctl(node, "workflow", "wait", wid, ns=NS)
    assert r.returncode == 10 and "INVALID_ARGUMENT" in r.stderr
    assert ctl(node, "workflow", "status", "nope", ns=NS).returncode == 5


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (make deps installs it)")
def test_wait_draws_a_bar_in_a_terminal(node, handler):
    _register_three_steps(node, handler, "cli-tty", 1500)
    wid = json.loads(ctl(node, "workflow", "start", "cli-tty", ns=NS).stdout)["workflowId"]
    session = f"ctl-{uuid.uuid4().hex[:8]}"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "20"], check=True)
    try:
        cmd = f"{CTL} --node {node.address} --namespace {NS} workflow wait {wid} > /dev/null; echo EXIT=$?"
        subprocess.run(["tmux", "send-keys", "-t", session, cmd, "Enter"], check=True)
        seen_running, end = None, time.monotonic() + 30
        while time.monotonic() < end:
            pane = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True,
                                  text=True).stdout
            if seen_running is None and "WORKFLOW_RUNNING" in pane and "/3 tasks" in pane:
                seen_running = pane
            if re.search(r"^EXIT=\d+", pane, re.M):  # the output, not the command typed
                break
            time.sleep(0.1)
        assert seen_running, f"no progress bar while the workflow ran: {pane}"
        bar = [ln for ln in seen_running.splitlines() if "/3 tasks" in ln][-1]
        assert bar.startswith("[") and "]" in bar and "WORKFLOW_RUNNING" in bar
        assert re.search(r"^EXIT=0$", pane, re.M), pane
        final = [ln for ln in pane.splitlines() if "/3 tasks" in ln]
        # One line redrawn in place: the bar never scrolled into a second line.
        assert len(final) == 1 and final[0].startswith("[" + "#" * 30 + "] 3/3 tasks"), pane
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session])


def test_a_token_from_the_environment_or_the_flag(servers):
    node = servers.node("--auth", "on")
    token = (Path(node.data_dir) / "system" / "admin-token").read_text().strip()
    r = ctl(node, "call", "CollectionRepo/Discover")
    assert r.returncode == 16 and "UNAUTHENTICATED" in r.stderr
    r = ctl(node, "--token", token, "call", "CollectionRepo/Discover")
    assert r.returncode == 0, r.stderr
    argv = [str(CTL), "--node", node.address, "call", "CollectionRepo/Discover"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, COLLECTOR_TOKEN=token))
    assert r.returncode == 0, r.stderr


def test_tokens_from_the_command_line(servers):
    node = servers.node("--auth", "on")
    admin = (Path(node.data_dir) / "system" / "admin-token").read_text().strip()
    r = ctl(node, "--token", admin, "token", "create", "reader", "shop:read", "*:read+write")
    assert r.returncode == 0, r.stderr
    made = json.loads(r.stdout)
    secret, tid = made["token"], made["info"]["id"]
    grants = {g["namespace"]: sorted(g["scopes"]) for g in made["info"]["grants"]}
    assert grants == {"shop": ["read"], "*": ["read", "write"]}
    listed = json.loads(ctl(node, "--token", admin, "token", "list").stdout)["tokens"]
    assert tid in [t["id"] for t in listed] and secret not in json.dumps(listed)
    assert ctl(node, "--token", secret, "call", "CollectionRepo/Discover").returncode == 0
    # A reader may not make tokens: PERMISSION_DENIED (7), and the audit log says so.
    r = ctl(node, "--token", secret, "token", "create", "x", "shop:admin")
    assert r.returncode == 7 and "PERMISSION_DENIED" in r.stderr
    audit = ctl(node, "--token", admin, "audit", "50")
    assert audit.returncode == 0 and "CreateToken" in audit.stdout
    assert ctl(node, "--token", admin, "token", "revoke", tid).returncode == 0
    assert ctl(node, "--token", secret, "call", "CollectionRepo/Discover").returncode == 16
    assert ctl(node, "--token", admin, "token", "create", "bad", "noscope").returncode == 64


def test_clone_and_fetch_between_two_nodes(servers):
    a, b = servers.node(), servers.node()
    assert ctl(a, "call", "CollectionRepo/CreateCollection",
               '{"collection": {"namespace": "default", "name": "src"}}').returncode == 0
    assert ctl(a, "call", "CollectionService/Create",
               '{"namespace": "default", "collection_name": "src", "id": "r1",'
               ' "item": {"@type": "type.googleapis.com/google.protobuf.Struct", "value": {"k": 1}}}').returncode == 0
    r = ctl(a, "clone", "default/src", "--to", "default/copy", "--endpoint", b.address)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["recordsCloned"] == "1"
    r = ctl(b, "fetch", a.address, "default/src", "--to", "default/fetched")
    assert r.returncode == 0, r.stderr
    for name in ("copy", "fetched"):
        got = ctl(b, "call", "CollectionService/Get", json.dumps(
            {"namespace": "default", "collection_name": name, "id": "r1"}))
        assert got.returncode == 0 and '"k":1' in got.stdout.replace(" ", ""), got.stderr
    r = ctl(a, "clone", "default/src", "--to", "default/copy", "--endpoint", b.address)
    assert r.returncode == 6 and "ALREADY_EXISTS" in r.stderr
    assert ctl(b, "fetch", "127.0.0.1:1", "default/src", "--to", "default/x").returncode == 14


def test_pull_to_a_file_and_push_it_elsewhere(servers, tmp_path):
    a, b = servers.node(), servers.node()
    assert ctl(a, "call", "CollectionRepo/CreateCollection",
               '{"collection": {"namespace": "default", "name": "moved"}}').returncode == 0
    for i in range(20):
        assert ctl(a, "call", "CollectionService/Create", json.dumps(
            {"namespace": "default", "collection_name": "moved", "id": f"r{i}",
             "item": {"@type": "type.googleapis.com/google.protobuf.Struct", "value": {"i": i}}})).returncode == 0
    f = tmp_path / "moved.pull"
    r = ctl(a, "pull", "default/moved", f)
    assert r.returncode == 0, r.stderr
    assert f.read_bytes().startswith(b"COLLECTOR-PULL 1\n") and not Path(str(f) + ".part").exists()
    # Piped: plain progress lines in bytes, the last one complete.
    last = [ln for ln in r.stderr.splitlines() if ln.strip()][-1]
    done, total = last.split(" bytes")[0].split("/")
    assert done == total and "pulled" in last, last
    r = ctl(b, "push", f, "default/arrived")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["recordsCloned"] == "20"
    got = ctl(b, "call", "CollectionService/Get", '{"namespace": "default", "collection_name": "arrived", "id": "r7"}')
    assert got.returncode == 0 and '"i":7' in got.stdout.replace(" ", "")
    # Refusals: the gRPC code as exit status, nothing left behind.
    r = ctl(a, "pull", "default/nothing", tmp_path / "none.pull")
    assert r.returncode == 5 and not list(tmp_path.glob("none.pull*"))
    assert ctl(b, "push", f, "default/arrived").returncode == 6
    bad = tmp_path / "bad.pull"
    bad.write_bytes(b"COLLECTOR-PULL 1\nC\x00\x00\x00\x02hi")
    r = ctl(b, "push", bad, "default/other")
    assert r.returncode == 74 and "not a file" in r.stderr
    assert ctl(b, "call", "CollectionService/Get",
               '{"namespace": "default", "collection_name": "other", "id": "r1"}').returncode == 5
