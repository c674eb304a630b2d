"""Which models each Ollama backend holds in GPU memory, from its /api/ps, polled on a short interval.

The ledger needs it twice: to tell a real model load from a wait for the scheduler in Ollama's `load_duration`
(a request whose model was already resident did not load it), and to price the parking of resident models between
requests. What the gateway itself sees in between (a load or an unload it relayed) updates the picture at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from claw_tui.gateway.backends import UPSTREAM_ERRORS, Backend
from claw_tui.parking import canonical_model

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 2.0


class ResidencyWatcher:
    def __init__(
        self,
        backends: list[Backend],
        publish: Callable[[int | None, list[str]], None],
        interval_s: float = POLL_INTERVAL_S,
    ) -> None:
        self.backends = [b for b in backends if b.kind == "ollama"]
        self.interval_s = interval_s
        self._publish = publish
        self._resident: dict[str, set[str]] = {}  # backend name -> canonical model names
        self._task: asyncio.Task[None] | None = None

    def is_resident(self, backend: Backend, model: str) -> bool | None:
        """None when nothing is known (an OpenAI-kind backend, or no answer from /api/ps yet)."""
        models = self._resident.get(backend.name)
        return None if models is None else canonical_model(model) in models

    def loaded(self, backend: Backend, model: str) -> None:
        self._change(backend, canonical_model(model), present=True)

    def unloaded(self, backend: Backend, model: str) -> None:
        self._change(backend, canonical_model(model), present=False)

    def _change(self, backend: Backend, model: str, *, present: bool) -> None:
        models = self._resident.get(backend.name)
        if models is None or (model in models) == present:
            return
        (models.add if present else models.discard)(model)
        self._publish_gpu(backend.gpu)

    def _publish_gpu(self, gpu: int | None) -> None:
        """Every backend on that GPU together (backends without a GPU index count for every GPU)."""
        names: set[str] = set()
        for backend in self.backends:
            if backend.gpu in (gpu, None) and backend.name in self._resident:
                names |= self._resident[backend.name]
        self._publish(gpu, sorted(names))

    async def poll(self, backend: Backend) -> None:
        try:
            answer = await backend.get_json("/api/ps", timeout=2.0)
        except UPSTREAM_ERRORS:
            return  # health checks report an unreachable backend; what was resident stays as last seen
        models = {canonical_model(str(m.get("name") or m.get("model") or "")) for m in answer.get("models") or ()}
        models.discard(":latest")
        if self._resident.get(backend.name) != models:
            self._resident[backend.name] = models
            self._publish_gpu(backend.gpu)

    async def start(self) -> None:
        if not self.backends:
            return
        await asyncio.gather(*(self.poll(b) for b in self.backends))
        self._task = asyncio.get_running_loop().create_task(self._run(), name="claw-residency")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            for backend in self.backends:
                try:
                    await self.poll(backend)
                except Exception:  # a bug here must not end the polling
                    log.exception("reading /api/ps of %s failed", backend.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
