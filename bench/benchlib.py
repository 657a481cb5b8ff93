"""What the benchmark scripts share: servers pinned to a core, the load generator, and
table formatting."""
import json
import os
import platform
import re
import statistics
import subprocess
import time
from pathlib import Path

SERVER_CORE = "0"
LOAD_CORE = "1"
CLK_TCK = os.sysconf("SC_CLK_TCK")


class Server:
    def __init__(self, argv):
        self.proc = subprocess.Popen(["taskset", "-c", SERVER_CORE] + argv,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        deadline = time.time() + 20
        self.port = None
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            m = re.match(r"listening on 127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                break
        if not self.port:
            self.stop()
            raise RuntimeError(f"{argv[0]} did not start")
        self.pid = self.proc.pid

    def cpu_seconds(self):
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def status_kib(self, key):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def run_loadgen(build, port, conns, streams, seconds, flags):
    """flags: what to send (--payload/--mode, or --path/--requests); one warm-up second."""
    argv = ["taskset", "-c", LOAD_CORE, str(Path(build) / "bench" / "loadgen"),
            "--target", f"127.0.0.1:{port}", "--connections", str(conns), "--streams",
            str(streams), "--duration", str(seconds), "--warmup", "1", *flags]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"loadgen printed no result: {out.stdout} {out.stderr}")
    r = json.loads(lines[-1])
    if r.get("errors"):
        raise RuntimeError(f"loadgen saw {r['errors']} failed calls: {r.get('first_error')}")
    return {"calls": r["calls"], "rps": r["rps"], "p50_us": r["p50_us"], "p99_us": r["p99_us"],
            "p999_us": r["p999_us"]}


def h2load_unary(port, path, conns, streams, seconds, body):
    """h2load sending the framed request in file body to a unary method for `seconds`.
    Returns calls done, calls succeeded, calls failed, response body bytes, req/s and the
    mean request time in µs (None when h2load printed none). h2load counts a gRPC error
    (HTTP 200, status in the trailers) as a success: callers check the response bytes."""
    argv = ["taskset", "-c", LOAD_CORE, "h2load", "-D", str(seconds), "-c", str(conns), "-m",
            str(streams), "-d", str(body), "-H", "content-type: application/grpc", "-H",
            "te: trailers", f"http://127.0.0.1:{port}{path}"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60).stdout
    m = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed",
                  out)
    # "finished in 4.00s" or, under a second, "finished in 999.08ms".
    t = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out)
    d = re.search(r"\((\d+)\) data", out)
    lat = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", out)
    if not (m and t and d):
        raise RuntimeError(f"h2load output not understood:\n{out}")
    return {"done": int(m.group(1)), "ok": int(m.group(2)), "failed": int(m.group(3)),
            "bytes": int(d.group(1)), "rps": float(t.group(1)),
            "mean_us": to_us(lat.group(3)) if lat else None}


def to_us(s):
    """An h2load duration ("812us", "1.72ms", "2.01s") in µs."""
    m = re.match(r"([\d.]+)(us|ms|s)", s)
    return float(m.group(1)) * {"us": 1, "ms": 1000, "s": 1e6}[m.group(2)]


def varint(n):
    """n as a protobuf varint."""
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def median_of(runs, key):
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def fmt(v, unit=""):
    if v is None:
        return "-"
    if isinstance(v, float) and v >= 100:
        return f"{v:,.0f}{unit}"
    if isinstance(v, float):
        return f"{v:.1f}{unit}"
    return f"{v:,}{unit}"


def ratio(a, b, invert=False):
    if not a or not b:
        return "-"
    return f"{(b / a) if invert else (a / b):.2f}x"


def machine():
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
