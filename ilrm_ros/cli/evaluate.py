"""``ilrm eval``: the held-out synthetic benchmark (PSNR/SSIM between and beyond the context
views, refresh time) of a checkpoint against baselines, as a markdown table plus JSON.

    ilrm eval --checkpoint runs/small/model_fp16.safetensors --out runs/eval.md
    ilrm eval --quick --out /tmp/eval.md            # a few small scenes, CPU-friendly
    ilrm eval --compare new.json old.json            # paired per-scene comparison of two runs

Scenes come from the evaluation seed range (``ilrm_ros.train.splits.EVAL_SEEDS``), disjoint from
the training seeds. Baselines: the nearest context image (always), per-scene 3DGS optimisation
for 1 s and 10 s (CUDA only), and a GS-LRM-style checkpoint (``--baseline-ckpt``).
"""

from __future__ import annotations

import argparse
import sys
import time

NAME = "eval"
HELP = "held-out synthetic quality benchmark against baselines"

QUICK_SCENES = 3
QUICK_SIZE = 64


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ilrm_ros.cli.train import _resolution

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__
    parser.add_argument(
        "--checkpoint", default="",
        help="model under test: checkpoint path or preset (default: the shipped checkpoint, as the node's)"
    )
    parser.add_argument(
        "--baseline-ckpt", default=None, help="GS-LRM-style (arch gslrm) checkpoint or preset to compare"
    )
    parser.add_argument("--scenes", type=int, default=None, help="number of held-out scenes (default 20; --quick 3)")
    parser.add_argument(
        "--views", type=int, nargs="+", default=[2, 4], metavar="V",
        help="context view counts to score (default 2 4; e.g. one per GPU to split a run)",
    )
    parser.add_argument(
        "--resolution",
        type=_resolution,
        default=None,
        metavar="H[xW]",
        help=f"image size (default: the model's; --quick: at most {QUICK_SIZE})",
    )
    parser.add_argument("--quick", action="store_true", help="a few small scenes, fast on a CPU")
    parser.add_argument(
        "--gs-budgets",
        type=float,
        nargs="*",
        default=[1.0, 10.0],
        metavar="S",
        help="3DGS optimisation budgets in seconds (default 1 10; none to skip)",
    )
    parser.add_argument(
        "--refine-steps",
        type=int,
        nargs="*",
        default=[],
        metavar="N",
        help="also score the model with its Gaussians refined on the context views for N Adam steps "
        "(one row per N; meant for a GPU)",
    )
    parser.add_argument("--refine-lr-scale", type=float, default=None, help="multiplier of the 3DGS recipe's "
                        "learning rates in the refinement (default: the node's, refine.DEFAULT_LR_SCALE = 4)")
    parser.add_argument("--gs-points", type=int, default=50_000, help="Gaussians of the 3DGS baseline (default 50000)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument(
        "--out", default=None,
        help="markdown table (JSON written beside it; default runs/eval/benchmark.md); with --compare, where to "
        "write the comparison (default: print only)",
    )
    parser.add_argument(
        "--compare", nargs=2, metavar=("NEW.json", "OLD.json"), default=None,
        help="run nothing: compare the model under test of two earlier runs on the same scenes, per scene "
        "(mean difference, standard error, scenes won)",
    )


def run(args: argparse.Namespace) -> int:
    if args.compare:
        return _compare(*args.compare, args.out)
    if not args.views or min(args.views) < 1:
        print(f"ilrm eval: error: --views needs positive view counts, got {args.views}", file=sys.stderr)
        return 2
    import torch

    from ilrm_ros.checkpoints import resolve_checkpoint
    from ilrm_ros.evaluation.benchmark import (
        GaussianOptim,
        ModelMethod,
        NearestContext,
        RefinedModelMethod,
        environment,
        evaluate,
        make_cases,
        refresh_repeats,
        write_report,
    )
    from ilrm_ros.model import PRESETS, load_model
    from ilrm_ros.train.distributed import resolve_device
    from ilrm_ros.train.splits import EVAL_SEEDS

    start = time.perf_counter()
    device = resolve_device(args.device)
    args.checkpoint = resolve_checkpoint(args.checkpoint)
    model = load_model(args.checkpoint, device=device)
    notes = []
    if args.checkpoint in PRESETS:
        notes.append(f"--checkpoint {args.checkpoint} is a preset: randomly initialised weights, not a trained model")
    h, w = args.resolution or model.config.image_size
    if args.quick and not args.resolution:
        p = model.config.patch_size
        h, w = (max(p, min(s, QUICK_SIZE) // p * p) for s in (h, w))
    scenes = args.scenes or (QUICK_SCENES if args.quick else 20)
    label = f"iLRM ({model.config.arch}, {args.checkpoint})"
    methods = [ModelMethod(label, model)]
    scale = {} if args.refine_lr_scale is None else {"lr_scale": args.refine_lr_scale}
    methods += [RefinedModelMethod(label, model, n, **scale) for n in args.refine_steps]
    methods.append(NearestContext())
    if args.baseline_ckpt:
        baseline = load_model(args.baseline_ckpt, device=device)
        methods.append(ModelMethod(f"GS-LRM ({baseline.config.arch}, {args.baseline_ckpt})", baseline))
    else:
        notes.append("GS-LRM baseline skipped: no --baseline-ckpt")
    methods += [GaussianOptim(b, args.gs_points) for b in args.gs_budgets]

    if device.type == "cuda":
        from ilrm_ros.render import warmup

        warmup(device)
    cases = make_cases(scenes, h, w, device, view_counts=tuple(sorted(set(args.views))))
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    with torch.no_grad():
        rows, skipped = evaluate(methods, cases, progress=log)
    for m in methods:
        if isinstance(m, GaussianOptim) and m.steps:
            notes.append(f"{m.name}: {min(m.steps)}-{max(m.steps)} optimisation steps per scene")
    header = {
        "checkpoint": str(args.checkpoint),
        "scenes": f"{scenes} held-out rooms, seeds {EVAL_SEEDS.start}..{EVAL_SEEDS.start + scenes - 1}",
        "views": f"context {' and '.join(map(str, sorted(set(args.views))))} keyframes; targets: 2 between, "
        "2 beyond the context span per scene",
        "resolution": f"{h}x{w}",
        "device": environment(device),
        "refresh": "model forward (reconstruct), CUDA-synchronised: the median over the scenes of "
        + (f"each scene's median of {n} forwards" if (n := refresh_repeats(device)) > 1 else "one forward each"),
        "run time": f"{time.perf_counter() - start:.1f} s",
    }
    md, js = write_report(args.out or "runs/eval/benchmark.md", rows, skipped, header, notes)
    print(md.read_text())
    print(f"wrote {md} and {js}")
    return 0


def _compare(new: str, old: str, out: str | None) -> int:
    from pathlib import Path

    from ilrm_ros.evaluation.compare import markdown, model_rows, paired

    try:
        (new_name, a), (old_name, b) = model_rows(new), model_rows(old)
        text = markdown(paired(a, b), new_name, old_name)
    except (OSError, ValueError, KeyError) as err:
        print(f"ilrm eval --compare: error: {err}", file=sys.stderr)
        return 2
    print(text, end="")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)
        print(f"wrote {out}")
    return 0
