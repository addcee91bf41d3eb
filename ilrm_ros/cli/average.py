"""``ilrm average``: average the weights of checkpoints of one architecture (a model soup)."""

from __future__ import annotations

import argparse
import sys

NAME = "average"
HELP = "average the weights of checkpoints of one architecture (a model soup)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Write the element-wise mean of two or more checkpoints with the same config, e.g. runs "
        "fine-tuned from one parent with different seeds, as an fp16 safetensors file whose metadata "
        "names the inputs. Score the result with `ilrm eval` before using it: averaging runs that "
        "moved far apart (other losses, other parents) can be worse than either."
    )
    parser.add_argument("inputs", nargs="+", metavar="CHECKPOINT", help="two or more checkpoints to average")
    parser.add_argument("--out", required=True, help="output safetensors file")


def run(args: argparse.Namespace) -> int:
    from ..model import average_checkpoints

    try:
        average_checkpoints(args.inputs, args.out)
    except (OSError, ValueError) as err:
        print(f"ilrm average: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: the average of {len(args.inputs)} checkpoints")
    return 0
