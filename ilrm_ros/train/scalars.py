"""Training scalars: a JSONL log that is always written, plus TensorBoard event files when possible.

``scalars.jsonl`` has one JSON object per logged step: ``{"step": ..., "time": ..., "<tag>": value, ...}``
(``time`` = seconds since the run started, across resumes). TensorBoard's ``SummaryWriter`` needs the
``tensorboard`` package; without it only the JSONL log is written (``tensorboard`` is False).
"""

from __future__ import annotations

import json
import math
from pathlib import Path


class ScalarLog:
    """Appends scalars to ``log_dir/scalars.jsonl`` (and TensorBoard events when available)."""

    def __init__(self, log_dir: str | Path, use_tensorboard: bool = True) -> None:
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.log_dir / "scalars.jsonl"
        self._fh = open(self.path, "a", encoding="utf-8")
        self._writer = None
        self.tensorboard_error = ""
        if use_tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(log_dir=str(self.log_dir))
            except Exception as exc:  # ImportError without the tensorboard package
                self.tensorboard_error = f"{type(exc).__name__}: {exc}"

    @property
    def tensorboard(self) -> bool:
        return self._writer is not None

    def log(self, step: int, scalars: dict[str, float], time_s: float | None = None) -> None:
        record: dict[str, float | int] = {"step": int(step)}
        if time_s is not None:
            record["time"] = round(float(time_s), 3)
        for tag, value in scalars.items():
            value = float(value)
            record[tag] = value if math.isfinite(value) else str(value)
            if self._writer is not None:
                self._writer.add_scalar(tag, value, int(step))
        self._fh.write(json.dumps(record) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()
        if self._writer is not None:
            self._writer.close()


def read_scalars(path: str | Path) -> list[dict]:
    """The records of a ``scalars.jsonl`` file (or of ``DIR/scalars.jsonl``)."""
    path = Path(path)
    if path.is_dir():
        path = path / "scalars.jsonl"
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
