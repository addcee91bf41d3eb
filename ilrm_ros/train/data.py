"""Training data sources: synthetic rooms rendered on the fly, and recorded bags.

Both yield :class:`ViewBatch` es of context and target views at the model resolution, on the
training device, in the world frame of their scene (the trainer normalises poses). Both are
deterministic functions of their seed and have a ``state_dict`` of plain numbers, so a resumed
run continues the same data stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field, fields

import numpy as np
import torch

from ilrm_ros.transfer import upload

from .splits import TRAIN_SEEDS
from .views import ViewChoice, keyframe_indices, sample_views


@dataclass
class ViewBatch:
    """Context and target views of ``B`` scenes (world frame; images float in [0, 1]).

    context_*: ``[B, V, ...]``; target_*: ``[B, T, ...]``; ``target_depth`` ``[B, T, H, W]`` and
    ``context_depth`` ``[B, V, H, W]`` z-depth in metres (None when the source has none);
    ``target_beyond`` ``[B, T]`` bool (outside the context span).
    """

    context_images: torch.Tensor
    context_intrinsics: torch.Tensor
    context_cam_to_world: torch.Tensor
    target_images: torch.Tensor
    target_intrinsics: torch.Tensor
    target_cam_to_world: torch.Tensor
    target_beyond: torch.Tensor
    target_depth: torch.Tensor | None = None
    context_depth: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> "ViewBatch":
        return ViewBatch(
            **{
                f.name: None if getattr(self, f.name) is None else getattr(self, f.name).to(device)
                for f in fields(self)
            }
        )

    @staticmethod
    def stack(items: Sequence["ViewBatch"]) -> "ViewBatch":
        """Concatenate batches along B (every item must have depth, or none)."""
        out = {}
        for f in fields(ViewBatch):
            values = [getattr(b, f.name) for b in items]
            out[f.name] = None if any(v is None for v in values) else torch.cat(values)
        return ViewBatch(**out)

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.context_images.shape[-2:])


# --------------------------------------------------------------------------- synthetic rooms


@dataclass
class SyntheticPath:
    """A camera path through ``SyntheticRoom(seed)``: poses ``[F, 4, 4]`` float64 (numpy), its keyframes.

    ``room`` is the CPU room it was planned in (when known), so the room is not generated again.
    """

    seed: int
    kind: str
    hfov_deg: float
    cam_to_world: np.ndarray
    keyframes: np.ndarray
    room: object | None = field(default=None, compare=False, repr=False)

    def make_room(self, device: torch.device | str = "cpu"):
        """``SyntheticRoom(seed)`` on ``device``: the planner's room, moved (and taken), or a new one."""
        from ilrm_ros.synthetic import SyntheticRoom

        room, self.room = self.room, None
        return SyntheticRoom(self.seed, device=device) if room is None else room.to(device)


@dataclass
class SyntheticScene:
    """A room (on its rendering device) and a path through it."""

    room: object
    path: SyntheticPath

    @property
    def seed(self) -> int:
        return self.path.seed


def plan_synthetic_path(
    seed: int, num_frames: int = 200, rate_hz: float = 10.0, kind: str | None = None
) -> SyntheticPath:
    """A random ground-robot or handheld path through ``SyntheticRoom(seed)`` (everything drawn from ``seed``).

    Path parameters vary per scene: robot camera height 0.25-1.3 m, speed 0.25-0.7 m/s, pitch
    -10..+5 degrees; handheld height 1.1-1.7 m, sweeps of 15-60 degrees; horizontal FOV 55-90 degrees.
    CPU only and picklable, so worker processes can plan paths ahead of the trainer.
    """
    from ilrm_ros.synthetic import SyntheticRoom, ground_robot_trajectory, handheld_sweep

    rng = np.random.default_rng([int(seed), 0x7EA1])
    kind = kind or ("robot" if rng.uniform() < 0.5 else "handheld")
    hfov = float(rng.uniform(55.0, 90.0))
    room = SyntheticRoom(int(seed))
    if kind == "robot":
        _, poses = ground_robot_trajectory(
            room,
            num_frames,
            rate_hz,
            int(seed),
            height=float(rng.uniform(0.25, 1.3)),
            speed=float(rng.uniform(0.25, 0.7)),
            turn_rate=float(rng.uniform(0.4, 1.0)),
            pitch_deg=float(rng.uniform(-10.0, 5.0)),
        )
    elif kind == "handheld":
        _, poses = handheld_sweep(
            room,
            num_frames,
            rate_hz,
            int(seed),
            height=float(rng.uniform(1.1, 1.7)),
            speed=float(rng.uniform(0.2, 0.5)),
            sweep_deg=float(rng.uniform(15.0, 60.0)),
        )
    else:
        raise ValueError(f"unknown trajectory kind {kind!r} (robot, handheld)")
    poses = np.asarray(poses, dtype=np.float64)
    return SyntheticPath(int(seed), kind, hfov, poses, keyframe_indices(poses), room)


