"""Calls grpc.health.v1.Health/Check on its own connection every 10 ms until its stdin
closes, then prints one JSON line: how many calls, the slowest in ms, and the failures.

A process of its own, so that the tests' attack traffic (big bodies built and sent from
Python) cannot delay the probe's calls on the client side and be taken for the node's
latency. Usage: health_probe.py HOST:PORT PYGEN_DIR"""

import json
import sys
import threading
import time

sys.path.insert(0, sys.argv[2])

import grpc  # noqa: E402
from stdgrpc.health.v1 import health_pb2, health_pb2_grpc  # noqa: E402


def main():
    ch = grpc.insecure_channel(sys.argv[1], options=[("grpc.enable_http_proxy", 0)])
    stub = health_pb2_grpc.HealthStub(ch)
    stub.Check(health_pb2.HealthCheckRequest(), timeout=10)  # connected before the attack
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    print("ready", flush=True)
    slowest, calls, failures = 0.0, 0, []
    while not stop.is_set():
        t0 = time.monotonic()
        try:
            stub.Check(health_pb2.HealthCheckRequest(), timeout=10)
            calls += 1
        except grpc.RpcError as e:
            failures.append(f"{e.code()}: {e.details()}")
        slowest = max(slowest, (time.monotonic() - t0) * 1000)
        time.sleep(0.01)
    print(json.dumps({"calls": calls, "max_ms": slowest, "failures": failures[:5]}), flush=True)


main()
