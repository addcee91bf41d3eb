"""Procedural 2D textures evaluated per pixel in PyTorch (deterministic integer hashing).

Every function takes surface coordinates in metres (or already scaled) as float tensors of any
shape and per-pixel parameters broadcastable to them, and works identically on CPU and CUDA.
"""

from __future__ import annotations

import torch

CHECKER, STRIPES, NOISE, TILES = 0, 1, 2, 3
PATTERNS = ("checker", "stripes", "noise", "tiles")

_MASK32 = 0xFFFFFFFF


def hash2(ix: torch.Tensor, iy: torch.Tensor, salt: torch.Tensor | int) -> torch.Tensor:
    """Uniform pseudo-random values in [0, 1) from integer lattice coordinates (int64 tensors)."""
    h = (ix * 374761393 + iy * 668265263 + torch.as_tensor(salt, device=ix.device) * 1274126177) & _MASK32
    h = ((h ^ (h >> 13)) * 1103515245) & _MASK32
    h = h ^ (h >> 16)
    h = ((h * 668265263) & _MASK32) ^ (h >> 11)
    return (h & 0xFFFFFF).to(torch.float32) * (1.0 / 16777216.0)


def value_noise(u: torch.Tensor, v: torch.Tensor, salt: torch.Tensor | int) -> torch.Tensor:
    """Smooth value noise in [0, 1] with unit lattice spacing (bilinear with smoothstep fade)."""
    fu, fv = torch.floor(u), torch.floor(v)
    iu, iv = fu.long(), fv.long()
    tu, tv = u - fu, v - fv
    tu = tu * tu * (3 - 2 * tu)
    tv = tv * tv * (3 - 2 * tv)
    a = hash2(iu, iv, salt)
    b = hash2(iu + 1, iv, salt)
    c = hash2(iu, iv + 1, salt)
    d = hash2(iu + 1, iv + 1, salt)
    return torch.lerp(torch.lerp(a, b, tu), torch.lerp(c, d, tu), tv)


def fbm(u: torch.Tensor, v: torch.Tensor, salt: torch.Tensor | int, octaves: int = 3) -> torch.Tensor:
    """Fractal sum of value noise, normalised to [0, 1]."""
    total = torch.zeros_like(u)
    amp, norm, freq = 1.0, 0.0, 1.0
    for k in range(octaves):
        total = total + amp * value_noise(u * freq, v * freq, salt + 7919 * k)
        norm += amp
        amp *= 0.5
        freq *= 2.03  # not exactly 2 so octave lattices do not align
    return total / norm


def pattern_value(
    kind: torch.Tensor, su: torch.Tensor, sv: torch.Tensor, salt: torch.Tensor, grout: torch.Tensor
) -> torch.Tensor:
    """Mixing weight in [0, 1] between a material's two colours, for pattern ids ``kind``.

    ``su``, ``sv`` are pattern coordinates (one unit = one checker cell / stripe / tile);
    all four patterns are evaluated and the per-pixel one selected (no data-dependent branching).
    """
    cu, cv = torch.floor(su), torch.floor(sv)
    checker = torch.remainder(cu + cv, 2.0)
    # Stripes of random intensities along u.
    stripes = hash2(cu.long(), torch.zeros_like(cu, dtype=torch.long), salt)
    noise = (0.5 + 2.2 * (fbm(su, sv, salt + 101) - 0.5)).clamp(0.0, 1.0)
    # Running-bond tiles: every other row shifted by half a tile, grout lines in colour b.
    tu = su + 0.5 * torch.remainder(cv, 2.0)
    ctu = torch.floor(tu)
    fu, fv = tu - ctu, sv - cv
    edge = torch.minimum(torch.minimum(fu, 1 - fu), torch.minimum(fv, 1 - fv))
    tiles = torch.where(edge < grout, torch.ones_like(su), 0.3 * hash2(ctu.long(), cv.long(), salt + 3))
    out = torch.where(kind == CHECKER, checker, stripes)
    out = torch.where(kind == NOISE, noise, out)
    return torch.where(kind == TILES, tiles, out)
