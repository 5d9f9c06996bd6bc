# SPDX-License-Identifier: Apache-2.0
"""dist_check.py — comet's PyTorch module on several GPUs, under
`torchrun --nproc-per-node W python/tests/dist_check.py` (the multi-GPU run
issues; pytest does not collect it):

  for each layout (EP W; EP W/2 x TP 2 when W is even):
    forward    out of each rank's own tokens against a plain fp32 PyTorch
               MoE with the full weights (every rank makes the same ones)
    backward   dx and d topk_weights of its tokens, dw1 / dw2 of its expert
               shard against the reference's, summed over every rank's
               tokens (all_reduce) and sliced as comet shards them
    train      20 SGD steps of router + experts on a fixed teacher: the
               mean loss over the ranks must halve

Relative error < 1e-2 in fp32. One JSON line per check into
$COMET_TEST_JSONL (rank 0): {"op": "torch_test", "test", "world", "ep",
"tp", "result", ...}. Exit 1 if any check failed.
"""
import datetime
import json
import os
import sys

import torch
import torch.distributed as dist

import comet
import comet.torch as ct
from plain_moe import reference

H, F, E, K = 512, 1024, 8, 2


def shard(w1, w2, rank, ep, tp):
    """comet's shard of rank = g * tp + i: experts of group g, columns i of F
    (w1: the gate rows then the up rows of that slice)."""
    g, i, el, fl = rank // tp, rank % tp, E // ep, F // tp
    ex = slice(g * el, (g + 1) * el)
    s1 = torch.cat([w1[ex, i * fl:(i + 1) * fl], w1[ex, F + i * fl:F + (i + 1) * fl]], dim=1)
    return s1, w2[ex, :, i * fl:(i + 1) * fl]


def rel_err(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-30)).item()


def tokens_of(rank, seed, dev):
    g = torch.Generator(device=dev).manual_seed(seed * 100 + rank)
    T = 96 + 16 * rank  # unequal tokens per rank
    x = torch.randn(T, H, device=dev, generator=g).bfloat16()
    ids = torch.stack([torch.randperm(E, device=dev, generator=g)[:K] for _ in range(T)]).int()
    w = torch.rand(T, K, device=dev, generator=g)
    return x, ids, w


def check_layout(ep, tp, rank, world, dev, record):
    cfg = comet.LayerConfig(hidden=H, ffn=F, num_experts=E, topk=K, ep=ep, tp=tp,
                            max_tokens_per_rank=256)
    torch.manual_seed(0)  # the same full weights on every rank
    w1 = (torch.randn(E, 2 * F, H, device=dev) / H ** 0.5).bfloat16()
    w2 = (torch.randn(E, H, F, device=dev) / F ** 0.5).bfloat16()
    experts = ct.MoEExperts(cfg, process_group=dist.group.WORLD, device=dev)
    s1, s2 = shard(w1, w2, rank, ep, tp)
    with torch.no_grad():
        experts.w1.copy_(s1)
        experts.w2.copy_(s2)

    x, ids, w = tokens_of(rank, 1, dev)
    gout = torch.randn(x.shape[0], H, device=dev).bfloat16()
    xs, ws = x.clone().requires_grad_(), w.clone().requires_grad_()
    out = experts(xs, ids, ws)
    out.backward(gout)
    xr, wr = x.float().clone().requires_grad_(), w.clone().requires_grad_()
    w1r, w2r = w1.float().clone().requires_grad_(), w2.float().clone().requires_grad_()
    ref = reference(xr, ids, wr, w1r, w2r)
    ref.backward(gout.float())
    dist.all_reduce(w1r.grad)  # every rank's tokens reach the shards
    dist.all_reduce(w2r.grad)
    r1, r2 = shard(w1r.grad, w2r.grad, rank, ep, tp)
    record("forward", rel_err(out, ref))
    for name, got, want in (("backward_dx", xs.grad, xr.grad), ("backward_dtopk", ws.grad, wr.grad),
                            ("backward_dw1", experts.w1.grad, r1), ("backward_dw2", experts.w2.grad, r2)):
        record(name, rel_err(got, want) if got is not None else float("inf"))

    # train: router + experts learn a fixed teacher on each rank's tokens
    torch.manual_seed(1)
    router = torch.nn.Linear(H, E, bias=False, device=dev)
    dist.broadcast(router.weight.data, 0)
    teacher = torch.randn(H, H, device=dev) / H ** 0.5
    dist.broadcast(teacher, 0)
    xt = tokens_of(rank, 2, dev)[0].float()
    target = torch.tanh(xt @ teacher)
    # the loss is the mean of the ranks' losses: the experts' gradients, which
    # comet sums over every rank's tokens, count 1 / world each (lr 0.07: the
    # one-GPU model in plain PyTorch falls to ~0.04x in 20 steps on the CPU)
    opt = torch.optim.SGD([{"params": experts.parameters(), "lr": 0.07 / world},
                           {"params": router.parameters(), "lr": 0.07}])
    losses = []
    for _ in range(20):
        p = torch.softmax(router(xt), dim=-1)
        wt, it = p.topk(K, dim=-1)
        o = experts(xt.bfloat16(), it.int(), (wt / wt.sum(-1, keepdim=True)).float())
        loss = ((o.float() - target) ** 2).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        for prm in router.parameters():  # the router is replicated: average its gradient
            dist.all_reduce(prm.grad)
            prm.grad /= world
        opt.step()
        mean = loss.detach().clone()
        dist.all_reduce(mean)
        losses.append(mean.item() / world)
    record("train", losses[-1] / losses[0], limit=0.5)


def main():
    dist.init_process_group("nccl")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", rank)))
    dev = torch.device("cuda", torch.cuda.current_device())
    layouts = [(world, 1)] + ([(world // 2, 2)] if world % 2 == 0 and world > 1 else [])
    failed = 0
    rows = []
    for ep, tp in layouts:
        def record(name, value, limit=1e-2):
            nonlocal failed
            bad = torch.tensor([0 if value < limit else 1], device=dev)
            dist.all_reduce(bad)  # a check passes only where it passes on every rank
            ok = bad.item() == 0
            failed += not ok
            rows.append({"op": "torch_test", "test": f"dist_{name}", "world": world, "ep": ep, "tp": tp,
                         "result": "pass" if ok else "fail", "value": round(value, 6), "limit": limit})
            if rank == 0:
                print(f"EP {ep} x TP {tp} {name}: {'pass' if ok else 'FAIL'} (rank 0: {value:.3g}, "
                      f"limit {limit})", flush=True)

        check_layout(ep, tp, rank, world, dev, record)
    path = os.environ.get("COMET_TEST_JSONL")
    if rank == 0 and path:
        extra = {"device": torch.cuda.get_device_name(dev), "commit": os.environ.get("COMET_TEST_COMMIT", "unknown"),
                 "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                 "command": "torchrun --nproc-per-node %d %s" % (world, " ".join(sys.argv))}
        with open(path, "a") as f:
            for r in rows:
                f.write(json.dumps({**r, **extra}) + "\n")
    dist.destroy_process_group()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
