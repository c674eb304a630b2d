"""A simulated NVIDIA H200: power, clocks, energy and memory that follow the work the simulated server does.

The power model, measured on a real H200 (see the NVML reference notes):
- ~77 W idle with no CUDA context (SM at 345 MHz, reason gpu_idle);
- +~41 W of "parking" while at least one model is resident (a CUDA context keeps the SM at 1980 MHz);
- dynamic power from the work in flight, saturating in the number of concurrent requests, up to the 700 W limit
  (prefill is compute-bound and draws more than decode, which is memory-bound);
- locked low SM clocks lower dynamic and parking power (roughly with f^2) and slow decode less than linearly.

Power follows its target with a first-order lag plus a small deterministic ripple. The lag is the one measured in an
H200's 20 ms power samples (power crosses the midpoint of a step 7–39 ms after work starts or stops); the slower
0.25 s / 1.7 s figures of the reference describe NVML's 1 s averaged power reading, not the samples.
Every state change starts a new segment whose power curve is known in closed form, so the 20 ms samples and
the energy counter come from one and the same function: the counter is its exact integral.
"""

from __future__ import annotations

import math
import random
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from claw_tui.telemetry.types import (
    GpuProcess,
    GpuSnapshot,
    GpuStatic,
    PowerSample,
    TelemetryError,
    decode_clock_event_reasons,
)

SAMPLE_PERIOD_S = 0.02
SAMPLE_BUFFER_LEN = 119  # NVML keeps ~119 power samples (~2.4 s)
SEGMENT_WINDOW_S = SAMPLE_PERIOD_S * (SAMPLE_BUFFER_LEN + 6)
MAX_SEGMENTS = 20_000  # a safety bound for absurd event rates; the window normally holds far fewer

MAX_SM_CLOCK_MHZ = 1980
MIN_SM_CLOCK_MHZ = 345
SM_CLOCK_STEP_MHZ = 15  # 1980..345 in 15 MHz steps = 110 supported clocks, as on the real card
MEM_CLOCK_MHZ = 3201
BASELINE_VRAM_MIB = 500.0
SIM_PCIE_IDLE_KIB_S = 120.0  # PCIe traffic of an idle card, KiB/s
SIM_PCIE_LOAD_KIB_S = 12_000_000.0  # a model load streams its weights in at about 12 GB/s

POWER_LIMIT_MIN_W = 200.0
POWER_LIMIT_MAX_W = 700.0

RISE_TAU_S = 0.03  # half of a step after ~20 ms
FALL_TAU_S = 0.035

DYNAMIC_MAX_W = 600.0
DYNAMIC_SATURATION = 0.7  # one decode stream ≈ 300 W dynamic, eight ≈ the limit
PHASE_INTENSITY = {"prefill": 2.2, "decode": 1.0, "load": 0.12}
# Share of a phase's dynamic power that does not scale with the SM clock (HBM traffic for decode).
PHASE_CLOCK_FLOOR = {"prefill": 0.1, "decode": 0.35, "load": 0.6}
PARKING_CLOCK_FLOOR = 0.25
DECODE_COMPUTE_SHARE = 0.14  # at 50% SM clock decode keeps ~88% of its speed

THERMAL_TAU_S = 20.0
AMBIENT_C = 28.0
DEGREES_PER_WATT = 0.075

RIPPLE_FREQS_HZ = (0.31, 0.83, 1.9, 3.7, 6.1)
RIPPLE_WEIGHTS = (1.0, 0.7, 0.5, 0.35, 0.25)


def supported_sm_clocks() -> tuple[int, ...]:
    return tuple(range(MAX_SM_CLOCK_MHZ, MIN_SM_CLOCK_MHZ - 1, -SM_CLOCK_STEP_MHZ))


class _Ripple:
    """Deterministic, zero-mean power ripple: a sum of sines with seeded phases, integrable in closed form."""

    def __init__(self, rng: random.Random, origin: float) -> None:
        self._origin = origin
        self._terms = tuple(
            (weight, 2.0 * math.pi * freq, rng.uniform(0.0, 2.0 * math.pi))
            for freq, weight in zip(RIPPLE_FREQS_HZ, RIPPLE_WEIGHTS)
        )

    def value(self, t: float) -> float:
        x = t - self._origin
        return sum(w * math.sin(omega * x + phase) for w, omega, phase in self._terms)

    def integral(self, a: float, b: float) -> float:
        xa, xb = a - self._origin, b - self._origin
        return sum(
            w / omega * (math.cos(omega * xa + phase) - math.cos(omega * xb + phase)) for w, omega, phase in self._terms
        )


