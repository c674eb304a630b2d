"""A stand-in for the `pynvml` module (nvidia-ml-py) that never touches a GPU and records every call.

In-process: `FakeNvml()` is an object with pynvml's names; pass it where claw takes an `nvml` module.
In a subprocess: put this folder first on PYTHONPATH, so `import pynvml` finds this file; the environment
configures it:
  FAKE_NVML_LOG=path          append one JSON line per NVML call: {"call": name, "args": [...], "pid": ...}
  FAKE_NVML_ABSENT=1          nvmlInit fails as if no driver were installed
  FAKE_NVML_NO_PERMISSION=1   clock setters answer NVML_ERROR_NO_PERMISSION (as for a non-root user)
  FAKE_NVML_SKEW_S=seconds    power sample timestamps are this far behind the wall clock
  FAKE_NVML_VRAM_USED_MIB=n   GPU memory in use (default 512 of 143771 MiB)
  FAKE_NVML_GPUS=n            this many GPUs (default 1)
  FAKE_NVML_PROCESSES=g:pid:mib,…   compute processes holding GPU memory (GPU index, pid, MiB)
"""

from __future__ import annotations

import json
import os
import time
from types import SimpleNamespace

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_TOTAL_POWER_SAMPLES = 0
NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2
NVML_TEMPERATURE_GPU = 0
NVML_VALUE_TYPE_UNSIGNED_INT = 1
NVML_ERROR_TIMEOUT = 10
NVML_PCIE_UTIL_TX_BYTES = 0
NVML_PCIE_UTIL_RX_BYTES = 1

_MESSAGES = {
    1: "Uninitialized",
    3: "Not Supported",
    4: "Insufficient Permissions",
    6: "Not Found",
    10: "Timeout",
    12: "NVML Shared Library Not Found",
}
SM_CLOCKS = tuple(range(1980, 344, -15))
IDLE_WATTS = 80.0


class NVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return _MESSAGES.get(self.value, f"NVML error {self.value}")


