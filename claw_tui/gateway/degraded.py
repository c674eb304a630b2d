"""The degradation ladder as a step: while a model's error rate is high, its requests are answered from the answer
cache, sent to their fallback model, or answered with the static reply (`ladder.py` keeps the rates and the
settings)."""

from __future__ import annotations

from claw_tui.gateway.cache import AnswerCache
from claw_tui.gateway.errors import GatewayError
from claw_tui.gateway.exchange import Exchange
from claw_tui.gateway.ladder import DegradationLadder
from claw_tui.gateway.metrics import GatewayMetrics
from claw_tui.gateway.relay import static_answer
from claw_tui.gateway.upstream import Call
from claw_tui.ledger import Ledger, RequestRecord


class DegradedReplies:
    def __init__(self, ledger: Ledger, ladder: DegradationLadder, cache: AnswerCache, metrics: GatewayMetrics) -> None:
        self.ledger = ledger
        self.ladder = ladder
        self.cache = cache
        self.metrics = metrics

    def to_fallback(self, call: Call) -> None:
        """Send the request straight to its first fallback model (the ladder's middle step)."""
        self.ladder.served["fallback"] += 1
        self.metrics.degraded.labels("fallback").inc()
        call.record.downgraded_from = call.record.model
        call.model, call.fallbacks = call.fallbacks[0], call.fallbacks[1:]
        call.raw = None

    async def reply(
        self,
        ex: Exchange,
        call: Call,
        key: str | None,
        extra: list[tuple[bytes, bytes]],
        *,
        after_failure: GatewayError | None = None,
        allow_fallback: bool = True,
    ) -> bool:
        """Answer from the cache, or with the static reply, when the ladder says so; False when neither applies."""
        record = call.record
        cached = self.cache.get(key) if key is not None else None
        if cached is not None:
            self.ladder.served["cache"] += 1
            self.metrics.degraded.labels("cache").inc()
            headers = [
                (b"x-claw-request-id", record.id.encode()),
                (b"x-claw-backend", b"cache"),
                (b"x-claw-model", cached.model.encode()),
                (b"x-claw-cache", b"hit"),
                (b"x-claw-degraded", b"cache"),
            ] + extra
            record.backend = "cache"
            record.prompt_tokens, record.completion_tokens = cached.prompt_tokens, cached.completion_tokens
            await self.send_chunks(ex, cached.media_type, cached.chunks, headers, record)
            self.ledger.finish(record, "ok", 200, "served from the answer cache (degraded)")
            return True
        if allow_fallback and self.ladder.fallback and call.fallbacks:
            return False
        if self.ladder.static_reply and call.op != "embed":
            self.ladder.served["static"] += 1
            self.metrics.degraded.labels("static").inc()
            media, content = static_answer(
                call.surface, call.op, call.requested, self.ladder.static_reply, call.stream, record.id
            )
            headers = [
                (b"x-claw-request-id", record.id.encode()),
                (b"x-claw-backend", b"static"),
                (b"x-claw-model", call.requested.encode()),
                (b"x-claw-degraded", b"static"),
            ] + extra
            record.backend = "static"
            await self.send_chunks(ex, media, [content], headers, record)
            reason = f"static reply: error rate of {call.model} {self.ladder.rate(call.model):.0%}"
            if after_failure is not None:
                reason += f"; {after_failure.message}"
            self.ledger.finish(record, "rejected", 200, reason)
            return True
        return False

    async def send_chunks(
        self,
        ex: Exchange,
        media_type: bytes,
        chunks: list[bytes],
        headers: list[tuple[bytes, bytes]],
        record: RequestRecord,
    ) -> None:
        self.ledger.mark_first_token(record)
        if media_type.startswith(b"application/json"):
            await ex.respond(200, b"".join(chunks), headers, media_type)
            return
        await ex.start(200, [(b"content-type", media_type)] + headers)
        for chunk in chunks:
            await ex.write(chunk)
        await ex.end()
