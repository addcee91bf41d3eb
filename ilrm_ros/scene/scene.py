"""The live Gaussian scene: the latest window, or a bounded persistent map fused window by window."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ilrm_ros.gaussians import Gaussians
from ilrm_ros.geometry import world_to_camera
from ilrm_ros.scene.visibility import seen_by, surface_mask


@dataclass
class UpdateStats:
    """What one :meth:`Scene.update` did: Gaussians added, old ones replaced (seen by the new cameras),
    new ones filtered as near-transparent, ones dropped to keep the budget, and the total after."""

    added: int
    replaced: int
    filtered: int
    dropped: int
    total: int


class Scene:
    """Unbatched Gaussians in the world frame, refreshed from each reconstructed window.

    ``mode="window"``: the scene is the latest window's Gaussians.
    ``mode="map"``: a persistent map. On each update, an old Gaussian that one of the new cameras
    sees - it projects inside that camera's image, lies in front of it (z > ``near``), and is no
    farther than the new predicted depth at that pixel times ``1 + depth_margin`` - is replaced
    by the new Gaussians; old Gaussians outside every new frustum or hidden behind the new
    surfaces are kept. The predicted depth of view ``v`` is the camera-frame z of the new
    Gaussians ``v*H*W .. (v+1)*H*W`` (the model's (view, row, column) order).

    Both modes drop new Gaussians with opacity below ``min_opacity`` (they add almost nothing to
    an image) and then keep at most ``budget`` Gaussians, dropping the lowest scores
    ``score = ln(opacity) - d / distance_scale``, where ``d`` is the distance in metres to the
    nearest of the last ``recent_cameras`` camera centres: a Gaussian 1 x ``distance_scale`` farther
    away must be e (2.7) times more opaque to be kept. So the map cannot grow without bound, and
    what is dropped first is faint and far from where the robot has recently been.

    With ``track_surface``, each update also marks which new Gaussians a window camera sees
    (:func:`~ilrm_ros.scene.visibility.surface_mask`, one render of the window); :attr:`cloud` then
    holds only those. The marks stay with the Gaussians through later updates.

    Updates build new tensors and swap them in under a lock, so a reader holding ``scene.gaussians``
    never sees a half-updated set; ``version`` increases with every update or clear.
    """

    def __init__(
        self, mode: str = "window", budget: int = 200_000, recent_cameras: int = 8, depth_margin: float = 0.05,
        min_opacity: float = 0.005, distance_scale: float = 2.0, near: float = 0.01, track_surface: bool = False,
    ) -> None:
        if mode not in ("window", "map"):
            raise ValueError(f"mode must be 'window' or 'map', got {mode!r}")
        if budget <= 0 or recent_cameras <= 0 or depth_margin < 0 or distance_scale <= 0:
            raise ValueError("budget, recent_cameras and distance_scale must be > 0, depth_margin >= 0")
        self.mode = mode
        self.budget = int(budget)
        self.depth_margin = float(depth_margin)
        self.min_opacity = float(min_opacity)
        self.distance_scale = float(distance_scale)
        self.near = float(near)
        self.track_surface = bool(track_surface)
        self._surface = torch.zeros(0, dtype=torch.bool)
        self._cameras: deque[torch.Tensor] = deque(maxlen=int(recent_cameras))
        self._gaussians = Gaussians.empty()
        self._before: tuple[Gaussians, torch.Tensor, list[torch.Tensor]] | None = None  # for revise
        self._version = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._gaussians)

    @property
    def gaussians(self) -> Gaussians:
        """The current scene (unbatched, world frame). Treat as read-only."""
        return self._gaussians

    @property
    def cloud(self) -> Gaussians:
        """The Gaussians for a point cloud: those a camera saw on a surface (all without ``track_surface``)."""
        with self._lock:
            g, surface = self._gaussians, self._surface
        return g.select(surface) if self.track_surface else g

    @property
    def cameras(self) -> torch.Tensor:
        """The most recent camera-to-world poses [M,4,4], oldest first (M <= recent_cameras)."""
        with self._lock:
            cams = list(self._cameras)
        return torch.stack(cams) if cams else torch.zeros(0, 4, 4)

    @property
    def version(self) -> int:
        return self._version

    def clear(self) -> None:
        with self._lock:
            self._gaussians = Gaussians.empty(self._gaussians.means.device, self._gaussians.sh.shape[1])
            self._surface = torch.zeros(0, dtype=torch.bool, device=self._gaussians.means.device)
            self._cameras.clear()
            self._before = None
            self._version += 1

    def update(
        self, g: Gaussians, intrinsics: torch.Tensor, cam_to_world: torch.Tensor, height: int, width: int,
        revise: bool = False,
    ) -> UpdateStats:
        """Fuse a new window: ``g`` unbatched world-frame Gaussians, N = V*height*width in (view, row,
        column) order (needed in map mode), seen by cameras ``intrinsics [V,3,3]`` / ``cam_to_world
        [V,4,4]`` at the resolution ``height x width`` the Gaussians were predicted at.

        ``revise``: ``g`` replaces the previous update's Gaussians (the same window, refined): the
        scene is fused from the state before that update, as if it had not happened."""
        if g.batched:
            raise ValueError("Scene.update takes unbatched Gaussians")
        dev = g.means.device
        K = torch.as_tensor(intrinsics, dtype=torch.float32, device=dev).reshape(-1, 3, 3)
        c2w = torch.as_tensor(cam_to_world, dtype=torch.float32, device=dev).reshape(-1, 4, 4)
        V = K.shape[0]
        if c2w.shape[0] != V:
            raise ValueError(f"{V} intrinsics but {c2w.shape[0]} poses")
        if self.mode == "map" and V > 0 and len(g) != V * height * width:
            raise ValueError(f"map mode needs N = V*H*W = {V * height * width} Gaussians, got {len(g)}")
        g = g.detach().float()
        with self._lock:
            if revise and self._before is None:
                raise ValueError("Scene.update(revise=True) needs an earlier update to revise")
            before = self._before if revise else (self._gaussians, self._surface, list(self._cameras))
            base, base_surface, base_cameras = before
            old, old_surface = base.to(dev), base_surface.to(dev)
            if self.mode == "window" or len(old) == 0:
                old, old_surface = Gaussians.empty(dev, g.sh.shape[1]), old_surface[:0]
            if old.sh.shape[1] != g.sh.shape[1]:  # keep the SH bases both have
                k = min(old.sh.shape[1], g.sh.shape[1])
                old, g = (Gaussians(x.means, x.quats, x.scales, x.opacities, x.sh[:, :k]) for x in (old, g))
            replaced = len(base) if self.mode == "window" else 0
            if len(old) > 0:
                seen = self._seen(old.means, g.means, K, c2w, height, width)
                replaced = int(seen.sum())
                old, old_surface = old.select(~seen), old_surface[~seen]
            keep_new = g.opacities >= self.min_opacity
            new = g.select(keep_new) if not bool(keep_new.all()) else g
            if self.track_surface:
                new_surface = surface_mask(new, K, c2w, height, width)
            else:
                new_surface = torch.zeros(len(new), dtype=torch.bool, device=dev)
            cameras = deque(base_cameras, maxlen=self._cameras.maxlen)
            cameras.extend(pose.detach().cpu() for pose in c2w)
            merged = Gaussians.cat([old, new])
            surface = torch.cat([old_surface, new_surface])
            dropped = 0
            if len(merged) > self.budget:
                dropped = len(merged) - self.budget
                keep = torch.sort(torch.topk(self._score(merged, cameras), self.budget, sorted=False).indices).values
                merged, surface = merged.select(keep), surface[keep]  # keep the stored order
            # Swapped in only now: an update that fails leaves the scene (and what revise restores) as it was.
            self._gaussians, self._surface, self._cameras, self._before = merged, surface, cameras, before
            self._version += 1
            return UpdateStats(added=len(new), replaced=replaced, filtered=len(g) - len(new), dropped=dropped,
                               total=len(merged))

    def _seen(
        self, points: torch.Tensor, new_means: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor,
        height: int, width: int,
    ) -> torch.Tensor:
        """Old points that any new camera sees in front of (or within the margin of) its predicted depth."""
        seen = torch.zeros(points.shape[0], dtype=torch.bool, device=points.device)
        hw = height * width
        for v in range(K.shape[0]):
            depth = world_to_camera(new_means[v * hw:(v + 1) * hw], c2w[v])[:, 2].reshape(height, width)
            seen |= seen_by(points, K[v], c2w[v], depth, self.depth_margin, self.near)
        return seen

    def _score(self, g: Gaussians, cameras: Sequence[torch.Tensor]) -> torch.Tensor:
        """Usefulness for the budget: ln(opacity) - (distance to the nearest recent camera) / distance_scale."""
        score = torch.log(g.opacities.float().clamp_min(1e-12))
        if cameras:
            centres = torch.stack([c[:3, 3] for c in cameras]).to(g.means.device, torch.float32)
            dist = torch.cdist(g.means.float(), centres).amin(1)
            score = score - dist / self.distance_scale
        return score
