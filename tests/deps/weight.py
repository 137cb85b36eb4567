#!/usr/bin/env python3
"""Dependency weight: prints how many crates each way of using the library
crates pulls in, and fails past the targets of issue #15.

Counted as `cargo tree -e normal` does: unique (name, version) pairs of
normal dependencies, the crate itself included, build and dev dependencies
excluded. Also checks README's examples table against examples/: the crate
set each example lists is its Cargo.toml's [dependencies], and its line
count is its src/main.rs.

    python3 tests/deps/weight.py
"""
import pathlib
import re
import subprocess
import sys
import tomllib

root = pathlib.Path(__file__).resolve().parents[2]

# (what a user wants, cargo tree arguments, target or None)
USES = [
    ("mcp-auth-core: the trait, principal, errors", ["-p", "mcp-auth-core"], 25),
    ("verify JWTs with a static key (mcp-auth-jwt, no default features)",
     ["-p", "mcp-auth-jwt", "--no-default-features"], 40),
    ("API keys only (mcp-auth-strategies, no default features)",
     ["-p", "mcp-auth-strategies", "--no-default-features"], 75),
    ("AuthLayer + Principal in a plain axum app (mcp-auth-transport, no default features)",
     ["-p", "mcp-auth-transport", "--no-default-features"], 90),
    ("mcp-auth-jwt with JWKS and discovery (default)", ["-p", "mcp-auth-jwt"], None),
    ("mcp-auth-strategies (default: jwt)", ["-p", "mcp-auth-strategies"], None),
    ("mcp-auth-transport (default: mcp)", ["-p", "mcp-auth-transport"], None),
    ("examples/verify-token", ["-p", "example-verify-token"], None),
    ("examples/axum-jwt", ["-p", "example-axum-jwt"], None),
    ("examples/mcp-server", ["-p", "example-mcp-server"], None),
]


def count(args):
    out = subprocess.run(
        ["cargo", "tree", "-e", "normal", "--prefix", "none", *args],
        cwd=root, capture_output=True, text=True,
    )
    if out.returncode != 0:
        sys.exit(f"cargo tree {' '.join(args)} failed:\n{out.stderr}")
    crates = set()
    for line in out.stdout.splitlines():
        parts = line.replace(" (*)", "").replace(" (proc-macro)", "").split()
        if len(parts) >= 2:
            crates.add((parts[0], parts[1]))
    return len(crates)


failures = []
width = max(len(u[0]) for u in USES)
print(f"{'use':<{width}}  crates  target")
for what, args, target in USES:
    n = count(args)
    mark = "" if target is None else (f"<= {target}" if n <= target else f"<= {target}  OVER")
    print(f"{what:<{width}}  {n:>6}  {mark}")
    if target is not None and n > target:
        failures.append(f"{what}: {n} crates, target {target}")

# README's examples table.
readme = (root / "README.md").read_text()
rows = re.findall(r"^\| \[`(examples/[a-z-]+)`\]\([^)]*\) \|[^|]*\| (.*?) \| (\d+) \|$", readme, re.M)
examples = sorted(p.name for p in (root / "examples").iterdir() if (p / "Cargo.toml").exists())
listed = sorted(pathlib.Path(r[0]).name for r in rows)
if listed != examples:
    failures.append(f"README's examples table lists {listed}, examples/ holds {examples}")
for path, crates, lines in rows:
    manifest = tomllib.loads((root / path / "Cargo.toml").read_text())
    want = []
    for name, spec in manifest.get("dependencies", {}).items():
        off = isinstance(spec, dict) and spec.get("default-features") is False
        want.append(f"`{name}`" + (" (no default features)" if off else ""))
    got = [c.strip() for c in crates.split(",")]
    if sorted(got) != sorted(want):
        failures.append(f"README: {path} lists {got}, its Cargo.toml has {want}")
    actual = len((root / path / "src" / "main.rs").read_text().splitlines())
    if int(lines) != actual:
        failures.append(f"README: {path} says {lines} lines, src/main.rs has {actual}")

if failures:
    sys.exit("dependency weight:\n  " + "\n  ".join(failures))
print("dependency weight: within targets; README's examples table matches examples/")
