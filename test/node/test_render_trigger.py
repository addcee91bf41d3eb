"""What makes the node render: each synced camera frame (render.trigger camera) or a timer.

The render timer is set so slow (one tick per 100 s) that any render seen within seconds of a
frame must have been triggered by that frame.
"""

from __future__ import annotations

import pytest
from live_node import Frames, LiveNode, feed
from rclpy.parameter import Parameter

from ilrm_ros.io.convert import stamp_ns

SLOW_TIMER_HZ = 0.01


@pytest.fixture(scope="module")
def frames():
    return Frames.get()


def rendered_stamps(h: LiveNode) -> set[int]:
    return {stamp_ns(m.header) for m in h.renders}


def test_camera_trigger_renders_each_frame_then_timer_trigger_does_not(frames):
    h = LiveNode({"render.rate_hz": SLOW_TIMER_HZ, "render.trigger": "camera", "keyframe.min_translation": 0.01})
    try:
        base = 1_000_000_000_000
        step = 66_666_667
        # Two keyframes fill the two-view window: the first scene.
        feed(h, frames, 0, base, refresh=False)
        feed(h, frames, 1, base + step)
        assert h.wait_for(lambda: len(h.points) > 0, 30), "no scene"
        for k in range(3):  # frame 1's pose again: not keyframes (no motion), but each is a new frame to show
            ns = base + (2 + k) * step
            feed(h, frames, 1, ns, refresh=False)
            assert h.node.pipeline.stats.counts["keyframes"] == 2
            assert h.wait_for(lambda ns=ns: ns in rendered_stamps(h), 10), f"frame {ns} was not rendered"

        results = h.set_parameters([Parameter("render.trigger", value="timer")])
        assert all(r.successful for r in results)
        ns = base + 6 * step
        feed(h, frames, 1, ns, refresh=False)
        assert not h.wait_for(lambda: ns in rendered_stamps(h), 2.0), "timer trigger rendered at once"
        assert h.alive
    finally:
        h.close()
