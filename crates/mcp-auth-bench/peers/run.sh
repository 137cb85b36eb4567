#!/usr/bin/env bash
# Installs the load benchmark's peers and runs every mode: mcp-auth-server
# with no auth, api_key, oauth2 and oauth2 with distinct tokens, then the same
# load against a server on the official Python SDK (JWT verifier over JWKS)
# and one on the official TypeScript SDK (requireBearerAuth + JWKS verifier).
# Extra arguments go to mcp-auth-bench (e.g. --clients 64 --seconds 20).
set -euo pipefail
cd "$(dirname "$0")/../../.."

venv=target/bench-peers/venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import mcp, jwt, cryptography' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'mcp==2.3.0' 'pyjwt[crypto]==2.15.1'
fi
peers=crates/mcp-auth-bench/peers
if [ ! -x "$peers/node_modules/node/bin/node" ] || [ ! -d "$peers/node_modules/@modelcontextprotocol/sdk" ]; then
  (cd "$peers" && npm ci --silent --no-audit --no-fund)
fi
cargo build --release --quiet -p mcp-auth-server -p mcp-auth-bench
exec target/release/mcp-auth-bench \
  --modes none,none-bearer,api_key,oauth2,oauth2-distinct,python-sdk,typescript-sdk \
  --python "$venv/bin/python" "$@"
