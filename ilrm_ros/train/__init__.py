"""Training iLRM: data sources (synthetic rooms, recorded bags), losses, schedule and the trainer.

``ilrm train`` (:mod:`ilrm_ros.cli.train`) is the command-line entry; :class:`Trainer` is the API.
"""

from .data import BagSource, BagTrajectory, SyntheticSource, ViewBatch, make_synthetic_scene, render_views
from .losses import render_loss
from .schedule import make_scheduler, retarget, warmup_cosine
from .splits import EVAL_SEEDS, TRAIN_SEEDS
from .trainer import TrainConfig, Trainer, checkpoint_dir, read_state
from .views import ViewChoice, keyframe_indices, sample_views

__all__ = [
    "BagSource",
    "BagTrajectory",
    "EVAL_SEEDS",
    "SyntheticSource",
    "TRAIN_SEEDS",
    "TrainConfig",
    "Trainer",
    "ViewBatch",
    "ViewChoice",
    "checkpoint_dir",
    "keyframe_indices",
    "make_scheduler",
    "make_synthetic_scene",
    "read_state",
    "render_loss",
    "render_views",
    "retarget",
    "sample_views",
    "warmup_cosine",
]
