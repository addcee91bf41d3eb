"""The held-out synthetic benchmark behind ``ilrm eval``.

Scenes are ``SyntheticRoom(seed)`` for the first ``num_scenes`` seeds of
:data:`~ilrm_ros.train.splits.EVAL_SEEDS` (never used in training), each with its seeded
robot/handheld path. For every scene and context size (2 and 4 views) the context keyframes and
four target frames (two between the first and last context view, two beyond them) are drawn from
a generator seeded by (scene seed, views), so every run sees exactly the same views.

Methods (all rendered with :func:`ilrm_ros.render.render` on white, scored with
:mod:`ilrm_ros.pipeline.metrics`):

* the model under test (and a GS-LRM-style baseline checkpoint, if given): refresh time = the
  model forward of :func:`~ilrm_ros.model.reconstruct`, CUDA-synchronised, after one warm-up;
* the same model with its Gaussians refined on the context views for N steps (``--refine-steps``):
  refresh time = the model's forward plus one timed refinement;
* ``nearest context``: each target scored against the context image of the nearest camera (the floor);
* ``3DGS optim Ns``: per-scene Gaussian optimisation for N seconds (:mod:`.gs_optim`, CUDA only).

Geometry, for the methods that build Gaussians: ``depth AbsRel`` = median over the target pixels of
|rendered expected depth - true depth| / true depth, and ``in room`` = the share of the Gaussians
that ``~/points`` would publish (opacity >= 0.1) lying inside the room's bounds (+-0.5 m), and
``seen in room``, the same for the cloud of ``points.visible_only`` (the Gaussians a context camera
sees, :func:`~ilrm_ros.scene.visibility.surface_mask`). Renders can look right with Gaussians
hidden behind surfaces; a point cloud cannot.

``PSNR context``, for the same methods: the Gaussians rendered at the context cameras against the
context images. It bounds what the targets can reach: detail a method cannot reproduce in its own
input views it will not show in new ones.
"""

from __future__ import annotations

import json
import math
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ilrm_ros.gaussians import Gaussians
from ilrm_ros.pipeline.config import PipelineConfig
from ilrm_ros.render import WHITE
from ilrm_ros.scene.refine import DEFAULT_LR_SCALE
from ilrm_ros.train.data import ViewBatch, make_synthetic_scene, render_views
from ilrm_ros.train.splits import EVAL_SEEDS
from ilrm_ros.train.views import sample_views

VIEW_COUNTS = (2, 4)
NUM_BETWEEN = 2
NUM_BEYOND = 2
POINT_MIN_OPACITY = PipelineConfig().points_min_opacity  # what ~/points publishes by default
ROOM_MARGIN_M = 0.5


@dataclass
class Case:
    """One benchmark item: a scene's context and target views (a one-scene :class:`ViewBatch`)."""

    seed: int
    num_views: int
    views: ViewBatch
    bounds: tuple[torch.Tensor, torch.Tensor]


def make_cases(
    num_scenes: int,
    height: int,
    width: int,
    device: torch.device | str = "cpu",
    view_counts: tuple[int, ...] = VIEW_COUNTS,
) -> list[Case]:
    """The fixed benchmark cases (deterministic in the arguments)."""
    cases = []
    for seed in EVAL_SEEDS[:num_scenes]:
        scene = make_synthetic_scene(seed, device)
        for v in view_counts:
            rng = np.random.default_rng([seed, v, 0xE7A1])
            for _ in range(100):  # a draw whose context span leaves room beyond it on the path
                choice = sample_views(
                    rng,
                    len(scene.path.cam_to_world),
                    scene.path.keyframes,
                    v,
                    NUM_BETWEEN + NUM_BEYOND,
                    beyond_fraction=NUM_BEYOND / (NUM_BETWEEN + NUM_BEYOND),
                )
                if choice is not None and int(choice.beyond.sum()) == NUM_BEYOND:
                    break
            else:
                raise RuntimeError(f"eval scene {seed}: no view choice with {v} context views and targets beyond")
            cases.append(Case(seed, v, render_views(scene, choice, height, width), scene.room.bounds))
    return cases


@dataclass
class Prediction:
    rgb: torch.Tensor  # [T, H, W, 3] in [0, 1]
    refresh_s: float | None = None  # time to (re)build the scene representation
    depth: torch.Tensor | None = None  # [T, H, W] expected depth in metres (methods with geometry)
    points_in_room: float | None = None  # share of published Gaussians inside the room
    seen_in_room: float | None = None  # the same, of the Gaussians a context camera sees
    context_rgb: torch.Tensor | None = None  # [V, H, W, 3] the Gaussians rendered at the context cameras


