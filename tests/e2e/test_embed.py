"""The library as an embedder gets it: `meson install --destdir` of the build under test,
then a small C program (embed/embed_node.c) compiled with nothing but
`pkg-config --cflags --libs collector` from that tree; it serves a health check to grpcio
and stops on SIGTERM with exit 0. On the ASan build the program is built with the same
sanitizers, so leaks of open/serve/close are reported."""

import os
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import COLLECTOR_BIN, _finish, binary_has_asan, start_server
from stdgrpc.health.v1 import health_pb2, health_pb2_grpc

SOURCE = Path(__file__).resolve().parent / "embed" / "embed_node.c"


def run(argv, env=None, timeout=120):
    r = subprocess.run([str(a) for a in argv], env=env, capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, f"{' '.join(map(str, argv))}:\n{r.stdout}\n{r.stderr}"
    return r.stdout


@pytest.fixture(scope="module")
def destdir():
    d = Path(tempfile.mkdtemp(prefix="collector-install-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def embed_node(destdir):
    """The program, built against the installed tree only."""
    run(["meson", "install", "-C", COLLECTOR_BIN.parent, "--destdir", destdir,
         "--no-rebuild", "--quiet"])
    [pc] = list(destdir.rglob("pkgconfig/collector.pc"))
    env = dict(os.environ, PKG_CONFIG_PATH=str(pc.parent), PKG_CONFIG_SYSROOT_DIR=str(destdir))
    flags = run(["pkg-config", "--cflags", "--libs", "collector"], env=env).split()
    assert any(f.startswith(f"-I{destdir}") for f in flags), flags
    libdir = next(f[2:] for f in flags if f.startswith("-L"))
    extra = ["-fsanitize=address,undefined"] if binary_has_asan(COLLECTOR_BIN) else []
    exe = destdir / "embed_node"
    # The run path only finds the library in the temporary tree at run time.
    run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", *extra, SOURCE, "-o", exe, *flags,
         f"-Wl,-rpath,{libdir}"], env=env)
    return exe


def test_installed_library_serves_a_health_check(embed_node, tmp_path):
    sp = start_server([embed_node, tmp_path / "data"], "embed_node")
    try:
        stub = health_pb2_grpc.HealthStub(sp.channel())
        resp = stub.Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
        assert (tmp_path / "data" / "node-id").exists()
        assert sp.stop(signal.SIGTERM, timeout=20) == 0, sp.output()
    finally:
        _finish([sp])


def test_installed_library_exports_collector_h_alone(embed_node, destdir):
    """The modules inside (log, pool, buf, timer...) have names an application may use too:
    the library exports the functions of its header and nothing else."""
    header = next(destdir.rglob("include/collector.h")).read_text()
    declared = set(re.findall(r"^\S.*?\b(collector_[a-z_]+)\(", header, re.M))
    [lib] = [p for p in destdir.rglob("libcollector.so.*") if not p.is_symlink()]
    out = run(["nm", "-D", "--defined-only", lib])
    exported = {line.split()[-1].split("@")[0] for line in out.splitlines()
                if line.split()[1] in "TDBR"}
    assert len(declared) >= 9 and exported == declared, (exported ^ declared)
    assert any(p.parent.name == "bin" for p in destdir.rglob("collector")), "no program"
