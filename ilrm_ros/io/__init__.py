"""Message conversion and input validation shared by the rclpy node and bag replay.

``InputError`` lives here (not in ``convert``) so that ``ilrm_ros.pipeline.camera`` can raise it
without importing the converters, which import the camera model themselves.
"""

from __future__ import annotations


class InputError(ValueError):
    """A message or value that cannot be used; ``reason`` is short and machine-readable.

    Reasons: bad_encoding, size_mismatch, empty_image, size_too_large, decode_failed, bad_intrinsics,
    bad_distortion_model, no_camera_info, nan_pose, bad_quaternion, position_out_of_range, zero_stamp, bad_pose_type,
    bad_transform.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


__all__ = ["InputError"]
