"""Paired comparison of two ``ilrm eval`` runs on the same held-out scenes.

Scene difficulty varies far more than the gap between two checkpoints, so the question "is the
new one better?" is answered per scene: the mean of the per-scene differences, its standard error,
and in how many scenes the new model wins. Only the model under test (the first method of each
run) is compared.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

# (per-scene key, label, higher is better)
METRICS = (
    ("psnr_between", "PSNR between (dB)", True),
    ("psnr_beyond", "PSNR beyond (dB)", True),
    ("ssim_between", "SSIM between", True),
    ("ssim_beyond", "SSIM beyond", True),
    ("depth_absrel", "depth AbsRel", False),
    ("points_in_room", "in room", True),
    ("seen_in_room", "seen in room", True),
    ("psnr_context", "PSNR context (dB)", True),
)


@dataclass(frozen=True)
class Paired:
    """New minus old over the scenes of one view count, for one metric."""

    metric: str
    num_views: int
    mean: float
    stderr: float
    wins: int  # scenes where the new model is better (higher, or lower for AbsRel)
    ties: int
    scenes: int


def model_rows(path: str | Path) -> tuple[str, dict[int, list[dict]]]:
    """The model under test of an ``ilrm eval`` JSON: its name and {view count: per-scene entries}."""
    rows = json.loads(Path(path).read_text())["rows"]
    if not rows:
        raise ValueError(f"{path}: no result rows")
    name = rows[0]["method"]
    return name, {int(r["num_views"]): r["per_scene"] for r in rows if r["method"] == name}


def paired(a: dict[int, list[dict]], b: dict[int, list[dict]]) -> list[Paired]:
    """Per-scene differences (new ``a`` - old ``b``, as :func:`model_rows` gives them) of every
    metric both runs have, per shared view count."""
    out = []
    for v in sorted(set(a) & set(b)):
        seeds_a, seeds_b = [e["seed"] for e in a[v]], [e["seed"] for e in b[v]]
        if seeds_a != seeds_b:
            raise ValueError(f"{v} views: the runs scored different scenes ({seeds_a[:3]}... vs {seeds_b[:3]}...)")
        for key, _, higher in METRICS:
            if not all(e.get(key) is not None for e in a[v] + b[v]):
                continue
            d = [x[key] - y[key] for x, y in zip(a[v], b[v])]
            se = statistics.stdev(d) / math.sqrt(len(d)) if len(d) > 1 else math.nan
            wins = sum(1 for x in d if (x > 0 if higher else x < 0))
            out.append(Paired(key, v, statistics.fmean(d), se, wins, sum(1 for x in d if x == 0), len(d)))
    if not out:
        raise ValueError("the runs share no view count")
    return out


def markdown(results: list[Paired], new_name: str, old_name: str) -> str:
    """One row per metric, one column per view count: ``mean ± stderr (wins/scenes[, ties level])``."""
    views = sorted({r.num_views for r in results})
    cell = {(r.metric, r.num_views): r for r in results}
    lines = [
        f"new: {new_name}  \nold: {old_name}  \nnew − old, mean ± standard error over the scenes "
        "(scenes where new is better / scenes)",
        "",
        "| metric | " + " | ".join(f"{v} views" for v in views) + " |",
        "|---|" + "---:|" * len(views),
    ]
    for key, label, _ in METRICS:
        if not any((key, v) in cell for v in views):
            continue
        cells = []
        digits = 2 if key.startswith("psnr") else 3
        for v in views:
            r = cell.get((key, v))
            if r is None:
                cells.append("–")
                continue
            level = f", {r.ties} level" if r.ties else ""
            cells.append(f"{r.mean:+.{digits}f} ± {r.stderr:.{digits}f} ({r.wins}/{r.scenes}{level})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
