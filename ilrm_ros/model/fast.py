"""Fixed-shape fast inference: CUDA-graph capture and/or ``torch.compile`` of the forward.

``CompiledForward(model, num_views, height, width, mode)`` keeps static input buffers for one
``(B, V, H, W)`` shape. Modes:

* ``"graph"``: the eager forward captured once in a CUDA graph, replayed per call;
* ``"compile"``: ``torch.compile(fullgraph=True, dynamic=False)`` of the forward;
* ``"compile+graph"``: the compiled forward captured in a CUDA graph;
* ``"eager"``: the plain module.

``attention`` picks the SDPA kernel the forward is traced/captured with (:mod:`.attention`;
``auto``: cuDNN on Hopper). Off CUDA every mode falls back to eager. On CUDA with bf16 autocast
the Linear weights are held as a bf16 copy, which is exactly what autocast would cast them to on
every call anyway. ``fused_blocks`` switches that copy's blocks to :mod:`.fused` (faster, rounded
differently; off by default).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..gaussians import Gaussians
from .attention import attention_backend, resolve_backend
from .fused import fuse_blocks
from .ilrm import LRMBase

MODES = ("graph", "compile", "compile+graph", "eager")


def _inference_copy(model: LRMBase, dtype: torch.dtype) -> LRMBase:
    """A copy whose Linear weights are pre-cast to the autocast dtype (same numbers, no per-call casts)."""
    fast = copy.deepcopy(model).eval()
    for m in fast.modules():
        if isinstance(m, nn.Linear):
            m.weight = nn.Parameter(m.weight.detach().to(dtype), requires_grad=False)
    for p in fast.parameters():
        p.requires_grad_(False)
    return fast


class CompiledForward:
    """A fixed-shape, low-overhead callable with the model's forward contract."""

    def __init__(
        self,
        model: LRMBase,
        num_views: int | None = None,
        height: int | None = None,
        width: int | None = None,
        mode: str = "graph",
        batch_size: int = 1,
        clone_outputs: bool = True,
        warmup: int = 3,
        attention: str = "auto",
        fused_blocks: bool = False,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        cfg = model.config
        v = num_views or cfg.num_views
        h, w = (height or cfg.image_size[0]), (width or cfg.image_size[1])
        self.device = next(model.parameters()).device
        self.requested_mode = mode
        self.mode = mode if self.device.type == "cuda" else "eager"
        self.attention = resolve_backend(attention, self.device)
        self.shape = (batch_size, v, h, w)
        self.clone_outputs = clone_outputs
        self.config = cfg
        self.model = model
        if self.mode != "eager" and model.amp_dtype is not None:
            self.model = _inference_copy(model, model.amp_dtype)
        self.fused_blocks = fused_blocks and self.model is not model and fuse_blocks(self.model) > 0
        self.model.eval()
        self._fn = self.model
        if "compile" in self.mode:
            self._fn = torch.compile(self.model, fullgraph=True, dynamic=False)
        self._graph: torch.cuda.CUDAGraph | None = None
        self._out: Gaussians | None = None
        if self.mode == "eager":
            return
        # Static inputs, filled with a valid scene so warm-up/capture runs on sane values.
        self._images = torch.full((batch_size, v, 3, h, w), 0.5, device=self.device)
        K = torch.tensor([[float(w), 0.0, w / 2], [0.0, float(w), h / 2], [0.0, 0.0, 1.0]], device=self.device)
        self._intrinsics = K.expand(batch_size, v, 3, 3).contiguous()
        c2w = torch.eye(4, device=self.device).repeat(batch_size, v, 1, 1)
        c2w[..., 0, 3] = torch.linspace(-1.0, 1.0, v, device=self.device)
        self._cam_to_world = c2w
        self._warmup_and_capture(warmup)

    @torch.no_grad()
    def _warmup_and_capture(self, warmup: int) -> None:
        args = (self._images, self._intrinsics, self._cam_to_world)
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream), attention_backend(self.attention, self.device):
            self.model(*args)  # eager first: one plain run (and the pixel-grid cache) before any tracing
            for _ in range(max(1, warmup)):
                self._out = self._fn(*args)
        torch.cuda.current_stream(self.device).wait_stream(stream)
        if "graph" in self.mode:
            self._graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self._graph), attention_backend(self.attention, self.device):
                self._out = self._fn(*args)
        torch.cuda.synchronize(self.device)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, intrinsics: torch.Tensor, cam_to_world: torch.Tensor) -> Gaussians:
        b, v, h, w = self.shape
        if images.shape != (b, v, 3, h, w) or intrinsics.shape != (b, v, 3, 3) or cam_to_world.shape != (b, v, 4, 4):
            raise ValueError(
                f"CompiledForward was built for images [{b}, {v}, 3, {h}, {w}]; got {tuple(images.shape)}, "
                f"{tuple(intrinsics.shape)}, {tuple(cam_to_world.shape)}"
            )
        if self.mode == "eager":
            with attention_backend(self.attention, self.device):
                return self.model(images, intrinsics, cam_to_world)
        self._images.copy_(images, non_blocking=True)
        self._intrinsics.copy_(intrinsics, non_blocking=True)
        self._cam_to_world.copy_(cam_to_world, non_blocking=True)
        if self._graph is not None:
            self._graph.replay()
            out = self._out
        else:
            with attention_backend(self.attention, self.device):
                out = self._fn(self._images, self._intrinsics, self._cam_to_world)
        return Gaussians(**{k: t.clone() for k, t in vars(out).items()}) if self.clone_outputs else out
