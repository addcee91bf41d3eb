"""The fused block maths (:mod:`ilrm_ros.model.fused`) compute the reference blocks' function.

On the CPU the GELU epilogue is the exact GELU and the stream keeps float32, so the two paths may
differ only by float32 reassociation; the GPU's rounding is checked in ``test_gpu.py``.
"""

from __future__ import annotations

import copy
import re

import torch
from torch._inductor.utils import run_and_get_code

from ilrm_ros.checkpoints import SHIPPED_CHECKPOINT
from ilrm_ros.evaluation.benchmark import make_cases
from ilrm_ros.model import CompiledForward, load_model
from ilrm_ros.model.blocks import ReadBlock, SelfBlock
from ilrm_ros.model.fused import FusedReadBlock, FusedSelfBlock, fuse_blocks


def test_fused_blocks_compute_the_reference_maths_on_the_cpu():
    model = load_model(SHIPPED_CHECKPOINT).eval()
    fused = copy.deepcopy(model)
    assert fuse_blocks(fused) == len(model.processor.blocks)
    kinds = {type(b) for b in fused.processor.blocks}
    assert kinds == {FusedReadBlock, FusedSelfBlock}
    assert {type(b) for b in model.processor.blocks} == {ReadBlock, SelfBlock}  # the original is untouched
    v = make_cases(1, *model.config.image_size, view_counts=(2,))[0].views
    scene = (v.context_images, v.context_intrinsics, v.context_cam_to_world)
    with torch.no_grad():
        ref, out = model(*scene), fused(*scene)
    for name in ("means", "quats", "scales", "opacities", "sh"):
        a, b = getattr(out, name), getattr(ref, name)
        torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-3, msg=name)


def test_fused_blocks_are_a_gpu_option_only():
    """Off CUDA the fast path is the plain module: the option is reported off, the blocks unchanged."""
    model = load_model("tiny")
    fast = CompiledForward(model, 2, 64, 64, mode="compile+graph", fused_blocks=True)
    assert fast.mode == "eager" and not fast.fused_blocks
    assert {type(b) for b in model.processor.blocks} <= {ReadBlock, SelfBlock}


def test_compiled_fused_blocks_update_the_stream_in_place_and_keep_the_maths(scene, gen):
    """Under ``torch.compile`` every residual GEMM writes into one stream buffer (Inductor re-inplaced
    the mutating op, so nothing copies the stream first) and the forward still computes the
    reference function, call after call, leaving its inputs alone."""
    model = load_model("tiny").eval()
    fused = copy.deepcopy(model)
    fuse_blocks(fused)
    inputs = scene(1, 2, *model.config.image_size, gen)
    kept = [t.clone() for t in inputs]
    with torch.no_grad():
        ref = model(*inputs)
        compiled = torch.compile(fused, fullgraph=True, dynamic=False)
        first, code = run_and_get_code(compiled, *inputs)
        second = compiled(*inputs)
    targets = re.findall(r"ilrm\.add_matmul_\.default\((?:reinterpret_tensor\()?(\w+)", "\n".join(code))
    assert len(targets) == 2 * len(model.processor.blocks)
    assert len(set(targets)) == 1, targets
    for a, b in zip(inputs, kept):
        assert torch.equal(a, b)
    for out in (first, second):
        torch.testing.assert_close(out.means, ref.means, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(out.sh, ref.sh, atol=1e-4, rtol=1e-4)
