# SPDX-License-Identifier: Apache-2.0
"""_lib.py — libcomet.so through ctypes: the C API's structs and functions,
and comet's status turned into Python exceptions carrying its message.

The library is the one built into this package (or $COMET_LIBRARY). Loading
it checks that the NCCL in the process is the one it was built against (the
NCCL device API has no ABI promise)."""
import ctypes
import dataclasses
import glob
import os

# status codes (include/comet.h)
OK, INVALID_ARGUMENT = 0, 1
DTYPES = {"bf16": 0, "fp16": 1}
ACTIVATIONS = {"swiglu": 0, "gelu": 1, "none": 2}


class CometError(RuntimeError):
    """A comet call failed; the message is comet's (it names the argument)."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class CometArgumentError(CometError, ValueError):
    """comet refused an argument (COMET_ERR_INVALID_ARGUMENT)."""


class _Config(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("hidden", ctypes.c_int), ("ffn", ctypes.c_int),
                ("num_experts", ctypes.c_int), ("topk", ctypes.c_int), ("ep", ctypes.c_int),
                ("tp", ctypes.c_int), ("max_tokens_per_rank", ctypes.c_int),
                ("max_rows_per_rank", ctypes.c_int), ("dtype", ctypes.c_int),
                ("activation", ctypes.c_int)]


class _MoeArgs(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("num_tokens", ctypes.c_int), ("x", ctypes.c_void_p),
                ("topk_ids", ctypes.c_void_p), ("topk_weights", ctypes.c_void_p),
                ("w1", ctypes.c_void_p), ("w2", ctypes.c_void_p), ("out", ctypes.c_void_p),
                ("saved_z", ctypes.c_void_p)]


class _BackwardArgs(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("num_tokens", ctypes.c_int), ("x", ctypes.c_void_p),
                ("topk_ids", ctypes.c_void_p), ("topk_weights", ctypes.c_void_p),
                ("w1", ctypes.c_void_p), ("w2", ctypes.c_void_p), ("dout", ctypes.c_void_p),
                ("dx", ctypes.c_void_p), ("dw1", ctypes.c_void_p), ("dw2", ctypes.c_void_p),
                ("dtopk_weights", ctypes.c_void_p), ("saved_z", ctypes.c_void_p)]


class _Preset(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("hidden", ctypes.c_int), ("ffn", ctypes.c_int),
                ("num_experts", ctypes.c_int), ("topk", ctypes.c_int), ("activation", ctypes.c_int)]


class _UniqueId(ctypes.Structure):
    _fields_ = [("internal", ctypes.c_char * 128)]


def _find_library():
    path = os.environ.get("COMET_LIBRARY")
    if path:
        return path
    here = os.path.dirname(os.path.abspath(__file__))
    found = sorted(glob.glob(os.path.join(here, "libcomet.so*")))
    if not found:
        raise ImportError(f"comet: no libcomet.so in {here}: install the package with `pip install .` "
                          "from comet's repository, or set COMET_LIBRARY")
    return found[0]


def _load():
    path = _find_library()
    try:
        lib = ctypes.CDLL(path)
    except OSError as e:
        raise ImportError(f"comet: cannot load {path}: {e} (it needs the CUDA runtime, cuBLAS and the "
                          "NCCL it was built against: the nvidia-nccl-cu13 wheel of your torch)") from e
    c_int, c_size_t, c_void_p, c_char_p = ctypes.c_int, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_char_p
    sigs = {
        "comet_status_string": (c_char_p, [c_int]),
        "comet_last_error": (c_char_p, []),
        "comet_version": (c_int, []),
        "comet_nccl_build_version": (c_int, []),
        "comet_nccl_check": (c_int, []),
        "comet_config_validate": (c_int, [ctypes.POINTER(_Config), c_int]),
        "comet_config_w1_rows": (c_int, [ctypes.POINTER(_Config)]),
        "comet_config_row_capacity": (ctypes.c_int64, [ctypes.POINTER(_Config)]),
        "comet_config_saved_z_bytes": (ctypes.c_size_t, [ctypes.POINTER(_Config)]),
        "comet_layer_workspace_bytes": (c_int, [ctypes.POINTER(_Config), c_int, ctypes.POINTER(c_size_t)]),
        "comet_preset_count": (c_int, []),
        "comet_preset_at": (ctypes.POINTER(_Preset), [c_int]),
        "comet_get_unique_id": (c_int, [ctypes.POINTER(_UniqueId)]),
        "comet_context_create": (c_int, [ctypes.POINTER(c_void_p), c_int, c_int,
                                         ctypes.POINTER(_UniqueId), c_int]),
        "comet_context_create_from_comm": (c_int, [ctypes.POINTER(c_void_p), c_void_p, c_int]),
        "comet_layer_create": (c_int, [ctypes.POINTER(c_void_p), c_void_p, ctypes.POINTER(_Config)]),
        "comet_layer_set_graph_mode": (c_int, [c_void_p, c_int]),
        "comet_layer_set_n_comm": (c_int, [c_void_p, c_int]),
        "comet_context_set_tuning_table": (c_int, [c_void_p, c_char_p]),
        "comet_layer_check": (c_int, [c_void_p, c_void_p]),
        "comet_moe_forward": (c_int, [c_void_p, ctypes.POINTER(_MoeArgs), c_void_p]),
        "comet_moe_backward": (c_int, [c_void_p, ctypes.POINTER(_BackwardArgs), c_void_p]),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    st = lib.comet_nccl_check()
    if st != OK:
        raise ImportError("comet: " + lib.comet_last_error().decode())
    return lib


LIB = _load()


def check(status):
    """Raises comet's error for a non-OK status."""
    if status == OK:
        return
    msg = LIB.comet_last_error().decode()
    name = LIB.comet_status_string(status).decode()
    cls = CometArgumentError if status == INVALID_ARGUMENT else CometError
    raise cls(status, f"comet: {name}: {msg}")


