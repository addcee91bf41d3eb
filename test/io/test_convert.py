"""Message conversion: every encoding, compressed images, CameraInfo, pose types, bad inputs, builders."""

from __future__ import annotations

import array
import math

import cv2
import numpy as np
import pytest
from geometry_msgs.msg import PoseStamped, PoseWithCovarianceStamped
from nav_msgs.msg import Odometry
from rosbags.typesys import Stores, get_typestore
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from ilrm_ros.io import InputError
from ilrm_ros.io.convert import (
    CAMERA_FROM_POSE_PRESETS,
    MAX_IMAGE_SIDE,
    camera_from_info,
    camera_info_to_fields,
    depth_to_fields,
    image_from_compressed,
    image_from_msg,
    image_to_fields,
    parse_camera_from_pose,
    pose_from_msg,
    pose_to_xyz_quat,
    stamp_fields,
    stamp_ns,
)

TS = get_typestore(Stores.ROS2_HUMBLE)
BAG = TS.types


def _rgb(h=5, w=7, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _encode(rgb: np.ndarray, encoding: str, pad: int = 0) -> tuple[np.ndarray, int]:
    """Pixels in ``encoding`` with ``pad`` garbage bytes per row; returns (flat data, step)."""
    h, w = rgb.shape[:2]
    alpha = np.full((h, w, 1), 77, np.uint8)
    pixels = {
        "rgb8": rgb,
        "bgr8": rgb[..., ::-1],
        "rgba8": np.concatenate([rgb, alpha], 2),
        "bgra8": np.concatenate([rgb[..., ::-1], alpha], 2),
        "mono8": rgb[..., :1],
    }[encoding].reshape(h, -1)
    rows = np.concatenate([pixels, np.full((h, pad), 255, np.uint8)], 1)
    return np.ascontiguousarray(rows).reshape(-1), rows.shape[1]


def _header_rclpy(sec=1, nanosec=500):
    from std_msgs.msg import Header

    h = Header()
    h.stamp.sec, h.stamp.nanosec = sec, nanosec
    return h


def _header_bag(sec=1, nanosec=500):
    return BAG["std_msgs/msg/Header"](stamp=BAG["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec), frame_id="c")


def _image_rclpy(data, h, w, step, encoding):
    return Image(header=_header_rclpy(), height=h, width=w, encoding=encoding, step=step,
                 data=array.array("B", np.asarray(data, np.uint8).tobytes()))


def _image_bag(data, h, w, step, encoding):
    return BAG["sensor_msgs/msg/Image"](header=_header_bag(), height=h, width=w, encoding=encoding, is_bigendian=0,
                                        step=step, data=np.asarray(data, np.uint8))


@pytest.mark.parametrize("make", [_image_rclpy, _image_bag], ids=["rclpy", "rosbags"])
@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
@pytest.mark.parametrize("pad", [0, 3])
def test_every_encoding_with_and_without_row_padding(make, encoding, pad):
    rgb = _rgb()
    data, step = _encode(rgb, encoding, pad)
    out = image_from_msg(make(data, 5, 7, step, encoding))
    assert out.dtype == np.uint8 and out.shape == (5, 7, 3) and out.flags.c_contiguous
    expected = np.repeat(rgb[..., :1], 3, 2) if encoding == "mono8" else rgb
    np.testing.assert_array_equal(out, expected)


def test_bgr_channel_order_is_swapped():
    data = np.array([10, 20, 30], np.uint8)  # one pixel, B=10 G=20 R=30
    np.testing.assert_array_equal(image_from_msg(_image_bag(data, 1, 1, 3, "bgr8"))[0, 0], [30, 20, 10])
    np.testing.assert_array_equal(image_from_msg(_image_bag(data, 1, 1, 3, "rgb8"))[0, 0], [10, 20, 30])


def test_result_does_not_alias_the_message_buffer():
    data, step = _encode(_rgb(), "rgb8")
    msg = _image_bag(data.copy(), 5, 7, step, "rgb8")
    out = image_from_msg(msg)
    msg.data[:] = 0
    assert out.any()


@pytest.mark.parametrize(
    ("h", "w", "step", "nbytes", "encoding", "reason"),
    [
        (5, 7, 7, 35, "16UC1", "bad_encoding"),
        (5, 7, 14, 70, "mono16", "bad_encoding"),
        (5, 7, 21, 104, "rgb8", "size_mismatch"),  # one byte short
        (5, 7, 21, 106, "rgb8", "size_mismatch"),  # one byte too many
        (5, 7, 20, 100, "rgb8", "size_mismatch"),  # step below width * 3
        (0, 7, 21, 0, "rgb8", "empty_image"),
        (5, 0, 0, 0, "rgb8", "empty_image"),
        (MAX_IMAGE_SIDE + 1, 2, 6, 6, "rgb8", "size_too_large"),  # rejected before the data is read
    ],
)
def test_bad_images_give_their_reason(h, w, step, nbytes, encoding, reason):
    msg = _image_bag(np.zeros(nbytes, np.uint8), h, w, step, encoding)
    with pytest.raises(InputError) as err:
        image_from_msg(msg)
    assert err.value.reason == reason


@pytest.mark.parametrize("ext", [".png", ".jpg"])
@pytest.mark.parametrize("grey", [False, True])
def test_compressed_round_trip(ext, grey):
    rgb = cv2.GaussianBlur(_rgb(48, 64, seed=1), (0, 0), 3)  # smooth so JPEG is near-lossless
    src = rgb[..., :1].repeat(3, 2) if grey else rgb
    ok, buf = cv2.imencode(ext, src[..., 0] if grey else src[..., ::-1])
    assert ok
    fmt = ("mono8" if grey else "bgr8") + ("; png compressed" if ext == ".png" else "; jpeg compressed bgr8")
    msg = CompressedImage(format=fmt, data=array.array("B", buf.tobytes()))
    out = image_from_compressed(msg)
    assert out.shape == (48, 64, 3) and out.dtype == np.uint8
    if ext == ".png":
        np.testing.assert_array_equal(out, src)
    else:
        assert np.abs(out.astype(int) - src).mean() < 3.0
    bag = BAG["sensor_msgs/msg/CompressedImage"](header=_header_bag(), format=fmt, data=buf.reshape(-1))
    np.testing.assert_array_equal(image_from_compressed(bag), out)


@pytest.mark.parametrize(("fmt", "data", "reason"), [
    ("jpeg", b"", "decode_failed"),
    ("jpeg", b"\xff\xd8 definitely not a jpeg", "decode_failed"),
    ("16UC1; compressedDepth png", b"\x89PNG", "bad_encoding"),
])
def test_bad_compressed(fmt, data, reason):
    with pytest.raises(InputError) as err:
        image_from_compressed(CompressedImage(format=fmt, data=array.array("B", data)))
    assert err.value.reason == reason


def test_image_builders_round_trip_through_real_messages():
    rgb = _rgb(6, 9)
    back = image_from_msg(Image(header=_header_rclpy(), **image_to_fields(rgb, for_rclpy=True)))
    np.testing.assert_array_equal(back, rgb)
    bag_msg = BAG["sensor_msgs/msg/Image"](header=_header_bag(), **image_to_fields(rgb))
    raw = TS.serialize_cdr(bag_msg, bag_msg.__msgtype__)
    np.testing.assert_array_equal(image_from_msg(TS.deserialize_cdr(raw, bag_msg.__msgtype__)), rgb)

    depth = np.linspace(0.5, 9.0, 6 * 9, dtype=np.float32).reshape(6, 9)
    fields = depth_to_fields(depth, for_rclpy=True)
    msg = Image(header=_header_rclpy(), **fields)
    assert msg.encoding == "32FC1" and msg.step == 36
    np.testing.assert_array_equal(np.frombuffer(bytes(msg.data), np.float32).reshape(6, 9), depth)


def test_stamps():
    assert stamp_ns(_header_rclpy(3, 25)) == 3_000_000_025
    assert stamp_ns(_header_bag(3, 25)) == 3_000_000_025
    assert stamp_fields(3_000_000_025) == {"sec": 3, "nanosec": 25}


def _info(K, d, model, w=640, h=480):
    return CameraInfo(width=w, height=h, k=np.asarray(K, float).reshape(-1), d=list(d), distortion_model=model)


def test_camera_from_info_rclpy_and_rosbags():
    K = [[500.0, 0, 320], [0, 510.0, 240], [0, 0, 1]]
    cam = camera_from_info(_info(K, [0.1, -0.05, 0.001, 0.002, 0.0], "plumb_bob"))
    assert (cam.width, cam.height, cam.distortion_model) == (640, 480, "plumb_bob") and cam.is_distorted
    np.testing.assert_allclose(cam.K, K)
    fields = camera_info_to_fields(np.array(K), 640, 480)
    roi = BAG["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    bag = BAG["sensor_msgs/msg/CameraInfo"](header=_header_bag(), binning_x=0, binning_y=0, roi=roi, **fields)
    bag_cam = camera_from_info(bag)
    assert not bag_cam.is_distorted and bag_cam == camera_from_info(CameraInfo(**fields))


@pytest.mark.parametrize(("K", "d", "model", "reason"), [
    (np.zeros(9), [], "", "no_camera_info"),
    ([0, 0, 320, 0, 500, 240, 0, 0, 1], [], "plumb_bob", "bad_intrinsics"),
    ([-500, 0, 320, 0, 500, 240, 0, 0, 1], [], "plumb_bob", "bad_intrinsics"),
    ([math.nan, 0, 320, 0, 500, 240, 0, 0, 1], [], "plumb_bob", "bad_intrinsics"),
    ([500, 0, 320, 0, 500, 240, 0, 0, 1], [0.1, 0.2, 0, 0, 0], "kannala_brandt_9", "bad_distortion_model"),
    ([500, 0, 320, 0, 500, 240, 0, 0, 1], [0.1, 0.2, 0], "plumb_bob", "bad_distortion_model"),
    ([500, 0, 320, 0, 500, 240, 0, 0, 1], [0.1, math.inf, 0, 0, 0], "plumb_bob", "bad_intrinsics"),
])
def test_bad_camera_info(K, d, model, reason):
    with pytest.raises(InputError) as err:
        camera_from_info(_info(K, d, model))
    assert err.value.reason == reason


def _fill_pose(pose, xyz, xyzw):
    pose.position.x, pose.position.y, pose.position.z = xyz
    pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = xyzw


def _rclpy_pose(pose_type, xyz, xyzw, sec=10, nanosec=5):
    msg = {"PoseStamped": PoseStamped, "PoseWithCovarianceStamped": PoseWithCovarianceStamped,
           "Odometry": Odometry}[pose_type]()
    msg.header = _header_rclpy(sec, nanosec)
    _fill_pose(msg.pose if pose_type == "PoseStamped" else msg.pose.pose, xyz, xyzw)
    return msg


def _bag_pose(xyz, xyzw, sec=10, nanosec=5):
    P = BAG
    pose = P["geometry_msgs/msg/Pose"](position=P["geometry_msgs/msg/Point"](*xyz),
                                       orientation=P["geometry_msgs/msg/Quaternion"](*xyzw))
    cov = P["geometry_msgs/msg/PoseWithCovariance"](pose=pose, covariance=np.zeros(36))
    twist = P["geometry_msgs/msg/TwistWithCovariance"](
        twist=P["geometry_msgs/msg/Twist"](linear=P["geometry_msgs/msg/Vector3"](0, 0, 0),
                                           angular=P["geometry_msgs/msg/Vector3"](0, 0, 0)),
        covariance=np.zeros(36))
    return P["nav_msgs/msg/Odometry"](header=_header_bag(sec, nanosec), child_frame_id="base", pose=cov, twist=twist)


# 90 degrees about z: (x, y, z, w) = (0, 0, sin 45, cos 45).
QZ90 = (0.0, 0.0, math.sqrt(0.5), math.sqrt(0.5))
RZ90 = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])


@pytest.mark.parametrize("pose_type", ["PoseStamped", "PoseWithCovarianceStamped", "Odometry"])
def test_pose_types_rclpy(pose_type):
    stamp, T = pose_from_msg(_rclpy_pose(pose_type, (1.0, 2.0, 3.0), QZ90), pose_type)
    assert stamp == 10_000_000_005 and T.dtype == np.float64
    np.testing.assert_allclose(T[:3, :3], RZ90, atol=1e-12)
    np.testing.assert_allclose(T[:3, 3], [1, 2, 3])
    np.testing.assert_array_equal(T[3], [0, 0, 0, 1])
    _, auto = pose_from_msg(_rclpy_pose(pose_type, (1.0, 2.0, 3.0), QZ90), None)
    np.testing.assert_array_equal(auto, T)


def test_pose_odometry_rosbags_and_serialised():
    msg = _bag_pose((1.0, 2.0, 3.0), QZ90)
    raw = TS.serialize_cdr(msg, msg.__msgtype__)
    for m in (msg, TS.deserialize_cdr(raw, msg.__msgtype__)):
        stamp, T = pose_from_msg(m, "Odometry")
        assert stamp == 10_000_000_005
        np.testing.assert_allclose(T[:3, :3], RZ90, atol=1e-12)
        np.testing.assert_allclose(T[:3, 3], [1, 2, 3])


def test_slightly_non_unit_quaternion_is_normalised():
    _, T = pose_from_msg(_rclpy_pose("PoseStamped", (0, 0, 0), tuple(1.05 * v for v in QZ90)))
    np.testing.assert_allclose(T[:3, :3], RZ90, atol=1e-12)


@pytest.mark.parametrize(("xyz", "xyzw", "sec", "nanosec", "reason"), [
    ((math.nan, 0, 0), (0, 0, 0, 1), 1, 0, "nan_pose"),
    ((0, math.inf, 0), (0, 0, 0, 1), 1, 0, "nan_pose"),
    ((0, 0, 0), (0, 0, math.nan, 1), 1, 0, "nan_pose"),
    ((0, 0, 0), (0, 0, 0, 0), 1, 0, "bad_quaternion"),
    ((0, 0, 0), (0, 0, 0, 2.0), 1, 0, "bad_quaternion"),
    ((0, 0, 0), (0, 0, 0, 0.5), 1, 0, "bad_quaternion"),
    ((0, 0, 0), (0, 0, 0, 1), 0, 0, "zero_stamp"),
])
def test_bad_poses(xyz, xyzw, sec, nanosec, reason):
    with pytest.raises(InputError) as err:
        pose_from_msg(_rclpy_pose("Odometry", xyz, xyzw, sec, nanosec), "Odometry")
    assert err.value.reason == reason


def test_unknown_pose_type():
    with pytest.raises(InputError) as err:
        pose_from_msg(_rclpy_pose("PoseStamped", (0, 0, 0), (0, 0, 0, 1)), "TransformStamped")
    assert err.value.reason == "bad_pose_type"


def test_camera_link_preset_maps_body_axes_to_optical_axes():
    C = CAMERA_FROM_POSE_PRESETS["camera_link"]
    R = C[:3, :3]
    # Optical z (forward) is body x; optical x (right) is body -y; optical y (down) is body -z.
    np.testing.assert_array_equal(R @ [0, 0, 1], [1, 0, 0])
    np.testing.assert_array_equal(R @ [1, 0, 0], [0, -1, 0])
    np.testing.assert_array_equal(R @ [0, 1, 0], [0, 0, -1])
    assert np.linalg.det(R) == pytest.approx(1.0)
    np.testing.assert_allclose(parse_camera_from_pose([0, 0, 0, -0.5, 0.5, -0.5, 0.5]), C, atol=1e-12)
    np.testing.assert_array_equal(parse_camera_from_pose("camera_link"), C)
    np.testing.assert_array_equal(parse_camera_from_pose(""), np.eye(4))
    # A robot at the origin facing world +y (yaw 90) with a forward camera looks along world +y.
    _, T = pose_from_msg(_rclpy_pose("PoseStamped", (0, 0, 0), QZ90), camera_from_pose=C)
    np.testing.assert_allclose(T[:3, 2], [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(T[:3, 1], [0, 0, -1], atol=1e-12)


def test_parse_camera_from_pose_values_and_errors():
    T = parse_camera_from_pose("0.1, 0.2, 0.3, 0, 0, 0.7071068, 0.7071068")
    np.testing.assert_allclose(T[:3, 3], [0.1, 0.2, 0.3])
    np.testing.assert_allclose(T[:3, :3], RZ90, atol=1e-6)
    for bad in ("sideways", [0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 0]):
        with pytest.raises(InputError) as err:
            parse_camera_from_pose(bad)
        assert err.value.reason == "bad_transform"


def test_pose_to_xyz_quat_inverts_pose_from_msg():
    rng = np.random.default_rng(3)
    for _ in range(20):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        xyz = rng.normal(size=3)
        _, T = pose_from_msg(_rclpy_pose("PoseStamped", tuple(xyz), tuple(q)))
        p, quat = pose_to_xyz_quat(T)
        np.testing.assert_allclose(p, xyz, atol=1e-12)
        assert abs(abs(float(np.dot(quat, q))) - 1.0) < 1e-9  # same rotation up to sign
