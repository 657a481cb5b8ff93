#!/usr/bin/python3
"""The C files stay as .clang-format lays them out (DESIGN.md, Conventions).

Runs `clang-format --dry-run --Werror` on every C file of src/, include/, tests/unit,
tests/interop, tests/e2e/embed, fuzz/ and bench/, and fails (exit 1) naming the files it
would change; `clang-format -i FILE...` fixes them. Other major versions of clang-format
lay some code out differently, so without clang-format 14 (Debian 12's) the check is
skipped (exit 77) rather than failing a tree that is right.
Run by `meson test` (suite lint), so `make test` fails with the tree.

usage: check_format.py SOURCE_ROOT [CLANG_FORMAT]
"""
import re
import subprocess
import sys
from pathlib import Path

DIRS = ["src", "include", "tests/unit", "tests/interop", "tests/e2e/embed", "fuzz", "bench"]
VERSION = 14
SKIP = 77


def main() -> int:
    root = Path(sys.argv[1])
    tool = sys.argv[2] if len(sys.argv) > 2 else "clang-format"
    try:
        out = subprocess.run([tool, "--version"], capture_output=True, text=True).stdout
    except OSError:
        print(f"{tool} not found: format check skipped")
        return SKIP
    m = re.search(r"version (\d+)\.", out)
    if not m or int(m.group(1)) != VERSION:
        print(f"{out.strip()}: not clang-format {VERSION}, format check skipped")
        return SKIP
    files = sorted(str(p) for d in DIRS for p in (root / d).rglob("*.[ch]") if p.is_file())
    style = f"--style=file:{root / '.clang-format'}"
    r = subprocess.run([tool, "--dry-run", "--Werror", style, *files], capture_output=True,
                       text=True)
    # One "FILE:LINE:COL: error: code should be clang-formatted" per place it would change.
    bad = sorted({line.split(":", 1)[0] for line in r.stderr.splitlines() if ": error: " in line})
    for f in bad:
        print(f"{Path(f).relative_to(root)}: not as .clang-format lays it out (clang-format -i)")
    if r.returncode and not bad:
        print(r.stderr.strip())
    print(f"{len(files)} files checked, {len(bad)} to format")
    return 1 if r.returncode else 0


if __name__ == "__main__":
    sys.exit(main())
