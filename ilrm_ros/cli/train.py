"""``ilrm train``: train an iLRM preset (or fine-tune a checkpoint) on synthetic rooms or recorded bags.

Single GPU / CPU::

    ilrm train --preset small --out runs/small --steps 20000 --max-minutes 9 --resume auto

Several GPUs of one host (DDP; global batch = --batch-size x GPUs)::

    torchrun --standalone --nproc_per_node 2 -m ilrm_ros.cli train --preset small --out runs/small ...

``--resume auto`` continues from ``--out``'s latest checkpoint when there is one, so the same
command trains in chunks (each stops cleanly before ``--max-minutes``). Options not given on a
resumed run keep the values stored in its checkpoint.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

NAME = "train"
HELP = "train an iLRM preset on synthetic scenes or recorded bags"

# option name -> TrainConfig field, for options whose default comes from the config (None = not given)
_CONFIG_OPTIONS = (
    "preset",
    "arch",
    "depth",
    "colour_skip",
    "init",
    "data",
    "bags",
    "image_topic",
    "camera_info_topic",
    "pose_topic",
    "pose_type",
    "camera_from_pose",
    "bag_stride",
    "steps",
    "batch_size",
    "lr",
    "warmup",
    "min_lr_ratio",
    "weight_decay",
    "grad_clip",
    "num_views",
    "max_views",
    "num_targets",
    "context_targets",
    "beyond_fraction",
    "resolution",
    "mix_resolutions",
    "rgb_loss",
    "ssim_weight",
    "depth_weight",
    "gaussian_depth_weight",
    "footprint_weight",
    "footprint_floor",
    "max_gap",
    "scene_pool",
    "samples_per_scene",
    "scene_group",
    "data_workers",
    "seed",
    "log_every",
    "ckpt_every",
    "keep_every",
)


def _number(text: str, low: float, high: float) -> float:
    """A number in [low, high]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"{value} is not in [{low:g}, {high:g}]")
    return value


def _fraction(text: str) -> float:
    """A number in [0, 1]."""
    return _number(text, 0.0, 1.0)


def _non_negative(text: str) -> float:
    """A number of 0 or more."""
    return _number(text, 0.0, float("inf"))


