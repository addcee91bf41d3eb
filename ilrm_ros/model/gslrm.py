"""GS-LRM-style baseline behind the same forward contract as :class:`ILRM`.

Pixel-aligned tokens from the 9-channel ``[rgb * 2 - 1, m, d]`` per-pixel features; every block
is a global self-attention over all tokens of all views plus an MLP; same width, depth, heads,
token decoder and Gaussian head as iLRM. This is the reference point for iLRM's speed claim
(self-attention over all image tokens in every block vs. cheap per-view reads).
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import Processor, SelfBlock, layer_norm
from .config import ILRMConfig
from .ilrm import LRMBase
from .rays import patchify


class GSLRM(LRMBase):
    arch = "gslrm"

    def __init__(self, config: ILRMConfig | None = None) -> None:
        config = config or ILRMConfig(arch="gslrm")
        super().__init__(config)
        p, width, eps = config.patch_size, config.width, config.norm_eps
        self.input_tokenizer = nn.Linear(9 * p * p, width, bias=False)
        self.input_layernorm = layer_norm(width, eps)
        self.processor = Processor(
            [SelfBlock(width, config.head_dim, config.mlp_hidden, eps) for _ in range(config.depth)]
        )
        self.reset_parameters()

    def _transform(self, images: torch.Tensor, rays: torch.Tensor) -> torch.Tensor:
        features = torch.cat((images * 2 - 1, rays), dim=-1)
        x = self.input_layernorm(self.input_tokenizer(patchify(features, self.config.patch_size)))
        x = self.processor(x, None, rays.shape[1], self.checkpointing_active)
        return self.token_decoder(x)
