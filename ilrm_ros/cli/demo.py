"""`ilrm demo`: synthetic bag -> the real node over the ROS graph -> scene, contact sheet, report."""

from __future__ import annotations

import argparse

NAME = "demo"
HELP = "synthetic bag -> real node over the ROS graph -> scene, contact sheet, report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    parser.add_argument("--frames", type=int, default=150, help="camera frames in the synthetic bag")
    parser.add_argument("--rate", type=float, default=15.0, help="camera rate in Hz")
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=120)
    parser.add_argument("--seed", type=int, default=7, help="synthetic room and trajectory seed")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument("--checkpoint", default="", help="model checkpoint (default: the shipped small model)")
    parser.add_argument("--render-rate", type=float, default=0.0,
                        help="0: the node renders each camera frame (default); > 0: at this rate in Hz")
    parser.add_argument("--model-aspect", type=float, default=0.0, metavar="W/H",
                        help="the node's model_aspect; 0 (default): the camera's, so the model sees the whole frame")
    parser.add_argument("--no-viewer", action="store_true", help="do not serve the browser viewer")
    parser.add_argument("--hold", action="store_true", help="keep the node (and viewer) running after the bag "
                        "until Ctrl-C")


def run(args: argparse.Namespace) -> int:
    from ilrm_ros.demo import run_demo

    report = run_demo(args.out, args.frames, args.rate, args.width, args.height, args.seed, args.device,
                      args.checkpoint, args.render_rate, not args.no_viewer, args.hold, args.model_aspect)
    psnr = report["novel_psnr_mean"]
    print(f"node exit code {report['node_exit_code']}; {report['renders_received']} renders "
          f"({report['render_rate_hz']:.1f} Hz), {report['point_clouds_received']} point clouds; "
          f"novel-view PSNR {'n/a' if psnr is None else f'{psnr:.2f} dB'} over {report['novel_views_scored']} frames")
    for name in ("scene.ply", "contact_sheet.png", "report.json", "node.log", "input_bag"):
        print(f"  {args.out}/{name}")
    return 0 if report["node_exit_code"] == 0 else 1