def points_in_room(
    g: Gaussians, bounds: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor | None = None
) -> float:
    """Share of the Gaussians (of ``mask``) with opacity >= 0.1 inside ``bounds`` widened by 0.5 m (NaN if none)."""
    keep = g.opacities.reshape(-1) >= POINT_MIN_OPACITY
    if mask is not None:
        keep &= mask
    xyz = g.means.reshape(-1, 3)[keep].float()
    if len(xyz) == 0:
        return float("nan")
    lo, hi = (b.to(xyz.device, torch.float32) for b in bounds)
    return ((xyz >= lo - ROOM_MARGIN_M) & (xyz <= hi + ROOM_MARGIN_M)).all(1).float().mean().item()


def depth_absrel(depth: torch.Tensor, truth: torch.Tensor) -> float:
    """Median |depth - truth| / truth over the pixels with a true depth."""
    valid = truth > 0
    return ((depth - truth).abs() / truth.clamp_min(1e-6))[valid].median().item()


def _with_geometry(pred: Prediction, g: Gaussians, case: Case) -> Prediction:
    """``pred`` with the point-cloud scores of the Gaussians ``g`` built from ``case``'s context views,
    and their renders at the context cameras."""
    from ilrm_ros.render import render
    from ilrm_ros.scene.visibility import surface_mask

    v = case.views
    device = g.means.device
    ks, c2w = v.context_intrinsics[0].to(device), v.context_cam_to_world[0].to(device)
    seen = surface_mask(g, ks, c2w, *v.image_size)
    pred.points_in_room = points_in_room(g, case.bounds)
    pred.seen_in_room = points_in_room(g, case.bounds, seen)
    h, w = v.image_size
    pred.context_rgb = render(g, ks, c2w, w, h, background=WHITE).rgb
    return pred


class Method:
    """A way to predict the target views of a :class:`Case`."""

    name = ""
    note = ""

    def available(self, device: torch.device) -> str | None:
        """None when it runs here, else why it is skipped."""
        return None

    def predict(self, case: Case) -> Prediction:
        raise NotImplementedError


CUDA_REFRESH_REPEATS = 5
"""Timed forwards per scene on a GPU (the median counts): one eager forward of the small model is
launch-bound, and single timings of the same checkpoint ranged from 8 to 37 ms (session 21)."""


def refresh_repeats(device: torch.device) -> int:
    """Timed forwards per scene on ``device``: :data:`CUDA_REFRESH_REPEATS` on a GPU, one on the CPU."""
    return CUDA_REFRESH_REPEATS if device.type == "cuda" else 1


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class ModelMethod(Method):
    """A feed-forward model (iLRM or GS-LRM) through :func:`~ilrm_ros.model.reconstruct`."""

    def __init__(self, name: str, model, note: str = "") -> None:
        self.name, self.model, self.note = name, model, note
        self._warm: set[tuple] = set()

    def predict(self, case: Case) -> Prediction:
        from ilrm_ros.render import render

        v = case.views
        g, refresh = self._gaussians(case)
        h, w = v.image_size
        device = g.means.device
        out = render(g, v.target_intrinsics[0].to(device), v.target_cam_to_world[0].to(device), w, h, background=WHITE)
        return _with_geometry(Prediction(out.rgb, refresh, out.depth), g, case)

    def _gaussians(self, case: Case) -> tuple[Gaussians, float]:
        """The model's Gaussians for ``case`` and the median time of its timed forwards."""
        from ilrm_ros.model import reconstruct

        v = case.views
        device = next(self.model.parameters()).device
        args = (
            v.context_images[0].to(device),
            v.context_intrinsics[0].to(device),
            v.context_cam_to_world[0].to(device),
        )
        key = tuple(args[0].shape)
        if key not in self._warm:  # kernels, autotuning and allocations of a new input shape
            reconstruct(self.model, *args)
            self._warm.add(key)
        times = []
        for _ in range(refresh_repeats(device)):
            _sync(device)
            t0 = time.perf_counter()
            g = reconstruct(self.model, *args)
            _sync(device)
            times.append(time.perf_counter() - t0)
        return g, statistics.median(times)


