"""Telemetry data shapes shared by every source (NVML, simulator, replay, none)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

# NVML clock-event reason bits (nvmlDeviceGetCurrentClocksEventReasons) and the words claw shows for them.
CLOCK_EVENT_REASONS: dict[int, str] = {
    0x1: "gpu_idle",
    0x2: "app_clocks",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal",
    0x40: "hw_thermal",
    0x80: "hw_power_brake",
    0x100: "display_clocks",
}


def decode_clock_event_reasons(mask: int | None) -> list[str]:
    if mask is None:
        return []
    return [word for bit, word in CLOCK_EVENT_REASONS.items() if mask & bit]


class TelemetryError(RuntimeError):
    """A telemetry source cannot be read (no driver, GPU lost, bad trace file)."""


@dataclass(frozen=True, slots=True)
class PowerSample:
    """One power reading: wall-clock seconds since the epoch and watts."""

    ts: float
    watts: float


@dataclass(frozen=True, slots=True)
class GpuProcess:
    pid: int
    name: str
    vram_mib: float | None
    is_ollama_runner: bool = False
    sm_util_pct: float | None = None  # this process's share of the SM time (nvmlDeviceGetProcessUtilization)
    mem_util_pct: float | None = None


@dataclass(frozen=True, slots=True)
class GpuStatic:
    """Facts read once per GPU."""

    index: int
    name: str
    uuid: str = ""
    driver: str = ""
    power_limit_w: float | None = None
    power_limit_min_w: float | None = None
    power_limit_max_w: float | None = None
    max_sm_clock_mhz: int | None = None
    max_mem_clock_mhz: int | None = None
    vram_total_mib: float | None = None
    supported_sm_clocks_mhz: tuple[int, ...] = ()


@dataclass(slots=True)
class GpuSnapshot:
    """The live state of one GPU; any field may be None when the device does not support it (shown as N/A)."""

    index: int
    name: str
    ts: float
    power_w: float | None = None
    power_limit_w: float | None = None
    energy_j: float | None = None
    sm_clock_mhz: int | None = None
    mem_clock_mhz: int | None = None
    util_pct: float | None = None
    mem_util_pct: float | None = None
    temp_c: float | None = None
    vram_used_mib: float | None = None
    vram_total_mib: float | None = None
    pstate: str | None = None
    clock_event_reasons: list[str] = field(default_factory=list)
    processes: list[GpuProcess] = field(default_factory=list)
    fan_pct: float | None = None  # None on passively cooled cards (H100/H200 SXM: NotSupported)
    pcie_tx_kib_s: float | None = None  # PCIe throughput, KiB/s, refreshed every few seconds (each read takes 20 ms)
    pcie_rx_kib_s: float | None = None
    ecc_corrected: int | None = None  # volatile ECC error counts (since the driver loaded)
    ecc_uncorrected: int | None = None
    xid_count: int | None = None  # Xid critical errors seen since claw opened the GPU; None when not observable
    last_xid: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The shape `claw gpu --json` prints for one GPU."""
        keys = (
            "index",
            "name",
            "power_w",
            "power_limit_w",
            "energy_j",
            "sm_clock_mhz",
            "mem_clock_mhz",
            "util_pct",
            "temp_c",
            "vram_used_mib",
            "vram_total_mib",
            "pstate",
            "clock_event_reasons",
        )
        data = asdict(self)
        out = {key: data[key] for key in keys}
        out["processes"] = [asdict(p) for p in self.processes]
        return out

    def console_json(self) -> dict[str, Any]:
        """What a console receives (telemetry events, `GET /claw/v1/telemetry`): the `claw gpu --json` shape plus
        the time of the reading and the overview's fields."""
        return {
            "ts": self.ts,
            **self.to_json(),
            "mem_util_pct": self.mem_util_pct,
            **{key: getattr(self, key) for key in OVERVIEW_FIELDS},
        }


# Fields the GPU overview shows beyond `claw gpu --json`'s; each may be None (N/A) on a GPU that lacks it.
OVERVIEW_FIELDS = (
    "fan_pct",
    "pcie_tx_kib_s",
    "pcie_rx_kib_s",
    "ecc_corrected",
    "ecc_uncorrected",
    "xid_count",
    "last_xid",
)


class TelemetrySource(Protocol):
    """What the sampler needs from a source. Every call may block; the sampler calls them from its thread."""

    kind: str  # "nvml" | "sim" | "replay" | "none"

    def open(self) -> list[GpuStatic]:
        """Initialise and return the static facts of every GPU; raise TelemetryError when impossible."""

    def snapshot(self, index: int) -> GpuSnapshot:
        """Current state of one GPU (cheap fields only; no energy counter)."""

    def power_samples(self, index: int, since_ts: float) -> list[PowerSample]:
        """Buffered power samples strictly newer than since_ts, oldest first."""

    def energy_counter_j(self, index: int) -> float | None:
        """The cumulative energy counter in joules (slow on NVML: ~3 ms), or None when unsupported."""

    def close(self) -> None: ...
