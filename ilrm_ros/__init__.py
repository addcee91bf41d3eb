"""ilrm_ros: live 3D Gaussian scenes from one posed camera with iLRM, for ROS 2."""

__version__ = "0.1.0"
