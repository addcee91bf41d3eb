"""Count the tensor operations of one training batch of synthetic samples, per ``--scene-group``.

    .venv/bin/python test/synthetic/count_generator_ops.py [--batch 32] [--groups 4 8 16 32]

Runs on the CPU with the CUDA path's chunking and its merged pass over a batch's rooms
(``render_rooms(merged=True)``), so the count is that of a GPU run: on the GPU each operation is
roughly one kernel launch on the host. View operations (select, slice, ...) are counted too, so
this is an upper bound on launches; compare runs with each other (docs/training.md).
"""

from __future__ import annotations

import argparse

from torch.utils._python_dispatch import TorchDispatchMode

import ilrm_ros.synthetic.room as room
from ilrm_ros.train.data import SyntheticSource


class _Count(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        return func(*args, **(kwargs or {}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--groups", type=int, nargs="+", default=[4, 8, 16, 32])
    args = parser.parse_args()
    room._MAX_RAYS_PER_CHUNK_CPU = room._MAX_RAYS_PER_CHUNK  # the CUDA path's chunks
    render_rooms = room.render_rooms
    room.render_rooms = lambda *a, **k: render_rooms(*a, **{**k, "merged": True})  # and its merged pass
    for group in args.groups:
        src = SyntheticSource(128, 128, num_views=2, num_targets=4, seed=5, group=group)
        src.sample(args.batch)  # the first batch also builds the scene pool
        counts = []
        for _ in range(3):
            with _Count() as count:
                src.sample(args.batch)
            counts.append(count.ops)
        src.close()
        print(f"--scene-group {group}: {counts} tensor ops per batch of {args.batch}", flush=True)


if __name__ == "__main__":
    main()
