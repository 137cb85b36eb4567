#!/usr/bin/env bash
# Runs every check and test of the workspace. This is the README's test
# command, and what CI runs (.ci/run). Safe to run on a fresh machine: it
# installs what it needs (today only the Rust components below).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

if command -v rustup >/dev/null 2>&1; then
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi

step "format"
cargo fmt --all --check

step "jsonwebtoken must use the aws_lc_rs backend only"
if tree=$(cargo tree --workspace -e features -i jsonwebtoken 2>/dev/null); then
  if grep -q rust_crypto <<<"$tree"; then
    echo "jsonwebtoken's rust_crypto backend is enabled: with aws_lc_rs also on, the first verify panics" >&2
    exit 1
  fi
fi

step "clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "docs"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet

step "tests (unit, integration against the real binary, doctests)"
cargo test --workspace --no-fail-fast
