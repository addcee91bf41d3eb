"""Thread-safe counters, message rates and latency percentiles for diagnostics."""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable

import numpy as np


class Stats:
    """Drop counts by reason, event counts, rates over a sliding window and bounded latency percentiles.

    Rates use ``clock`` (monotonic seconds by default; injectable for tests): events older than
    ``rate_window_s`` are forgotten. Latencies keep the last ``latency_window`` samples per name.
    """

    def __init__(
        self, rate_window_s: float = 5.0, latency_window: int = 200, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate_window_s = rate_window_s
        self.clock = clock
        self._lock = threading.Lock()
        self._drops: Counter[str] = Counter()
        self._counts: Counter[str] = Counter()
        self._events: defaultdict[str, deque[float]] = defaultdict(deque)
        self._latencies: defaultdict[str, deque[float]] = defaultdict(lambda: deque(maxlen=latency_window))

    def drop(self, reason: str) -> None:
        with self._lock:
            self._drops[reason] += 1

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def tick(self, topic: str) -> None:
        """Record one message on ``topic`` now (counts it too)."""
        now = self.clock()
        with self._lock:
            self._counts[topic] += 1
            events = self._events[topic]
            events.append(now)
            self._expire(events, now)

    def latency(self, name: str, seconds: float) -> None:
        with self._lock:
            self._latencies[name].append(float(seconds))

    def _expire(self, events: deque[float], now: float) -> None:
        while events and events[0] < now - self.rate_window_s:
            events.popleft()

    def rate(self, topic: str) -> float:
        """Messages per second on ``topic`` over the sliding window (0 with fewer than two)."""
        now = self.clock()
        with self._lock:
            events = self._events.get(topic)
            if not events:
                return 0.0
            self._expire(events, now)
            if len(events) < 2:
                return 0.0
            span = now - events[0]  # to now, not to the last event, so a stalled topic decays
            return (len(events) - 1) / span if span > 0 else 0.0

    def percentiles(self, name: str, qs: tuple[float, ...] = (50, 95)) -> dict[str, float]:
        """``{"p50": ..., "p95": ...}`` of the recent latencies for ``name`` (NaN when none)."""
        with self._lock:
            values = list(self._latencies.get(name, ()))
        if not values:
            return {f"p{q:g}": float("nan") for q in qs}
        return {f"p{q:g}": float(v) for q, v in zip(qs, np.percentile(values, qs))}

    @property
    def drops(self) -> dict[str, int]:
        with self._lock:
            return dict(self._drops)

    @property
    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def snapshot(self) -> dict:
        """Everything as plain data: drops, counts, rates and latency percentiles."""
        with self._lock:
            topics, names = list(self._events), list(self._latencies)
        return {
            "drops": self.drops,
            "counts": self.counts,
            "rates": {t: self.rate(t) for t in topics},
            "latency": {n: self.percentiles(n) for n in names},
        }

    def reset(self) -> None:
        with self._lock:
            self._drops.clear()
            self._counts.clear()
            self._events.clear()
            self._latencies.clear()