class RefinedModelMethod(ModelMethod):
    """A feed-forward model whose Gaussians are then refined on the context views
    (:func:`~ilrm_ros.scene.refine.refine_gaussians`); refresh = forward + refinement."""

    def __init__(self, name: str, model, steps: int, lr_scale: float = DEFAULT_LR_SCALE) -> None:
        super().__init__(f"{name} + refine {steps} steps", model,
                         note=f"{steps} Adam steps on the context views (3DGS loss, rates x{lr_scale:g})")
        self.steps, self.lr_scale = steps, lr_scale

    def _gaussians(self, case: Case) -> tuple[Gaussians, float]:
        from ilrm_ros.scene.refine import refine_gaussians

        g, forward_s = super()._gaussians(case)
        v = case.views
        device = g.means.device
        args = (v.context_images[0].to(device), v.context_intrinsics[0].to(device),
                v.context_cam_to_world[0].to(device), self.steps, self.lr_scale)
        key = ("refine", *args[0].shape)
        if key not in self._warm:  # one-time costs (kernels, optimizer set-up), as the node's warm-up pays them
            refine_gaussians(g, *args[:3], 1, self.lr_scale)
            self._warm.add(key)
        _sync(device)
        t0 = time.perf_counter()
        g = refine_gaussians(g, *args)
        _sync(device)
        return g, forward_s + time.perf_counter() - t0


def pose_distance(a: torch.Tensor, b: torch.Tensor, metres_per_radian: float = 0.5) -> torch.Tensor:
    """Camera distance ``|t_a - t_b| + metres_per_radian * angle(R_a, R_b)`` between pose sets ``[A]`` x ``[B]``."""
    from ilrm_ros.geometry import rotation_angle_deg

    a, b = a.double(), b.double()
    trans = torch.cdist(a[:, :3, 3], b[:, :3, 3])
    angle = torch.deg2rad(rotation_angle_deg(a[:, None, :3, :3], b[None, :, :3, :3]))
    return trans + metres_per_radian * angle


class NearestContext(Method):
    """The floor: each target view predicted by the closest context image, unchanged."""

    name = "nearest context"
    note = "closest context camera by |dt| + 0.5 m/rad x angle"

    def predict(self, case: Case) -> Prediction:
        v = case.views
        nearest = pose_distance(v.target_cam_to_world[0], v.context_cam_to_world[0]).argmin(1)
        return Prediction(v.context_images[0, nearest].permute(0, 2, 3, 1), 0.0)


class GaussianOptim(Method):
    """Per-scene 3DGS optimisation for a fixed wall-clock budget (see :mod:`.gs_optim`)."""

    def __init__(self, budget_s: float, num_points: int = 50_000) -> None:
        self.budget_s, self.num_points = budget_s, num_points
        self.name = f"3DGS optim {budget_s:g}s"
        self.note = f"{num_points} random Gaussians in the room bounds, Adam, no densification"
        self.steps: list[int] = []

    def available(self, device: torch.device) -> str | None:
        if device.type != "cuda":
            return "needs CUDA (gsplat)"
        try:
            import gsplat  # noqa: F401
        except ImportError as exc:
            return f"gsplat missing ({exc})"
        return None

    def predict(self, case: Case) -> Prediction:
        from ilrm_ros.render import render

        from .gs_optim import optimise_gaussians

        v = case.views
        device = v.context_images.device
        t0 = time.perf_counter()
        g, steps = optimise_gaussians(
            v.context_images[0],
            v.context_intrinsics[0],
            v.context_cam_to_world[0],
            case.bounds,
            self.budget_s,
            self.num_points,
            seed=case.seed,
        )
        _sync(device)
        refresh = time.perf_counter() - t0
        self.steps.append(steps)
        h, w = v.image_size
        out = render(g, v.target_intrinsics[0], v.target_cam_to_world[0], w, h, background=WHITE)
        return _with_geometry(Prediction(out.rgb, refresh, out.depth), g, case)


@dataclass
class Row:
    method: str
    num_views: int
    psnr_between: float
    ssim_between: float
    psnr_beyond: float
    ssim_beyond: float
    refresh_ms: float | None
    scenes: int
    per_scene: list[dict] = field(default_factory=list)
    depth_absrel: float | None = None
    points_in_room: float | None = None
    seen_in_room: float | None = None
    psnr_context: float | None = None


