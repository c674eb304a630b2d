"""A request as the console sees it: a frozen view of one record snapshot (the JSON of /claw/v1/requests)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class RequestView:
    id: str
    model: str
    endpoint: str = ""
    surface: str = "ollama"
    stream: bool = True
    client: str = ""
    agent: str | None = None
    backend: str | None = None
    gpu: int | None = None
    status: str = "active"
    http_status: int | None = None
    error: str | None = None
    downgraded_from: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    t_arrival: float = 0.0
    t_queue_exit: float | None = None
    t_upstream_start: float | None = None
    t_first_token: float | None = None
    t_end: float | None = None
    server_total_ms: float | None = None
    server_load_ms: float | None = None
    server_prompt_eval_ms: float | None = None
    server_eval_ms: float | None = None
    wake_ms: float | None = None
    energy_j: float = 0.0
    prefill_j: float = 0.0
    decode_j: float = 0.0
    load_j: float = 0.0
    attribution: str | None = None
    energy_final: bool = False
    decode_tokens_per_s: float | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RequestView:
        times = data.get("times") or {}
        server = data.get("server") or {}
        return cls(
            id=str(data.get("id", "")),
            model=str(data.get("model") or ""),
            endpoint=str(data.get("endpoint") or ""),
            surface=str(data.get("surface") or "ollama"),
            stream=bool(data.get("stream", True)),
            client=str(data.get("client") or ""),
            agent=data.get("agent"),
            backend=data.get("backend"),
            gpu=data.get("gpu"),
            status=str(data.get("status") or "active"),
            http_status=data.get("http_status"),
            error=data.get("error"),
            downgraded_from=data.get("downgraded_from"),
            prompt_tokens=int(data.get("prompt_tokens") or 0),
            completion_tokens=int(data.get("completion_tokens") or 0),
            t_arrival=float(times.get("arrival") or 0.0),
            t_queue_exit=times.get("queue_exit"),
            t_upstream_start=times.get("upstream_start"),
            t_first_token=times.get("first_token"),
            t_end=times.get("end"),
            server_total_ms=server.get("total_ms"),
            server_load_ms=server.get("load_ms"),
            server_prompt_eval_ms=server.get("prompt_eval_ms"),
            server_eval_ms=server.get("eval_ms"),
            wake_ms=data.get("wake_ms"),
            energy_j=float(data.get("energy_j") or 0.0),
            prefill_j=float(data.get("prefill_j") or 0.0),
            decode_j=float(data.get("decode_j") or 0.0),
            load_j=float(data.get("load_j") or 0.0),
            attribution=data.get("attribution"),
            energy_final=bool(data.get("energy_final")),
            decode_tokens_per_s=data.get("decode_tokens_per_s"),
            raw=data,
        )

    @property
    def finished(self) -> bool:
        return self.status != "active"

    @property
    def ttft_ms(self) -> float | None:
        return None if self.t_first_token is None else (self.t_first_token - self.t_arrival) * 1000

    @property
    def duration_ms(self) -> float | None:
        return None if self.t_end is None else (self.t_end - self.t_arrival) * 1000

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
