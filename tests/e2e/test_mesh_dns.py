"""Peers found by DNS (--peers-dns), end to end: a real dnsmasq serves SRV records for the
nodes, a node resolves them every second, links the peers they name (not itself, which
the records list too, as a headless Service would), and drops the ones that disappear from
them; a DNS outage keeps the links it has."""

import time

import pytest

from mesh_util import peers, start, wait_state, wait_until
from test_peer_dns import DOMAIN, dns  # noqa: F401 (the fixture)


def records(*nodes):
    lines = []
    for i, n in enumerate(nodes):
        lines.append(f"host-record=n{i}.{DOMAIN},127.0.0.1")
        lines.append(f"srv-host=_grpc._tcp.mesh.{DOMAIN},n{i}.{DOMAIN},{n.port},0,10")
    return lines


def test_peers_are_linked_and_dropped_as_dns_says(servers, dns):  # noqa: F811
    b = start(servers, "node-b")
    c = start(servers, "node-c")
    a = start(servers, "node-a", "--peers-dns", f"mesh.{DOMAIN}", "--dns-server", dns.server,
              "--peers-dns-interval", "1")
    dns.start(records(a, b, c))
    wait_state(a, "node-b", "up", timeout=10)
    wait_state(a, "node-c", "up", timeout=10)
    assert peers(a)["node-b"][1]["direction"] == "outbound"
    wait_state(b, "node-a", "up")
    # Itself is in the records: never a peer.
    assert "node-a" not in peers(a)
    assert all(c.address != a.address for c, _ in peers(a).values())
    # node-c leaves the records: dropped at the next resolution.
    dns.start(records(a, b))
    wait_until("node-c dropped", lambda: "node-c" not in peers(a), timeout=10)
    assert peers(a)["node-b"][1]["state"] == "up"
    # DNS down: the links found so far stay.
    dns.stop()

    time.sleep(2.5)
    assert peers(a)["node-b"][1]["state"] == "up"
    # Back with node-c: linked again.
    dns.start(records(a, b, c))
    wait_state(a, "node-c", "up", timeout=10)
