"""The console attached to a `claw serve` (on this box or another) through claw's HTTP API.

Events come from `GET /claw/v1/events` (Server-Sent Events). When the stream breaks, the source says so (a
`connection` event), keeps trying, and resumes with `Last-Event-ID`; when the service came back as a new session,
it asks the console to re-read everything (`resync`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from claw_tui.console.conversation import Conversation, ConversationError, check_id, write_markdown
from claw_tui.console.events import RESYNC, ConsoleEvent, SseParser
from claw_tui.console.source import SourceError

CONNECTION = "connection"  # a console-side event: {"state": "up" | "down", "message": ...}
PROBE_TIMEOUT_S = 0.7
RECONNECT_S = (0.25, 0.5, 1.0, 2.0)
REQUESTS_LOADED = 5000
TELEMETRY_LOADED_S = 3600
BATCHES_LOADED = 100
QUERY_TIMEOUT = httpx.Timeout(15.0, connect=3.0)
STREAM_TIMEOUT = httpx.Timeout(connect=3.0, read=40.0, write=5.0, pool=5.0)  # the service pings every 15 s


class NeedsToken(SourceError):
    """A claw service answers, but only to a token."""


def auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def error_text(response: httpx.Response) -> str:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict):
        error = error.get("message")
    if isinstance(error, str) and error:
        return error
    return response.text.strip()[:200] or f"HTTP {response.status_code}"


def probe(url: str, token: str | None = None, timeout: float = PROBE_TIMEOUT_S) -> dict[str, Any] | None:
    """The status of the claw service at `url`, or None when nothing (or something that is not claw) answers there.
    Raises NeedsToken when claw answers but refuses the token (or its absence)."""
    try:
        response = httpx.get(f"{url.rstrip('/')}/claw/v1/status", headers=auth_headers(token), timeout=timeout)
    except httpx.HTTPError:
        return None
    if response.status_code in (401, 403) and "claw" in response.headers.get("www-authenticate", "claw"):
        raise NeedsToken(f"the claw service at {url} needs a token: {error_text(response)}")
    if response.status_code != 200:
        return None
    try:
        status = response.json()
    except ValueError:
        return None
    return status if isinstance(status, dict) and status.get("service") == "claw" else None


def uptime_words(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.0f} d"
    if seconds >= 3600:
        return f"{seconds / 3600:.0f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


class RemoteSource:
    mode = "attached"

    def __init__(self, url: str, token: str | None = None, status: dict[str, Any] | None = None) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.status = status or {}
        self.demo = bool((self.status.get("session") or {}).get("demo"))
        self.connected = False
        self.last_id: int | None = None
        self._status_at = time.monotonic()
        self._events: deque[ConsoleEvent] = deque()
        self._lock = threading.Lock()
        self._wake: Callable[[], None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self._loaded: asyncio.Event | None = None

    # ---- what the header shows ---------------------------------------------------------------------------------------
    @property
    def address(self) -> str:
        parts = urlsplit(self.url)
        return parts.netloc or self.url

    @property
    def label(self) -> str:
        face = "claw serve" if self.status.get("face", "serve") == "serve" else "claw console"
        uptime = self.status.get("uptime_s")
        up = "" if uptime is None else f" · up {uptime_words(uptime + time.monotonic() - self._status_at)}"
        return f"attached · {face} {self.address}{up}"

    @property
    def gateway_url(self) -> str:
        return self.url

    def gateway_headers(self) -> dict[str, str]:
        return auth_headers(self.token)

    def clock(self) -> float:
        return time.time()

    @property
    def notices(self) -> list[str]:
        return list(self.status.get("notices") or [])

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=self.url, headers={"User-Agent": "claw-console", **self.gateway_headers()}
            )
        return self._client

    # ---- events --------------------------------------------------------------------------------------------------
    def start(self, wake: Callable[[], None]) -> None:
        self._wake = wake
        self._loaded = loaded = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._follow(loaded), name="claw-events")

    def drain(self) -> list[ConsoleEvent]:
        with self._lock:
            events = list(self._events)
            self._events.clear()
        return events

    def _push(self, event: ConsoleEvent) -> None:
        with self._lock:
            self._events.append(event)
        if self._wake is not None:
            self._wake()

    def _connection(self, up: bool, message: str = "") -> None:
        if up != self.connected:
            self.connected = up
            self._push(ConsoleEvent(0, CONNECTION, {"state": "up" if up else "down", "message": message}))

    async def _follow(self, loaded: asyncio.Event) -> None:
        await loaded.wait()
        failures = 0
        while True:
            try:
                await self._stream()
                message = "the service closed the event stream"
            except (httpx.HTTPError, SourceError) as exc:
                message = str(exc) or type(exc).__name__
            self._connection(False, message)
            await asyncio.sleep(RECONNECT_S[min(failures, len(RECONNECT_S) - 1)])
            failures += 1
            with contextlib.suppress(httpx.HTTPError, SourceError, ValueError):
                await self._check_session()
                failures = 0

    async def _check_session(self) -> None:
        """Before resuming: the same session goes on (resume after the last id), or it is a new one (re-read all)."""
        status = await self._get_json("/claw/v1/status")
        same = (status.get("session") or {}).get("id") == (self.status.get("session") or {}).get("id")
        self._set_status(status)
        if not same:
            self.last_id = None
            self._push(ConsoleEvent(0, RESYNC, {"reason": "the service restarted"}))

    async def _stream(self) -> None:
        headers = {"Last-Event-ID": str(self.last_id)} if self.last_id is not None else {}
        async with self.client.stream("GET", "/claw/v1/events", headers=headers, timeout=STREAM_TIMEOUT) as response:
            if response.status_code != 200:
                await response.aread()
                raise SourceError(f"/claw/v1/events answered {response.status_code}: {error_text(response)}")
            self._connection(True)
            parser = SseParser()
            async for line in response.aiter_lines():
                event = parser.feed(line)
                if event is None:
                    continue
                if event.kind != RESYNC or event.id:
                    self.last_id = event.id
                self._push(event)

    # ---- queries -------------------------------------------------------------------------------------------------
    def _set_status(self, status: dict[str, Any]) -> None:
        self.status = status
        self._status_at = time.monotonic()
        self.demo = bool((status.get("session") or {}).get("demo"))

    async def _recent_requests(self) -> dict[str, Any]:
        """The newest REQUESTS_LOADED requests, a page at a time (the service answers at most 1,000 a page)."""
        rows: list[dict[str, Any]] = []
        before = ""
        while len(rows) < REQUESTS_LOADED:
            page = await self._get_json(f"/claw/v1/requests?limit=1000{before}")
            rows += page.get("requests") or []
            if not page.get("next_before"):
                break
            before = f"&before={page['next_before']}"
        return {"requests": rows[:REQUESTS_LOADED]}

    async def _batches(self) -> list[dict[str, Any]]:
        """The newest batch jobs; none when the service does not serve batch jobs."""
        try:
            return (await self._get_json(f"/v1/batches?limit={BATCHES_LOADED}")).get("data") or []
        except SourceError:
            return []

    async def load(self) -> dict[str, Any]:
        status, requests, telemetry, agents, model_events, batches = await asyncio.gather(
            self._get_json("/claw/v1/status"),
            self._recent_requests(),
            self._get_json(f"/claw/v1/telemetry?seconds={TELEMETRY_LOADED_S}"),
            self._get_json("/claw/v1/agents"),
            self._get_json("/claw/v1/model-events?limit=200"),
            self._batches(),
        )
        self._set_status(status)
        if self.last_id is None:
            self.last_id = status.get("last_event_id")
        if self._loaded is not None:
            self._loaded.set()
        return {
            "status": status,
            "requests": requests.get("requests") or [],
            "telemetry": telemetry,
            "agents": agents.get("agents") or [],
            "model_events": list(reversed(model_events.get("model_events") or [])),
            "batches": batches,
        }

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        try:
            response = await self.client.request(method, path, json=body, timeout=QUERY_TIMEOUT)
        except httpx.TimeoutException:
            raise SourceError(f"the claw service at {self.address} did not answer in time") from None
        except httpx.HTTPError as exc:
            raise SourceError(f"the claw service at {self.address} cannot be reached: {exc}") from None
        if response.status_code >= 400:
            raise SourceError(error_text(response))
        return response

    async def _get_json(self, path: str) -> dict[str, Any]:
        return await self._request_json("GET", path)

    async def _request_json(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """The answer's JSON object; a SourceError when it is not one."""
        response = await self._request(method, path, body)
        try:
            value = response.json()
        except ValueError:
            raise SourceError(f"{path} answered something that is not JSON") from None
        if not isinstance(value, dict):
            raise SourceError(f"{path} answered an unexpected shape")
        return value

    # ---- commands ------------------------------------------------------------------------------------------------
    async def set_governor(self, enabled: bool) -> dict[str, Any]:
        return await self._request_json("POST", "/claw/v1/governor", {"enabled": enabled})

    async def save_agent(self, agent: dict[str, Any], replacing: str | None = None) -> list[dict[str, Any]]:
        if replacing is None:
            response = await self._request("POST", "/claw/v1/agents", agent)
        else:
            response = await self._request("PUT", f"/claw/v1/agents?name={quote(replacing)}", agent)
        return response.json().get("agents") or []

    async def delete_agent(self, name: str) -> list[dict[str, Any]]:
        return (await self._request("DELETE", f"/claw/v1/agents?name={quote(name)}")).json().get("agents") or []

    async def cancel_batch(self, batch_id: str) -> dict[str, Any]:
        return await self._request_json("POST", f"/v1/batches/{quote(batch_id)}/cancel")

    async def export_summary(self, directory: Path | None = None) -> Path:
        """The service's live summary, written here: JSON, with the Markdown and per-request CSV beside it."""
        from claw_tui.store import default_store_path

        summary = await self._get_json("/claw/v1/summary?format=json")
        md = (await self._request("GET", "/claw/v1/summary?format=md")).text
        csv = (await self._request("GET", "/claw/v1/summary?format=csv")).text
        directory = directory or default_store_path().parent / "exports"
        stem = f"claw-summary-{(summary.get('session') or {}).get('id', 'session')}-{time.strftime('%Y%m%d-%H%M%S')}"
        texts = {"json": json.dumps(summary, indent=2, ensure_ascii=False) + "\n", "md": md, "csv": csv}
        return await asyncio.to_thread(_write_files, directory, stem, texts)

    # ---- chat conversations, kept in the service's session store --------------------------------------------------
    async def list_conversations(self) -> list[dict[str, Any]]:
        return (await self._get_json("/claw/v1/conversations")).get("conversations") or []

    async def load_conversation(self, conversation_id: str) -> dict[str, Any]:
        return await self._get_json(self._conversation_path(conversation_id))

    async def save_conversation(self, conversation: dict[str, Any]) -> dict[str, Any]:
        path = self._conversation_path(conversation.get("id"))
        return await self._request_json("PUT", path, conversation)

    async def delete_conversation(self, conversation_id: str) -> None:
        await self._request("DELETE", self._conversation_path(conversation_id))

    async def export_conversation(self, conversation: dict[str, Any], directory: Path | None = None) -> Path:
        """Written here, where the console runs (like F7's summary attached)."""
        from claw_tui.store import default_store_path

        directory = directory or default_store_path().parent / "exports"
        try:
            return await asyncio.to_thread(write_markdown, Conversation.from_json(conversation), directory)
        except ConversationError as exc:
            raise SourceError(str(exc)) from None

    @staticmethod
    def _conversation_path(conversation_id: object) -> str:
        try:
            return f"/claw/v1/conversations/{check_id(conversation_id)}"
        except ConversationError as exc:
            raise SourceError(str(exc)) from None


def _write_files(directory: Path, stem: str, texts: dict[str, str]) -> Path:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for suffix, text in texts.items():
            path = directory / f"{stem}.{suffix}"
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(text)
            tmp.replace(path)
    except OSError as exc:
        raise SourceError(f"cannot write the summary in {directory}: {exc.strerror or exc}") from None
    return directory / f"{stem}.json"
