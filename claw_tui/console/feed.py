"""The service side of the seam: what happens in the Session becomes events on its bus.

Request events come from the ledger's listeners (on the gateway's loop or the sampler's thread: publishing is a
lock and a deque append). Telemetry comes from the sampler's poll listener, on the sampler's thread. Everything
else (totals, governor, alerts, backends) is looked at once a second on a thread of its own, and published when
it changed, so the gateway's loop never does this work.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from claw_tui.console.bus import EventBus
from claw_tui.console.snapshots import gpu_stats_json, snapshot_json, source_json
from claw_tui.telemetry.none import host_load

if TYPE_CHECKING:
    from claw_tui.ledger import LedgerEvent
    from claw_tui.session import Session
    from claw_tui.telemetry.sampler import TelemetrySampler
    from claw_tui.telemetry.types import GpuStatic

log = logging.getLogger(__name__)

TICK_S = 1.0


class EventFeed:
    def __init__(self, session: Session, bus: EventBus, tick_s: float = TICK_S) -> None:
        self.session = session
        self.bus = bus
        self.tick_s = tick_s
        self.completion_tokens = 0  # of answered requests, for tokens per joule
        self._last_sample_ts: dict[int, float] = {}
        self._last: dict[str, object] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # ---- wiring ------------------------------------------------------------------------------------------------
    def attach_ledger(self) -> None:
        self.session.ledger.add_event_listener(self._ledger_event)

    def attach_sampler(self, sampler: TelemetrySampler) -> None:
        sampler.add_poll_listener(self._polled)
        sampler.add_gpus_listener(self._gpus_changed)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="claw-events", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.bus.close()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    # ---- sources of events ---------------------------------------------------------------------------------------
    def _ledger_event(self, event: LedgerEvent) -> None:
        data = event.data
        if event.kind == "request.finished" and data.get("status") == "ok":
            self.completion_tokens += int(data.get("completion_tokens") or 0)
        self.bus.publish(event.kind, data)

    def _polled(self, sampler: TelemetrySampler) -> None:
        gpus = []
        with self._lock:
            for index in range(sampler.gpu_count):
                samples = sampler.power_trace(index, self._last_sample_ts.get(index, 0.0))
                if samples:
                    self._last_sample_ts[index] = samples[-1].ts
                gpus.append(
                    {
                        "index": index,
                        "samples": [[round(s.ts, 3), round(s.watts, 2)] for s in samples],
                        "snapshot": snapshot_json(sampler.latest(index)),
                    }
                )
        if gpus:
            self.bus.publish("telemetry", {"gpus": gpus})

    def _gpus_changed(self, statics: list[GpuStatic]) -> None:
        from dataclasses import asdict

        self.bus.publish("telemetry.gpus", {**source_json(self.session.sampler), "gpus": [asdict(s) for s in statics]})

    # ---- once a second ---------------------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.wait(self.tick_s):
            try:
                self.tick()
            except Exception:
                log.exception("publishing the session's state failed")

    def tick(self) -> None:
        self.bus.publish("telemetry.stats", self.stats_json())
        session = self.session
        self.publish_if_changed("governor", session.governor_json)
        self.publish_if_changed("alerts", lambda: {"alerts": [a.to_json() for a in session.alerts.active()]})
        self.publish_if_changed("backends", lambda: {"backends": [b.to_json() for b in session.backends]})

    def publish_if_changed(self, kind: str, build: Callable[[], dict[str, Any]], force: bool = False) -> None:
        data = build()
        if force or self._last.get(kind) != data:
            self._last[kind] = data
            self.bus.publish(kind, data)

    def stats_json(self) -> dict[str, Any]:
        session = self.session
        sampler = session.sampler
        return {
            **source_json(sampler),
            "ts": session.clock(),
            "energy": session.ledger.totals(),
            "tokens": {"completion": self.completion_tokens},
            "in_flight": session.ledger.in_flight(),
            "gpus": (
                [gpu_stats_json(sampler, i) for i in range(sampler.gpu_count)]
                if sampler is not None and sampler.state == "ok"
                else []
            ),
            "host": {**host_load(), "cpus": os.cpu_count()},  # the service's box: the GPU overview shows it
        }
