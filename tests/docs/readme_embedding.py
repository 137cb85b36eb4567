#!/usr/bin/env python3
"""Compiles README's embedding snippet in a fresh crate with exactly the
dependencies README lists, so the section cannot drift from what compiles.

It takes the first ```toml block and the first ```rust block of the section
"## Use the crates in your own MCP server", writes them to a new crate under
target/readme-embedding/ (the `path = "../mcp-auth/..."` dependencies point at
this checkout, as they would from a sibling folder), reuses the workspace's
Cargo.lock (the same versions, so the workspace's build is reused) and runs
`cargo check`. Exits non-zero, naming the failure, when it does not compile.
"""
import pathlib
import re
import shutil
import subprocess
import sys

root = pathlib.Path(__file__).resolve().parents[2]
readme = (root / "README.md").read_text()
section = readme.split("## Use the crates in your own MCP server", 1)
if len(section) != 2:
    sys.exit("README has no section '## Use the crates in your own MCP server'")
body = section[1].split("\n## ", 1)[0]
toml = re.search(r"```toml\n(.*?)```", body, re.S)
rust = re.search(r"```rust[^\n]*\n(.*?)```", body, re.S)
if not toml or not rust:
    sys.exit("the section needs a ```toml and a ```rust block")

crate = root / "target" / "readme-embedding"
if crate.exists():
    shutil.rmtree(crate)
(crate / "src").mkdir(parents=True)
deps = toml.group(1).replace('path = "../mcp-auth/', f'path = "{root}/')
(crate / "Cargo.toml").write_text(
    '[package]\nname = "readme-embedding"\nversion = "0.0.0"\nedition = "2024"\n'
    "publish = false\n\n[workspace]\n\n" + deps
)
(crate / "src" / "main.rs").write_text(rust.group(1))
shutil.copy(root / "Cargo.lock", crate / "Cargo.lock")
listed = re.findall(r"^([a-z0-9_-]+)\s*=", deps, re.M)
print(f"readme-embedding: compiling with exactly {', '.join(listed)}")
# `cargo check`: whether the snippet compiles with exactly these
# dependencies is what can drift; code generation and linking add nothing
# to that and cost a build of every dependency with this feature set.
r = subprocess.run(
    ["cargo", "check", "--quiet", "--manifest-path", str(crate / "Cargo.toml")],
    env={**__import__("os").environ, "CARGO_TARGET_DIR": str(root / "target")},
)
if r.returncode != 0:
    sys.exit("readme-embedding: README's embedding snippet does not compile with the listed dependencies")
print("readme-embedding: compiles")
