"""Keyframe selection (motion thresholds, blur gate) and window selection (latest, spread)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from poses import yaw_pose as _pose

from ilrm_ros.pipeline.keyframes import Frame, KeyframeSelector, Window, blur_score


def _sharp(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (120, 160, 3), dtype=np.uint8)


def test_no_keyframe_without_motion():
    sel = KeyframeSelector(min_translation=0.15, min_rotation_deg=10)
    assert sel.consider(_pose([0, 0, 0])).reason == "first"
    for i in range(50):  # jitter well below both thresholds
        d = sel.consider(_pose([0.01 * math.sin(i), 0.01, 0], 3 * math.cos(i)))
        assert not d.keyframe and d.reason == "no_motion"


def test_translation_threshold_measured_from_the_last_keyframe():
    sel = KeyframeSelector(min_translation=0.15, min_rotation_deg=10)
    sel.consider(_pose([0, 0, 0]))
    assert not sel.consider(_pose([0.10, 0, 0])).keyframe
    assert not sel.consider(_pose([0.149, 0, 0])).keyframe  # still from the first keyframe, not from 0.10
    d = sel.consider(_pose([0.16, 0, 0]))
    assert d.keyframe and d.reason == "translation" and d.translation == pytest.approx(0.16)
    assert not sel.consider(_pose([0.30, 0, 0])).keyframe  # 0.14 from the new reference
    assert sel.consider(_pose([0.32, 0, 0])).keyframe


def test_rotation_threshold():
    sel = KeyframeSelector(min_translation=0.15, min_rotation_deg=10)
    sel.consider(_pose([0, 0, 0], 0))
    assert not sel.consider(_pose([0, 0, 0], 9.0)).keyframe
    d = sel.consider(_pose([0, 0, 0], 11.0))
    assert d.keyframe and d.reason == "rotation" and d.rotation_deg == pytest.approx(11.0)
    assert not sel.consider(_pose([0, 0, 0], 20.0)).keyframe
    sel.reset()
    assert sel.consider(_pose([5, 5, 5])).reason == "first"


def test_blur_gate():
    sharp = _sharp()
    blurry = cv2.GaussianBlur(sharp, (0, 0), 4)
    assert blur_score(sharp) > 20 * blur_score(blurry)
    threshold = math.sqrt(blur_score(sharp) * blur_score(blurry))
    sel = KeyframeSelector(min_translation=0.1, blur_threshold=threshold)
    d = sel.consider(_pose([0, 0, 0]), blurry)
    assert not d.keyframe and d.reason == "blurry" and d.blur == pytest.approx(blur_score(blurry))
    assert sel.consider(_pose([0, 0, 0]), sharp).reason == "first"
    assert sel.consider(_pose([0.5, 0, 0]), blurry).reason == "blurry"
    assert sel.consider(_pose([0.5, 0, 0]), sharp).reason == "translation"  # blurry frames stay candidates
    off = KeyframeSelector(min_translation=0.1, blur_threshold=0.0)
    assert off.consider(_pose([0, 0, 0]), blurry).keyframe and off.consider(_pose([1, 0, 0]), blurry).blur is None


def _frame(i: int, xyz) -> Frame:
    return Frame(i, np.zeros((2, 2, 3), np.uint8), np.eye(3), _pose(xyz))


def test_latest_window():
    win = Window(3, "latest")
    frames = [_frame(i, [i, 0, 0]) for i in range(5)]
    assert win.add(frames[0]) and win.add(frames[1]) and not win.full and win.version == 2
    assert win.add(frames[2]) and win.full
    assert win.add(frames[3]) and [f.stamp_ns for f in win.frames] == [1, 2, 3] and win.version == 4
    win.clear()
    assert len(win) == 0 and win.version == 5


def test_spread_window_covers_the_recent_path():
    # Forward 0..4 m then back along the same line: "latest" would hold the last, clustered views.
    path = [[x, 0, 0] for x in range(5)] + [[3.6, 0, 0], [3.2, 0, 0], [2.8, 0, 0]]
    frames = [_frame(i, p) for i, p in enumerate(path)]
    latest, spread = Window(3, "latest"), Window(3, "spread", history=8)
    for f in frames:
        latest.add(f)
        spread.add(f)
    assert [f.stamp_ns for f in latest.frames] == [5, 6, 7]
    # The newest (x=2.8) always; then the farthest from it (x=0); then the farthest from both:
    # x=4 (1.2 m from 2.8) beats x=1 (1.0 m from 0) and x=3.6 (0.8 m).
    assert [f.stamp_ns for f in spread.frames] == [0, 4, 7]
    assert spread.frames[-1] is frames[-1]


def test_spread_history_limits_recency_and_ties_prefer_newer():
    win = Window(2, "spread", history=3)
    for i, x in enumerate([100.0, 0.0, 1.0, 0.0]):  # the far-away first view falls out of the history
        win.add(_frame(i, [x, 0, 0]))
    assert [f.stamp_ns for f in win.frames] == [2, 3]
    turn = Window(3, "spread", history=6)
    for i in range(6):  # turning in place: all positions equal, so the newest win
        turn.add(_frame(i, [0, 0, 0]))
    assert [f.stamp_ns for f in turn.frames] == [3, 4, 5]


def test_window_validation():
    with pytest.raises(ValueError):
        Window(0)
    with pytest.raises(ValueError):
        Window(2, "random")
