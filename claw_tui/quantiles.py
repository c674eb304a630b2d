"""Percentiles that cost the same at ten values as at ten million.

Up to `exact_max` values are kept and answered exactly (the same linear interpolation as numpy's default); beyond
that the values go into logarithmic buckets (a DDSketch with relative accuracy `alpha`): every percentile is then
within `alpha` (1%) of the true value, in constant memory and time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

EXACT_MAX = 2048
ALPHA = 0.01


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Linear-interpolated percentile (the same rule as numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    low, high = math.floor(rank), math.ceil(rank)
    if low == high:
        return ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


class Quantiles:
    def __init__(self, exact_max: int = EXACT_MAX, alpha: float = ALPHA) -> None:
        self.exact_max = exact_max
        self.gamma = (1 + alpha) / (1 - alpha)
        self._log_gamma = math.log(self.gamma)
        self._values: list[float] | None = []
        self._buckets: dict[int, int] = {}
        self._zeros = 0  # values <= 0 (a TTFT of 0 ms from a cache)
        self.count = 0

    def add(self, value: float) -> None:
        self.count += 1
        if self._values is not None:
            self._values.append(value)
            if len(self._values) > self.exact_max:
                values, self._values = self._values, None
                for v in values:
                    self._bucket(v)
            return
        self._bucket(value)

    def extend(self, values: Iterable[float]) -> None:
        for value in values:
            self.add(value)

    def _bucket(self, value: float) -> None:
        if value <= 0:
            self._zeros += 1
            return
        index = math.ceil(math.log(value) / self._log_gamma)
        self._buckets[index] = self._buckets.get(index, 0) + 1

    @property
    def exact(self) -> bool:
        return self._values is not None

    def percentile(self, pct: float) -> float | None:
        if self._values is not None:
            return percentile(self._values, pct)
        if not self.count:
            return None
        rank = pct / 100 * (self.count - 1)
        seen = self._zeros
        if rank < seen:
            return 0.0
        for index in sorted(self._buckets):
            seen += self._buckets[index]
            if rank < seen:
                return 2 * self.gamma**index / (self.gamma + 1)
        return 2 * self.gamma ** max(self._buckets) / (self.gamma + 1)
