"""Latency, throughput and memory benchmarks of the model, the renderer and the point packing.

GPU timings use CUDA events: median of many runs after warm-up. CPU timings use
``time.perf_counter`` the same way. Every row records the command-independent facts (device,
shapes, FLOPs); `ilrm bench` prints them and writes JSON for docs/benchmarks.md.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable, Sequence

import torch

from ilrm_ros.model import CompiledForward, count_flops, load_model
from ilrm_ros.model.attention import resolve_backend
from ilrm_ros.model.config import PRESETS


def time_cuda(fn: Callable[[], object], iters: int = 50, warmup: int = 5) -> float:
    """Median milliseconds of ``fn`` on the current CUDA stream, measured with CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def time_cpu(fn: Callable[[], object], iters: int = 5, warmup: int = 1) -> float:
    """Median milliseconds of ``fn`` on the CPU."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def matmul_peak_tflops(n: int = 8192, iters: int = 20) -> float:
    """Measured bf16 dense matmul throughput: the practical compute ceiling of this GPU."""
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    ms = time_cuda(lambda: a @ b, iters=iters, warmup=3)
    return 2 * n**3 / (ms * 1e-3) / 1e12


def _inputs(views: int, height: int, width: int, device: torch.device):
    g = torch.Generator(device="cpu").manual_seed(0)
    images = torch.rand(1, views, 3, height, width, generator=g).to(device)
    K = torch.tensor([[0.9 * width, 0, width / 2], [0, 0.9 * width, height / 2], [0, 0, 1.0]])
    K = K.expand(1, views, 3, 3).contiguous().to(device)
    c2w = torch.eye(4).repeat(1, views, 1, 1)
    angles = torch.linspace(0, 0.6, views)
    c2w[0, :, 0, 3] = torch.sin(angles)
    c2w[0, :, 2, 3] = 1 - torch.cos(angles)
    return images, K, c2w.to(device)


def model_latency(preset: str, arch: str, views: int, height: int, width: int, mode: str,
                  device: torch.device, iters: int = 30, attention: str = "auto", fused_blocks: bool = False) -> dict:
    """Forward latency of one preset/arch at one shape (bf16 autocast on CUDA, float32 on CPU), with
    ``attention`` the SDPA kernel choice (:mod:`ilrm_ros.model.attention`) and ``fused_blocks`` the
    block maths of :mod:`ilrm_ros.model.fused` (CUDA graph/compile modes only)."""
    config = PRESETS[preset].replace(arch=arch)
    model = load_model(config, device=device)
    images, K, c2w = _inputs(views, height, width, device)
    flops = count_flops(model, views, height, width)
    row = {"preset": preset, "arch": arch, "views": views, "height": height, "width": width, "mode": mode,
           "gflop": flops / 1e9, "device": str(device), "attention": resolve_backend(attention, device),
           "blocks": "reference"}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        setup = time.perf_counter()
        fwd = CompiledForward(model, views, height, width, mode=mode, clone_outputs=False, attention=attention,
                              fused_blocks=fused_blocks)
        row["blocks"] = "fused" if fwd.fused_blocks else "reference"
        fwd(images, K, c2w)
        torch.cuda.synchronize()
        row["setup_s"] = time.perf_counter() - setup
        with torch.inference_mode():
            ms = time_cuda(lambda: fwd(images, K, c2w), iters=iters)
        row["peak_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        del fwd
    else:
        with torch.inference_mode():
            ms = time_cpu(lambda: model(images, K, c2w), iters=max(3, iters // 10))
    row["ms"] = ms
    row["tflops"] = flops / (ms * 1e-3) / 1e12
    return row


KERNEL_GROUPS = (
    ("fused", ("triton",)),
    ("attention", ("attention", "sdpa", "fmha", "flash", "cudnn")),
    ("gemm", ("gemm", "nvjet", "xmma", "cutlass", "aten::mm", "aten::addmm", "aten::bmm", "aten::matmul")),
)
"""Substrings (of lower-case kernel or op names) that put a profiler entry in a group, first match
wins (Inductor names a fused kernel after the ops around it, e.g. ``…_scaled_dot_product_…``); else
"other"."""


def kernel_group(name: str) -> str:
    """The :data:`KERNEL_GROUPS` group of one kernel (CUDA) or op (CPU) name."""
    lower = name.lower()
    return next((group for group, keys in KERNEL_GROUPS if any(k in lower for k in keys)), "other")


def kernel_breakdown(preset: str, views: int, height: int, width: int, mode: str, device: torch.device,
                     iters: int = 5, top: int = 12, fused_blocks: bool = False) -> dict:
    """Where one forward's time goes, from the PyTorch profiler: self time per CUDA kernel (per op on
    the CPU), summed into :data:`KERNEL_GROUPS`, and the ``top`` entries; milliseconds per forward.

    ``mode`` "compile" shows Inductor's fused kernels; graph replays are not split into kernels.
    """
    from torch.profiler import ProfilerActivity, profile

    model = load_model(PRESETS[preset], device=device)
    images, K, c2w = _inputs(views, height, width, device)
    fwd = CompiledForward(model, views, height, width, mode=mode, clone_outputs=False, fused_blocks=fused_blocks)
    cuda = device.type == "cuda"
    with torch.inference_mode():
        for _ in range(3):
            fwd(images, K, c2w)
        if cuda:
            torch.cuda.synchronize(device)
        with profile(activities=[ProfilerActivity.CUDA if cuda else ProfilerActivity.CPU]) as prof:
            for _ in range(iters):
                fwd(images, K, c2w)
            if cuda:
                torch.cuda.synchronize(device)
    per_name: dict[str, float] = {}
    for event in prof.key_averages():
        us = event.self_device_time_total if cuda else event.self_cpu_time_total
        if us > 0 and (not cuda or event.device_type.name == "CUDA"):
            per_name[event.key] = per_name.get(event.key, 0.0) + us / 1e3 / iters
    groups = {group: 0.0 for group, _ in KERNEL_GROUPS} | {"other": 0.0}
    for name, ms in per_name.items():
        groups[kernel_group(name)] += ms
    ranked = sorted(per_name.items(), key=lambda kv: -kv[1])[:top]
    return {"preset": preset, "views": views, "height": height, "width": width, "mode": fwd.mode,
            "blocks": "fused" if fwd.fused_blocks else "reference", "device": str(device),
            "total_ms": sum(per_name.values()), "groups_ms": groups,
            "top": [{"name": name[:160], "ms": ms} for name, ms in ranked]}


def render_latency(num_gaussians: int, width: int, height: int, device: torch.device, iters: int = 100) -> dict:
    """Render latency of a random scene (gsplat on CUDA, the PyTorch renderer on CPU)."""
    from ilrm_ros.render import render
    from ilrm_ros.render.bench import pinhole, random_gaussians

    K = pinhole(width, height)
    c2w = torch.eye(4, dtype=torch.float64)
    g = random_gaussians(num_gaussians, K, c2w, width, height).to(device)
    K, c2w = K.to(device), c2w.to(device)
    fn = lambda: render(g, K, c2w, width, height)  # noqa: E731
    row = {"gaussians": num_gaussians, "width": width, "height": height, "device": str(device)}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        row["ms"] = time_cuda(fn, iters=iters)
        row["peak_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        row["ms"] = time_cpu(fn, iters=3)
    return row


# (views, square image size) of the re10k model rows
DEFAULT_SHAPES = ((2, 256), (4, 256), (8, 256), (16, 256), (32, 256), (4, 512))


def run_benchmarks(quick: bool, device: torch.device, modes: tuple[str, ...] = ("graph",),
                   shapes: tuple[tuple[int, int], ...] = DEFAULT_SHAPES, compare_baseline: bool = True,
                   attentions: tuple[str, ...] = ("auto",), renders: bool = True,
                   block_maths: tuple[str, ...] = ("reference",)) -> dict:
    """All benchmark rows. ``quick``: CPU-sized shapes (small preset, few views), for CI.

    Full runs: the re10k preset at each ``(views, square size)`` of ``shapes``, every mode and
    attention kernel and block maths (``reference``, ``fused``: :mod:`ilrm_ros.model.fused`), iLRM and
    (unless ``compare_baseline`` is off) the GS-LRM baseline. A row that
    fails (e.g. a kernel that cannot run a shape) is recorded with its error, and the run goes on.
    """
    from ilrm_ros.scene import benchmark_pack_points

    result: dict = {"device": str(device), "torch": torch.__version__, "model": [], "render": []}
    if device.type == "cuda":
        result["gpu"] = torch.cuda.get_device_name(device)
        result["matmul_peak_tflops"] = matmul_peak_tflops()
    if quick:
        runs = [("small", 2, 128, 128)]
        archs = ("ilrm",)
        render_shapes = [(32_768, 160, 120)]
    else:
        runs = [("re10k", v, s, s) for v, s in shapes]
        archs = ("ilrm", "gslrm") if compare_baseline else ("ilrm",)
        render_shapes = [(32_768, 160, 120), (131_072, 640, 480), (262_144, 640, 480)] if renders else []
    for (preset, v, h, w), mode, attention, maths in itertools.product(runs, modes, attentions, block_maths):
        rows = {arch: _safe_model_latency(preset, arch, v, h, w, mode, device, attention, maths == "fused")
                for arch in archs}
        if "ms" in rows.get("gslrm", {}) and "ms" in rows["ilrm"]:
            rows["ilrm"]["speedup_vs_gslrm"] = rows["gslrm"]["ms"] / rows["ilrm"]["ms"]
        result["model"].extend(rows.values())
        for row in rows.values():
            print(_model_line(row), flush=True)
    for n, w, h in render_shapes:
        row = render_latency(n, w, h, device)
        result["render"].append(row)
        print(f"render {n} Gaussians {w}x{h}: {row['ms']:.2f} ms", flush=True)
    result["pack_points_500k_ms"] = benchmark_pack_points(500_000) * 1e3
    print(f"pack_points 500k: {result['pack_points_500k_ms']:.1f} ms", flush=True)
    return result


def _safe_model_latency(preset: str, arch: str, views: int, height: int, width: int, mode: str,
                        device: torch.device, attention: str, fused_blocks: bool = False) -> dict:
    try:
        return model_latency(preset, arch, views, height, width, mode, device, attention=attention,
                             fused_blocks=fused_blocks)
    except (RuntimeError, ValueError) as exc:  # one shape/kernel failing must not lose the other rows
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return {"preset": preset, "arch": arch, "views": views, "height": height, "width": width, "mode": mode,
                "attention": attention, "blocks": "fused" if fused_blocks else "reference", "device": str(device),
                "error": f"{type(exc).__name__}: {exc}"[:500]}


def _model_line(row: dict) -> str:
    if "error" in row:
        return f"{row['arch']:5s} {row['views']:2d} views {row['mode']} {row['attention']}: FAILED {row['error']}"
    extra = f"  x{row['speedup_vs_gslrm']:.2f} vs gslrm" if "speedup_vs_gslrm" in row else ""
    return (f"{row['arch']:5s} {row['preset']} {row['views']:2d} views {row['height']}x{row['width']} "
            f"{row['mode']:13s} {row['attention']:7s} {row['blocks']:9s} {row['ms']:8.2f} ms  "
            f"{row['gflop']:8.1f} GFLOP  "
            f"{row['tflops']:6.1f} TFLOP/s{extra}")


def node_latency(device: str = "auto", frames: int = 150, rate_hz: float = 30.0, width: int = 160,
                 height: int = 120, seed: int = 7, workdir: str = "runs/bench_node", checkpoint: str = "",
                 params: Sequence[str] = ()) -> dict:
    """The node end to end on the real ROS graph: a synthetic bag played at ``rate_hz`` into `ilrm_node`.

    Keyframe image publish -> `~/points` arrival (the cloud is stamped with the newest keyframe's
    stamp), and camera image publish -> `~/render/image` arrival for the same stamp, p50/p95 in ms,
    with the render topic running at the camera rate. ``params``: extra node parameters
    (``name:=value``). ``node_diagnostics``: the node's last
    /diagnostics values (its own refresh, refresh-wait, point-packing and render latencies, GPU memory).
    """
    from pathlib import Path

    import numpy as np
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image, PointCloud2

    from ilrm_ros.bag import write_synthetic_bag
    from ilrm_ros.bag.player import BagPlayer
    from ilrm_ros.bag.writer import IMAGE_TOPIC, INFO_TOPIC, POSE_TOPIC
    from ilrm_ros.demo import NodeSession
    from ilrm_ros.io.convert import stamp_ns
    from ilrm_ros.node.messages import latched_qos

    out = Path(workdir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    bag = out / "input_bag"
    write_synthetic_bag(bag, frames=frames, rate_hz=rate_hz, width=width, height=height, seed=seed, overwrite=True)
    published: dict[int, float] = {}
    points: list[tuple[int, float, int]] = []
    renders: list[tuple[int, float]] = []
    diagnostics: dict[str, str] = {}
    with NodeSession(out, device, checkpoint, client_name="ilrm_bench", params=params) as session:
        client = session.client
        latched = latched_qos()
        client.create_subscription(PointCloud2, "/ilrm/points",
                                   lambda m: points.append((stamp_ns(m.header), time.monotonic(), m.width)), latched)
        client.create_subscription(Image, "/ilrm/render/image",
                                   lambda m: renders.append((stamp_ns(m.header), time.monotonic())), 50)
        client.create_subscription(DiagnosticArray, "/diagnostics", lambda m: diagnostics.update(
            {kv.key: kv.value for st in m.status if st.name.endswith(": ilrm") for kv in st.values}), 10)
        player = BagPlayer(client, bag, topics=[IMAGE_TOPIC, INFO_TOPIC, POSE_TOPIC])
        session.wait_for_subscribers(player.publishers.values())
        player.on_publish = lambda topic, stamp: published.setdefault(stamp, time.monotonic()) \
            if topic == IMAGE_TOPIC else None
        player.run()
        time.sleep(2.0)
    first_points = {}
    for stamp, t, _ in points:
        first_points.setdefault(stamp, t)
    points_ms = [(t - published[s]) * 1e3 for s, t in first_points.items() if s in published]
    render_ms = [(t - published[s]) * 1e3 for s, t in renders if s in published]
    pct = lambda v: {"p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95))} if v else {}  # noqa: E731
    # Frames published once a scene existed: the render topic can only follow those.
    first_scene = min(first_points.values(), default=float("inf"))
    later = {s for s, t in published.items() if t > first_scene}
    rendered_later = {s for s, _ in renders if s in later}
    return {"device": device, "checkpoint": checkpoint or "shipped", "params": list(params), "frames": frames,
            "rate_hz": rate_hz, "resolution": [width, height],
            "keyframe_to_points_ms": pct(points_ms), "refreshes_measured": len(points_ms),
            "keyframe_to_points_all_ms": [round(v, 1) for v in points_ms],
            "points_per_cloud_max": max((n for _, _, n in points), default=0),
            "camera_to_render_ms": pct(render_ms), "renders": len(renders),
            "renders_per_camera_frame": len(renders) / frames,
            "rendered_fraction_after_first_scene": len(rendered_later) / len(later) if later else 0.0,
            "node_diagnostics": diagnostics}
