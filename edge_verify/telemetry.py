"""The daemon's telemetry: per-stage latency samples gathered frame by frame, summarised (fps, p50/p95)
every ``interval_s`` for the ``telemetry`` topic and systemd's STATUS line."""

from __future__ import annotations

import math

import numpy as np


def percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if values else None


class Telemetry:
    """Collects the stage timings of each frame (``total`` included) between two reports."""

    def __init__(self, interval_s: float, now: float) -> None:
        self.interval_s = interval_s
        self.frames = 0  # since the start
        self._stages: dict[str, list[float]] = {}
        self._since = now
        self.last: dict[str, object] | None = None  # the latest report

    def frame(self, stages_ms: dict[str, float]) -> None:
        """One frame processed, with the time each stage took (ms)."""
        self.frames += 1
        for k, v in stages_ms.items():
            if math.isfinite(v):
                self._stages.setdefault(k, []).append(v)

    def due(self, now: float) -> bool:
        return now - self._since >= self.interval_s

    def report(self, now: float) -> dict[str, object]:
        """fps and latency percentiles since the last report; starts a new window."""
        elapsed = max(now - self._since, 1e-9)
        totals = self._stages.get("total", [])
        data: dict[str, object] = {
            "fps": round(len(totals) / elapsed, 2), "frames": self.frames,
            "latency_ms_p50": percentile(totals, 50), "latency_ms_p95": percentile(totals, 95),
            "stages_ms_p50": {k: percentile(v, 50) for k, v in self._stages.items()},
        }
        self._stages = {}
        self._since = now
        self.last = data
        return data
