"""The iLRM model: posed images -> one 3D Gaussian per pixel, in one forward pass.

Forward contract (shared with the GS-LRM baseline in :mod:`.gslrm`)::

    model(images [B, V, 3, H, W] in [0, 1],
          intrinsics [B, V, 3, 3] in pixels,
          cam_to_world [B, V, 4, 4] OpenCV, in the normalised frame (see normalize.py))
        -> Gaussians with N = V * H * W, ordered (view, row, col)

Ray/pose maths and the Gaussian activations run in float32; on CUDA the transformer runs
under bf16 autocast (``model.amp_dtype``; set it to ``None`` for float32 everywhere).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from ..gaussians import Gaussians
from .blocks import HeadRMSNorm, Processor, ReadBlock, SelfBlock, layer_norm
from .config import ILRMConfig
from .head import activate_gaussians, add_pixel_colour
from .rays import camera_rays, patchify, plucker, unpatchify


class LRMBase(nn.Module):
    """What iLRM and GS-LRM share: rays in, token decoder and Gaussian head out."""

    arch: str = ""

    def __init__(self, config: ILRMConfig) -> None:
        super().__init__()
        if config.arch != self.arch:
            raise ValueError(f"{type(self).__name__} needs a config with arch={self.arch!r}, got {config.arch!r}")
        self.config = config
        self.gradient_checkpointing = False
        self.amp_dtype: torch.dtype | None = torch.bfloat16
        p = config.patch_size
        self.token_decoder = nn.Sequential(
            layer_norm(config.width, config.norm_eps),
            nn.Linear(config.width, p * p * config.gaussian_channels, bias=False),
        )
        if config.colour_skip:  # per channel, from the full pixel colour (see with_colour_skip for fine-tunes)
            self.colour_skip = nn.Parameter(torch.ones(3))

    def reset_parameters(self, std: float = 0.02) -> None:
        """Truncated-normal Linears, unit norm weights (what a fresh model starts from)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)
            elif isinstance(m, (nn.LayerNorm, HeadRMSNorm)):
                nn.init.ones_(m.weight)
        if self.config.colour_skip:
            nn.init.ones_(self.colour_skip)

    def _transform(self, images: torch.Tensor, rays: torch.Tensor) -> torch.Tensor:
        """images ``[B, V, H, W, 3]`` in [0, 1], rays ``[B, V, H, W, 6]`` ``[m, d]`` -> decoder tokens."""
        raise NotImplementedError

    def _autocast(self, device: torch.device):
        if device.type == "cuda" and self.amp_dtype is not None:
            return torch.autocast("cuda", dtype=self.amp_dtype)
        return contextlib.nullcontext()

    def forward(self, images: torch.Tensor, intrinsics: torch.Tensor, cam_to_world: torch.Tensor) -> Gaussians:
        b, v, c, h, w = images.shape
        p = self.config.patch_size
        if c != 3 or h % p or w % p:
            raise ValueError(f"images must be [B, V, 3, H, W] with H, W divisible by {p}; got {tuple(images.shape)}")
        if intrinsics.shape != (b, v, 3, 3) or cam_to_world.shape != (b, v, 4, 4):
            raise ValueError(
                f"expected intrinsics [{b}, {v}, 3, 3] and cam_to_world [{b}, {v}, 4, 4]; "
                f"got {tuple(intrinsics.shape)} and {tuple(cam_to_world.shape)}"
            )
        # Ray maths in float32 (elementwise only, so an outer autocast leaves it alone).
        origins, dirs = camera_rays(intrinsics.float(), cam_to_world.float(), h, w)  # [B,V,3], [B,V,H,W,3]
        rays = plucker(origins, dirs)
        pixels = images.float().permute(0, 1, 3, 4, 2)
        with self._autocast(images.device):
            tokens = self._transform(pixels, rays)
        raw = unpatchify(tokens.float(), v, h, w, p)  # [B, N, 14]
        if self.config.colour_skip:
            raw = add_pixel_colour(raw, pixels, self.colour_skip)
        origins = origins[:, :, None, :].expand(b, v, h * w, 3).reshape(b, v * h * w, 3)
        return activate_gaussians(raw, origins, dirs.reshape(b, v * h * w, 3), self.config)

    @property
    def checkpointing_active(self) -> bool:
        return self.gradient_checkpointing and torch.is_grad_enabled()


class ILRM(LRMBase):
    """iLRM: ray (query) tokens iteratively read their own view's image tokens, alternating with
    global self-attention across all views' ray tokens (``config.query_rgb``: the ray tokens also
    hold their patch's pixels)."""

    arch = "ilrm"

    def __init__(self, config: ILRMConfig | None = None) -> None:
        config = config or ILRMConfig()
        super().__init__(config)
        p, width, eps = config.patch_size, config.width, config.norm_eps
        self.input_tokenizer = nn.Linear((9 if config.query_rgb else 6) * p * p, width, bias=False)
        self.input_layernorm = layer_norm(width, eps)
        self.support_tokenizer = nn.Linear(9 * p * p, width, bias=False)
        self.support_layernorm = layer_norm(width, eps)
        blocks = [
            (ReadBlock if i % 2 == 0 else SelfBlock)(width, config.head_dim, config.mlp_hidden, eps)
            for i in range(config.depth)
        ]
        self.processor = Processor(blocks)
        self.reset_parameters()

    def _transform(self, images: torch.Tensor, rays: torch.Tensor) -> torch.Tensor:
        p = self.config.patch_size
        support = torch.cat((images * 2 - 1, rays), dim=-1)  # [rgb*2-1, m, d]
        query = support if self.config.query_rgb else rays
        x = self.input_layernorm(self.input_tokenizer(patchify(query, p)))
        s = self.support_layernorm(self.support_tokenizer(patchify(support, p)))
        x = self.processor(x, s, rays.shape[1], self.checkpointing_active)
        return self.token_decoder(x)
