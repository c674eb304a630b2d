"""The NVML telemetry source: real NVIDIA GPUs through nvidia-ml-py (module `pynvml`).

Read-only by design: this module never calls an NVML setter (clocks, power limits, resets). It subscribes to the
driver's Xid events (an observation: nothing on the GPU changes) to count them.
Costs on an H200 (see the shared NVML reference): the power sample buffer ~0.3 ms per call, the energy counter
~3 ms (call it at 1-2 Hz from a thread), every snapshot field a few µs. Measured on an H100 (driver 580): ECC counts
1.5 µs, per-process utilisation ~1.4 ms, PCIe throughput 20 ms (the driver samples a 20 ms window): those two are
read every few seconds, one GPU per snapshot, and the last reading is kept in between.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from claw_tui.telemetry.types import (
    GpuProcess,
    GpuSnapshot,
    GpuStatic,
    PowerSample,
    TelemetryError,
    decode_clock_event_reasons,
)

log = logging.getLogger(__name__)

MIB = 1024 * 1024

# Error codes (NVML's stable ABI values; the module's own constants are preferred when present).
_ERROR_CODES = {
    "NVML_ERROR_UNINITIALIZED": 1,
    "NVML_ERROR_NOT_SUPPORTED": 3,
    "NVML_ERROR_NO_PERMISSION": 4,
    "NVML_ERROR_NOT_FOUND": 6,
    "NVML_ERROR_DRIVER_NOT_LOADED": 9,
    "NVML_ERROR_LIBRARY_NOT_FOUND": 12,
    "NVML_ERROR_FUNCTION_NOT_FOUND": 13,
    "NVML_ERROR_GPU_IS_LOST": 15,
    "NVML_ERROR_RESET_REQUIRED": 16,
    "NVML_ERROR_LIB_RM_VERSION_MISMATCH": 18,
    "NVML_ERROR_NO_DATA": 21,
    "NVML_ERROR_TIMEOUT": 10,
}
# The device or the driver is gone: no field can be read until NVML is opened again.
_FATAL_ERRORS = (
    "NVML_ERROR_UNINITIALIZED",
    "NVML_ERROR_DRIVER_NOT_LOADED",
    "NVML_ERROR_LIBRARY_NOT_FOUND",
    "NVML_ERROR_GPU_IS_LOST",
    "NVML_ERROR_RESET_REQUIRED",
    "NVML_ERROR_LIB_RM_VERSION_MISMATCH",
)
# The field is not there on this GPU/driver, or not for this user: show N/A.
_MISSING_FIELD_ERRORS = ("NVML_ERROR_NOT_SUPPORTED", "NVML_ERROR_NO_PERMISSION", "NVML_ERROR_FUNCTION_NOT_FOUND")
# nvmlDeviceGetSamples: nothing newer than the timestamp asked for.
_NO_NEW_SAMPLES_ERRORS = ("NVML_ERROR_NOT_FOUND", "NVML_ERROR_NO_DATA")

_FALLBACKS = {
    "NVML_TOTAL_POWER_SAMPLES": 0,
    "NVML_FI_DEV_POWER_INSTANT": 186,
    "NVML_CLOCK_SM": 1,
    "NVML_CLOCK_MEM": 2,
    "NVML_TEMPERATURE_GPU": 0,
    "NVML_PSTATE_UNKNOWN": 32,
    "NVML_SUCCESS": 0,
    "NVML_PCIE_UTIL_TX_BYTES": 0,
    "NVML_PCIE_UTIL_RX_BYTES": 1,
    "NVML_MEMORY_ERROR_TYPE_CORRECTED": 0,
    "NVML_MEMORY_ERROR_TYPE_UNCORRECTED": 1,
    "NVML_VOLATILE_ECC": 0,
    "nvmlEventTypeXidCriticalError": 0x8,
}
SLOW_FIELDS_INTERVAL_S = 3.0  # PCIe throughput and per-process utilisation: each GPU this often at most
MAX_EVENTS_PER_POLL = 32

# c_nvmlValue_t member for each NVML_VALUE_TYPE_* (0..6).
_VALUE_MEMBERS = ("dVal", "uiVal", "ulVal", "ullVal", "sllVal", "siVal", "usVal")

OLLAMA_RUNNER_MARKERS = ("ollama_llama_server",)


class NvmlUnavailable(TelemetryError):
    """NVML cannot be opened at all: no library, no driver, or no GPU. `reason` is NVML's own words."""

    def __init__(self, reason: str):
        super().__init__(f"no NVIDIA GPU/driver found (NVML: {reason})")
        self.reason = reason


