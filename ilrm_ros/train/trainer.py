"""The training loop: reconstruct from context views, render target views, optimise.

One step: the context cameras define the published pose normalisation
(:func:`~ilrm_ros.model.normalize_poses`); context AND target cameras are mapped into that frame
with the same transform (the model predicts Gaussians there), the target views are rendered with
:func:`ilrm_ros.render.render` on the published white background, and the loss
(:func:`~ilrm_ros.train.losses.render_loss`) is back-propagated through renderer and model.
AdamW, a warm-up + cosine schedule, gradient clipping, bf16 autocast (the model's own) and
per-block activation checkpointing on CUDA; DDP across ``torchrun`` processes.

A checkpoint directory holds ``model.safetensors`` (float32, :func:`~ilrm_ros.model.save_checkpoint`,
loadable by ``load_model``) and ``state.pt`` (optimizer, scheduler, step, RNG and data-sampler states
of every rank, the training config; tensors and plain containers only, read with
``weights_only=True``).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import statistics
import threading
import time
from collections import deque
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import torch

from ..model.config import PRESETS, ILRMConfig
from ..render import WHITE
from . import distributed as D
from .data import BagSource, SyntheticSource, ViewBatch
from .losses import gaussian_depth_l1, gaussian_footprint_px, render_loss
from .scalars import ScalarLog
from .schedule import make_scheduler, retarget

MODEL_FILE = "model.safetensors"
STATE_FILE = "state.pt"
LAST_DIR = "last"
FIT_AFTER = 25
"""``fit_to_time`` plans after this many steps: past the first steps' one-off costs (allocation, the
data workers' first scenes; ``torch.compile`` finishes before step 1)."""
FIT_SAFETY = 0.95
"""Share of the time left that the fitted schedule plans to use (step times vary)."""
FIT_EVERY = 100
"""``fit_to_time`` plans again every this many steps, from the mean step time over the later half of
the steps since the first plan (checkpoint saves included): one plan from the first steps' times
ran past the budget in one session-21 run and ended 15 % early in another."""


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in every checkpoint's state)."""

    preset: str = "small"
    arch: str = "ilrm"
    init: str | None = None
    data: str = "synthetic"
    bags: list[str] = field(default_factory=list)
    image_topic: str = ""
    camera_info_topic: str = ""
    pose_topic: str = ""
    pose_type: str = "auto"
    camera_from_pose: str = "identity"
    bag_stride: int = 1
    steps: int = 100_000
    batch_size: int = 8
    lr: float = 4e-4
    warmup: int = 2_000
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.05
    beta2: float = 0.95
    grad_clip: float = 1.0
    num_views: int | None = None
    max_views: int | None = None
    num_targets: int = 4
    resolution: tuple[int, int] | None = None
    mix_resolutions: tuple[tuple[int, int], ...] = ()
    rgb_loss: str = "mse"
    ssim_weight: float = 0.0
    depth_weight: float = 0.0
    gaussian_depth_weight: float = 0.0
    footprint_weight: float = 0.0
    footprint_floor: float = 0.0
    max_gap: int = 3
    beyond_fraction: float = 0.5
    context_targets: int = 0
    query_rgb: bool = False
    colour_skip: float | None = None
    depth: int | None = None
    scene_pool: int = 64
    samples_per_scene: int = 8
    scene_group: int = 4
    data_workers: int = -1
    seed: int = 0
    grad_checkpointing: bool = True
    compile: bool = False
    log_every: int = 10
    ckpt_every: int = 1_000
    keep_every: int = 0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["resolution"] = list(self.resolution) if self.resolution else None
        d["mix_resolutions"] = [list(size) for size in self.mix_resolutions]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        if d.get("resolution"):
            d["resolution"] = tuple(int(x) for x in d["resolution"])
        d["mix_resolutions"] = tuple(tuple(int(x) for x in size) for size in d.get("mix_resolutions") or ())
        return cls(**d)


