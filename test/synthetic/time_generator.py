"""Time one training batch's synthetic render, one room at a time against one merged pass (a
measurement, not a test; CUDA for the figures that matter, the CPU runs it too).

    python3 test/synthetic/time_generator.py [--batch 36] [--views 4] [--device cuda]

Draws the groups of one batch (4 samples per room, ``--views`` context views and 4 targets at
128x128, as ``ilrm train --preset small --max-views 4`` does), then renders them with
:func:`ilrm_ros.train.data.render_view_groups` in both modes of ``render_rooms``: the host's time in
the call and the time until the GPU is done (medians of 30 after 5 warm-ups), GPU kernels per batch
(``torch.profiler``, 3 batches) and the peak memory the render adds. Results: docs/training.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile

from ilrm_ros.train.data import SyntheticSource, render_view_groups


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=36)
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
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


if __name__ == "__main__":
    main()
