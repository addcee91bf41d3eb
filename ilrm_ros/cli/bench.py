"""`ilrm bench`: model, renderer and point-packing latency/memory; results as JSON for docs/benchmarks.md."""

from __future__ import annotations

import argparse
import itertools

NAME = "bench"
HELP = "latency / memory benchmarks of model, renderer and node"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="small CPU-sized shapes (CI smoke run, no targets)")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument("--modes", default="graph", help="comma list of forward modes: eager,graph,compile,"
                        "compile+graph (CUDA; CPU always runs eager)")
    parser.add_argument("--views", default="2,4,8,16,32,4@512", help="comma list of re10k input shapes: V (views "
                        "at 256x256) or V@S (V views at SxS)")
    parser.add_argument("--attention", default="auto", help="comma list of SDPA kernels: auto (cuDNN on Hopper), "
                        "default (PyTorch's choice), cudnn, flash, efficient, math")
    parser.add_argument("--blocks", default="reference", help="comma list of block maths: reference (the "
                        "checkpoint's exact maths), fused (fewer kernels, rounded differently; ilrm_ros.model.fused)")
    parser.add_argument("--no-render", action="store_true", help="skip the render rows")
    parser.add_argument("--no-baseline", action="store_true", help="skip the GS-LRM-style baseline rows")
    parser.add_argument("--node", action="store_true", help="also measure the node end to end on the ROS graph "
                        "(synthetic bag at 30 Hz -> ilrm_node -> ~/points and ~/render/image)")
    parser.add_argument("--node-checkpoint", default="", help="--node: checkpoint or preset (default: the shipped one)")
    parser.add_argument("--node-size", default="160x120", help="--node: camera WxH of the synthetic bag")
    parser.add_argument("--node-frames", type=int, default=150, help="--node: camera frames (at 30 Hz)")
    parser.add_argument("--node-dir", default="runs/bench_node", help="--node: folder for the bag and the node's log")
    parser.add_argument("--node-param", action="append", default=[], metavar="NAME:=VALUE",
                        help="--node: extra node parameter, e.g. render.trigger:=timer (repeatable)")
    parser.add_argument("--profile", action="store_true", help="also profile one forward per --views shape and "
                        "mode: time per kernel, grouped into attention / gemm / fused / other")
    parser.add_argument("--transport", action="store_true", help="also measure PointCloud2 transport between two "
                        "processes (`~/points`-sized clouds), with the node's Fast DDS profile and without")
    parser.add_argument("--out", help="write the results as JSON here")


def _shapes(text: str) -> tuple[tuple[int, int], ...]:
    """``"2,8,4@512"`` -> ((2, 256), (8, 256), (4, 512))."""
    shapes = []
    for token in text.split(","):
        views, _, size = token.partition("@")
        try:
            shapes.append((int(views), int(size or 256)))
        except ValueError:
            raise SystemExit(f"bad --views entry {token!r}: use V or V@S") from None
    return tuple(shapes)


def _block_maths(text: str) -> tuple[str, ...]:
    """``"reference,fused"`` -> ("reference", "fused"); anything else is a usage error."""
    names = tuple(text.split(","))
    bad = [n for n in names if n not in ("reference", "fused")]
    if bad:
        raise SystemExit(f"bad --blocks entry {bad[0]!r}: use reference and/or fused")
    return names


def run(args: argparse.Namespace) -> int:
    import json

    import torch

    from ilrm_ros.benchmark import run_benchmarks
    from ilrm_ros.pipeline.pipeline import resolve_device

    device = resolve_device(args.device)
    block_maths = _block_maths(args.blocks)
    modes = tuple(args.modes.split(","))
    result = run_benchmarks(args.quick, device, modes,
                            _shapes(args.views), not args.no_baseline, tuple(args.attention.split(",")),
                            not args.no_render, block_maths)
    result["torch_threads"] = torch.get_num_threads()
    if args.profile:
        from ilrm_ros.benchmark import kernel_breakdown

        runs = [("small", 2, 128)] if args.quick else [("re10k", v, size) for v, size in _shapes(args.views)]
        result["profile"] = []
        for (preset, views, size), mode, maths in itertools.product(runs, modes, block_maths):
            row = kernel_breakdown(preset, views, size, size, mode, device, fused_blocks=maths == "fused")
            result["profile"].append(row)
            groups = ", ".join(f"{k} {v:.2f}" for k, v in row["groups_ms"].items())
            print(f"profile {preset} {views} views {size}x{size} {row['mode']} {row['blocks']}: "
                  f"{row['total_ms']:.2f} ms ({groups})", flush=True)
    if args.node:
        from ilrm_ros.benchmark import node_latency

        width, _, height = args.node_size.partition("x")
        result["node"] = node_latency(device=str(device.type), frames=args.node_frames, width=int(width),
                                      height=int(height), checkpoint=args.node_checkpoint,
                                      workdir=args.node_dir, params=args.node_param)
        print(f"node: keyframe -> points {result['node']['keyframe_to_points_ms']} ms, "
              f"camera -> render {result['node']['camera_to_render_ms']} ms, "
              f"{result['node']['renders_per_camera_frame']:.2f} renders per camera frame "
              f"({result['node']['rendered_fraction_after_first_scene']:.2f} of the frames after the first scene)")
        print(f"node: each refresh, keyframe -> points ms: {result['node']['keyframe_to_points_all_ms']}")
        diag = result["node"]["node_diagnostics"]
        print("node's own diagnostics: " + ", ".join(f"{k} {v}" for k, v in diag.items()
                                                      if "latency" in k or k.startswith(("gpu_", "refresh"))))
    if args.transport:
        from ilrm_ros.node.transport_probe import measure

        sizes = (20_000, 30_000, 100_000)  # below and above Fast DDS's default 512 KiB segment; points.max_points
        result["transport"] = [measure(n, 30, profile) for n in sizes for profile in (False, True)]
        for row in result["transport"]:
            print(f"transport: {row['points']} points ({row['bytes'] / 1e6:.2f} MB), "
                  f"{'node profile' if row['profile'] else 'Fast DDS defaults'}: "
                  f"p50 {row.get('p50', float('nan')):.2f} / p95 {row.get('p95', float('nan')):.2f} ms "
                  f"over {row['clouds']} clouds")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {args.out}")
    return 0
