# SPDX-License-Identifier: Apache-2.0
"""comet.torch — comet's MoE layer as a PyTorch module and op.

    from comet import LayerConfig
    from comet.torch import MoEExperts
    experts = MoEExperts(LayerConfig(hidden=4096, ffn=14336, num_experts=8, topk=2),
                         device="cuda", dtype=torch.bfloat16)
    out = experts(x, topk_ids, topk_weights)   # x [T, H], ids [T, K] int32, weights [T, K] fp32

`torch.ops.comet.moe_forward` is a custom op (torch.library.custom_op) with a
fake implementation, so torch.compile(fullgraph=True) sees one opaque node;
it runs on the current CUDA stream and can be captured in a CUDA graph (the
layer then runs in comet's graph mode: no host synchronization, a refused
routing gives NaN and `check()` reports it). The backward pass is not built
yet: differentiating through the op raises NotImplementedError.

Ranks: with no process group the layer is one rank (world 1, its own NCCL
communicator of one). With an NCCL process group, comet adopts the group's
communicator where torch exposes it (ProcessGroupNCCL._comm_ptr), else makes
its own from a unique id broadcast over the group; ep * tp must be the
group's size.
"""
import ctypes
import math
from typing import Optional

import torch

from . import _lib
from ._lib import LIB, CometError, LayerConfig, check

_DTYPES = {torch.bfloat16: "bf16", torch.float16: "fp16"}
_layers = {}  # handle -> _Layer, the custom op's int argument


class _Context:
    """One rank's comet context (comet_context_t) on `device`."""

    def __init__(self, device, process_group=None):
        import torch.distributed as dist

        self.ptr = ctypes.c_void_p()
        index = device.index if device.index is not None else torch.cuda.current_device()
        if process_group is None or dist.get_world_size(process_group) == 1:
            uid = _lib._UniqueId()
            check(LIB.comet_get_unique_id(ctypes.byref(uid)))
            check(LIB.comet_context_create(ctypes.byref(self.ptr), 0, 1, ctypes.byref(uid), index))
            return
        if dist.get_backend(process_group) != "nccl":
            raise ValueError(f"comet: process_group uses the {dist.get_backend(process_group)!r} "
                             "backend; comet needs an NCCL process group")
        comm = None
        try:
            backend = process_group._get_backend(torch.device("cuda", index))
            comm = backend._comm_ptr()
        except (AttributeError, RuntimeError):
            comm = None
        if comm:
            check(LIB.comet_context_create_from_comm(ctypes.byref(self.ptr), ctypes.c_void_p(comm), index))
            return
        uid = _lib._UniqueId()
        rank, world = dist.get_rank(process_group), dist.get_world_size(process_group)
        box = [None]
        if rank == 0:
            check(LIB.comet_get_unique_id(ctypes.byref(uid)))
            box[0] = bytes(uid.internal)
        dist.broadcast_object_list(box, src=dist.get_global_rank(process_group, 0), group=process_group)
        uid.internal = box[0]
        check(LIB.comet_context_create(ctypes.byref(self.ptr), rank, world, ctypes.byref(uid), index))


