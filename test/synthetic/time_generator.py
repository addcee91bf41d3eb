"""Time one training batch's synthetic render, one room at a time against one merged pass (a
measurement, not a test; CUDA for the figures that matter, the CPU runs it too).

    python3 test/synthetic/time_generator.py [--batch 36] [--views 4] [--device cuda] [--train-steps N]

Draws the groups of one batch (4 samples per room, ``--views`` context views and 4 targets at
128x128, as ``ilrm train --preset small --max-views 4`` does), then renders them with
:func:`ilrm_ros.train.data.render_view_groups` in both modes of ``render_rooms``: the host's time in
the call and the time until the GPU is done (medians of 30 after 5 warm-ups), GPU kernels per batch
(``torch.profiler``, 3 batches) and the peak memory the render adds. With ``--train-steps N``, also
one rank of ``ilrm train``'s recipe alone on the device (the shipped checkpoint, batch ``--batch``,
no ``--compile``): N steps each way after 5 warm-ups, twice in turn, drawing ahead as the training
loop does; medians of the step time and of its ``time_data``. Results: docs/training.md.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import tempfile
import time

import torch
from torch.profiler import ProfilerActivity, profile

import ilrm_ros.train.data as train_data
from ilrm_ros.train.data import SyntheticSource, render_view_groups
from ilrm_ros.train.trainer import TrainConfig, Trainer


def _measure(groups, device: torch.device, merged: bool) -> dict:
    def render() -> None:
        render_view_groups(groups, 128, 128, merged=merged)

    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for _ in range(5):
        render()
    sync()
    host, done = [], []
    for _ in range(30):
        t0 = time.perf_counter()
        render()
        host.append(time.perf_counter() - t0)
        sync()
        done.append(time.perf_counter() - t0)
    row = {"merged": merged, "host_ms": 1e3 * statistics.median(host), "done_ms": 1e3 * statistics.median(done)}
    if cuda:
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(3):
                render()
            sync()
        gpu = [e for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA]
        row["kernels"] = sum(e.count for e in gpu) / 3
        row["gpu_ms"] = sum(e.self_device_time_total for e in gpu) / 3 / 1e3
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        render()
        sync()
        row["peak_added_mib"] = (torch.cuda.max_memory_allocated() - before) / 2**20
    return row


def _train_steps(batch: int, steps: int, device: torch.device, **changes) -> list[dict]:
    """Median step time and ``time_data`` of one rank training with each render mode in turn
    (``changes``: other ``TrainConfig`` fields, e.g. a tiny preset to try the script on a CPU)."""
    options = dict(
        preset="small", init="ilrm_ros/checkpoints/small.safetensors", steps=100_000, batch_size=batch,
        max_views=4, depth_weight=0.1, gaussian_depth_weight=0.1, grad_checkpointing=False, ckpt_every=0,
        log_every=100_000, seed=7,
    )
    trainer = Trainer(TrainConfig(**{**options, **changes}), tempfile.mkdtemp(), device=str(device))
    plain, rows = train_data.render_view_groups, []
    try:
        for merged in (False, True, False, True):
            train_data.render_view_groups = functools.partial(plain, merged=merged)
            trainer.next_batch()  # drop a batch drawn ahead in the other mode
            times, data = [], []
            for i in range(5 + steps):
                t0 = time.perf_counter()
                scalars = trainer.train_step(prefetch=True)
                if i >= 5:
                    times.append(time.perf_counter() - t0)
                    data.append(scalars["time_data"])
            rows.append({"merged": merged, "step_ms": 1e3 * statistics.median(times),
                         "data_ms": 1e3 * statistics.median(data)})
    finally:
        train_data.render_view_groups = plain
        trainer.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=36)
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--train-steps", type=int, default=0, help="also time N training steps each way")
    args = parser.parse_args()
    device = torch.device(args.device)
    src = SyntheticSource(128, 128, 2, 4, device=device, seed=7, max_views=4)
    groups, left = [], args.batch
    while left > 0:
        groups.append(src._draw(min(src.group, left), args.views))
        left -= len(groups[-1][1])
    rows = [_measure(groups, device, merged) for merged in (False, True)]
    for row in rows:
        print(("merged   " if row["merged"] else "per room ") + "  ".join(
            f"{k} {v:.1f}" for k, v in row.items() if k != "merged"), flush=True)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(json.dumps({"device": name, "torch": torch.__version__, "rooms": len(groups), "rows": rows}))
    src.close()
    if args.train_steps:
        train = _train_steps(args.batch, args.train_steps, device)
        for row in train:
            print(("train merged   " if row["merged"] else "train per room ") + "  ".join(
                f"{k} {v:.1f}" for k, v in row.items() if k != "merged"), flush=True)
        print(json.dumps({"train_rows": train}))


if __name__ == "__main__":
    main()
