"""PoseBuffer: exact interpolation, drops by reason, repeated/out-of-order/backwards stamps."""

from __future__ import annotations

import numpy as np
import pytest
from poses import yaw_pose as _pose

from ilrm_ros.pipeline.sync import NS, DropFrame, PoseBuffer


def _drop_reason(buf: PoseBuffer, stamp: int) -> str:
    with pytest.raises(DropFrame) as err:
        buf.lookup(stamp)
    return err.value.reason


def test_midpoint_interpolation_is_exact_including_slerp():
    buf = PoseBuffer(max_gap_s=0.1)
    buf.add(10 * NS, _pose([0, 0, 0], 0))
    buf.add(10 * NS + 100_000_000, _pose([1.0, -2.0, 4.0], 90))
    mid = buf.lookup(10 * NS + 50_000_000)
    np.testing.assert_allclose(mid[:3, 3], [0.5, -1.0, 2.0], atol=1e-12)
    np.testing.assert_allclose(mid, _pose([0.5, -1.0, 2.0], 45), atol=1e-12)  # slerp: half the angle
    quarter = buf.lookup(10 * NS + 25_000_000)
    np.testing.assert_allclose(quarter, _pose([0.25, -0.5, 1.0], 22.5), atol=1e-12)
    np.testing.assert_allclose(buf.lookup(10 * NS), _pose([0, 0, 0]), atol=1e-12)  # exact stamps
    np.testing.assert_allclose(buf.lookup(10 * NS + 100_000_000), _pose([1.0, -2.0, 4.0], 90), atol=1e-12)


def test_slerp_takes_the_short_arc_and_stays_a_rotation():
    buf = PoseBuffer(max_gap_s=0.1)
    buf.add(NS, _pose([0, 0, 0], 170))
    buf.add(NS + 100_000_000, _pose([0, 0, 0], -170))  # 20 degrees apart through 180
    R = buf.lookup(NS + 50_000_000)[:3, :3]
    np.testing.assert_allclose(R, _pose([0, 0, 0], 180)[:3, :3], atol=1e-12)
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)


def test_drop_reasons():
    buf = PoseBuffer(max_age_s=1.0, max_gap_s=0.1)
    assert _drop_reason(buf, 5 * NS) == "no_pose"
    for i in range(30):  # 10 Hz for 3 s; the buffer keeps the last second
        buf.add(5 * NS + i * 100_000_000, _pose([i, 0, 0]))
    assert buf.oldest_ns == 5 * NS + 1_900_000_000 and buf.newest_ns == 5 * NS + 2_900_000_000
    assert _drop_reason(buf, 5 * NS + 1_850_000_000) == "pose_too_old"
    assert _drop_reason(buf, 5 * NS + 2_900_000_001) == "pose_not_yet"
    np.testing.assert_allclose(buf.lookup(5 * NS + 2_850_000_000)[:3, 3], [28.5, 0, 0], atol=1e-9)
    buf.add(5 * NS + 3_200_000_000, _pose([40, 0, 0]))  # a 0.3 s hole in the poses
    assert _drop_reason(buf, 5 * NS + 3_000_000_000) == "pose_gap"


def test_capacity_bounds_the_buffer():
    buf = PoseBuffer(max_age_s=10.0, capacity=8)
    for i in range(20):
        buf.add(NS + i * 10_000_000, _pose([i, 0, 0]))
    assert len(buf) == 8 and buf.oldest_ns == NS + 12 * 10_000_000


def test_repeated_and_out_of_order_stamps_are_ignored_without_corruption():
    warnings: list[str] = []
    buf = PoseBuffer(max_gap_s=0.1, on_warning=warnings.append)
    assert buf.add(NS, _pose([0, 0, 0])) == "added"
    assert buf.add(NS + 100_000_000, _pose([1, 0, 0])) == "added"
    assert buf.add(NS + 100_000_000, _pose([99, 0, 0])) == "repeated"
    assert buf.add(NS + 50_000_000, _pose([99, 0, 0])) == "out_of_order"
    assert len(buf) == 2 and buf.ignored == 2 and buf.resets == 0 and len(warnings) == 2
    np.testing.assert_allclose(buf.lookup(NS + 50_000_000)[:3, 3], [0.5, 0, 0])


def test_time_jumping_back_resets_the_buffer():
    warnings: list[str] = []
    buf = PoseBuffer(max_gap_s=0.1, reset_jump_s=1.0, on_warning=warnings.append)
    for i in range(40):
        buf.add(100 * NS + i * 100_000_000, _pose([i, 0, 0]))
    assert buf.add(100 * NS + 3_400_000_000, _pose([7, 0, 0])) == "out_of_order"  # 0.5 s back: ignored
    assert buf.resets == 0
    # The bag loops: time restarts 3.9 s earlier.
    assert buf.add(100 * NS - 100_000_000, _pose([-1, 0, 0])) == "reset"
    assert buf.resets == 1 and len(buf) == 1 and "reset" in warnings[-1]
    buf.add(100 * NS, _pose([0, 0, 0]))
    np.testing.assert_allclose(buf.lookup(100 * NS - 50_000_000)[:3, 3], [-0.5, 0, 0])
    assert _drop_reason(buf, 103 * NS) == "pose_not_yet"  # nothing of the first pass survived
