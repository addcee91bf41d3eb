"""rosbag2 I/O without ROS (``rosbags``), synthetic bag writing and rclpy playback."""

from .reader import BagError, BagMessage, bag_custom_data, bag_directory, bag_summary, iter_bag
from .writer import SyntheticSequence, synthetic_sequence, write_synthetic_bag

__all__ = [
    "BagError",
    "BagMessage",
    "SyntheticSequence",
    "bag_custom_data",
    "bag_directory",
    "bag_summary",
    "iter_bag",
    "synthetic_sequence",
    "write_synthetic_bag",
]
