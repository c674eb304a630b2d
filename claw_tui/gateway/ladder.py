"""The degradation ladder: when the rolling error rate of upstream answers is high, degrade in opt-in steps —
serve an identical recent answer from the cache, then answer with the fallback model, then a static reply."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

STEPS = ("cache", "fallback", "static")


class ErrorRateWindow:
    """Outcomes of the last `window_s` seconds; the rate counts only once `min_samples` outcomes are in."""

    def __init__(
        self, window_s: float = 60.0, min_samples: int = 5, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window_s = window_s
        self.min_samples = min_samples
        self.clock = clock
        self._outcomes: deque[tuple[float, bool]] = deque()
        self._errors = 0

    def add(self, ok: bool) -> None:
        now = self.clock()
        self._outcomes.append((now, ok))
        if not ok:
            self._errors += 1
        self._expire(now)

    def _expire(self, now: float) -> None:
        cutoff = now - self.window_s
        outcomes = self._outcomes
        while outcomes and outcomes[0][0] < cutoff:
            _, ok = outcomes.popleft()
            if not ok:
                self._errors -= 1

    def rate(self) -> float:
        self._expire(self.clock())
        total = len(self._outcomes)
        return self._errors / total if total >= self.min_samples else 0.0

    def counts(self) -> tuple[int, int]:
        self._expire(self.clock())
        return self._errors, len(self._outcomes)


class DegradationLadder:
    """Which steps are switched on, and whether the error rate says to use them now."""

    def __init__(
        self, threshold: float, *, cache: bool, fallback: bool, static_reply: str, window: ErrorRateWindow | None = None
    ) -> None:
        self.threshold = threshold
        self.cache = cache
        self.fallback = fallback
        self.static_reply = static_reply
        self.window = window or ErrorRateWindow()
        self.served = dict.fromkeys(STEPS, 0)

    @property
    def any_step(self) -> bool:
        return self.cache or self.fallback or bool(self.static_reply)

    def active(self) -> bool:
        return self.any_step and self.threshold > 0 and self.window.rate() >= self.threshold

    def to_json(self) -> dict:
        errors, total = self.window.counts()
        return {
            "active": self.active(),
            "error_rate": round(self.window.rate(), 4),
            "errors": errors,
            "outcomes": total,
            "window_s": self.window.window_s,
            "threshold": self.threshold,
            "steps": [step for step, on in zip(STEPS, (self.cache, self.fallback, bool(self.static_reply))) if on],
            "served": dict(self.served),
        }
