"""Choosing a backend: weighted load balancing over the healthy backends that serve a model.

Backends out of rotation (down, degraded, weight 0) are skipped, and so is a backend whose error rate for the
requested model is over the threshold, while another can serve it. Each backend's effective weight is its
configured weight scaled by what telemetry says about its GPU (type, utilisation, temperature) and divided by its
requests in flight. Among the candidates, smooth weighted round robin (the nginx algorithm) picks: over time each
backend gets its share of requests, without bursts to one of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from claw_tui.gateway.backends import Backend

# Relative decode throughput by GPU type (memory bandwidth bound), H100 = 1.0. The first matching key wins.
GPU_CLASS_FACTORS: tuple[tuple[str, float], ...] = (
    ("B300", 2.4),
    ("B200", 2.2),
    ("GH200", 1.45),
    ("H200", 1.45),
    ("H100", 1.0),
    ("H800", 1.0),
    ("MI300", 1.5),
    ("A100", 0.6),
    ("A800", 0.6),
    ("L40S", 0.26),
    ("L40", 0.26),
    ("A6000", 0.23),
    ("RTX 5090", 0.54),
    ("RTX 4090", 0.3),
    ("RTX 3090", 0.28),
    ("A10", 0.18),
    ("L4", 0.09),
    ("T4", 0.1),
)
HOT_C = 80.0  # above this the GPU is near thermal slowdown: send it less
CRITICAL_C = 90.0


@dataclass(frozen=True, slots=True)
class GpuView:
    """What the router needs to know about a backend's GPU (any field None when unknown)."""

    name: str | None = None
    util_pct: float | None = None
    temp_c: float | None = None


def gpu_class_factor(name: str | None) -> float:
    if not name:
        return 1.0
    upper = name.upper()
    for key, factor in GPU_CLASS_FACTORS:
        if key in upper:
            return factor
    return 1.0


def utilisation_factor(util_pct: float | None) -> float:
    if util_pct is None:
        return 1.0
    return 1.0 - 0.5 * min(max(util_pct, 0.0), 100.0) / 100.0


def temperature_factor(temp_c: float | None) -> float:
    if temp_c is None or temp_c <= HOT_C:
        return 1.0
    if temp_c >= CRITICAL_C:
        return 0.1
    return 1.0 - 0.75 * (temp_c - HOT_C) / (CRITICAL_C - HOT_C)


def score(backend: Backend, gpu: GpuView | None) -> float:
    """The effective weight of a backend right now (0 = only as a last resort)."""
    view = gpu or GpuView()
    base = backend.weight * gpu_class_factor(view.name) * utilisation_factor(view.util_pct)
    return base * temperature_factor(view.temp_c) / (1 + backend.in_flight)


class NoBackend(Exception):
    def __init__(self, message: str, *, unknown_model: bool) -> None:
        super().__init__(message)
        self.unknown_model = unknown_model


class Router:
    def __init__(
        self,
        backends: list[Backend],
        gpu_view: Callable[[int | None], GpuView | None] = lambda i: None,
        pressure: Callable[[int | None], bool] = lambda i: False,
    ) -> None:
        self.backends = backends
        self.gpu_view = gpu_view
        self.pressure = pressure  # is the backend's GPU over the VRAM admission limit?

    def serving(self, model: str) -> tuple[list[Backend], list[Backend]]:
        """Backends known to list the model, and backends whose list is unknown (never reached)."""
        known, unknown = [], []
        for backend in self.backends:
            has = backend.has_model(model)
            if has:
                known.append(backend)
            elif has is None:
                unknown.append(backend)
        return known, unknown

    async def refresh_for(self, model: str) -> None:
        """No backend lists the model: ask them again (it may have been pulled or created a moment ago)."""
        await asyncio.gather(*(b.refresh_if_stale_for(model) for b in self.backends if not b.has_model(model)))

    def pick(self, model: str, exclude: Iterable[Backend] = (), kinds: Iterable[str] | None = None) -> Backend:
        """The backend for the next attempt at `model`, skipping `exclude` while others remain."""
        known, unknown = self.serving(model)
        if kinds is not None:
            allowed = set(kinds)
            known = [b for b in known if b.kind in allowed]
            unknown = [b for b in unknown if b.kind in allowed]
        if not known and not unknown:
            raise NoBackend(f"model '{model}' not found", unknown_model=True)
        excluded = set(exclude)
        # In rotation and not failing for this model; then in rotation though failing for it (another backend's
        # health says nothing about this one's); listed before never listed.
        tiers = (
            [b for b in known if b.in_rotation and not b.failing(model)],
            [b for b in unknown if b.in_rotation and not b.failing(model)],
            [b for b in known + unknown if b.in_rotation],
        )
        for untried_only in (True, False):
            for healthy in tiers:
                candidates = [b for b in healthy if b not in excluded] if untried_only else healthy
                if candidates:
                    relaxed = [b for b in candidates if not self.pressure(b.gpu)] or candidates
                    return self._weighted(relaxed)
        # Nothing healthy: try what is left rather than refuse (a recovered backend comes back this way too).
        pool = [b for b in known + unknown if b not in excluded] or known + unknown
        return min(pool, key=lambda b: (b.consecutive_failures, b.in_flight))

    def _weighted(self, candidates: list[Backend]) -> Backend:
        if len(candidates) == 1:
            return candidates[0]
        weights = [score(b, self.gpu_view(b.gpu)) for b in candidates]
        total = sum(weights)
        if total <= 0:
            return min(candidates, key=lambda b: b.in_flight)
        best = candidates[0]
        for backend, weight in zip(candidates, weights):
            backend.swrr_current += weight
            if backend.swrr_current > best.swrr_current:
                best = backend
        best.swrr_current -= total
        return best
