"""The ROS-free core that both the rclpy node and ``ilrm replay`` drive.

Modules: ``sync`` (pose buffer, interpolation), ``camera`` (CameraInfo model, undistortion),
``keyframes`` (keyframe selection, view window), ``config`` (parameters), ``stats`` (diagnostics),
``metrics`` (PSNR/SSIM) and ``pipeline`` (the ``Pipeline`` that ties them to the model, scene and
renderer). Import what you need from the submodules; this package imports nothing heavy.
"""
