"""`ilrm bench`: model, renderer and point-packing latency/memory; results as JSON for docs/benchmarks.md."""

from __future__ import annotations

import argparse

NAME = "bench"
HELP = "latency / memory benchmarks of model, renderer and node"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="small CPU-sized shapes (CI smoke run, no targets)")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument("--modes", default="graph", help="comma list of forward modes: eager,graph,compile,"
                        "compile+graph (CUDA; CPU always runs eager)")
    parser.add_argument("--views", default="2,4,8,16,32", help="comma list of view counts at 256x256 (re10k)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the GS-LRM-style baseline rows")
    parser.add_argument("--node", action="store_true", help="also measure the node end to end on the ROS graph "
                        "(synthetic bag at 30 Hz -> ilrm_node -> ~/points and ~/render/image)")
    parser.add_argument("--out", help="write the results as JSON here")


def run(args: argparse.Namespace) -> int:
    import json

    import torch

    from ilrm_ros.benchmark import run_benchmarks
    from ilrm_ros.pipeline.pipeline import resolve_device

    device = resolve_device(args.device)
    result = run_benchmarks(args.quick, device, tuple(args.modes.split(",")),
                            tuple(int(v) for v in args.views.split(",")), not args.no_baseline)
    result["torch_threads"] = torch.get_num_threads()
    if args.node:
        from ilrm_ros.benchmark import node_latency

        result["node"] = node_latency(device=str(device.type))
        print(f"node: keyframe -> points {result['node']['keyframe_to_points_ms']} ms, "
              f"camera -> render {result['node']['camera_to_render_ms']} ms, "
              f"{result['node']['renders_per_camera_frame']:.2f} renders per camera frame")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {args.out}")
    return 0
