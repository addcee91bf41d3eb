"""Launch the ilrm_ros node with config/ilrm.yaml, topic remaps and optional RViz.

Example (a typical RGB camera driver plus an odometry source):
  ros2 launch ilrm_ros ilrm.launch.py image:=/camera/color/image_raw \
      camera_info:=/camera/color/camera_info pose:=/odom pose_type:=Odometry \
      camera_from_pose_frame:=camera_link rviz:=true
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

ARGUMENTS = [
    ("params_file", PathJoinSubstitution([FindPackageShare("ilrm_ros"), "config", "ilrm.yaml"]),
     "parameter file for the node"),
    ("checkpoint", "", "model checkpoint (.safetensors or the published .ckpt); empty = the shipped small model"),
    ("device", "auto", "auto | cuda | cpu"),
    ("image", "/camera/image_raw", "input image topic (sensor_msgs/Image)"),
    ("camera_info", "/camera/camera_info", "input camera info topic"),
    ("pose", "/camera/pose", "input camera pose topic"),
    ("pose_type", "PoseStamped", "PoseStamped | PoseWithCovarianceStamped | Odometry"),
    ("camera_from_pose_frame", "identity", "identity | camera_link (REP-103 body frame) | 'x y z qx qy qz qw'"),
    ("image_transport", "raw", "raw | compressed (subscribes to <image>/compressed)"),
    ("namespace", "", "namespace of the node"),
    ("rviz", "false", "start RViz with config/ilrm.rviz"),
    ("use_sim_time", "false", "use /clock (true when playing a bag with --clock)"),
]


def generate_launch_description() -> LaunchDescription:
    arg = LaunchConfiguration
    node = Node(
        package="ilrm_ros",
        executable="ilrm_node",
        name="ilrm",
        namespace=arg("namespace"),
        output="screen",
        emulate_tty=True,
        parameters=[
            arg("params_file"),
            {
                "checkpoint": arg("checkpoint"),
                "device": arg("device"),
                "pose_type": arg("pose_type"),
                "camera_from_pose_frame": arg("camera_from_pose_frame"),
                "image_transport": arg("image_transport"),
                "use_sim_time": arg("use_sim_time"),
            },
        ],
        remappings=[
            ("image", arg("image")),
            ("image/compressed", [arg("image"), "/compressed"]),
            ("camera_info", arg("camera_info")),
            ("pose", arg("pose")),
        ],
    )
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="rviz",
        arguments=["-d", PathJoinSubstitution([FindPackageShare("ilrm_ros"), "config", "ilrm.rviz"])],
        condition=IfCondition(arg("rviz")),
    )
    declared = [DeclareLaunchArgument(name, default_value=value, description=text) for name, value, text in ARGUMENTS]
    return LaunchDescription([*declared, node, rviz])
