"""The split of the synthetic world's scene seeds between training and the benchmark.

A synthetic scene is ``SyntheticRoom(seed)``. The trainer draws seeds only from
:data:`TRAIN_SEEDS` and ``ilrm eval`` only from :data:`EVAL_SEEDS`, so no benchmark room is ever
seen in training. Both are plain ranges so that the split is visible and stable across versions.
"""

from __future__ import annotations

TRAIN_SEEDS = range(0, 1_000_000)
"""Scene seeds the trainer samples from."""

EVAL_SEEDS = range(1_000_000_000, 1_000_010_000)
"""Held-out scene seeds; the benchmark uses the first ``--scenes`` of them, in order."""

if EVAL_SEEDS.start < TRAIN_SEEDS.stop:  # the ranges must stay disjoint
    raise AssertionError("training and evaluation seeds overlap")
