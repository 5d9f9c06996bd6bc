# SPDX-License-Identifier: Apache-2.0
"""comet: Mixture-of-Experts layers across GPUs (CUDA, Hopper).

`comet` itself is a thin ctypes layer over libcomet.so (config checks,
presets, workspace sizes, contexts and layers); `comet.torch` has the
PyTorch module and ops. Importing `comet` needs no GPU.
"""
from ._lib import (  # noqa: F401
    CometError,
    LayerConfig,
    nccl_build_version,
    presets,
    validate,
    version,
    workspace_bytes,
)

__version__ = "0.1.0"