def is_ollama_runner(name: str, cmdline: str) -> bool:
    """True for an Ollama model runner: `ollama runner --model ...` (new) or `ollama_llama_server` (old)."""
    text = f"{name} {cmdline}".lower()
    if any(marker in text for marker in OLLAMA_RUNNER_MARKERS):
        return True
    return "ollama" in text and "runner" in text


def describe_process(pid: int) -> tuple[str, bool]:
    """(process name, is an Ollama runner) via psutil; a pid from another PID namespace has no name here."""
    try:
        import psutil

        proc = psutil.Process(pid)
        name = proc.name()
        try:
            cmdline = " ".join(proc.cmdline())
        except (psutil.AccessDenied, psutil.ZombieProcess):
            cmdline = ""
    except Exception:
        return f"pid {pid}", False
    return name, is_ollama_runner(name, cmdline)


class NvmlSource:
    """TelemetrySource over NVML. `nvml` is the pynvml module or a stand-in with the same names (tests)."""

    kind = "nvml"

    def __init__(
        self,
        nvml: Any = None,
        *,
        clock: Callable[[], float] = time.time,
        process_describer: Callable[[int], tuple[str, bool]] = describe_process,
    ):
        self._nvml = nvml
        self._clock = clock
        self._describe_process = process_describer
        self._lock = threading.Lock()
        self._open = False
        self._handles: list[Any] = []
        self._statics: list[GpuStatic] = []
        self._last_sample_us: dict[int, int] = {}
        self._samples_unsupported: set[int] = set()
        self._instant_field_unsupported: set[int] = set()
        self._process_names: dict[int, tuple[str, bool]] = {}
        self._unsupported: set[tuple[str, int]] = set()  # (reading, GPU) pairs the GPU answered NotSupported to
        self._slow: dict[int, dict[str, Any]] = {}  # per GPU: the last PCIe and per-process readings, and when
        self._last_slow_read = -float("inf")
        self._events: Any = None  # the Xid event set, or None where the driver offers none
        self._xids: dict[int, list[int]] = {}  # per GPU: the Xid codes seen since open

    # ----- lifecycle ---------------------------------------------------------------------------------------

    @property
    def statics(self) -> list[GpuStatic]:
        return list(self._statics)

    def open(self) -> list[GpuStatic]:
        """Initialise NVML and read every GPU's static facts. Opening again starts over (recovery path)."""
        with self._lock:
            if self._open:
                self._shutdown()
            nvml = self._module()
            try:
                nvml.nvmlInit()
            except Exception as err:
                raise NvmlUnavailable(self._reason(err)) from err
            self._open = True
            try:
                count = int(nvml.nvmlDeviceGetCount())
                if count == 0:
                    raise NvmlUnavailable("the driver reports no GPU")
                driver = _text(self._optional(nvml.nvmlSystemGetDriverVersion)) or ""
                self._handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
                self._statics = [self._read_static(i, handle, driver) for i, handle in enumerate(self._handles)]
            except NvmlUnavailable:
                self._shutdown()
                raise
            except self._nvml_error() as err:
                self._shutdown()
                raise NvmlUnavailable(self._reason(err)) from err
            self._samples_unsupported.clear()
            self._instant_field_unsupported.clear()
            self._unsupported.clear()
            self._slow.clear()
            self._open_xid_events()
            return list(self._statics)

    def reopen(self) -> list[GpuStatic]:
        """Shut NVML down and open it again, e.g. after the driver was reloaded or a lost GPU came back."""
        return self.open()

    def close(self) -> None:
        with self._lock:
            self._shutdown()

    def _shutdown(self) -> None:
        if self._events is not None:
            free = getattr(self._nvml, "nvmlEventSetFree", None)
            if free is not None:
                self._optional(free, self._events)
            self._events = None
        if self._open:
            try:
                self._nvml.nvmlShutdown()
            except Exception:
                log.debug("nvmlShutdown failed", exc_info=True)
        self._open = False
        self._handles = []

    # ----- live readings -------------------------------------------------------------------------------------

    def snapshot(self, index: int) -> GpuSnapshot:
        handle = self._handle(index)
        nvml = self._nvml
        static = self._statics[index]
        memory = self._field(nvml.nvmlDeviceGetMemoryInfo, handle)
        utilisation = self._field(nvml.nvmlDeviceGetUtilizationRates, handle)
        slow = self._slow_reading(index, handle)
        return GpuSnapshot(
            index=index,
            name=static.name,
            ts=self._clock(),
            power_w=self._instant_power_w(index, handle),
            power_limit_w=_milli(self._power_limit_mw(handle)),
            sm_clock_mhz=_int_or_none(self._field(nvml.nvmlDeviceGetClockInfo, handle, self._const("NVML_CLOCK_SM"))),
            mem_clock_mhz=_int_or_none(self._field(nvml.nvmlDeviceGetClockInfo, handle, self._const("NVML_CLOCK_MEM"))),
            util_pct=_float_or_none(getattr(utilisation, "gpu", None)),
            mem_util_pct=_float_or_none(getattr(utilisation, "memory", None)),
            temp_c=_float_or_none(
                self._field(nvml.nvmlDeviceGetTemperature, handle, self._const("NVML_TEMPERATURE_GPU"))
            ),
            vram_used_mib=_mib(getattr(memory, "used", None)),
            vram_total_mib=_mib(getattr(memory, "total", None)) or static.vram_total_mib,
            pstate=self._pstate(handle),
            clock_event_reasons=decode_clock_event_reasons(self._clock_event_mask(handle)),
            processes=self._processes(handle, slow["processes"]),
            fan_pct=_float_or_none(self._reading("fan", index, "nvmlDeviceGetFanSpeed", handle)),
            pcie_tx_kib_s=slow["pcie_tx_kib_s"],
            pcie_rx_kib_s=slow["pcie_rx_kib_s"],
            ecc_corrected=self._ecc(index, handle, "NVML_MEMORY_ERROR_TYPE_CORRECTED"),
            ecc_uncorrected=self._ecc(index, handle, "NVML_MEMORY_ERROR_TYPE_UNCORRECTED"),
            **self._xid(index),
        )

    def power_samples(self, index: int, since_ts: float) -> list[PowerSample]:
        """New 20 ms samples from the driver's buffer. A sample is returned once: later calls start after it."""
        handle = self._handle(index)
        last_us = max(self._last_sample_us.get(index, 0), _seconds_to_us(since_ts))
        if index in self._samples_unsupported:
            return self._instant_power_as_sample(index, handle, last_us)
        nvml = self._nvml
        try:
            value_type, raw_samples = nvml.nvmlDeviceGetSamples(
                handle, self._const("NVML_TOTAL_POWER_SAMPLES"), last_us
            )
        except self._nvml_error() as err:
            if self._is(err, _NO_NEW_SAMPLES_ERRORS):
                return []
            if self._is(err, _MISSING_FIELD_ERRORS):
                self._samples_unsupported.add(index)
                return self._instant_power_as_sample(index, handle, last_us)
            if self._is(err, _FATAL_ERRORS):
                raise self._telemetry_error(err, index) from err
            log.debug("nvmlDeviceGetSamples failed on GPU %d: %s", index, self._reason(err))
            return []
        samples = self._new_samples(raw_samples, value_type, last_us)
        if samples:
            self._last_sample_us[index] = samples[-1][0]
        return [PowerSample(ts=us / 1e6, watts=milliwatts / 1000.0) for us, milliwatts in samples]

    def energy_counter_j(self, index: int) -> float | None:
        millijoules = self._field(self._nvml.nvmlDeviceGetTotalEnergyConsumption, self._handle(index))
        return None if millijoules is None else millijoules / 1000.0

    # ----- static facts ---------------------------------------------------------------------------------------

    def _read_static(self, index: int, handle: Any, driver: str) -> GpuStatic:
        nvml = self._nvml
        constraints = self._field(nvml.nvmlDeviceGetPowerManagementLimitConstraints, handle)
        limit_min, limit_max = constraints if constraints else (None, None)
        memory = self._field(nvml.nvmlDeviceGetMemoryInfo, handle)
        return GpuStatic(
            index=index,
            name=_text(self._field(nvml.nvmlDeviceGetName, handle)) or f"GPU {index}",
            uuid=_text(self._field(nvml.nvmlDeviceGetUUID, handle)) or "",
            driver=driver,
            power_limit_w=_milli(self._power_limit_mw(handle)),
            power_limit_min_w=_milli(limit_min),
            power_limit_max_w=_milli(limit_max),
            max_sm_clock_mhz=_int_or_none(
                self._field(nvml.nvmlDeviceGetMaxClockInfo, handle, self._const("NVML_CLOCK_SM"))
            ),
            max_mem_clock_mhz=_int_or_none(
                self._field(nvml.nvmlDeviceGetMaxClockInfo, handle, self._const("NVML_CLOCK_MEM"))
            ),
            vram_total_mib=_mib(getattr(memory, "total", None)),
            supported_sm_clocks_mhz=self._supported_sm_clocks(handle),
        )

    def _supported_sm_clocks(self, handle: Any) -> tuple[int, ...]:
        """SM clocks supported at the highest memory clock, ascending."""
        mem_clocks = self._field(self._nvml.nvmlDeviceGetSupportedMemoryClocks, handle)
        if not mem_clocks:
            return ()
        sm_clocks = self._field(self._nvml.nvmlDeviceGetSupportedGraphicsClocks, handle, max(mem_clocks))
        return tuple(sorted({int(c) for c in sm_clocks or ()}))

    # ----- fields -------------------------------------------------------------------------------------------

    def _instant_power_w(self, index: int, handle: Any) -> float | None:
        milliwatts = None
        if index not in self._instant_field_unsupported:
            milliwatts = self._instant_power_field_mw(handle)
            if milliwatts is None:
                self._instant_field_unsupported.add(index)
        if milliwatts is None:
            # Ampere and newer average this one over ~1 s; still better than nothing.
            milliwatts = self._field(self._nvml.nvmlDeviceGetPowerUsage, handle)
        return _milli(milliwatts)

    def _instant_power_field_mw(self, handle: Any) -> float | None:
        values = self._field(self._nvml.nvmlDeviceGetFieldValues, handle, [self._const("NVML_FI_DEV_POWER_INSTANT")])
        if not values:
            return None
        value = values[0]
        if getattr(value, "nvmlReturn", 0) != self._const("NVML_SUCCESS"):
            return None
        return _value_of(value.value, getattr(value, "valueType", 1))

    def _instant_power_as_sample(self, index: int, handle: Any, last_us: int) -> list[PowerSample]:
        """For GPUs without the sample buffer: one sample per call from the instant power reading."""
        watts = self._instant_power_w(index, handle)
        now_us = _seconds_to_us(self._clock())
        if watts is None or now_us <= last_us:
            return []
        self._last_sample_us[index] = now_us
        return [PowerSample(ts=now_us / 1e6, watts=watts)]

    def _power_limit_mw(self, handle: Any) -> float | None:
        limit: float | None = self._field(self._nvml.nvmlDeviceGetEnforcedPowerLimit, handle)
        if limit is None:
            limit = self._field(self._nvml.nvmlDeviceGetPowerManagementLimit, handle)
        return limit

    def _pstate(self, handle: Any) -> str | None:
        state = self._field(self._nvml.nvmlDeviceGetPerformanceState, handle)
        if state is None or not 0 <= int(state) <= 15:
            return None
        return f"P{int(state)}"

    def _clock_event_mask(self, handle: Any) -> int | None:
        nvml = self._nvml
        reader = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
        if reader is None:  # older nvidia-ml-py
            reader = getattr(nvml, "nvmlDeviceGetCurrentClocksThrottleReasons", None)
        if reader is None:
            return None
        mask = self._field(reader, handle)
        return None if mask is None else int(mask)

    def _processes(self, handle: Any, utilisation: dict[int, tuple[float, float]]) -> list[GpuProcess]:
        running = self._field(self._nvml.nvmlDeviceGetComputeRunningProcesses, handle) or []
        processes = []
        seen = set()
        for info in running:
            pid = int(info.pid)
            seen.add(pid)
            if pid not in self._process_names:
                self._process_names[pid] = self._describe_process(pid)
            name, runner = self._process_names[pid]
            sm, mem = utilisation.get(pid, (None, None))
            processes.append(
                GpuProcess(
                    pid=pid,
                    name=name,
                    vram_mib=_mib(info.usedGpuMemory),
                    is_ollama_runner=runner,
                    sm_util_pct=sm,
                    mem_util_pct=mem,
                )
            )
        self._forget_exited(seen)
        return processes

    # ----- the overview's fields ------------------------------------------------------------------------------

    def _reading(self, name: str, index: int, function: str, *args: Any) -> Any:
        """A field that a GPU either has or not: once it answered NotSupported (or the bindings lack the
        function), it is not asked again."""
        if (name, index) in self._unsupported:
            return None
        reader = getattr(self._nvml, function, None)
        if reader is None:
            self._unsupported.add((name, index))
            return None
        try:
            return reader(*args)
        except self._nvml_error() as err:
            if self._is(err, _FATAL_ERRORS):
                raise self._telemetry_error(err, index) from err
            if self._is(err, _MISSING_FIELD_ERRORS):
                self._unsupported.add((name, index))
            return None

    def _ecc(self, index: int, handle: Any, kind: str) -> int | None:
        function = "nvmlDeviceGetTotalEccErrors"
        count = self._reading(kind, index, function, handle, self._const(kind), self._const("NVML_VOLATILE_ECC"))
        return _int_or_none(count)

    def _slow_reading(self, index: int, handle: Any) -> dict[str, Any]:
        """PCIe throughput and per-process utilisation: a GPU's first snapshot reads them, later ones at most every
        SLOW_FIELDS_INTERVAL_S, and never two GPUs within the same slice of it (a PCIe reading blocks 20 ms): the
        last reading in between."""
        last = self._slow.get(index)
        now = self._clock()
        if last is not None:
            slice_s = SLOW_FIELDS_INTERVAL_S / max(1, len(self._handles))
            if now - last["at"] < SLOW_FIELDS_INTERVAL_S or now - self._last_slow_read < slice_s:
                return last
        self._last_slow_read = now
        tx_kind, rx_kind = self._const("NVML_PCIE_UTIL_TX_BYTES"), self._const("NVML_PCIE_UTIL_RX_BYTES")
        tx = self._reading("pcie", index, "nvmlDeviceGetPcieThroughput", handle, tx_kind)
        rx = None if tx is None else self._reading("pcie", index, "nvmlDeviceGetPcieThroughput", handle, rx_kind)
        reading = {
            "at": now,
            "pcie_tx_kib_s": _float_or_none(tx),
            "pcie_rx_kib_s": _float_or_none(rx),
            "processes": self._process_utilisation(index, handle, (last or {}).get("at", now - 10.0)),
        }
        self._slow[index] = reading
        return reading

    def _process_utilisation(self, index: int, handle: Any, since: float) -> dict[int, tuple[float, float]]:
        """pid → (SM %, memory %) of the newest sample since `since` (NVML answers NotFound when none is new)."""
        samples = self._reading("process_util", index, "nvmlDeviceGetProcessUtilization", handle, _seconds_to_us(since))
        newest: dict[int, tuple[int, float, float]] = {}
        for sample in samples or ():
            pid, ts = int(sample.pid), int(getattr(sample, "timeStamp", 0))
            if pid not in newest or ts >= newest[pid][0]:
                newest[pid] = (ts, float(sample.smUtil), float(sample.memUtil))
        return {pid: (sm, mem) for pid, (_, sm, mem) in newest.items()}

    def _open_xid_events(self) -> None:
        """Subscribe to Xid critical errors on every GPU that offers them (a GPU without stays N/A)."""
        nvml = self._nvml
        self._xids = {}
        events = self._optional(getattr(nvml, "nvmlEventSetCreate", lambda: None))
        if events is None:
            return
        register = getattr(nvml, "nvmlDeviceRegisterEvents", None)
        for index, handle in enumerate(self._handles):
            try:
                if register is not None:
                    register(handle, self._const("nvmlEventTypeXidCriticalError"), events)
            except self._nvml_error():
                continue
            else:
                if register is not None:
                    self._xids[index] = []
        self._events = events if self._xids else None
        if self._events is None and hasattr(nvml, "nvmlEventSetFree"):
            self._optional(nvml.nvmlEventSetFree, events)

    def _drain_xid_events(self) -> None:
        wait = getattr(self._nvml, "nvmlEventSetWait_v2", None) or getattr(self._nvml, "nvmlEventSetWait", None)
        if wait is None:
            return
        for _ in range(MAX_EVENTS_PER_POLL):
            try:
                event = wait(self._events, 0)
            except self._nvml_error():  # a timeout: nothing waiting
                return
            index = self._index_of(event.device)
            if index in self._xids:
                self._xids[index].append(int(event.eventData))

    def _index_of(self, device: Any) -> int | None:
        index = self._optional(self._nvml.nvmlDeviceGetIndex, device)
        return None if index is None else int(index)

    def _xid(self, index: int) -> dict[str, Any]:
        if self._events is None or index not in self._xids:
            return {"xid_count": None, "last_xid": None}
        if index == 0 or 0 not in self._xids:
            self._drain_xid_events()
        seen = self._xids[index]
        return {"xid_count": len(seen), "last_xid": seen[-1] if seen else None}

    def _forget_exited(self, running_pids: set[int]) -> None:
        # Bounds the name cache and keeps a recycled pid from inheriting an old name. With several GPUs a pid
        # of another GPU may be dropped too; it is then looked up again on that GPU's next snapshot.
        if len(self._process_names) > 256:
            for pid in list(self._process_names):
                if pid not in running_pids:
                    del self._process_names[pid]

    # ----- NVML plumbing ----------------------------------------------------------------------------------------

    def _module(self) -> Any:
        if self._nvml is None:
            try:
                import pynvml
            except ImportError as err:
                raise NvmlUnavailable("nvidia-ml-py is not installed") from err
            self._nvml = pynvml
        return self._nvml

    def _handle(self, index: int) -> Any:
        if not self._open:
            raise TelemetryError("NVML is not open (the source was closed or never opened)")
        if not 0 <= index < len(self._handles):
            raise TelemetryError(f"no GPU with index {index} (found {len(self._handles)})")
        return self._handles[index]

    def _nvml_error(self) -> type[BaseException]:
        return getattr(self._nvml, "NVMLError", Exception)

    def _const(self, name: str) -> int:
        value: int = getattr(self._nvml, name, _FALLBACKS[name] if name in _FALLBACKS else _ERROR_CODES[name])
        return value

    def _is(self, err: BaseException, names: tuple[str, ...]) -> bool:
        return getattr(err, "value", None) in {self._const(name) for name in names}

    def _optional(self, reader: Callable[..., Any], *args: Any) -> Any:
        """A reading that may be missing for any NVML reason."""
        try:
            return reader(*args)
        except self._nvml_error():
            return None

    def _field(self, reader: Callable[..., Any], *args: Any) -> Any:
        """One NVML reading: None when this GPU/driver lacks it; TelemetryError when the GPU or driver is gone."""
        try:
            return reader(*args)
        except self._nvml_error() as err:
            if self._is(err, _FATAL_ERRORS):
                raise self._telemetry_error(err) from err
            if not self._is(err, _MISSING_FIELD_ERRORS):
                log.debug("NVML %s failed: %s", getattr(reader, "__name__", reader), self._reason(err))
            return None

    def _telemetry_error(self, err: BaseException, index: int | None = None) -> TelemetryError:
        where = "" if index is None else f" (GPU {index})"
        if self._is(err, ("NVML_ERROR_GPU_IS_LOST",)):
            return TelemetryError(f"NVML: the GPU is lost{where}: it fell off the bus or hung; reopen when it returns")
        if self._is(err, _FATAL_ERRORS):
            return TelemetryError(f"NVML: the driver is gone{where} ({self._reason(err)}); reopen when it returns")
        return TelemetryError(f"NVML error{where}: {self._reason(err)}")

    @staticmethod
    def _reason(err: BaseException) -> str:
        try:
            text = str(err)
        except Exception:
            text = ""
        return text or type(err).__name__

    @staticmethod
    def _new_samples(raw_samples: Any, value_type: int, after_us: int) -> list[tuple[int, float]]:
        """(µs, mW) pairs newer than after_us, oldest first, one per timestamp."""
        by_time: dict[int, float] = {}
        for sample in raw_samples or ():
            us = int(sample.timeStamp)
            if us > after_us:
                by_time[us] = _value_of(sample.sampleValue, value_type)
        return sorted(by_time.items())


def _value_of(value: Any, value_type: int) -> float:
    """The number inside an NVML c_nvmlValue_t union, read through the member its value type names."""
    member = _VALUE_MEMBERS[value_type] if 0 <= value_type < len(_VALUE_MEMBERS) else "uiVal"
    return float(getattr(value, member))


def _seconds_to_us(seconds: float) -> int:
    return max(0, round(seconds * 1e6))


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return None if value is None else str(value)


def _milli(value: float | None) -> float | None:
    return None if value is None else float(value) / 1000.0


def _mib(value: float | None) -> float | None:
    return None if value is None else float(value) / MIB


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)
