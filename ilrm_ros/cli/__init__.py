"""`ilrm`: the tools command line (demo, replay, bag tools, training, evaluation, benchmarks).

Each subcommand lives in its own module of this package with ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``; modules are imported only when
their subcommand runs, so ``ilrm --help`` stays fast and needs no torch or ROS.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand name -> (module, one-line help). Kept here so --help needs no imports.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "synthetic bag -> real node over the ROS graph -> scene, contact sheet, report"),
    "synth-bag": ("synth_bag", "write a rosbag2 of a synthetic room (images, camera info, poses, depth)"),
    "play": ("play", "publish a bag's messages through rclpy with their original timing"),
    "replay": ("replay", "run the node's pipeline over a bag without a ROS graph and report quality"),
    "train": ("train", "train an iLRM preset on synthetic scenes or recorded bags"),
    "eval": ("evaluate", "held-out synthetic quality benchmark against baselines"),
    "average": ("average", "average the weights of checkpoints of one architecture (a model soup)"),
    "bench": ("bench", "latency / memory benchmarks of model, renderer and node"),
    "view": ("view", "open a saved scene PLY in the browser viewer"),
}


def _load(name: str):
    module, _ = SUBCOMMANDS[name]
    return importlib.import_module(f"{__name__}.{module}")


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; only the selected subcommand's module is imported."""
    parser = argparse.ArgumentParser(prog="ilrm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == selected:
            _load(name).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    selected = next((a for a in argv if not a.startswith("-")), None)
    selected = selected if selected in SUBCOMMANDS else None
    args = build_parser(selected).parse_args(argv)
    if args.command is None:
        build_parser().print_help()
        return 0
    try:
        return int(_load(args.command).run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
