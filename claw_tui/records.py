"""The record of one request (or one model operation) through the gateway, as the ledger keeps it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Protocol

STATUSES = ("ok", "error", "cancelled", "rejected")
# Model operations are not requests: loads and unloads asked of the backend (an empty prompt, keep_alive 0) and
# claw's own warm-up. They are recorded apart and left out of request latency and J/token statistics.
REQUEST = "request"
MODEL_EVENT_KINDS = ("load", "unload", "warmup")
ATTRIBUTIONS = ("timed", "tokens", "window")


class FinishedRequest(Protocol):
    """What the per-group metrics read from a finished request: a `RequestRecord` in the core, the console's
    `RequestView` of one in the panes."""

    @property
    def status(self) -> str: ...
    @property
    def prompt_tokens(self) -> int: ...
    @property
    def completion_tokens(self) -> int: ...
    @property
    def energy_j(self) -> float: ...
    @property
    def prefill_j(self) -> float: ...
    @property
    def decode_j(self) -> float: ...
    @property
    def load_j(self) -> float: ...
    @property
    def duration_ms(self) -> float | None: ...
    @property
    def ttft_ms(self) -> float | None: ...


def new_request_id() -> str:
    return uuid.uuid4().hex[:16]


@dataclass(slots=True)
class RequestRecord:
    id: str
    model: str
    endpoint: str
    kind: str = REQUEST  # "request", or a model operation: "load" | "unload" | "warmup"
    surface: str = "ollama"  # "ollama" | "openai"
    agent: str | None = None
    backend: str | None = None
    gpu: int | None = None
    stream: bool = True
    client: str = ""  # the X-Claw-Client header ("batch" for batch lines), else the client's address
    batch: str | None = None  # a batch line: "<batch id>/<custom id, percent-encoded>"
    status: str = "active"  # "active" until finished, then one of STATUSES
    http_status: int | None = None
    error: str | None = None
    downgraded_from: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0  # counted from the relayed chunks as they pass, then the backend's own count
    # wall-clock times (seconds since the epoch)
    t_arrival: float = 0.0
    t_queue_exit: float | None = None
    t_upstream_start: float | None = None
    t_first_token: float | None = None
    t_end: float | None = None
    # the backend's own timings (Ollama reports nanoseconds; kept here in ms)
    server_total_ms: float | None = None
    server_load_ms: float | None = None
    server_prompt_eval_ms: float | None = None
    server_eval_ms: float | None = None
    wake_ms: float | None = None
    model_resident: bool | None = None  # was the model resident on its backend when the request started?
    # attributed energy: energy_j = prefill_j + decode_j is the request's own compute; load_j is a model load it
    # caused (the ledger's load bucket, shown on the request, not part of its J/token)
    energy_j: float = 0.0
    prefill_j: float = 0.0
    decode_j: float = 0.0
    load_j: float = 0.0
    attribution: str | None = None  # "timed" | "tokens" | "window": how the work was placed in time
    energy_final: bool = False

    @property
    def is_request(self) -> bool:
        return self.kind == REQUEST

    @property
    def ttft_ms(self) -> float | None:
        if self.t_first_token is None:
            return None
        return (self.t_first_token - self.t_arrival) * 1000

    @property
    def duration_ms(self) -> float | None:
        if self.t_end is None:
            return None
        return (self.t_end - self.t_arrival) * 1000

    @property
    def tokens_per_joule(self) -> float | None:
        if self.energy_j <= 0 or not self.completion_tokens:
            return None
        return self.completion_tokens / self.energy_j

    @property
    def joules_per_token(self) -> float | None:
        if self.energy_j <= 0 or not self.completion_tokens:
            return None
        return self.energy_j / self.completion_tokens

    @property
    def decode_tokens_per_s(self) -> float | None:
        if self.server_eval_ms:
            return self.completion_tokens / (self.server_eval_ms / 1000)
        if self.t_first_token is None or self.t_end is None or self.completion_tokens < 2:
            return None
        span = self.t_end - self.t_first_token
        return (self.completion_tokens - 1) / span if span > 0 else None

    @property
    def server_wait_ms(self) -> float | None:
        """Time the backend held the request without working on it (a wait for a free slot)."""
        if self.server_total_ms is None:
            return None
        worked = (self.server_load_ms or 0) + (self.server_prompt_eval_ms or 0) + (self.server_eval_ms or 0)
        return max(0.0, self.server_total_ms - worked)

    def to_json(self) -> dict[str, Any]:
        def ms(t: float | None) -> float | None:
            return None if t is None else round(t, 3)

        return {
            "id": self.id,
            "kind": self.kind,
            "agent": self.agent,
            "model": self.model,
            "backend": self.backend,
            "gpu": self.gpu,
            "endpoint": self.endpoint,
            "surface": self.surface,
            "client": self.client,
            "batch": self.batch,
            "stream": self.stream,
            "status": self.status,
            "http_status": self.http_status,
            "error": self.error,
            "downgraded_from": self.downgraded_from,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "ttft_ms": ms(self.ttft_ms),
            "duration_ms": ms(self.duration_ms),
            "decode_tokens_per_s": ms(self.decode_tokens_per_s),
            "energy_j": round(self.energy_j, 6),
            "prefill_j": round(self.prefill_j, 6),
            "decode_j": round(self.decode_j, 6),
            "load_j": round(self.load_j, 6),
            "tokens_per_joule": ms(self.tokens_per_joule),
            "attribution": self.attribution,
            "energy_final": self.energy_final,
            "wake_ms": ms(self.wake_ms),
            "model_resident": self.model_resident,
            "times": {
                "arrival": self.t_arrival,
                "queue_exit": self.t_queue_exit,
                "upstream_start": self.t_upstream_start,
                "first_token": self.t_first_token,
                "end": self.t_end,
            },
            "server": {
                "total_ms": ms(self.server_total_ms),
                "load_ms": ms(self.server_load_ms),
                "prompt_eval_ms": ms(self.server_prompt_eval_ms),
                "eval_ms": ms(self.server_eval_ms),
                "wait_ms": ms(self.server_wait_ms),
            },
        }
