"""Forward latency of the ``re10k`` preset with changed block maths (CUDA only; a measurement, not a test).

    python3 test/model/block_variants_latency.py [VIEWS, default 8,32]

Each variant patches the block classes of :mod:`ilrm_ros.model.blocks` before ``CompiledForward``
builds its inference copy, then times ``compile+graph`` through ``ilrm_ros.benchmark.model_latency``
(CUDA events, median of 100), every variant twice in alternating order; last, the profiler's kernel
breakdown (``compile`` mode) of today's path and of the fastest variant. Results: docs/benchmarks.md.

* ``E``: ``fc1`` + GELU as one cuBLASLt GEMM with its GELU epilogue (tanh, not the exact GELU);
* ``KV``: the cross-attention's ``k`` and ``v`` projections of the support tokens as one GEMM;
* ``R``: the residual add folded into the ``proj`` / ``fc2`` GEMMs (``addmm`` with the residual as C),
  only where the residual stream has the weights' dtype (else the plain add, and ``stream`` says so);
* ``S``: the residual stream in the weights' dtype (bf16 on the GPU) instead of autocast's float32,
  which halves the LayerNorms' and adds' traffic and lets ``R`` fold. It rounds the stream after
  every add: test/model/gelu_epilogue_numerics.py measures what that does to a trained model.

``E+S+R`` is what :mod:`ilrm_ros.model.fused` adopted (opt-in; ``ilrm bench --blocks reference,fused``).
"""

from __future__ import annotations

import json
import sys

import torch
import torch.nn.functional as F

from ilrm_ros.benchmark import kernel_breakdown, model_latency
from ilrm_ros.model import blocks, fused
from ilrm_ros.model.attention import attend

ORIGINAL = {cls: cls.forward for cls in (blocks.MLP, blocks.CrossAttention, blocks.ReadBlock, blocks.SelfBlock)}
VARIANTS = ("base", "E", "E+KV", "E+KV+R", "KV+R", "E+S", "E+S+R", "E+KV+S+R")
seen: dict[str, str] = {}


def mlp_hidden(mlp: blocks.MLP, x: torch.Tensor, epilogue: bool) -> torch.Tensor:
    """GELU(fc1(norm(x))) as ``[tokens, hidden]``."""
    if epilogue:
        return fused.mlp_hidden(mlp, x)
    w = mlp.fc1.weight
    return F.gelu(F.linear(mlp.norm(x).to(w.dtype).reshape(-1, x.shape[-1]), w))


def cross_heads(attn: blocks.CrossAttention, x: torch.Tensor, support: torch.Tensor, views: int, kv: bool):
    """The cross-attention's output before ``proj``, ``[B * V, N / V, C]``."""
    if not kv:
        return attn.before_proj(x, support, views)
    b, n, c = x.shape
    groups = (b * views, n // views, c)
    h = attn.norm(x).reshape(groups)
    s = support.reshape(groups)
    q = attn.q_norm(blocks._heads(attn.q(h), attn.head_dim))
    if not hasattr(attn, "_kv_weight"):
        attn._kv_weight = torch.cat([attn.k.weight, attn.v.weight], 0)
    k, v = F.linear(s.to(attn._kv_weight.dtype), attn._kv_weight).split(c, -1)
    return attend(q, attn.k_norm(blocks._heads(k, attn.head_dim)), blocks._heads(v, attn.head_dim))


def add_projected(x: torch.Tensor, inner: torch.Tensor, w: torch.Tensor, fold: bool) -> torch.Tensor:
    """``x + inner @ w.T``, folded into the GEMM when asked and the dtypes allow it."""
    seen["stream"] = str(x.dtype)
    inner = inner.reshape(-1, inner.shape[-1]).to(w.dtype)
    if fold and x.dtype == w.dtype:
        return torch.addmm(x.reshape(-1, x.shape[-1]), inner, w.t()).reshape(x.shape)
    return x + (inner @ w.t()).reshape(x.shape)


def apply(name: str) -> None:
    """Patch the block classes for one variant (``base`` restores them)."""
    for cls, forward in ORIGINAL.items():
        cls.forward = forward
    if name == "base":
        return
    epilogue, kv, fold, stream = "E" in name, "KV" in name, "R" in name, "S" in name

    def read_forward(self, x, support, num_views):
        x = x.to(self.read_ff.fc2.weight.dtype) if stream else x
        x = add_projected(x, cross_heads(self.read_cross, x, support, num_views, kv), self.read_cross.proj.weight, fold)
        return add_projected(x, mlp_hidden(self.read_ff, x, epilogue), self.read_ff.fc2.weight, fold)

    def self_forward(self, x, support=None, num_views=1):
        x = x.to(self.mlp.fc2.weight.dtype) if stream else x
        x = add_projected(x, self.attn.before_proj(x), self.attn.proj.weight, fold)
        return add_projected(x, mlp_hidden(self.mlp, x, epilogue), self.mlp.fc2.weight, fold)

    blocks.ReadBlock.forward = read_forward
    blocks.SelfBlock.forward = self_forward


def main(views: list[int]) -> None:
    device = torch.device("cuda")
    rows = []
    for rnd in range(2):
        for name in VARIANTS if rnd == 0 else VARIANTS[::-1]:
            for v in views:
                seen.clear()
                apply(name)
                torch._dynamo.reset()
                r = model_latency("re10k", "ilrm", v, 256, 256, "compile+graph", device, iters=100)
                rows.append({"variant": name, "views": v, "ms": round(r["ms"], 3), "setup_s": round(r["setup_s"], 1)})
                print(json.dumps(rows[-1]), seen, flush=True)
    best = min((r for r in rows if r["views"] == views[0]), key=lambda r: r["ms"])["variant"]
    for name in ("base", best):
        apply(name)
        torch._dynamo.reset()
        breakdown = kernel_breakdown("re10k", views[0], 256, 256, "compile", device)
        print("breakdown", name, json.dumps(breakdown), flush=True)
    apply("base")


if __name__ == "__main__":
    if not torch.cuda.is_available():
        sys.exit("needs a CUDA GPU")
    main([int(v) for v in (sys.argv[1] if len(sys.argv) > 1 else "8,32").split(",")])
