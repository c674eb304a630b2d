"""NvmlSource against a fake NVML module: units, the 20 ms sample buffer, NotSupported fields, lost GPUs."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest

from claw_tui.telemetry.nvml import NvmlSource, NvmlUnavailable, is_ollama_runner
from claw_tui.telemetry.types import TelemetryError

# ----- a fake NVML module -------------------------------------------------------------------------------------------

ERROR_NAMES = {
    1: "Uninitialized",
    3: "Not Supported",
    4: "Insufficient Permissions",
    6: "Not Found",
    9: "Driver Not Loaded",
    12: "NVML Shared Library Not Found",
    15: "GPU is lost",
    999: "Unknown Error",
}
SAMPLE_PERIOD_US = 20_000
BUFFER_SAMPLES = 119
START_US = 1_760_000_000_000_000  # µs since the epoch, like the driver's timestamps


class FakeNvmlError(Exception):
    def __init__(self, value: int):
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return ERROR_NAMES.get(self.value, f"NVML Error with code {self.value}")


@dataclass
class FakeGpu:
    name: str = "NVIDIA H200"
    uuid: str = "GPU-0000"
    watts: float = 80.0  # what every sample and the instant field read
    energy_mj: int = 123_456_789
    sm_mhz: int = 345
    mem_mhz: int = 3201
    util: int = 0
    mem_util: int = 0
    temp: int = 31
    vram_used: int = 512 * 1024 * 1024
    vram_total: int = 143771 * 1024 * 1024
    pstate: int = 0
    reasons: int = 0x1
    limit_mw: int = 700_000
    processes: list = field(default_factory=list)
    unsupported: set = field(default_factory=set)  # names of NVML functions that answer NotSupported
    samples: list = field(default_factory=list)  # (µs, mW), oldest first
    fan: int = 41
    pcie_kb_s: tuple = (1200, 3_400_000)  # (tx, rx)
    ecc: tuple = (3, 0)  # (corrected, uncorrected)
    process_util: list = field(default_factory=list)  # (pid, SM %, memory %)
    xids: list = field(default_factory=list)  # Xid codes waiting in the event set


class FakeNvml:
    """Stands in for the pynvml module. Time is `now_us`; `advance(seconds)` adds 20 ms power samples."""

    NVMLError = FakeNvmlError
    NVML_SUCCESS = 0
    NVML_ERROR_UNINITIALIZED = 1
    NVML_ERROR_NOT_SUPPORTED = 3
    NVML_ERROR_NO_PERMISSION = 4
    NVML_ERROR_NOT_FOUND = 6
    NVML_ERROR_DRIVER_NOT_LOADED = 9
    NVML_ERROR_LIBRARY_NOT_FOUND = 12
    NVML_ERROR_FUNCTION_NOT_FOUND = 13
    NVML_ERROR_GPU_IS_LOST = 15
    NVML_ERROR_UNKNOWN = 999
    NVML_TOTAL_POWER_SAMPLES = 0
    NVML_FI_DEV_POWER_INSTANT = 186
    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2
    NVML_TEMPERATURE_GPU = 0
    NVML_VALUE_TYPE_UNSIGNED_INT = 1

    def __init__(self, gpus: list[FakeGpu] | None = None):
        self.gpus = gpus if gpus is not None else [FakeGpu()]
        self.calls: list[str] = []
        self.now_us = START_US
        self.init_error: int | None = None
        self.lost = False  # every device call answers GPU_IS_LOST
        self.ignore_last_seen = False  # a driver that returns the whole buffer every time
        self.initialised = 0

    def __getattribute__(self, name: str):
        if name.startswith("nvml"):
            object.__getattribute__(self, "calls").append(name)
        return object.__getattribute__(self, name)

    # time and samples
    def advance(self, seconds: float) -> None:
        end = self.now_us + int(seconds * 1e6)
        for gpu in self.gpus:
            t = gpu.samples[-1][0] if gpu.samples else self.now_us
            while t + SAMPLE_PERIOD_US <= end:
                t += SAMPLE_PERIOD_US
                gpu.samples.append((t, int(gpu.watts * 1000)))
            del gpu.samples[:-BUFFER_SAMPLES]
            gpu.energy_mj += int(gpu.watts * seconds * 1000)
        self.now_us = end

    def _gpu(self, handle, function: str) -> FakeGpu:
        if not self.initialised:
            raise FakeNvmlError(self.NVML_ERROR_UNINITIALIZED)
        if self.lost:
            raise FakeNvmlError(self.NVML_ERROR_GPU_IS_LOST)
        gpu = self.gpus[handle]
        if function in gpu.unsupported:
            raise FakeNvmlError(self.NVML_ERROR_NOT_SUPPORTED)
        return gpu

    # library
    def nvmlInit(self):
        if self.init_error is not None:
            raise FakeNvmlError(self.init_error)
        self.initialised += 1

    def nvmlShutdown(self):
        if not self.initialised:
            raise FakeNvmlError(self.NVML_ERROR_UNINITIALIZED)
        self.initialised -= 1

    def nvmlSystemGetDriverVersion(self):
        return "580.159.04"

    def nvmlDeviceGetCount(self):
        if self.lost:
            raise FakeNvmlError(self.NVML_ERROR_GPU_IS_LOST)
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index):
        self._gpu(index, "nvmlDeviceGetHandleByIndex")
        return index

    # static
    def nvmlDeviceGetName(self, h):
        return self._gpu(h, "nvmlDeviceGetName").name.encode()  # older bindings return bytes

    def nvmlDeviceGetUUID(self, h):
        return self._gpu(h, "nvmlDeviceGetUUID").uuid

    def nvmlDeviceGetPowerManagementLimitConstraints(self, h):
        self._gpu(h, "nvmlDeviceGetPowerManagementLimitConstraints")
        return [200_000, 700_000]

    def nvmlDeviceGetMaxClockInfo(self, h, clock):
        self._gpu(h, "nvmlDeviceGetMaxClockInfo")
        return 1980 if clock == self.NVML_CLOCK_SM else 3201

    def nvmlDeviceGetSupportedMemoryClocks(self, h):
        self._gpu(h, "nvmlDeviceGetSupportedMemoryClocks")
        return [3201, 2201]

    def nvmlDeviceGetSupportedGraphicsClocks(self, h, mem_mhz):
        self._gpu(h, "nvmlDeviceGetSupportedGraphicsClocks")
        return [1980, 1965, 345] if mem_mhz == 3201 else [1500]

    # live
    def nvmlDeviceGetSamples(self, h, sampling_type, last_seen_us):
        gpu = self._gpu(h, "nvmlDeviceGetSamples")
        assert sampling_type == self.NVML_TOTAL_POWER_SAMPLES
        after = 0 if self.ignore_last_seen else last_seen_us
        rows = [s for s in gpu.samples if s[0] > after]
        if not rows:
            raise FakeNvmlError(self.NVML_ERROR_NOT_FOUND)
        return 1, [SimpleNamespace(timeStamp=us, sampleValue=SimpleNamespace(uiVal=mw)) for us, mw in rows]

    def nvmlDeviceGetFieldValues(self, h, field_ids):
        gpu = self._gpu(h, "nvmlDeviceGetFieldValues")
        assert field_ids == [self.NVML_FI_DEV_POWER_INSTANT]
        ret = self.NVML_ERROR_NOT_SUPPORTED if "POWER_INSTANT" in gpu.unsupported else 0
        value = SimpleNamespace(uiVal=int(gpu.watts * 1000), dVal=0.0)
        return [SimpleNamespace(fieldId=186, nvmlReturn=ret, valueType=1, value=value, timestamp=self.now_us)]

    def nvmlDeviceGetPowerUsage(self, h):
        return int(self._gpu(h, "nvmlDeviceGetPowerUsage").watts * 1000) - 5000  # the ~1 s average lags

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        return self._gpu(h, "nvmlDeviceGetTotalEnergyConsumption").energy_mj

    def nvmlDeviceGetEnforcedPowerLimit(self, h):
        return self._gpu(h, "nvmlDeviceGetEnforcedPowerLimit").limit_mw

    def nvmlDeviceGetPowerManagementLimit(self, h):
        return self._gpu(h, "nvmlDeviceGetPowerManagementLimit").limit_mw

    def nvmlDeviceGetClockInfo(self, h, clock):
        gpu = self._gpu(h, "nvmlDeviceGetClockInfo")
        return gpu.sm_mhz if clock == self.NVML_CLOCK_SM else gpu.mem_mhz

    def nvmlDeviceGetUtilizationRates(self, h):
        gpu = self._gpu(h, "nvmlDeviceGetUtilizationRates")
        return SimpleNamespace(gpu=gpu.util, memory=gpu.mem_util)

    def nvmlDeviceGetTemperature(self, h, sensor):
        return self._gpu(h, "nvmlDeviceGetTemperature").temp

    def nvmlDeviceGetMemoryInfo(self, h):
        gpu = self._gpu(h, "nvmlDeviceGetMemoryInfo")
        return SimpleNamespace(used=gpu.vram_used, total=gpu.vram_total, free=gpu.vram_total - gpu.vram_used)

    def nvmlDeviceGetPerformanceState(self, h):
        return self._gpu(h, "nvmlDeviceGetPerformanceState").pstate

    def nvmlDeviceGetCurrentClocksEventReasons(self, h):
        return self._gpu(h, "nvmlDeviceGetCurrentClocksEventReasons").reasons

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        gpu = self._gpu(h, "nvmlDeviceGetComputeRunningProcesses")
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in gpu.processes]

    def nvmlDeviceGetFanSpeed(self, h):
        return self._gpu(h, "nvmlDeviceGetFanSpeed").fan

    def nvmlDeviceGetPcieThroughput(self, h, counter):
        return self._gpu(h, "nvmlDeviceGetPcieThroughput").pcie_kb_s[counter]

    def nvmlDeviceGetTotalEccErrors(self, h, error_type, counter_type):
        return self._gpu(h, "nvmlDeviceGetTotalEccErrors").ecc[error_type]

    def nvmlDeviceGetProcessUtilization(self, h, since_us):
        gpu = self._gpu(h, "nvmlDeviceGetProcessUtilization")
        if not gpu.process_util:
            raise FakeNvmlError(self.NVML_ERROR_NOT_FOUND)
        return [
            SimpleNamespace(pid=p, smUtil=sm, memUtil=mem, timeStamp=self.now_us) for p, sm, mem in gpu.process_util
        ]

    def nvmlDeviceGetIndex(self, h):
        return h

    def nvmlEventSetCreate(self):
        return "event-set"

    def nvmlDeviceRegisterEvents(self, h, types, event_set):
        self._gpu(h, "nvmlDeviceRegisterEvents")

    def nvmlEventSetWait_v2(self, event_set, timeout_ms):
        for index, gpu in enumerate(self.gpus):
            if gpu.xids:
                return SimpleNamespace(device=index, eventType=0x8, eventData=gpu.xids.pop(0))
        raise FakeNvmlError(10)  # NVML_ERROR_TIMEOUT

    def nvmlEventSetFree(self, event_set):
        pass


ALL_SNAPSHOT_FUNCTIONS = {
    "nvmlDeviceGetFieldValues",
    "nvmlDeviceGetPowerUsage",
    "nvmlDeviceGetEnforcedPowerLimit",
    "nvmlDeviceGetPowerManagementLimit",
    "nvmlDeviceGetClockInfo",
    "nvmlDeviceGetUtilizationRates",
    "nvmlDeviceGetTemperature",
    "nvmlDeviceGetMemoryInfo",
    "nvmlDeviceGetPerformanceState",
    "nvmlDeviceGetCurrentClocksEventReasons",
    "nvmlDeviceGetComputeRunningProcesses",
}


def fixed_names(pid: int) -> tuple[str, bool]:
    names = {4242: ("ollama", True), 77: ("python3", False)}
    return names.get(pid, (f"pid {pid}", False))


def make_source(fake: FakeNvml) -> NvmlSource:
    return NvmlSource(nvml=fake, clock=lambda: fake.now_us / 1e6, process_describer=fixed_names)


@pytest.fixture
def fake() -> FakeNvml:
    return FakeNvml()


# ----- static facts ------------------------------------------------------------------------------------------------


def test_open_reads_static_facts_in_claw_units(fake):
    [static] = make_source(fake).open()
    assert static.index == 0
    assert static.name == "NVIDIA H200"  # bytes from older bindings are decoded
    assert static.uuid == "GPU-0000"
    assert static.driver == "580.159.04"
    assert static.power_limit_w == 700.0
    assert (static.power_limit_min_w, static.power_limit_max_w) == (200.0, 700.0)
    assert (static.max_sm_clock_mhz, static.max_mem_clock_mhz) == (1980, 3201)
    assert static.supported_sm_clocks_mhz == (345, 1965, 1980)  # at the highest memory clock, ascending
    assert static.vram_total_mib == 143771.0


def test_static_facts_tolerate_not_supported(fake):
    fake.gpus[0].unsupported |= {
        "nvmlDeviceGetPowerManagementLimitConstraints",
        "nvmlDeviceGetMaxClockInfo",
        "nvmlDeviceGetSupportedMemoryClocks",
        "nvmlDeviceGetUUID",
    }
    [static] = make_source(fake).open()
    assert static.power_limit_min_w is None and static.power_limit_max_w is None
    assert static.max_sm_clock_mhz is None and static.supported_sm_clocks_mhz == ()
    assert static.uuid == ""


# ----- snapshots --------------------------------------------------------------------------------------------------


def test_snapshot_converts_units_and_decodes_reasons(fake):
    gpu = fake.gpus[0]
    gpu.watts, gpu.sm_mhz, gpu.util, gpu.temp, gpu.pstate = 612.5, 1485, 97, 58, 0
    gpu.reasons = 0x4 | 0x8
    gpu.vram_used = 20 * 1024 * 1024 * 1024
    source = make_source(fake)
    source.open()
    snap = source.snapshot(0)
    assert snap.power_w == 612.5  # the instant field, not the lagging 1 s average (607.5)
    assert snap.power_limit_w == 700.0
    assert (snap.sm_clock_mhz, snap.mem_clock_mhz) == (1485, 3201)
    assert (snap.util_pct, snap.temp_c) == (97.0, 58.0)
    assert snap.vram_used_mib == 20 * 1024.0 and snap.vram_total_mib == 143771.0
    assert snap.pstate == "P0"
    assert snap.clock_event_reasons == ["sw_power_cap", "hw_slowdown"]
    assert snap.ts == fake.now_us / 1e6
    assert snap.energy_j is None  # the slow counter stays out of snapshots


def test_snapshot_fields_not_supported_are_none(fake):
    source = make_source(fake)
    source.open()
    fake.gpus[0].unsupported |= ALL_SNAPSHOT_FUNCTIONS | {"POWER_INSTANT"}
    snap = source.snapshot(0)
    for name in (
        "power_w",
        "power_limit_w",
        "sm_clock_mhz",
        "mem_clock_mhz",
        "util_pct",
        "mem_util_pct",
        "temp_c",
        "vram_used_mib",
        "pstate",
    ):
        assert getattr(snap, name) is None, name
    assert snap.vram_total_mib == 143771.0  # from the static facts read at open
    assert snap.clock_event_reasons == [] and snap.processes == []
    assert snap.name == "NVIDIA H200"


def test_no_permission_reads_as_none(fake):
    source = make_source(fake)
    source.open()

    def refuse(h, sensor):
        raise FakeNvmlError(FakeNvml.NVML_ERROR_NO_PERMISSION)

    fake.nvmlDeviceGetTemperature = refuse
    assert source.snapshot(0).temp_c is None


def test_power_falls_back_to_power_usage_without_instant_field(fake):
    fake.gpus[0].unsupported.add("POWER_INSTANT")
    fake.gpus[0].watts = 300.0
    source = make_source(fake)
    source.open()
    assert source.snapshot(0).power_w == 295.0


def test_unknown_pstate_is_none(fake):
    fake.gpus[0].pstate = 32  # NVML_PSTATE_UNKNOWN
    source = make_source(fake)
    source.open()
    assert source.snapshot(0).pstate is None
    fake.gpus[0].pstate = 8
    assert source.snapshot(0).pstate == "P8"


def test_processes_with_vram_and_ollama_runner_marked(fake):
    fake.gpus[0].processes = [(4242, 20 * 1024**3), (77, None)]
    source = make_source(fake)
    source.open()
    procs = source.snapshot(0).processes
    assert [(p.pid, p.name, p.vram_mib, p.is_ollama_runner) for p in procs] == [
        (4242, "ollama", 20480.0, True),
        (77, "python3", None, False),
    ]


@pytest.mark.parametrize(
    ("name", "cmdline", "expected"),
    [
        ("ollama", "/usr/local/bin/ollama runner --model /root/.ollama/models/blobs/sha256-1 --port 40000", True),
        ("ollama_llama_server", "", True),
        ("ollama", "/usr/local/bin/ollama serve", False),
        ("python3", "python3 train.py --runner fast", False),
    ],
)
def test_ollama_runner_detection(name, cmdline, expected):
    assert is_ollama_runner(name, cmdline) is expected


# ----- power samples ----------------------------------------------------------------------------------------------


def test_first_call_returns_the_buffer_in_watts_and_seconds(fake):
    fake.gpus[0].watts = 118.25
    fake.advance(1.0)
    source = make_source(fake)
    source.open()
    samples = source.power_samples(0, 0.0)
    assert len(samples) == 50
    assert samples[0].ts == (START_US + 20_000) / 1e6
    assert all(s.watts == 118.25 for s in samples)
    # Epoch seconds in a float resolve ~0.2 µs, so compare to the microsecond.
    assert [round((b.ts - a.ts) * 1000, 3) for a, b in itertools.pairwise(samples)] == [20.0] * 49


def test_successive_calls_have_no_gaps_or_duplicates(fake):
    source = make_source(fake)
    source.open()
    collected = []
    since = 0.0
    for step in (0.3, 0.25, 1.0, 0.02, 0.0, 0.5, 2.0):
        fake.gpus[0].watts += 10
        fake.advance(step)
        batch = source.power_samples(0, since)
        if batch:
            since = batch[-1].ts
        collected += batch
    stamps = [round(s.ts * 1e6) for s in collected]
    assert stamps == sorted(set(stamps))
    assert all(b - a == SAMPLE_PERIOD_US for a, b in itertools.pairwise(stamps))
    assert len(stamps) == int(4.07 / 0.02)


def test_duplicates_dropped_when_the_driver_repeats_old_samples(fake):
    fake.ignore_last_seen = True
    source = make_source(fake)
    source.open()
    fake.advance(0.5)
    first = source.power_samples(0, 0.0)
    fake.advance(0.5)
    # The caller passes an old since_ts; the source still returns nothing twice.
    second = source.power_samples(0, 0.0)
    assert len(first) == 25 and len(second) == 25
    assert second[0].ts > first[-1].ts


def test_since_ts_filters_strictly_newer(fake):
    fake.advance(1.0)
    source = make_source(fake)
    source.open()
    cut = (START_US + 500_000) / 1e6
    samples = source.power_samples(0, cut)
    assert samples[0].ts > cut and len(samples) == 25


def test_no_new_samples_is_an_empty_list(fake):
    fake.advance(0.2)
    source = make_source(fake)
    source.open()
    assert len(source.power_samples(0, 0.0)) == 10
    assert source.power_samples(0, 0.0) == []  # the driver answers NOT_FOUND


def test_samples_not_supported_fall_back_to_one_instant_sample(fake):
    fake.gpus[0].unsupported.add("nvmlDeviceGetSamples")
    fake.gpus[0].watts = 250.0
    source = make_source(fake)
    source.open()
    fake.advance(0.1)
    [sample] = source.power_samples(0, 0.0)
    assert sample.watts == 250.0 and sample.ts == fake.now_us / 1e6
    assert source.power_samples(0, 0.0) == []  # same instant: nothing new
    fake.advance(0.1)
    assert len(source.power_samples(0, 0.0)) == 1
    assert fake.calls.count("nvmlDeviceGetSamples") == 1  # not asked again once NotSupported


def test_energy_counter_in_joules_and_none_when_unsupported(fake):
    source = make_source(fake)
    source.open()
    assert source.energy_counter_j(0) == 123_456.789
    fake.gpus[0].unsupported.add("nvmlDeviceGetTotalEnergyConsumption")
    assert source.energy_counter_j(0) is None


# ----- several GPUs -----------------------------------------------------------------------------------------------


def test_several_gpus_are_kept_apart():
    fake = FakeNvml([FakeGpu(name="NVIDIA H200", watts=100.0), FakeGpu(name="NVIDIA H100", uuid="GPU-1", watts=400.0)])
    source = make_source(fake)
    statics = source.open()
    assert [s.name for s in statics] == ["NVIDIA H200", "NVIDIA H100"]
    fake.advance(0.4)
    a = source.power_samples(0, 0.0)
    fake.advance(0.4)
    b = source.power_samples(1, 0.0)
    assert {s.watts for s in a} == {100.0} and len(a) == 20
    assert {s.watts for s in b} == {400.0} and len(b) == 40  # GPU 1's cursor is its own
    assert source.snapshot(1).name == "NVIDIA H100" and source.snapshot(1).power_w == 400.0
    with pytest.raises(TelemetryError, match="no GPU with index 2"):
        source.snapshot(2)


# ----- failures and recovery --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (12, "NVML Shared Library Not Found"),
        (9, "Driver Not Loaded"),
    ],
)
def test_init_failure_is_nvml_unavailable_with_the_reason(fake, code, reason):
    fake.init_error = code
    with pytest.raises(NvmlUnavailable) as caught:
        make_source(fake).open()
    assert caught.value.reason == reason
    assert "no NVIDIA GPU/driver found" in str(caught.value)


def test_missing_pynvml_module_is_nvml_unavailable(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_pynvml(name, *args, **kwargs):
        if name == "pynvml":
            raise ImportError("No module named 'pynvml'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pynvml)
    with pytest.raises(NvmlUnavailable, match="nvidia-ml-py is not installed"):
        NvmlSource().open()


def test_zero_gpus_is_nvml_unavailable():
    fake = FakeNvml([])
    with pytest.raises(NvmlUnavailable, match="no GPU"):
        make_source(fake).open()
    assert fake.initialised == 0  # shut down again


def test_lost_gpu_raises_then_recovers_after_reopen(fake):
    source = make_source(fake)
    source.open()
    fake.advance(0.2)
    assert len(source.power_samples(0, 0.0)) == 10
    fake.lost = True
    for read in (lambda: source.snapshot(0), lambda: source.power_samples(0, 0.0), lambda: source.energy_counter_j(0)):
        with pytest.raises(TelemetryError, match="GPU is lost"):
            read()
    with pytest.raises(TelemetryError):
        source.reopen()
    fake.lost = False
    fake.advance(0.2)
    [static] = source.reopen()
    assert static.name == "NVIDIA H200"
    assert fake.initialised == 1  # every init was matched by a shutdown
    assert source.snapshot(0).power_w == 80.0
    samples = source.power_samples(0, 0.0)
    assert len(samples) == 10  # continues after the last sample returned before the loss


def test_driver_gone_mid_run_is_telemetry_error(fake):
    source = make_source(fake)
    source.open()

    def driver_gone(h):
        raise FakeNvmlError(FakeNvml.NVML_ERROR_DRIVER_NOT_LOADED)

    fake.nvmlDeviceGetTotalEnergyConsumption = driver_gone
    with pytest.raises(TelemetryError, match="driver is gone"):
        source.energy_counter_j(0)


def test_unknown_error_on_one_field_is_none_not_fatal(fake):
    source = make_source(fake)
    source.open()

    def flaky(h, sensor):
        raise FakeNvmlError(FakeNvml.NVML_ERROR_UNKNOWN)

    fake.nvmlDeviceGetTemperature = flaky
    snap = source.snapshot(0)
    assert snap.temp_c is None and snap.power_w == 80.0


def test_closed_source_refuses_reads(fake):
    source = make_source(fake)
    source.open()
    source.close()
    assert fake.initialised == 0
    with pytest.raises(TelemetryError, match="not open"):
        source.snapshot(0)
    source.close()  # closing twice is harmless


# ----- read-only --------------------------------------------------------------------------------------------------

# `nvmlEventSet…` (create, wait on, free an event set) names a set of events, not a setting: no GPU state changes.
SETTER_PATTERN = re.compile(r"nvml(?!EventSet)\w*(Set|Reset|Clear)\w*")


def test_no_setter_is_ever_called(fake):
    fake.gpus.append(FakeGpu(uuid="GPU-1"))
    fake.gpus[0].processes = [(4242, 1024**3)]
    source = make_source(fake)
    source.open()
    for _ in range(3):
        fake.advance(0.3)
        for i in (0, 1):
            source.snapshot(i)
            source.power_samples(i, 0.0)
            source.energy_counter_j(i)
    source.reopen()
    source.close()
    assert fake.calls, "the fake saw no calls"
    assert not [name for name in fake.calls if SETTER_PATTERN.fullmatch(name)]


def test_source_code_names_no_setter():
    code = Path(__file__).parent.parent.joinpath("claw_tui", "telemetry", "nvml.py").read_text()
    assert not SETTER_PATTERN.search(code)


# ----- the overview's fields ----------------------------------------------------------------------------------------


def test_overview_fields_are_read_and_a_missing_one_is_na_and_not_asked_again(fake):
    fake.gpus.append(FakeGpu(uuid="GPU-1", unsupported={"nvmlDeviceGetFanSpeed", "nvmlDeviceGetTotalEccErrors"}))
    fake.gpus[0].processes = [(4242, 20 * 1024**3)]
    fake.gpus[0].process_util = [(4242, 87, 40)]
    source = make_source(fake)
    source.open()
    first, second = source.snapshot(0), source.snapshot(1)
    assert (first.fan_pct, first.pcie_tx_kib_s, first.pcie_rx_kib_s) == (41.0, 1200.0, 3_400_000.0)
    assert (first.ecc_corrected, first.ecc_uncorrected) == (3, 0)
    assert (first.processes[0].sm_util_pct, first.processes[0].mem_util_pct) == (87.0, 40.0)
    assert (second.fan_pct, second.ecc_corrected, second.ecc_uncorrected) == (None, None, None)  # N/A
    fake.calls.clear()
    fake.advance(0.25)
    source.snapshot(1)
    assert "nvmlDeviceGetFanSpeed" not in fake.calls and "nvmlDeviceGetTotalEccErrors" not in fake.calls


def test_pcie_and_process_utilisation_are_read_every_few_seconds_one_gpu_at_a_time(fake):
    """A PCIe reading blocks 20 ms in the driver: at 4 Hz on 8 GPUs that would be most of the poll thread's time."""
    fake.gpus = [FakeGpu(uuid=f"GPU-{i}") for i in range(4)]
    source = make_source(fake)
    source.open()
    for i in range(4):
        source.snapshot(i)  # the first snapshot of each GPU reads everything
    fake.calls.clear()
    reads_per_round = []
    for _ in range(40):  # 10 s at 4 Hz
        fake.advance(0.25)
        before = fake.calls.count("nvmlDeviceGetPcieThroughput")
        for i in range(4):
            assert source.snapshot(i).pcie_rx_kib_s == 3_400_000.0  # the last reading in between
        reads_per_round.append((fake.calls.count("nvmlDeviceGetPcieThroughput") - before) // 2)
    assert max(reads_per_round) == 1  # never two GPUs in one round
    assert 4 * 2 <= sum(reads_per_round) <= 4 * 4  # each GPU every ~3 s over 10 s


def test_xid_errors_are_counted_per_gpu_from_the_drivers_events(fake):
    fake.gpus.append(FakeGpu(uuid="GPU-1"))
    source = make_source(fake)
    source.open()
    assert (source.snapshot(0).xid_count, source.snapshot(1).xid_count) == (0, 0)
    fake.gpus[1].xids = [79, 48]
    fake.advance(0.25)
    zero, one = source.snapshot(0), source.snapshot(1)
    assert (zero.xid_count, zero.last_xid) == (0, None)
    assert (one.xid_count, one.last_xid) == (2, 48)


def test_a_driver_without_events_leaves_xid_na(fake):
    fake.gpus[0].unsupported = {"nvmlDeviceRegisterEvents"}
    source = make_source(fake)
    source.open()
    assert source.snapshot(0).xid_count is None
