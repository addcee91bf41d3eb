"""The rclpy node: a thin adapter between ROS topics/services/parameters and the pipeline core."""
