"""Test certificates made with the openssl program: a CA, a server certificate for
localhost / 127.0.0.1, client certificates, each signed by the CA (or by another CA, for
refusals)."""

import subprocess
from pathlib import Path


def _run(*argv, cwd):
    subprocess.run(["openssl", *argv], cwd=cwd, check=True, capture_output=True, timeout=30)


def make_ca(d, name="test-ca"):
    d = Path(d)
    _run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}", cwd=d)
    return d / f"{name}.pem"


def make_cert(d, name, cn, ca="test-ca", san="DNS:localhost,IP:127.0.0.1"):
    """name.pem / name.key signed by ca; returns (cert, key)."""
    d = Path(d)
    _run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
         f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=d)
    (d / f"{name}.ext").write_text(f"subjectAltName={san}\n")
    _run("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
         "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=d)
    return d / f"{name}.pem", d / f"{name}.key"