def _resolution(text: str) -> tuple[int, int]:
    """``128`` -> (128, 128); ``128x160`` -> (H, W) = (128, 160)."""
    parts = text.lower().replace(",", "x").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad resolution {text!r}: use H or HxW") from None
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"bad resolution {text!r}: use H or HxW")
    return values[0], values[1]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ilrm_ros.model.checkpoint import COLOUR_SKIP_START
    from ilrm_ros.train.losses import RGB_LOSSES
    from ilrm_ros.train.trainer import FIT_AFTER, FIT_EVERY, TrainConfig

    d = TrainConfig()
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__
    g = parser.add_argument_group("model")
    g.add_argument(
        "--preset", choices=("small", "tiny", "re10k"), default=None, help=f"model size (default {d.preset})"
    )
    g.add_argument(
        "--arch",
        choices=("ilrm", "gslrm"),
        default=None,
        help=f"iLRM or the GS-LRM-style baseline at the preset's size (default {d.arch})",
    )
    g.add_argument(
        "--init", default=None, metavar="CKPT", help="start from these weights (fine-tuning), e.g. the published .ckpt"
    )
    g.add_argument(
        "--resume",
        default=None,
        metavar="DIR",
        help="continue a run: a checkpoint dir, a run dir (its last/), or 'auto' (--out's, if any)",
    )
    g.add_argument(
        "--depth",
        type=int,
        default=None,
        metavar="N",
        help="blocks of the model (default: the preset's, or --init's). With --init of a shallower model, "
        "new blocks start as the identity (iLRM: read + self pairs), so training starts from that model's output",
    )
    g.add_argument(
        "--query-rgb",
        action="store_true",
        help="iLRM: the ray tokens also take their patch's pixels (not in the published layout). With --init "
        "of a model without it, the new weights start at zero, so training starts from that model's output",
    )
    g.add_argument(
        "--colour-skip",
        type=float,
        nargs="?",
        const=COLOUR_SKIP_START,
        default=None,
        metavar="W",
        help="each Gaussian's colour also takes its own pixel's colour times a learnt per-channel weight, "
        f"starting at W (default {COLOUR_SKIP_START}; not in the published layout). With --init of a model "
        "without it, the model's colours are scaled by 1 - W, so training starts from a mix of both",
    )
    g.add_argument("--no-grad-checkpointing", action="store_true", help="keep all activations (faster, more memory)")
    g.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the model: fused kernels, fewer launches per step (1.2-1.3x faster on an H100, "
        "docs/training.md); every view count's graph is compiled before the first step (40-50 s each on an "
        "H100 host; under torchrun the ranks of a GPU share them out and load the rest from the cache)",
    )
    g = parser.add_argument_group("data")
    g.add_argument("--data", choices=("synthetic", "bag"), default=None, help=f"training data (default {d.data})")
    g.add_argument("--bags", nargs="+", default=None, metavar="BAG", help="rosbag2 recordings (--data bag)")
    g.add_argument("--image-topic", default=None)
    g.add_argument("--camera-info-topic", default=None)
    g.add_argument("--pose-topic", default=None)
    g.add_argument(
        "--pose-type", default=None, choices=("auto", "PoseStamped", "PoseWithCovarianceStamped", "Odometry")
    )
    g.add_argument(
        "--camera-from-pose", default=None, help="camera optical frame in the pose frame: preset or 7 numbers"
    )
    g.add_argument("--bag-stride", type=int, default=None, help="keep every n-th image of the bags (default 1)")
    g.add_argument("--num-views", type=int, default=None, help="context views per sample (default: the model's)")
    g.add_argument(
        "--max-views", type=int, default=None,
        help="draw each batch's context-view count from num-views..max-views (default: num-views only); "
        "the checkpoint keeps num-views as the model's default window",
    )
    g.add_argument("--num-targets", type=int, default=None, help=f"target views per sample (default {d.num_targets})")
    g.add_argument(
        "--context-targets",
        type=int,
        default=None,
        help="of the targets that are not beyond the context span, this many are context frames themselves "
        "(default 0)",
    )
    g.add_argument(
        "--beyond-fraction",
        type=_fraction,
        default=None,
        help=f"share of the targets beyond the context span, where the trajectory extends past it "
        f"(default {d.beyond_fraction})",
    )
    g.add_argument(
        "--resolution",
        type=_resolution,
        default=None,
        metavar="H[xW]",
        help="training image size (default: the model's image_size); the checkpoint records it",
    )
    g.add_argument(
        "--mix-resolution",
        dest="mix_resolutions",
        type=_resolution,
        nargs="+",
        default=None,
        metavar="H[xW]",
        help="synthetic data: more image sizes; each batch takes one of these or --resolution, in equal "
        "shares (e.g. 128x168 for 4:3 cameras, which the node's default model_aspect feeds whole)",
    )
    g.add_argument(
        "--max-gap", type=int, default=None, help=f"max keyframes between context views (default {d.max_gap})"
    )
    g.add_argument("--scene-pool", type=int, default=None, help=f"synthetic rooms in the pool (default {d.scene_pool})")
    g.add_argument(
        "--scene-group", type=int, default=None, help="samples drawn from one room in a row (default 4)"
    )
    g.add_argument(
        "--data-workers", type=int, default=None, help="path-planning processes (default -1: auto, 0 on CPU)"
    )
    g.add_argument(
        "--samples-per-scene",
        type=int,
        default=None,
        help=f"samples drawn per pool refresh (default {d.samples_per_scene})",
    )
    g = parser.add_argument_group("optimisation")
    g.add_argument("--steps", type=int, default=None, help=f"total optimiser steps of the schedule (default {d.steps})")
    g.add_argument("--max-minutes", type=float, default=None, help="stop (with a checkpoint) before this wall time")
    g.add_argument(
        "--fit-to-time", action="store_true",
        help=f"with --max-minutes: after the first {FIT_AFTER} steps, and again every {FIT_EVERY}, fit the schedule "
        "(at most --steps) to the measured step rate so that it ends inside the time budget (instead of being "
        "cut off partway down its cosine, or ending early)",
    )
    g.add_argument(
        "--chunk-steps", type=int, default=None, help="stop (with a checkpoint) after this many steps of this run"
    )
    g.add_argument("--batch-size", type=int, default=None, help=f"samples per GPU per step (default {d.batch_size})")
    g.add_argument("--lr", type=float, default=None, help=f"peak learning rate (default {d.lr})")
    g.add_argument("--warmup", type=int, default=None, help=f"linear warm-up steps (default {d.warmup})")
    g.add_argument("--min-lr-ratio", type=float, default=None, help=f"final lr / peak lr (default {d.min_lr_ratio})")
    g.add_argument("--weight-decay", type=float, default=None, help=f"AdamW weight decay (default {d.weight_decay})")
    g.add_argument("--grad-clip", type=float, default=None, help=f"gradient-norm clip (default {d.grad_clip})")
    g.add_argument(
        "--rgb-loss",
        choices=RGB_LOSSES,
        default=None,
        help="colour term: mse over all pixels (default); psnr: each target image's MSE weighted so the "
        "gradient is that of the mean per-image PSNR (experimental: from v22 it traded views beyond the "
        "context for those between, docs/training.md chunk 24); rmse: half way, the mean per-image RMSE "
        "(v23, the shipped model, is v22 fine-tuned with it; chunk 25)",
    )
    g.add_argument("--ssim-weight", type=float, default=None, help="weight of the (1 - SSIM) term (default 0)")
    g.add_argument(
        "--depth-weight", type=float, default=None, help="weight of the depth L1 term, synthetic only (default 0)"
    )
    g.add_argument(
        "--gaussian-depth-weight",
        type=float,
        default=None,
        help="weight of the L1 term on each pixel-aligned Gaussian's own depth, synthetic only (default 0)",
    )
    g.add_argument(
        "--footprint-weight",
        type=float,
        default=None,
        help="weight of the term on the Gaussians' opacity-weighted footprint in pixels, which asks for "
        "smaller splats (default 0; experimental: 0.001 cost 0.17 dB, docs/training.md chunk 16)",
    )
    g.add_argument(
        "--footprint-floor",
        type=_non_negative,
        default=None,
        metavar="PX",
        help="with --footprint-weight: footprints up to PX pixels go free, only the part above counts "
        "(default 0: all of it; 1 px at weight 1e-4: +0.03 dB over a control, docs/training.md chunk 24)",
    )
    g.add_argument("--seed", type=int, default=None, help=f"random seed (default {d.seed})")
    g = parser.add_argument_group("output")
    g.add_argument("--out", default=None, metavar="DIR", help="run directory (default runs/train-<preset>)")
    g.add_argument(
        "--device", default="auto",
        help="auto, cpu, cuda (under torchrun: this rank's GPU). The CPU is for tests: its renderer's backward "
        "pass needs about 4.6 GB per sample at 64x64 and more than 24 GB at 128x128 (docs/training.md)",
    )
    g.add_argument("--log-every", type=int, default=None, help=f"steps between logged scalars (default {d.log_every})")
    g.add_argument("--ckpt-every", type=int, default=None, help=f"steps between checkpoints (default {d.ckpt_every})")
    g.add_argument("--keep-every", type=int, default=None, help="also keep a copy every n steps (default: never)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def resolve_config(args: argparse.Namespace):
    """(TrainConfig, out dir, checkpoint to resume or None) from the options and a stored config."""
    from ilrm_ros.train.trainer import TrainConfig, checkpoint_dir, read_state

    given = {name: getattr(args, name) for name in _CONFIG_OPTIONS if getattr(args, name, None) is not None}
    if args.no_grad_checkpointing:
        given["grad_checkpointing"] = False
    if args.compile:
        given["compile"] = True
    if args.query_rgb:
        given["query_rgb"] = True
    if "mix_resolutions" in given:
        given["mix_resolutions"] = tuple(given["mix_resolutions"])
    resume = args.resume
    out = Path(args.out) if args.out else None
    if resume == "auto":
        if out is None:
            raise SystemExit("--resume auto needs --out")
        try:
            resume = checkpoint_dir(out)
        except FileNotFoundError:
            resume = None
    if resume is not None:
        resume = checkpoint_dir(resume)
        stored = read_state(resume)["config"]
        if out is None:
            out = resume.parent
        given.pop("init", None)  # the checkpoint's weights win
        config = TrainConfig.from_dict({**stored, **given})
    else:
        config = TrainConfig(**given)
        out = out or Path("runs") / f"train-{config.preset}"
    return config, out, resume


def run(args: argparse.Namespace) -> int:
    start = time.monotonic()
    from ilrm_ros.train import distributed as D
    from ilrm_ros.train.trainer import Trainer

    if args.fit_to_time and args.max_minutes is None:
        raise SystemExit("--fit-to-time needs --max-minutes")
    config, out, resume = resolve_config(args)
    info, device = D.setup(args.device)
    try:
        if info.is_main:
            what = f"resuming {resume} at" if resume else "starting"
            print(f"{what} {out} on {device} x{info.world_size}: {json.dumps(config.to_dict())}", flush=True)
        trainer = Trainer(config, out, device=device, resume=resume, dist_info=info)
        try:
            summary = trainer.run(
                steps=args.chunk_steps, max_minutes=args.max_minutes, start_time=start, progress=not args.no_progress,
                fit_to_time=args.fit_to_time,
            )
        finally:
            trainer.close()
        if info.is_main:
            sps = summary["sec_per_step"]
            rate = f", {sps:.3f} s/step, {config.batch_size * info.world_size / sps:.1f} samples/s" if sps else ""
            print(
                f"stopped ({summary['stopped']}) at step {summary['step']}/{trainer.config.steps}{rate}; "
                f"checkpoint {summary['checkpoint']}",
                flush=True,
            )
            if summary["step"] < trainer.config.steps:
                print(f"continue with: ilrm train --out {out} --resume auto [--max-minutes M]", flush=True)
    finally:
        D.teardown()
    return 0
