"""The idle downclock governor: a small state machine over a ClockControl.

States: `off` (disabled), `active` (requests in flight), `idle_pending` (nothing in flight, waiting
`idle_after_s`), `downclocked` (SM clock locked low). The gateway calls `wake()` before it forwards a request; a
downclocked GPU gets its clocks reset first and the time that took is the request's `wake_ms`. Optional deep idle
unloads resident models (Ollama keep_alive 0) after `unload_after_s`.

Clock control implementations: NVML (`nvmlDeviceSetGpuLockedClocks` / `nvmlDeviceResetGpuLockedClocks`, needs root
and `allow_clock_control = true`), the simulator's GPU, and a dry run that only logs what it would do. Locked clocks
outlive the process on real GPUs, so before locking the governor writes a state file; every exit path resets and
removes it, and a start that finds one left by a dead run resets the clocks it names.
"""

from __future__ import annotations

import asyncio
import atexit
import bisect
import json
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, TypeVarTuple

import platformdirs

from claw_tui.config import GovernorConfig
from claw_tui.quantiles import percentile
from claw_tui.telemetry.types import PowerSample

if TYPE_CHECKING:
    from claw_tui.sim.gpu import SimGPU

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

log = logging.getLogger(__name__)

STATES = ("off", "active", "idle_pending", "downclocked")
NVML_ERROR_NO_PERMISSION = 4
WAKE_HISTORY = 2000
TIMELINE_KEEP_S = 300.0
RETRY_AFTER_ERROR_S = 30.0


class ClockControlError(RuntimeError):
    """A clock setter failed. `permission` is true when the driver refused for lack of privileges."""

    def __init__(self, message: str, *, permission: bool = False) -> None:
        super().__init__(message)
        self.permission = permission


class ClockControl(Protocol):
    kind: str  # "nvml" | "sim" | "dry-run"
    persistent: bool  # locked clocks outlive the process (a state file is needed)
    blocking: bool  # setters may block: call them from a thread

    def gpus(self) -> list[int]: ...

    def lowest_sm_clock_mhz(self, gpu: int) -> int: ...

    def lock_sm_clock(self, gpu: int, mhz: int) -> int:
        """Lock the SM clock (min = max = mhz); returns the clock applied."""

    def reset_clocks(self, gpu: int) -> None: ...

    def close(self) -> None: ...


# ---- clock control implementations -------------------------------------------------------------------------------
class DryRunClockControl:
    """Changes nothing and logs what it would do. `reason` says why claw is not really controlling clocks."""

    kind = "dry-run"
    persistent = False
    blocking = False

    def __init__(self, reason: str, gpu_indexes: Iterable[int] = (0,), lowest_mhz: dict[int, int] | None = None):
        self.reason = reason
        self._gpus = list(gpu_indexes) or [0]
        self._lowest = lowest_mhz or {}
        self.calls: list[tuple[str, int, int | None]] = []

    def gpus(self) -> list[int]:
        return list(self._gpus)

    def lowest_sm_clock_mhz(self, gpu: int) -> int:
        return self._lowest.get(gpu, 0)

    def lock_sm_clock(self, gpu: int, mhz: int) -> int:
        log.info("governor (dry run: %s): would lock GPU %d SM clock to %s MHz", self.reason, gpu, mhz or "lowest")
        self.calls.append(("lock", gpu, mhz))
        return mhz

    def reset_clocks(self, gpu: int) -> None:
        log.info("governor (dry run): would reset GPU %d clocks", gpu)
        self.calls.append(("reset", gpu, None))

    def close(self) -> None:
        return None


class SimClockControl:
    """The simulated GPUs' clock setters (demo mode): locked clocks there really lower the simulated power."""

    kind = "sim"
    persistent = False
    blocking = False
    reason = ""

    def __init__(self, gpus: Sequence[SimGPU]) -> None:
        self._gpus = {gpu.index: gpu for gpu in gpus}

    def gpus(self) -> list[int]:
        return sorted(self._gpus)

    def lowest_sm_clock_mhz(self, gpu: int) -> int:
        return min(self._gpus[gpu].static().supported_sm_clocks_mhz)

    def lock_sm_clock(self, gpu: int, mhz: int) -> int:
        return self._gpus[gpu].lock_sm_clock(mhz)

    def reset_clocks(self, gpu: int) -> None:
        self._gpus[gpu].reset_clocks()

    def close(self) -> None:
        return None


