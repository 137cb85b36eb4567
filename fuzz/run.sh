#!/usr/bin/env bash
# Short coverage-guided fuzzing campaign over every target in fuzz/.
#
#   fuzz/run.sh [SECONDS_PER_TARGET]     (default 6: about a minute in all)
#
# Builds all targets once with cargo-fuzz on the stable toolchain
# (RUSTC_BOOTSTRAP=1, no sanitizer: see docs/FUZZING.md) into fuzz/target,
# then runs each for SECONDS_PER_TARGET. New inputs go to a temporary
# directory, never into the seed corpus in fuzz/corpus/. Crash inputs are
# written to fuzz/artifacts/<target>/ (git-ignored). Exits 1 if any target
# crashed, timed out or ran out of memory.
set -euo pipefail

seconds="${1:-6}"
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 [SECONDS_PER_TARGET]" >&2
    exit 2
fi

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
export PATH="$HOME/.cargo/bin:$PATH"
# Never the main workspace's target dir: other builds hold its lock, and the
# instrumented artifacts have nothing to share with it.
export CARGO_TARGET_DIR="$here/target"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

mapfile -t targets < <(cargo fuzz list)
if [ "${#targets[@]}" -eq 0 ]; then
    echo "fuzz: no targets found" >&2
    exit 1
fi

echo "fuzz: building ${#targets[@]} targets"
build_start=$SECONDS
cargo fuzz build -s none
echo "fuzz: built in $((SECONDS - build_start)) s"

bin_dir="$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

dict_for() {
    case "$1" in
        jwt_*) echo jwt ;;
        jsonrpc_body | sse_message) echo jsonrpc ;;
        host_origin | forwarded_for) echo hosts ;;
        *) echo "$1" ;;
    esac
}

crashes=0
run_start=$SECONDS
for t in "${targets[@]}"; do
    mkdir -p "$work/$t" "$here/artifacts/$t" "$here/corpus/$t"
    # A fixed seed (FUZZ_SEED, default 1) makes the short run in the test
    # command walk the same mutations each time, so a finding there is a
    # change in the code, not luck; FUZZ_SEED=0 lets libFuzzer pick one.
    args=(
        -seed="${FUZZ_SEED:-1}"
        -max_total_time="$seconds"
        -timeout=10
        -rss_limit_mb=2048
        -max_len=8192
        -print_final_stats=1
        -artifact_prefix="$here/artifacts/$t/"
    )
    dict="$here/dict/$(dict_for "$t").dict"
    [ -f "$dict" ] && args+=(-dict="$dict")
    # libFuzzer adds new inputs to the FIRST directory only: a scratch one.
    status=0
    "$bin_dir/$t" "${args[@]}" "$work/$t" "$here/corpus/$t" >"$work/$t.log" 2>&1 || status=$?
    runs="$(sed -n 's/^Done \([0-9]*\) runs in.*/\1/p' "$work/$t.log" | tail -n 1)"
    cov="$(grep -o ' cov: [0-9]*' "$work/$t.log" | tail -n 1 | tr -dc '0-9')"
    if [ "$status" -eq 0 ]; then
        printf 'fuzz: %-18s ok     %10s runs  cov %s\n' "$t" "${runs:-?}" "${cov:-?}"
    else
        crashes=$((crashes + 1))
        printf 'fuzz: %-18s CRASH  (exit %s)  input in %s\n' "$t" "$status" "$here/artifacts/$t/"
        grep -v '^#' "$work/$t.log" | tail -n 40 | sed 's/^/    /'
    fi
done
echo "fuzz: fuzzed for $((SECONDS - run_start)) s"
echo "fuzz: ${#targets[@]} targets, $crashes crashes"
[ "$crashes" -eq 0 ]
