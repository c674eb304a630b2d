"""Responses whose status is decided by their first item, and the error bodies of both surfaces."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from claw_tui.sim.server.wire import JSON_MEDIA, RunnerGone, go_json


@dataclass(frozen=True)
class ErrorItem:
    """An error from a response generator: a whole body (and status) before any output, else a last line."""

    status: int
    body: bytes
    line: bytes


class DeferredResponse:
    """An ASGI response that sends its headers with the first item, so that an error found before any output
    (a failed load, a fault) still gets its own status, while a client disconnect is noticed at any time —
    also while waiting in the queue or loading — and cancels the generator at once."""

    def __init__(
        self,
        items: AsyncGenerator[bytes | ErrorItem, None],
        *,
        media_type: str,
        streaming: bool,
        on_close: Callable[[], None] | None = None,
        headers: dict[str, str] | None = None,
        error_item: Callable[[int, str], ErrorItem] | None = None,
    ) -> None:
        self._items = items
        self._error_item = error_item or ollama_error_item
        self._media_type = media_type
        self._streaming = streaming
        self._on_close = on_close
        self._headers = headers or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        producer = asyncio.ensure_future(self._produce(send))
        watcher = asyncio.ensure_future(_wait_for_disconnect(receive))
        try:
            await asyncio.wait({producer, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if producer.done():
                producer.result()
            else:
                producer.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await producer
        finally:
            watcher.cancel()
            if not producer.done():
                producer.cancel()
            if self._on_close is not None:
                self._on_close()

    async def _produce(self, send: Send) -> None:
        started = False
        try:
            async for item in self._items:
                if isinstance(item, ErrorItem):
                    await self._send_error(send, item, started)
                    return
                if not self._streaming:
                    await self._send_whole(send, 200, item, self._media_type)
                    return
                if not started:
                    await send(
                        {"type": "http.response.start", "status": 200, "headers": self._raw_headers(self._media_type)}
                    )
                    started = True
                await send({"type": "http.response.body", "body": item, "more_body": True})
        except RunnerGone as exc:
            await self._send_error(send, self._error_item(500, str(exc)), started)
            return
        finally:
            await self._items.aclose()
        if started:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        else:
            await self._send_whole(send, 200, b"", self._media_type)

    async def _send_error(self, send: Send, error: ErrorItem, started: bool) -> None:
        """Before any output the error gets its own status; after, it is the stream's last line."""
        if not started:
            await self._send_whole(send, error.status, error.body, JSON_MEDIA)
            return
        await send({"type": "http.response.body", "body": error.line, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _send_whole(self, send: Send, status: int, body: bytes, media_type: str) -> None:
        headers = self._raw_headers(media_type) + [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    def _raw_headers(self, media_type: str) -> list[tuple[bytes, bytes]]:
        headers = [(b"content-type", media_type.encode())]
        headers += [(k.lower().encode(), v.encode()) for k, v in self._headers.items()]
        return headers


async def _wait_for_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


Reply = Response | DeferredResponse  # what an endpoint of the simulator answers with


def ollama_error(status: int, message: str) -> Response:
    return Response(go_json({"error": message}), status_code=status, media_type=JSON_MEDIA)


def ollama_error_item(status: int, message: str) -> ErrorItem:
    body = go_json({"error": message})
    return ErrorItem(status, body, body + b"\n")


def openai_error_type(status: int) -> str:
    return {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")


def openai_error_body(status: int, message: str) -> bytes:
    return go_json({"error": {"message": message, "type": openai_error_type(status), "param": None, "code": None}})


def openai_error(status: int, message: str) -> Response:
    return Response(openai_error_body(status, message), status_code=status, media_type=JSON_MEDIA)


def openai_error_item(status: int, message: str) -> ErrorItem:
    body = openai_error_body(status, message)
    return ErrorItem(status, body, b"data: " + body + b"\n\n")
