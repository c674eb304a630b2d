"""Identical requests: a short-TTL cache of recent answers, and singleflight (one upstream request shared by
identical requests in flight at the same time)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

MAX_ENTRY_BYTES = 1 << 20


def request_key(path: str, body: dict[str, Any]) -> str:
    """The same request (path and JSON body, whatever the key order) gives the same key."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(f"{path}\n{canonical}".encode()).hexdigest()


@dataclass
class StoredAnswer:
    """A complete answer as sent to the client: status, content type, body chunks, and its token counts."""

    status: int
    media_type: bytes
    chunks: list[bytes]
    model: str
    backend: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    stored_at: float = 0.0


class AnswerCache:
    """Recent complete answers, each kept `ttl_s` seconds; at most `max_entries`, the least recently used go first."""

    def __init__(self, ttl_s: float, max_entries: int = 256, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.clock = clock
        self.enabled = ttl_s > 0
        self._entries: OrderedDict[str, StoredAnswer] = OrderedDict()

    def put(self, key: str, answer: StoredAnswer) -> None:
        if not self.enabled or sum(len(c) for c in answer.chunks) > MAX_ENTRY_BYTES:
            return
        answer.stored_at = self.clock()
        self._entries[key] = answer
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def get(self, key: str) -> StoredAnswer | None:
        answer = self._entries.get(key)
        if answer is None:
            return None
        if self.clock() - answer.stored_at > self.ttl_s:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return answer

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(frozen=True)
class FlightHead:
    """What every subscriber of a flight answers with before the chunks: the headers, and who answered."""

    headers: list[tuple[bytes, bytes]]
    backend: str
    model: str


class FlightError(Exception):
    """The shared upstream request failed before any output: every subscriber answers this."""

    def __init__(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers


@dataclass
class Flight:
    """One upstream answer fanned out to every identical request that joins while it runs.

    The producer appends chunks; each subscriber reads them all from the start. The producer task belongs to the
    flight, not to the first client: it is cancelled only when every subscriber has gone.
    """

    key: str
    leader_id: str
    head: asyncio.Future[FlightHead] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    chunks: list[bytes] = field(default_factory=list)
    done: bool = False
    error: str | None = None  # the stream broke after output began (its last chunk says so)
    subscribers: int = 0
    task: asyncio.Task[None] | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    # filled in by the producer when the answer ends
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def publish(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        self._wake()

    def finish(self, error: str | None = None) -> None:
        self.done = True
        self.error = error
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def read(self) -> AsyncIterator[bytes]:
        """The chunks in order, waiting for new ones until the flight is done."""
        index = 0
        while True:
            while index < len(self.chunks):
                yield self.chunks[index]
                index += 1
            if self.done:
                return
            await self._changed.wait()


class Singleflight:
    def __init__(self) -> None:
        self._flights: dict[str, Flight] = {}
        self.shared = 0  # requests that joined a flight instead of going upstream

    def join(self, key: str) -> Flight | None:
        flight = self._flights.get(key)
        if flight is None or flight.done:
            return None
        flight.subscribers += 1
        self.shared += 1
        return flight

    def lead(self, key: str, leader_id: str, produce: Callable[[Flight], Awaitable[None]]) -> Flight:
        flight = Flight(key=key, leader_id=leader_id, subscribers=1)
        self._flights[key] = flight

        async def run() -> None:
            try:
                await produce(flight)
            finally:
                if self._flights.get(key) is flight:
                    del self._flights[key]
                if not flight.head.done():
                    flight.head.cancel()
                flight.done = True
                flight._wake()

        flight.task = asyncio.get_running_loop().create_task(run(), name=f"flight:{leader_id}")
        return flight

    def leave(self, flight: Flight) -> None:
        flight.subscribers -= 1
        if flight.subscribers <= 0 and not flight.done and flight.task is not None:
            flight.task.cancel()
            if self._flights.get(flight.key) is flight:
                del self._flights[flight.key]
