"""The panes' calls to claw's own gateway, with every failure turned into one clear sentence.

The console talks to the gateway over HTTP like any other client, so what an operator does in the TUI (a chat turn,
a preload, a rebuild) is metered and logged exactly like traffic from outside.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

SHORT_TIMEOUT = httpx.Timeout(15.0, connect=5.0)
# A model load, a pull or a quantization can take minutes before the next status line.
LONG_TIMEOUT = httpx.Timeout(connect=5.0, read=1800.0, write=30.0, pool=30.0)


class GatewayError(Exception):
    """A call that failed; `str()` is the message to show, `status` the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass
class ChatStream:
    """An answer being streamed: the gateway's request id and the NDJSON chunks as they arrive."""

    request_id: str | None
    chunks: AsyncIterator[dict[str, Any]]


def error_text(content: bytes, status: int) -> str:
    """The `error` of an Ollama or OpenAI error body, else the start of the body."""
    try:
        error = json.loads(content).get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict):
        error = error.get("message")
    if isinstance(error, str) and error:
        return error
    text = content.decode(errors="replace").strip()[:200]
    return text or f"HTTP {status}"


def parse_line(line: str | bytes) -> dict[str, Any] | None:
    if not line.strip():
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class GatewayClient:
    """One pooled HTTP client for the console's own requests; create it and close it on the UI's event loop."""

    def __init__(self, base_url: str, headers: dict[str, str] | None = None) -> None:
        self.base_url = base_url
        self.headers = {"User-Agent": "claw-console", **(headers or {})}
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(base_url=self.base_url, timeout=SHORT_TIMEOUT, headers=self.headers)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _unreachable(self, exc: httpx.HTTPError) -> GatewayError:
        if isinstance(exc, httpx.TimeoutException):
            return GatewayError(f"the gateway at {self.base_url} did not answer in time")
        detail = str(exc) or "the connection failed"
        return GatewayError(f"gateway unreachable at {self.base_url or '(not started)'}: {detail}")

    async def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        if not self.base_url:
            raise GatewayError("the gateway is not running")
        try:
            response = await self.client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        if response.status_code >= 400:
            raise GatewayError(error_text(response.content, response.status_code), response.status_code)
        return response

    async def _json(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = await self._request(method, path, body)
        try:
            value = response.json()
        except ValueError:
            raise GatewayError(f"{path} answered something that is not JSON") from None
        if not isinstance(value, dict):
            raise GatewayError(f"{path} answered an unexpected shape")
        return value

    # ---- models ------------------------------------------------------------------------------------------------
    async def tags(self) -> list[dict[str, Any]]:
        return [m for m in (await self._json("GET", "/api/tags")).get("models") or [] if isinstance(m, dict)]

    async def ps(self) -> list[dict[str, Any]]:
        return [m for m in (await self._json("GET", "/api/ps")).get("models") or [] if isinstance(m, dict)]

    async def show(self, model: str) -> dict[str, Any]:
        return await self._json("POST", "/api/show", {"model": model})

    async def preload(self, model: str, keep_alive: str | int | None = None) -> dict[str, Any]:
        """Load a model into memory: an empty generate request (Ollama answers done_reason "load")."""
        body: dict[str, Any] = {"model": model, "stream": False}
        if keep_alive is not None:
            body["keep_alive"] = keep_alive
        return await self._json_long("/api/generate", body)

    async def unload(self, model: str) -> dict[str, Any]:
        """Unload a model now: an empty generate request with keep_alive 0 (done_reason "unload")."""
        return await self._json("POST", "/api/generate", {"model": model, "keep_alive": 0, "stream": False})

    async def _json_long(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if not self.base_url:
            raise GatewayError("the gateway is not running")
        try:
            response = await self.client.post(path, json=body, timeout=LONG_TIMEOUT)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        if response.status_code >= 400:
            raise GatewayError(error_text(response.content, response.status_code), response.status_code)
        value = parse_line(response.content)
        if value is None:
            raise GatewayError(f"{path} answered something that is not JSON")
        if "error" in value:
            raise GatewayError(str(value["error"]))
        return value

    async def create(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """POST /api/create and yield its status lines; an `error` line (or status) raises GatewayError."""
        async for line in self._ndjson("/api/create", dict(body, stream=True)):
            if "error" in line:
                raise GatewayError(str(line["error"]))
            yield line

    async def _ndjson(self, path: str, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        if not self.base_url:
            raise GatewayError("the gateway is not running")
        try:
            async with self.client.stream("POST", path, json=body, timeout=LONG_TIMEOUT) as response:
                if response.status_code >= 400:
                    raise GatewayError(error_text(await response.aread(), response.status_code), response.status_code)
                async for line in response.aiter_lines():
                    value = parse_line(line)
                    if value is not None:
                        yield value
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None

    # ---- chat --------------------------------------------------------------------------------------------------
    @asynccontextmanager
    async def chat(self, body: dict[str, Any]) -> AsyncIterator[ChatStream]:
        """Stream an /api/chat answer; leaving the block early (or cancelling) closes the connection, which makes
        the gateway cancel the request upstream."""
        if not self.base_url:
            raise GatewayError("the gateway is not running")
        answering = False
        try:
            async with self.client.stream(
                "POST", "/api/chat", json=dict(body, stream=True), timeout=LONG_TIMEOUT
            ) as response:
                if response.status_code >= 400:
                    raise GatewayError(error_text(await response.aread(), response.status_code), response.status_code)
                answering = True

                async def chunks() -> AsyncIterator[dict[str, Any]]:
                    async for line in response.aiter_lines():
                        value = parse_line(line)
                        if value is not None:
                            yield value

                yield ChatStream(response.headers.get("X-Claw-Request-Id"), chunks())
        except httpx.HTTPError as exc:
            if not answering:
                raise self._unreachable(exc) from None
            detail = f": {exc}" if str(exc) else ""
            raise GatewayError(f"the connection to the gateway broke off before the answer ended{detail}") from None
