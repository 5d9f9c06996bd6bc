# SPDX-License-Identifier: Apache-2.0
"""torch_moe.py — comet's PyTorch module against a plain PyTorch MoE, forward +
backward, at W = 1, one JSON line per (model, tokens):

  {"op": "torch_moe", "model", "tokens_per_rank", "comet_ms", "torch_ms",
   "speedup", "comet_fwd_ms", "torch_fwd_ms", "torch_path", "rel_err", ...}

The plain MoE is what a PyTorch training stack writes today: sort the (token,
slot) pairs by expert, gather the rows, torch._grouped_mm with w1, SwiGLU (or
GELU), torch._grouped_mm with w2, scale by the top-k weight, index_add the
rows back (torch_path "grouped_mm"; a per-expert loop of matmuls where
_grouped_mm is missing: "loop"). Both get the same weights, tokens, routing
(uniform random top-k) and output gradient; times are medians of CUDA-event
timed iterations in this process. --save runs comet's module with
save_activations=True (its backward then does not recompute fc1; PyTorch's
autograd saves its activations either way).

    python bench/torch_moe.py [--model a,b] [--tokens 2048,8192] [--iters 10] [--save] [--json FILE]
"""
import argparse
import datetime
import json
import os
import sys
import statistics

import torch

import comet
import comet.torch as ct

MODELS = "mixtral-8x7b,qwen2-moe-2.7b,phi3.5-moe,qwen2-57b-a14b,deepseek-v2-lite"


def act(h, activation, F):
    if activation == "swiglu":
        return torch.nn.functional.silu(h[:, :F]) * h[:, F:]
    if activation == "gelu":
        return torch.nn.functional.gelu(h, approximate="tanh")
    return h


def torch_moe(x, ids, w, w1, w2, activation, grouped):
    """The plain PyTorch MoE (see the top of the file)."""
    T, K = ids.shape
    E, F = w1.shape[0], w2.shape[2]
    flat = ids.flatten()
    order = torch.argsort(flat, stable=True)
    tok = order // K
    xs = x[tok]
    if grouped:
        offs = torch.cumsum(torch.bincount(flat, minlength=E), 0).int()
        h = act(torch._grouped_mm(xs, w1.transpose(1, 2), offs=offs), activation, F)
        y = torch._grouped_mm(h, w2.transpose(1, 2), offs=offs)
    else:
        counts = torch.bincount(flat, minlength=E).tolist()
        ys, r = [], 0
        for e, c in enumerate(counts):
            h = act(xs[r:r + c] @ w1[e].t(), activation, F)
            ys.append(h @ w2[e].t())
            r += c
        y = torch.cat(ys)
    y = y * w.flatten()[order].unsqueeze(1).to(y.dtype)
    return torch.zeros_like(x).index_add_(0, tok, y)


def timed(fn, iters, warmup=3):
    for _ in range(warmup):
        fn()
    ms = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        ms.append(a.elapsed_time(b))
    return statistics.median(ms)


def run(name, cfg, T, iters, save, rows):
    cfg = comet.LayerConfig(**{**cfg.__dict__, "max_tokens_per_rank": T})
    torch.manual_seed(T)
    experts = ct.MoEExperts(cfg, device="cuda", save_activations=save)
    w1 = experts.w1.detach().clone().requires_grad_()
    w2 = experts.w2.detach().clone().requires_grad_()
    x = torch.randn(T, cfg.hidden, device="cuda").bfloat16().requires_grad_()
    ids = torch.rand(T, cfg.num_experts, device="cuda").topk(cfg.topk, dim=-1).indices.int()
    w = torch.rand(T, cfg.topk, device="cuda").requires_grad_()
    g = torch.randn(T, cfg.hidden, device="cuda").bfloat16()
    grouped = hasattr(torch, "_grouped_mm")
    if grouped:
        try:
            torch_moe(x, ids, w, w1, w2, cfg.activation, True).backward(g)
        except RuntimeError:
            grouped = False
    path = "grouped_mm" if grouped else "loop"

    def comet_fwd():
        return experts(x, ids, w)

    def torch_fwd():
        return torch_moe(x, ids, w, w1, w2, cfg.activation, grouped)

    with torch.no_grad():
        want = torch_fwd().float()
        rel = ((comet_fwd().float() - want).norm() / want.norm()).item()
        comet_fwd_ms = timed(comet_fwd, iters)
        torch_fwd_ms = timed(torch_fwd, iters)
    comet_ms = timed(lambda: comet_fwd().backward(g), iters)
    torch_ms = timed(lambda: torch_fwd().backward(g), iters)
    row = {"op": "torch_moe", "model": name, "H": cfg.hidden, "F": cfg.ffn, "E": cfg.num_experts,
           "K": cfg.topk, "world": 1, "tokens_per_rank": T, "comet_ms": round(comet_ms, 4),
           "torch_ms": round(torch_ms, 4), "speedup": round(torch_ms / comet_ms, 4),
           "comet_fwd_ms": round(comet_fwd_ms, 4), "torch_fwd_ms": round(torch_fwd_ms, 4),
           "fwd_speedup": round(torch_fwd_ms / comet_fwd_ms, 4), "torch_path": path,
           "rel_err": round(rel, 6), "save": save, "iters": iters, "device": torch.cuda.get_device_name(0),
           "commit": os.environ.get("COMET_COMMIT", "unknown"), "torch": torch.__version__,
           "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
           "command": " ".join(sys.argv)}
    print(f"{name:18} T {T:6}{' save' if save else ''}: comet {comet_ms:8.3f} ms, torch ({path}) {torch_ms:8.3f} ms -> "
          f"{row['speedup']:.2f}x fwd+bwd ({row['fwd_speedup']:.2f}x fwd), rel err {rel:.2e}", flush=True)
    rows.append(row)
    del experts, w1, w2, x, w, g
    torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=MODELS)
    ap.add_argument("--tokens", default="2048,8192")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--save", action="store_true", help="comet's module with save_activations=True")
    ap.add_argument("--json", default=None, help="append the rows to this JSON Lines file")
    o = ap.parse_args()
    presets = comet.presets()
    for m in o.model.split(","):
        if m not in presets:
            raise SystemExit(f"torch_moe.py: unknown model {m!r} (known: {', '.join(presets)})")
    if not torch.cuda.is_available():
        raise SystemExit("torch_moe.py: no CUDA GPU")
    rows = []
    for m in o.model.split(","):
        for t in o.tokens.split(","):
            run(m, presets[m], int(t), o.iters, o.save, rows)
    if o.json:
        with open(o.json, "a") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
    sp = [r["speedup"] for r in rows]
    print(f"geomean fwd+bwd speedup {statistics.geometric_mean(sp):.3f} over {len(sp)} rows")


if __name__ == "__main__":
    main()
