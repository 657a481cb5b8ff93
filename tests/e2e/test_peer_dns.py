"""Peer discovery by DNS (services/peer_dns.c, issue 17) against a real DNS server: dnsmasq
from Debian, run by the test as its own process on a free loopback port, with records
that the test writes and changes. tests/tools/dns_probe runs peer_dns_resolve, the
function the mesh calls, and prints one HOST:PORT a line.

Checked: SRV answers (several targets and ports, the lowest priority group only, glue and
CNAME targets), the fallback to A/AAAA with the default port, a change of records seen on
the next resolution, NXDOMAIN and REFUSED as clear errors, a server that is down or
silent as an error within the time bound; and the node's flags (--peers-dns,
--peers-dns-interval, --dns-server) as accepted and refused.

dnsmasq never touches the system's resolver here: --no-resolv --no-hosts, its own config
file, one loopback address, no pid file; it is ended by its PID."""

import os
import shutil
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

from conftest import COLLECTOR_BIN, SANITIZER_MARKS, with_io

DNS_PROBE_BIN = Path(
    os.environ.get("DNS_PROBE_BIN", COLLECTOR_BIN.parent / "tests" / "tools" / "dns_probe")
)
DOMAIN = "mesh.test"
READY_TIMEOUT = 5.0


def free_port():
    """A port free for both UDP and TCP on 127.0.0.1 (dnsmasq binds both)."""
    for _ in range(50):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", 0))
        port = u.getsockname()[1]
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            t.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            t.close()
            u.close()
    raise RuntimeError("no free port for both UDP and TCP")


def dns_query(port, name, qtype, timeout=0.5):
    """The rcode of one UDP query to 127.0.0.1:port, or None without an answer in time."""
    qname = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
    msg = struct.pack(">HHHHHH", 0x5151, 0x0100, 1, 0, 0, 0) + qname + struct.pack(">HH", qtype, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(msg, ("127.0.0.1", port))
        try:
            data = s.recv(4096)
        except (socket.timeout, ConnectionRefusedError):
            return None
    return data[3] & 0x0F


class Dnsmasq:
    """dnsmasq on 127.0.0.1:port serving `lines` (dnsmasq.conf syntax) for DOMAIN alone."""

    def __init__(self, binary, workdir):
        self.binary = binary
        self.workdir = Path(workdir)
        self.port = free_port()
        self.proc = None
        self.generation = 0

    def start(self, lines):
        self.stop()
        self.generation += 1
        conf = self.workdir / f"dnsmasq-{self.generation}.conf"
        # local=: names under DOMAIN are answered from here alone, so a missing one is
        # NXDOMAIN instead of REFUSED for want of an upstream server.
        conf.write_text("\n".join([f"local=/{DOMAIN}/", *lines]) + "\n")
        argv = [
            self.binary, "--no-daemon", f"--port={self.port}", "--listen-address=127.0.0.1",
            "--bind-interfaces", "--no-resolv", "--no-hosts", "--pid-file=",
            "--log-facility=-", f"--conf-file={conf}",
        ]
        self.log = open(self.workdir / f"dnsmasq-{self.generation}.log", "w+")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if dns_query(self.port, f"ready.{DOMAIN}", 1, timeout=0.2) is not None:
                return
            time.sleep(0.05)
        self.log.seek(0)
        out = self.log.read()
        self.stop()
        raise RuntimeError(f"dnsmasq did not answer within {READY_TIMEOUT} s: {out}")

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None
        self.log.close()

    @property
    def server(self):
        return f"127.0.0.1:{self.port}"


def dnsmasq_binary():
    return shutil.which("dnsmasq") or next(
        (p for p in ("/usr/sbin/dnsmasq", "/sbin/dnsmasq") if os.access(p, os.X_OK)), None)


@pytest.fixture
def dns(tmp_path):
    binary = dnsmasq_binary()
    if not binary:
        pytest.skip("dnsmasq is not installed (Debian package dnsmasq-base; `make deps`)")
    d = Dnsmasq(binary, tmp_path)
    try:
        # A first start tells whether dnsmasq can run here at all.
        d.start([])
    except (OSError, RuntimeError) as e:
        d.stop()
        pytest.skip(f"dnsmasq cannot run here: {e}")
    yield d
    d.stop()


def probe(server, name, port=50051, timeout_ms=300, tries=2, total_ms=3000, bound=10):
    if not DNS_PROBE_BIN.exists():
        pytest.fail(f"{DNS_PROBE_BIN} does not exist: build it first (ninja -C build)")
    argv = [str(DNS_PROBE_BIN), "--timeout-ms", str(timeout_ms), "--tries", str(tries),
            "--total-ms", str(total_ms)]
    if server:
        argv += ["--server", server]
    argv += [name, str(port)]
    t0 = time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=bound)
    # On the ASan build a leak also exits 1, like a DNS error: look for the report.
    for mark in SANITIZER_MARKS:
        assert mark not in r.stderr, r.stderr
    return r.returncode, r.stdout.split(), r.stderr.strip(), time.monotonic() - t0


