"""Bag replay: the node's pipeline driven from a rosbag2 without a ROS graph.

Same conversion, sync, keyframing, model and scene code as the node (``Pipeline``), but
synchronous, so a replay is deterministic and runs as fast as the hardware allows. Every synced
frame that is not a keyframe is a novel view of the scene built from earlier keyframes: it is
rendered at the camera's size and scored against the frame (PSNR/SSIM of the whole frame, as the
node scores it on ``~/render/psnr``), which makes a replay a regression test of reconstruction quality.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml

from ilrm_ros.bag import bag_summary, iter_bag
from ilrm_ros.bag.outputs import OutputBag
from ilrm_ros.checkpoints import resolve_checkpoint
from ilrm_ros.io import InputError
from ilrm_ros.io.convert import (
    camera_from_info,
    image_from_compressed,
    image_from_msg,
    parse_camera_from_pose,
    pose_from_msg,
    stamp_ns,
)
from ilrm_ros.model import load_model
from ilrm_ros.pipeline.config import PARAMS, PipelineConfig
from ilrm_ros.pipeline.pipeline import Pipeline, resolve_device
from ilrm_ros.scene import POINT_FIELDS, save_ply


@dataclass
class Topics:
    """Input topics in the bag (defaults: what `ilrm synth-bag` writes)."""

    image: str = "/camera/image_raw"
    camera_info: str = "/camera/camera_info"
    pose: str = "/camera/pose"


def flatten(tree: dict, prefix: str = "") -> dict:
    """Nested YAML mappings to dotted names: {"sync": {"max_pose_gap": 0.1}} -> {"sync.max_pose_gap": 0.1}."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def read_params_file(path: str | Path, node_name: str = "ilrm") -> dict:
    """Dotted parameters for ``node_name`` from a ROS 2 parameter file (``/**`` and the node's section merged)."""
    tree = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(tree, dict):
        raise ValueError(f"{path}: not a ROS 2 parameter file")
    params: dict = {}
    for key in ("/**", node_name, f"/{node_name}"):
        section = tree.get(key)
        if isinstance(section, dict):
            params.update(flatten(section.get("ros__parameters") or {}))
    if not params:
        raise ValueError(f"{path}: no ros__parameters under '/**' or '{node_name}'")
    return params


def pipeline_config(params: dict) -> PipelineConfig:
    """The pipeline's settings out of a node parameter set (node-only parameters are ignored)."""
    names = {p.name for p in PARAMS}
    return PipelineConfig.from_dict({k: v for k, v in params.items() if k in names})


