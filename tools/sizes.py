#!/usr/bin/env python3
"""Checks the code's size rules (ARCHITECTURE.md, "Size rules"): no source
file over 1,000 lines and no function over 150 lines outside tests, except
the ones listed in ARCHITECTURE.md's exception table.

Usage: tools/sizes.py [--list] [--root DIR]   (--list prints every file and function over
half the limits, largest first)."""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
if "--root" in sys.argv:
    ROOT = pathlib.Path(sys.argv[sys.argv.index("--root") + 1]).resolve()
FILE_LIMIT = 1000
FN_LIMIT = 150
FN_RE = re.compile(r"^\s*(pub(\([a-z ]+\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+([A-Za-z0-9_]+)")


def exceptions():
    """`path` or `path::function` in the exception table of ARCHITECTURE.md."""
    text = (ROOT / "ARCHITECTURE.md").read_text()
    m = re.search(r"<!-- size-exceptions -->(.*?)<!-- /size-exceptions -->", text, re.S)
    if not m:
        return set()
    return set(re.findall(r"^\|\s*`([^`]+)`", m.group(1), re.M))


def is_test_path(p):
    parts = p.relative_to(ROOT).parts
    return "tests" in parts or "benches" in parts or "examples" in parts or p.name == "tests.rs"


def has_body(rest, following):
    """Whether a signature reaches its `{` before a `;` (a declaration)."""
    for text in [rest, *following]:
        text = re.sub(r"//.*$", "", text)
        for c in text:
            if c == "{":
                return True
            if c == ";":
                return False
    return False


def functions(path):
    """(name, first line, length) of each fn outside `#[cfg(test)]` modules."""
    lines = path.read_text().splitlines()
    out = []
    test_depth = None
    depth = 0
    pending_test = False
    stack = []  # (name, start line, depth at open)
    for i, line in enumerate(lines):
        code = re.sub(r"//.*$", "", line)
        code = re.sub(r'"(\\.|[^"\\])*"', '""', code)
        code = re.sub(r"'(\\.|[^'\\])'", "' '", code)
        if "#[cfg(test)]" in code:
            pending_test = True
        m = FN_RE.match(code)
        if m and test_depth is None and has_body(code[m.end():], lines[i + 1:i + 40]):
            stack.append((m.group(6), i + 1, depth))
        opens = code.count("{")
        closes = code.count("}")
        if pending_test and opens:
            test_depth = depth
            pending_test = False
        depth += opens - closes
        while stack and depth <= stack[-1][2] and (opens or closes):
            name, start, d = stack.pop()
            if i + 1 - start > 0:
                out.append((name, start, i + 1 - start + 1))
        if test_depth is not None and depth <= test_depth and closes:
            test_depth = None
    return out


def main():
    listing = "--list" in sys.argv
    allowed = exceptions()
    bad = []
    rows = []
    for p in sorted(ROOT.glob("crates/*/src/**/*.rs")):
        rel = str(p.relative_to(ROOT))
        n = len(p.read_text().splitlines())
        if n > FILE_LIMIT // 2:
            rows.append((n, rel))
        if n > FILE_LIMIT and rel not in allowed:
            bad.append(f"{rel}: {n} lines (limit {FILE_LIMIT})")
        if is_test_path(p):
            continue
        for name, start, length in functions(p):
            if length > FN_LIMIT // 2:
                rows.append((length, f"{rel}:{start} fn {name}"))
            if length > FN_LIMIT and f"{rel}::{name}" not in allowed:
                bad.append(f"{rel}:{start}: fn {name} is {length} lines (limit {FN_LIMIT})")
    if listing:
        for n, what in sorted(rows, reverse=True):
            print(f"{n:6} {what}")
    for b in bad:
        print(b, file=sys.stderr)
    if bad:
        print(f"{len(bad)} size rule(s) broken: split the code or list the exception, "
              "with its reason, in ARCHITECTURE.md", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
