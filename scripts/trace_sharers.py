#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""trace_sharers.py — sums up `comet bench --op gemm --trace` rows (op
gemm_trace), per shape: the launch's span, the median tile time by the
tile's rows (<= 64, 65-127, full), and how far apart the tiles that read one
B tile (same group and N-tile) start, in full-tile times: if they start
together, L2 serves B to all of them; spread apart, B comes from DRAM again.
Also how much earlier a B tile's short sharers (<= 64 rows: one consumer
warpgroup idle, so the other runs faster) end than its full ones: a short
tile that runs ahead of its sharers reads B before them, beyond what L2
holds by the end (session 18 run 1: ~55 us, a third of a tile, on
Mixtral's routed layer1). Then the end of the launch: the CTAs' end times
and busy time, and the split tail's parts (session 19 run 1: Mixtral's
routed layer1 spends ~96 us on 56 us of tail work).

usage: scripts/trace_sharers.py TRACE.jsonl [SHAPE-SUBSTRING]
"""
import collections
import json
import statistics
import sys


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    want = sys.argv[2] if len(sys.argv) > 2 else ""
    by_shape = collections.defaultdict(list)
    for line in open(sys.argv[1]):
        r = json.loads(line)
        if r.get("op") == "gemm_trace" and want in r["shape"]:
            by_shape[(r["shape"], r["epilogue"])].append(r)
    for (shape, epi), rows in by_shape.items():
        span = max(r["end_ns"] for r in rows) / 1e3
        dur = collections.defaultdict(list)
        for r in rows:
            kind = "full" if r["rows"] >= 128 else ("<=64" if r["rows"] <= 64 else "65-127")
            dur[kind].append((r["end_ns"] - r["start_ns"]) / 1e3)
        full = statistics.median(dur["full"]) if dur["full"] else 1.0
        starts = collections.defaultdict(list)
        by_b = collections.defaultdict(list)
        for r in rows:
            starts[(r["group"], r["n_tile"])].append(r["start_ns"] / 1e3)
            by_b[(r["group"], r["n_tile"])].append(r)
        spread = sorted((max(s) - min(s)) / full for s in starts.values() if len(s) > 1)
        print(f"{shape} ({epi}): {len(rows)} items on {len(set(r['cta'] for r in rows))} CTAs, "
              f"span {span:.0f} us")
        for kind in ("full", "65-127", "<=64"):
            if dur[kind]:
                print(f"  {kind:>6} rows: {len(dur[kind])} tiles, median {statistics.median(dur[kind]):.1f} us")
        leads = []
        parts = collections.Counter(r["tile"] for r in rows)  # split tiles: several items
        for v in by_b.values():
            v = [r for r in v if parts[r["tile"]] == 1]
            full_ends = [r["end_ns"] for r in v if r["rows"] > 64]
            if full_ends:
                e = statistics.median(full_ends)
                leads += [(e - r["end_ns"]) / 1e3 for r in v if r["rows"] <= 64]
        if leads:
            print(f"  <=64-row sharers end {statistics.median(leads):.1f} us "
                  f"({statistics.median(leads) / full:.2f} full-tile times) before the full ones "
                  f"(median of {len(leads)} whole tiles)")
        if spread:
            q = lambda f: spread[min(len(spread) - 1, int(f * len(spread)))]
            late = sum(1 for s in spread if s > 0.25) / len(spread)
            print(f"  B-tile sharers' start spread (full-tile times): median {q(0.5):.3f}, "
                  f"p90 {q(0.9):.3f}, max {spread[-1]:.3f}; {100 * late:.0f}% of B tiles over 0.25")
        tail(rows, parts, span)


def tail(rows, parts, span):
    """The launch's end: when the CTAs finish, how busy they were, and the
    split tail (tiles of several items: their parts and each tile's last
    part, which sums the others' slots)."""
    end = collections.defaultdict(int)
    busy = collections.defaultdict(float)
    for r in rows:
        end[r["cta"]] = max(end[r["cta"]], r["end_ns"])
        busy[r["cta"]] += (r["end_ns"] - r["start_ns"]) / 1e3
    e = sorted(x / 1e3 for x in end.values())
    print(f"  CTAs end: min {e[0]:.0f}, median {statistics.median(e):.0f}, max {e[-1]:.0f} us; "
          f"mean busy {statistics.mean(busy.values()):.0f} us ({statistics.mean(busy.values()) / span:.2f} of the span)")
    split = [r for r in rows if parts[r["tile"]] > 1]
    if not split:
        return
    by_tile = collections.defaultdict(list)
    for r in split:
        by_tile[r["tile"]].append(r)
    last = [max(v, key=lambda r: r["end_ns"]) for v in by_tile.values()]
    rest = [r for v in by_tile.values() for r in v if r is not max(v, key=lambda q: q["end_ns"])]
    d = lambda r: (r["end_ns"] - r["start_ns"]) / 1e3
    print(f"  split tail: {len(by_tile)} tiles in {len(split)} parts ({len(split) // len(by_tile)} a tile), "
          f"first part starts at {min(r['start_ns'] for r in split) / 1e3:.0f} us; part median "
          f"{statistics.median(map(d, rest)):.1f} us, a tile's last part (its sum) "
          f"{statistics.median(map(d, last)):.1f} us")


if __name__ == "__main__":
    main()