def evaluate(
    methods: list[Method], cases: list[Case], progress: Callable[[str], None] | None = None
) -> tuple[list[Row], dict]:
    """Score every available method on every case; returns table rows and {method: skip reason}."""
    from ilrm_ros.pipeline.metrics import psnr, ssim

    skipped: dict[str, str] = {}
    rows: list[Row] = []
    device = cases[0].views.context_images.device if cases else torch.device("cpu")
    for method in methods:
        why = method.available(device)
        if why:
            skipped[method.name] = why
            continue
        for v in sorted({c.num_views for c in cases}):
            per_scene = []
            for case in (c for c in cases if c.num_views == v):
                pred = method.predict(case)
                gt = case.views.target_images[0].permute(0, 2, 3, 1)
                beyond = case.views.target_beyond[0].cpu()
                rgb = pred.rgb.float().cpu()
                gt = gt.float().cpu()
                entry = {"seed": case.seed, "refresh_s": pred.refresh_s}
                if pred.depth is not None and case.views.target_depth is not None:
                    entry["depth_absrel"] = depth_absrel(pred.depth.float().cpu(), case.views.target_depth[0].cpu())
                    entry["points_in_room"] = pred.points_in_room
                    entry["seen_in_room"] = pred.seen_in_room
                if pred.context_rgb is not None:
                    ctx = case.views.context_images[0].permute(0, 2, 3, 1).float().cpu()
                    got = pred.context_rgb.float().cpu()
                    entry["psnr_context"] = statistics.fmean(psnr(got[i], ctx[i]) for i in range(len(ctx)))
                for label, mask in (("between", ~beyond), ("beyond", beyond)):
                    idx = torch.nonzero(mask).squeeze(1)
                    entry[f"psnr_{label}"] = statistics.fmean(psnr(rgb[i], gt[i]) for i in idx.tolist())
                    entry[f"ssim_{label}"] = ssim(rgb[idx], gt[idx])
                per_scene.append(entry)
                if progress:
                    scores = f"{entry['psnr_between']:.2f}/{entry['psnr_beyond']:.2f} dB"
                    progress(f"{method.name} v={v} seed={case.seed}: {scores}")
            times = [e["refresh_s"] for e in per_scene if e["refresh_s"] is not None]
            keys = [k for k in per_scene[0] if k.startswith(("psnr", "ssim"))]
            means = {k: statistics.fmean(e[k] for e in per_scene) for k in keys}
            refresh_ms = 1000 * statistics.median(times) if times else None
            geometry = {
                k: statistics.fmean(e[k] for e in per_scene) if all(k in e for e in per_scene) else None
                for k in ("depth_absrel", "points_in_room", "seen_in_room", "psnr_context")
            }
            rows.append(
                Row(
                    method.name,
                    v,
                    means["psnr_between"],
                    means["ssim_between"],
                    means["psnr_beyond"],
                    means["ssim_beyond"],
                    refresh_ms,
                    len(per_scene),
                    per_scene,
                    **geometry,
                )
            )
    return rows, skipped


def _fmt(x: float | None, digits: int) -> str:
    if x is None:
        return "-"
    return "inf" if math.isinf(x) else f"{x:.{digits}f}"


def markdown_table(rows: list[Row], skipped: dict[str, str], header: dict[str, str], notes: list[str]) -> str:
    lines = ["# iLRM synthetic benchmark", ""]
    lines += [f"- {k}: {v}" for k, v in header.items()]
    lines += [
        "",
        "| method | views | PSNR between | SSIM between | PSNR beyond | SSIM beyond | depth AbsRel | in room "
        "| seen in room | PSNR context | refresh ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r.method} | {r.num_views} | {_fmt(r.psnr_between, 2)} | {_fmt(r.ssim_between, 3)} | "
            f"{_fmt(r.psnr_beyond, 2)} | {_fmt(r.ssim_beyond, 3)} | {_fmt(r.depth_absrel, 3)} | "
            f"{_fmt(r.points_in_room, 2)} | {_fmt(r.seen_in_room, 2)} | {_fmt(r.psnr_context, 2)} | "
            f"{_fmt(r.refresh_ms, 1)} |"
        )
    lines.append("")
    lines += [f"- skipped {name}: {why}" for name, why in skipped.items()]
    lines += [f"- {n}" for n in notes]
    return "\n".join(lines).rstrip() + "\n"


def write_report(
    path: str | Path, rows: list[Row], skipped: dict[str, str], header: dict[str, str], notes: list[str]
) -> tuple[Path, Path]:
    """``path`` (markdown table) and the same results as JSON beside it (``.json``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown_table(rows, skipped, header, notes))
    data = {"header": header, "notes": notes, "skipped": skipped, "rows": [r.__dict__ for r in rows]}
    json_path = path.with_suffix(".json")
    json_path.write_text(json.dumps(data, indent=2, default=lambda x: None if x is None else str(x)) + "\n")
    return path, json_path


def environment(device: torch.device) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    return f"{device.type} ({name}), torch {torch.__version__}"
