"""The deploy files work as written: systemd's readiness protocol spoken to a NOTIFY_SOCKET
(READY=1 once listening, WATCHDOG=1 while the reactors turn, STOPPING=1 on SIGTERM); the
unit file passes systemd-analyze and its ExecStart starts a node; the Kubernetes
StatefulSet's container arguments start a node, its probes and Service fit together."""

import shlex
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import grpc
import pytest
import yaml

from conftest import COLLECTOR_BIN, start_server
from stdgrpc.health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def healthy(address):
    with grpc.insecure_channel(address) as ch:
        r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
        return r.status == health_pb2.HealthCheckResponse.SERVING


def test_sd_notify_ready_watchdog_stopping(servers, tmp_path, monkeypatch):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # fed every 0.2 s
    try:
        node = servers.node()
        first = sock.recv(4096).decode()
        assert first.startswith("READY=1") and f"STATUS=serving on {node.address}" in first
        t0, beats = time.monotonic(), 0
        while beats < 3 and time.monotonic() - t0 < 5:
            if sock.recv(4096).decode() == "WATCHDOG=1":
                beats += 1
        assert beats == 3, "the watchdog is not fed"
        assert time.monotonic() - t0 < 2.5
        node.proc.send_signal(signal.SIGTERM)
        msgs = []
        end = time.monotonic() + 10
        while "STOPPING=1" not in msgs and time.monotonic() < end:
            msgs.append(sock.recv(4096).decode())
        assert "STOPPING=1" in msgs
        assert node.proc.wait(20) == 0
    finally:
        sock.close()
    # Without NOTIFY_SOCKET nothing is sent and the node runs as before.
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert healthy(servers.node().address)


def _unit():
    text = (DEPLOY / "collector.service").read_text()
    keys = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#") and not line.startswith("["):
            k, v = line.split("=", 1)
            keys[k.strip()] = v.strip()
    return keys


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_systemd_unit_verifies(tmp_path):
    # systemd-analyze checks that ExecStart's program exists: the unit with the built one.
    unit = (DEPLOY / "collector.service").read_text().replace("/usr/local/bin/collector", str(COLLECTOR_BIN))
    f = tmp_path / "collector.service"
    f.write_text(unit)
    r = subprocess.run(["systemd-analyze", "verify", str(f)], capture_output=True, text=True, timeout=60)
    problems = [ln for ln in (r.stdout + r.stderr).splitlines() if "collector.service" in ln]
    assert r.returncode == 0 and not problems, r.stdout + r.stderr


def test_the_units_command_starts_a_node(tmp_path):
    keys = _unit()
    assert keys["Type"] == "notify" and keys["WatchdogSec"]
    argv = shlex.split(keys["ExecStart"])
    assert argv[0] == "/usr/local/bin/collector"
    # The unit's arguments with this machine's paths: the binary built, a temporary state
    # directory for StateDirectory's, a free port for 50051, this host for %H.
    subst = {"/usr/local/bin/collector": str(COLLECTOR_BIN), "/var/lib/collector": str(tmp_path / "state"),
             "0.0.0.0:50051": "127.0.0.1:0", "%H:50051": "localhost:50051"}
    argv = [subst.get(a, a) for a in argv] + ["--auth", "off"]
    sp = start_server(argv, "collector (unit)")
    try:
        assert healthy(sp.address)
    finally:
        sp.close()


def test_the_statefulset_starts_nodes_that_fit_its_service(tmp_path):
    sts = yaml.safe_load((DEPLOY / "k8s" / "statefulset.yaml").read_text())
    svc = yaml.safe_load((DEPLOY / "k8s" / "service.yaml").read_text())
    assert sts["kind"] == "StatefulSet" and svc["kind"] == "Service"
    assert svc["spec"]["clusterIP"] == "None" and sts["spec"]["serviceName"] == svc["metadata"]["name"]
    pod = sts["spec"]["template"]
    assert svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    (container,) = pod["spec"]["containers"]
    port = {p["name"]: p["containerPort"] for p in container["ports"]}["grpc"]
    assert container["readinessProbe"]["grpc"]["port"] == port == container["livenessProbe"]["grpc"]["port"]
    assert svc["spec"]["ports"][0]["targetPort"] == "grpc"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    args = container["args"]
    assert args[args.index("--data") + 1] == mounts["data"]
    assert args[args.index("--mesh-token-file") + 1].startswith(mounts["tokens"])
    # The arguments as the kubelet expands them for pod collector-0, with this machine's
    # paths; the DNS name does not resolve here, which the node logs and outlives.
    env = {"POD_NAME": "collector-0", "POD_NAMESPACE": "default"}
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    (tokens / "mesh-token").write_text("col_" + "0123456789abcdef" + "_" + "0123456789abcdef" * 4 + "\n")
    expanded = []
    for a in args:
        for k, v in env.items():
            a = a.replace(f"$({k})", v)
        a = {"0.0.0.0:50051": "127.0.0.1:0", mounts["data"]: str(tmp_path / "data")}.get(a, a)
        expanded.append(a.replace(mounts["tokens"], str(tokens)))
    sp = start_server([str(COLLECTOR_BIN), *expanded, "--dns-server", "127.0.0.1:9"], "collector (pod)")
    try:
        assert healthy(sp.address)  # the probe's call, open without a token
        assert "collector-0" in sp.output()
    finally:
        sp.close()