@dataclass(frozen=True, slots=True)
class _Segment:
    """Power from t0 until the next segment: exponential approach from p0 to target, plus scaled ripple."""

    t0: float
    p0: float
    target: float
    tau: float
    ripple_amp: float

    def smooth(self, t: float) -> float:
        return self.target + (self.p0 - self.target) * math.exp(-(t - self.t0) / self.tau)

    def power(self, t: float, ripple: _Ripple) -> float:
        return self.smooth(t) + self.ripple_amp * ripple.value(t)

    def energy(self, a: float, b: float, ripple: _Ripple) -> float:
        decay = math.exp(-(a - self.t0) / self.tau) - math.exp(-(b - self.t0) / self.tau)
        smooth = self.target * (b - a) + (self.p0 - self.target) * self.tau * decay
        return smooth + self.ripple_amp * ripple.integral(a, b)


def _ripple_amplitude(target_w: float) -> float:
    return 0.35 + 0.006 * target_w


class SimGPU:
    """One simulated GPU. Thread-safe; deterministic for a given seed and sequence of calls and clock readings.

    The simulated server calls `load_model`/`unload_model` and `begin_work`/`set_phase`/`end_work`; the
    telemetry sampler calls `snapshot`, `power_samples` and `energy_counter_j`; a governor calls the clock setters.
    """

    def __init__(
        self,
        index: int = 0,
        name: str = "NVIDIA H200",
        seed: int = 0,
        clock: Callable[[], float] = time.time,
        vram_total_mib: float = 143771,
        power_limit_w: float = 700.0,
    ) -> None:
        self.index = index
        self.name = name
        self.seed = seed
        self._clock = clock
        self._lock = threading.RLock()
        rng = random.Random(f"claw-sim-gpu:{seed}:{index}")
        self._idle_w = 76.0 + 2.0 * rng.random()
        self._parking_w = 40.0 + 2.0 * rng.random()
        self._uuid = "GPU-" + _uuid_from(rng)
        self._vram_total_mib = float(vram_total_mib)
        self._power_limit_w = _clamp(power_limit_w, POWER_LIMIT_MIN_W, POWER_LIMIT_MAX_W)
        self._supported_clocks = supported_sm_clocks()

        now = float(clock())
        self._created = now
        self._last_now = now
        self._ripple = _Ripple(rng, origin=math.floor(now))
        self._segments: deque[_Segment] = deque(
            [_Segment(now, self._idle_w, self._idle_w, FALL_TAU_S, _ripple_amplitude(self._idle_w))]
        )
        self._energy_j = 0.0
        self._energy_t = now

        self._work: dict[int, tuple[str, float]] = {}
        self._next_handle = 1
        self._resident: dict[str, float] = {}
        self._locked_mhz: int | None = None
        self._cap_clock_mhz: int | None = None
        self._capped = False

        self._temp_c = AMBIENT_C + DEGREES_PER_WATT * self._idle_w
        self._temp_t = now
        self._temp_energy_j = 0.0

    # ---- static facts -------------------------------------------------------------------------------------

    def static(self) -> GpuStatic:
        return GpuStatic(
            index=self.index,
            name=self.name,
            uuid=self._uuid,
            driver="sim",
            power_limit_w=self._power_limit_w,
            power_limit_min_w=POWER_LIMIT_MIN_W,
            power_limit_max_w=POWER_LIMIT_MAX_W,
            max_sm_clock_mhz=MAX_SM_CLOCK_MHZ,
            max_mem_clock_mhz=MEM_CLOCK_MHZ,
            vram_total_mib=self._vram_total_mib,
            supported_sm_clocks_mhz=self._supported_clocks,
        )

    @property
    def vram_total_mib(self) -> float:
        return self._vram_total_mib

    # ---- residency ----------------------------------------------------------------------------------------

    def load_model(self, name: str, vram_mib: float) -> None:
        with self._lock:
            self._resident[name] = float(vram_mib)
            self._retarget()

    def unload_model(self, name: str) -> None:
        with self._lock:
            if self._resident.pop(name, None) is not None:
                self._retarget()

    def resident(self) -> dict[str, float]:
        with self._lock:
            return dict(self._resident)

    def vram_free_mib(self) -> float:
        with self._lock:
            return self._vram_total_mib - self._vram_used_mib()

    # ---- work ---------------------------------------------------------------------------------------------

    def begin_work(self, phase: str, weight: float = 1.0) -> int:
        """Start one piece of work ("prefill", "decode", or "load" for a model being read in); returns its handle."""
        _check_phase(phase)
        with self._lock:
            handle = self._next_handle
            self._next_handle += 1
            self._work[handle] = (phase, max(0.0, float(weight)))
            self._retarget()
            return handle

    def set_phase(self, handle: int, phase: str) -> None:
        _check_phase(phase)
        with self._lock:
            item = self._work.get(handle)
            if item is None or item[0] == phase:
                return
            self._work[handle] = (phase, item[1])
            self._retarget()

    def end_work(self, handle: int) -> None:
        """Finish a piece of work; unknown or already ended handles are ignored, so cleanup paths may repeat it."""
        with self._lock:
            if self._work.pop(handle, None) is not None:
                self._retarget()

    def work_in_flight(self) -> int:
        with self._lock:
            return len(self._work)

    # ---- clocks and limits --------------------------------------------------------------------------------

    def lock_sm_clock(self, mhz: int) -> int:
        """Lock the SM clock to the nearest supported value (as nvmlDeviceSetGpuLockedClocks(mhz, mhz)); returns it."""
        if not MIN_SM_CLOCK_MHZ <= mhz <= MAX_SM_CLOCK_MHZ:
            raise ValueError(f"SM clock {mhz} MHz is outside {MIN_SM_CLOCK_MHZ}..{MAX_SM_CLOCK_MHZ} MHz")
        snapped = min(self._supported_clocks, key=lambda c: abs(c - mhz))
        with self._lock:
            self._locked_mhz = snapped
            self._retarget()
            return snapped

    def reset_clocks(self) -> None:
        with self._lock:
            if self._locked_mhz is not None:
                self._locked_mhz = None
                self._retarget()

    def locked_sm_clock(self) -> int | None:
        with self._lock:
            return self._locked_mhz

    def set_power_limit(self, watts: float) -> float:
        with self._lock:
            self._power_limit_w = _clamp(watts, POWER_LIMIT_MIN_W, POWER_LIMIT_MAX_W)
            self._retarget()
            return self._power_limit_w

    def current_sm_clock(self) -> int:
        with self._lock:
            if self._work or self._resident:
                return self._work_clock_mhz()
            return self._locked_mhz if self._locked_mhz is not None else MIN_SM_CLOCK_MHZ

    def decode_speed_factor(self) -> float:
        """Decode speed relative to full clock (≤ 1): memory-bound, so it slows less than the SM clock."""
        with self._lock:
            f = self._work_clock_mhz() / MAX_SM_CLOCK_MHZ
        return 1.0 / ((1.0 - DECODE_COMPUTE_SHARE) + DECODE_COMPUTE_SHARE / f)

    def prefill_speed_factor(self) -> float:
        """Prefill speed relative to full clock: compute-bound, so it scales with the SM clock."""
        with self._lock:
            return self._work_clock_mhz() / MAX_SM_CLOCK_MHZ

    # ---- telemetry ----------------------------------------------------------------------------------------

    def power_now(self) -> float:
        with self._lock:
            t = self._now()
            return self._segments[-1].power(t, self._ripple)

    def power_samples(self, since_ts: float) -> list[PowerSample]:
        """Samples on the fixed 20 ms grid of absolute times, newer than since_ts and not after now (≤ ~2.4 s)."""
        with self._lock:
            now = self._now()
            k_last = math.floor(now / SAMPLE_PERIOD_S)
            k_first = max(math.floor(since_ts / SAMPLE_PERIOD_S), k_last - SAMPLE_BUFFER_LEN + 1)
            k_first = max(k_first, math.floor(self._created / SAMPLE_PERIOD_S) - SAMPLE_BUFFER_LEN)
            samples: list[PowerSample] = []
            segments = self._segments
            seg_i = 0
            for k in range(k_first, k_last + 2):
                ts = round(k * SAMPLE_PERIOD_S, 6)
                if ts <= since_ts:
                    continue
                if ts > now:
                    break
                while seg_i + 1 < len(segments) and segments[seg_i + 1].t0 <= ts:
                    seg_i += 1
                seg = segments[seg_i]
                watts = seg.p0 if ts < seg.t0 else seg.power(ts, self._ripple)
                samples.append(PowerSample(ts=ts, watts=watts))
            return samples

    def energy_counter_j(self) -> float:
        """Joules since this GPU was created: the exact integral of the power curve the samples are taken from."""
        with self._lock:
            self._advance_energy(self._now())
            return self._energy_j

    def snapshot(self) -> GpuSnapshot:
        with self._lock:
            t = self._now()
            self._advance_energy(t)
            return GpuSnapshot(
                index=self.index,
                name=self.name,
                ts=t,
                power_w=round(self._segments[-1].power(t, self._ripple), 3),
                power_limit_w=self._power_limit_w,
                energy_j=self._energy_j,
                sm_clock_mhz=self.current_sm_clock(),
                mem_clock_mhz=MEM_CLOCK_MHZ,
                util_pct=self._util_pct(),
                mem_util_pct=self._mem_util_pct(),
                temp_c=round(self._temperature(t), 1),
                vram_used_mib=round(self._vram_used_mib(), 1),
                vram_total_mib=self._vram_total_mib,
                pstate="P0" if (self._work or self._resident or self._locked_mhz is not None) else "P8",
                clock_event_reasons=decode_clock_event_reasons(self._clock_event_mask()),
                processes=self._processes(),
                fan_pct=None,  # an H200 SXM is passively cooled: NVML answers NotSupported
                pcie_tx_kib_s=round(SIM_PCIE_IDLE_KIB_S + 2_000.0 * self._phase_load("decode"), 1),
                pcie_rx_kib_s=round(SIM_PCIE_IDLE_KIB_S + SIM_PCIE_LOAD_KIB_S * self._phase_load("load"), 1),
                ecc_corrected=0,
                ecc_uncorrected=0,
                xid_count=0,
            )

    # ---- internals ----------------------------------------------------------------------------------------

    def _now(self) -> float:
        # never let a stepped-back wall clock rewrite the past
        t = max(float(self._clock()), self._last_now)
        self._last_now = t
        return t

    def _advance_energy(self, t: float) -> None:
        if t > self._energy_t:
            self._energy_j += self._segments[-1].energy(self._energy_t, t, self._ripple)
            self._energy_t = t

    def _retarget(self) -> None:
        """Start a new power segment at now if the state change moved the target."""
        target = self._compute_target()
        t = self._now()
        current = self._segments[-1]
        amp = _ripple_amplitude(target)
        if target == current.target and amp == current.ripple_amp:
            return
        self._advance_energy(t)
        p_t = current.smooth(t)
        tau = RISE_TAU_S if target > p_t else FALL_TAU_S
        self._segments.append(_Segment(t, p_t, target, tau, amp))
        self._prune_segments(t)

    def _prune_segments(self, now: float) -> None:
        segments = self._segments
        while len(segments) > 1 and (segments[1].t0 <= now - SEGMENT_WINDOW_S or len(segments) > MAX_SEGMENTS):
            segments.popleft()

    def _compute_target(self) -> float:
        limit_f = (self._locked_mhz or MAX_SM_CLOCK_MHZ) / MAX_SM_CLOCK_MHZ
        uncapped = self._power_at_clock(limit_f)
        if uncapped <= self._power_limit_w:
            self._capped = False
            self._cap_clock_mhz = None
            return uncapped
        self._capped = True
        self._cap_clock_mhz = self._highest_clock_within_limit()
        return self._power_limit_w

    def _highest_clock_within_limit(self) -> int:
        ceiling = self._locked_mhz or MAX_SM_CLOCK_MHZ
        for mhz in self._supported_clocks:  # descending
            if mhz <= ceiling and self._power_at_clock(mhz / MAX_SM_CLOCK_MHZ) <= self._power_limit_w:
                return mhz
        return MIN_SM_CLOCK_MHZ

    def _power_at_clock(self, f: float) -> float:
        power = self._idle_w
        if self._resident:
            power += self._parking_w * (PARKING_CLOCK_FLOOR + (1.0 - PARKING_CLOCK_FLOOR) * f * f)
        load = 0.0
        clock_scaled = 0.0
        for phase, weight in self._work.values():
            intensity = PHASE_INTENSITY[phase] * weight
            floor = PHASE_CLOCK_FLOOR[phase]
            load += intensity
            clock_scaled += intensity * (floor + (1.0 - floor) * f * f)
        if load > 0.0:
            saturated = DYNAMIC_MAX_W * (1.0 - math.exp(-DYNAMIC_SATURATION * load))
            power += saturated * (clock_scaled / load)
        return power

    def _work_clock_mhz(self) -> int:
        clock = self._locked_mhz or MAX_SM_CLOCK_MHZ
        if self._cap_clock_mhz is not None:
            clock = min(clock, self._cap_clock_mhz)
        return clock

    def _phase_load(self, *phases: str) -> float:
        return sum(PHASE_INTENSITY[p] * w for p, w in self._work.values() if p in phases)

    def _util_pct(self) -> float:
        load = self._phase_load("prefill", "decode")
        return round(100.0 * (1.0 - math.exp(-2.7 * load)), 1)

    def _mem_util_pct(self) -> float:
        load = self._phase_load("decode") + 0.3 * self._phase_load("prefill") + self._phase_load("load")
        return round(100.0 * (1.0 - math.exp(-0.9 * load)), 1)

    def _temperature(self, t: float) -> float:
        """Die temperature relaxing towards a level set by the mean power since the last reading."""
        dt = t - self._temp_t
        if dt > 0:
            mean_power = (self._energy_j - self._temp_energy_j) / dt
            settled = AMBIENT_C + DEGREES_PER_WATT * mean_power
            self._temp_c += (settled - self._temp_c) * (1.0 - math.exp(-dt / THERMAL_TAU_S))
            self._temp_t = t
            self._temp_energy_j = self._energy_j
        return self._temp_c

    def _vram_used_mib(self) -> float:
        return BASELINE_VRAM_MIB + sum(self._resident.values())

    def _clock_event_mask(self) -> int:
        mask = 0
        if self._locked_mhz is not None:
            mask |= 0x2
        elif not self._work:
            mask |= 0x1
        if self._capped:
            mask |= 0x4
        return mask

    def _processes(self) -> list[GpuProcess]:
        # With one runner the GPU's utilisation is its own; with several, NVML's per-process split is not modelled.
        util = (self._util_pct(), self._mem_util_pct()) if len(self._resident) == 1 else (None, None)
        return [
            GpuProcess(
                pid=_runner_pid(self.seed, self.index, name),
                name="ollama runner",
                vram_mib=vram,
                is_ollama_runner=True,
                sm_util_pct=util[0],
                mem_util_pct=util[1],
            )
            for name, vram in self._resident.items()
        ]


