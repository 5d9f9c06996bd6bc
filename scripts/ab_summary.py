#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""ab_summary.py — the A/B files of one call (comet bench --json rows, one
file a variant, passes in turns: gpu_pdl_ab.sh, gpu_bands_ab.sh,
gpu_l0path_ab.sh) side by side: per (model, tokens, routing) and variant,
the mean over its passes of comet's forward and layer0 ms, and of each
pass's speedup and layer0 ratio over the baseline timed in that pass;
then each variant's forward time over the first variant's (geomean over
the rows both have).

usage: scripts/ab_summary.py A.jsonl B.jsonl [C.jsonl ...]
"""
import collections
import json
import math
import os
import sys


def load(path):
    rows = collections.defaultdict(list)
    for line in open(path):
        r = json.loads(line)
        if "comet_ms" in r and "baseline_ms" in r:
            rows[(r["model"], r["tokens_per_rank"], r["routing"])].append(r)
    return rows


def mean(xs):
    return sum(xs) / len(xs)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    names = [os.path.basename(p).rsplit(".", 1)[0] for p in sys.argv[1:]]
    data = [load(p) for p in sys.argv[1:]]
    keys = sorted(set().union(*[d.keys() for d in data]))
    print(f"{'row':<34} {'variant':<16} {'n':>2} {'comet':>8} {'layer0':>8} {'speedup':>8} {'l0 ratio':>8}")
    for k in keys:
        for name, d in zip(names, data):
            rs = d.get(k)
            if not rs:
                continue
            print(f"{k[0] + ' ' + str(k[1]) + ' ' + k[2]:<34} {name:<16} {len(rs):>2} "
                  f"{mean([r['comet_ms'] for r in rs]):8.3f} {mean([r['comet_layer0_ms'] for r in rs]):8.3f} "
                  f"{mean([r['speedup'] for r in rs]):8.3f} "
                  f"{mean([r['baseline_layer0_ms'] / r['comet_layer0_ms'] for r in rs]):8.3f}")
    base = data[0]
    for name, d in zip(names[1:], data[1:]):
        common = [k for k in keys if k in base and k in d]
        if not common:
            continue
        lg = [math.log(mean([r["comet_ms"] for r in d[k]]) / mean([r["comet_ms"] for r in base[k]]))
              for k in common]
        print(f"# {name} / {names[0]}: comet forward time, geomean over {len(common)} rows: "
              f"{math.exp(sum(lg) / len(lg)):.4f}")


if __name__ == "__main__":
    main()
