#!/usr/bin/python3
"""The layer rule of DESIGN.md for SQLite: it belongs to src/store/ alone.

Fails (exit 1, naming file and line) when a C file outside src/store/ includes sqlite3.h
or the store's internal header, calls SQLite, or holds SQL in a string literal. The
store's own white-box tests (EXEMPT) check the SQL the store runs and may do all of it.
Run by `meson test` (suite lint), so `make test` fails with the tree.

usage: check_layers.py SOURCE_ROOT
"""
import re
import sys
from pathlib import Path

SCANNED = ["src", "bench", "fuzz", "tests", "tools"]
STORE = Path("src/store")
EXEMPT = {
    Path("tests/unit/test_store.c"): "the store's unit tests read what it wrote",
    Path("tests/unit/test_query.c"): "runs the compiled SQL of the query module",
    Path("fuzz/fuzz_query.c"): "runs the compiled SQL of the query module",
}

INCLUDE = re.compile(r'^\s*#\s*include\s*[<"](sqlite3\.h|store/store_int\.h)[>"]')
CALL = re.compile(r"\bsqlite3_\w+|\bSQLITE_[A-Z_]+\b")
# SQL as the store writes it: statements, clauses and the JSON functions it relies on.
SQL = re.compile(
    r"\bselect\b.*\bfrom\b|\binsert\s+(or\s+\w+\s+)?into\b|\bupdate\s+\w+\s+set\b"
    r"|\bdelete\s+from\b|\bcreate\s+(unique\s+|virtual\s+)?(table|index|trigger|view)\b"
    r"|\bdrop\s+(table|index|trigger|view)\b|\bpragma\s+\w+|\bbegin\s+(immediate|exclusive"
    r"|deferred|transaction)\b|\bsavepoint\s+\w+|\brollback\s+to\b|\bjson_(extract|each|tree"
    r"|set|remove|type)\s*\(|\bsqlite_master\b|\bwhere\s+\w+\s*(=|<>|like\b|in\b)",
    re.IGNORECASE | re.DOTALL)


def strip(text):
    """The code without comments, and the string literals: (line, contents) with adjacent
    literals joined, as the compiler joins them."""
    code, literals = [], []
    i, n, line = 0, len(text), 1
    pending = None  # (line, parts) of literals joined so far
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            line += text.count("\n", i, j)
            i = j
            continue
        if c in "\"'":
            j, buf = i + 1, []
            while j < n and text[j] != c:
                if text[j] == "\\" and j + 1 < n:
                    buf.append(text[j:j + 2])
                    j += 2
                    continue
                buf.append(text[j])
                j += 1
            if c == '"':
                if pending is None:
                    pending = (line, [])
                pending[1].append("".join(buf))
            code.append(c + c)
            line += text.count("\n", i, j)
            i = j + 1
            continue
        if not c.isspace() and pending is not None:
            literals.append((pending[0], "".join(pending[1])))
            pending = None
        if c == "\n":
            line += 1
        code.append(c)
        i += 1
    if pending is not None:
        literals.append((pending[0], "".join(pending[1])))
    return "".join(code), literals


def check(root, path):
    rel = path.relative_to(root)
    text = path.read_text(errors="replace")
    found = []
    for k, l in enumerate(text.splitlines(), 1):
        if INCLUDE.match(l):
            found.append(f"{rel}:{k}: includes {INCLUDE.match(l).group(1)}")
    code, literals = strip(text)
    for k, l in enumerate(code.splitlines(), 1):
        m = CALL.search(l)
        if m and not l.lstrip().startswith("#"):
            found.append(f"{rel}:{k}: calls SQLite ({m.group(0)})")
    for k, lit in literals:
        m = SQL.search(lit)
        if m:
            found.append(f"{rel}:{k}: SQL in a string literal: {m.group(0)[:60]!r}")
    return found


def main():
    root = Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    found = []
    for top in SCANNED:
        for path in sorted((root / top).rglob("*")):
            rel = path.relative_to(root)
            if path.suffix not in (".c", ".h") or rel in EXEMPT:
                continue
            if rel.parts[:2] == STORE.parts or "build" in rel.parts[0]:
                continue
            found += check(root, path)
    for f in found:
        print(f)
    if found:
        print(f"{len(found)} violation(s) of the layer rule: SQLite is src/store/'s alone")
        return 1
    print("layers: no SQLite outside src/store/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
