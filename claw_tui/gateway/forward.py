"""Forwarding, the last step of a metered request: an opened upstream answer relayed to the client (or, for a
shared request, into its flight), and accounted for: the request's record, the residency of the model, the error
rates of the backend and the model, and the answer cache."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp

from claw_tui.gateway.backends import describe_error
from claw_tui.gateway.cache import AnswerCache, StoredAnswer
from claw_tui.gateway.errors import GatewayError
from claw_tui.gateway.exchange import Exchange
from claw_tui.gateway.ladder import DegradationLadder
from claw_tui.gateway.metrics import GatewayMetrics
from claw_tui.gateway.relay import estimate_first_token
from claw_tui.gateway.residency import ResidencyWatcher
from claw_tui.gateway.upstream import Call, Opened, Upstream, UpstreamTimeout
from claw_tui.ledger import Ledger

CACHE_MAX_BYTES = 1 << 20


class Forwarder:
    def __init__(
        self,
        ledger: Ledger,
        upstream: Upstream,
        residency: ResidencyWatcher,
        ladder: DegradationLadder,
        cache: AnswerCache,
        metrics: GatewayMetrics,
    ) -> None:
        self.ledger = ledger
        self.upstream = upstream
        self.residency = residency
        self.ladder = ladder
        self.cache = cache
        self.metrics = metrics

    def outcome(self, model: str, exc: GatewayError | None) -> None:
        """Feed the model's error rate (the ladder): backend failures count, refusals and client mistakes do not.
        (Each backend's own rates are fed per attempt, in upstream.py, and when an answer ends, in `finish`.)"""
        if exc is None:
            self.ladder.add(model, True)
        elif exc.backend_fault:
            self.ladder.add(model, False)

    def headers(self, call: Call, opened: Opened, extra: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        record = call.record
        headers = [
            (b"content-type", opened.relay.media_type),
            (b"x-claw-request-id", record.id.encode()),
            (b"x-claw-backend", opened.backend.name.encode()),
            (b"x-claw-model", opened.model.encode()),
        ]
        if record.downgraded_from:
            headers.append((b"x-claw-model-downgraded", opened.model.encode()))
            self.metrics.fallbacks.labels(record.downgraded_from, opened.model).inc()
        return headers + extra

    async def relay(
        self, ex: Exchange, call: Call, opened: Opened, extra: list[tuple[bytes, bytes]], key: str | None
    ) -> None:
        headers = self.headers(call, opened, extra)
        kept: list[bytes] | None = [] if key is not None and self.cache.enabled else None
        if opened.complete:
            status, error = ("error", opened.relay.error) if opened.relay.error else ("ok", None)
            await ex.respond(200, opened.first, headers[1:], opened.relay.media_type)
            if kept is not None:
                kept.append(opened.first)
        else:
            await ex.start(200, headers)
            kept_bytes = 0

            async def sink(data: bytes) -> None:
                nonlocal kept, kept_bytes
                await ex.write(data)
                if kept is not None:  # a running count keeps the cost per chunk flat in the stream's length
                    kept_bytes += len(data)
                    if kept_bytes > CACHE_MAX_BYTES:
                        kept = None  # too long to keep: not cached at all (never a cut answer)
                    else:
                        kept.append(data)

            status, error = await self.pump(call, opened, sink)
            await ex.end()
        self.finish(call, opened, status, error)
        if kept is not None and key is not None and status == "ok":
            prompt, completion = opened.relay.usage()
            self.cache.put(
                key,
                StoredAnswer(200, opened.relay.media_type, kept, opened.model, opened.backend.name, prompt, completion),
            )

    async def pump(
        self, call: Call, opened: Opened, sink: Callable[[bytes], Awaitable[None]]
    ) -> tuple[str, str | None]:
        """Relay the rest of an opened answer into `sink`; returns the outcome (status, error)."""
        relay, record, ledger = opened.relay, call.record, self.ledger
        seen = relay.progress()
        if seen:
            ledger.progress(record, seen)
        try:
            await sink(opened.first)
            while True:
                data = await self.upstream.next_chunk(opened, call.deadline)
                if data is None:
                    await sink(relay.end())
                    break
                out = relay.feed(data)
                count = relay.progress()
                if count != seen:
                    seen = count
                    ledger.progress(record, count)
                if out:
                    await sink(out)
        except (aiohttp.ClientError, OSError, UpstreamTimeout) as exc:
            message = (
                str(exc)
                if isinstance(exc, UpstreamTimeout)
                else f"backend '{opened.backend.name}' failed mid-stream: {describe_error(exc)}"
            )
            if isinstance(exc, UpstreamTimeout):
                opened.backend.note_error(message)
            else:  # the connection broke: the backend as a whole failed
                opened.backend.record_failure(message)
            await sink(relay.failure(message))
            return "error", message
        finally:
            await self.upstream.close(opened)
        return ("error", relay.error) if relay.error else ("ok", None)

    def finish(self, call: Call, opened: Opened, status: str, error: str | None) -> None:
        record = call.record
        opened.relay.apply_to(record)
        if record.t_first_token is None:
            at = estimate_first_token(record, opened.relay)
            if at is not None:
                self.ledger.mark_first_token(record, at=at)
        self.ledger.finish(record, status, 200, error)
        ok = status == "ok"
        if ok:
            (self.residency.unloaded if record.kind == "unload" else self.residency.loaded)(
                opened.backend, opened.model
            )
        elif error:
            opened.backend.note_error(error)
        opened.backend.record_outcome(opened.model, ok)
        if opened.model != call.model:  # a fallback answered because the model itself failed
            self.ladder.add(call.model, False)
        self.outcome(opened.model, None if ok else GatewayError(502, error or "", backend_fault=True))
