#!/usr/bin/env python3
"""Instructions per request of the server in benchmark modes, under callgrind.

Time per call moves by several percent from run to run on a shared machine;
the number of instructions the server executes per request does not (a few
tenths of a percent). This runs `mcp-auth-bench` for each mode with the server
under `valgrind --tool=callgrind`, dumps the counts every few seconds, keeps the
dumps taken under steady load, divides by the responses hyper wrote in them,
and prints each mode's instructions per request and, against the first mode,
the functions that account for the difference (self cost per request).

    cargo build --release -p mcp-auth-server -p mcp-auth-bench
    python3 crates/mcp-auth-bench/instructions.py oauth2 oauth2-audit oauth2-observed

Needs valgrind (`apt-get install valgrind`). Under valgrind the CPU has no
SHA extensions, so SHA-256 runs in software and reads several times what it
costs natively; the report names it apart.
"""

import argparse
import collections
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

# One per response the server writes.
PER_REQUEST = "<hyper::proto::h1::role::Server as hyper::proto::h1::Http1Transaction>::encode"
SHA = re.compile(r"sha256|compress256|SHA256")


def parse(path):
    """Self cost per function and calls per callee in one callgrind dump."""
    names = {}
    self_cost = collections.Counter()
    calls = collections.Counter()
    fn = cfn = None
    pending = None

    def name(tok):
        m = re.match(r"\((\d+)\)(?:\s+(.*))?", tok)
        if not m:
            return tok
        if m.group(2):
            names[m.group(1)] = m.group(2)
        return names.get(m.group(1), m.group(1))

    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("fn="):
                fn = name(line[3:].strip())
            elif line.startswith("cfn="):
                cfn = name(line[4:].strip())
            elif line.startswith("calls="):
                pending = int(line[6:].split()[0])
            elif line[:1].isdigit() or line[:1] in "+-*":
                parts = line.split()
                if len(parts) < 2:
                    continue
                if pending is not None:
                    calls[cfn] += pending
                    pending = None
                else:
                    self_cost[fn] += int(parts[1])
    return self_cost, calls


def run_mode(args, mode, out_dir):
    valgrind = shutil.which("valgrind")
    if not valgrind:
        sys.exit("valgrind not found (apt-get install valgrind)")
    wrapper = os.path.join(out_dir, "server.sh")
    with open(wrapper, "w") as f:
        f.write(
            f"#!/bin/sh\nexec {valgrind} --tool=callgrind "
            f"--callgrind-out-file={out_dir}/{mode}.%p {os.path.abspath(args.server)} \"$@\"\n"
        )
    os.chmod(wrapper, 0o755)
    stop = threading.Event()

    def dump():
        while not stop.wait(args.dump_every):
            subprocess.run(["callgrind_control", "-d"], capture_output=True)

    t = threading.Thread(target=dump, daemon=True)
    t.start()
    bench = subprocess.run(
        [args.bench, "--server", wrapper, "--modes", mode, "--seconds", str(args.seconds),
         "--clients", "4", "--idle-sessions", "0"],
        capture_output=True, text=True,
    )
    stop.set()
    t.join()
    if bench.returncode != 0:
        sys.exit(f"{mode}: mcp-auth-bench failed:\n{bench.stderr[-2000:]}")
    dumps = sorted(glob.glob(f"{out_dir}/{mode}.*.*"), key=lambda p: int(p.rsplit(".", 1)[1]))
    # The first dumps hold start-up and warm-up, the last the shutdown.
    steady = dumps[2:-1]
    if not steady:
        sys.exit(f"{mode}: too few dumps; try more --seconds")
    total = collections.Counter()
    requests = 0
    for d in steady:
        self_cost, calls = parse(d)
        total.update(self_cost)
        requests += calls[PER_REQUEST]
    if requests == 0:
        sys.exit(f"{mode}: no responses in the steady dumps")
    return {k: v / requests for k, v in total.items()}, requests


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("modes", nargs="+")
    p.add_argument("--bench", default="target/release/mcp-auth-bench")
    p.add_argument("--server", default="target/release/mcp-auth-server")
    p.add_argument("--seconds", type=int, default=30)
    p.add_argument("--dump-every", type=float, default=4.0)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--keep", metavar="DIR",
                   help="keep the callgrind dumps in DIR (for callgrind_annotate --inclusive=yes)")
    args = p.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = tmp
        if args.keep:
            os.makedirs(args.keep, exist_ok=True)
            out_dir = os.path.abspath(args.keep)
        for mode in args.modes:
            results[mode] = run_mode(args, mode, out_dir)
    base_mode = args.modes[0]
    base, _ = results[base_mode]
    print("| mode | requests counted | instructions per request | of which SHA-256 (software here) | against the first |")
    print("|---|---|---|---|---|")
    for mode, (cost, n) in results.items():
        all_ = sum(cost.values())
        sha = sum(v for k, v in cost.items() if SHA.search(k))
        diff = all_ - sum(base.values())
        print(f"| {mode} | {n} | {all_:,.0f} | {sha:,.0f} | {diff:+,.0f} |")
    for mode, (cost, _) in list(results.items())[1:]:
        print(f"\n{mode} against {base_mode}, self instructions per request:")
        diff = {k: cost.get(k, 0) - base.get(k, 0) for k in set(cost) | set(base)}
        for k, v in sorted(diff.items(), key=lambda kv: -abs(kv[1]))[: args.top]:
            print(f"{v:+9,.0f}  {k[:140]}")


if __name__ == "__main__":
    main()