def make_synthetic_scene(
    seed: int, device: torch.device | str = "cpu", num_frames: int = 200, rate_hz: float = 10.0, kind: str | None = None
) -> SyntheticScene:
    """``SyntheticRoom(seed)`` on ``device`` with its path (:func:`plan_synthetic_path`)."""
    path = plan_synthetic_path(seed, num_frames, rate_hz, kind)
    return SyntheticScene(path.make_room(device), path)


def render_views(
    scene: SyntheticScene, choices: ViewChoice | Sequence[ViewChoice], height: int, width: int, with_depth: bool = True
) -> ViewBatch:
    """Render view choices of one scene into a :class:`ViewBatch` of ``len(choices)`` samples on
    the room's device; the choices must share their view counts."""
    choices = [choices] if isinstance(choices, ViewChoice) else list(choices)
    return render_view_groups([(scene, choices)], height, width, with_depth)


def render_view_groups(
    groups: Sequence[tuple[SyntheticScene, Sequence[ViewChoice]]],
    height: int,
    width: int,
    with_depth: bool = True,
    merged: bool | None = None,
) -> ViewBatch:
    """Render groups of view choices, each of its own scene, with one
    :func:`~ilrm_ros.synthetic.room.render_rooms` call (``merged``: one pass over all rooms, by
    default on CUDA) into one :class:`ViewBatch`, samples in group order; all choices must share
    their view counts."""
    from ilrm_ros.synthetic import default_intrinsics
    from ilrm_ros.synthetic.room import render_rooms

    choices = [c for _, group in groups for c in group]
    v, t = len(choices[0].context), len(choices[0].targets)
    if any((len(c.context), len(c.targets)) != (v, t) for c in choices):
        raise ValueError("render_view_groups: every choice needs the same context and target counts")
    per_group = [len(group) * (v + t) for _, group in groups]
    K, c2w = [], []
    for (scene, group), n in zip(groups, per_group):
        K.append(default_intrinsics(width, height, scene.path.hfov_deg).numpy()[None].repeat(n, 0))
        c2w.append(scene.path.cam_to_world[np.concatenate([np.concatenate([c.context, c.targets]) for c in group])])
    K, c2w = np.concatenate(K), np.concatenate(c2w)
    # Inputs go to the rooms' device once, asynchronously (no host sync; see ``upload``).
    device = groups[0][0].room.device
    K = upload(torch.from_numpy(K), device, torch.float32)
    c2w = upload(torch.from_numpy(c2w), device, torch.float32)
    beyond = upload(torch.from_numpy(np.stack([c.beyond for c in choices])), device)
    rooms = [scene.room for scene, _ in groups]
    rgb, depth = render_rooms(rooms, np.repeat(np.arange(len(groups)), per_group), K, c2w, height, width, merged)
    b = len(choices)
    images = rgb.reshape(b, v + t, height, width, 3).permute(0, 1, 4, 2, 3)  # a view: one copy per part below
    K = K.reshape(b, v + t, 3, 3)
    c2w = c2w.reshape(b, v + t, 4, 4)
    depth = depth.reshape(b, v + t, height, width)
    ctx, tgt = slice(None, v), slice(v, None)

    def part(x: torch.Tensor, views: slice) -> torch.Tensor:
        # an own copy with standard strides, also for one sample (where ``contiguous`` keeps the
        # slice's strides, which a compiled model's guards take for a new input)
        return x[:, views].clone(memory_format=torch.contiguous_format)

    return ViewBatch(
        context_images=part(images, ctx),
        context_intrinsics=part(K, ctx),
        context_cam_to_world=part(c2w, ctx),
        target_images=part(images, tgt),
        target_intrinsics=part(K, tgt),
        target_cam_to_world=part(c2w, tgt),
        target_beyond=beyond,
        target_depth=part(depth, tgt) if with_depth else None,
        context_depth=part(depth, ctx) if with_depth else None,
    )


