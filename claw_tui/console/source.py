"""The one interface between a console and the core: a `ConsoleSource` delivers events and answers queries and
commands. Two implementations: `InProcessSource` (a Session in this process, direct calls) and `RemoteSource`
(a `claw serve` through claw's HTTP API)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from claw_tui.console.events import ConsoleEvent


class SourceError(Exception):
    """A query or command that failed; `str()` is one sentence to show."""


class ConsoleSource(Protocol):
    mode: str  # "in-process" | "attached"
    demo: bool

    @property
    def label(self) -> str:
        """What the header says about where the console's data comes from."""

    @property
    def gateway_url(self) -> str: ...

    def gateway_headers(self) -> dict[str, str]: ...

    def clock(self) -> float: ...

    def start(self, wake: Callable[[], None]) -> None:
        """Begin delivering events; `wake()` is called (from any thread) when `drain()` has something."""

    def drain(self) -> list[ConsoleEvent]: ...

    async def load(self) -> dict[str, Any]:
        """The whole state: {"status", "requests" (newest first), "telemetry", "agents", "batches"}."""

    async def stop(self) -> None: ...

    async def set_governor(self, enabled: bool) -> dict[str, Any]: ...

    async def save_agent(self, agent: dict[str, Any], replacing: str | None = None) -> list[dict[str, Any]]:
        """Create (replacing=None) or replace an agent; returns every agent."""

    async def delete_agent(self, name: str) -> list[dict[str, Any]]: ...

    async def cancel_batch(self, batch_id: str) -> dict[str, Any]:
        """Cancel a batch job; returns its batch object."""

    async def export_summary(self, directory: Path | None = None) -> Path:
        """Write the session's summary (JSON, Markdown and CSV) on this machine; returns the JSON's path."""

    # ---- chat conversations, kept in the core's session store ----------------------------------------------------
    async def list_conversations(self) -> list[dict[str, Any]]:
        """The saved conversations, newest first, without their turns."""

    async def load_conversation(self, conversation_id: str) -> dict[str, Any]: ...

    async def save_conversation(self, conversation: dict[str, Any]) -> dict[str, Any]:
        """Create or replace a conversation (the JSON of `Conversation.to_json()`); returns it as saved."""

    async def delete_conversation(self, conversation_id: str) -> None: ...

    async def export_conversation(self, conversation: dict[str, Any], directory: Path | None = None) -> Path:
        """Write the conversation as Markdown on this machine (beside F7's summaries); returns the file's path."""


def agent_names(agents: list[dict[str, Any]]) -> list[str]:
    return [str(a.get("name")) for a in agents]
