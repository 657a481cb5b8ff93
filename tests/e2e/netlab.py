"""A network lab for mesh tests: N node network namespaces on one bridge, reachable from the
test process itself, with links that a test can cut and slow down.

    with NetLab(3) as lab:
        p = lab.run(0, [collector, "--listen", f"{lab.addr(0)}:50051", ...])
        grpc.insecure_channel(f"{lab.addr(0)}:50051")   # straight from pytest
        lab.cut(0); ...; lab.restore(0)
        lab.netem(1, delay_ms=100); ...; lab.clear_netem(1)

Layout (every name carries a random suffix S, so that concurrent runs do not meet):

    root ns:  nlSr  10.X.Y.1/24 ----+
    hub  ns "nlSh": bridge br0 <----+ uplink        (the bridge sits in a namespace of its own:
                                 +-- p0 ... pN-1   the root's bridges and firewall are
    node ns "nlSnI": eth0 10.X.Y.(I+2)/24 --+      never touched)

X.Y is random and checked against the root namespace's routes, so the /24 is this lab's
alone: the test's traffic to it never leaves the machine (the root's route to it is the
lab's veth). cut(i) takes node i's port on the bridge down (a pulled cable: the node's
own interface and address stay); netem(i) shapes that port's egress, the way to node i.

Teardown (exit, or close()) kills every process in the lab's namespaces by PID (those
run() started first, gently), then deletes the namespaces and the root veth, even after a
failure half-way through setup. Without CAP_NET_ADMIN or network namespaces the lab raises
pytest.skip with the kernel's words."""

import ipaddress
import os
import random
import secrets
import shutil
import signal
import subprocess
import time

import pytest

CMD_TIMEOUT = 10.0
REFUSALS = ("operation not permitted", "permission denied", "not supported",
            "unknown device type", "no such device")
STOP_TIMEOUT = 10.0


class NetLabError(RuntimeError):
    pass


def _ip_binary():
    return shutil.which("ip") or next(
        (p for p in ("/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip") if os.access(p, os.X_OK)), None)


def _tc_binary():
    return shutil.which("tc") or next(
        (p for p in ("/usr/sbin/tc", "/sbin/tc") if os.access(p, os.X_OK)), None)


