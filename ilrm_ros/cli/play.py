"""``ilrm play``: publish a rosbag2 through rclpy with its recorded timing (no ``ros2 bag`` needed)."""

from __future__ import annotations

import argparse
import sys

NAME = "play"
HELP = "play a rosbag2 on its topics through rclpy with the recorded timing (a stand-in for 'ros2 bag play')"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..bag.player import DEFAULT_QOS_DEPTH

    parser.description = (
        "Publish a rosbag2's messages (mcap or sqlite3) on their topics with their recorded timing. "
        "The stored serialized messages are published unchanged. Publishers are reliable and "
        f"volatile with keep-last depth {DEFAULT_QOS_DEPTH} (see --qos-depth); best-effort "
        "subscribers are compatible."
    )
    parser.add_argument("bag", metavar="BAG", help="rosbag2 directory")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default: 1.0)")
    parser.add_argument("--loop", action="store_true", help="start over (with fresh timing) after the last message")
    parser.add_argument("--topics", nargs="+", metavar="TOPIC", help="play only these topics (default: all)")
    parser.add_argument(
        "--qos-depth", type=int, default=DEFAULT_QOS_DEPTH,
        help=f"keep-last depth of the reliable publishers (default: {DEFAULT_QOS_DEPTH})",
    )
    parser.add_argument(
        "--delay", type=float, default=0.5,
        help="seconds to wait after creating the publishers, for discovery (default: 0.5)",
    )
    parser.add_argument(
        "--wait-for-subscribers", type=float, default=0.0, metavar="SECONDS",
        help="first wait up to this long until every topic has a subscriber (default: 0)",
    )


def run(args: argparse.Namespace) -> int:
    import rclpy
    from rclpy.context import Context

    from ..bag.player import BagPlayer
    from ..bag.reader import BagError

    context = Context()
    rclpy.init(context=context)
    node = None
    player = None
    try:
        node = rclpy.create_node("ilrm_bag_player", context=context)
        try:
            player = BagPlayer(
                node, args.bag, rate=args.rate, loop=args.loop, topics=args.topics,
                qos_depth=args.qos_depth, wait_for_subscribers=args.wait_for_subscribers, delay=args.delay,
            )
        except (BagError, ValueError) as err:
            print(f"ilrm play: error: {err}", file=sys.stderr)
            return 2
        print(f"playing {args.bag} at {args.rate:g}x{' (loop)' if args.loop else ''}: {', '.join(player.topics)}")
        player.start()
        try:
            while not player.wait(0.2):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            player.stop()
        print(f"published {player.published} messages")
        return 0
    finally:
        if player is not None:
            player.destroy()
        if node is not None:
            node.destroy_node()
        rclpy.shutdown(context=context)
