"""Placeholder node until the full node lands: starts, logs and spins."""

from rclpy.node import Node


class IlrmNode(Node):
    def __init__(self) -> None:
        super().__init__("ilrm")
        self.get_logger().info("ilrm node started")
