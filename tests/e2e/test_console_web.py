"""The web console (issue 20): the node serves its page, script and style sheet on GET /
(built into the binary, HTTP/1.1 and HTTP/2, ETag, a Content-Security-Policy that admits
no remote script), `--no-console` turns it off, and a person using it in a real browser
(Debian's chromium, headless, driven by npm's puppeteer-core: console/console_test.js)
sees every view: the node, registries, collections and their records (browse, full-text
search, create, delete, the node's error next to the form), a workflow's DAG with each
task's state and its history, and a linked node with its health. With --auth on the
page asks for a token and signs in with it. Every wait is bounded."""

import http.client
import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
E2E_DIR = HERE / "console"
CURL = "/usr/bin/curl"
NODE = shutil.which("node") or "/usr/bin/node"
T = 10  # seconds: the bound of every wait
STRUCT = "type.googleapis.com/google.protobuf.Struct"


def connect(node, method, body, token=None):
    """A Connect unary call in JSON; (HTTP status, the answer's JSON)."""
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    req = urllib.request.Request(f"http://{node.address}/collector.{method}",
                                 data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=T) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def ok(node, method, body, token=None):
    status, doc = connect(node, method, body, token)
    assert status == 200, (method, status, doc)
    return doc


def get(node, path, headers=None):
    conn = http.client.HTTPConnection(node.host, node.port, timeout=T)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def wait_until(what, fn, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def run_browser(env, timeout=120):
    if not (E2E_DIR / "node_modules" / "puppeteer-core").is_dir():
        pytest.fail("puppeteer-core is missing: make e2e runs `npm ci` in tests/e2e/console",
                    pytrace=False)
    r = subprocess.run([NODE, str(E2E_DIR / "console_test.js")], cwd=E2E_DIR,
                       env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout)
    assert r.stdout.strip(), f"no report from the browser script: {r.stderr[-3000:]}"
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert r.returncode == 0 and not out.get("failure"), (out.get("failure"), r.stderr[-3000:])
    return out


def check_shots(out, names):
    got = {Path(p).stem: Path(p) for p in out["shots"]}
    assert sorted(got) == sorted(names)
    for p in got.values():
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000, p


def check_page_errors(out, allowed):
    """Nothing went wrong in the page: no script error, no failed request, and no console
    error but the browser's note of each expected refused call (allowed: [(path, status)])."""
    assert out["pageErrors"] == [] and out["failedRequests"] == [], out
    refused = [(p, s) for p, s in out["statuses"] if s >= 400]
    assert sorted(set(refused)) == sorted(set(allowed)), refused
    for e in out["consoleErrors"]:
        assert e.startswith("Failed to load resource: the server responded with a status of"), e
    assert len(out["consoleErrors"]) == len(refused), out["consoleErrors"]


# ---- the files themselves, without a browser ----

def test_console_files_served_with_types_etag_and_csp(servers):
    node = servers.node()
    status, h, html = get(node, "/")
    assert status == 200 and h["content-type"] == "text/html; charset=utf-8"
    assert b'<script src="/app.js"' in html and b'href="/app.css"' in html
    csp = h["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert "http" not in csp and "unsafe" not in csp
    assert h["x-content-type-options"] == "nosniff"
    # index.html under its own name too, the same bytes.
    assert get(node, "/index.html")[2] == html
    for path, ctype in (("/app.js", "text/javascript"), ("/app.css", "text/css")):
        status, h, body = get(node, path)
        assert status == 200 and h["content-type"].startswith(ctype) and len(body) > 1000
        assert int(h["content-length"]) == len(body)
        etag = h["etag"]
        assert re.fullmatch(r'"[0-9a-f]{20}"', etag)
        # The browser's copy is current: 304 without a body; another tag: the file.
        status, h2, body2 = get(node, path, {"if-none-match": etag})
        assert status == 304 and body2 == b"" and h2["etag"] == etag
        assert get(node, path, {"if-none-match": '"0", W/' + etag})[0] == 304
        assert get(node, path, {"if-none-match": '"other"'})[0] == 200
        # Nothing from another origin: no absolute URL in what the page loads or calls.
        assert not re.search(rb"""(src|href)\s*=\s*["']?(https?:)?//|fetch\(\s*["'`]https?:""", body)
    assert not re.search(rb"""(src|href)\s*=\s*["'](https?:)?//""", html)
    # Unknown paths stay 404; a POST to / is no file.
    assert get(node, "/app2.js")[0] == 404
    # Over HTTP/2 (prior knowledge) the same answer.
    r = subprocess.run([CURL, "-sS", "-i", "--http2-prior-knowledge", "--max-time", str(T),
                        f"http://{node.address}/"], capture_output=True, timeout=T + 5)
    head = r.stdout.split(b"\r\n\r\n", 1)[0].decode().lower()
    assert r.returncode == 0 and head.startswith("http/2 200"), head
    assert "content-security-policy: default-src 'none'" in head and "etag: \"" in head
    assert r.stdout.split(b"\r\n\r\n", 1)[1] == html


def test_no_console_answers_404(servers):
    node = servers.node("--no-console")
    for path in ("/", "/index.html", "/app.js", "/app.css"):
        assert get(node, path)[0] == 404, path
    assert get(node, "/healthz")[0] == 200


# ---- in a browser ----

WORKFLOW = {
    "workflow": {
        "namespace": "default",
        "name": "shelve",
        "inputType": {"messageName": "google.protobuf.Struct"},
        "tasks": [
            {"id": "put", "service": {"serviceName": "CollectionService"}, "methodName": "Create",
             "inputConfig": {"namespace": "default", "collection_name": "notes", "id": "$.input.id",
                             "item": {"@type": STRUCT, "value": "$.input"}}},
            {"id": "get", "dependencies": ["put"], "service": {"serviceName": "CollectionService"},
             "methodName": "Get",
             "inputConfig": {"namespace": "default", "collection_name": "notes",
                             "id": "$.tasks.put.output.id"}},
            {"id": "list", "dependencies": ["put"], "service": {"serviceName": "CollectionService"},
             "methodName": "List", "inputConfig": {"namespace": "default", "collection_name": "notes"}},
            {"id": "check", "dependencies": ["get", "list"],
             "service": {"serviceName": "CollectionService"}, "methodName": "Get",
             "inputConfig": {"namespace": "default", "collection_name": "notes",
                             "id": "$.tasks.put.output.id"}},
        ],
    }
}

MISSING = {
    "workflow": {
        "namespace": "default", "name": "lookup-missing",
        "inputType": {"messageName": "google.protobuf.Struct"},
        "tasks": [{"id": "find", "service": {"serviceName": "CollectionService"}, "methodName": "Get",
                   "inputConfig": {"namespace": "default", "collection_name": "notes", "id": "nope"}}],
    }
}

ANIMALS = [{"name": "giraffe", "legs": 4, "note": "tall and spotted"},
           {"name": "zebra", "legs": 4, "note": "striped"},
           {"name": "heron", "legs": 2, "note": "stands in water"}]


def run_workflow(node, name, input_, want):
    wid = ok(node, "CollectiveWorker/StartWorkflow", {
        "namespace": "default", "workflowName": name,
        "input": {"@type": STRUCT, "value": input_}})["workflowId"]

    def ended():
        w = ok(node, "CollectiveWorker/GetWorkflowStatus",
               {"namespace": "default", "workflowId": wid})["workflow"]
        return w if w.get("state") in ("WORKFLOW_SUCCEEDED", "WORKFLOW_FAILED") else None
    assert wait_until(f"workflow {name}", ended)["state"] == want
    return wid


def test_console_views_in_chromium(servers, tmp_path):
    a = servers.node("--id", "console-node-a")
    b = servers.node("--id", "console-node-b")
    for coll in ("animals", "notes"):
        ok(a, "CollectionRepo/CreateCollection", {"collection": {"namespace": "default", "name": coll}})
    for i, animal in enumerate(ANIMALS):
        ok(a, "CollectionService/Create", {"namespace": "default", "collectionName": "animals",
                                            "id": f"a{i}", "item": {"@type": STRUCT, "value": animal}})
    ok(a, "CollectiveWorker/RegisterWorkflow", WORKFLOW)
    ok(a, "CollectiveWorker/RegisterWorkflow", MISSING)
    wid = run_workflow(a, "shelve", {"id": "n1", "text": "hello"}, "WORKFLOW_SUCCEEDED")
    failed = run_workflow(a, "lookup-missing", {}, "WORKFLOW_FAILED")
    ok(a, "CollectiveDispatcher/Link", {"address": b.address})
    wait_until("the link up", lambda: [
        p for p in ok(a, "CollectorConsole/Display", {"displayType": "CONNECTIONS"})
        ["displayData"].get("peers", []) if p["state"] == "up"])

    shots = tmp_path / "shots"
    shots.mkdir()
    out = run_browser({"CONSOLE_URL": f"http://{a.address}/", "SHOT_DIR": str(shots),
                       "MODE": "views", "WORKFLOW_ID": wid})
    check_shots(out, ["overview", "registries", "collections-browse", "collections-search",
                      "collections-backups", "workflow", "connections"])
    check_page_errors(out, [("/collector.CollectionRepo/CreateCollection", 400)])

    ov = out["overview"]
    assert ov["nodeId"] == "console-node-a" and re.fullmatch(r"\d+\.\d+\.\d+.*", ov["version"])
    assert "console-node-a" in ov["summary"]
    # The live chart: a point per second from /metrics, at least three so far, and the 30
    # calls the script made seen as a rate.
    assert ov["chartPoints"] >= 3 and ov["rateLabel"].endswith("calls/s")
    assert ov["peakRate"] > 0

    # Registries: the services per namespace, or the empty state (never an error).
    reg = out["registries"]
    assert reg["services"] or reg["empty"] == ["No services registered yet."], reg

    col = out["collections"]
    assert {"default/animals", "default/notes"} <= set(col["names"])
    assert col["count"] == "3 record(s)"
    seen = [json.loads(t) for t in col["records"]]
    assert sorted(r["value"]["name"] for r in seen) == ["giraffe", "heron", "zebra"]
    assert col["searchCount"] == "1 match(es)"
    assert [json.loads(t)["value"]["name"] for t in col["searchRecords"]] == ["giraffe"]
    assert col["backupsBefore"] == ["No backups of this collection."]
    assert col["verify"] == "valid"
    assert col["restore"] == "restored 3 record(s) into default/animals_restored", col["restore"]
    assert col["backupRows"][2] == "3"
    assert "default/animals_restored" in col["afterCreate"]
    assert col["createError"] and "name" in col["createError"].lower(), col["createError"]
    assert "default/made_in_browser" in col["afterCreate"]
    assert "default/made_in_browser" not in col["afterDelete"]
    assert {"default/animals", "default/notes"} <= set(col["afterDelete"])

    wf = out["workflows"]
    states = {r["id"]: r["state"] for r in wf["rows"]}
    assert states[wid] == "SUCCEEDED" and states[failed] == "FAILED"
    assert "shelve" in wf["title"] and "SUCCEEDED" in wf["title"]
    tasks = {t["id"]: t for t in wf["tasks"]}
    assert sorted(tasks) == ["check", "get", "list", "put"]
    assert all(t["state"] == "SUCCEEDED" and t["label"] == t["id"] for t in tasks.values())
    assert all(t["w"] > 50 and t["h"] > 20 for t in tasks.values())  # drawn, not hidden
    # Coloured by state (the succeeded green fill), laid out by depth left to right.
    assert len({t["fill"] for t in tasks.values()}) == 1 and tasks["put"]["fill"] != "none"
    assert tasks["put"]["x"] < tasks["get"]["x"] == tasks["list"]["x"] < tasks["check"]["x"]
    assert sorted(map(tuple, wf["edges"])) == [("get", "check"), ("list", "check"),
                                               ("put", "get"), ("put", "list")]
    # The node's recent executions: the five tasks run (four of shelve, the failed find).
    assert sorted(wf["recent"]) == ["check", "find", "get", "list", "put"]
    hist = wf["history"]
    assert [h[0] for h in hist][0] == "put" and sorted(h[0] for h in hist) == ["check", "get", "list", "put"]
    assert all(h[2] == "SUCCEEDED" for h in hist) and all(h[4] == "console-node-a" for h in hist)

    conn = out["connections"]
    assert len(conn["peers"]) == 1 and conn["peers"][0]["state"] == "up"
    assert conn["peers"][0]["cells"][0] == "console-node-b" and conn["peers"][0]["cells"][1] == b.address
    assert len(conn["meshNodes"]) == 2 and any("health-up" in c for c in conn["meshNodes"])


def test_console_sign_in_with_a_token(servers, tmp_path):
    node = servers.node("--auth", "on")
    token = (Path(node.data_dir) / "system" / "admin-token").read_text().strip()
    for ns in ("default", "other"):
        ok(node, "CollectionRepo/CreateCollection",
           {"collection": {"namespace": ns, "name": "secret_things"}}, token)
    reader = ok(node, "CollectorAuth/CreateToken",
                {"name": "reader", "grants": [{"namespace": "default", "scopes": ["read"]}]},
                token)["token"]
    # The files themselves need no token: the page must load to ask for one.
    assert get(node, "/")[0] == 200 and get(node, "/app.js")[0] == 200

    shots = tmp_path / "shots"
    shots.mkdir()
    out = run_browser({"CONSOLE_URL": f"http://{node.address}/", "SHOT_DIR": str(shots),
                       "MODE": "auth", "TOKEN": token, "NS_TOKEN": reader})
    check_shots(out, ["login", "signed-in", "one-namespace"])
    # Refused before signing in, with the bad token, and after signing out (401); the
    # reader's view of every namespace (403).
    check_page_errors(out, [("/collector.CollectorConsole/Display", 401),
                            ("/collector.CollectorConsole/Display", 403)])
    assert "Sign in to see this view." in out["before"]["viewText"]
    assert out["badToken"]["loginShown"] and "refused" in out["badToken"]["error"]
    after = out["after"]
    assert not after["loginShown"] and after["stored"] == token and after["nodeId"]
    assert after["collections"] == ["default/secret_things", "other/secret_things"]
    assert not out["afterReload"]["loginShown"]
    assert out["afterSignOut"]["stored"] is None
    # The reader: every namespace refused with the node's message, its namespace shown.
    assert "the token does not allow this call" in out["nsToken"]["everyNs"]
    assert out["nsToken"]["collections"] == ["default/secret_things"]
