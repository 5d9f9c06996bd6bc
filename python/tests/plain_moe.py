# SPDX-License-Identifier: Apache-2.0
"""The plain PyTorch MoE the GPU tests compare comet against (test_gpu.py,
dist_check.py): fp32, expert by expert, SwiGLU."""
import torch


def reference(x, ids, w, w1, w2):
    """out[t] = sum_k w[t, k] * w2[e] (silu(gate) * up), [gate; up] = w1[e] x[t], e = ids[t, k]."""
    x, w1, w2 = x.float(), w1.float(), w2.float()
    out = torch.zeros_like(x)
    F = w2.shape[2]
    for e in range(w1.shape[0]):
        t, k = (ids == e).nonzero(as_tuple=True)
        if t.numel() == 0:
            continue
        h = x[t] @ w1[e].t()
        h = torch.nn.functional.silu(h[:, :F]) * h[:, F:]
        out = out.index_add(0, t, (h @ w2[e].t()) * w[t, k].unsqueeze(1))
    return out
