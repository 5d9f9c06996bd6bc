# SPDX-License-Identifier: Apache-2.0
"""CPU tests of the Python package: what runs without a GPU (the ctypes layer,
config checks, argument checks, the op's registration and fake shape)."""
import pytest
import torch

import comet
import comet.torch as ct


def test_version_and_nccl():
    assert comet.version() == comet.__version__
    assert comet.nccl_build_version() >= 22800


def test_presets():
    p = comet.presets()
    assert p["mixtral-8x7b"].hidden == 4096 and p["mixtral-8x7b"].topk == 2
    assert p["deepseek-v3"].num_experts == 256


def test_validate_names_the_field():
    cfg = comet.LayerConfig(hidden=4096, ffn=14336, num_experts=8, topk=2, ep=3)
    with pytest.raises(ValueError, match="num_experts = 8 is not a multiple of config.ep = 3"):
        comet.validate(cfg, 3)
    with pytest.raises(comet.CometError, match="world_size"):
        comet.validate(comet.LayerConfig(hidden=4096, ffn=14336, num_experts=8, topk=2, ep=2), 4)
    with pytest.raises(ValueError, match="dtype"):
        comet.validate(comet.LayerConfig(hidden=64, ffn=64, num_experts=2, topk=1, dtype="fp32"), 1)


def test_workspace_deepseek_v3_ep8():
    d = comet.presets()["deepseek-v3"]
    d.ep, d.max_tokens_per_rank = 8, 8192
    assert 9.0e9 < comet.workspace_bytes(d, 8) < 10.5e9


def small():
    return comet.LayerConfig(hidden=256, ffn=512, num_experts=8, topk=2, max_tokens_per_rank=64)


def test_module_shapes_and_arg_checks():
    e = ct.MoEExperts(small(), device="cpu")
    assert tuple(e.w1.shape) == (8, 1024, 256) and tuple(e.w2.shape) == (8, 256, 512)
    x = torch.zeros(4, 256, dtype=torch.bfloat16)
    ids = torch.zeros(4, 2, dtype=torch.int32)
    w = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="x has dtype torch.float32"):
        e(x.float(), ids, w)
    with pytest.raises(ValueError, match=r"topk_ids has dtype torch.int64"):
        e(x, ids.long(), w)
    with pytest.raises(ValueError, match=r"topk_weights has shape \[4, 3\], wanted \[4, 2\]"):
        e(x, ids, torch.zeros(4, 3))
    with pytest.raises(ValueError, match="x must be contiguous"):
        e(torch.zeros(256, 4, dtype=torch.bfloat16).t(), ids, w)
    with pytest.raises(ValueError, match="more than max_tokens_per_rank"):
        ct.check_args(e.config, torch.zeros(65, 256, dtype=torch.bfloat16),
                      torch.zeros(65, 2, dtype=torch.int32), torch.zeros(65, 2), e.w1, e.w2)
    with pytest.raises(ValueError, match="comet runs on CUDA devices"):
        e(x, ids, w)
    with pytest.raises(ValueError, match="comet runs bf16 or fp16"):
        ct.MoEExperts(small(), device="cpu", dtype=torch.float32)
    with pytest.raises(ValueError, match=r"n_comm = -1 must be an int >= 0"):
        ct.MoEExperts(small(), device="cpu", n_comm=-1)


def test_op_registered_with_fake_shape():
    assert hasattr(torch.ops.comet, "moe_forward")
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        x = torch.empty(5, 256, dtype=torch.bfloat16, device="meta")
        out = torch.ops.comet.moe_forward(x, torch.empty(5, 2, dtype=torch.int32, device="meta"),
                                          torch.empty(5, 2, device="meta"),
                                          torch.empty(8, 1024, 256, dtype=torch.bfloat16, device="meta"),
                                          torch.empty(8, 256, 512, dtype=torch.bfloat16, device="meta"), 1)
        assert out.shape == (5, 256) and out.dtype == torch.bfloat16


