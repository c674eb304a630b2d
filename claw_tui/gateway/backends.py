"""Upstream backends: one pooled httpx client per backend, its model list, and its health state."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import httpx

log = logging.getLogger(__name__)

MODELS_TTL_S = 5.0


@dataclass
class Backend:
    name: str
    kind: str  # "ollama" | "openai"
    url: str
    weight: float = 1.0
    gpu: int | None = None
    api_key: str = ""
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 300.0
    state: str = "up"  # "up" | "degraded" | "down"
    in_flight: int = 0
    consecutive_failures: int = 0
    last_error: str | None = None
    _models: list[dict] = field(default_factory=list)
    _models_at: float = 0.0
    _models_lock: asyncio.Lock | None = None
    client: httpx.AsyncClient | None = None

    def open(self) -> None:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self.client = httpx.AsyncClient(
            base_url=self.url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(connect=self.connect_timeout_s, read=self.read_timeout_s, write=30.0, pool=30.0),
            limits=httpx.Limits(max_connections=1000, max_keepalive_connections=200),
        )
        self._models_lock = asyncio.Lock()

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
            self.client = None

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "url": self.url,
            "kind": self.kind,
            "state": self.state,
            "in_flight": self.in_flight,
            "weight": self.weight,
            "gpu": self.gpu,
            "last_error": self.last_error,
        }

    def record_success(self) -> None:
        self.consecutive_failures = 0
        if self.state != "up":
            log.warning("backend %s is back up", self.name)
        self.state = "up"
        self.last_error = None

    def record_failure(self, error: str) -> None:
        self.consecutive_failures += 1
        self.last_error = error
        if self.consecutive_failures >= 3 and self.state == "up":
            log.warning("backend %s degraded: %s", self.name, error)
            self.state = "degraded"

    # ---- models ------------------------------------------------------------------------------------------------
    async def models(self, *, refresh: bool = False) -> list[dict]:
        """The backend's models in Ollama's /api/tags shape (cached for a few seconds)."""
        assert self._models_lock is not None
        async with self._models_lock:
            if refresh or time.monotonic() - self._models_at > MODELS_TTL_S:
                self._models = await self._fetch_models()
                self._models_at = time.monotonic()
            return self._models

    def forget_models(self) -> None:
        self._models_at = 0.0

    async def _fetch_models(self) -> list[dict]:
        assert self.client is not None
        if self.kind == "ollama":
            response = await self.client.get("/api/tags", timeout=self.connect_timeout_s)
            response.raise_for_status()
            return response.json().get("models") or []
        response = await self.client.get("/v1/models", timeout=self.connect_timeout_s)
        response.raise_for_status()
        return [openai_model_as_tag(item) for item in response.json().get("data") or []]

    async def has_model(self, model: str) -> bool:
        try:
            names = {m.get("name") for m in await self.models()} | {m.get("model") for m in await self.models()}
        except (httpx.HTTPError, ValueError):
            return False
        return model in names or f"{model}:latest" in names


def openai_model_as_tag(item: dict) -> dict:
    created = item.get("created") or 0
    return {
        "name": item.get("id", ""),
        "model": item.get("id", ""),
        "modified_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created)),
        "size": 0,
        "digest": "",
        "details": {"family": "", "format": "", "parameter_size": "", "quantization_level": ""},
    }