SRV_RECORDS = [
    f"srv-host=_grpc._tcp.svc.{DOMAIN},n1.{DOMAIN},7001,0,10",
    f"srv-host=_grpc._tcp.svc.{DOMAIN},n2.{DOMAIN},7002,0,20",
    f"srv-host=_grpc._tcp.svc.{DOMAIN},n2.{DOMAIN},7012,0,20",
    # A fallback group: RFC 2782 priority; the resolver keeps the lowest group only.
    f"srv-host=_grpc._tcp.svc.{DOMAIN},n3.{DOMAIN},7003,5,10",
    f"host-record=n1.{DOMAIN},10.77.0.1",
    f"host-record=n2.{DOMAIN},10.77.0.2,fd00:77::2",
    f"host-record=n3.{DOMAIN},10.77.0.3",
]


def test_srv_targets_and_ports(dns):
    dns.start(SRV_RECORDS)
    rc, out, err, _ = probe(dns.server, f"svc.{DOMAIN}")
    assert rc == 0, err
    # Sorted: IPv4 before IPv6, then address, then port; n3 (priority 5) left out.
    assert out == ["10.77.0.1:7001", "10.77.0.2:7002", "10.77.0.2:7012",
                   "[fd00:77::2]:7002", "[fd00:77::2]:7012"]


def test_srv_target_through_cname(dns):
    """A target that is an alias: dnsmasq sends no glue for it, so the resolver asks A and
    AAAA of the target and follows the CNAME."""
    dns.start([
        f"srv-host=_grpc._tcp.svc.{DOMAIN},alias.{DOMAIN},7100,0,0",
        f"cname=alias.{DOMAIN},real.{DOMAIN}",
        f"host-record=real.{DOMAIN},10.77.1.1",
    ])
    rc, out, err, _ = probe(dns.server, f"svc.{DOMAIN}")
    assert rc == 0, err
    assert out == ["10.77.1.1:7100"]


def test_fallback_to_a_and_aaaa(dns):
    dns.start([
        f"host-record=plain.{DOMAIN},10.77.2.2,fd00:77::9",
        f"host-record=plain.{DOMAIN},10.77.2.1",
    ])
    rc, out, err, _ = probe(dns.server, f"plain.{DOMAIN}", port=6123)
    assert rc == 0, err
    assert out == ["10.77.2.1:6123", "10.77.2.2:6123", "[fd00:77::9]:6123"]


def test_changed_records_give_the_new_answer(dns):
    dns.start(SRV_RECORDS)
    rc, before, err, _ = probe(dns.server, f"svc.{DOMAIN}")
    assert rc == 0, err
    dns.start([
        f"srv-host=_grpc._tcp.svc.{DOMAIN},n1.{DOMAIN},7001,0,10",
        f"srv-host=_grpc._tcp.svc.{DOMAIN},n4.{DOMAIN},7004,0,10",
        f"host-record=n1.{DOMAIN},10.77.0.1",
        f"host-record=n4.{DOMAIN},10.77.0.4",
    ])
    rc, after, err, _ = probe(dns.server, f"svc.{DOMAIN}")
    assert rc == 0, err
    assert after == ["10.77.0.1:7001", "10.77.0.4:7004"]
    assert after != before


