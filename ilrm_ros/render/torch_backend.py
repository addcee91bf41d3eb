"""CPU renderer in plain PyTorch that reproduces gsplat 1.5.3's classic 3DGS rasterizer.

It follows gsplat's CUDA kernels step by step, so it serves as the reference in tests and as
the renderer of the CPU demo:

* projection (``fully_fused_projection``): world->camera, covariance ``R S S^T R^T`` from the
  (normalised) quaternion and scales, EWA Jacobian of the pinhole projection at the mean with
  ``x/z`` and ``y/z`` clamped to the image extent plus 0.3 x tan(half-FOV) on each side (the
  "1.3x FOV" limit), ``eps2d = 0.3`` px^2 added to the 2D covariance diagonal, conic = its
  inverse. Culled: ``z < near`` or ``z > far``, ``det <= 0``, opacity < 1/255, and footprints
  entirely outside the image.
* radius: gsplat's opacity-aware tight box, ``ceil(extend * sqrt(cov2d_xx))`` (and yy) with
  ``extend = min(3.33, sqrt(2 ln(255 opacity)))`` - the box where alpha can still reach 1/255.
* tiles: each Gaussian is binned to the tiles its box touches (8x8 here, 16x16 in gsplat: the
  image does not depend on it, because the box already holds every pixel where the Gaussian's
  alpha can reach 1/255; 8x8 is about 2-3x faster on CPU), Gaussians are sorted front-to-back
  by camera z once (stable, so ties keep input order, as gsplat's radix sort).
* rasterization: pixel centres at ``(x + 0.5, y + 0.5)``; ``alpha = min(0.999, o exp(-s))`` (0.999
  is the cap in gsplat 1.5.3's kernel)
  with ``s = 0.5 d^T conic d``; a Gaussian with alpha < 1/255 is skipped; compositing stops
  *before* the Gaussian that would bring transmittance to <= 1e-4; colour channels are
  ``max(0, 0.5 + C0 sh)`` (gsplat's degree-0 SH), camera z is composited as a fourth channel,
  ``rgb = sum w c + T bg`` and expected depth ``sum w z / max(1 - T, 1e-10)`` (0 where nothing
  was hit); the returned RGB is clipped to [0, 1].

Tiny remaining differences from gsplat (float rounding only, well below 1/255):
``o exp(-s)`` is evaluated as ``exp(ln o - s)`` (gsplat: ``__expf``, fast-math), so gsplat's
skip of Gaussians whose rounded ``s`` is negative is not reproduced (``s`` is mathematically >= 0);
the transmittance is a ``cumprod`` and each weight ``alpha T`` is taken as ``T_before - T_after``
(equal up to rounding), summed with a matrix product instead of one sequential float loop, so
a pixel whose transmittance lands within float rounding of 1e-4 or a Gaussian whose alpha lands
within rounding of 1/255 may be treated the other way; and GPU fused multiply-adds round differently.

Memory is bounded: tiles are rasterized in batches of at most ``max_elements`` (pixel, Gaussian)
pairs (tiles with similar Gaussian counts are batched together, each tile's depth-sorted list is
walked in chunks of ``gaussians_per_chunk`` with the transmittance carried over), and a batch stops
as soon as all its pixels are saturated.
"""

from __future__ import annotations

import math

import torch

from ilrm_ros.gaussians import SH_C0, Gaussians
from ilrm_ros.geometry import quat_to_rotmat

TILE = 8  # binning tile for the CPU (gsplat uses 16; smaller tiles evaluate fewer pixel-Gaussian pairs)
ALPHA_THRESHOLD = 1.0 / 255.0
ALPHA_MAX = 0.999
T_MIN = 1e-4
EPS2D = 0.3
EXTEND_MAX = 3.33
FOV_MARGIN = 0.3


