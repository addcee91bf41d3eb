"""How far a fused ``fc1`` + tanh-GELU matmul (cuBLASLt's GELU epilogue) moves a trained model's output.

    .venv/bin/python test/model/gelu_epilogue_numerics.py [--checkpoint PATH] [--scenes 20]

On the H100 that epilogue cut the 8-view ``re10k`` forward from 13.32 to 12.44 ms
(docs/benchmarks.md), but its GELU is the tanh approximation, not the exact (erf) GELU the
checkpoints were trained with. This emulates the GPU's bf16 path on the CPU (Linear and attention
inputs rounded to bf16, float32 accumulation, LayerNorm and the residual stream in float32, as CUDA
autocast runs them) for the held-out benchmark windows of ``ilrm eval`` and compares renders:

* ``bf16``: today's path (``fc1`` rounded to bf16, then exact GELU, rounded again);
* ``bf16 + erf epilogue``: exact GELU on the float32 accumulator, rounded once;
* ``bf16 + tanh epilogue``: what ``torch._addmm_activation(..., use_gelu=True)`` computes on CUDA;
* ``... + bf16 residual stream``: the same with the residual stream rounded to bf16 at each block's
  input and after each add (autocast keeps it float32), which a fused residual-add GEMM needs.

Printed per variant: PSNR of its target renders against the float32 model's and against today's
bf16 path's (how far the numerics move the output), and against the true images (the benchmark's
score), mean over the windows.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics

import torch
import torch.nn.functional as F

from ilrm_ros.evaluation.benchmark import make_cases
from ilrm_ros.model import blocks, load_model, reconstruct
from ilrm_ros.pipeline.metrics import psnr
from ilrm_ros.render import WHITE, render

BF16 = torch.bfloat16
_plain_attend = blocks.attend


def _linear(self: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return F.linear(x.to(BF16), self.weight.to(BF16))


def _attend(q, k, v):
    return _plain_attend(q.to(BF16), k.to(BF16), v.to(BF16))


def _mlp(gelu):
    def forward(self: blocks.MLP, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        acc = F.linear(h.to(BF16).float(), self.fc1.weight.to(BF16).float())  # float32 accumulator
        return self.fc2(gelu(acc).to(BF16))

    return forward



def _round(x: torch.Tensor) -> torch.Tensor:
    return x.to(BF16).float()


def _read_block_bf16_stream(self: blocks.ReadBlock, x, support, num_views):
    x = _round(x)
    x = _round(x + self.read_cross(x, support, num_views))
    return _round(x + self.read_ff(x))


def _self_block_bf16_stream(self: blocks.SelfBlock, x, support=None, num_views=1):
    x = _round(x)
    x = _round(x + self.attn(x))
    return _round(x + self.mlp(x))


@contextlib.contextmanager
def numerics(variant: str):
    """Patch the blocks for one variant (``fp32`` leaves them alone)."""
    saved = (torch.nn.Linear.forward, blocks.attend, blocks.MLP.forward, blocks.ReadBlock.forward,
             blocks.SelfBlock.forward)
    try:
        if variant != "fp32":
            torch.nn.Linear.forward = _linear
            blocks.attend = _attend
        if variant == "bf16 + erf epilogue":
            blocks.MLP.forward = _mlp(F.gelu)
        elif variant.startswith("bf16 + tanh epilogue"):
            blocks.MLP.forward = _mlp(lambda t: F.gelu(t, approximate="tanh"))
        if variant.endswith("bf16 residual stream"):
            blocks.ReadBlock.forward, blocks.SelfBlock.forward = _read_block_bf16_stream, _self_block_bf16_stream
        yield
    finally:
        (torch.nn.Linear.forward, blocks.attend, blocks.MLP.forward, blocks.ReadBlock.forward,
         blocks.SelfBlock.forward) = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="ilrm_ros/checkpoints/small.safetensors")
    parser.add_argument("--scenes", type=int, default=20)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = load_model(args.checkpoint, device="cpu").eval()
    h, w = model.config.image_size
    variants = ("fp32", "bf16", "bf16 + erf epilogue", "bf16 + tanh epilogue",
                "bf16 + tanh epilogue + bf16 residual stream")
    to_ref: dict[str, list[float]] = {v: [] for v in variants}
    to_bf16: dict[str, list[float]] = {v: [] for v in variants}
    to_truth: dict[str, list[float]] = {v: [] for v in variants}
    for case in make_cases(args.scenes, h, w):
        v = case.views
        renders = {}
        for variant in variants:
            with numerics(variant), torch.no_grad():
                g = reconstruct(model, v.context_images[0], v.context_intrinsics[0], v.context_cam_to_world[0])
                out = render(g, v.target_intrinsics[0], v.target_cam_to_world[0], w, h, background=WHITE)
            renders[variant] = out.rgb.clamp(0, 1)
        truth = v.target_images[0].permute(0, 2, 3, 1)
        for variant in variants:
            to_ref[variant].append(psnr(renders[variant], renders["fp32"]))
            to_bf16[variant].append(psnr(renders[variant], renders["bf16"]))
            to_truth[variant].append(psnr(renders[variant], truth))
    print(f"{args.checkpoint}, {len(to_truth['fp32'])} windows ({args.scenes} scenes x 2 and 4 views)")
    print("| numerics | PSNR vs float32 render (dB) | PSNR vs bf16 render (dB) | PSNR vs true image (dB) |")
    print("|---|---:|---:|---:|")

    def close(values: list[float]) -> str:
        return "–" if min(values) > 150 else f"{statistics.fmean(values):.1f} (min {min(values):.1f})"

    for variant in variants:
        truth = statistics.fmean(to_truth[variant])
        print(f"| {variant} | {close(to_ref[variant])} | {close(to_bf16[variant])} | {truth:.3f} |")


if __name__ == "__main__":
    main()
