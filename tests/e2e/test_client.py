"""This project's gRPC client (src/h2/client.c, driven by tests/interop/c_client) against a
stock gRPC server (python grpcio, tests/interop/py_server.py) and against the node."""

import subprocess
import sys

import pytest

from conftest import INTEROP_SERVER_BIN, LISTEN_RE, REPO, ServerProcess, _finish

C_CLIENT = INTEROP_SERVER_BIN.parent / "c_client"
CASES = [
    "empty_unary", "large_unary", "client_compressed_unary", "server_compressed_unary",
    "client_streaming", "server_streaming", "ping_pong", "empty_stream", "cancel_after_begin",
    "cancel_after_first_response", "timeout_on_sleeping_server", "custom_metadata",
    "status_code_and_message", "special_status_message", "unimplemented_method",
    "unimplemented_service",
]


def run_client(port, cases):
    out = subprocess.run([str(C_CLIENT), "--server_host", "127.0.0.1", "--server_port", str(port),
                          "--test_case", ",".join(cases)],
                         capture_output=True, text=True, timeout=120)
    return out


@pytest.fixture(scope="module")
def stock_server():
    sp = ServerProcess([sys.executable, str(REPO / "tests" / "interop" / "py_server.py"),
                        "--port", "0"], "py_server")
    m = sp.wait_for_line(LISTEN_RE, 20)
    sp.host, sp.port = m.group(1), int(m.group(2))
    yield sp
    _finish([sp])


@pytest.mark.parametrize("case", CASES)
def test_c_client_against_stock_grpc(stock_server, case):
    out = run_client(stock_server.port, [case])
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"PASS {case}" in out.stdout


def test_c_client_health_on_node(node):
    out = run_client(node.port, ["health"])
    assert out.returncode == 0, out.stdout + out.stderr
    assert "PASS health" in out.stdout


def test_c_client_deadline_and_unimplemented_on_node(node):
    # The node serves no TestService: every interop call is UNIMPLEMENTED there, which the
    # client must report as such (not as a transport error).
    out = run_client(node.port, ["unimplemented_service", "unimplemented_method"])
    assert out.returncode == 0, out.stdout + out.stderr


def test_c_client_reports_unreachable_server(tmp_path):
    # Nothing listens on port 1: the call fails with UNAVAILABLE, not a crash or a hang.
    out = run_client(1, ["empty_unary"])
    assert out.returncode == 1
    assert "FAIL empty_unary" in out.stdout and "UNAVAILABLE" in out.stdout, out.stdout