def project(
    g: Gaussians, K: torch.Tensor, viewmat: torch.Tensor, width: int, height: int,
    near: float = 0.01, far: float = 500.0, eps2d: float = EPS2D,
) -> dict[str, torch.Tensor]:
    """Project unbatched Gaussians into one camera as gsplat does.

    Returns the visible Gaussians sorted front-to-back: ``ids`` (indices into ``g``), ``means2d``
    [M,2] pixels, ``cov2d`` [M,3] (xx, xy, yy, blur included), ``conics`` [M,3] (inverse of
    cov2d: xx, xy, yy), ``depths`` [M] camera z, ``opacities`` [M], ``colors`` [M,3] (unclipped
    above, as gsplat), ``radii`` [M,2] integer half-extents in pixels.
    """
    dev = g.means.device
    K = K.to(dev, torch.float32)
    viewmat = viewmat.to(dev, torch.float32)
    R, t = viewmat[:3, :3], viewmat[:3, 3]
    mc = g.means.float() @ R.T + t
    z = mc[:, 2]
    ids = torch.nonzero((z >= near) & (z <= far)).squeeze(1)
    mc, z = mc[ids], z[ids]
    opac = g.opacities.float()[ids]

    rot = quat_to_rotmat(g.quats.float()[ids])
    M = rot * g.scales.float()[ids][:, None, :]
    cov_c = R @ (M @ M.transpose(1, 2)) @ R.T

    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    lim_xp = (width - cx) / fx + FOV_MARGIN * (0.5 * width / fx)
    lim_xn = cx / fx + FOV_MARGIN * (0.5 * width / fx)
    lim_yp = (height - cy) / fy + FOV_MARGIN * (0.5 * height / fy)
    lim_yn = cy / fy + FOV_MARGIN * (0.5 * height / fy)
    rz = 1.0 / z
    tx = z * torch.minimum(lim_xp, torch.maximum(-lim_xn, mc[:, 0] * rz))
    ty = z * torch.minimum(lim_yp, torch.maximum(-lim_yn, mc[:, 1] * rz))
    # J = [[fx/z, 0, -fx tx/z^2], [0, fy/z, -fy ty/z^2]]
    zeros = torch.zeros_like(z)
    J = torch.stack(
        [torch.stack([fx * rz, zeros, -fx * tx * rz * rz], -1), torch.stack([zeros, fy * rz, -fy * ty * rz * rz], -1)],
        dim=1,
    )
    cov2 = J @ cov_c @ J.transpose(1, 2)
    a = cov2[:, 0, 0] + eps2d
    b = cov2[:, 0, 1]
    c = cov2[:, 1, 1] + eps2d
    det = a * c - b * b
    means2d = torch.stack([fx * mc[:, 0] * rz + cx, fy * mc[:, 1] * rz + cy], -1)

    keep = (det > 0) & (opac >= ALPHA_THRESHOLD)
    safe_op = opac.clamp_min(ALPHA_THRESHOLD)
    extend = torch.sqrt(2.0 * torch.log(safe_op / ALPHA_THRESHOLD)).clamp(max=EXTEND_MAX)
    rx = torch.ceil(extend * torch.sqrt(a.clamp_min(0)))
    ry = torch.ceil(extend * torch.sqrt(c.clamp_min(0)))
    mx, my = means2d[:, 0], means2d[:, 1]
    keep &= (rx > 0) & (ry > 0)
    keep &= (mx + rx > 0) & (mx - rx < width) & (my + ry > 0) & (my - ry < height)

    sel = torch.nonzero(keep).squeeze(1)
    order = sel[torch.sort(z[sel], stable=True).indices]
    det = det[order]
    a, b, c = a[order], b[order], c[order]
    sh0 = g.sh.float()[ids[order], 0, :]
    return {
        "ids": ids[order],
        "means2d": means2d[order],
        "cov2d": torch.stack([a, b, c], -1),
        "conics": torch.stack([c / det, -b / det, a / det], -1),
        "depths": z[order],
        "opacities": opac[order],
        "colors": (0.5 + SH_C0 * sh0).clamp_min(0.0),
        "radii": torch.stack([rx[order], ry[order]], -1).to(torch.int32),
    }


