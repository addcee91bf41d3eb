"""Node + playback of a recorded bag (`ros2 bag play`) + RViz: the demo on a robot or a ROS desktop.

  ilrm synth-bag /tmp/room.mcap && ros2 launch ilrm_ros demo.launch.py bag:=/tmp/room.mcap
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    bag = LaunchConfiguration("bag")
    node = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([FindPackageShare("ilrm_ros"), "launch", "ilrm.launch.py"])),
        launch_arguments={
            "rviz": LaunchConfiguration("rviz"),
            "device": LaunchConfiguration("device"),
            "image": "/camera/image_raw",
            "camera_info": "/camera/camera_info",
            "pose": "/camera/pose",
        }.items(),
    )
    play = ExecuteProcess(cmd=["ros2", "bag", "play", bag, "--loop"], output="screen")
    return LaunchDescription([
        DeclareLaunchArgument("bag", description="rosbag2 to play (e.g. from `ilrm synth-bag`)"),
        DeclareLaunchArgument("rviz", default_value="true", description="start RViz"),
        DeclareLaunchArgument("device", default_value="auto", description="auto | cuda | cpu"),
        node,
        play,
    ])
