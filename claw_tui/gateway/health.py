"""Active health checks: each backend is probed on its own interval; three failures in a row take it out of
rotation (`degraded`, or `down` when it cannot even be reached), the next success brings it back.

The probe lists the backend's models (Ollama /api/tags, OpenAI /v1/models), so the router's model lists stay fresh
at no extra cost.
"""

from __future__ import annotations

import asyncio
import logging
import time

from claw_tui.gateway.backends import (
    CONNECT_ERRORS,
    UPSTREAM_ERRORS,
    Backend,
    UpstreamStatusError,
    describe_error,
)

log = logging.getLogger(__name__)


async def probe(backend: Backend) -> None:
    """One health check; updates the backend's state."""
    backend.last_check_at = time.time()
    try:
        await backend.refresh_models()
    except CONNECT_ERRORS as exc:
        backend.record_failure(f"health check: cannot connect: {describe_error(exc)}", unreachable=True)
        return
    except UpstreamStatusError as exc:
        backend.record_failure(f"health check: listing its models, {describe_error(exc)}")
        return
    except UPSTREAM_ERRORS as exc:
        backend.record_failure(f"health check failed: {describe_error(exc)}")
        return
    backend.record_success()
    if backend.kind == "ollama" and backend.version is None:
        await _read_version(backend)


async def _read_version(backend: Backend) -> None:
    try:
        backend.version = str((await backend.get_json("/api/version")).get("version") or "") or None
    except UPSTREAM_ERRORS:
        pass


class HealthChecker:
    """Runs `probe` for every backend on its interval until stopped."""

    def __init__(self, backends: list[Backend]) -> None:
        self.backends = backends
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, first_wait_s: float = 2.0) -> None:
        """Probe every backend once (so routing knows the models from the first request), then keep probing.

        Start waits at most `first_wait_s` for the first probes: a backend that hangs must not hold up the gateway.
        """
        loop = asyncio.get_running_loop()
        first = [loop.create_task(probe(b), name=f"health-first:{b.name}") for b in self.backends]
        if first:
            await asyncio.wait(first, timeout=first_wait_s)
        self._tasks = [
            loop.create_task(self._loop(b, f), name=f"health:{b.name}") for b, f in zip(self.backends, first)
        ]

    async def _loop(self, backend: Backend, first: asyncio.Task[None]) -> None:
        try:
            await first
        except Exception:
            log.exception("health check of %s failed", backend.name)
        while True:
            await asyncio.sleep(backend.health_interval_s)
            try:
                await probe(backend)
            except Exception:  # a bug in one probe must not end the checks
                log.exception("health check of %s failed", backend.name)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._tasks = []
