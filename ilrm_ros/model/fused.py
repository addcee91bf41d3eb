"""Fused block maths for the fixed-shape GPU forward (opt-in: ``CompiledForward(fused_blocks=True)``).

Same weights, same layers as :mod:`.blocks`, fewer and larger kernels, different rounding; inference
only (the fused GELU GEMM has no derivative):

* ``fc1`` and its GELU run as one cuBLASLt GEMM with a GELU epilogue. On CUDA that epilogue is the
  tanh approximation, not the exact GELU the checkpoints were trained with (on the CPU it is exact);
* the residual stream is held in the weights' dtype (bf16 in the inference copy) instead of the
  float32 that autocast's sums keep, which halves the LayerNorms' and adds' memory traffic;
* the residual add is folded into the ``proj`` and ``fc2`` GEMMs: the stream is their C, updated in
  place (``addmm_``, beta 1), so no kernel copies it first. A custom op keeps that in place under
  ``torch.compile`` too (Inductor re-inplaces a mutating op whose input is not read again; a plain
  ``addmm`` would copy its addend into a new output).

Measured on a trained model (docs/benchmarks.md): the renders move less than bf16 itself moves
them from float32, and the forward is about 1.4–1.6 ms (11–12 %) faster at 8 views on an H100.
"""

from __future__ import annotations

import torch
from torch import nn

from . import blocks


def mlp_hidden(mlp: blocks.MLP, x: torch.Tensor) -> torch.Tensor:
    """``GELU(fc1(norm(x)))`` as ``[tokens, hidden]``, one GEMM with its activation epilogue."""
    w = mlp.fc1.weight
    h = mlp.norm(x).to(w.dtype).reshape(-1, x.shape[-1])
    zero = torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)
    return torch._addmm_activation(zero, h, w.t(), use_gelu=True)


@torch.library.custom_op("ilrm::add_matmul_", mutates_args=("acc",))
def add_matmul_(acc: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
    """``acc += a @ b`` in place: one GEMM with ``acc`` as C and beta 1 (``acc`` 2-D, contiguous)."""
    acc.addmm_(a, b)


@add_matmul_.register_fake
def _(acc: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
    return None


def _add_projected(x: torch.Tensor, inner: torch.Tensor, proj: nn.Linear) -> torch.Tensor:
    """``x + proj(inner)`` as one GEMM with ``x`` as its addend (``x`` has the weight's dtype),
    written into ``x``: the blocks never read their old stream again."""
    w = proj.weight
    x2d = x.reshape(-1, x.shape[-1])
    add_matmul_(x2d, inner.reshape(-1, inner.shape[-1]).to(w.dtype), w.t())
    return x2d.reshape(x.shape)


class FusedReadBlock(blocks.ReadBlock):
    """:class:`.blocks.ReadBlock` with the fused maths above."""

    def forward(self, x: torch.Tensor, support: torch.Tensor, num_views: int) -> torch.Tensor:
        x = x.to(self.read_ff.fc2.weight.dtype)
        x = _add_projected(x, self.read_cross.before_proj(x, support, num_views), self.read_cross.proj)
        return _add_projected(x, mlp_hidden(self.read_ff, x), self.read_ff.fc2)


class FusedSelfBlock(blocks.SelfBlock):
    """:class:`.blocks.SelfBlock` with the fused maths above."""

    def forward(self, x: torch.Tensor, support: torch.Tensor | None = None, num_views: int = 1) -> torch.Tensor:
        x = x.to(self.mlp.fc2.weight.dtype)
        x = _add_projected(x, self.attn.before_proj(x), self.attn.proj)
        return _add_projected(x, mlp_hidden(self.mlp, x), self.mlp.fc2)


FUSED = {blocks.ReadBlock: FusedReadBlock, blocks.SelfBlock: FusedSelfBlock}


def fuse_blocks(model: nn.Module) -> int:
    """Switch every read/self block of ``model`` (in place; meant for an inference copy) to the fused
    maths. Returns how many blocks were switched."""
    count = 0
    for module in model.modules():
        fused = FUSED.get(type(module))
        if fused is not None:
            module.__class__ = fused
            count += 1
    return count
