#!/usr/bin/env bash
# A headless "browser" for the OAuth tests: follows the authorization URL
# through login, consent and the redirect to the client's loopback callback,
# keeping cookies. Set as $BROWSER. Records each invocation in
# $BROWSER_LOG when set.
set -euo pipefail
[ -n "${BROWSER_LOG:-}" ] && echo "$1" >> "$BROWSER_LOG"
jar=$(mktemp)
trap 'rm -f "$jar"' EXIT
curl -sS -L --max-time 30 --max-redirs 20 -c "$jar" -b "$jar" -o /dev/null "$1"