def test_many_targets_are_bounded(dns):
    """More targets than PEER_DNS_MAX_PEERS (64): 64 are kept, the first in sort order,
    and the list says it was cut."""
    lines = []
    for i in range(80):
        lines.append(f"srv-host=_grpc._tcp.big.{DOMAIN},h{i}.{DOMAIN},{8000 + i},0,0")
        lines.append(f"host-record=h{i}.{DOMAIN},10.77.3.{i + 1}")
    dns.start(lines)
    rc, out, err, _ = probe(dns.server, f"big.{DOMAIN}", total_ms=5000)
    assert rc == 0, err
    assert out[-1] == "truncated"
    assert len(out) == 65
    assert len(set(out)) == 65


def test_nxdomain_is_a_clear_error(dns):
    dns.start(SRV_RECORDS)
    rc, out, err, _ = probe(dns.server, f"nosuch.{DOMAIN}")
    assert rc == 1 and out == []
    assert "NXDOMAIN" in err and f"nosuch.{DOMAIN}" in err


def test_name_without_records_is_a_clear_error(dns):
    """The name exists (it has a TXT record) but has no SRV, A or AAAA."""
    dns.start([f"txt-record=empty.{DOMAIN},hello"])
    rc, out, err, _ = probe(dns.server, f"empty.{DOMAIN}")
    assert rc == 1 and out == []
    assert "no SRV, A or AAAA record" in err, err


def test_srv_target_without_address_is_a_clear_error(dns):
    dns.start([f"srv-host=_grpc._tcp.svc.{DOMAIN},gone.{DOMAIN},7001,0,0"])
    rc, out, err, _ = probe(dns.server, f"svc.{DOMAIN}")
    assert rc == 1 and out == []
    assert f"gone.{DOMAIN}" in err and "NXDOMAIN" in err, err


def test_refused_is_a_clear_error(dns):
    """dnsmasq refuses names outside its local domain (it has no upstream server)."""
    rc, out, err, _ = probe(dns.server, "elsewhere.example")
    assert rc == 1 and out == []
    assert "REFUSED" in err, err


def test_server_down_fails_within_the_bound(dns):
    dns.start(SRV_RECORDS)
    server = dns.server
    dns.stop()
    rc, out, err, took = probe(server, f"svc.{DOMAIN}", timeout_ms=300, tries=2, total_ms=2000)
    assert rc == 1 and out == []
    # On loopback a closed port answers ICMP port unreachable at once; either way the
    # call ends within its total bound.
    assert "unreachable" in err or "timeout" in err, err
    assert took < 2.0 + 1.0


def test_silent_server_times_out_within_the_bound():
    """A server that takes the queries and never answers: the total bound ends the call."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as hole:
        hole.bind(("127.0.0.1", 0))
        server = f"127.0.0.1:{hole.getsockname()[1]}"
        rc, out, err, took = probe(server, f"svc.{DOMAIN}", timeout_ms=1000, tries=3,
                                   total_ms=800)
    assert rc == 1 and out == []
    assert "timeout" in err, err
    assert 0.7 < took < 0.8 + 1.0


@pytest.mark.parametrize("flags, message", [
    (["--peers-dns", "bad..name"], "peers-dns"),
    (["--peers-dns", "x" * 64 + ".test"], "63"),
    (["--peers-dns", "ok.test", "--dns-server", "localhost:53"], "dns-server"),
    (["--dns-server", "127.0.0.1:70000"], "dns-server"),
    (["--peers-dns-interval", "0"], "peers-dns-interval"),
])
def test_node_refuses_bad_dns_flags(tmp_path, flags, message):
    r = subprocess.run(with_io([COLLECTOR_BIN, "--listen", "127.0.0.1:0", "--data", tmp_path,
                                *flags]), capture_output=True, text=True, timeout=20)
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr


def test_node_takes_dns_flags_and_config_lines(servers, tmp_path):
    conf = tmp_path / "node.conf"
    conf.write_text(f"peers-dns = svc.{DOMAIN}\npeers-dns-interval = 5\n")
    n = servers.node("--config", conf, "--dns-server", "[::1]:5353")
    assert n.alive()
    n2 = servers.node("--peers-dns", f"svc.{DOMAIN}.", "--dns-server", "127.0.0.1:5353",
                      "--peers-dns-interval", "30")
    assert n2.alive()


def test_help_names_the_dns_flags():
    r = subprocess.run([str(COLLECTOR_BIN), "--help"], capture_output=True, text=True,
                       timeout=20)
    assert r.returncode == 0
    for flag in ("--peers-dns NAME", "--peers-dns-interval N", "--dns-server IP:PORT"):
        assert flag in r.stdout

