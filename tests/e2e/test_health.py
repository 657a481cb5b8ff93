"""grpc.health.v1.Health on a real node, through grpcio: Check for the server, for known
and unknown services; Watch's first answer, its silence while nothing changes, and the
NOT_SERVING it sends on every reactor when the node is told to stop."""

import os
import signal
import time

import grpc
import pytest

from stdgrpc.health.v1 import health_pb2, health_pb2_grpc

Req = health_pb2.HealthCheckRequest
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN

KNOWN_SERVICES = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
    "collector.CollectionService",
    "collector.CollectionRepo",
    "collector.CollectorRegistry",
    "collector.CollectiveDispatcher",
    "collector.CollectiveWorker",
    "collector.CollectorConsole",
]


def separate_channel(node, i):
    """A channel with its own TCP connection (grpcio shares subchannels between channels
    to the same target unless told not to), so watches can land on different reactors."""
    return node.channel(options=[("grpc.use_local_subchannel_pool", 1), ("test.channel", i)])


@pytest.fixture(scope="module")
def stub(shared_node):
    return health_pb2_grpc.HealthStub(shared_node.channel())


def test_check_server_serving(stub):
    assert stub.Check(Req(), timeout=10).status == SERVING
    assert stub.Check(Req(service=""), timeout=10).status == SERVING


@pytest.mark.parametrize("service", KNOWN_SERVICES)
def test_check_known_service_serving(stub, service):
    assert stub.Check(Req(service=service), timeout=10).status == SERVING


@pytest.mark.parametrize("service", ["no.such.Service", "collector", "collector.CollectionService.Get", "grpc.health.v1.Health/"])
def test_check_unknown_service_not_found(stub, service):
    with pytest.raises(grpc.RpcError) as ei:
        stub.Check(Req(service=service), timeout=10)
    assert ei.value.code() == grpc.StatusCode.NOT_FOUND
    assert service in ei.value.details()


def test_watch_sends_current_status_then_waits(stub):
    watch = stub.Watch(Req(service="collector.CollectionService"), timeout=30)
    try:
        assert next(watch).status == SERVING
        # A unary round trip on the same connection after the first message: a watch that
        # had wrongly ended would have its trailers here before this answer.
        assert stub.Check(Req(), timeout=10).status == SERVING
        assert watch.is_active()
    finally:
        watch.cancel()
    with pytest.raises(grpc.RpcError) as ei:
        next(watch)
    assert ei.value.code() == grpc.StatusCode.CANCELLED


def test_watch_unknown_service_keeps_watching(stub):
    watch = stub.Watch(Req(service="no.such.Service"), timeout=30)
    try:
        assert next(watch).status == SERVICE_UNKNOWN
        assert stub.Check(Req(), timeout=10).status == SERVING
        assert watch.is_active(), "the watch of an unknown service ended"
    finally:
        watch.cancel()


def test_watch_cancelled_many_times_node_still_serves(shared_node):
    """Cancelled watches leave the reactor's watch list: a later shutdown notice must not
    touch them (the ASan run checks the memory side)."""
    ch = shared_node.channel()
    stub = health_pb2_grpc.HealthStub(ch)
    for _ in range(20):
        w = stub.Watch(Req(), timeout=30)
        assert next(w).status == SERVING
        w.cancel()
    assert stub.Check(Req(), timeout=10).status == SERVING


def test_watch_not_serving_on_sigterm(node):
    """SIGTERM starts the grace period: every watch, on every reactor, gets NOT_SERVING and
    then ends with OK, well before the grace period is over; the node then exits 0."""
    watches = []
    for i in range(6):
        stub = health_pb2_grpc.HealthStub(separate_channel(node, i))
        service = "" if i % 2 == 0 else "collector.CollectionService"
        w = stub.Watch(Req(service=service), timeout=60)
        assert next(w).status == SERVING
        watches.append(w)
    unknown = health_pb2_grpc.HealthStub(separate_channel(node, 99)).Watch(
        Req(service="no.such.Service"), timeout=60
    )
    assert next(unknown).status == SERVICE_UNKNOWN

    t0 = time.monotonic()
    os.kill(node.pid, signal.SIGTERM)
    for w in watches:
        assert next(w).status == NOT_SERVING
        assert list(w) == [], "more messages after NOT_SERVING"
        assert w.code() == grpc.StatusCode.OK, (w.code(), w.details())
    assert list(unknown) == []
    assert unknown.code() == grpc.StatusCode.OK
    # The default grace period is 10 s: ending the watches must not wait for it.
    assert time.monotonic() - t0 < 8
    assert node.stop() == 0, node.output()
