"""Procedural 2D textures evaluated per pixel in PyTorch (deterministic integer hashing).

Every function takes surface coordinates in metres (or already scaled) as float tensors of any
shape and per-pixel parameters broadcastable to them, and works identically on CPU and CUDA.
"""

from __future__ import annotations

import torch

CHECKER, STRIPES, NOISE, TILES = 0, 1, 2, 3
PATTERNS = ("checker", "stripes", "noise", "tiles")

_MASK32 = 0xFFFFFFFF


_HX, _HY, _HS = 374761393, 668265263, 1274126177  # lattice hash weights of x, y and the salt


def hash2(ix: torch.Tensor, iy: torch.Tensor, salt: torch.Tensor | int) -> torch.Tensor:
    """Uniform pseudo-random values in [0, 1) from integer lattice coordinates (int64 tensors)."""
    return _mix(ix * _HX + iy * _HY + torch.as_tensor(salt, device=ix.device) * _HS)


def _mix(h: torch.Tensor) -> torch.Tensor:
    """:func:`hash2` of lattice sums ``ix * _HX + iy * _HY + salt * _HS`` (int64, any shape),
    computed in place (``h`` is overwritten): big batches then stay in cache and allocate less.

    Integer arithmetic is exact, so sums may be formed in any order or batched: neighbouring
    lattice points differ by ``_HX`` / ``_HY``, and many hashes share one pass of these ops.
    """
    h &= _MASK32
    shifted = torch.bitwise_right_shift(h, 13)
    h ^= shifted
    h *= 1103515245
    h &= _MASK32
    h ^= torch.bitwise_right_shift(h, 16, out=shifted)
    torch.bitwise_right_shift(h, 11, out=shifted)
    h *= 668265263
    h &= _MASK32
    h ^= shifted
    h &= 0xFFFFFF
    return h.to(torch.float32).mul_(1.0 / 16777216.0)


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
    # Stripes of random intensities along u.
    stripes = hash2(cu.long(), torch.zeros_like(cu, dtype=torch.long), salt)
    # Running-bond tiles: every other row shifted by half a tile, grout lines in colour b.
    tu = su + 0.5 * torch.remainder(cv, 2.0)
    ctu = torch.floor(tu)
    tile_hash = hash2(ctu.long(), cv.long(), salt + 3)
    return _select_pattern(kind, su, sv, cu, cv, tu, ctu, grout, stripes, tile_hash, fbm(su, sv, salt + 101))


# --------------------------------------------------------------------------- batched evaluation


def _octaves(u: torch.Tensor, v: torch.Tensor, salt: torch.Tensor, octaves: int) -> list[tuple]:
    """Per octave of :func:`fbm`: its coordinates, salt and amplitude (the same float steps)."""
    out, amp, freq = [], 1.0, 1.0
    for k in range(octaves):
        out.append((u * freq, v * freq, salt + 7919 * k, amp))
        amp *= 0.5
        freq *= 2.03
    return out


def _fbm_sum(noise: list[torch.Tensor], amps: list[float]) -> torch.Tensor:
    """:func:`fbm`'s normalised sum of octave noises (same order of float operations)."""
    total, norm = torch.zeros_like(noise[0]), 0.0
    for n, amp in zip(noise, amps):
        total = total + amp * n
        norm += amp
    return total / norm


def surface_texture(
    kind: torch.Tensor,
    su: torch.Tensor,
    sv: torch.Tensor,
    salt: torch.Tensor,
    grout: torch.Tensor,
    du: torch.Tensor,
    dv: torch.Tensor,
    detail_salt: torch.Tensor,
    detail_octaves: int = 2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``pattern_value(kind, su, sv, salt, grout)`` and ``fbm(du, dv, detail_salt, detail_octaves)``,
    bit for bit, with every lattice hash of both in one batched pass (``su``, ``sv``, ``du``,
    ``dv``, ``salt`` and ``detail_salt`` of one shape).

    On CUDA the renderer's cost is mostly kernel launches, and these hashes were most of them
    (~590 small ops per render chunk, now ~110); on the CPU the big in-place batch uses the
    intra-op threads. Batched float ops are exact (floor, fades) and the lerps run per octave
    on :func:`value_noise`'s shapes, so no value changes.
    """
    octs = _octaves(su, sv, salt + 101, 3) + _octaves(du, dv, detail_salt, detail_octaves)
    g = len(octs)
    u, v = torch.stack([o[0] for o in octs]), torch.stack([o[1] for o in octs])  # [G, ...]
    fu, fv = torch.floor(u), torch.floor(v)
    hu, hv = fu.long().mul_(_HX), fv.long().mul_(_HY)
    cu, cv = fu[0], fv[0]  # octave 0 of the pattern noise is (su, sv) itself
    tu = su + 0.5 * torch.remainder(cv, 2.0)  # running-bond tile coordinates
    ctu = torch.floor(tu)
    # Lattice sums of the 4 corners of every octave, then stripes and tiles, hashed at once.
    sums = hu.new_empty((4 * g + 2, *su.shape))
    base = torch.add(hu, hv, out=sums[:g]).add_(torch.stack([o[2] for o in octs]).mul_(_HS))
    for k, step in enumerate((_HX, _HY, _HX + _HY), 1):
        torch.add(base, step, out=sums[k * g : (k + 1) * g])
    salt_h = salt * _HS
    torch.add(hu[0], salt_h, out=sums[4 * g])  # hash2(cu, 0, salt)
    torch.add(ctu.long().mul_(_HX), hv[0], out=sums[4 * g + 1]).add_(salt_h + 3 * _HS)  # hash2(ctu, cv, salt + 3)
    h = _mix(sums)
    noise = _lattice_noise(h[: 4 * g].unflatten(0, (4, g)), u - fu, v - fv)
    fbm_pattern = _fbm_sum(noise[:3], [o[3] for o in octs[:3]])
    detail = _fbm_sum(noise[3:], [o[3] for o in octs[3:]])
    w = _select_pattern(kind, su, sv, cu, cv, tu, ctu, grout, h[4 * g], h[4 * g + 1], fbm_pattern)
    return w, detail


def _lattice_noise(h: torch.Tensor, tu: torch.Tensor, tv: torch.Tensor) -> list[torch.Tensor]:
    """:func:`value_noise` of each octave from corner hashes ``h [4, G, ...]`` and cell fractions
    ``[G, ...]``: the fades are batched (exact ops), the lerps run per octave on the shapes
    :func:`value_noise` gives them."""
    tu = tu * tu * (3 - 2 * tu)
    tv = tv * tv * (3 - 2 * tv)
    a, b, c, d = h
    return [torch.lerp(torch.lerp(a[k], b[k], tu[k]), torch.lerp(c[k], d[k], tu[k]), tv[k]) for k in range(len(tu))]


def _select_pattern(kind, su, sv, cu, cv, tu, ctu, grout, stripes, tile_hash, fbm_value) -> torch.Tensor:
    """The four patterns from their cells, hashes and noise sum, and the per-pixel selection."""
    checker = torch.remainder(cu + cv, 2.0)
    noise = (0.5 + 2.2 * (fbm_value - 0.5)).clamp(0.0, 1.0)
    fu, fv = tu - ctu, sv - cv
    edge = torch.minimum(torch.minimum(fu, 1 - fu), torch.minimum(fv, 1 - fv))
    tiles = torch.where(edge < grout, torch.ones_like(su), 0.3 * tile_hash)
    out = torch.where(kind == CHECKER, checker, stripes)
    out = torch.where(kind == NOISE, noise, out)
    return torch.where(kind == TILES, tiles, out)
