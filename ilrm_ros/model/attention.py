"""Scaled dot-product attention for the model's blocks, and the choice of its CUDA kernel.

PyTorch picks an SDPA kernel per call (flash, memory-efficient, cuDNN, math), in an order that
depends on its version. On the H100 the cuDNN kernel is the fastest for iLRM's long global
self-attention (1.55x flash at 32 views, docs/benchmarks.md); PyTorch 2.11 already picks it, other
versions rank flash first. :func:`attention_backend` pins the order for a block of code. All
kernels compute the same maths (softmax scale ``1/sqrt(head_dim)``, no mask, no dropout).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F

BACKENDS = ("auto", "default", "cudnn", "flash", "efficient", "math")


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """SDPA on ``[G, N, heads, D]`` inputs; returns ``[G, N, heads * D]``."""
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2).flatten(-2)


def resolve_backend(name: str, device: torch.device) -> str:
    """``auto`` -> ``cudnn`` on Hopper or newer (compute capability >= 9.0), else PyTorch's ``default``."""
    if name not in BACKENDS:
        raise ValueError(f"attention backend must be one of {BACKENDS}, got {name!r}")
    if name != "auto":
        return name
    if device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 9:
        return "cudnn"
    return "default"


@contextlib.contextmanager
def attention_backend(name: str, device: torch.device | None = None) -> Iterator[str]:
    """Run the enclosed attention with this kernel first (others stay as fall-backs for shapes it
    cannot take). Yields the resolved name. ``default`` and any CPU device change nothing."""
    device = device or torch.device("cpu")
    resolved = resolve_backend(name, device)
    if resolved == "default" or device.type != "cuda":
        yield resolved
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    kernels = {
        "flash": SDPBackend.FLASH_ATTENTION,
        "cudnn": SDPBackend.CUDNN_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
        "math": SDPBackend.MATH,
    }
    order = [kernels[resolved]] + [k for other, k in kernels.items() if other != resolved]
    with sdpa_kernel(order, set_priority=True):
        yield resolved