def test_backward_op_registered_with_fake_shapes():
    assert hasattr(torch.ops.comet, "moe_backward")
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        x = torch.empty(5, 256, dtype=torch.bfloat16, device="meta")
        w1 = torch.empty(8, 1024, 256, dtype=torch.bfloat16, device="meta")
        w2 = torch.empty(8, 256, 512, dtype=torch.bfloat16, device="meta")
        w = torch.empty(5, 2, device="meta")
        dx, dw1, dw2, dtw = torch.ops.comet.moe_backward(x, x, torch.empty(5, 2, dtype=torch.int32, device="meta"),
                                                          w, w1, w2, 1)
        assert dx.shape == x.shape and dw1.shape == w1.shape and dw2.shape == w2.shape
        assert dtw.shape == w.shape and dtw.dtype == torch.float32


def test_save_mode_ops_with_fake_shapes():
    """moe_forward_save's fake gives (out, z [row capacity + the stamp's
    row, w1_rows]); the backward op takes that z."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    cfg = comet.LayerConfig(hidden=256, ffn=512, num_experts=8, topk=2, max_tokens_per_rank=64)
    assert cfg.saved_z_shape == (129, 1024)  # 64 tokens x top-2 at EP 1 + the stamp; 2F for SwiGLU

    class Stub:  # the fake reads only the layer's config
        pass

    stub, handle = Stub(), 987654
    stub.cfg = cfg
    ct._layers[handle] = stub
    try:
        with FakeTensorMode():
            x = torch.empty(5, 256, dtype=torch.bfloat16, device="meta")
            ids = torch.empty(5, 2, dtype=torch.int32, device="meta")
            w = torch.empty(5, 2, device="meta")
            w1 = torch.empty(8, 1024, 256, dtype=torch.bfloat16, device="meta")
            w2 = torch.empty(8, 256, 512, dtype=torch.bfloat16, device="meta")
            out, z = torch.ops.comet.moe_forward_save(x, ids, w, w1, w2, handle)
            assert out.shape == x.shape and tuple(z.shape) == (129, 1024) and z.dtype == x.dtype
            dx, dw1, dw2, dtw = torch.ops.comet.moe_backward(x, x, ids, w, w1, w2, handle, z)
            assert dx.shape == x.shape and dw1.shape == w1.shape and dtw.shape == w.shape
    finally:
        del ct._layers[handle]


def test_unknown_layer_handle():
    with pytest.raises(ValueError, match="layer handle 12345 is unknown"):
        torch.ops.comet.moe_forward(torch.zeros(1, 8), torch.zeros(1, 1, dtype=torch.int32),
                                    torch.zeros(1, 1), torch.zeros(1, 8, 8), torch.zeros(1, 8, 8), 12345)


def _bench_module():
    """bench/torch_moe.py (the plain PyTorch MoE the module is timed against)."""
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[2] / "bench" / "torch_moe.py"
    spec = importlib.util.spec_from_file_location("bench_torch_moe", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("grouped", [False, True])
def test_bench_plain_moe_is_the_moe(grouped):
    """The benchmark's plain MoE (sort, grouped GEMMs, index_add) equals a
    per-token loop in fp32, with torch._grouped_mm (its CPU forward) and
    with the per-expert loop."""
    bench = _bench_module()
    if grouped and not hasattr(torch, "_grouped_mm"):
        pytest.skip("torch._grouped_mm is missing in this torch")
    torch.manual_seed(0)
    T, H, F, E, K = 40, 32, 48, 4, 2
    x = torch.randn(T, H).bfloat16()
    w1 = (torch.randn(E, 2 * F, H) / H ** 0.5).bfloat16()
    w2 = (torch.randn(E, H, F) / F ** 0.5).bfloat16()
    ids = torch.rand(T, E).topk(K, dim=-1).indices
    w = torch.rand(T, K)
    want = torch.zeros(T, H)
    for t in range(T):
        for k in range(K):
            e = ids[t, k]
            h = w1[e].float() @ x[t].float()
            want[t] += w[t, k] * (w2[e].float() @ (torch.nn.functional.silu(h[:F]) * h[F:]))
    got = bench.torch_moe(x, ids, w, w1, w2, "swiglu", grouped).float()
    assert ((got - want).norm() / want.norm()).item() < 2e-2