def checkpoint_dir(path: str | os.PathLike) -> Path:
    """A checkpoint directory from itself or from a run directory (its ``last/``)."""
    path = Path(path)
    if (path / STATE_FILE).is_file():
        return path
    if (path / LAST_DIR / STATE_FILE).is_file():
        return path / LAST_DIR
    raise FileNotFoundError(f"{path} holds no training checkpoint ({STATE_FILE} or {LAST_DIR}/{STATE_FILE})")


def read_state(path: str | os.PathLike) -> dict:
    """The ``state.pt`` of a checkpoint (or run) directory, loaded with ``weights_only=True``."""
    return torch.load(checkpoint_dir(path) / STATE_FILE, map_location="cpu", weights_only=True)


def _rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


class Trainer:
    """Builds model, data, optimiser and schedule from a :class:`TrainConfig` (or a checkpoint to resume).

    ``out_dir`` receives ``last/`` (the latest checkpoint), ``step_NNNNNNN/`` copies every
    ``keep_every`` steps, ``model_fp16.safetensors`` (the weights alone, for shipping) at the end of
    every :meth:`run`, and the scalar log in ``logs/``.
    """

    def __init__(
        self,
        config: TrainConfig,
        out_dir: str | os.PathLike,
        device: str | torch.device | None = None,
        resume: str | os.PathLike | None = None,
        dist_info: D.DistInfo | None = None,
        trajectories=None,
    ) -> None:
        from ilrm_ros.model import load_model, with_colour_skip, with_depth, with_query_rgb

        self.info = dist_info or D.DistInfo()
        self.device = D.resolve_device(str(device) if device is not None else None, self.info.local_rank)
        self.out_dir = Path(out_dir)
        self.config = config
        state = None
        if resume is not None:
            ckpt = checkpoint_dir(resume)
            state = read_state(ckpt)
            source = ckpt / MODEL_FILE
        else:
            preset = PRESETS[config.preset]
            source = config.init or preset.replace(
                arch=config.arch, query_rgb=config.query_rgb, depth=config.depth or preset.depth,
                colour_skip=config.colour_skip is not None,
            )
        torch.manual_seed(config.seed * 1000 + self.info.rank)
        model = load_model(
            source if isinstance(source, ILRMConfig) else str(source), device=self.device, seed=config.seed
        )
        if resume is None and config.init and model.config.arch != config.arch:
            raise ValueError(f"--init {config.init} holds an {model.config.arch!r} model, not --arch {config.arch!r}")
        if config.query_rgb and not model.config.query_rgb:  # --init without it: same output, then trained
            if resume is not None:  # the optimiser state holds the narrower input tokenizer
                raise ValueError("--query-rgb cannot be turned on when resuming a run without it; use --init")
            model = with_query_rgb(model)
        if config.colour_skip is not None and not model.config.colour_skip:
            if resume is not None:
                raise ValueError("--colour-skip cannot be turned on when resuming a run without it; use --init")
            model = with_colour_skip(model, config.colour_skip)  # --init without it: a mix of both colours
        elif config.colour_skip is not None and resume is None and not config.init:
            with torch.no_grad():  # a fresh model starts from this pixel-colour weight
                model.colour_skip.fill_(config.colour_skip)
        if config.depth and config.depth != model.config.depth:  # --init of a shallower model: grow it
            if resume is not None:
                raise ValueError(f"--depth {config.depth}: the run being resumed has {model.config.depth} blocks")
            model = with_depth(model, config.depth)
        model.train()
        model.gradient_checkpointing = config.grad_checkpointing
        if config.compile:
            if not hasattr(model, "compile"):
                raise RuntimeError(f"--compile needs torch >= 2.2 (nn.Module.compile); this is {torch.__version__}")
            # In place: parameter names (checkpoints, DDP) stay those of the plain module. One static
            # graph per input shape (up to three with --max-views).
            model.compile(dynamic=False)
        self.model = model
        mc = model.config
        self.num_views = config.num_views or mc.num_views
        self.height, self.width = config.resolution or mc.image_size
        for h, w in ((self.height, self.width), *config.mix_resolutions):
            if h % mc.patch_size or w % mc.patch_size:
                raise ValueError(f"resolution {h}x{w} is not divisible by the patch size {mc.patch_size}")
        if config.mix_resolutions and config.data != "synthetic":
            raise ValueError("--mix-resolution needs --data synthetic (bags are loaded at one size)")
        # The model records the (first) input shape it was trained at.
        if (self.height, self.width) != mc.image_size or self.num_views != mc.num_views:
            model.config = mc.replace(image_size=(self.height, self.width), num_views=self.num_views)

        self.net = model
        if self.info.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)

        decay = [p for p in model.parameters() if p.dim() >= 2]
        no_decay = [p for p in model.parameters() if p.dim() < 2]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=config.lr,
            betas=(0.9, config.beta2),
            eps=1e-8,
            fused=self.device.type == "cuda",
        )
        self.scheduler = make_scheduler(self.optimizer, config.steps, config.warmup, config.min_lr_ratio)
        self.data = self._make_data(trajectories)
        if self.device.type == "cuda":
            from ilrm_ros.render import warmup

            warmup(self.device)  # gsplat's kernels load (or compile) here, not inside the timed loop
        self._pending: ViewBatch | None = None
        self._pending_state: dict | None = None
        self.step = 0
        self.elapsed_before = 0.0  # training seconds of earlier chunks (for the log's time axis)
        self.skipped = 0
        if state is not None:
            self._load_state(state)
        self.compile_seconds: tuple[float, float] | None = None
        if config.compile:
            self._compile_ahead()

    # ------------------------------------------------------------------ setup

    def _make_data(self, trajectories):
        c = self.config
        if c.data == "synthetic":
            return SyntheticSource(
                self.height,
                self.width,
                self.num_views,
                c.num_targets,
                device=self.device,
                seed=c.seed,
                rank=self.info.rank,
                pool_size=c.scene_pool,
                samples_per_scene=c.samples_per_scene,
                group=c.scene_group,
                workers=self._data_workers(),
                max_gap=c.max_gap,
                beyond_fraction=c.beyond_fraction,
                with_depth=c.depth_weight > 0 or c.gaussian_depth_weight > 0,
                max_views=c.max_views,
                context_targets=c.context_targets,
                more_sizes=c.mix_resolutions,
            )
        if c.data == "bag":
            if trajectories is None:
                from .bags import load_bags

                trajectories = load_bags(c, (self.height, self.width))
            return BagSource(
                trajectories,
                self.num_views,
                c.num_targets,
                device=self.device,
                seed=c.seed,
                rank=self.info.rank,
                max_gap=c.max_gap,
                beyond_fraction=c.beyond_fraction,
                max_views=c.max_views,
                context_targets=c.context_targets,
            )
        raise ValueError(f"unknown data source {c.data!r} (synthetic, bag)")

    def _data_workers(self) -> int:
        """Path-planning processes: as configured, or (-1) up to 8 per GPU process, none on the CPU."""
        if self.config.data_workers >= 0:
            return self.config.data_workers
        if self.device.type != "cuda":
            return 0
        return max(0, min(8, (os.cpu_count() or 1) // self.info.world_size - 2))

    def _load_state(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scheduler.base_lrs and self.scheduler.base_lrs[0] != self.config.lr:  # --lr changed on resume
            factor = self.config.lr / self.scheduler.base_lrs[0]
            self.scheduler.base_lrs = [lr * factor for lr in self.scheduler.base_lrs]
            for group in self.optimizer.param_groups:
                group["lr"] *= factor
        self.step = int(state["step"])
        self.elapsed_before = float(state.get("elapsed", 0.0))
        ranks = state["ranks"]
        mine = ranks[self.info.rank] if len(ranks) == self.info.world_size else None
        if mine is not None:
            _set_rng_state(mine["rng"], self.device)
            self.data.load_state_dict(mine["data"])
        else:  # another world size: fresh per-rank streams that differ from the first run's
            self.data.reseed(self.step)

    def _compile_ahead(self) -> None:
        """Compile the step's graph for every context-view count before the first step, shared out.

        Each rank compiling every graph itself costs the same 40-50 s per graph on every rank
        (measured on H100 hosts). Instead the ranks on one device take one view count each and fill
        ``torch.compile``'s on-disk caches (keyed by device); then every rank loads the graphs it
        did not compile from there. Forward and backward run without gradient sync (``no_sync``) on
        the first batch (kept as the next batch to train on) with its views repeated to each count:
        weights, optimiser, RNG and data stream are left as they were. Sets ``compile_seconds``:
        (the compiling turn, the loading turn), as the slowest rank saw them.
        """
        self._draw_ahead()
        counts = self.data.view_counts
        per_device = torch.cuda.device_count() if self.device.type == "cuda" else 1
        slot = self.info.local_rank // max(1, per_device)  # ranks share GPUs round-robin (resolve_device)
        mine = counts[slot : slot + 1]
        times = []
        for turn in (mine, [v for v in counts if v not in mine]):
            t0 = time.monotonic()
            self._run_views(turn)
            D.barrier(self.info)
            times.append(time.monotonic() - t0)
        self.compile_seconds = (times[0], times[1])
        if self.info.is_main:
            print(f"compiled {len(counts)} view counts ahead: {times[0]:.0f} s compiling one per rank, "
                  f"then {times[1]:.0f} s loading the rest", flush=True)

    def _run_views(self, counts: list[int] | tuple[int, ...]) -> None:
        """Forward and backward of the pending batch with each of ``counts`` context views, left unapplied."""
        first = self._pending
        have = first.context_images.shape[1]
        quiet = self.net.no_sync() if isinstance(self.net, torch.nn.parallel.DistributedDataParallel) else nullcontext()
        with quiet, torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            for views in counts:
                pick = torch.arange(views) % have
                batch = replace(first, **{
                    f: getattr(first, f).index_select(1, pick.to(getattr(first, f).device))
                    for f in ("context_images", "context_intrinsics", "context_cam_to_world", "context_depth")
                    if getattr(first, f) is not None
                })
                loss, _ = self.forward_loss(batch)
                loss.backward()
        self.optimizer.zero_grad(set_to_none=True)

    # ------------------------------------------------------------------ one step

    def forward_loss(self, batch: ViewBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Loss of one batch (with the graph for backward) and its detached terms."""
        from ilrm_ros.model import normalize_poses
        from ilrm_ros.render import render

        c = self.config
        ctx_c2w, transform = normalize_poses(batch.context_cam_to_world.float())
        tgt_c2w = transform.to_normalized(batch.target_cam_to_world.float())
        gaussians = self.net(batch.context_images, batch.context_intrinsics.float(), ctx_c2w)
        h, w = batch.target_images.shape[-2:]
        out = render(gaussians, batch.target_intrinsics.float(), tgt_c2w, w, h, background=WHITE)  # one call
        rgb, depth = out.rgb.flatten(0, 1), out.depth.flatten(0, 1)
        if torch.is_grad_enabled() and not rgb.requires_grad:
            raise RuntimeError(
                "ilrm_ros.render.render returned images without a gradient on "
                f"{rgb.device.type}: training needs a differentiable renderer (its backend runs under no_grad)"
            )
        target = batch.target_images.flatten(0, 1).permute(0, 2, 3, 1)
        gt_depth = None
        if c.depth_weight > 0 and batch.target_depth is not None:
            # Metres -> the normalised frame (translations there are scaled by transform.scale).
            gt_depth = (batch.target_depth * transform.scale[:, None, None, None]).flatten(0, 1)
        depth_weight = c.depth_weight if gt_depth is not None else 0.0
        loss, terms = render_loss(rgb, target, depth, gt_depth, c.ssim_weight, depth_weight, c.rgb_loss)
        if c.gaussian_depth_weight > 0 and batch.context_depth is not None:
            ctx_depth = batch.context_depth * transform.scale[:, None, None, None]
            term = gaussian_depth_l1(gaussians.means, ctx_c2w, ctx_depth)
            loss = loss + c.gaussian_depth_weight * term
            terms["gaussian_depth_l1"], terms["loss"] = term.detach(), loss.detach()
        if c.footprint_weight > 0:
            size = gaussian_footprint_px(
                gaussians.scales, gaussians.opacities, gaussians.means, batch.context_intrinsics, ctx_c2w,
                *batch.context_images.shape[-2:], floor_px=c.footprint_floor,
            )
            loss = loss + c.footprint_weight * size
            terms["footprint_px"], terms["loss"] = size.detach(), loss.detach()
        return loss, terms

    def _draw_ahead(self) -> None:
        """Draw the next batch now (if none is waiting), keeping the stream's state from before it."""
        if self._pending is None:
            self._pending_state = self.data.state_dict()
            self._pending = self.data.sample(self.config.batch_size)

    def next_batch(self) -> ViewBatch:
        """The next batch of the data stream (drawn ahead by ``train_step(prefetch=True)``)."""
        if self._pending is not None:
            batch, self._pending, self._pending_state = self._pending, None, None
            return batch
        return self.data.sample(self.config.batch_size)

    def train_step(self, batch: ViewBatch | None = None, prefetch: bool = False) -> dict[str, float]:
        """One optimiser step on ``batch`` (the next data batch by default); returns its scalars.

        ``prefetch`` draws the next batch while the GPU still runs this step's backward pass (the
        data stream's position saved in checkpoints stays at the first batch not yet trained on).
        The scalars include this rank's host time in forward, backward (with the gradient
        all-reduce) and drawing the next batch: GPU work counts where the host first waits for it.
        """
        t0 = time.monotonic()
        if batch is None:
            batch = self.next_batch()
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        t1 = time.monotonic()
        loss, terms = self.forward_loss(batch)
        t2 = time.monotonic()
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        t3 = time.monotonic()
        if prefetch:
            self._draw_ahead()
        t4 = time.monotonic()
        lr = self.optimizer.param_groups[0]["lr"]
        # context_views: this step's view count, averaged over the ranks (each draws its own), so
        # step times can be told apart by the work they carried
        names = list(terms) + ["grad_norm", "context_views"]
        views = grad_norm.new_tensor(float(batch.context_images.shape[1]), dtype=torch.float32)
        values = torch.stack([terms[k].float() for k in terms] + [grad_norm.float(), views])
        values = D.mean_over_ranks(values, self.info)
        scalars = dict(zip(names, values.tolist()))
        if all(math.isfinite(v) for v in scalars.values()):
            self.optimizer.step()
            self.scheduler.step()
        else:  # never step on a non-finite loss or gradient (every rank sees the same averaged values)
            self.skipped += 1
            self.optimizer.zero_grad(set_to_none=True)
            self.scheduler.step()
        self.step += 1
        scalars["lr"] = lr
        scalars.update(time_data=(t1 - t0) + (t4 - t3), time_forward=t2 - t1, time_backward=t3 - t2)
        return scalars

    # ------------------------------------------------------------------ checkpoints

    def save(self, path: str | os.PathLike | None = None, elapsed: float = 0.0) -> Path | None:
        """Write a checkpoint (collective under DDP: every rank must call it); returns its directory on rank 0."""
        from ilrm_ros.model import save_checkpoint

        # the data stream's state before the first batch not yet trained on
        data_state = self._pending_state if self._pending is not None else self.data.state_dict()
        rank_state = {"rng": _rng_state(self.device), "data": data_state}
        if self.device.type == "cuda":
            rank_state["rng"] = {k: v.cpu() for k, v in rank_state["rng"].items()}
        ranks = D.gather_objects(rank_state, self.info)
        target = None
        if self.info.is_main:
            target = Path(path) if path is not None else self.out_dir / LAST_DIR
            tmp = target.with_name(target.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            meta = {"step": self.step, "train_config": self.config.to_dict()}
            save_checkpoint(self.model, tmp / MODEL_FILE, dtype=torch.float32, extra_metadata=meta)
            state = {
                "step": self.step,
                "elapsed": float(elapsed),
                "world_size": self.info.world_size,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "ranks": ranks,
                "config": self.config.to_dict(),
            }
            torch.save(state, tmp / STATE_FILE)
            (tmp / "config.json").write_text(json.dumps(self.config.to_dict(), indent=2) + "\n")
            old = target.with_name(target.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            if target.exists():
                target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        D.barrier(self.info)
        return target

    def export(self, path: str | os.PathLike, dtype: torch.dtype = torch.float16) -> None:
        """The trained weights alone, in the project's (default fp16) safetensors format."""
        from ilrm_ros.model import save_checkpoint

        if self.info.is_main:
            save_checkpoint(self.model, path, dtype=dtype, extra_metadata={"step": self.step})

    # ------------------------------------------------------------------ the loop

    def run(
        self,
        steps: int | None = None,
        max_minutes: float | None = None,
        start_time: float | None = None,
        progress: bool = True,
        log_dir: str | os.PathLike | None = None,
        fit_to_time: bool = False,
    ) -> dict:
        """Train until ``steps`` (default: the config's total) or until the time budget says stop.

        ``max_minutes`` counts from ``start_time`` (``time.monotonic()``; default: now): the loop
        stops early enough to write the final checkpoint before the budget ends. SIGTERM/SIGINT
        also stop it cleanly after the current step. ``fit_to_time`` (with ``max_minutes``): after
        :data:`FIT_AFTER` steps, and again every :data:`FIT_EVERY`, fit the schedule
        (``config.steps``, never beyond its value at the start) to the budget, so that its cosine
        ends inside it, rather than being cut off halfway down or ending with time to spare.
        Returns a summary with the per-step losses.
        """
        from tqdm import tqdm

        start = time.monotonic() if start_time is None else start_time
        loop_start = time.monotonic()
        total = self.config.steps if steps is None else min(self.config.steps, self.step + steps)
        chunk_end, most = total, self.config.steps  # fit_to_time plans no further than the schedule asked for
        budget = None if max_minutes is None else max_minutes * 60.0
        log = ScalarLog(log_dir or self.out_dir / "logs") if self.info.is_main else None
        if log is not None and not log.tensorboard and self.step == 0:
            print(f"TensorBoard event files off ({log.tensorboard_error}); scalars go to {log.path}", flush=True)
        stop = threading.Event()
        handlers = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                handlers[sig] = signal.signal(sig, lambda *_: stop.set())
        bar = tqdm(
            total=total,
            initial=self.step,
            disable=not (progress and self.info.is_main),
            dynamic_ncols=True,
            desc="train",
            smoothing=0.05,
        )
        losses: list[float] = []
        step_time = None  # EMA of seconds per step
        recent: deque[float] = deque(maxlen=10)  # the last steps' durations, for fit_to_time
        fit_at = self.step + FIT_AFTER if fit_to_time and budget is not None else None
        plans: list[tuple[int, float]] = []  # (step, clock) of each fit_to_time plan
        save_time = 5.0
        last_save = self.step
        reason = "steps"

        def end_reserve(per_step: float | None) -> float:
            """Seconds kept back at the end: the stop's margin of 1.5 steps, the final checkpoint and export."""
            return (per_step or 0.0) * 1.5 + save_time * 1.5 + 2.0

        try:
            while self.step < total:
                need = end_reserve(step_time)
                out_of_time = budget is not None and time.monotonic() - start + need > budget
                if D.any_true(out_of_time or stop.is_set(), self.info, self.device):  # one collective per step
                    reason = "signal" if stop.is_set() else "time"
                    break
                t0 = time.monotonic()
                scalars = self.train_step(prefetch=True)
                dt = time.monotonic() - t0
                if len(losses) >= 2:  # the first steps include one-off kernel compilation and allocation
                    step_time = dt if step_time is None else 0.9 * step_time + 0.1 * dt
                recent.append(dt)
                losses.append(scalars["loss"])
                if fit_at is not None and self.step >= fit_at and (self.step - fit_at) % FIT_EVERY == 0:
                    now = time.monotonic()
                    plans.append((self.step, now))
                    if len(plans) == 1:
                        per_step = statistics.median(recent)
                    else:  # the later half of the steps planned so far: past the start-up
                        since, then = plans[(len(plans) - 1) // 2]
                        per_step = (now - then) / (self.step - since)
                    left = budget - (now - start) - end_reserve(per_step)
                    total = min(chunk_end, self._fit_schedule(left, per_step, most, announce=len(plans) == 1))
                    bar.total = total
                bar.update(1)
                bar.set_postfix(loss=f"{scalars['loss']:.4f}", psnr=f"{scalars['psnr']:.2f}", lr=f"{scalars['lr']:.2e}")
                if log is not None and (self.step % self.config.log_every == 0 or self.step == 1):
                    scalars["step_time"] = dt
                    scalars["samples_per_s"] = self.config.batch_size * self.info.world_size / max(dt, 1e-9)
                    if self.device.type == "cuda":
                        scalars["gpu_mem_gb"] = torch.cuda.max_memory_allocated(self.device) / 2**30
                    log.log(self.step, scalars, self.elapsed_before + time.monotonic() - loop_start)
                if self.config.ckpt_every and self.step - last_save >= self.config.ckpt_every:
                    t_save = time.monotonic()
                    self.save(elapsed=self.elapsed_before + time.monotonic() - loop_start)
                    save_time = time.monotonic() - t_save
                    last_save = self.step
                if self.config.keep_every and self.step % self.config.keep_every == 0:
                    self.save(
                        self.out_dir / f"step_{self.step:07d}", self.elapsed_before + time.monotonic() - loop_start
                    )
        finally:
            bar.close()
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
        elapsed = self.elapsed_before + time.monotonic() - loop_start
        ckpt = self.save(elapsed=elapsed) if self.step != last_save or not (self.out_dir / LAST_DIR).exists() else None
        ckpt = ckpt or self.out_dir / LAST_DIR
        self.export(self.out_dir / "model_fp16.safetensors")  # the weights alone, after every chunk
        if log is not None:
            log.close()
        return {
            "step": self.step,
            "stopped": reason,
            "losses": losses,
            "checkpoint": str(ckpt),
            "seconds": time.monotonic() - loop_start,
            "skipped": self.skipped,
            "sec_per_step": step_time,
        }

    def _fit_schedule(self, seconds_left: float, seconds_per_step: float, most: int, announce: bool = True) -> int:
        """Set ``config.steps`` (at most ``most``) to the steps that fit ``seconds_left``; returns it.

        Every rank must call it at the same step: the ranks' estimates are averaged, so all agree.
        Later plans print only changes of 1 % or more.
        """
        plan = torch.tensor([seconds_left, seconds_per_step], dtype=torch.float32, device=self.device)
        left, per_step = D.mean_over_ranks(plan, self.info).tolist()
        fitted = min(most, self.step + max(1, int(FIT_SAFETY * max(0.0, left) / max(per_step, 1e-9))))
        if fitted != self.config.steps:
            if self.info.is_main and (announce or abs(fitted - self.config.steps) >= 0.01 * self.config.steps):
                print(f"schedule fitted to the time budget: {fitted} steps (was {self.config.steps}; "
                      f"{per_step:.3f} s per step, {left:.0f} s left)", flush=True)
            self.config = replace(self.config, steps=fitted)
            retarget(self.scheduler, fitted, self.config.warmup, self.config.min_lr_ratio)
        return self.config.steps

    def close(self) -> None:
        """End of training: stop the data stream and let go of the DDP wrapper, which holds the process
        group; freed later, at interpreter exit, its gloo threads can abort the process (SIGABRT)."""
        self.data.close()
        if isinstance(self.net, torch.nn.parallel.DistributedDataParallel):
            self.net = self.model
