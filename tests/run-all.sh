#!/usr/bin/env bash
# Runs every check and test of the workspace, interop included. This is the
# README's test command, and what CI runs (.ci/run). On a fresh machine it
# installs what the tests need: the Rust components below, redis-server
# (Debian), moto (AWS Cognito emulator) and the Python MCP SDK from PyPI into
# a virtualenv under target/, and from npm under tests/interop/: Node 22,
# oidc-provider, the conformance suite, the TypeScript SDK and the MCP
# Inspector; cargo-fuzz for the short fuzzing campaign (fuzz/run.sh); for the
# consent page's browser check, chromium and chromium-driver (Debian) and
# selenium from PyPI in target/browser-venv (tests/browser/consent_page.py
# installs them when missing). Ends with the interop matrix
# (tests/interop/matrix.py).
set -euo pipefail
cd "$(dirname "$0")/.."
# One build of every target in one run: incremental caches would only double
# the disk it takes (tens of GB across the feature configurations). Set
# CARGO_INCREMENTAL=1 to keep them for repeated local runs.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

# Each step's header says how long the run has taken so far; at the end (pass
# or fail) a table lists every step's duration, so a slow step stands out.
steps=()
step_times=()
step() {
  steps+=("$*")
  step_times+=("$SECONDS")
  printf '\n==> [%d s] %s\n' "$SECONDS" "$*"
}
step_report() {
  local i n=${#steps[@]} end
  [ "$n" -gt 0 ] || return 0
  printf '\n==> step durations (s), %d s in all\n' "$SECONDS"
  for ((i = 0; i < n; i++)); do
    if ((i + 1 < n)); then end=${step_times[i + 1]}; else end=$SECONDS; fi
    printf '%6d  %s\n' "$((end - step_times[i]))" "${steps[i]:0:90}"
  done
}
trap step_report EXIT

if command -v rustup >/dev/null 2>&1; then
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi

step "disk: free space for the build"
# A run from a fresh clone builds ~20 GB (target/ ~17, fuzz/target/ ~3): with
# less free, a late step fails with a bare linker error. Said up front.
avail_kb=$(df -Pk . | awk 'NR == 2 { print $4 }')
echo "$((avail_kb / 1024 / 1024)) GB free under $(pwd)"
if [ "${avail_kb:-0}" -lt $((20 * 1024 * 1024)) ]; then
  echo "warning: less than 20 GB free; a build from a fresh clone needs about that much, and a step that runs out fails to link" >&2
fi

step "peers: redis-server and redis-cli (one Redis, a three-primary cluster, a primary with a replica under three sentinels: redis-server --sentinel)"
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  sudo_=""; [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq redis-server redis-tools >/dev/null
fi
redis-server --version
redis-cli --version

step "peers: prometheus (Debian; scrapes the server's /metrics in tests/interop/observability.py)"
if ! command -v prometheus >/dev/null 2>&1; then
  sudo_=""; [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq prometheus >/dev/null
fi
prometheus --version 2>&1 | head -n 1

step "peers: openssl (test certificates for client ID metadata documents over https)"
if ! command -v openssl >/dev/null 2>&1; then
  sudo_=""; [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq openssl >/dev/null
fi
openssl version

step "peers: moto (Cognito emulator) and the official Python MCP SDK"
venv=target/interop/venv
if [ ! -x "$venv/bin/moto_server" ] || ! "$venv/bin/python" -c 'import mcp, jwt, boto3, opentelemetry.proto' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    'moto[cognitoidp,server]>=5.1,<6' 'boto3>=1.34' 'mcp>=2.3,<3' 'pyjwt[crypto]>=2.8' \
    'opentelemetry-proto>=1.27,<2'
fi
export MOTO_SERVER="$PWD/$venv/bin/moto_server" MOTO_PYTHON="$PWD/$venv/bin/python"
export INTEROP_PYTHON="$MOTO_PYTHON"
"$MOTO_PYTHON" -c 'import importlib.metadata as m; print("moto", m.version("moto"), "mcp", m.version("mcp"))'

step "peers: Node 22 and oidc-provider (a real OAuth 2.1 / OIDC authorization server)"
if [ ! -x tests/interop/oidc/node_modules/node/bin/node ] || [ ! -d tests/interop/oidc/node_modules/oidc-provider ]; then
  (cd tests/interop/oidc && npm ci --silent --no-audit --no-fund)
fi
export INTEROP_NODE="$PWD/tests/interop/oidc/node_modules/node/bin/node"
"$INTEROP_NODE" --version

step "peers: the official MCP conformance suite, both lines (pinned: 0.1.16 and 0.2.0-alpha.12)"
for suite in conformance conformance-2026; do
  if [ ! -d "tests/interop/$suite/node_modules/@modelcontextprotocol/conformance" ]; then
    (cd "tests/interop/$suite" && npm ci --silent --no-audit --no-fund)
  fi
done

step "peers: the official TypeScript SDK (v1 and the v2 client) and the MCP Inspector CLI (pinned)"
if [ ! -x tests/interop/clients/node_modules/node/bin/node ] || [ ! -d tests/interop/clients/node_modules/@modelcontextprotocol/inspector ]; then
  (cd tests/interop/clients && npm ci --silent --no-audit --no-fund)
fi

step "peers: the load benchmark's TypeScript SDK server (pinned)"
if [ ! -x crates/mcp-auth-bench/peers/node_modules/node/bin/node ] || [ ! -d crates/mcp-auth-bench/peers/node_modules/@modelcontextprotocol/sdk ]; then
  (cd crates/mcp-auth-bench/peers && npm ci --silent --no-audit --no-fund)
fi

step "format"
cargo fmt --all --check

step "jsonwebtoken must use the aws_lc_rs backend only"
if tree=$(cargo tree --workspace --all-features -e features -i jsonwebtoken 2>/dev/null); then
  if grep -q rust_crypto <<<"$tree"; then
    echo "jsonwebtoken's rust_crypto backend is enabled: with aws_lc_rs also on, the first verify panics" >&2
    exit 1
  fi
fi

step "clippy"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "docs"
# What a plain `cargo doc` documents (the libraries, and every binary not
# named like its package's library), selected explicitly so that
# `--examples` (the workspace has none) can make cargo resolve features as
# the clippy step did, dev-dependencies included: the documentation then
# reuses the dependencies clippy checked instead of checking some 120 of
# them again with a smaller feature set (about two minutes from a clean
# target/).
doc_bins=$(cargo metadata --no-deps --format-version 1 | python3 -c '
import json, sys
for p in json.load(sys.stdin)["packages"]:
    libs = {t["name"] for t in p["targets"] if "lib" in t["kind"]}
    for t in p["targets"]:
        if "bin" in t["kind"] and t["name"].replace("-", "_") not in libs:
            print("--bin", t["name"])')
# shellcheck disable=SC2086 # one word per flag and name
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps --quiet \
  --lib --examples $doc_bins

step "light configurations: clippy on each library with default features off"
for krate in mcp-auth-jwt mcp-auth-strategies mcp-auth-transport mcp-auth-session; do
  cargo clippy -p "$krate" --no-default-features --all-targets --quiet -- -D warnings
done
step "light configurations: tests of jwt, strategies and transport with default features off"
cargo test -p mcp-auth-jwt -p mcp-auth-strategies -p mcp-auth-transport --no-default-features --quiet
step "light configurations: each example with exactly its own dependencies"
for example in example-verify-token example-axum-jwt example-mcp-server; do
  cargo build -p "$example" --quiet
done

step "dependency weight: crates each use pulls in, against the targets (tests/deps/weight.py)"
python3 tests/deps/weight.py

step "every library crate packages for publication (metadata, files, dependency resolution)"
cargo package --workspace --exclude mcp-auth-bench --exclude mcp-auth-integration-tests \
  --exclude example-mcp-server --exclude example-axum-jwt --exclude example-verify-token \
  --no-verify --allow-dirty --quiet

step "tests: build every binary and test target (all features)"
# Tests of one package drive the binaries of others (the client against the
# server, the load benchmark against the server): everything is built
# before any test runs. `cargo test --no-run` builds every binary too, with
# the features the tests resolve (dev-dependencies included); a separate
# `cargo build --bins` would resolve fewer and build every dependency twice.
cargo test --workspace --all-features --no-run --quiet
step "tests: run (unit, integration against the real binaries, interop with Redis, moto, oidc-provider and the Python SDK, doctests)"
cargo test --workspace --all-features --no-fail-fast -- --include-ignored

step "consent page in a real browser: headless Chromium at phone and desktop sizes (tests/browser/consent_page.py; screenshots in docs/img/)"
# Installs chromium, chromium-driver and selenium only when missing; builds its
# fixture with the flags above, so nothing is compiled again (~10 s when installed).
python3 tests/browser/consent_page.py

step "docs: README's embedding snippet compiles in a fresh crate with exactly the dependencies it lists"
python3 tests/docs/readme_embedding.py

step "fuzz: a short coverage-guided campaign over every parser that sees attacker bytes (docs/FUZZING.md)"
bash fuzz/run.sh

step "conformance: mcp-auth-client against both lines of the suite (0.1.16: --suite auth, --suite backcompat; 0.2.0-alpha.12: --requirements 2026-07-28, --suite auth, --suite extensions)"
# Each run fails on a failure its expected-failures.yml does not list, and on a
# listed one that passes. `--requirements` does not fail on the extensions
# (the suite does not score them), so they run again as `--suite extensions`.
client="$PWD/target/debug/mcp-auth-client"
conformance_client() {
  local dir=$1 out=$2
  shift 2
  (
    cd "tests/interop/$dir"
    rm -rf "$out"
    PATH="$PWD/node_modules/node/bin:$PATH" npx --no-install conformance client \
      --command "$client conformance" --timeout 30000 \
      --expected-failures expected-failures.yml -o "$out" "$@"
  )
}
conformance_client conformance results --suite auth
conformance_client conformance results-backcompat --suite backcompat
conformance_client conformance-2026 results-2026-07-28 --requirements 2026-07-28
conformance_client conformance-2026 results-auth --suite auth
conformance_client conformance-2026 results-extensions --suite extensions

step "observability: a real Prometheus scrapes mcp-auth-server's /metrics and an OTLP receiver (official OpenTelemetry protobufs) decodes its spans after a known mix of requests (tests/interop/observability.py)"
"$MOTO_PYTHON" tests/interop/observability.py
# The operator assets: the alert rules load and their unit tests pass.
promtool check rules docs/observability/alerts.yml
promtool test rules docs/observability/alerts_test.yml
python3 -m json.tool docs/observability/grafana-dashboard.json > /dev/null

step "interop matrix: the Python SDK, the TypeScript SDK (v1, v2), the MCP Inspector CLI, the conformance suite (server mode) and mcp-auth-client on both wires against mcp-auth-server, strategy by strategy and through its authorization-server facade"
npm_config_update_notifier=false "$MOTO_PYTHON" tests/interop/matrix.py
