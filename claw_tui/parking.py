"""What resident models cost while nobody uses them, and what unloading them sooner would have saved.

A model held in GPU memory keeps a CUDA context alive: an H200 idles at ~118 W with one and ~77 W without (see the
NVML notes). The ledger hands every idle interval here with the models resident on that GPU at the time. The
*parking cost* of a model is the energy above the GPU's idle baseline (the idle power measured with no model
resident) while it sat resident with no request, shared among the models resident together.

Energy and seconds are kept apart, so the baseline may be learned at any time in the session (the first unload) and
still apply to what came before: parking_j = Σ power·dt − baseline · Σ dt.
"""

from __future__ import annotations

import statistics
from bisect import bisect_right
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

UNLOAD_AFTER_MINUTES = (1, 5, 15, 60)
BASELINE_WINDOW = 512


def canonical_model(name: str) -> str:
    """Ollama's name for a model: `qwen3` and `qwen3:latest` are one model."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


class Residency:
    """Which models were resident on one GPU over time (as the backends' /api/ps said)."""

    def __init__(self) -> None:
        self._times: list[float] = []
        self._sets: list[frozenset[str]] = []
        self._since: dict[str, float] = {}

    def set(self, ts: float, models: Iterable[str]) -> None:
        current = frozenset(canonical_model(m) for m in models)
        if self._sets and self._sets[-1] == current:
            return
        if self._times and ts < self._times[-1]:
            ts = self._times[-1]
        for model in current:
            if not self._sets or model not in self._sets[-1]:
                self._since[model] = ts
        self._times.append(ts)
        self._sets.append(current)

    def at(self, ts: float) -> frozenset[str] | None:
        """The models resident at ts; None while nothing is known yet."""
        i = bisect_right(self._times, ts)
        return self._sets[i - 1] if i else None

    def since(self, model: str) -> float | None:
        return self._since.get(model)

    def prune(self, before: float) -> None:
        """Forget changes older than the one in force at `before`."""
        i = bisect_right(self._times, before) - 1
        if i > 0:
            del self._times[:i]
            del self._sets[:i]


@dataclass
class _Parked:
    watt_seconds: float = 0.0  # Σ power · dt (this model's share)
    seconds: float = 0.0
    beyond: dict[int, list[float]] = field(default_factory=lambda: {m: [0.0, 0.0] for m in UNLOAD_AFTER_MINUTES})
    reloads: dict[int, int] = field(default_factory=lambda: dict.fromkeys(UNLOAD_AFTER_MINUTES, 0))


@dataclass
class _Loads:
    count: int = 0
    joules: float = 0.0


class ParkingTracker:
    """Per (GPU, model): parking time and energy, loads, and the savings of an unload-after-N-minutes policy."""

    def __init__(self) -> None:
        self._parked: dict[tuple[int, str], _Parked] = {}
        self._loads: dict[str, _Loads] = {}
        self._empty_idle_w: dict[int, deque[float]] = {}

    # ---- feeding ----------------------------------------------------------------------------------------------
    def add_idle(self, gpu: int, dt: float, watts: float, resident: frozenset[str], ages: dict[str, float]) -> None:
        """An idle interval (nobody's work) on `gpu` while `resident` models sat there, `ages` seconds unused."""
        if not resident:
            self._empty_idle_w.setdefault(gpu, deque(maxlen=BASELINE_WINDOW)).append(watts)
            return
        parked = [m for m in resident if m in ages]
        if not parked:
            return
        share_s = dt / len(resident)
        for model in parked:
            entry = self._parked.setdefault((gpu, model), _Parked())
            entry.watt_seconds += watts * share_s
            entry.seconds += share_s
            age = ages[model]
            for minutes, sums in entry.beyond.items():
                if age > minutes * 60:
                    sums[0] += watts * share_s
                    sums[1] += share_s

    def add_load(self, model: str, joules: float) -> None:
        loads = self._loads.setdefault(canonical_model(model), _Loads())
        loads.count += 1
        loads.joules += joules

    def note_use(self, gpu: int, model: str, idle_gap_s: float | None) -> None:
        """A request for a resident model after `idle_gap_s` unused: unloading sooner would have meant a reload."""
        if idle_gap_s is None:
            return
        entry = self._parked.setdefault((gpu, canonical_model(model)), _Parked())
        for minutes in entry.reloads:
            if idle_gap_s > minutes * 60:
                entry.reloads[minutes] += 1

    # ---- reading ----------------------------------------------------------------------------------------------
    def baseline_w(self, gpu: int) -> float | None:
        """The GPU's idle power with no model resident, measured this session (None until it was seen)."""
        samples = self._empty_idle_w.get(gpu)
        return statistics.median(samples) if samples else None

    def baselines(self) -> dict[int, float]:
        return {gpu: w for gpu in self._empty_idle_w if (w := self.baseline_w(gpu)) is not None}

    def models_json(self) -> dict[str, dict[str, Any]]:
        """Per model: load count and energy, parking seconds and joules, and unload-after-N-minutes savings."""
        names = {model for _, model in self._parked} | set(self._loads)
        return {name: self._model_json(name) for name in sorted(names)}

    def _model_json(self, model: str) -> dict[str, Any]:
        loads = self._loads.get(model, _Loads())
        mean_load_j = loads.joules / loads.count if loads.count else None
        parking_s = 0.0
        parking_j: float | None = 0.0
        after = {m: _Savings() for m in UNLOAD_AFTER_MINUTES}
        for (gpu, name), entry in self._parked.items():
            if name != model:
                continue
            parking_s += entry.seconds
            baseline = self.baseline_w(gpu)
            if baseline is None:
                parking_j = None
            elif parking_j is not None:
                parking_j += max(0.0, entry.watt_seconds - baseline * entry.seconds)
            for minutes, (watt_seconds, seconds) in entry.beyond.items():
                row = after[minutes]
                row.reloads += entry.reloads[minutes]
                if baseline is None or row.saved_j is None:
                    row.saved_j = None
                else:
                    row.saved_j += max(0.0, watt_seconds - baseline * seconds)
        unload_after = []
        for minutes, row in after.items():
            saved, reloads = row.saved_j, row.reloads
            reload_j = reloads * mean_load_j if mean_load_j is not None else (0.0 if reloads == 0 else None)
            net = saved - reload_j if saved is not None and reload_j is not None else None
            unload_after.append(
                {
                    "minutes": minutes,
                    "saved_j": _r(saved),
                    "reloads": reloads,
                    "reload_j": _r(reload_j),
                    "net_j": _r(net),
                }
            )
        return {
            "load_count": loads.count,
            "load_j": round(loads.joules, 3),
            "parking_s": round(parking_s, 3),
            "parking_j": _r(parking_j),
            "unload_after": unload_after,
        }


@dataclass
class _Savings:
    """What unloading a model after N idle minutes would have saved (None: no idle baseline to tell)."""

    saved_j: float | None = 0.0
    reloads: int = 0


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
