"""Wall-time measurement and its display, shared by the estimates (`distill check`, augmentation) and benchmarks."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch


def synchronize(device: str | torch.device) -> None:
    """Wait for a GPU's queued work, so that a timer measures it (a no-op elsewhere)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: str | torch.device) -> float:
    """Seconds `fn()` takes on `device`, queued GPU work included."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def duration(seconds: float) -> str:
    """3 h 5 min, 3 min 10 s, 12 s, 0.4 s."""
    if not math.isfinite(seconds):
        return "unknown"
    if seconds < 10:
        return f"{seconds:.1f} s"
    s = round(seconds)
    h, m, s = s // 3600, s // 60 % 60, s % 60
    if h:
        return f"{h} h {m} min"
    return f"{m} min {s} s" if m else f"{s} s"
