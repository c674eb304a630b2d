"""claw's own endpoints: /metrics and /claw/v1/* (status, requests, summary, backends, governor, events, telemetry,
agents, conversations) — mixed into Gateway."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from claw_tui.gateway.errors import GatewayError
from claw_tui.gateway.exchange import Exchange
from claw_tui.gateway.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from claw_tui.gateway.policies import bearer_token
from claw_tui.request_pages import QueryError, RequestQuery, page_bytes
from claw_tui.store import StoreError

if TYPE_CHECKING:
    from claw_tui.config import GatewayConfig
    from claw_tui.console.conversation import Conversation
    from claw_tui.gateway.backends import Backend
    from claw_tui.gateway.cache import AnswerCache, Singleflight
    from claw_tui.gateway.host import GatewayHost
    from claw_tui.gateway.ladder import DegradationLadder
    from claw_tui.gateway.metrics import GatewayMetrics
    from claw_tui.gateway.policies import Authenticator
    from claw_tui.gateway.supersede import Superseder
    from claw_tui.ledger import Ledger

T = TypeVar("T")
D = TypeVar("D", int, None)

KEEPALIVE_S = 15.0
MAX_TELEMETRY_S = 6 * 3600
SUMMARY_MEDIA = {
    "json": b"application/json; charset=utf-8",
    "md": b"text/markdown; charset=utf-8",
    "csv": b"text/csv; charset=utf-8",
}
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class ClawEndpoints:
    """Needs from its host (Gateway) what is declared here; claw's own endpoints read the Session through
    `_host()`, and answer 503 on a gateway built without one."""

    session: GatewayHost | None
    ledger: Ledger
    backends: list[Backend]
    metrics: GatewayMetrics
    config: GatewayConfig
    auth: Authenticator
    flights: Singleflight | None
    superseder: Superseder | None
    ladder: DegradationLadder
    cache: AnswerCache
    warmup_results: dict[str, str]
    _read_json: Callable[[Exchange], Awaitable[tuple[dict[str, Any], bytes]]]

    def _host(self) -> GatewayHost:
        if self.session is None:
            raise GatewayError(503, "this gateway runs without a claw session: claw's own endpoints are off")
        return self.session

    async def prometheus(self, ex: Exchange) -> None:
        body = await asyncio.to_thread(self.metrics.exposition)
        await ex.respond(200, body, media_type=METRICS_CONTENT_TYPE.encode())

    async def claw_status(self, ex: Exchange) -> None:
        status: dict[str, Any] = (
            await asyncio.to_thread(self.session.status_json) if self.session is not None else {"service": "claw"}
        )
        status["gateway_policies"] = self.policies_json()
        await ex.respond(200, _dumps(status))

    def policies_json(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "auth": self.auth.enabled,
            "rate_limit_rpm": cfg.rate_limit_rpm,
            "max_in_flight": cfg.max_in_flight,
            "queue_size": cfg.queue_size,
            "vram_admission_pct": cfg.vram_admission_pct,
            "singleflight": {"on": self.flights is not None, "shared": self.flights.shared if self.flights else 0},
            "supersede": {
                "on": self.superseder is not None,
                "superseded": self.superseder.superseded if self.superseder else 0,
            },
            "ladder": self.ladder.to_json(),
            "cache_entries": len(self.cache),
            "warmup": dict(self.warmup_results),
        }

    async def claw_requests(self, ex: Exchange) -> None:
        """Newest first, a page at a time: `limit` (at most 1,000), `before=<id>`, and filters `model`, `agent`,
        `status`, `since`. Built off the event loop: a big page never stalls the requests in flight."""
        try:
            query = RequestQuery.parse(ex.query)
        except QueryError as exc:
            raise GatewayError(400, str(exc)) from None
        if self.session is None:
            await ex.respond(200, page_bytes(self.ledger.records(), query, None, ring_full=False))
            return
        await asyncio.to_thread(self.session.refresh_telemetry)
        try:
            body = await asyncio.to_thread(self.session.requests_page, query)
        except StoreError as exc:
            raise GatewayError(503, f"older requests are in the session store, which cannot be read: {exc}") from None
        await ex.respond(200, body)

    async def claw_model_events(self, ex: Exchange) -> None:
        """Model operations (loads, unloads, warm-ups), newest first: listed apart from requests."""
        try:
            limit = int(ex.query("limit") or "100")
        except ValueError:
            raise GatewayError(400, "limit must be an integer") from None
        if self.session is not None:
            await asyncio.to_thread(self.session.refresh_telemetry)
        events = self.ledger.model_events(max(0, min(limit, 10_000)))
        await ex.respond(200, _dumps({"model_events": [e.to_json() for e in reversed(events)]}))

    async def claw_summary(self, ex: Exchange) -> None:
        """The live session summary: `format=json` (default), `md` (for people) or `csv` (one row per request)."""
        fmt = ex.query("format") or "json"
        if fmt not in SUMMARY_MEDIA:
            raise GatewayError(400, f"format must be one of json, md, csv (got '{fmt}')")
        host = self._host()
        if fmt == "json":  # built and serialised off the loop: hundreds of rows must not stall requests
            await ex.respond(200, await asyncio.to_thread(lambda: _dumps(host.summary().to_json())))
            return
        summary = await asyncio.to_thread(host.summary)
        from claw_tui.export import render

        text = await asyncio.to_thread(render, summary, fmt, self.ledger.records())
        await ex.respond(200, text.encode(), media_type=SUMMARY_MEDIA[fmt])

    async def claw_backends(self, ex: Exchange) -> None:
        await ex.respond(200, _dumps({"backends": [b.to_json() for b in self.backends]}))

    async def claw_governor(self, ex: Exchange) -> None:
        """GET: the governor's status; POST {"enabled": bool, "idle_after_s"?: s, "unload_after_s"?: s}."""
        host = self._host()
        governor = host.governor
        if governor is None:
            raise GatewayError(503, "the governor is not running", headers={"Retry-After": "60"})
        if ex.method == "GET":
            await ex.respond(200, _dumps(governor.status_json()))
            return
        body, _ = await self._read_json(ex)
        enabled = body.get("enabled")
        if not isinstance(enabled, bool):
            raise GatewayError(400, 'expected {"enabled": true|false}')
        limits: dict[str, float] = {}
        for key in ("idle_after_s", "unload_after_s"):
            value = body.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise GatewayError(400, f"{key} must be a number of seconds >= 0")
            limits[key] = float(value)
        status = await governor.set_enabled(enabled, **limits)
        host.governor_changed()
        await ex.respond(200, _dumps(status))

    # ---- the console's view of the service ------------------------------------------------------------------------
    async def claw_events(self, ex: Exchange) -> None:
        """Server-Sent Events: every event has an id; `Last-Event-ID` (or ?last_event_id=) resumes after it. A reader
        that falls behind loses its queue and gets a `resync` event: publishing never waits for a reader."""
        raw = ex.header(b"last-event-id") or ex.query("last_event_id")
        after = None
        if raw:
            try:
                after = int(raw)
            except ValueError:
                raise GatewayError(400, f"Last-Event-ID must be an event id (a whole number), not '{raw}'") from None
        host = self._host()
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()

        def wake() -> None:
            loop.call_soon_threadsafe(ready.set)

        subscription = host.bus.subscribe(wake, after_id=after)
        ex.watch()  # the client leaving cancels this handler
        try:
            await ex.start(200, SSE_HEADERS)
            await ex.write(f"retry: 1000\n: claw session {host.id}\n\n".encode())
            while not subscription.closed:
                try:
                    await asyncio.wait_for(ready.wait(), KEEPALIVE_S)
                except TimeoutError:
                    await ex.write(b": keep-alive\n\n")
                    continue
                ready.clear()
                events = subscription.drain()
                if events:
                    await ex.write(b"".join(event.to_sse() for event in events))
            await ex.end()
        finally:
            subscription.close()

    async def claw_telemetry(self, ex: Exchange) -> None:
        """GPU history: `gpu=N` (default: every GPU), `seconds=S` (default 120): full-rate samples as far as the
        sampler keeps them, 4 Hz and 1 Hz points for the whole window."""
        from claw_tui.console.snapshots import telemetry_json

        gpu = _int_query(ex, "gpu", None)
        seconds = _float_query(ex, "seconds", 120.0)
        if seconds <= 0 or seconds > MAX_TELEMETRY_S:
            raise GatewayError(400, f"seconds must be more than 0 and at most {MAX_TELEMETRY_S}")
        host = self._host()
        sampler = host.sampler
        if gpu is not None and (gpu < 0 or sampler is None or gpu >= sampler.gpu_count):
            count = sampler.gpu_count if sampler is not None else 0
            raise GatewayError(404, f"no GPU {gpu} (this box has {count} GPU{'s' if count != 1 else ''} in telemetry)")
        body = await asyncio.to_thread(lambda: _dumps(telemetry_json(sampler, host.clock(), seconds, gpu)))
        await ex.respond(200, body)

    async def claw_agents(self, ex: Exchange) -> None:
        """GET: every agent. POST (create), PUT ?name=N (replace N), DELETE ?name=N: an admin token when the
        gateway has admin tokens; the change is saved to the service's config file (comments kept) and served."""
        from claw_tui.session import AgentError

        if ex.method != "GET":
            self._require_admin(ex)
        session = self._host()
        try:
            if ex.method == "GET":
                agents = session.agents_json()
            elif ex.method == "POST":
                body, _ = await self._read_json(ex)
                agents = await asyncio.to_thread(session.put_agent, body, None)
            elif ex.method == "PUT":
                body, _ = await self._read_json(ex)
                name = ex.query("name") or body.get("name")
                agents = await asyncio.to_thread(session.put_agent, body, name)
            else:
                name = ex.query("name")
                if not name:
                    raise GatewayError(400, "say which agent to delete: DELETE /claw/v1/agents?name=NAME")
                agents = await asyncio.to_thread(session.delete_agent, name)
        except AgentError as exc:
            raise GatewayError(exc.status, str(exc)) from None
        await ex.respond(200 if ex.method != "POST" else 201, _dumps({"agents": agents}))

    # ---- the console's chat conversations, kept in the service's session store --------------------------------------
    async def claw_conversations(self, ex: Exchange) -> None:
        """GET: the saved conversations, newest first, without their turns (`?limit=N`, default 200). POST: save a
        new conversation (its id is made when the body has none). Conversations hold prompts and answers: when the
        gateway has admin tokens, reading and writing them needs one."""
        from claw_tui import store

        self._require_admin(ex)
        path = self._conversation_store()
        if ex.method == "GET":
            limit = _int_query(ex, "limit", 200)
            if limit < 0:
                raise GatewayError(400, "limit must be 0 or more")
            rows = await _in_store(store.list_conversations, path, min(limit, 10_000))
            await ex.respond(200, _dumps({"conversations": rows}))
            return
        body, _ = await self._read_json(ex)
        conversation = _conversation_from(body, None)
        if conversation.session_id is None:
            conversation.session_id = self._host().id
        saved = await _in_store(store.save_conversation, path, conversation.to_json())
        await ex.respond(201, _dumps(saved), [(b"location", f"/claw/v1/conversations/{saved['id']}".encode())])

    async def claw_conversation(self, ex: Exchange) -> None:
        """/claw/v1/conversations/{id} — GET (`?format=md` for Markdown), PUT (create or replace), DELETE."""
        from claw_tui import store
        from claw_tui.console.conversation import Conversation, ConversationError, check_id

        self._require_admin(ex)
        conversation_id = ex.path.removeprefix("/claw/v1/conversations/")
        try:
            check_id(conversation_id)
        except ConversationError as exc:
            raise GatewayError(404, f"no conversation '{conversation_id}': {exc}") from None
        path = self._conversation_store()
        if ex.method == "GET":
            fmt = ex.query("format") or "json"
            if fmt not in ("json", "md"):
                raise GatewayError(400, f"format must be json or md (got '{fmt}')")
            data = await _in_store(store.load_conversation, path, conversation_id)
            if fmt == "json":
                await ex.respond(200, _dumps(data))
                return
            text = Conversation.from_json(data, id=conversation_id).to_markdown()
            await ex.respond(200, text.encode(), media_type=SUMMARY_MEDIA["md"])
        elif ex.method == "PUT":
            body, _ = await self._read_json(ex)
            if body.get("id") not in (None, conversation_id):
                raise GatewayError(400, f"the body's id '{body.get('id')}' is not the path's '{conversation_id}'")
            conversation = _conversation_from(body, conversation_id)
            if conversation.session_id is None:
                conversation.session_id = self._host().id
            await ex.respond(200, _dumps(await _in_store(store.save_conversation, path, conversation.to_json())))
        else:
            await _in_store(store.delete_conversation, path, conversation_id)
            await ex.respond(200, _dumps({"deleted": conversation_id}))

    def _conversation_store(self) -> Path:
        saved_in = self._host().store
        if saved_in is None:
            raise GatewayError(503, "conversations are not kept: this claw service runs without a session store")
        return saved_in.path

    def _require_admin(self, ex: Exchange) -> None:
        if not (self.auth.enabled and self.auth.admin_required):
            return
        token = bearer_token(ex.scope["headers"], ex.scope.get("query_string", b""))
        if self.auth.role_of(token) != "admin":
            raise GatewayError(403, f"{ex.method} {ex.path} needs an admin token")


def _conversation_from(body: dict[str, Any], conversation_id: str | None) -> Conversation:
    from claw_tui.console.conversation import Conversation, ConversationError

    try:
        return Conversation.from_json(body, id=conversation_id)
    except ConversationError as exc:
        raise GatewayError(400, str(exc)) from None


async def _in_store(function: Callable[..., T], *args: Any) -> T:
    from claw_tui.store import ConversationNotFound, StoreError

    try:
        return await asyncio.to_thread(function, *args)
    except ConversationNotFound as exc:
        raise GatewayError(404, str(exc)) from None
    except StoreError as exc:
        raise GatewayError(503, str(exc), headers={"Retry-After": "5"}) from None


def _int_query(ex: Exchange, name: str, default: D) -> int | D:
    raw = ex.query(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise GatewayError(400, f"{name} must be a whole number (got '{raw}')") from None


def _float_query(ex: Exchange, name: str, default: float) -> float:
    raw = ex.query(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise GatewayError(400, f"{name} must be a number (got '{raw}')") from None
    if value != value:  # NaN
        raise GatewayError(400, f"{name} must be a number (got '{raw}')")
    return value


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
