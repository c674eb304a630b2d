"""One HTTP request and its response at the ASGI level, and the watch that notices the client leaving.

A body over the limit gets 413 at once when its Content-Length says so. Clients that write the whole body before
reading (Python's http.client, `requests`) would then meet a connection reset instead of the answer, so the 413 is
written first and the rest of the body read and thrown away (up to a bound, as nginx's lingering close does)
before the connection is closed.

Once the body is read, a small task waits for `http.disconnect` and cancels the request's task at once — while it
waits in a queue, for the first token, or between chunks — so the upstream request is closed immediately. (ASGI
servers report a disconnect only through `receive`; writes to a gone client are silently dropped.)
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from claw_tui.gateway.errors import GatewayError, error_body

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

JSON_MEDIA = b"application/json; charset=utf-8"
DRAIN_MAX_BYTES = 64 * 1024 * 1024  # what a refused body may still send before the connection is closed
DRAIN_MAX_S = 10.0


class Exchange:
    __slots__ = (
        "_body_left",
        "_send",
        "_task",
        "_watcher",
        "finished",
        "gone",
        "interrupted",
        "method",
        "path",
        "receive",
        "request_id",
        "scope",
        "started",
        "status",
        "surface",
    )

    def __init__(self, scope: Scope, receive: Receive, send: Send, surface: str) -> None:
        self.scope = scope
        self.receive = receive
        self._send = send
        self.path: str = scope["path"]
        self.method: str = scope["method"]
        self.surface = surface
        self.started = False
        self.finished = False
        self.gone = False  # the client disconnected
        self.interrupted: str | None = None  # the gateway gave up on this request (superseded): the reason
        self.status = 0
        self.request_id: str | None = None  # the ledger record of a metered request
        self._task: asyncio.Task[object] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._body_left = False  # the body was refused before its end

    # ---- request ------------------------------------------------------------------------------------------------
    def header(self, name: bytes) -> str | None:
        headers: list[tuple[bytes, bytes]] = self.scope["headers"]
        for key, value in headers:
            if key == name:
                return value.decode("latin-1")
        return None

    def query(self, name: str) -> str | None:
        raw = self.scope.get("query_string") or b""
        if not raw:
            return None
        values = parse_qs(raw.decode("latin-1")).get(name)
        return values[0] if values else None

    @property
    def client_host(self) -> str:
        client = self.scope.get("client")
        return client[0] if client else ""

    async def read_body(self, limit: int, idle_timeout_s: float | None = None) -> bytes:
        """The whole body: 413 beyond `limit` bytes, 408 after `idle_timeout_s` seconds without a byte."""
        length = self.header(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            self._body_left = True
            raise _too_large(int(length), limit)
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                async with asyncio.timeout(idle_timeout_s):
                    message = await self.receive()
            except TimeoutError:
                raise GatewayError(
                    408,
                    f"request body not received: nothing came for {idle_timeout_s:g}s",
                    headers={"Connection": "close"},
                ) from None
            if message["type"] == "http.disconnect":
                self.gone = True
                raise asyncio.CancelledError("client disconnected while sending its request")
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    self._body_left = message.get("more_body", False)
                    raise _too_large(size, limit, at_least=True)
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    # ---- the client leaving --------------------------------------------------------------------------------------
    def watch(self) -> None:
        """Start noticing a disconnect (call once the whole body is read)."""
        self._task = asyncio.current_task()
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                break
        if not self.finished and self.interrupted is None and self._task is not None:
            self.gone = True
            self._task.cancel()

    def interrupt(self, reason: str) -> None:
        """Stop this request from elsewhere (the gateway answers it with 409 and `reason`)."""
        if self._task is not None and not self.finished and not self.gone and self.interrupted is None:
            self.interrupted = reason
            self._task.cancel()

    def close(self) -> None:
        self.finished = True
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None

    # ---- response -----------------------------------------------------------------------------------------------
    async def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.started = True
        self.status = status
        await self._send({"type": "http.response.start", "status": status, "headers": headers})

    async def write(self, data: bytes) -> None:
        if data:
            await self._send({"type": "http.response.body", "body": data, "more_body": True})

    async def end(self, data: bytes = b"") -> None:
        self.finished = True  # from here a disconnect no longer cancels anything
        await self._send({"type": "http.response.body", "body": data, "more_body": False})

    async def respond(
        self, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None, media_type: bytes = JSON_MEDIA
    ) -> None:
        all_headers = [(b"content-type", media_type), (b"content-length", str(len(body)).encode())]
        if headers:
            all_headers += headers
        self.finished = True
        await self.start(status, all_headers)
        if self.method == "HEAD":
            body = b""
        await self._send({"type": "http.response.body", "body": body, "more_body": False})

    async def respond_error(
        self, exc: GatewayError, surface: str | None = None, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        extra = [(k.lower().encode(), v.encode()) for k, v in exc.headers.items()] + (headers or [])
        if self.request_id is not None and not any(k == b"x-claw-request-id" for k, _ in extra):
            extra.append((b"x-claw-request-id", self.request_id.encode()))
        body = error_body(surface or self.surface, exc)
        if self._body_left and self._may_drain():
            await self._respond_then_drain(exc.status, body, extra)
            return
        await self.respond(exc.status, body, extra)

    def _may_drain(self) -> bool:
        """Read the rest of a refused body only when the client is sending it anyway (no `Expect: 100-continue`,
        which would invite it) and it is not larger than the bound."""
        if (self.header(b"expect") or "").lower() == "100-continue":
            return False
        length = self.header(b"content-length")
        return length is None or not length.isdigit() or int(length) <= DRAIN_MAX_BYTES

    async def _respond_then_drain(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        """Write the whole answer, read and drop what the client still sends, then end (the connection closes)."""
        all_headers = [(b"content-type", JSON_MEDIA), (b"content-length", str(len(body)).encode()), *headers]
        self.finished = True
        await self.start(status, all_headers)
        await self._send({"type": "http.response.body", "body": body, "more_body": True})
        drained = 0
        try:
            async with asyncio.timeout(DRAIN_MAX_S):
                while drained <= DRAIN_MAX_BYTES:
                    message = await self.receive()
                    drained += len(message.get("body", b""))
                    if message["type"] == "http.disconnect" or not message.get("more_body", False):
                        break
        except TimeoutError:
            pass
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})


def _too_large(size: int, limit: int, *, at_least: bool = False) -> GatewayError:
    what = f"at least {size}" if at_least else f"{size}"
    return GatewayError(
        413, f"request body too large ({what} bytes; the limit is {limit} bytes)", headers={"Connection": "close"}
    )
