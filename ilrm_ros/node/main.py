"""`ilrm_node` entry point: start the node, spin, exit cleanly on Ctrl-C."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv if argv is None else argv
    if "--help" in args or "-h" in args:
        print(
            "usage: ilrm_node [--ros-args ...]\n\n"
            "The ilrm_ros node: synced camera + pose in, iLRM refresh, rendered views and point clouds out.\n"
            "Parameters come from --ros-args (e.g. --params-file config/ilrm.yaml; -p device:=cpu);\n"
            "`ros2 param describe /ilrm <name>` documents each. See README.md."
        )
        return 0
    from ilrm_ros.node.dds_profile import apply_fastdds_profile

    _, transport = apply_fastdds_profile()  # before the DDS participant exists
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    rclpy.init(args=args)
    rclpy.logging.get_logger("ilrm").info(transport)
    from ilrm_ros.node.ilrm_node import IlrmNode, StartupError

    node = None
    code = 0
    try:
        # Single-threaded on purpose: refreshes run on the pipeline's own worker thread and every
        # callback is short; rclpy's MultiThreadedExecutor starved the worker of the GIL under a
        # 30 Hz stream (measured: refresh p50 4.5 s vs 0.12 s; docs/reliability.md). Made before the
        # node, so a Ctrl-C right after "ready:" cannot land inside the executor's constructor.
        executor = SingleThreadedExecutor()
        node = IlrmNode()
        executor.add_node(node)
        executor.spin()
    except StartupError as err:
        rclpy.logging.get_logger("ilrm").fatal(str(err))
        code = 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RuntimeError as err:
        # rclpy's SIGINT handler can shut the context down between spin()'s ok() check and its next
        # wait set, which then fails with RCLError ("context is not valid"): that is Ctrl-C too.
        if rclpy.ok():
            raise
        rclpy.logging.get_logger("ilrm").debug(f"shut down while spinning: {err}")
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