class _Layer:
    """A comet layer (comet_layer_t): its config, context and handle."""

    def __init__(self, cfg: LayerConfig, device, process_group=None, n_comm=0, tuning_table=None):
        self.cfg, self.device = cfg, device
        self.ctx = _Context(device, process_group)
        if tuning_table is not None:
            check(LIB.comet_context_set_tuning_table(self.ctx.ptr, str(tuning_table).encode()))
        self.ptr = ctypes.c_void_p()
        c = cfg.to_c()
        check(LIB.comet_layer_create(ctypes.byref(self.ptr), self.ctx.ptr, ctypes.byref(c)))
        check(LIB.comet_layer_set_n_comm(self.ptr, int(n_comm)))
        self.graph_mode = False
        self.handle = len(_layers) + 1
        _layers[self.handle] = self

    def _call_stream(self, x):
        """The current stream for a call on x; puts the layer in graph mode while it is captured."""
        capturing = torch.cuda.is_current_stream_capturing()
        if capturing != self.graph_mode:
            check(LIB.comet_layer_set_graph_mode(self.ptr, int(capturing)))
            self.graph_mode = capturing
        return torch.cuda.current_stream(x.device).cuda_stream

    def forward(self, x, topk_ids, topk_weights, w1, w2, out, saved_z=None):
        stream = self._call_stream(x)
        a = _lib._MoeArgs(ctypes.sizeof(_lib._MoeArgs), x.shape[0], x.data_ptr(), topk_ids.data_ptr(),
                          topk_weights.data_ptr(), w1.data_ptr(), w2.data_ptr(), out.data_ptr(),
                          saved_z.data_ptr() if saved_z is not None else None)
        check(LIB.comet_moe_forward(self.ptr, ctypes.byref(a), ctypes.c_void_p(stream)))

    def backward(self, dout, x, topk_ids, topk_weights, w1, w2, dx, dw1, dw2, dtw, saved_z=None):
        stream = self._call_stream(x)
        a = _lib._BackwardArgs(ctypes.sizeof(_lib._BackwardArgs), x.shape[0], x.data_ptr(),
                               topk_ids.data_ptr(), topk_weights.data_ptr(), w1.data_ptr(),
                               w2.data_ptr(), dout.data_ptr(), dx.data_ptr(), dw1.data_ptr(),
                               dw2.data_ptr(), dtw.data_ptr(),
                               saved_z.data_ptr() if saved_z is not None else None)
        check(LIB.comet_moe_backward(self.ptr, ctypes.byref(a), ctypes.c_void_p(stream)))

    def check(self):
        """Waits for the current stream; raises comet's error for the last call (graph mode)."""
        stream = torch.cuda.current_stream(self.device).cuda_stream
        check(LIB.comet_layer_check(self.ptr, ctypes.c_void_p(stream)))


def check_args(cfg: LayerConfig, x, topk_ids, topk_weights, w1, w2):
    """ValueError naming the argument unless the tensors fit cfg (per rank)."""
    want = {v: k for k, v in _DTYPES.items()}[cfg.dtype]
    el, fl = cfg.num_experts // cfg.ep, cfg.ffn // cfg.tp
    specs = [
        ("x", x, want, (None, cfg.hidden)),
        ("topk_ids", topk_ids, torch.int32, (x.shape[0] if x.dim() else None, cfg.topk)),
        ("topk_weights", topk_weights, torch.float32, (x.shape[0] if x.dim() else None, cfg.topk)),
        ("w1", w1, want, (el, cfg.w1_rows, cfg.hidden)),
        ("w2", w2, want, (el, cfg.hidden, fl)),
    ]
    for name, t, dtype, shape in specs:
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"comet: {name} must be a tensor, not {type(t).__name__}")
        if t.dtype != dtype:
            raise ValueError(f"comet: {name} has dtype {t.dtype}, wanted {dtype}")
        if t.dim() != len(shape) or any(w is not None and s != w for s, w in zip(t.shape, shape)):
            want_s = "[" + ", ".join("T" if w is None else str(w) for w in shape) + "]"
            raise ValueError(f"comet: {name} has shape {list(t.shape)}, wanted {want_s}")
        if not t.is_contiguous():
            raise ValueError(f"comet: {name} must be contiguous")
    if x.shape[0] > cfg.max_tokens_per_rank:
        raise ValueError(f"comet: x has {x.shape[0]} tokens, more than max_tokens_per_rank = "
                         f"{cfg.max_tokens_per_rank} of the layer")
    for name, t, _, _ in specs:  # devices last: the checks above also run on CPU
        if t.device.type != "cuda":
            raise ValueError(f"comet: {name} is on {t.device}; comet runs on CUDA devices")
        if t.device != x.device:
            raise ValueError(f"comet: {name} is on {t.device}, x on {x.device}")


@torch.library.custom_op("comet::moe_forward", mutates_args=())
def moe_forward(x: torch.Tensor, topk_ids: torch.Tensor, topk_weights: torch.Tensor,
                w1: torch.Tensor, w2: torch.Tensor, layer: int) -> torch.Tensor:
    """out[t] = sum_k topk_weights[t, k] * expert_{topk_ids[t, k]}(x[t]) on this rank's tokens."""
    L = _layers.get(layer)
    if L is None:
        raise ValueError(f"comet: layer handle {layer} is unknown (make layers with MoEExperts)")
    check_args(L.cfg, x, topk_ids, topk_weights, w1, w2)
    out = torch.empty_like(x)
    L.forward(x, topk_ids, topk_weights, w1, w2, out)
    return out