class SimTelemetrySource:
    """The TelemetrySource protocol over simulated GPUs."""

    kind = "sim"

    def __init__(self, gpus: Sequence[SimGPU]) -> None:
        self._gpus = {gpu.index: gpu for gpu in gpus}

    @property
    def gpus(self) -> list[SimGPU]:
        return list(self._gpus.values())

    def open(self) -> list[GpuStatic]:
        return [gpu.static() for gpu in self._gpus.values()]

    def snapshot(self, index: int) -> GpuSnapshot:
        return self._gpu(index).snapshot()

    def power_samples(self, index: int, since_ts: float) -> list[PowerSample]:
        return self._gpu(index).power_samples(since_ts)

    def energy_counter_j(self, index: int) -> float | None:
        return self._gpu(index).energy_counter_j()

    def close(self) -> None:
        return None

    def _gpu(self, index: int) -> SimGPU:
        try:
            return self._gpus[index]
        except KeyError:
            raise TelemetryError(f"no simulated GPU with index {index}") from None


def _check_phase(phase: str) -> None:
    if phase not in PHASE_INTENSITY:
        raise ValueError(f"unknown work phase {phase!r} (expected one of {', '.join(PHASE_INTENSITY)})")


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, float(value)))


def _uuid_from(rng: random.Random) -> str:
    hexdigits = f"{rng.getrandbits(128):032x}"
    return "-".join((hexdigits[:8], hexdigits[8:12], hexdigits[12:16], hexdigits[16:20], hexdigits[20:]))


def _runner_pid(seed: int, index: int, model: str) -> int:
    return 20_000 + zlib.crc32(f"{seed}:{index}:{model}".encode()) % 40_000