@dataclass
class ReplayResult:
    """Per-frame novel-view scores, render previews and the final pipeline state of a replay."""

    psnr: list[float] = field(default_factory=list)
    ssim: list[float] = field(default_factory=list)
    previews: list[np.ndarray] = field(default_factory=list)  # render | real, uint8
    messages: int = 0
    seconds: float = 0.0


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    return (image.clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()


def replay(
    bag: str | Path,
    pipeline: Pipeline,
    topics: Topics = Topics(),
    compressed: bool | None = None,
    max_previews: int = 24,
    progress: bool = True,
    outputs=None,
) -> ReplayResult:
    """Feed a bag through ``pipeline`` (synchronous) and score every non-keyframe synced frame."""
    from tqdm import tqdm

    summary = bag_summary(bag)
    missing = [t for t in (topics.image, topics.camera_info, topics.pose) if t not in summary]
    if missing:
        raise ValueError(f"topics not in the bag: {', '.join(missing)} (bag has: {', '.join(summary)})")
    total = sum(summary[t][1] for t in (topics.image, topics.camera_info, topics.pose))
    if compressed is None:
        compressed = summary[topics.image][0].endswith("CompressedImage")
    camera_from_pose = parse_camera_from_pose(pipeline.config.camera_from_pose_frame)
    result = ResultCollector(pipeline, max_previews, outputs)
    start = time.perf_counter()
    bar = tqdm(total=total, desc="replay", unit="msg", disable=not progress)
    for item in iter_bag(bag, topics=[topics.image, topics.camera_info, topics.pose]):
        bar.update(1)
        result.out.messages += 1
        try:
            if item.topic == topics.camera_info:
                pipeline.on_camera_info(camera_from_info(item.msg))
            elif item.topic == topics.pose:
                stamp, c2w = pose_from_msg(item.msg, pipeline.config.pose_type, camera_from_pose)
                result.observe(pipeline.on_pose(stamp, c2w))
            else:
                stamp = stamp_ns(item.msg.header)
                if stamp <= 0:
                    raise InputError("zero_stamp", "image stamp is zero")
                rgb = image_from_compressed(item.msg) if compressed else image_from_msg(item.msg)
                result.observe(pipeline.on_image(stamp, rgb))
        except InputError as err:
            pipeline.stats.drop(err.reason)
    bar.close()
    result.out.seconds = time.perf_counter() - start
    return result.out


class ResultCollector:
    """Scores the latest synced frame whenever it is a non-keyframe and a scene exists."""

    def __init__(self, pipeline: Pipeline, max_previews: int, outputs=None) -> None:
        self.pipeline = pipeline
        self.max_previews = max_previews
        self.outputs = outputs
        self.out = ReplayResult()
        self._scored = 0

    def observe(self, outcomes) -> None:
        if not outcomes or outcomes[-1].status != "synced":
            return
        scores = self.pipeline.evaluate_latest(full_frame=True)
        if scores is None:
            return
        self.out.psnr.append(float(scores["psnr"]))
        self.out.ssim.append(float(scores["ssim"]))
        self._scored += 1
        want_preview = len(self.out.previews) < self.max_previews and self._scored % 4 == 1
        if want_preview or self.outputs is not None:
            frame = self.pipeline.latest_frame
            rendered = _to_uint8(scores["rgb"])
            if want_preview:
                self.out.previews.append(np.concatenate([rendered, frame.image], axis=1))
            if self.outputs is not None:
                self.outputs.render(frame.stamp_ns, rendered)


def run_replay(
    bag: str | Path,
    out_dir: str | Path,
    params: dict | None = None,
    topics: Topics = Topics(),
    device: str | None = None,
    progress: bool = True,
    outputs_bag: bool = False,
) -> dict:
    """Replay ``bag`` and write ``scene.ply``, ``renders/``, ``report.json`` (and ``outputs.mcap``) under
    ``out_dir``; returns the report."""
    from PIL import Image

    params = dict(params or {})
    if device:
        params["device"] = device
    config = pipeline_config(params)
    source = resolve_checkpoint(config.checkpoint)
    model = load_model(source, device=resolve_device(config.device))
    out = Path(out_dir)
    (out / "renders").mkdir(parents=True, exist_ok=True)
    outputs = None
    if outputs_bag:
        if (out / "outputs.mcap").exists():
            shutil.rmtree(out / "outputs.mcap")
        outputs = OutputBag(out / "outputs.mcap")
    pipeline = Pipeline(config, model, synchronous=True)
    if outputs is not None:
        def publish(gaussians, version):
            stamp = pipeline.latest_frame.stamp_ns
            outputs.points(stamp, pipeline.points(), POINT_FIELDS)
            outputs.keyframes(stamp, [f.cam_to_world for f in pipeline.window.frames])

        pipeline.on_refresh = publish
    try:
        result = replay(bag, pipeline, topics, progress=progress, outputs=outputs)
    finally:
        pipeline.close()
        if outputs is not None:
            outputs.close()
    gaussians, version = pipeline.scene_snapshot()
    if len(gaussians):
        save_ply(out / "scene.ply", gaussians.to("cpu"))
    for i, preview in enumerate(result.previews):
        Image.fromarray(preview).save(out / "renders" / f"novel_{i:03d}.png")
    snap = pipeline.stats.snapshot()
    refresh = snap.get("latency", {}).get("refresh", {})
    refine = snap.get("latency", {}).get("refine", {})
    report = {
        "bag": str(bag),
        "checkpoint": source,
        "device": str(pipeline.device),
        "model_resolution": list(pipeline.resolution),
        "scored_resolution": [pipeline.camera.height, pipeline.camera.width] if pipeline.camera else None,
        "num_views": pipeline.num_views,
        "novel_views": len(result.psnr),
        "psnr_mean": float(np.mean(result.psnr)) if result.psnr else None,
        "ssim_mean": float(np.mean(result.ssim)) if result.ssim else None,
        "refresh_latency_ms": {k: v * 1e3 for k, v in refresh.items()},
        "refreshes": snap.get("counts", {}).get("refreshes", 0),
        "refine_latency_ms": {k: v * 1e3 for k, v in refine.items()},
        "refined": snap.get("counts", {}).get("refined", 0),
        "keyframes": snap.get("counts", {}).get("keyframes", 0),
        "synced": snap.get("counts", {}).get("synced", 0),
        "dropped": snap.get("drops", {}),
        "scene_gaussians": len(gaussians),
        "scene_version": version,
        "messages": result.messages,
        "wall_seconds": result.seconds,
    }
    (out / "report.json").write_text(json.dumps(report, indent=2))
    return report


def format_report(report: dict) -> str:
    """A short human summary of a replay report."""
    lat = report["refresh_latency_ms"]
    psnr = "n/a" if report["psnr_mean"] is None else f"{report['psnr_mean']:.2f} dB"
    ssim = "n/a" if report["ssim_mean"] is None else f"{report['ssim_mean']:.3f}"
    dropped = ", ".join(f"{k}: {v}" for k, v in sorted(report["dropped"].items())) or "none"
    refine = report.get("refine_latency_ms") or {}
    refined = (f"  refined: {report['refined']}, refinement p50 {refine['p50']:.1f} ms  p95 {refine['p95']:.1f} ms"
               if refine else "")
    return (
        f"novel views: {report['novel_views']}  PSNR {psnr}  SSIM {ssim}\n"
        f"keyframes: {report['keyframes']}  refreshes: {report['refreshes']}  "
        f"refresh latency p50 {lat.get('p50', float('nan')):.1f} ms  p95 {lat.get('p95', float('nan')):.1f} ms"
        f"{refined}\n"
        f"dropped: {dropped}\n"
        f"scene: {report['scene_gaussians']} Gaussians  "
        f"({report['messages']} messages in {report['wall_seconds']:.1f} s)"
    )