class FakeNvml:
    """pynvml's names over one fake H200. `calls` lists (name, args) of every NVML call made."""

    NVMLError = NVMLError
    NVML_SUCCESS = NVML_SUCCESS
    NVML_ERROR_NOT_SUPPORTED = NVML_ERROR_NOT_SUPPORTED
    NVML_ERROR_NO_PERMISSION = NVML_ERROR_NO_PERMISSION
    NVML_ERROR_NOT_FOUND = NVML_ERROR_NOT_FOUND
    NVML_ERROR_LIBRARY_NOT_FOUND = NVML_ERROR_LIBRARY_NOT_FOUND
    NVML_TOTAL_POWER_SAMPLES = NVML_TOTAL_POWER_SAMPLES
    NVML_CLOCK_SM = NVML_CLOCK_SM
    NVML_CLOCK_MEM = NVML_CLOCK_MEM
    NVML_TEMPERATURE_GPU = NVML_TEMPERATURE_GPU

    def __init__(
        self,
        *,
        gpus: int = 1,
        absent: bool = False,
        no_permission: bool = False,
        skew_s: float = 0.0,
        log_path: str | None = None,
        fail_reset: bool = False,
        vram_used_mib: int = 512,
        processes: dict[int, list[tuple[int, int]]] | None = None,
    ) -> None:
        self.gpus = gpus
        self.vram_used_mib = vram_used_mib
        self.processes = processes or {}  # GPU index -> [(pid, MiB)]
        self.absent = absent
        self.no_permission = no_permission
        self.fail_reset = fail_reset
        self.skew_s = skew_s
        self.log_path = log_path
        self.calls: list[tuple[str, tuple]] = []
        self.locked: dict[int, int | None] = dict.fromkeys(range(gpus))
        self.started = time.time()
        self.initialised = False

    def _record(self, name: str, *args) -> None:
        self.calls.append((name, args))
        if self.log_path:
            with open(self.log_path, "a") as log:
                log.write(
                    json.dumps(
                        {
                            "call": name,
                            "args": [a if isinstance(a, (int, float, str)) else repr(a) for a in args],
                            "pid": os.getpid(),
                        }
                    )
                    + "\n"
                )

    def setter_calls(self) -> list[tuple[str, tuple]]:
        return [c for c in self.calls if "Set" in c[0] or "Reset" in c[0]]

    # ---- library
    def nvmlInit(self) -> None:
        self._record("nvmlInit")
        if self.absent:
            raise NVMLError(NVML_ERROR_LIBRARY_NOT_FOUND)
        self.initialised = True

    def nvmlShutdown(self) -> None:
        self._record("nvmlShutdown")
        self.initialised = False

    def nvmlSystemGetDriverVersion(self) -> str:
        return "580.159.04"

    def nvmlDeviceGetCount(self) -> int:
        self._record("nvmlDeviceGetCount")
        return self.gpus

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        if not 0 <= index < self.gpus:
            raise NVMLError(NVML_ERROR_NOT_FOUND)
        return index

    # ---- static facts
    def nvmlDeviceGetName(self, handle) -> str:
        return "NVIDIA H200"

    def nvmlDeviceGetUUID(self, handle) -> str:
        return f"GPU-fake-{handle}"

    def nvmlDeviceGetPowerManagementLimitConstraints(self, handle):
        return (200_000, 700_000)

    def nvmlDeviceGetEnforcedPowerLimit(self, handle) -> int:
        return 700_000

    def nvmlDeviceGetPowerManagementLimit(self, handle) -> int:
        return 700_000

    def nvmlDeviceGetMaxClockInfo(self, handle, kind) -> int:
        return 1980 if kind == NVML_CLOCK_SM else 3201

    def nvmlDeviceGetMemoryInfo(self, handle):
        total = 143771
        used = self.vram_used_mib + sum(mib for _, mib in self.processes.get(handle, []))
        return SimpleNamespace(total=total * 2**20, used=used * 2**20, free=(total - used) * 2**20)

    def nvmlDeviceGetSupportedMemoryClocks(self, handle):
        return [3201, 2201]

    def nvmlDeviceGetSupportedGraphicsClocks(self, handle, mem_clock):
        return list(SM_CLOCKS)

    # ---- readings
    def nvmlDeviceGetClockInfo(self, handle, kind) -> int:
        if kind == NVML_CLOCK_SM:
            return self.locked.get(handle) or 345
        return 3201

    def nvmlDeviceGetPowerUsage(self, handle) -> int:
        return int(IDLE_WATTS * 1000)

    def nvmlDeviceGetUtilizationRates(self, handle):
        busy = bool(self.processes.get(handle))
        return SimpleNamespace(gpu=12 * busy, memory=5 * busy)

    def nvmlDeviceGetTemperature(self, handle, sensor) -> int:
        return 31 + handle

    def nvmlDeviceGetPerformanceState(self, handle) -> int:
        return 0

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle) -> int:
        return 0x1

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        return [SimpleNamespace(pid=pid, usedGpuMemory=mib * 2**20) for pid, mib in self.processes.get(handle, [])]

    def nvmlDeviceGetProcessUtilization(self, handle, since_us):
        running = self.processes.get(handle, [])
        if not running:
            raise NVMLError(NVML_ERROR_NOT_FOUND)
        now_us = int(time.time() * 1e6)
        return [SimpleNamespace(pid=pid, smUtil=12, memUtil=5, timeStamp=now_us) for pid, _ in running]

    def nvmlDeviceGetPcieThroughput(self, handle, counter) -> int:
        return (850, 1_250)[counter] * (handle + 1)  # KB/s

    def nvmlDeviceGetTotalEccErrors(self, handle, error_type, counter_type) -> int:
        return 0

    def nvmlDeviceGetIndex(self, handle) -> int:
        return handle

    # ---- events (Xid critical errors): none ever happen here
    def nvmlEventSetCreate(self):
        return "event-set"

    def nvmlDeviceRegisterEvents(self, handle, event_types, event_set) -> None:
        return None

    def nvmlEventSetWait_v2(self, event_set, timeout_ms):
        raise NVMLError(NVML_ERROR_TIMEOUT)

    def nvmlEventSetFree(self, event_set) -> None:
        return None

    def nvmlDeviceGetTotalEnergyConsumption(self, handle) -> int:
        return int((time.time() - self.started + 1000.0) * IDLE_WATTS * 1000)

    def nvmlDeviceGetSamples(self, handle, kind, last_seen_us):
        """Up to ~2.4 s of 20 ms samples ending now (minus the configured skew), newer than last_seen_us."""
        newest = int((time.time() - self.skew_s) * 50) * 20_000
        samples = [
            SimpleNamespace(timeStamp=t, sampleValue=SimpleNamespace(uiVal=int(IDLE_WATTS * 1000)))
            for t in range(newest - 118 * 20_000, newest + 1, 20_000)
            if t > last_seen_us
        ]
        if not samples:
            raise NVMLError(NVML_ERROR_NOT_FOUND)
        return NVML_VALUE_TYPE_UNSIGNED_INT, samples

    # ---- setters (the only calls that change a GPU)
    def nvmlDeviceSetGpuLockedClocks(self, handle, min_mhz: int, max_mhz: int) -> None:
        self._record("nvmlDeviceSetGpuLockedClocks", handle, min_mhz, max_mhz)
        if self.no_permission:
            raise NVMLError(NVML_ERROR_NO_PERMISSION)
        self.locked[handle] = max_mhz

    def nvmlDeviceResetGpuLockedClocks(self, handle) -> None:
        self._record("nvmlDeviceResetGpuLockedClocks", handle)
        if self.no_permission or self.fail_reset:
            raise NVMLError(NVML_ERROR_NO_PERMISSION if self.no_permission else 999)
        self.locked[handle] = None

    def __getattr__(self, name: str):
        if name.startswith("nvmlDevice"):

            def not_supported(*args):
                raise NVMLError(NVML_ERROR_NOT_SUPPORTED)

            return not_supported
        raise AttributeError(name)


def _processes_from(text: str) -> dict[int, list[tuple[int, int]]]:
    processes: dict[int, list[tuple[int, int]]] = {}
    for item in filter(None, text.split(",")):
        gpu, pid, mib = (int(part) for part in item.split(":"))
        processes.setdefault(gpu, []).append((pid, mib))
    return processes


_instance = FakeNvml(
    gpus=int(os.environ.get("FAKE_NVML_GPUS", "1") or 1),
    processes=_processes_from(os.environ.get("FAKE_NVML_PROCESSES", "")),
    absent=os.environ.get("FAKE_NVML_ABSENT") == "1",
    no_permission=os.environ.get("FAKE_NVML_NO_PERMISSION") == "1",
    skew_s=float(os.environ.get("FAKE_NVML_SKEW_S", "0") or 0),
    log_path=os.environ.get("FAKE_NVML_LOG") or None,
    vram_used_mib=int(os.environ.get("FAKE_NVML_VRAM_USED_MIB", "512") or 512),
)


def __getattr__(name: str):
    if name.startswith("nvml"):
        return getattr(_instance, name)
    raise AttributeError(name)
