"""The console over a Session running in this process (on its own loop, in its own thread): direct calls, and the
Session's event bus for the events, exactly what /claw/v1/events carries."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from claw_tui import store
from claw_tui.console.bus import Subscription
from claw_tui.console.conversation import Conversation, ConversationError, write_markdown
from claw_tui.console.events import ConsoleEvent
from claw_tui.console.snapshots import telemetry_json
from claw_tui.console.source import SourceError

if TYPE_CHECKING:
    from claw_tui.session import Session

P = ParamSpec("P")
T = TypeVar("T")

REQUESTS_LOADED = 5000
TELEMETRY_LOADED_S = 3600.0
MODEL_EVENTS_LOADED = 200
BATCHES_LOADED = 100


class InProcessSource:
    mode = "in-process"

    def __init__(self, session: Session) -> None:
        self.session = session
        self.demo = session.demo
        self._subscription: Subscription | None = None

    @property
    def label(self) -> str:
        return f"in-process · gateway {self.gateway_url.removeprefix('http://')}"

    @property
    def gateway_url(self) -> str:
        return self.session.gateway_url

    def gateway_headers(self) -> dict[str, str]:
        return self.session.gateway_headers()

    def clock(self) -> float:
        return self.session.clock()

    @property
    def notices(self) -> list[str]:
        return list(self.session.notices)

    def start(self, wake: Callable[[], None]) -> None:
        self._subscription = self.session.bus.subscribe(wake)

    def drain(self) -> list[ConsoleEvent]:
        return self._subscription.drain() if self._subscription is not None else []

    async def stop(self) -> None:
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None

    async def load(self) -> dict[str, Any]:
        return await asyncio.to_thread(self.load_now)

    def load_now(self) -> dict[str, Any]:
        session = self.session
        return {
            "status": session.status_json(),
            "requests": [r.to_json() for r in reversed(session.ledger.records(REQUESTS_LOADED))],
            "telemetry": telemetry_json(session.sampler, session.clock(), TELEMETRY_LOADED_S),
            "agents": session.agents_json(),
            "model_events": [e.to_json() for e in session.ledger.model_events(MODEL_EVENTS_LOADED)],
            "batches": session.batch_jobs_json(BATCHES_LOADED),
        }

    # ---- commands: run off the console's thread, on the Session's loop where they touch it --------------------------
    async def set_governor(self, enabled: bool) -> dict[str, Any]:
        return await self._call(self.session.set_governor_enabled, enabled)

    async def save_agent(self, agent: dict[str, Any], replacing: str | None = None) -> list[dict[str, Any]]:
        return await self._call(self.session.put_agent, agent, replacing)

    async def delete_agent(self, name: str) -> list[dict[str, Any]]:
        return await self._call(self.session.delete_agent, name)

    async def export_summary(self, directory: Path | None = None) -> Path:
        return await self._call(self.session.export_summary, directory)

    async def cancel_batch(self, batch_id: str) -> dict[str, Any]:
        from claw_tui.batch.service import BatchError

        batch = self.session.batch
        if batch is None:
            raise SourceError(self.session.batch_off_reason or "batch jobs are not served here")
        try:
            return await asyncio.to_thread(self.session.run_on_loop, batch.cancel_batch(batch_id))
        except BatchError as exc:
            raise SourceError(exc.message) from None
        except (RuntimeError, TimeoutError) as exc:
            raise SourceError(f"cancel failed: {exc}") from None

    # ---- chat conversations: the Session's store, read and written from a worker thread ---------------------------
    async def list_conversations(self) -> list[dict[str, Any]]:
        return await self._call(store.list_conversations, self._store_path())

    async def load_conversation(self, conversation_id: str) -> dict[str, Any]:
        return await self._call(store.load_conversation, self._store_path(), conversation_id)

    async def save_conversation(self, conversation: dict[str, Any]) -> dict[str, Any]:
        checked = _checked(conversation)
        checked.session_id = checked.session_id or self.session.id
        return await self._call(store.save_conversation, self._store_path(), checked.to_json())

    async def delete_conversation(self, conversation_id: str) -> None:
        await self._call(store.delete_conversation, self._store_path(), conversation_id)

    async def export_conversation(self, conversation: dict[str, Any], directory: Path | None = None) -> Path:
        return await self._call(write_markdown, _checked(conversation), directory or self._export_dir())

    def _store_path(self) -> Path:
        if self.session.store is None:
            raise SourceError("conversations are not kept: this session runs without a session store")
        return self.session.store.path

    def _export_dir(self) -> Path:
        return self.session.export_dir()

    @staticmethod
    async def _call(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await asyncio.to_thread(function, *args, **kwargs)
        except (OSError, ValueError, RuntimeError, store.StoreError, ConversationError) as exc:
            raise SourceError(str(exc)) from None


def _checked(conversation: dict[str, Any]) -> Conversation:
    try:
        return Conversation.from_json(conversation)
    except ConversationError as exc:
        raise SourceError(str(exc)) from None