def version():
    v = LIB.comet_version()
    return f"{v // 10000}.{v // 100 % 100}.{v % 100}"


def nccl_build_version():
    return LIB.comet_nccl_build_version()


@dataclasses.dataclass
class LayerConfig:
    """One MoE layer's shape and layout (comet_layer_config_t)."""

    hidden: int
    ffn: int
    num_experts: int
    topk: int
    ep: int = 1
    tp: int = 1
    max_tokens_per_rank: int = 4096
    max_rows_per_rank: int = 0
    dtype: str = "bf16"
    activation: str = "swiglu"

    def to_c(self):
        if self.dtype not in DTYPES:
            raise ValueError(f"comet: dtype = {self.dtype!r}: one of {sorted(DTYPES)}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"comet: activation = {self.activation!r}: one of {sorted(ACTIVATIONS)}")
        return _Config(ctypes.sizeof(_Config), self.hidden, self.ffn, self.num_experts, self.topk,
                       self.ep, self.tp, self.max_tokens_per_rank, self.max_rows_per_rank,
                       DTYPES[self.dtype], ACTIVATIONS[self.activation])

    @property
    def w1_rows(self):
        c = self.to_c()
        return LIB.comet_config_w1_rows(ctypes.byref(c))

    @property
    def saved_z_shape(self):
        """(rows, w1_rows): the save mode's pre-activations buffer, per rank: the
        row capacity and the rows of the forward's stamp (comet_config_saved_z_bytes)."""
        c = self.to_c()
        n = LIB.comet_config_w1_rows(ctypes.byref(c))
        row_bytes = n * 2  # bf16 and fp16, the dtypes comet has
        return (LIB.comet_config_saved_z_bytes(ctypes.byref(c)) // row_bytes, n)


def validate(cfg: LayerConfig, world_size: int):
    """Raises CometArgumentError (naming the field) if comet refuses cfg on world_size ranks."""
    c = cfg.to_c()
    check(LIB.comet_config_validate(ctypes.byref(c), world_size))


def workspace_bytes(cfg: LayerConfig, world_size: int) -> int:
    """Device memory a layer with cfg takes on each rank."""
    c = cfg.to_c()
    n = ctypes.c_size_t(0)
    check(LIB.comet_layer_workspace_bytes(ctypes.byref(c), world_size, ctypes.byref(n)))
    return n.value


def presets():
    """{name: LayerConfig} of the model shapes comet knows (ep = tp = 1)."""
    names = {v: k for k, v in ACTIVATIONS.items()}
    out = {}
    for i in range(LIB.comet_preset_count()):
        p = LIB.comet_preset_at(i).contents
        out[p.name.decode()] = LayerConfig(p.hidden, p.ffn, p.num_experts, p.topk,
                                           activation=names[p.activation])
    return out
