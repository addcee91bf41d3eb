"""The Gaussians container shared by model, renderer, scene and exports."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

SH_C0 = 0.28209479177387814
"""Degree-0 spherical-harmonics constant (colour = 0.5 + SH_C0 * sh, as gsplat)."""


@dataclass
class Gaussians:
    """Activated 3D Gaussian parameters, batched ``[B, N, ...]`` or unbatched ``[N, ...]``.

    means: centres; quats: unit (w, x, y, z); scales: positive std-devs;
    opacities: in (0, 1); sh: ``[..., K, 3]`` SH coefficients (K = 1 for degree 0).
    """

    means: torch.Tensor
    quats: torch.Tensor
    scales: torch.Tensor
    opacities: torch.Tensor
    sh: torch.Tensor

    def __len__(self) -> int:
        """Number of Gaussians (the N dimension)."""
        return self.opacities.shape[-1]

    @property
    def batched(self) -> bool:
        return self.opacities.dim() == 2

    def _map(self, fn) -> "Gaussians":
        return Gaussians(**{f.name: fn(getattr(self, f.name)) for f in fields(self)})

    def to(self, *args, **kwargs) -> "Gaussians":
        """Move/cast every tensor, like ``Tensor.to``."""
        return self._map(lambda t: t.to(*args, **kwargs))

    def float(self) -> "Gaussians":
        return self._map(lambda t: t.float())

    def detach(self) -> "Gaussians":
        return self._map(lambda t: t.detach())

    def batch(self, index: int) -> "Gaussians":
        """One scene of a batched set, unbatched."""
        if not self.batched:
            raise ValueError("Gaussians are not batched")
        return self._map(lambda t: t[index])

    def select(self, index: torch.Tensor) -> "Gaussians":
        """Subset of an unbatched set by boolean mask or index tensor."""
        if self.batched:
            raise ValueError("select() works on unbatched Gaussians; use batch(i) first")
        return self._map(lambda t: t[index])

    @staticmethod
    def cat(parts: list["Gaussians"]) -> "Gaussians":
        """Concatenate along N (unbatched or batched sets of the same batch size)."""
        if not parts:
            raise ValueError("nothing to concatenate")
        dim = 1 if parts[0].batched else 0
        return Gaussians(**{f.name: torch.cat([getattr(p, f.name) for p in parts], dim=dim) for f in fields(Gaussians)})

    @staticmethod
    def empty(device: torch.device | str = "cpu", sh_bases: int = 1) -> "Gaussians":
        """An unbatched set with no Gaussians."""
        z = lambda *s: torch.zeros(*s, device=device)  # noqa: E731
        return Gaussians(z(0, 3), z(0, 4), z(0, 3), z(0), z(0, sh_bases, 3))

    def colors(self) -> torch.Tensor:
        """RGB in [0, 1] from the degree-0 SH term, exactly as gsplat evaluates it."""
        return (0.5 + SH_C0 * self.sh[..., 0, :]).clamp(0.0, 1.0)
