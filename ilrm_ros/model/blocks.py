"""Transformer blocks of iLRM (names match the published checkpoint's keys).

* :class:`ReadBlock` (``read_cross`` + ``read_ff``): each view's tokens cross-attend to that
  view's support (image) tokens only, then an MLP.
* :class:`SelfBlock` (``attn`` + ``mlp``): self-attention over all tokens of all views, then
  an MLP.

No biases anywhere; LayerNorms are bias-free; q and k heads pass an RMSNorm computed in
float32; attention goes through ``F.scaled_dot_product_attention`` (softmax scale
``1/sqrt(head_dim)``; kernel choice in :mod:`.attention`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .attention import attend


def layer_norm(dim: int, eps: float = 1e-5) -> nn.LayerNorm:
    """Bias-free LayerNorm."""
    return nn.LayerNorm(dim, eps=eps, bias=False)


class HeadRMSNorm(nn.Module):
    """RMSNorm over the last (head) dimension: ``x * rsqrt(mean(x^2) + eps) * weight`` in float32."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        if hasattr(F, "rms_norm"):  # torch >= 2.4: one fused kernel on CUDA, same maths
            y = F.rms_norm(xf, (xf.shape[-1],), self.weight.float(), self.eps)
        else:
            y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight.float()
        return y.to(x.dtype)


class MLP(nn.Module):
    """Pre-norm MLP: LayerNorm -> fc1 -> exact GELU -> fc2 (no biases). Returns the residual branch."""

    def __init__(self, width: int, hidden: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.norm = layer_norm(width, eps)
        self.fc1 = nn.Linear(width, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(self.norm(x))))


def _heads(x: torch.Tensor, head_dim: int) -> torch.Tensor:
    """``[G, N, C]`` -> ``[G, N, heads, head_dim]`` (a view)."""
    return x.unflatten(-1, (-1, head_dim))


class CrossAttention(nn.Module):
    """Per-view cross-attention of query tokens (normalised) to support tokens (not normalised).

    Views are folded into the batch (``[B * V, T, C]``), so one SDPA call covers every view and
    a query of view v only ever sees view v's support tokens.
    """

    def __init__(self, width: int, head_dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.head_dim = head_dim
        self.norm = layer_norm(width, eps)
        self.q = nn.Linear(width, width, bias=False)
        self.k = nn.Linear(width, width, bias=False)
        self.v = nn.Linear(width, width, bias=False)
        self.proj = nn.Linear(width, width, bias=False)
        self.q_norm = HeadRMSNorm(head_dim, eps)
        self.k_norm = HeadRMSNorm(head_dim, eps)

    def before_proj(self, x: torch.Tensor, support: torch.Tensor, num_views: int) -> torch.Tensor:
        """The attended values before ``proj``, ``[B * V, N / V, C]``."""
        b, n, c = x.shape
        groups = (b * num_views, n // num_views, c)
        h = self.norm(x).reshape(groups)
        s = support.reshape(groups)
        q = self.q_norm(_heads(self.q(h), self.head_dim))
        k = self.k_norm(_heads(self.k(s), self.head_dim))
        return attend(q, k, _heads(self.v(s), self.head_dim))

    def forward(self, x: torch.Tensor, support: torch.Tensor, num_views: int) -> torch.Tensor:
        return self.proj(self.before_proj(x, support, num_views)).reshape(x.shape)


class SelfAttention(nn.Module):
    """Global self-attention over all tokens; ``qkv`` splits as (3, heads, head_dim)."""

    def __init__(self, width: int, head_dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.head_dim = head_dim
        self.norm = layer_norm(width, eps)
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.proj = nn.Linear(width, width, bias=False)
        self.q_norm = HeadRMSNorm(head_dim, eps)
        self.k_norm = HeadRMSNorm(head_dim, eps)

    def before_proj(self, x: torch.Tensor) -> torch.Tensor:
        """The attended values before ``proj``, ``[B, N, C]``."""
        qkv = self.qkv(self.norm(x)).unflatten(-1, (3, -1, self.head_dim))  # [B, N, 3, heads, D]
        q, k, v = qkv.unbind(2)
        return attend(self.q_norm(q), self.k_norm(k), v)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.before_proj(x))


class ReadBlock(nn.Module):
    """``x = x + CrossAttn(x, support)``; ``x = x + MLP(x)``."""

    def __init__(self, width: int, head_dim: int, hidden: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.read_cross = CrossAttention(width, head_dim, eps)
        self.read_ff = MLP(width, hidden, eps)

    def forward(self, x: torch.Tensor, support: torch.Tensor, num_views: int) -> torch.Tensor:
        x = x + self.read_cross(x, support, num_views)
        return x + self.read_ff(x)


class SelfBlock(nn.Module):
    """``x = x + SelfAttn(x)``; ``x = x + MLP(x)``. Ignores the support tokens."""

    def __init__(self, width: int, head_dim: int, hidden: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.attn = SelfAttention(width, head_dim, eps)
        self.mlp = MLP(width, hidden, eps)

    def forward(self, x: torch.Tensor, support: torch.Tensor | None = None, num_views: int = 1) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.mlp(x)


class Processor(nn.Module):
    """The block stack (``processor.blocks.{i}``), optionally with per-block activation checkpointing."""

    def __init__(self, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(
        self, x: torch.Tensor, support: torch.Tensor | None, num_views: int, checkpointing: bool = False
    ) -> torch.Tensor:
        for block in self.blocks:
            if checkpointing:
                x = checkpoint(block, x, support, num_views, use_reentrant=False)
            else:
                x = block(x, support, num_views)
        return x
