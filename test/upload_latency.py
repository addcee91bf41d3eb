"""Host time of one keyframe image's upload to the GPU (CUDA only; a measurement, not a test).

    python3 test/upload_latency.py

The pipeline uploads each keyframe's uint8 image with :func:`ilrm_ros.transfer.upload` (pinned,
non-blocking) instead of ``.to("cuda")``. A pageable copy blocks the calling thread until the GPU has
run everything queued before it; the point of ``upload`` is that a refresh does not wait for a
render queued by another thread. Per image size, with nothing queued and with about 20 ms of GPU
work queued ahead: the calling thread's time in the call and the time until the copy has landed
(median of 30 after 5 warm-ups). Results: docs/benchmarks.md.
"""

from __future__ import annotations

import json
import statistics
import time

import torch

from ilrm_ros.benchmark import time_cuda
from ilrm_ros.transfer import upload

SIZES = ((120, 160), (480, 640), (720, 1280))
QUEUED_MS = (0.0, 20.0)


def _queue_gpu_work(ms: float, a: torch.Tensor, per_matmul_ms: float) -> None:
    for _ in range(round(ms / per_matmul_ms)):
        torch.mm(a, a)


def main() -> None:
    dev = torch.device("cuda")
    a = torch.randn(4096, 4096, device=dev, dtype=torch.bfloat16)
    per_mm = time_cuda(lambda: torch.mm(a, a), iters=20, warmup=3)
    rows = []
    for h, w in SIZES:
        image = torch.randint(0, 256, (h, w, 3), dtype=torch.uint8)
        for queued in QUEUED_MS:
            for method in ("to", "upload"):
                copy = (lambda x: x.to(dev)) if method == "to" else (lambda x: upload(x, dev))
                host, landed = [], []
                for i in range(35):
                    torch.cuda.synchronize()
                    _queue_gpu_work(queued, a, per_mm)
                    t0 = time.perf_counter()
                    y = copy(image)
                    t1 = time.perf_counter()
                    torch.cuda.synchronize()
                    t2 = time.perf_counter()
                    assert y.shape == image.shape
                    if i >= 5:
                        host.append((t1 - t0) * 1e3)
                        landed.append((t2 - t0) * 1e3)
                row = {
                    "image": f"{w}x{h} uint8",
                    "queued_ms": queued,
                    "method": method,
                    "host_ms": statistics.median(host),
                    "landed_ms": statistics.median(landed),
                }
                rows.append(row)
                print(
                    f"{row['image']:>16}  queued {queued:4.0f} ms  {method:6}  host {row['host_ms']:7.3f} ms"
                    f"  landed {row['landed_ms']:7.3f} ms",
                    flush=True,
                )
    print(json.dumps({"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "matmul_ms": per_mm,
                      "rows": rows}))


if __name__ == "__main__":
    main()
