"""`ilrm_node` entry point: start the node, spin, exit cleanly on Ctrl-C."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    import rclpy
    from rclpy.executors import ExternalShutdownException

    args = sys.argv if argv is None else argv
    if "--help" in args or "-h" in args:
        print(
            "usage: ilrm_node [--ros-args ...]\n\n"
            "The ilrm_ros node: synced camera + pose in, iLRM refresh, rendered views and point clouds out.\n"
            "Parameters come from --ros-args (e.g. --params-file config/ilrm.yaml); see README."
        )
        return 0
    rclpy.init(args=args)
    from ilrm_ros.node.ilrm_node import IlrmNode

    node = None
    try:
        node = IlrmNode()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
