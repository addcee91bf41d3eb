"""``ilrm view``: open a saved scene PLY in the browser viewer (no ROS needed)."""

from __future__ import annotations

import argparse
import sys
import time

NAME = "view"
HELP = "open a saved scene PLY in the browser viewer"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Serve a 3DGS PLY (e.g. one written by ~/save_scene) as live Gaussian splats on a local web page "
        "and print its URL; runs until Ctrl-C. The page binds to loopback unless --host says otherwise: "
        "use --host 0.0.0.0 only on a network you trust."
    )
    parser.add_argument("ply", metavar="SCENE.ply", help="scene file in the standard 3DGS PLY layout")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1, loopback only)")
    parser.add_argument("--port", type=int, default=8080, help="port (default: 8080; the next free one if taken)")
    parser.add_argument(
        "--max-splats", type=int, default=200_000,
        help="send at most this many (the most opaque) Gaussians to the browser (default: 200000)",
    )


def run(args: argparse.Namespace) -> int:
    from ..scene import load_ply
    from ..viewer import SceneViewer

    try:
        gaussians = load_ply(args.ply)
    except (OSError, ValueError) as err:
        print(f"ilrm view: error: {err}", file=sys.stderr)
        return 2
    viewer = SceneViewer(args.host, args.port, max_splats=args.max_splats, title=f"ilrm view: {args.ply}")
    try:
        viewer.update_scene(gaussians)
        viewer.flush(timeout=60.0)
        viewer.set_stats({"file": args.ply, "Gaussians": len(gaussians)})
        print(f"viewing {args.ply} ({len(gaussians):,} Gaussians) at {viewer.url}  (Ctrl-C to stop)", flush=True)
        while True:
            time.sleep(1.0)
    finally:
        viewer.close()
