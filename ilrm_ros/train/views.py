"""Choosing context and target views along a camera trajectory.

Context views are picked the way the node picks its window: from keyframes (frames that moved
``min_translation`` metres or turned ``min_rotation_deg`` since the previous keyframe), ``num_views``
of them with 1 to ``max_gap`` keyframes between neighbours. Target views are any frames of the
trajectory: some *between* the first and last context view, some *beyond* them (up to one mean
context spacing before the first or after the last), so the model learns to interpolate and to
extrapolate a little, as it must when the newest keyframe leads the robot's motion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def keyframe_indices(
    cam_to_world: np.ndarray, min_translation: float = 0.15, min_rotation_deg: float = 10.0
) -> np.ndarray:
    """Indices of the frames a motion-threshold keyframer keeps (always the first frame)."""
    T = np.asarray(cam_to_world, dtype=np.float64)
    keep = [0]
    cos_min = np.cos(np.radians(min_rotation_deg))
    for i in range(1, len(T)):
        last = T[keep[-1]]
        moved = np.linalg.norm(T[i, :3, 3] - last[:3, 3]) > min_translation
        cos = (np.trace(last[:3, :3].T @ T[i, :3, :3]) - 1.0) / 2.0
        if moved or cos < cos_min:
            keep.append(i)
    return np.asarray(keep, dtype=np.int64)


@dataclass(frozen=True)
class ViewChoice:
    """Frame indices of the context views (increasing), the targets, and which targets lie beyond."""

    context: np.ndarray
    targets: np.ndarray
    beyond: np.ndarray


def sample_views(
    rng: np.random.Generator,
    num_frames: int,
    keyframes: np.ndarray,
    num_views: int,
    num_targets: int,
    max_gap: int = 3,
    beyond_fraction: float = 0.5,
    context_targets: int = 0,
) -> ViewChoice | None:
    """Random context/target frames, or None when the trajectory has too few keyframes.

    ``round(num_targets * beyond_fraction)`` targets lie beyond the context span when the trajectory
    extends past it (otherwise they fall back to between); up to ``context_targets`` of the rest are
    context frames themselves (the model must reproduce its own inputs); the others lie between the
    first and last context frames (excluding the context frames where possible).
    """
    if context_targets < 0:
        raise ValueError(f"context_targets must be >= 0, not {context_targets}")
    keyframes = np.asarray(keyframes, dtype=np.int64)
    if len(keyframes) < num_views or num_views < 1:
        return None
    gaps = rng.integers(1, max(1, max_gap) + 1, size=num_views - 1)
    while gaps.sum() > len(keyframes) - 1:  # shrink the widest gaps until the span fits
        gaps[np.argmax(gaps)] -= 1
    if (gaps < 1).any():
        return None
    first = int(rng.integers(0, len(keyframes) - int(gaps.sum())))
    context = keyframes[first + np.concatenate([[0], np.cumsum(gaps)])].astype(np.int64)
    lo, hi = int(context[0]), int(context[-1])
    between = np.setdiff1d(np.arange(lo, hi + 1), context) if hi > lo + len(context) - 1 else np.arange(lo, hi + 1)
    margin = max(1, round((hi - lo) / max(1, num_views - 1)))
    beyond_pool = np.concatenate(
        [np.arange(max(0, lo - margin), lo), np.arange(hi + 1, min(num_frames, hi + 1 + margin))]
    )
    n_beyond = int(round(num_targets * beyond_fraction)) if len(beyond_pool) else 0
    n_context = min(int(context_targets), num_targets - n_beyond)
    parts = [rng.choice(between, size=num_targets - n_beyond - n_context)]
    if n_context:  # no extra draw without them: the stream of earlier runs stays the same
        parts.append(rng.choice(context, size=n_context))
    targets = np.concatenate(parts + [rng.choice(beyond_pool, size=n_beyond)]).astype(np.int64)
    beyond = np.arange(num_targets) >= num_targets - n_beyond
    return ViewChoice(context, targets, beyond)