class NetLab:
    def __init__(self, n, prefix="nl"):
        if not 1 <= n <= 200:
            raise ValueError("a lab has 1 to 200 nodes")
        self.n = n
        self.suffix = secrets.token_hex(2)
        tag = f"{prefix}{self.suffix}"
        # Interface names are at most 15 characters; these are at most 10.
        self.hub = f"{tag}h"
        self.nodes = [f"{tag}n{i}" for i in range(n)]
        self.root_if = f"{tag}r"
        self._tmp_if = f"{tag}t"
        self.net = None
        self._made_ns = []
        self._made_root_if = False
        self._procs = []
        self._ip = _ip_binary()
        self._tc = _tc_binary()

    # ---- setup and teardown ----

    def __enter__(self):
        if not self._ip:
            pytest.skip("netlab: no `ip` program (Debian package iproute2)")
        if os.geteuid() != 0:
            pytest.skip("netlab: network namespaces need root (CAP_NET_ADMIN)")
        try:
            self._setup()
        except NetLabError as e:
            # The first namespace refused, or a kind of link the kernel lacks: the
            # machine's limit, not the lab's bug (which is raised).
            refused = not self._made_ns or any(
                w in str(e).lower() for w in REFUSALS)
            self.close()
            if refused:
                pytest.skip(f"netlab: the kernel refuses the lab here: {e}")
            raise
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _cmd(self, argv, check=True):
        r = subprocess.run([str(a) for a in argv], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=CMD_TIMEOUT)
        if check and r.returncode:
            raise NetLabError(f"{' '.join(map(str, argv))}: {r.stderr.strip() or r.returncode}")
        return r

    def _ipns(self, ns, *args, check=True):
        return self._cmd([self._ip, "-n", ns, *args], check=check)

    def _pick_net(self):
        """A random 10.X.Y.0/24 that no route of the root namespace overlaps."""
        used = []
        out = self._cmd([self._ip, "-4", "route", "show", "table", "all"]).stdout
        for line in out.splitlines():
            words = line.split()
            dst = words[1] if words and words[0] in ("local", "broadcast", "unicast") else (
                words[0] if words else "")
            if dst in ("", "default"):
                continue
            try:
                used.append(ipaddress.ip_network(dst, strict=False))
            except ValueError:
                continue
        rng = random.Random(secrets.randbits(32))
        for _ in range(200):
            net = ipaddress.ip_network(f"10.{rng.randint(64, 250)}.{rng.randint(0, 255)}.0/24")
            if not any(net.overlaps(u) for u in used):
                return net
        raise NetLabError("no free 10.X.Y.0/24 among the root namespace's routes")

    def _add_ns(self, name):
        self._cmd([self._ip, "netns", "add", name])
        self._made_ns.append(name)
        self._ipns(name, "link", "set", "lo", "up")

    def _veth_into(self, a_name, a_ns, b_name, b_ns):
        """A veth pair with a_name in a_ns and b_name in b_ns (None: the root namespace),
        made in the root under unique names and moved, so that a failure half-way leaves
        nothing a later run could meet."""
        ta, tb = self._tmp_if + "a", self._tmp_if + "b"
        self._cmd([self._ip, "link", "add", ta, "type", "veth", "peer", "name", tb])
        try:
            for tmp, name, ns in ((ta, a_name, a_ns), (tb, b_name, b_ns)):
                if ns:
                    self._cmd([self._ip, "link", "set", tmp, "netns", ns])
                    self._ipns(ns, "link", "set", tmp, "name", name)
                else:
                    self._cmd([self._ip, "link", "set", tmp, "name", name])
        except NetLabError:
            for tmp in (ta, tb):
                self._cmd([self._ip, "link", "del", tmp], check=False)
            raise

    def _setup(self):
        self.net = self._pick_net()
        hosts = list(self.net.hosts())
        self._root_addr = str(hosts[0])
        self._addrs = [str(hosts[i + 1]) for i in range(self.n)]
        plen = self.net.prefixlen

        self._add_ns(self.hub)
        self._ipns(self.hub, "link", "add", "br0", "type", "bridge")
        self._ipns(self.hub, "link", "set", "br0", "up")

        self._veth_into(self.root_if, None, "uplink", self.hub)
        self._made_root_if = True
        self._cmd([self._ip, "addr", "add", f"{self._root_addr}/{plen}", "dev", self.root_if])
        self._cmd([self._ip, "link", "set", self.root_if, "up"])
        self._ipns(self.hub, "link", "set", "uplink", "master", "br0", "up")

        for i, ns in enumerate(self.nodes):
            self._add_ns(ns)
            self._veth_into("eth0", ns, f"p{i}", self.hub)
            self._ipns(ns, "addr", "add", f"{self._addrs[i]}/{plen}", "dev", "eth0")
            self._ipns(ns, "link", "set", "eth0", "up")
            self._ipns(self.hub, "link", "set", f"p{i}", "master", "br0", "up")

    def close(self):
        """Removes all the lab made; safe to call twice and after a failed setup."""
        problems = []
        # Processes first, while their namespaces still exist to be listed.
        for p in self._procs:
            self._stop(p.pid, p)
        self._procs.clear()
        for ns in self._made_ns:
            r = self._cmd([self._ip, "netns", "pids", ns], check=False)
            for pid in r.stdout.split():
                self._stop(int(pid), None)
        for ns in reversed(self._made_ns):
            r = self._cmd([self._ip, "netns", "del", ns], check=False)
            if r.returncode:
                problems.append(f"netns del {ns}: {r.stderr.strip()}")
        self._made_ns.clear()
        # Deleting the hub deletes the root end of its veth; this is for a setup that
        # failed between the two.
        for name in (self.root_if, self._tmp_if + "a", self._tmp_if + "b"):
            if self._ip and os.path.exists(f"/sys/class/net/{name}"):
                self._cmd([self._ip, "link", "del", name], check=False)
        self._made_root_if = False
        if problems:
            raise NetLabError("; ".join(problems))

    @staticmethod
    def _stop(pid, popen):
        """SIGTERM, then SIGKILL after STOP_TIMEOUT; by PID, never by name."""
        def gone():
            if popen is not None:
                return popen.poll() is not None
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            return False

        for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, 5.0)):
            if gone():
                return
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and not gone():
                time.sleep(0.05)

    # ---- what a test uses ----

    def addr(self, i):
        """Node i's IPv4 address (a string)."""
        return self._addrs[i]

    @property
    def root_addr(self):
        """The test process's address on the lab's network."""
        return self._root_addr

    def exec_argv(self, i, argv):
        """argv run inside node i's namespace (`ip netns exec` execs it: the PID of the
        process started is argv's own)."""
        return [self._ip, "netns", "exec", self.nodes[i], *[str(a) for a in argv]]

    def run(self, i, argv, **popen_kw):
        """subprocess.Popen of argv inside node i's namespace; stopped at teardown."""
        p = subprocess.Popen(self.exec_argv(i, argv), **popen_kw)
        self._procs.append(p)
        return p

    def cut(self, i):
        """Pulls node i's cable: its port on the bridge goes down."""
        self._ipns(self.hub, "link", "set", f"p{i}", "down")

    def restore(self, i):
        self._ipns(self.hub, "link", "set", f"p{i}", "up")

    def netem(self, i, delay_ms=None, loss_pct=None):
        """Delay and/or loss on the way to node i (its bridge port's egress): a round trip
        with node i takes delay_ms more. pytest.skip when the kernel has no sch_netem."""
        if not self._tc:
            pytest.skip("netlab: no `tc` program (Debian package iproute2)")
        spec = []
        if delay_ms is not None:
            spec += ["delay", f"{float(delay_ms)}ms"]
        if loss_pct is not None:
            spec += ["loss", f"{float(loss_pct)}%"]
        if not spec:
            raise ValueError("netem: give delay_ms, loss_pct or both")
        r = self._cmd([self._ip, "netns", "exec", self.hub, self._tc, "qdisc", "replace",
                       "dev", f"p{i}", "root", "netem", *spec], check=False)
        if r.returncode:
            err = r.stderr.strip()
            if "unknown" in err.lower() or "not supported" in err.lower():
                pytest.skip(f"netlab: the kernel has no netem qdisc (sch_netem): {err}")
            raise NetLabError(f"tc qdisc replace ... netem {' '.join(spec)}: {err}")

    def clear_netem(self, i):
        r = self._cmd([self._ip, "netns", "exec", self.hub, self._tc, "qdisc", "del", "dev",
                       f"p{i}", "root"], check=False)
        # No qdisc of ours there: nothing to clear.
        if r.returncode and "No such file" not in r.stderr and "Cannot delete" not in r.stderr:
            raise NetLabError(f"tc qdisc del dev p{i} root: {r.stderr.strip()}")