def _bin_tiles(means2d: torch.Tensor, radii: torch.Tensor, tiles_x: int, tiles_y: int, tile: int):
    """(tile id, depth rank) pairs sorted by tile then depth, and per-tile start/count."""
    M = means2d.shape[0]
    r = radii.to(means2d.dtype)
    gx, gy = means2d[:, 0] / tile, means2d[:, 1] / tile
    x0 = torch.floor(gx - r[:, 0] / tile).clamp(0, tiles_x).long()
    x1 = torch.ceil(gx + r[:, 0] / tile).clamp(0, tiles_x).long()
    y0 = torch.floor(gy - r[:, 1] / tile).clamp(0, tiles_y).long()
    y1 = torch.ceil(gy + r[:, 1] / tile).clamp(0, tiles_y).long()
    nx = x1 - x0
    count = nx * (y1 - y0)
    total = int(count.sum())
    rank = torch.repeat_interleave(torch.arange(M, device=means2d.device), count)
    first = torch.cumsum(count, 0) - count
    off = torch.arange(total, device=means2d.device) - first[rank]
    nxr = nx[rank]
    tile_id = (y0[rank] + off // nxr) * tiles_x + x0[rank] + off % nxr
    tile_id, perm = torch.sort(tile_id, stable=True)  # stable: depth order kept inside each tile
    rank = rank[perm]
    counts = torch.bincount(tile_id, minlength=tiles_x * tiles_y)
    starts = torch.cumsum(counts, 0) - counts
    return rank, starts, counts


def rasterize(
    proj: dict[str, torch.Tensor], width: int, height: int, background: torch.Tensor,
    max_elements: int = 1 << 21, gaussians_per_chunk: int = 256, tile: int = TILE,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Composite projected Gaussians (from :func:`project`) into ``rgb [H,W,3]``, ``depth [H,W]``, ``alpha [H,W]``.

    ``tile`` is the square tile size used for binning; since a Gaussian's box already holds every
    pixel where its alpha can reach 1/255, the image does not depend on it (gsplat uses 16).
    """
    dev = proj["means2d"].device
    tiles_x, tiles_y = math.ceil(width / tile), math.ceil(height / tile)
    P = tile * tile
    acc_all = torch.zeros(tiles_x * tiles_y, P, 4, device=dev)
    T_all = torch.ones(tiles_x * tiles_y, P, device=dev)
    M = proj["means2d"].shape[0]
    if M > 0:
        rank, starts, counts = _bin_tiles(proj["means2d"], proj["radii"], tiles_x, tiles_y, tile)
        # Per-Gaussian terms, negated so exp() gives o * exp(-0.5 d^T conic d) directly, with a
        # sentinel at index M that never contributes (ln o = -inf).
        pad = lambda t, v: torch.cat([t, t.new_full((1, *t.shape[1:]), v)])  # noqa: E731
        mx = pad(proj["means2d"][:, 0], 0.0)
        my = pad(proj["means2d"][:, 1], 0.0)
        na = pad(-0.5 * proj["conics"][:, 0], 0.0)
        nb = pad(-proj["conics"][:, 1], 0.0)
        nc = pad(-0.5 * proj["conics"][:, 2], 0.0)
        log_op = pad(torch.log(proj["opacities"]), -math.inf)
        feats = pad(torch.cat([proj["colors"], proj["depths"][:, None]], 1), 0.0)
        total = rank.numel()
        nonempty = torch.nonzero(counts).squeeze(1)
        nonempty = nonempty[torch.sort(counts[nonempty], descending=True, stable=True).indices]
        ar = torch.arange(tile, device=dev, dtype=torch.float32) + 0.5
        # alpha >= 1/255 kept (gsplat skips alpha < 1/255): threshold() keeps x > the float below 1/255.
        thr = float(torch.nextafter(torch.tensor(ALPHA_THRESHOLD), torch.tensor(0.0)))
        i, n_ne = 0, nonempty.numel()
        while i < n_ne:
            cmax = int(counts[nonempty[i]])
            kc = min(cmax, gaussians_per_chunk)
            bt = max(1, max_elements // (P * kc))
            tiles = nonempty[i:i + bt]
            i += bt
            b = tiles.numel()
            cnt, st = counts[tiles], starts[tiles]
            px = (tiles % tiles_x)[:, None] * tile + ar  # [b,tile] pixel-centre x per column
            py = (tiles // tiles_x)[:, None] * tile + ar  # [b,tile] pixel-centre y per row
            T = torch.ones(b, P, device=dev)  # transmittance carried between chunks; 0 once a pixel is done
            T_final = torch.ones(b, P, device=dev)
            done = torch.zeros(b, P, dtype=torch.bool, device=dev)
            acc = torch.zeros(b, P, 4, device=dev)
            kk = torch.arange(kc, device=dev)
            buf = torch.empty(b, P, kc + 1, device=dev)
            for k0 in range(0, cmax, kc):
                pos = st[:, None] + k0 + kk
                gid = torch.where(k0 + kk < cnt[:, None], rank[pos.clamp(max=total - 1)], M)  # [b,kc]
                dx = mx[gid][:, None, :] - px[:, :, None]  # [b,col,kc]
                dy = my[gid][:, None, :] - py[:, :, None]  # [b,row,kc]
                row = (nc[gid][:, None, :] * dy).mul_(dy).add_(log_op[gid][:, None, :])
                col = (na[gid][:, None, :] * dx).mul_(dx)
                alpha = dy[:, :, None, :] * (nb[gid][:, None, :] * dx)[:, None, :, :]  # [b,row,col,kc]
                alpha += row[:, :, None, :]
                alpha += col[:, None, :, :]
                alpha = alpha.exp_().view(b, P, kc).clamp_(max=ALPHA_MAX)
                torch.nn.functional.threshold_(alpha, thr, 0.0)
                # buf = [T, T(1-a1), T(1-a1)(1-a2), ...]: transmittance before/after each Gaussian.
                buf[:, :, 0] = T
                torch.sub(1.0, alpha, out=buf[:, :, 1:])
                buf.cumprod_(-1)
                stop = (buf[:, :, -1] <= T_MIN) & ~done
                if bool(stop.any()):
                    # Compositing ends before the first Gaussian that takes T to <= 1e-4: hold T at the
                    # last value above it so those Gaussians (and the rest) get zero weight.
                    idx = torch.nonzero(stop.view(-1)).squeeze(1)
                    rows = buf.view(-1, kc + 1)[idx]
                    n_ok = (rows > T_MIN).sum(-1, keepdim=True)
                    T_stop = rows.gather(1, n_ok - 1)
                    buf.view(-1, kc + 1)[idx] = torch.maximum(rows, T_stop)
                    T_final.view(-1)[idx] = T_stop.squeeze(1)
                    done |= stop
                # weight of Gaussian k = T_before - T_after = alpha_k T_before.
                acc.baddbmm_(buf[:, :, :-1] - buf[:, :, 1:], feats[gid])
                T = torch.where(done, 0.0, buf[:, :, -1])
                if bool(done.all()):
                    break
            acc_all[tiles] = acc
            T_all[tiles] = torch.where(done, T_final, T)

    def to_image(t: torch.Tensor) -> torch.Tensor:
        t = t.view(tiles_y, tiles_x, tile, tile, *t.shape[2:]).transpose(1, 2)
        return t.reshape(tiles_y * tile, tiles_x * tile, *t.shape[4:])[:height, :width]

    acc_img, T_img = to_image(acc_all), to_image(T_all)
    alpha_img = 1.0 - T_img
    rgb = (acc_img[..., :3] + T_img[..., None] * background.to(dev, torch.float32)).clamp(0.0, 1.0)
    depth = acc_img[..., 3] / alpha_img.clamp_min(1e-10)
    return rgb, depth, alpha_img


def rasterize_differentiable(
    proj: dict[str, torch.Tensor], width: int, height: int, background: torch.Tensor, chunk: int = 512,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The same compositing as :func:`rasterize`, out of plain out-of-place ops so autograd flows.

    Every pixel meets every visible Gaussian (chunked over Gaussians, transmittance carried), so
    it suits the small images and scenes of CPU training and tests, not large renders.
    """
    dev = proj["means2d"].device
    ys, xs = torch.meshgrid(torch.arange(height, device=dev, dtype=torch.float32) + 0.5,
                            torch.arange(width, device=dev, dtype=torch.float32) + 0.5, indexing="ij")
    px, py = xs.reshape(-1, 1), ys.reshape(-1, 1)
    T = torch.ones(height * width, device=dev)
    alive = torch.ones(height * width, dtype=torch.bool, device=dev)
    acc = torch.zeros(height * width, 4, device=dev)
    feats = torch.cat([proj["colors"], proj["depths"][:, None]], 1)
    for k0 in range(0, proj["means2d"].shape[0], chunk):
        sl = slice(k0, k0 + chunk)
        dx = proj["means2d"][sl, 0] - px
        dy = proj["means2d"][sl, 1] - py
        conic = proj["conics"][sl]
        s = 0.5 * conic[:, 0] * dx * dx + conic[:, 1] * dx * dy + 0.5 * conic[:, 2] * dy * dy
        alpha = (proj["opacities"][sl] * torch.exp(-s)).clamp(max=ALPHA_MAX)
        alpha = torch.where(alpha >= ALPHA_THRESHOLD, alpha, torch.zeros_like(alpha))
        after = T[:, None] * torch.cumprod(1.0 - alpha, dim=1)
        before = torch.cat([T[:, None], after[:, :-1]], 1)
        # Compositing stops before the first Gaussian that would take T to <= 1e-4.
        ok = alive[:, None] & (torch.cumsum((after <= T_MIN).int(), dim=1) == 0)
        weights = torch.where(ok, before - after, torch.zeros_like(after))
        acc = acc + weights @ feats[sl]
        n_ok = ok.sum(1)
        T_last = torch.gather(torch.cat([T[:, None], after], 1), 1, n_ok[:, None]).squeeze(1)
        T = torch.where(alive, T_last, T)
        alive = alive & (n_ok == ok.shape[1])
    T_img = T.view(height, width)
    acc_img = acc.view(height, width, 4)
    alpha_img = 1.0 - T_img
    rgb = (acc_img[..., :3] + T_img[..., None] * background.to(dev, torch.float32)).clamp(0.0, 1.0)
    depth = acc_img[..., 3] / alpha_img.clamp_min(1e-10)
    return rgb, depth, alpha_img


def render(
    g: Gaussians, Ks: torch.Tensor, viewmats: torch.Tensor, width: int, height: int,
    backgrounds: torch.Tensor, near: float = 0.01, far: float = 500.0,
    max_elements: int = 1 << 21, gaussians_per_chunk: int = 256, tile: int = TILE,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Render unbatched Gaussians into C cameras (``Ks [C,3,3]``, world-to-camera ``viewmats [C,4,4]``,
    ``backgrounds [C,3]``): ``rgb [C,H,W,3]``, expected ``depth [C,H,W]``, ``alpha [C,H,W]``.

    When autograd is on and a Gaussian parameter requires a gradient (CPU training), the
    differentiable compositor runs; otherwise the fast tiled one under ``no_grad``.
    """
    differentiable = torch.is_grad_enabled() and any(
        t.requires_grad for t in (g.means, g.quats, g.scales, g.opacities, g.sh))
    out = []
    for k, vm, bg in zip(Ks, viewmats, backgrounds):
        if differentiable:
            proj = project(g, k, vm, width, height, near, far)
            out.append(rasterize_differentiable(proj, width, height, bg))
        else:
            with torch.no_grad():
                proj = project(g, k, vm, width, height, near, far)
                out.append(rasterize(proj, width, height, bg, max_elements, gaussians_per_chunk, tile))
    rgb, depth, alpha = (torch.stack(x) for x in zip(*out))
    return rgb, depth, alpha
