"""Helpers for tests of the mesh: nodes with ids, links, ListPeers as a dict, a Dispatch
of a cheap method of every node (CollectionRepo.Discover), and bounded waits."""

import time

import grpc
from google.protobuf import any_pb2

from collector import collection_repo_pb2, common_pb2, dispatcher_pb2, dispatcher_pb2_grpc

T = 10


def disp(node):
    """One stub per node process. Its own subchannel pool: a restarted node on the same
    port must not be reached through the connection of the process before it."""
    stub = getattr(node, "_mesh_stub", None)
    if stub is None:
        ch = node.channel(options=[("grpc.use_local_subchannel_pool", 1)])
        stub = node._mesh_stub = dispatcher_pb2_grpc.CollectiveDispatcherStub(ch)
    return stub


def start(servers, node_id, *extra, listen="127.0.0.1:0", data_dir=None):
    n = servers.node("--id", node_id, *extra, listen=listen, data_dir=data_dir)
    n.node_id = node_id
    return n


def link(a, b, namespaces=()):
    return disp(a).Link(dispatcher_pb2.LinkRequest(address=b.address, namespaces=list(namespaces)), timeout=T)


def peers(node):
    """id -> (Collector, labels) of everything ListPeers reports."""
    r = disp(node).ListPeers(dispatcher_pb2.ListPeersRequest(), timeout=T)
    return {c.id: (c, dict(c.metadata.labels)) for c in r.collectors}


def state(node, peer_id):
    p = peers(node).get(peer_id)
    return p[1].get("state") if p else None


def wait_until(what, fn, timeout=10.0, step=0.05):
    """Polls fn until it returns a true value; fails after timeout with `what`."""
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        last = fn()
        if last:
            return last
        time.sleep(step)
    raise AssertionError(f"not within {timeout} s: {what} (last: {last!r})")


def wait_state(node, peer_id, want, timeout=10.0):
    wait_until(f"{node.node_id} sees {peer_id} {want}", lambda: state(node, peer_id) == want, timeout)


def discover_any():
    a = any_pb2.Any()
    a.Pack(collection_repo_pb2.DiscoverRequest())
    return a


def dispatch(node, target="", hints=None, namespace="", service="collector.CollectionRepo", method="Discover",
             metadata=None, timeout=T, input=None):
    req = dispatcher_pb2.DispatchRequest(namespace=namespace, service=common_pb2.ServiceTypeRef(service_name=service),
                                         method_name=method, input=input or discover_any(),
                                         target_collector_id=target, routing_hints=hints or {})
    return disp(node).Dispatch(req, timeout=timeout, metadata=metadata)


def handled_by(node, **kw):
    return dispatch(node, **kw).handled_by_collector_id


def code_of(fn):
    try:
        fn()
    except grpc.RpcError as e:
        return e.code()
    return grpc.StatusCode.OK
