"""`ilrm replay BAG`: the node's pipeline over a bag, without a ROS graph."""

from __future__ import annotations

import argparse

NAME = "replay"
HELP = "run the node's pipeline over a bag without a ROS graph and report quality"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", help="rosbag2 directory (mcap or sqlite3)")
    parser.add_argument("--out", default="runs/replay", help="output folder (default: runs/replay)")
    parser.add_argument("--params", help="ROS 2 parameter file, e.g. config/ilrm.yaml")
    parser.add_argument("--checkpoint", help="override the checkpoint parameter")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), help="override the device parameter")
    parser.add_argument("--image-topic", default="/camera/image_raw")
    parser.add_argument("--camera-info-topic", default="/camera/camera_info")
    parser.add_argument("--pose-topic", default="/camera/pose")
    parser.add_argument("--outputs-bag", action="store_true", help="also write OUT/outputs.mcap of the output topics")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ilrm_ros.replay import Topics, format_report, read_params_file, run_replay

    params = read_params_file(args.params) if args.params else {}
    if args.checkpoint:
        params["checkpoint"] = args.checkpoint
    topics = Topics(args.image_topic, args.camera_info_topic, args.pose_topic)
    report = run_replay(args.bag, args.out, params, topics, device=args.device, progress=not args.no_progress,
                        outputs_bag=args.outputs_bag)
    print(format_report(report))
    print(f"wrote {args.out}/scene.ply, {args.out}/renders/, {args.out}/report.json")
    return 0
