"""Console events: immutable, JSON-ready, numbered by the bus that published them.

Kinds (the `data` of each is plain JSON):
- `request.opened`, `request.first_token`, `request.finished`: a request record snapshot (as /claw/v1/requests);
  `request.finished` comes once the record's energy is final. `model.event`: a model load/unload/warm-up.
- `telemetry`: new power samples and the latest snapshot of each GPU (`gpus: [{index, samples, snapshot}]`).
- `telemetry.stats`: about once a second: trace quality, energy check and 60 s stddev per GPU, the session's
  energy totals and tokens, requests in flight, the telemetry source's state.
- `telemetry.gpus`: the GPUs' static facts, each time the source opens (again) or fails (`gpus: []`).
- `governor`, `alerts`, `backends`, `agents`: the new state, whenever it changed.
- `batch.created`, `batch.status`, `batch.progress` (at most twice a second per job), and at a job's end
  `batch.completed` | `batch.failed` | `batch.expired` | `batch.cancelled` (once its energy is final): the whole
  batch object, as `GET /v1/batches/{id}` answers it; `batch.webhook`: `{id, webhook}`, the delivery's outcome.
- `resync`: events were lost (a slow reader, or a resume from too far back): re-read the state.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

RESYNC = "resync"


@dataclass(frozen=True, slots=True)
class ConsoleEvent:
    id: int
    kind: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_sse(self) -> bytes:
        body = json.dumps(self.data, separators=(",", ":"), ensure_ascii=False)
        return f"id: {self.id}\nevent: {self.kind}\ndata: {body}\n\n".encode()


def resync(reason: str, last_id: int = 0) -> ConsoleEvent:
    return ConsoleEvent(last_id, RESYNC, {"reason": reason})


class SseParser:
    """Turns a Server-Sent Events byte stream, fed line by line, into ConsoleEvents (comments are skipped)."""

    def __init__(self) -> None:
        self._id: str | None = None
        self._kind = "message"
        self._data: list[str] = []

    def feed(self, line: str) -> ConsoleEvent | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "id":
            self._id = value
        elif name == "event":
            self._kind = value
        elif name == "data":
            self._data.append(value)
        return None

    def _dispatch(self) -> ConsoleEvent | None:
        if not self._data:
            self._kind = "message"
            return None
        text, kind, raw_id = "\n".join(self._data), self._kind, self._id
        self._data, self._kind = [], "message"
        try:
            data = json.loads(text)
        except ValueError:
            return None
        try:
            event_id = int(raw_id) if raw_id is not None else 0
        except ValueError:
            event_id = 0
        return ConsoleEvent(event_id, kind, data if isinstance(data, dict) else {"value": data})