def _plan_with_fallback(seed: int, seeds: range) -> SyntheticPath:
    """The path of ``seed``, or of the next seeds when a room is too cluttered for a path."""
    start = seeds.index(seed)
    for attempt in range(8):
        try:
            return plan_synthetic_path(seeds[(start + attempt) % len(seeds)])
        except RuntimeError:
            continue
    raise RuntimeError(f"could not plan a path in the synthetic rooms from seed {seed}")


def _worker_init() -> None:
    torch.set_num_threads(1)


def view_counts(num_views: int, max_views: int | None) -> tuple[int, ...]:
    """The context-view counts a source draws from: ``num_views`` alone, or ``num_views..max_views``."""
    hi = int(num_views if max_views is None else max_views)
    if num_views < 1 or hi < num_views:
        raise ValueError(f"max_views ({hi}) must be at least num_views ({num_views}), which must be >= 1")
    return tuple(range(int(num_views), hi + 1))


def _draw_one(rng: np.random.Generator, options: tuple):
    """One batch's pick of ``options`` (no draw, and no change to the stream, when there is one)."""
    return options[0] if len(options) == 1 else options[int(rng.integers(len(options)))]


class SyntheticSource:
    """Endless batches of random synthetic rooms, rendered on ``device`` at ``(height, width)``.

    Scenes come from a FIFO pool of ``pool_size`` rooms, each with a 20 s camera path. A batch is
    made of groups of ``group`` samples that share a pool scene (drawn at random) and are rendered
    in one call; every ``samples_per_scene`` samples the oldest scene is replaced by the next one.
    Scene ``i`` of the stream is a pure function of ``(seed, rank, i)`` (room seeds drawn from
    ``seeds``, by default :data:`TRAIN_SEEDS`), so ``workers`` processes can plan upcoming paths
    (the CPU-heavy part) ahead of time without changing the stream; ``workers=0`` plans inline.
    With ``max_views``, each batch draws its context-view count from ``num_views..max_views``, and
    with ``more_sizes`` its image size from ``(height, width)`` and those, in equal shares.
    """

    def __init__(
        self,
        height: int,
        width: int,
        num_views: int,
        num_targets: int,
        device: torch.device | str = "cpu",
        seed: int = 0,
        rank: int = 0,
        seeds: range = TRAIN_SEEDS,
        pool_size: int = 64,
        samples_per_scene: int = 8,
        group: int = 4,
        max_gap: int = 3,
        beyond_fraction: float = 0.5,
        with_depth: bool = True,
        workers: int = 0,
        max_views: int | None = None,
        context_targets: int = 0,
        more_sizes: Sequence[tuple[int, int]] = (),
    ) -> None:
        self.sizes = tuple(dict.fromkeys((int(h), int(w)) for h, w in [(height, width), *more_sizes]))
        self.context_targets = int(context_targets)
        self.num_views, self.num_targets = int(num_views), int(num_targets)
        self.view_counts = view_counts(self.num_views, max_views)
        self.device = torch.device(device)
        self.seed, self.rank, self.seeds = int(seed), int(rank), seeds
        self.pool_size, self.samples_per_scene = max(1, int(pool_size)), max(1, int(samples_per_scene))
        self.group = max(1, int(group))
        self.max_gap, self.beyond_fraction, self.with_depth = int(max_gap), float(beyond_fraction), with_depth
        self.rng = np.random.default_rng([self.seed, self.rank, 0xDA7A])
        self.samples = 0
        self.next_scene = self.pool_size
        self._scenes: dict[int, SyntheticScene] = {}
        self._plans: dict[int, Future] = {}
        self._executor = None
        if workers > 0:
            import multiprocessing

            self._executor = ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init
            )
            self.prefetch = 4 * workers
        else:
            self.prefetch = 0

    def scene_seed(self, index: int) -> int:
        """Room seed of scene ``index`` of this stream."""
        mix = np.random.default_rng([self.seed, self.rank, int(index), 0x5CE2E]).integers(0, len(self.seeds))
        return int(self.seeds[int(mix)])

    def _scene(self, index: int) -> SyntheticScene:
        scene = self._scenes.get(index)
        if scene is None:
            future = self._plans.pop(index, None)
            path = future.result() if future is not None else _plan_with_fallback(self.scene_seed(index), self.seeds)
            scene = SyntheticScene(path.make_room(self.device), path)
            self._scenes[index] = scene
        return scene

    def _maintain(self) -> None:
        """Drop scenes that left the pool and keep paths of the next scenes being planned."""
        lo = self.next_scene - self.pool_size
        for k in [k for k in self._scenes if k < lo]:
            del self._scenes[k]
        for k in [k for k in self._plans if k < lo]:
            self._plans.pop(k).cancel()
        if self._executor is not None:
            for k in range(lo, self.next_scene + self.prefetch):
                if k not in self._scenes and k not in self._plans:
                    self._plans[k] = self._executor.submit(_plan_with_fallback, self.scene_seed(k), self.seeds)

    def _draw(self, count: int, views: int) -> tuple[SyntheticScene, list[ViewChoice]]:
        """A random pool scene and ``count`` view choices in it, each with ``views`` context views."""
        scene = self._scene(self.next_scene - self.pool_size + int(self.rng.integers(self.pool_size)))
        choices = []
        while len(choices) < count:
            choice = sample_views(
                self.rng,
                len(scene.path.cam_to_world),
                scene.path.keyframes,
                views,
                self.num_targets,
                self.max_gap,
                self.beyond_fraction,
                self.context_targets,
            )
            if choice is None:  # a path with too few keyframes: another scene
                return self._draw(count, views)
            choices.append(choice)
        for _ in range(count):
            self.samples += 1
            if self.samples % self.samples_per_scene == 0:
                self.next_scene += 1
        self._maintain()
        return scene, choices

    def sample(self, batch_size: int) -> ViewBatch:
        """The next ``batch_size`` samples: their groups drawn in turn, then rendered in one pass."""
        self._maintain()
        views = _draw_one(self.rng, self.view_counts)
        height, width = _draw_one(self.rng, self.sizes)
        groups, left = [], batch_size
        while left > 0:
            groups.append(self._draw(min(self.group, left), views))
            left -= len(groups[-1][1])
        return render_view_groups(groups, height, width, self.with_depth)

    def reseed(self, offset: int) -> None:
        """Switch to another random stream (a resume with a different number of ranks)."""
        self.rng = np.random.default_rng([self.seed, self.rank, 0xDA7A, int(offset)])
        self.next_scene += self.pool_size
        self._maintain()

    def state_dict(self) -> dict:
        return {
            "kind": "synthetic",
            "rng": self.rng.bit_generator.state,
            "samples": self.samples,
            "next_scene": self.next_scene,
            "seed": self.seed,
            "rank": self.rank,
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("kind") != "synthetic":
            raise ValueError("not a synthetic data-source state")
        if (int(state["seed"]), int(state["rank"])) != (self.seed, self.rank):  # another stream: drop its scenes
            self._scenes.clear()
            for future in self._plans.values():
                future.cancel()
            self._plans.clear()
        self.rng.bit_generator.state = state["rng"]
        self.samples = int(state["samples"])
        self.next_scene = int(state["next_scene"])
        self.seed, self.rank = int(state["seed"]), int(state["rank"])
        self._maintain()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


# --------------------------------------------------------------------------- recorded bags


@dataclass
class BagTrajectory:
    """One bag's frames at the model resolution: uint8 images ``[F, 3, H, W]``, intrinsics, poses."""

    name: str
    images: torch.Tensor
    intrinsics: torch.Tensor
    cam_to_world: torch.Tensor
    keyframes: np.ndarray


class BagSource:
    """Batches of context/target views sampled from recorded bags' trajectories (see :func:`load_bag`).

    A sample picks a bag (weighted by its number of keyframes), then context keyframes and target
    frames by frame-index windows along its trajectory (:func:`sample_views`). Frames stay on the
    CPU as uint8 and move to ``device`` per batch. With ``max_views``, each batch draws its
    context-view count from ``num_views..max_views``.
    """

    def __init__(
        self,
        trajectories: Sequence[BagTrajectory],
        num_views: int,
        num_targets: int,
        device: torch.device | str = "cpu",
        seed: int = 0,
        rank: int = 0,
        max_gap: int = 3,
        beyond_fraction: float = 0.5,
        max_views: int | None = None,
        context_targets: int = 0,
    ) -> None:
        self.context_targets = int(context_targets)
        self.view_counts = view_counts(num_views, max_views)
        self.trajectories = [t for t in trajectories if len(t.keyframes) >= num_views]
        most = max(self.view_counts)
        if not any(len(t.keyframes) >= most for t in self.trajectories):
            raise ValueError(f"no bag has at least {most} keyframes (does the camera move?)")
        self.num_views, self.num_targets = int(num_views), int(num_targets)
        self.device = torch.device(device)
        self.max_gap, self.beyond_fraction = int(max_gap), float(beyond_fraction)
        self.seed, self.rank = int(seed), int(rank)
        self.rng = np.random.default_rng([self.seed, self.rank, 0xBA6])
        self.samples = 0
        weights = np.array([len(t.keyframes) for t in self.trajectories], dtype=np.float64)
        self.weights = weights / weights.sum()

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.trajectories[0].images.shape[-2:])

    def sample_one(self, views: int | None = None) -> ViewBatch:
        """One sample with ``views`` context views (default ``num_views``)."""
        views = self.num_views if views is None else int(views)
        while True:
            traj = self.trajectories[int(self.rng.choice(len(self.trajectories), p=self.weights))]
            choice = sample_views(
                self.rng,
                len(traj.images),
                traj.keyframes,
                views,
                self.num_targets,
                self.max_gap,
                self.beyond_fraction,
                self.context_targets,
            )
            self.samples += 1
            if choice is not None:
                break
        c, t = torch.as_tensor(choice.context), torch.as_tensor(choice.targets)
        # Asynchronous uploads (``upload``): sampling does not wait for the queued training step.
        img = lambda i: (upload(traj.images[i], self.device).float() / 255.0)[None]  # noqa: E731
        pose = lambda i: upload(traj.cam_to_world[i], self.device, torch.float32)[None]  # noqa: E731
        return ViewBatch(
            context_images=img(c),
            context_intrinsics=upload(traj.intrinsics[c], self.device)[None],
            context_cam_to_world=pose(c),
            target_images=img(t),
            target_intrinsics=upload(traj.intrinsics[t], self.device)[None],
            target_cam_to_world=pose(t),
            target_beyond=upload(torch.as_tensor(choice.beyond), self.device)[None],
        )

    def sample(self, batch_size: int) -> ViewBatch:
        views = _draw_one(self.rng, self.view_counts)
        return ViewBatch.stack([self.sample_one(views) for _ in range(batch_size)])

    def reseed(self, offset: int) -> None:
        """Switch to another random stream (a resume with a different number of ranks)."""
        self.rng = np.random.default_rng([self.seed, self.rank, 0xBA6, int(offset)])

    def state_dict(self) -> dict:
        return {
            "kind": "bag",
            "rng": self.rng.bit_generator.state,
            "samples": self.samples,
            "seed": self.seed,
            "rank": self.rank,
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("kind") != "bag":
            raise ValueError("not a bag data-source state")
        self.rng.bit_generator.state = state["rng"]
        self.samples = int(state["samples"])

    def close(self) -> None:
        pass
