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

        # A view from the browser ("render from here") or a new render setting shows at once too.
        n = len(h.renders)
        h.node._render_pose_from_viewer(frames.pose(5))
        assert h.wait_for(lambda: len(h.renders) > n, 10), "render from here did not render"
        n = len(h.renders)
        assert all(r.successful for r in h.set_parameters([Parameter("render.width", value=64),
                                                           Parameter("render.height", value=48)]))
        assert h.wait_for(lambda: len(h.renders) > n and h.renders[-1].width == 64, 10)
        assert all(r.successful for r in h.set_parameters([Parameter("render.pose_source", value="latest")]))

        results = h.set_parameters([Parameter("render.trigger", value="timer")])
        assert all(r.successful for r in results)
        ns = base + 6 * step
        feed(h, frames, 1, ns, refresh=False)
        assert not h.wait_for(lambda: ns in rendered_stamps(h), 2.0), "timer trigger rendered at once"
        assert h.alive
    finally:
        h.close()


def test_a_slow_render_does_not_hold_up_the_inputs(frames):
    """Renders run on their own thread: while one takes seconds, images keep being synced."""
    import threading

    h = LiveNode({"render.trigger": "camera", "keyframe.min_translation": 0.01})
    try:
        base, step = 2_000_000_000_000, 66_666_667
        feed(h, frames, 0, base, refresh=False)
        feed(h, frames, 1, base + step)
        assert h.wait_for(lambda: len(h.points) > 0, 30), "no scene"
        rendering, release = threading.Event(), threading.Event()
        fast_render = h.node.pipeline.render

        def slow_render(*args, **kwargs):
            rendering.set()
            release.wait(20)
            return fast_render(*args, **kwargs)

        h.node.pipeline.render = slow_render
        feed(h, frames, 1, base + 2 * step, refresh=False)
        assert rendering.wait(10), "no render started"
        synced = h.node.pipeline.stats.counts["synced"]
        for k in range(3):  # handled while the render is still blocked
            feed(h, frames, 1, base + (3 + k) * step, refresh=False)
        assert h.node.pipeline.stats.counts["synced"] == synced + 3 and not release.is_set()
        release.set()
        last = base + 5 * step
        assert h.wait_for(lambda: last in rendered_stamps(h), 10), "the newest frame was not rendered after"
        assert h.alive
    finally:
        h.close()
