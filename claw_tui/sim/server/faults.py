"""Fault injection: the failures, broken streams and stalls that tests ask the simulated server to suffer next."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from claw_tui.sim.server.wire import BUSY_MESSAGE, INFERENCE_PATHS, RUNNER_CRASH_MESSAGE, STREAM_ERROR_MESSAGE


@dataclass
class _Failure:
    remaining: int
    status: int
    message: str | None
    paths: tuple[str, ...]


@dataclass
class StreamPlan:
    """What the next response's stream will suffer: drop the connection, send an error line, or stall."""

    drop_after: int | None = None
    cut_after: int | None = None
    error_after: int | None = None
    error_message: str = STREAM_ERROR_MESSAGE
    stall_after: int | None = None
    stall_s: float = 0.0

    @property
    def empty(self) -> bool:
        return (
            self.drop_after is None and self.cut_after is None and self.error_after is None and self.stall_after is None
        )


@dataclass
class _StreamFault:
    remaining: int
    kind: str  # "drop" | "cut" | "error" | "stall"
    after: int
    message: str = STREAM_ERROR_MESSAGE
    seconds: float = 0.0


class Faults:
    """Pending faults; each hook affects the next `n`/`requests` matching requests, then wears off."""

    def __init__(self) -> None:
        self._failures: list[_Failure] = []
        self._stream_faults: list[_StreamFault] = []

    def fail_next(
        self, n: int = 1, status: int = 500, message: str | None = None, paths: Iterable[str] | None = None
    ) -> None:
        self._failures.append(_Failure(n, status, message, tuple(paths) if paths else INFERENCE_PATHS))

    def die_mid_stream_after(self, n_chunks: int, requests: int = 1) -> None:
        self._stream_faults.append(_StreamFault(requests, "drop", n_chunks))

    def cut_stream_after(self, n_chunks: int, requests: int = 1) -> None:
        self._stream_faults.append(_StreamFault(requests, "cut", n_chunks))

    def error_mid_stream_after(self, n_chunks: int, message: str = STREAM_ERROR_MESSAGE, requests: int = 1) -> None:
        self._stream_faults.append(_StreamFault(requests, "error", n_chunks, message=message))

    def stall_next(self, seconds: float, after_chunks: int = 0, requests: int = 1) -> None:
        self._stream_faults.append(_StreamFault(requests, "stall", after_chunks, seconds=seconds))

    def clear(self) -> None:
        self._failures.clear()
        self._stream_faults.clear()

    def take_failure(self, path: str) -> tuple[int, str | None] | None:
        for failure in self._failures:
            if failure.remaining > 0 and path in failure.paths:
                failure.remaining -= 1
                if failure.remaining == 0:
                    self._failures.remove(failure)
                return failure.status, failure.message
        return None

    def take_stream_plan(self) -> StreamPlan:
        plan = StreamPlan()
        for fault in list(self._stream_faults):
            if fault.kind == "drop" and plan.drop_after is None:
                plan.drop_after = fault.after
            elif fault.kind == "cut" and plan.cut_after is None:
                plan.cut_after = fault.after
            elif fault.kind == "error" and plan.error_after is None:
                plan.error_after, plan.error_message = fault.after, fault.message
            elif fault.kind == "stall" and plan.stall_after is None:
                plan.stall_after, plan.stall_s = fault.after, fault.seconds
            else:
                continue
            fault.remaining -= 1
            if fault.remaining <= 0:
                self._stream_faults.remove(fault)
        return plan


def default_failure_message(status: int) -> str:
    if status == 503:
        return BUSY_MESSAGE
    if status == 500:
        return RUNNER_CRASH_MESSAGE
    if status == 429:
        return "too many requests"
    if status == 404:
        return "model not found"
    return "simulated failure"
