"""Error rates and the degradation ladder.

What counts: the outcome of each answer a backend gave or failed to give. A failure is the backend's — a 5xx, a
connection refused or dropped, no first token in time, an answer broken off or ended with an error. The client's
own mistakes (400s, unknown models), the gateway's refusals (auth, rate limit, full queue, body limit) and clients
that hang up count neither way.

Rates are kept per backend, per (backend, model) and per model, each over a sliding time window, and only speak
once the window holds `min_samples` outcomes. A backend's rate for one model steers routing away from that pair;
a model's rate drives the ladder for that model alone: an identical recent answer from the cache, then its fallback
model, then the static reply. One broken model, or one client sending requests its backend fails on, never
degrades the answers of another model.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

STEPS = ("cache", "fallback", "static")
MAX_TRACKED = 1024  # models (or backend/model pairs) whose windows are kept; the least recently used go first


class ErrorRateWindow:
    """Outcomes of the last `window_s` seconds; the rate counts only once `min_samples` outcomes are in.

    Outcomes are counted in `BUCKETS` slices of the window, not kept one by one: at hundreds of requests a second
    a window of single outcomes would hold tens of thousands of entries per key. An outcome leaves the window when
    its whole slice is older than `window_s` (at most one slice, 1/60 of the window, late)."""

    BUCKETS = 60

    def __init__(
        self, window_s: float = 60.0, min_samples: int = 10, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window_s = window_s
        self.min_samples = min_samples
        self.clock = clock
        self._width = window_s / self.BUCKETS if window_s > 0 else 1.0
        self._buckets: deque[list[int]] = deque()  # [slice number, outcomes, errors], oldest first

    def add(self, ok: bool) -> None:
        now = self.clock()
        number = int(now // self._width)
        buckets = self._buckets
        if not buckets or buckets[-1][0] != number:
            buckets.append([number, 0, 0])
        bucket = buckets[-1]
        bucket[1] += 1
        if not ok:
            bucket[2] += 1
        self._expire(now)

    def _expire(self, now: float) -> None:
        first_kept = (now - self.window_s) / self._width  # slices that end at or before the cutoff go
        buckets = self._buckets
        while buckets and buckets[0][0] + 1 <= first_kept:
            buckets.popleft()

    def rate(self) -> float:
        errors, total = self.counts()
        return errors / total if total >= self.min_samples else 0.0

    def counts(self) -> tuple[int, int]:
        """(errors, outcomes) in the window now. Reads a copy and changes nothing: other threads read it too
        (the console feed's status), while only `add`, on the gateway's loop, drops old slices."""
        first_kept = (self.clock() - self.window_s) / self._width
        errors = total = 0
        for number, outcomes, failed in list(self._buckets):
            if number + 1 > first_kept:
                total += outcomes
                errors += failed
        return errors, total

    def to_json(self) -> dict[str, Any]:
        errors, total = self.counts()
        return {"error_rate": round(self.rate(), 4), "errors": errors, "outcomes": total}


class ErrorRates:
    """One window per key (a model, or a backend/model pair), with the threshold that says a key is failing."""

    def __init__(
        self,
        threshold: float = 0.5,
        window_s: float = 60.0,
        min_samples: int = 10,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.window_s = window_s
        self.min_samples = min_samples
        self.clock = clock
        self._windows: OrderedDict[str, ErrorRateWindow] = OrderedDict()

    def window(self, key: str) -> ErrorRateWindow:
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = ErrorRateWindow(self.window_s, self.min_samples, clock=self.clock)
            if len(self._windows) > MAX_TRACKED:
                self._windows.popitem(last=False)
        else:
            self._windows.move_to_end(key)
        return window

    def add(self, key: str, ok: bool) -> None:
        self.window(key).add(ok)

    def failing(self, key: str) -> bool:
        window = self._windows.get(key)
        return window is not None and self.threshold > 0 and window.rate() >= self.threshold

    def rate(self, key: str) -> float:
        window = self._windows.get(key)
        return window.rate() if window is not None else 0.0

    # Read from other threads too (the console feed's status): iterate over a copy, which list() takes in one go.
    def failing_keys(self) -> list[str]:
        return [key for key in list(self._windows) if self.failing(key)]

    def to_json(self) -> dict[str, Any]:
        return {key: window.to_json() for key, window in list(self._windows.items()) if window.counts()[1]}


class DegradationLadder:
    """Which steps are switched on, and whether a model's error rate says to use them for that model now."""

    def __init__(
        self,
        threshold: float,
        *,
        cache: bool,
        fallback: bool,
        static_reply: str,
        window_s: float = 60.0,
        min_samples: int = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cache = cache
        self.fallback = fallback
        self.static_reply = static_reply
        self.models = ErrorRates(threshold, window_s, min_samples, clock=clock)
        self.served = dict.fromkeys(STEPS, 0)

    @property
    def threshold(self) -> float:
        return self.models.threshold

    @property
    def any_step(self) -> bool:
        return self.cache or self.fallback or bool(self.static_reply)

    def add(self, model: str, ok: bool) -> None:
        self.models.add(model, ok)

    def active(self, model: str) -> bool:
        return self.any_step and self.models.failing(model)

    def rate(self, model: str) -> float:
        return self.models.rate(model)

    def to_json(self) -> dict[str, Any]:
        degraded = self.models.failing_keys() if self.any_step else []
        return {
            "active": bool(degraded),
            "degraded_models": degraded,
            "threshold": self.threshold,
            "window_s": self.models.window_s,
            "min_samples": self.models.min_samples,
            "models": self.models.to_json(),
            "steps": [step for step, on in zip(STEPS, (self.cache, self.fallback, bool(self.static_reply))) if on],
            "served": dict(self.served),
        }
