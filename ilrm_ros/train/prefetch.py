"""Draw training batches in a background thread, so the data source's kernel launches overlap the step's.

The synthetic source issues thousands of small GPU operations per batch; drawn inline, the GPU waits
while the host launches them. A thread drawing batches ahead, on a CUDA stream of its own, lets the
training step and the data source queue work at the same time within one process (one CUDA context,
so no time-slicing between processes, as with several ranks on one GPU).

Only the thread touches the source, in order, and the source's randomness is its own (numpy), so the
batches are the same ones, in the same order, as drawn inline.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from dataclasses import fields
from typing import Protocol

import torch

from .data import ViewBatch


class BatchSource(Protocol):
    def sample(self, batch_size: int) -> ViewBatch: ...

    def state_dict(self) -> dict: ...


class BatchPrefetcher:
    """Keeps up to ``depth`` batches of ``source`` drawn ahead; :meth:`next` hands them out in order.

    :meth:`pending_state` is the source state before the first batch not yet handed out, which is
    what a checkpoint must store so that a resumed run trains on no batch twice and skips none.
    """

    def __init__(self, source: BatchSource, batch_size: int, device: torch.device, depth: int = 2) -> None:
        self.source, self.batch_size, self.device = source, int(batch_size), torch.device(device)
        if self.device.type == "cuda" and self.device.index is None:  # the thread must name its GPU
            self.device = torch.device("cuda", torch.cuda.current_device())
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, int(depth)))
        self._states: deque[dict] = deque()  # one per batch drawn or being drawn, oldest first
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        self._thread = threading.Thread(target=self._run, name="batch-prefetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            if self._stream is not None:
                torch.cuda.set_device(self.device)
                torch.cuda.set_stream(self._stream)
            while not self._stop.is_set():
                with self._lock:
                    self._states.append(self.source.state_dict())
                batch = self.source.sample(self.batch_size)
                ready = None
                if self._stream is not None:
                    ready = torch.cuda.Event()
                    ready.record(self._stream)
                self._put((batch, ready, None))
        except BaseException as error:  # handed to the consumer, which raises it
            self._put((None, None, error))

    def _put(self, item) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def next(self) -> ViewBatch:
        """The next batch, ready for use on the caller's current CUDA stream."""
        batch, ready, error = self._queue.get()
        if error is not None:
            self.close()
            raise RuntimeError("the training data source failed in its prefetch thread") from error
        with self._lock:
            self._states.popleft()
        if ready is not None:
            stream = torch.cuda.current_stream(self.device)
            stream.wait_event(ready)
            for f in fields(batch):  # memory allocated on the prefetch stream, now read on this one
                value = getattr(batch, f.name)
                if value is not None and value.is_cuda:
                    value.record_stream(stream)
        return batch

    def pending_state(self) -> dict:
        """The source state before the oldest batch drawn (or being drawn) and not yet handed out."""
        with self._lock:  # the thread appends a state under this lock before it draws, so none is torn
            return self._states[0] if self._states else self.source.state_dict()

    def close(self) -> None:
        """Stop the thread (after the batch it is drawing, if any)."""
        self._stop.set()
        self._thread.join(timeout=60)
