# SPDX-License-Identifier: Apache-2.0
"""torch_moe.py — a small MoE transformer feed-forward block whose experts run
in comet: a forward, the same block under torch.compile, then a few SGD
steps (comet's backward gives the gradients of x, the experts' weights and,
through the top-k weights, the router).

    python examples/torch_moe.py                         # one GPU
    torchrun --nproc-per-node 4 examples/torch_moe.py    # expert-parallel over 4 GPUs

Each rank routes its own tokens (a plain linear router, top-k softmax
weights); comet sends them to the experts' ranks and back.
"""
import os

import torch
import torch.distributed as dist

from comet import LayerConfig
from comet.torch import MoEExperts


class MoEBlock(torch.nn.Module):
    def __init__(self, hidden, ffn, experts, topk, tokens, group=None):
        super().__init__()
        world = dist.get_world_size(group) if group is not None else 1
        self.topk = topk
        self.norm = torch.nn.RMSNorm(hidden, device="cuda", dtype=torch.bfloat16)
        self.router = torch.nn.Linear(hidden, experts, bias=False, device="cuda", dtype=torch.bfloat16)
        cfg = LayerConfig(hidden=hidden, ffn=ffn, num_experts=experts, topk=topk, ep=world,
                          max_tokens_per_rank=tokens)
        self.experts = MoEExperts(cfg, process_group=group, device="cuda", dtype=torch.bfloat16)

    def forward(self, x):
        h = self.norm(x)
        probs = torch.softmax(self.router(h).float(), dim=-1)
        weights, ids = probs.topk(self.topk, dim=-1)
        weights = weights / weights.sum(-1, keepdim=True)
        return x + self.experts(h, ids.int(), weights)


def main():
    group = None
    if "WORLD_SIZE" in os.environ:
        dist.init_process_group("nccl")
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        group = dist.group.WORLD
    rank = dist.get_rank() if group is not None else 0
    torch.manual_seed(0)
    block = MoEBlock(hidden=1024, ffn=2048, experts=16, topk=2, tokens=2048, group=group)
    torch.manual_seed(1 + rank)
    x = torch.randn(1536 + 128 * rank, 1024, device="cuda", dtype=torch.bfloat16)
    with torch.no_grad():
        y = block(x)
        f = torch.compile(block, fullgraph=True)
        y2 = f(x)
    torch.cuda.synchronize()
    print(f"[rank {rank}] {x.shape[0]} tokens: |y| = {y.float().norm():.3f}, "
          f"compiled differs by {(y2.float() - y.float()).abs().max():.3g}")
    target = torch.randn_like(x)
    opt = torch.optim.SGD(block.parameters(), lr=1e-3)
    for step in range(5):
        loss = (block(x).float() - target.float()).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        print(f"[rank {rank}] step {step}: loss {loss.item():.5f}")
    if group is not None:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
