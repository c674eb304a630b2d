"""What the gateway needs from its host, the Session: routing and VRAM admission read the sampler's latest
snapshots; claw's own endpoints (/claw/v1/*) read the status, the summary, the pages of requests, telemetry,
events, the governor, the agents and the store of conversations. The gateway reads its host and never owns it; a
Gateway built without one (a test's) serves the model and inference endpoints, not claw's own."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from claw_tui.console.bus import EventBus
    from claw_tui.governor import Governor
    from claw_tui.request_pages import RequestQuery
    from claw_tui.store import SessionStore
    from claw_tui.summary_types import Summary
    from claw_tui.telemetry.sampler import TelemetrySampler


class GatewayHost(Protocol):
    @property
    def id(self) -> str:
        """The session's id (named in /claw/v1/events)."""

    @property
    def clock(self) -> Callable[[], float]: ...

    @property
    def sampler(self) -> TelemetrySampler | None:
        """GPU telemetry, None when the box has none."""

    @property
    def governor(self) -> Governor | None:
        """None while the governor is not running."""

    @property
    def store(self) -> SessionStore | None:
        """The session store (the chat's conversations are kept there), None when the service runs without one."""

    @property
    def bus(self) -> EventBus:
        """Every event a console shows (/claw/v1/events)."""

    def status_json(self) -> dict[str, Any]: ...

    def summary(self) -> Summary:
        """The live efficiency summary (blocking: it polls the GPUs first)."""

    def requests_page(self, query: RequestQuery) -> bytes:
        """A page of /claw/v1/requests as JSON (blocking: it may read the store); raises StoreError."""

    def refresh_telemetry(self) -> None:
        """Poll the GPUs now (blocking: called in a worker thread)."""

    def governor_changed(self) -> None: ...

    def agents_json(self) -> list[dict[str, Any]]: ...

    def put_agent(self, agent: dict[str, Any], replacing: str | None = None) -> list[dict[str, Any]]:
        """Create or replace an agent, saved to the config file; raises AgentError."""

    def delete_agent(self, name: str) -> list[dict[str, Any]]:
        """Raises AgentError."""