@moe_forward.register_fake
def _moe_forward_fake(x, topk_ids, topk_weights, w1, w2, layer):
    return torch.empty_like(x)


def _layer_of(layer):
    L = _layers.get(layer)
    if L is None:
        raise ValueError(f"comet: layer handle {layer} is unknown (make layers with MoEExperts)")
    return L


@torch.library.custom_op("comet::moe_forward_save", mutates_args=())
def moe_forward_save(x: torch.Tensor, topk_ids: torch.Tensor, topk_weights: torch.Tensor,
                     w1: torch.Tensor, w2: torch.Tensor,
                     layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """moe_forward in save mode: (out, z), z [row capacity, w1_rows] this rank's
    pre-activations, which its backward then does not recompute."""
    L = _layer_of(layer)
    check_args(L.cfg, x, topk_ids, topk_weights, w1, w2)
    out = torch.empty_like(x)
    z = x.new_empty(L.cfg.saved_z_shape)
    L.forward(x, topk_ids, topk_weights, w1, w2, out, z)
    return out, z


@moe_forward_save.register_fake
def _moe_forward_save_fake(x, topk_ids, topk_weights, w1, w2, layer):
    return torch.empty_like(x), x.new_empty(_layer_of(layer).cfg.saved_z_shape)


@torch.library.custom_op("comet::moe_backward", mutates_args=())
def moe_backward(dout: torch.Tensor, x: torch.Tensor, topk_ids: torch.Tensor,
                 topk_weights: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor, layer: int,
                 saved_z: Optional[torch.Tensor] = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dx, dw1, dw2, d topk_weights) of moe_forward given dout (comet_moe_backward:
    it recomputes the forward from x, fc1 too unless saved_z is moe_forward_save's z)."""
    L = _layer_of(layer)
    check_args(L.cfg, x, topk_ids, topk_weights, w1, w2)
    if saved_z is not None and (tuple(saved_z.shape) != tuple(L.cfg.saved_z_shape)
                                or saved_z.dtype != x.dtype or not saved_z.is_contiguous()
                                or saved_z.device != x.device):
        raise ValueError(f"comet: saved_z has shape {list(saved_z.shape)}, dtype {saved_z.dtype}, "
                         f"device {saved_z.device}; moe_forward_save's z is "
                         f"{list(L.cfg.saved_z_shape)} {x.dtype} on {x.device}, contiguous")
    dout = dout.contiguous()
    if dout.shape != x.shape or dout.dtype != x.dtype:
        raise ValueError(f"comet: the gradient has shape {list(dout.shape)} and dtype {dout.dtype}, "
                         f"the output {list(x.shape)} and {x.dtype}")
    dx, dw1, dw2 = torch.empty_like(x), torch.empty_like(w1), torch.empty_like(w2)
    dtw = torch.empty_like(topk_weights)
    L.backward(dout, x, topk_ids, topk_weights, w1, w2, dx, dw1, dw2, dtw, saved_z)
    return dx, dw1, dw2, dtw


@moe_backward.register_fake
def _moe_backward_fake(dout, x, topk_ids, topk_weights, w1, w2, layer, saved_z=None):
    return torch.empty_like(x), torch.empty_like(w1), torch.empty_like(w2), torch.empty_like(topk_weights)


def _setup_context(ctx, inputs, output):
    x, topk_ids, topk_weights, w1, w2, layer = inputs
    ctx.save_for_backward(x, topk_ids, topk_weights, w1, w2)
    ctx.layer = layer


def _backward(ctx, grad):
    x, topk_ids, topk_weights, w1, w2 = ctx.saved_tensors
    dx, dw1, dw2, dtw = moe_backward(grad, x, topk_ids, topk_weights, w1, w2, ctx.layer)
    return dx, None, dtw, dw1, dw2, None


moe_forward.register_autograd(_backward, setup_context=_setup_context)


def _setup_context_save(ctx, inputs, output):
    x, topk_ids, topk_weights, w1, w2, layer = inputs
    ctx.save_for_backward(x, topk_ids, topk_weights, w1, w2, output[1])
    ctx.layer = layer
    ctx.set_materialize_grads(False)  # z's gradient (unused) stays None, not a zero z


def _backward_save(ctx, grad, _grad_z):
    x, topk_ids, topk_weights, w1, w2, z = ctx.saved_tensors
    dx, dw1, dw2, dtw = moe_backward(grad, x, topk_ids, topk_weights, w1, w2, ctx.layer, z)
    return dx, None, dtw, dw1, dw2, None


moe_forward_save.register_autograd(_backward_save, setup_context=_setup_context_save)


class MoEExperts(torch.nn.Module):
    """The expert part of an MoE layer on this rank: w1 [E/ep, w1_rows, H] and
    w2 [E/ep, H, F/tp] (nn.Linear layout; w1_rows = 2F/tp for SwiGLU, gate
    rows then up rows), forward(x, topk_ids, topk_weights) -> out.

    n_comm: CTAs that move data in the fused kernels (0: comet's choice per
    call, from the tuning table or its cost model); tuning_table: a table
    file to choose from instead of the shipped one (comet tune writes them);
    save_activations: keep fc1's output (z, config.saved_z_shape per forward,
    e.g. 16384 x 28672 bf16 = 0.94 GB for Mixtral at 8192 tokens and EP 1)
    for the backward instead of recomputing it there."""

    def __init__(self, config: LayerConfig, process_group=None, device=None, dtype=torch.bfloat16,
                 n_comm=0, tuning_table=None, save_activations=False):
        super().__init__()
        self.save_activations = bool(save_activations)
        if dtype not in _DTYPES:
            raise ValueError(f"comet: dtype {dtype}: comet runs bf16 or fp16")
        if not isinstance(n_comm, int) or n_comm < 0:
            raise ValueError(f"comet: n_comm = {n_comm!r} must be an int >= 0 (0: comet's choice)")
        self._n_comm, self._tuning_table = n_comm, tuning_table
        import torch.distributed as dist

        world = dist.get_world_size(process_group) if process_group is not None else 1
        self.config = LayerConfig(**{**config.__dict__, "dtype": _DTYPES[dtype]})
        _lib.validate(self.config, world)
        c = self.config
        el, fl = c.num_experts // c.ep, c.ffn // c.tp
        self.w1 = torch.nn.Parameter(torch.empty(el, c.w1_rows, c.hidden, device=device, dtype=dtype))
        self.w2 = torch.nn.Parameter(torch.empty(el, c.hidden, fl, device=device, dtype=dtype))
        for w in (self.w1, self.w2):  # as nn.Linear: uniform(-1/sqrt(in), 1/sqrt(in))
            torch.nn.init.uniform_(w, -1 / math.sqrt(w.shape[-1]), 1 / math.sqrt(w.shape[-1]))
        self._process_group = process_group
        self._layer = None
        if self.w1.device.type == "cuda":
            self._layer = _Layer(self.config, self.w1.device, process_group, n_comm, tuning_table)

    def layer(self):
        """The comet layer (made on the first CUDA call: collective over the group)."""
        if self._layer is None or self._layer.device != self.w1.device:
            if self.w1.device.type != "cuda":
                raise ValueError(f"comet: the experts' weights are on {self.w1.device}; move the "
                                 "module to a CUDA device first")
            self._layer = _Layer(self.config, self.w1.device, self._process_group, self._n_comm,
                                 self._tuning_table)
        return self._layer

    def forward(self, x, topk_ids, topk_weights):
        if self._layer is None:  # no layer yet: name a bad argument before the device
            check_args(self.config, x, topk_ids, topk_weights, self.w1, self.w2)
        if self.save_activations and torch.is_grad_enabled():
            return moe_forward_save(x, topk_ids, topk_weights, self.w1, self.w2, self.layer().handle)[0]
        return moe_forward(x, topk_ids, topk_weights, self.w1, self.w2, self.layer().handle)

    def check(self):
        """After a CUDA-graph replay: raises comet's error if the replayed call was refused."""
        self.layer().check()


__all__ = ["MoEExperts", "moe_forward", "moe_forward_save", "check_args", "CometError"]
