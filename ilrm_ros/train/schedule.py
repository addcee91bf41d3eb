"""Learning-rate schedule: linear warm-up, then cosine decay to a floor."""

from __future__ import annotations

import math

import torch


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, min_ratio: float = 0.1) -> float:
    """Multiplier of the peak learning rate at ``step`` (0-based: the step about to be taken).

    Rises linearly from ``1 / warmup_steps`` to 1 over ``warmup_steps``, then follows half a cosine
    down to ``min_ratio`` at ``total_steps``, and stays there if training runs longer.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    decay = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _curve(total_steps: int, warmup_steps: int, min_ratio: float):
    """:func:`warmup_cosine` as a function of the step alone (a plain function: never saved in state)."""
    return lambda step: warmup_cosine(step, total_steps, warmup_steps, min_ratio)


def make_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int, min_ratio: float = 0.1
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` following :func:`warmup_cosine`; step it once per optimiser step.

    Its ``state_dict`` holds only numbers (the lambda itself is not saved), so a resumed run that
    passes a longer ``total_steps`` continues on the stretched curve.
    """
    return torch.optim.lr_scheduler.LambdaLR(optimizer, _curve(total_steps, warmup_steps, min_ratio))


def retarget(
    scheduler: torch.optim.lr_scheduler.LambdaLR, total_steps: int, warmup_steps: int, min_ratio: float = 0.1
) -> None:
    """Make a :func:`make_scheduler` schedule end at ``total_steps`` from its current step on.

    The learning rate for the step about to be taken is set at once. The new curve is not part of
    the scheduler's state: the checkpoint's training config carries ``total_steps`` instead.
    """
    scheduler.lr_lambdas = [_curve(total_steps, warmup_steps, min_ratio) for _ in scheduler.lr_lambdas]
    for group, base, fn in zip(scheduler.optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
        group["lr"] = base * fn(scheduler.last_epoch)
