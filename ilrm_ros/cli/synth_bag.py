"""``ilrm synth-bag``: write a synthetic camera rosbag2 (images, camera info, poses, depth)."""

from __future__ import annotations

import argparse
import time

NAME = "synth-bag"
HELP = "write a synthetic indoor camera rosbag2 (rgb8 images, CameraInfo, PoseStamped, depth); no ROS needed"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", metavar="OUT", help="bag directory to create")
    parser.add_argument("--frames", type=int, default=300, help="number of images (default: 300)")
    parser.add_argument("--rate", type=float, default=30.0, help="image rate in Hz (default: 30)")
    parser.add_argument("--width", type=int, default=160, help="image width (default: 160)")
    parser.add_argument("--height", type=int, default=120, help="image height (default: 120)")
    parser.add_argument("--hfov", type=float, default=70.0, help="horizontal field of view in degrees (default: 70)")
    parser.add_argument("--seed", type=int, default=0, help="scene and trajectory seed (default: 0)")
    parser.add_argument(
        "--storage", choices=("mcap", "sqlite3"), default="mcap", help="rosbag2 storage (default: mcap)"
    )
    parser.add_argument(
        "--trajectory", choices=("robot", "handheld"), default="robot",
        help="camera motion: a ground robot or a hand-held sweep (default: robot)",
    )
    parser.add_argument(
        "--pose-rate", type=float, default=None, metavar="HZ",
        help="publish /camera/pose at this rate, at stamps between the images (default: one pose per image)",
    )
    parser.add_argument("--no-depth", action="store_true", help="leave out the ground-truth /camera/depth topic")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it is an existing bag")


def run(args: argparse.Namespace) -> int:
    from ..bag.reader import bag_summary
    from ..bag.writer import write_synthetic_bag

    t0 = time.monotonic()
    try:
        write_synthetic_bag(
            args.out,
            frames=args.frames,
            rate_hz=args.rate,
            width=args.width,
            height=args.height,
            seed=args.seed,
            storage=args.storage,
            trajectory=args.trajectory,
            pose_rate_hz=args.pose_rate,
            hfov_deg=args.hfov,
            depth=not args.no_depth,
            overwrite=args.overwrite,
        )
    except (FileExistsError, ValueError) as err:
        print(f"ilrm synth-bag: error: {err}")
        return 2
    print(f"wrote {args.out} ({args.storage}, {args.frames} frames at {args.rate:g} Hz, "
          f"{args.width}x{args.height}) in {time.monotonic() - t0:.1f} s")
    for topic, (msgtype, count) in bag_summary(args.out).items():
        print(f"  {topic:24s} {msgtype:32s} {count}")
    return 0
