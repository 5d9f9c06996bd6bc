#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""plot_moe.py — one PNG per MoE bench run: comet's speedup over the baseline
of the same run, per config (model, layout, tokens per rank), from the JSON
Lines `comet bench --json` writes. The PNG goes beside the file.

    python3 bench/results/plot_moe.py bench/results/moe-2xh200-2026-11-27-c24f5f0/bench.jsonl
"""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def rows(path):
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                r = json.loads(line)
                if r.get("op", "moe") == "moe" and r.get("speedup") is not None:
                    yield r


def main(path):
    rs = list(rows(path))
    if not rs:
        print(f"{path}: no MoE rows with a speedup (loopback runs have no baseline)")
        return 1
    labels = [f"{r['model']}\nep{r['ep']}xtp{r['tp']} T{r['tokens_per_rank']}" for r in rs]
    speed = [r["speedup"] for r in rs]
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(rs)), 4))
    ax.bar(range(len(rs)), speed, color=["tab:green" if s >= 1 else "tab:red" for s in speed])
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(rs)))
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_ylabel("speedup over the baseline (same run)")
    r0 = rs[0]
    ax.set_title(f"comet bench: {r0.get('device', '?')} x{r0.get('world', '?')}, "
                 f"commit {r0.get('commit', '?')}, {r0.get('date', '?')[:10]}", fontsize=9)
    for i, s in enumerate(speed):
        ax.text(i, s, f"{s:.2f}", ha="center", va="bottom", fontsize=7)
    fig.tight_layout()
    out = os.path.splitext(path)[0] + ".png"
    fig.savefig(out, dpi=120)
    print(out)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
