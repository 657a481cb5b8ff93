#!/usr/bin/python3
"""The layer rules of DESIGN.md and the README that a machine can check.

Fails (exit 1, naming file and line) when:
- a C file outside src/store/ includes sqlite3.h or the store's internal header, calls
  SQLite, or holds SQL in a string literal (SQLite is src/store/'s alone). The store's own
  white-box tests (EXEMPT) check the SQL the store runs and may do all of it;
- a file of src/base/ includes a header of ours that is not in src/base/ (base is below
  every layer: it depends on nothing of ours);
- a file of src/ outside src/base/ calls the C library's allocator (malloc, calloc,
  realloc, strdup, free, asprintf...) instead of base/mem.h, whose hook the tests use to
  make allocations fail (ALLOC_EXEMPT lists the files allowed, with the reason).
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
    Path("bench/snapshot_stall.c"): "measures SQLite's own snapshot methods against each other, "
                                    "to choose the one src/store/snapshot.c uses",
}

BASE = Path("src/base")
# Our headers are quoted; the libraries' come in angle brackets.
OUR_INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"')
ALLOC = re.compile(r"(?<![\w.>])(malloc|calloc|realloc|reallocarray|strdup|strndup|free|asprintf"
                   r"|vasprintf|posix_memalign|aligned_alloc|memalign|valloc)\s*\(")
ALLOC_EXEMPT = {
    Path("src/base/mem.c"): "the hook itself: the one caller of the C library's allocator",
    Path("src/base/mem.h"): "the hook's inline fast path",
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


def check_base(root, path):
    """A file of src/base/: its headers of ours are src/base/'s."""
    rel = path.relative_to(root)
    found = []
    for k, l in enumerate(path.read_text(errors="replace").splitlines(), 1):
        m = OUR_INCLUDE.match(l)
        if m and not m.group(1).startswith("base/"):
            found.append(f"{rel}:{k}: base includes {m.group(1)}, a layer above it")
    return found


def check_alloc(root, path):
    """A file of src/: it allocates through base/mem.h."""
    rel = path.relative_to(root)
    if rel in ALLOC_EXEMPT:
        return []
    code, _ = strip(path.read_text(errors="replace"))
    found = []
    for k, l in enumerate(code.splitlines(), 1):
        m = ALLOC.search(l)
        if m and not l.lstrip().startswith("#"):
            found.append(f"{rel}:{k}: calls {m.group(1)}() instead of base/mem.h")
    return found


def main():
    root = Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    sql, base, alloc = [], [], []
    for top in SCANNED:
        for path in sorted((root / top).rglob("*")):
            rel = path.relative_to(root)
            if path.suffix not in (".c", ".h") or "build" in rel.parts[0]:
                continue
            if rel.parts[:2] == BASE.parts:
                base += check_base(root, path)
            if rel.parts[0] == "src":
                alloc += check_alloc(root, path)
            if rel in EXEMPT or rel.parts[:2] == STORE.parts:
                continue
            sql += check(root, path)
    for f in sql + base + alloc:
        print(f)
    if sql:
        print(f"{len(sql)} violation(s) of the layer rule: SQLite is src/store/'s alone")
    if base:
        print(f"{len(base)} violation(s) of the layer rule: src/base/ depends on nothing of ours")
    if alloc:
        print(f"{len(alloc)} allocation(s) around base/mem.h, whose hook the tests use")
    if sql or base or alloc:
        return 1
    print("layers: no SQLite outside src/store/, base depends on nothing of ours, "
          "allocations go through base/mem.h")
    return 0


if __name__ == "__main__":
    sys.exit(main())