class NvmlClockControl:
    """Real clock control through NVML. `nvml` is the pynvml module or a stand-in with the same names (tests)."""

    kind = "nvml"
    persistent = True
    blocking = True
    reason = ""

    def __init__(self, nvml: Any = None) -> None:
        if nvml is None:
            try:
                import pynvml
            except ImportError as exc:
                raise ClockControlError("nvidia-ml-py is not installed") from exc
            nvml = pynvml
        self._nvml = nvml
        self._lock = threading.Lock()
        try:
            nvml.nvmlInit()
        except Exception as exc:
            raise ClockControlError(f"NVML unavailable: {_nvml_text(exc)}") from exc
        try:
            count = int(nvml.nvmlDeviceGetCount())
            self._handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except Exception as exc:
            self.close()
            raise ClockControlError(f"NVML: cannot list GPUs: {_nvml_text(exc)}") from exc
        self._lowest: dict[int, int] = {}

    def gpus(self) -> list[int]:
        return list(range(len(self._handles)))

    def lowest_sm_clock_mhz(self, gpu: int) -> int:
        if gpu not in self._lowest:
            self._lowest[gpu] = self._read_lowest(gpu)
        return self._lowest[gpu]

    def _read_lowest(self, gpu: int) -> int:
        nvml, handle = self._nvml, self._handles[gpu]
        try:
            mem_clocks = nvml.nvmlDeviceGetSupportedMemoryClocks(handle)
            sm_clocks = nvml.nvmlDeviceGetSupportedGraphicsClocks(handle, max(mem_clocks))
            return int(min(sm_clocks))
        except Exception:
            return 0

    def lock_sm_clock(self, gpu: int, mhz: int) -> int:
        with self._lock:
            try:
                self._nvml.nvmlDeviceSetGpuLockedClocks(self._handles[gpu], mhz, mhz)
            except Exception as exc:
                raise self._error("lock the SM clock", gpu, exc) from exc
        return mhz

    def reset_clocks(self, gpu: int) -> None:
        with self._lock:
            try:
                self._nvml.nvmlDeviceResetGpuLockedClocks(self._handles[gpu])
            except Exception as exc:
                raise self._error("reset the clocks", gpu, exc) from exc

    def _error(self, what: str, gpu: int, exc: BaseException) -> ClockControlError:
        permission = getattr(exc, "value", None) == getattr(
            self._nvml, "NVML_ERROR_NO_PERMISSION", NVML_ERROR_NO_PERMISSION
        )
        if permission:
            who = "root without CAP_SYS_ADMIN (a container?)" if os.geteuid() == 0 else f"uid {os.geteuid()}"
            return ClockControlError(
                f"NVML refused to {what} on GPU {gpu}: clock control needs root with CAP_SYS_ADMIN (running as {who})",
                permission=True,
            )
        return ClockControlError(f"NVML could not {what} on GPU {gpu}: {_nvml_text(exc)}")

    def close(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except Exception:
            pass


def _nvml_text(exc: BaseException) -> str:
    try:
        return str(exc) or type(exc).__name__
    except Exception:
        return type(exc).__name__


def clock_control_for(
    config: GovernorConfig, *, sim_gpus: Sequence[SimGPU] | None = None, nvml: Any = None
) -> ClockControl:
    """The simulator's control in demo mode; NVML when allowed and possible; else a dry run that says why."""
    if sim_gpus:
        return SimClockControl(sim_gpus)
    if not config.allow_clock_control:
        return DryRunClockControl("allow_clock_control = false in [governor]")
    try:
        return NvmlClockControl(nvml)
    except ClockControlError as exc:
        return DryRunClockControl(str(exc))


# ---- the state file ----------------------------------------------------------------------------------------------
def default_state_file() -> Path:
    return platformdirs.user_state_path("claw") / "governor-locked.json"


class StateFile:
    """Notes which GPUs claw locked, so that a run that died with them locked is cleaned up by the next one."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def write(self, gpus: list[int], mhz: int, kind: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "kind": kind,
            "gpus": gpus,
            "mhz": mhz,
            "since": time.time(),
        }
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as handle:
            json.dump(data, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)

    def read(self) -> dict[str, Any] | None:
        """The note left behind, or None; an unreadable note still counts (every GPU is then reset)."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            return {"unreadable": str(exc)}
        try:
            data = json.loads(text)
        except ValueError:
            return {"unreadable": "not JSON"}
        return data if isinstance(data, dict) else {"unreadable": "not an object"}

    def clear(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---- idle power per governor state -------------------------------------------------------------------------------
class IdlePowerMeter:
    """Splits idle energy by clock state: a timeline of ("busy" | "idle" | "downclocked") and 20 ms power samples.

    Thread-safe: the governor marks states on the event loop, the sampler thread adds power.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._times: list[float] = []
        self._labels: list[str] = []
        self._last: dict[int, PowerSample] = {}
        self.energy_j = {"idle": 0.0, "downclocked": 0.0}
        self.seconds = {"idle": 0.0, "downclocked": 0.0}

    def mark(self, ts: float, label: str) -> None:
        with self._lock:
            if self._labels and self._labels[-1] == label:
                return
            if self._times and ts < self._times[-1]:
                ts = self._times[-1]
            self._times.append(ts)
            self._labels.append(label)
            self._prune(ts - TIMELINE_KEEP_S)

    def label_at(self, ts: float) -> str | None:
        i = bisect.bisect_right(self._times, ts) - 1
        return self._labels[i] if i >= 0 else None

    def add_power(self, gpu: int, samples: Iterable[PowerSample]) -> None:
        with self._lock:
            last = self._last.get(gpu)
            for sample in samples:
                if last is not None and sample.ts > last.ts:
                    label = self.label_at((last.ts + sample.ts) / 2)
                    if label in self.energy_j:
                        dt = sample.ts - last.ts
                        self.energy_j[label] += dt * (last.watts + sample.watts) / 2
                        self.seconds[label] += dt
                if last is None or sample.ts > last.ts:
                    last = sample
            if last is not None:
                self._last[gpu] = last

    def power_w(self, label: str) -> float | None:
        """Mean power per GPU over the time spent in this state (the ledger's idle_power_w uses the same rule)."""
        with self._lock:
            seconds = self.seconds[label]
            return self.energy_j[label] / seconds if seconds > 0 else None

    def _prune(self, before: float) -> None:
        cut = bisect.bisect_right(self._times, before) - 1
        if cut > 0:
            del self._times[:cut]
            del self._labels[:cut]


# ---- the governor ------------------------------------------------------------------------------------------------
class Governor:
    """Runs on the session's event loop; `status_json()` may be read from any thread."""

    def __init__(
        self,
        config: GovernorConfig,
        control: ClockControl,
        *,
        in_flight: Callable[[], int],
        last_activity: Callable[[], float | None] = lambda: None,
        unload_models: Callable[[], Awaitable[list[str]]] | None = None,
        gpu_busy: Callable[[int], bool] | None = None,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
        state_file: StateFile | None = None,
        reset_control: Callable[[], ClockControl] | None = None,
        clock: Callable[[], float] = time.time,
        tick_s: float | None = None,
    ) -> None:
        self.config = config
        self.control = control
        self.enabled = bool(config.enabled)
        self.state = "off"
        self.message = getattr(control, "reason", "")
        self.notices: list[str] = []
        self.locked_mhz: int | None = None
        self.unloaded_models: list[str] = []
        self.unloads = 0
        self.wakes = 0
        self.last_wake_ms: float | None = None
        self.wake_ms: deque[float] = deque(maxlen=WAKE_HISTORY)
        self.power = IdlePowerMeter()
        self._in_flight = in_flight
        self._last_activity = last_activity
        self._unload_models = unload_models
        self._gpu_busy = gpu_busy
        self._on_event = on_event
        self._state_file = state_file
        self._reset_control = reset_control
        self._clock = clock
        self._tick_s = tick_s
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._idle_since: float | None = None
        self._downclocked_since: float | None = None
        self._downclocked_s = 0.0
        self._enabled_since: float | None = None
        self._enabled_s = 0.0
        self._retry_at = 0.0
        self._unloaded_this_idle = False
        self._unload_task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._atexit_registered = False

    # ---- lifecycle ---------------------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.recover_left_locks()
        if self.enabled:
            self._set_enabled_state(True)
        self._task = asyncio.create_task(self._run(), name="claw-governor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None
        if self._unload_task is not None:
            self._unload_task.cancel()
        async with self._lock:
            if self.state == "downclocked" or self.locked_mhz is not None or self._note_left():
                await self._reset_all("stop")
        self._account_enabled(self._clock())
        self.state = "off"
        await self._call(self.control.close)
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    def _written_state_file(self) -> StateFile | None:
        """The state file, when this control's locks outlive the process (else nothing is written)."""
        return self._state_file if self.control.persistent else None

    def _note_left(self) -> bool:
        state_file = self._written_state_file()
        return state_file is not None and state_file.path.exists()

    async def recover_left_locks(self) -> None:
        """A previous run that died with locked clocks left a state file: reset what it names.

        This happens whatever the governor's own mode: resetting only restores the driver's defaults.
        """
        state_file = self._state_file
        if state_file is None:
            return
        note = state_file.read()
        if note is None:
            return
        pid = note.get("pid")
        if isinstance(pid, int) and pid != os.getpid() and pid_alive(pid):
            self._notice(f"GPU clocks are locked by another running claw (pid {pid}); leaving them alone")
            return
        control, own = self.control, True
        if not control.persistent:
            try:
                control, own = (self._reset_control or NvmlClockControl)(), False
            except ClockControlError as exc:
                self._notice(
                    f"GPU clocks may be locked by a previous claw run but NVML is not usable ({exc}); "
                    "run 'sudo nvidia-smi -rgc'"
                )
                return
        noted = note.get("gpus")
        gpus: list[int] = noted if isinstance(noted, list) else control.gpus()
        try:
            for gpu in gpus:
                if gpu in control.gpus():
                    await asyncio.to_thread(control.reset_clocks, gpu)
        except ClockControlError as exc:
            self._notice(
                f"GPU clocks left locked by a previous claw run could not be reset ({exc}); run 'sudo nvidia-smi -rgc'"
            )
            return
        finally:
            if not own:
                control.close()
        state_file.clear()
        who = f"pid {pid}" if pid else "an earlier run"
        self._notice(f"reset GPU clocks left locked by a previous claw run ({who}) that ended without resetting")
        self._event("recovered", {"pid": pid, "gpus": gpus})

    # ---- commands ----------------------------------------------------------------------------------------------
    async def set_enabled(
        self, enabled: bool, *, idle_after_s: float | None = None, unload_after_s: float | None = None
    ) -> dict[str, Any]:
        if idle_after_s is not None:
            self.config.idle_after_s = float(idle_after_s)
        if unload_after_s is not None:
            self.config.unload_after_s = float(unload_after_s)
        async with self._lock:
            if enabled == self.enabled:
                return self.status_json()
            if not enabled and self.state == "downclocked":
                await self._reset_all("disabled")
            self._set_enabled_state(enabled)
        self._event("enabled" if enabled else "disabled", {})
        log.info("governor %s", "enabled" if enabled else "disabled")
        return self.status_json()

    def _set_enabled_state(self, enabled: bool) -> None:
        now = self._clock()
        self.enabled = enabled
        if enabled:
            self._enabled_since = now
            self._idle_since = None
            self.state = "active" if self._in_flight() else "idle_pending"
            if self.state == "idle_pending":
                self._idle_since = now
        else:
            self._account_enabled(now)
            self.state = "off"
            self._idle_since = None

    async def wake(self, record: Any = None) -> None:
        """Before a request is forwarded: reset clocks if they are locked (the gateway's before_forward hook)."""
        if self.state == "downclocked" or self._lock.locked():
            started = time.perf_counter()
            async with self._lock:
                woke = self.state == "downclocked"
                if woke:
                    await self._reset_all("wake")
            if woke:
                wake_ms = (time.perf_counter() - started) * 1000
                self.wakes += 1
                self.last_wake_ms = wake_ms
                self.wake_ms.append(wake_ms)
                if record is not None:
                    record.wake_ms = wake_ms
                self._event("wake", {"wake_ms": round(wake_ms, 3), "request": getattr(record, "id", None)})
        self._mark_busy()

    def _mark_busy(self) -> None:
        self.power.mark(self._clock(), "busy")
        self._idle_since = None
        self._unloaded_this_idle = False
        if self.enabled:
            self.state = "active"

    # ---- the loop ---------------------------------------------------------------------------------------------
    def tick_s(self) -> float:
        if self._tick_s is not None:
            return self._tick_s
        return min(0.25, max(0.02, self.config.idle_after_s / 10))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s())
            try:
                await self.step()
            except Exception:  # the governor must never take the session down
                log.exception("governor step failed")

    async def step(self) -> None:
        """One look at the world: track busy/idle, downclock after idle_after_s, unload after unload_after_s."""
        now = self._clock()
        if self._in_flight() > 0:
            # A request that has not reached the gateway's before_forward hook yet (routing, queueing): the hook
            # wakes the GPU and charges the wake to that request.
            if self.state != "downclocked":
                self._mark_busy()
            return
        if self._gpu_busy_outside():
            if self.state == "downclocked":
                await self.wake(None)
            self._mark_busy()
            return
        if self._idle_since is None:
            self._idle_since = max(self._last_activity() or now, now - self.tick_s())
            self.power.mark(now, "downclocked" if self.state == "downclocked" else "idle")
            if self.enabled:
                self.state = "idle_pending" if self.state != "downclocked" else self.state
        if not self.enabled:
            return
        idle_for = now - self._idle_since
        if self.state == "idle_pending" and idle_for >= self.config.idle_after_s and now >= self._retry_at:
            await self._downclock()
        unload_after = self.config.unload_after_s
        unload_models = self._unload_models
        if (
            unload_after > 0
            and idle_for >= unload_after
            and not self._unloaded_this_idle
            and unload_models is not None
            and self._unload_task is None
        ):
            self._unloaded_this_idle = True
            self._unload_task = asyncio.create_task(self._unload(unload_models))

    def _gpu_busy_outside(self) -> bool:
        if self._gpu_busy is None:
            return False
        return any(self._gpu_busy(gpu) for gpu in self.control.gpus())

    async def _downclock(self) -> None:
        async with self._lock:
            if not self.enabled or self.state != "idle_pending" or self._in_flight() > 0:
                return
            gpus = self.control.gpus()
            target = self.config.idle_sm_clock_mhz or min(self.control.lowest_sm_clock_mhz(g) for g in gpus)
            try:
                if (state_file := self._written_state_file()) is not None:
                    state_file.write(gpus, target, self.control.kind)
                self._register_atexit()
                applied = [await self._call(self.control.lock_sm_clock, gpu, target) for gpu in gpus]
            except ClockControlError as exc:
                await self._lock_failed(exc)
                return
            except OSError as exc:  # the state file cannot be written: locking would be unsafe
                self._retry_at = self._clock() + RETRY_AFTER_ERROR_S
                self._notice(f"governor: cannot write its state file ({exc}); not downclocking")
                return
            now = self._clock()
            self.locked_mhz = min(applied) if applied else target
            self.state = "downclocked"
            self._downclocked_since = now
            self.power.mark(now, "downclocked")
        self._event("downclock", {"mhz": self.locked_mhz, "gpus": gpus, "mode": self.control.kind})
        log.info("governor: downclocked GPUs %s to %s MHz (%s)", gpus, self.locked_mhz, self.control.kind)

    async def _lock_failed(self, exc: ClockControlError) -> None:
        try:  # a partial lock must not stay behind
            for gpu in self.control.gpus():
                await self._call(self.control.reset_clocks, gpu)
            if (state_file := self._written_state_file()) is not None:
                state_file.clear()
        except ClockControlError:
            if exc.permission and (state_file := self._written_state_file()) is not None:
                state_file.clear()  # permission is the process's: no GPU was locked
        if exc.permission:
            self._notice(f"governor: {exc}; continuing as a dry run")
            self.control.close()
            self.control = DryRunClockControl(str(exc), self.control.gpus())
        else:
            self._retry_at = self._clock() + RETRY_AFTER_ERROR_S
            self._notice(f"governor: {exc}")

    async def _reset_all(self, why: str) -> None:
        """Reset every GPU's clocks (the caller holds the lock); the state file goes only once all succeeded."""
        now = self._clock()
        for gpu in self.control.gpus():
            try:
                await self._call(self.control.reset_clocks, gpu)
            except ClockControlError as exc:
                self._notice(f"governor: {exc}")  # still locked as far as we know: the next wake/stop tries again
                return
        if (state_file := self._written_state_file()) is not None:
            state_file.clear()
        if self._downclocked_since is not None:
            self._downclocked_s += now - self._downclocked_since
            self._downclocked_since = None
        self.locked_mhz = None
        self.state = "idle_pending" if self.enabled else "off"
        self.power.mark(now, "busy" if why == "wake" else "idle")
        if why != "wake":
            self._event("reset", {"why": why})

    async def _unload(self, unload_models: Callable[[], Awaitable[list[str]]]) -> None:
        try:
            names = await unload_models()
        except Exception as exc:
            self._notice(f"governor: unloading models failed: {exc}")
            names = []
        self.unloaded_models = names
        self.unloads += len(names)
        if names:
            self._event("unload", {"models": names})
            log.info("governor: unloaded %s", ", ".join(names))
        self._unload_task = None

    async def _call(self, fn: Callable[[*Ts], T], *args: *Ts) -> T:
        if not self.control.blocking:
            return fn(*args)
        # A thread of its own: a wake must not queue behind other work sent to the default executor.
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="claw-clocks")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _register_atexit(self) -> None:
        if self.control.persistent and not self._atexit_registered:
            atexit.register(self._reset_at_exit)
            self._atexit_registered = True

    def _reset_at_exit(self) -> None:
        """Last resort at interpreter exit (the loop is gone): reset synchronously if still locked."""
        if self.locked_mhz is None:
            return
        for gpu in self.control.gpus():
            try:
                self.control.reset_clocks(gpu)
            except ClockControlError:
                return
        if (state_file := self._written_state_file()) is not None:
            state_file.clear()

    # ---- reporting ---------------------------------------------------------------------------------------------
    def _notice(self, message: str) -> None:
        log.warning("%s", message)
        self.message = message
        self.notices.append(message)

    def _event(self, kind: str, data: dict[str, Any]) -> None:
        if self._on_event is not None:
            try:
                self._on_event(f"governor.{kind}", data)
            except Exception:
                log.exception("recording a governor event failed")

    def _account_enabled(self, now: float) -> None:
        if self._enabled_since is not None:
            self._enabled_s += now - self._enabled_since
            self._enabled_since = None

    def downclocked_s(self) -> float:
        extra = self._clock() - self._downclocked_since if self._downclocked_since is not None else 0.0
        return self._downclocked_s + extra

    def enabled_s(self) -> float:
        extra = self._clock() - self._enabled_since if self._enabled_since is not None else 0.0
        return self._enabled_s + extra

    def wake_p95_ms(self) -> float | None:
        return percentile(list(self.wake_ms), 95)

    def status_json(self) -> dict[str, Any]:
        now = self._clock()
        idle_for = now - self._idle_since if self._idle_since is not None and self.state != "active" else 0.0
        return {
            "enabled": self.enabled,
            "state": self.state,
            "mode": self.control.kind,
            "reason": getattr(self.control, "reason", ""),
            "idle_after_s": self.config.idle_after_s,
            "unload_after_s": self.config.unload_after_s,
            "idle_for_s": round(idle_for, 3),
            "locked_sm_clock_mhz": self.locked_mhz,
            "downclocked_s": round(self.downclocked_s(), 3),
            "wakes": self.wakes,
            "last_wake_ms": _round(self.last_wake_ms),
            "wake_latency_ms_p95": _round(self.wake_p95_ms()),
            "models_unloaded": list(self.unloaded_models) if self._unloaded_this_idle else [],
            "message": self.message,
        }

    def summary_json(self) -> dict[str, Any]:
        """The `governor` section of the efficiency summary."""
        return {
            "enabled": self.enabled,
            "mode": self.control.kind,
            "enabled_s": round(self.enabled_s(), 3),
            "downclocked_s": round(self.downclocked_s(), 3),
            "wakes": self.wakes,
            "wake_latency_ms_p95": _round(self.wake_p95_ms()),
            "idle_power_w_downclocked": _round(self.power.power_w("downclocked")),
            "idle_power_w_normal": _round(self.power.power_w("idle")),
            "models_unloaded": self.unloads,
            # the sums behind the two powers, so that a window of the session (claw bench) can be cut out
            "idle_j_downclocked": round(self.power.energy_j["downclocked"], 3),
            "idle_s_downclocked": round(self.power.seconds["downclocked"], 3),
            "idle_j_normal": round(self.power.energy_j["idle"], 3),
            "idle_s_normal": round(self.power.seconds["idle"], 3),
        }


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


async def unload_resident_models(
    backends: Sequence[Any], on_unloaded: Callable[[Any, str], None] = lambda backend, model: None
) -> list[str]:
    """Ask every Ollama backend to unload its resident models now (keep_alive 0); returns the names unloaded and
    tells `on_unloaded` of each (backend, model)."""
    unloaded: list[str] = []
    for backend in backends:
        if backend.kind != "ollama" or backend.client is None:
            continue
        for model in (await backend.get_json("/api/ps", timeout=10)).get("models") or []:
            name = model.get("name") or model.get("model")
            if not name:
                continue
            status, _ = await backend.post_json("/api/generate", {"model": name, "keep_alive": 0}, timeout=30)
            if status == 200:
                unloaded.append(name)
                on_unloaded(backend, name)
            else:
                log.warning("unloading %s on %s failed: HTTP %s", name, backend.name, status)
    return unloaded
