# SPDX-License-Identifier: Apache-2.0
"""GPU tests of the Python package at W = 1 (skipped without a CUDA GPU):
comet's forward against a plain PyTorch MoE written here, eager, under
torch.compile(fullgraph=True), and in a CUDA graph replayed with new inputs;
bad routing raises comet's message; gradients (x, w1, w2, topk_weights)
against the same plain MoE's autograd, eager, compiled and in save mode;
50 SGD steps of a tiny MoE model (router + comet's experts) whose loss
falls."""
import pytest
import torch

import comet
import comet.torch as ct
from plain_moe import reference

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU: GPU tests skipped")


def inputs(T, cfg, seed):
    g = torch.Generator(device="cuda").manual_seed(seed)
    x = torch.randn(T, cfg.hidden, device="cuda", generator=g).bfloat16()
    ids = torch.stack([torch.randperm(cfg.num_experts, device="cuda", generator=g)[:cfg.topk]
                       for _ in range(T)]).int()
    w = torch.rand(T, cfg.topk, device="cuda", generator=g)
    return x, ids, w


def rel_err(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


CFG = comet.LayerConfig(hidden=512, ffn=1024, num_experts=8, topk=2, max_tokens_per_rank=256)


@pytest.fixture(scope="module")
def experts():
    return ct.MoEExperts(CFG, device="cuda")


def test_forward_matches_pytorch(experts):
    x, ids, w = inputs(200, CFG, 1)
    out = experts(x, ids, w)
    torch.cuda.synchronize()
    assert rel_err(out, reference(x, ids, w, experts.w1, experts.w2)) < 1e-2


def test_compile_fullgraph(experts):
    # Inference: the compiled backward is test_compile_fullgraph_with_backward's.
    f = torch.compile(lambda x, i, w: experts(x, i, w) * 2, fullgraph=True)
    x, ids, w = inputs(128, CFG, 2)
    with torch.no_grad():
        got = f(x, ids, w)
    assert rel_err(got, 2 * reference(x, ids, w, experts.w1, experts.w2)) < 1e-2


def test_graph_replays_with_new_inputs(experts):
    x, ids, w = inputs(160, CFG, 3)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        experts(x, ids, w)  # warm-up outside the capture
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        out = experts(x, ids, w)
    for seed in range(4, 9):
        nx, nids, nw = inputs(160, CFG, seed)
        x.copy_(nx), ids.copy_(nids), w.copy_(nw)
        g.replay()
        experts.check()
        assert rel_err(out, reference(x, ids, w, experts.w1, experts.w2)) < 1e-2


def test_bad_ids_raise_comets_message(experts):
    x, ids, w = inputs(16, CFG, 10)
    ids[3, 1] = 99
    with pytest.raises(comet.CometError, match=r"topk_ids\[3\]\[1\] = 99 on rank 0 is out of range"):
        experts(x, ids, w)


def test_backward_gradients_match_plain_pytorch(experts):
    x, ids, w = inputs(96, CFG, 11)
    g = torch.randn(96, CFG.hidden, device="cuda").bfloat16()
    xs, ws = x.clone().requires_grad_(), w.clone().requires_grad_()
    experts.zero_grad()
    experts(xs, ids, ws).backward(g)
    xr, wr = x.float().clone().requires_grad_(), w.clone().requires_grad_()
    w1r = experts.w1.detach().float().clone().requires_grad_()
    w2r = experts.w2.detach().float().clone().requires_grad_()
    reference(xr, ids, wr, w1r, w2r).backward(g.float())
    for name, got, want in (("x", xs.grad, xr.grad), ("topk_weights", ws.grad, wr.grad),
                            ("w1", experts.w1.grad, w1r.grad), ("w2", experts.w2.grad, w2r.grad)):
        assert got is not None and rel_err(got, want) < 1e-2, name


def test_backward_save_mode_matches_plain_pytorch():
    """save_activations=True: the forward keeps z, the backward does not
    recompute fc1; the gradients are the plain MoE's."""
    e = ct.MoEExperts(CFG, device="cuda", save_activations=True)
    x, ids, w = inputs(96, CFG, 13)
    g = torch.randn(96, CFG.hidden, device="cuda").bfloat16()
    xs, ws = x.clone().requires_grad_(), w.clone().requires_grad_()
    out = e(xs, ids, ws)
    out.backward(g)
    xr, wr = x.float().clone().requires_grad_(), w.clone().requires_grad_()
    w1r = e.w1.detach().float().clone().requires_grad_()
    w2r = e.w2.detach().float().clone().requires_grad_()
    ref = reference(xr, ids, wr, w1r, w2r)
    ref.backward(g.float())
    assert rel_err(out, ref) < 1e-2
    for name, got, want in (("x", xs.grad, xr.grad), ("topk_weights", ws.grad, wr.grad),
                            ("w1", e.w1.grad, w1r.grad), ("w2", e.w2.grad, w2r.grad)):
        assert got is not None and rel_err(got, want) < 1e-2, name


def test_saved_z_not_the_forwards_raises(experts):
    """A saved_z of the wrong shape or device is a ValueError naming it."""
    x, ids, w = inputs(8, CFG, 14)
    z = torch.empty(CFG.saved_z_shape, dtype=x.dtype, device="cuda")
    args = (x, x, ids, w, experts.w1, experts.w2, experts.layer().handle)
    with pytest.raises(ValueError, match="comet: saved_z has shape"):
        torch.ops.comet.moe_backward(*args, z[:-1])
    with pytest.raises(ValueError, match="comet: saved_z has shape .* device cpu"):
        torch.ops.comet.moe_backward(*args, z.cpu())


def test_compile_fullgraph_with_backward(experts):
    f = torch.compile(lambda x, i, w: experts(x, i, w).float().sum(), fullgraph=True)
    x, ids, w = inputs(64, CFG, 12)
    xs = x.clone().requires_grad_()
    f(xs, ids, w).backward()
    xr = x.float().clone().requires_grad_()
    reference(xr, ids, w, experts.w1.detach(), experts.w2.detach()).sum().backward()
    assert rel_err(xs.grad, xr.grad) < 1e-2


def test_train_loss_decreases():
    """A tiny MoE regression model: a router (linear, top-2 softmax weights,
    so its gradient comes through d topk_weights) and comet's experts learn
    a fixed random teacher in 50 SGD steps; the loss must fall by half."""
    torch.manual_seed(0)
    cfg = comet.LayerConfig(hidden=256, ffn=512, num_experts=8, topk=2, max_tokens_per_rank=512)
    experts = ct.MoEExperts(cfg, device="cuda")
    router = torch.nn.Linear(cfg.hidden, cfg.num_experts, bias=False, device="cuda")
    teacher = torch.randn(cfg.hidden, cfg.hidden, device="cuda") / cfg.hidden ** 0.5
    x = torch.randn(512, cfg.hidden, device="cuda")
    target = torch.tanh(x @ teacher)
    # lr 0.07: the same model in plain PyTorch on the CPU falls to ~0.12x in 50 steps
    opt = torch.optim.SGD(list(experts.parameters()) + list(router.parameters()), lr=0.07)
    losses = []
    for _ in range(50):
        probs = torch.softmax(router(x), dim=-1)
        w, ids = probs.topk(cfg.topk, dim=-1)
        out = experts(x.bfloat16(), ids.int(), (w / w.sum(-1, keepdim=True)).float())
        loss = ((out.float() - target) ** 2).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses))), losses
    assert router.weight.grad is not None and router.weight.grad.abs().sum() > 0
    assert losses[-1] < 0.5 * losses[0], losses
