"""Model configuration and presets.

One frozen dataclass holds everything needed to rebuild a model (it is stored as JSON in
the metadata of the project's safetensors checkpoints), plus three presets:

* ``re10k``: the published iLRM checkpoint (RealEstate10K, 2 views, 256x256).
* ``small``: the same architecture, narrow and shallow enough for a CPU.
* ``tiny``: a toy size for fast tests.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from typing import Any

ARCHS = ("ilrm", "gslrm")


@dataclass(frozen=True)
class ILRMConfig:
    """Hyper-parameters of an iLRM (or GS-LRM baseline) model.

    ``image_size`` and ``num_views`` are the training/default input shape: the model runs on
    any number of views and any ``H, W`` divisible by ``patch_size``.
    """

    arch: str = "ilrm"
    width: int = 768
    depth: int = 24
    head_dim: int = 64
    mlp_ratio: float = 4.0
    patch_size: int = 8
    image_size: tuple[int, int] = (256, 256)
    num_views: int = 2
    # Gaussian activations (published constants).
    depth_scale: float = 500.0
    scale_offset: float = -6.9
    log_scale_max: float = -1.2
    opacity_offset: float = -2.0
    # Normalisation epsilons (LayerNorm and the per-head RMSNorm).
    norm_eps: float = 1e-5
    # iLRM only, not in the published layout: the ray (query) tokens also take their own patch's
    # pixels, [rgb * 2 - 1, m, d] like the support tokens, instead of the rays [m, d] alone.
    query_rgb: bool = False
    # Not in the published layout: each Gaussian's colour (degree-0 SH) also takes its own pixel's
    # colour times a learnt per-channel weight (the ``colour_skip`` parameter), so the head predicts
    # what the pixel lacks instead of the whole colour.
    colour_skip: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_size", tuple(int(s) for s in self.image_size))
        if self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}; expected one of {ARCHS}")
        if self.query_rgb and self.arch != "ilrm":
            raise ValueError("query_rgb is an iLRM option (GS-LRM tokens always hold the pixels)")
        if self.width % self.head_dim:
            raise ValueError(f"width {self.width} is not a multiple of head_dim {self.head_dim}")
        if self.depth < 1 or self.patch_size < 1 or self.num_views < 1:
            raise ValueError("depth, patch_size and num_views must be positive")
        if len(self.image_size) != 2 or any(s % self.patch_size for s in self.image_size):
            raise ValueError(f"image_size {self.image_size} must be (H, W) divisible by patch {self.patch_size}")

    @property
    def num_heads(self) -> int:
        return self.width // self.head_dim

    @property
    def mlp_hidden(self) -> int:
        return int(round(self.width * self.mlp_ratio))

    @property
    def gaussian_channels(self) -> int:
        """Raw values per pixel: 3 xyz, 3 colour (SH degree 0), 3 scale, 4 rotation, 1 opacity."""
        return 14

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["image_size"] = list(self.image_size)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ILRMConfig":
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown config fields: {unknown}")
        return cls(**d)

    @classmethod
    def from_json(cls, s: str) -> "ILRMConfig":
        return cls.from_dict(json.loads(s))

    def replace(self, **changes: Any) -> "ILRMConfig":
        return replace(self, **changes)


PRESETS: dict[str, ILRMConfig] = {
    # The published checkpoint re10k_2view.ckpt: 171,336,960 parameters.
    "re10k": ILRMConfig(),
    # Same architecture, ~9.9M parameters (fp16 safetensors under 20 MB), CPU friendly.
    "small": ILRMConfig(width=256, depth=12, head_dim=64, image_size=(128, 128)),
    # For fast tests: two heads of 32 so the head split is exercised.
    "tiny": ILRMConfig(width=64, depth=2, head_dim=32, image_size=(64, 64)),
}
