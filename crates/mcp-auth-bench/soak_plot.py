#!/usr/bin/env python3
"""Draws the soak's samples (mcp-auth-bench --soak-seconds) as one PNG: the server's RSS, open
file descriptors and threads, and the requests served per second, against time, with the
warm-up shaded.

    python3 crates/mcp-auth-bench/soak_plot.py target/soak/samples.csv docs/img/soak.png [--warmup 60]

Needs matplotlib (`pip install matplotlib` into any venv).
"""
import argparse
import csv

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("samples")
    ap.add_argument("png")
    ap.add_argument("--warmup", type=float, default=60.0)
    args = ap.parse_args()
    with open(args.samples, newline="") as f:
        rows = list(csv.DictReader(f))
    t = [float(r["seconds"]) / 60 for r in rows]
    rss = [float(r["rss_mib"]) for r in rows]
    fds = [int(r["open_fds"]) for r in rows]
    threads = [int(r["threads"]) for r in rows]
    served = [int(r["requests"]) for r in rows]
    first = float(rows[0]["seconds"]) if rows else 1.0
    rate = [served[0] / max(first, 1e-9) if served else 0.0] + [
        (b - a) / max(float(rows[i + 1]["seconds"]) - float(rows[i]["seconds"]), 1e-9)
        for i, (a, b) in enumerate(zip(served, served[1:]))
    ]

    fig, axes = plt.subplots(4, 1, figsize=(9, 9), sharex=True)
    panels = [
        (rss, "RSS (MiB)", "tab:blue"),
        (fds, "open file descriptors", "tab:orange"),
        (threads, "threads (tasks)", "tab:green"),
        (rate, "requests/s", "tab:gray"),
    ]
    for ax, (ys, label, color) in zip(axes, panels):
        ax.plot(t, ys, color=color, linewidth=1)
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0, top=max(ys) * 1.15 if max(ys) > 0 else 1)
        ax.axvspan(0, args.warmup / 60, color="0.92", zorder=0)
        ax.grid(True, linewidth=0.3)
    axes[0].text(
        args.warmup / 120, max(rss) * 1.05, "warm-up", ha="center", va="top", fontsize=8, color="0.4"
    )
    axes[-1].set_xlabel("minutes")
    total = served[-1] if served else 0
    fig.suptitle(
        f"mcp-auth-server soak: {t[-1]:.0f} min, {total:,} requests "
        "(sessions, logins, refusals, event streams, parked sessions)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(args.png, dpi=110)


if __name__ == "__main__":
    main()
