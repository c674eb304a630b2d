"""Singleflight as a step: identical concurrent requests share one upstream request. The first (the leader) opens
it and meters it in its own record; the others (followers) read the same answer, each with a record of its own
(`cache.py` keeps the flights)."""

from __future__ import annotations

import asyncio

from claw_tui.gateway.cache import Flight, FlightError, FlightHead, Singleflight
from claw_tui.gateway.errors import GatewayError, error_body
from claw_tui.gateway.exchange import Exchange
from claw_tui.gateway.forward import Forwarder
from claw_tui.gateway.upstream import Call
from claw_tui.ledger import Ledger


class SharedRequests:
    def __init__(self, flights: Singleflight, ledger: Ledger, forward: Forwarder) -> None:
        self.flights = flights
        self.ledger = ledger
        self.forward = forward
        self.upstream = forward.upstream
        self.records: set[str] = set()  # leaders' records, metered by their flight's producer

    async def serve(self, ex: Exchange, call: Call, key: str, extra: list[tuple[bytes, bytes]]) -> None:
        record = call.record
        joined = self.flights.join(key)
        leader = joined is None
        if joined is None:
            self.records.add(record.id)
            flight = self.flights.lead(key, record.id, lambda f: self._produce(f, call, extra, key))
        else:
            flight = joined
        try:
            try:
                head = await asyncio.shield(flight.head)
            except FlightError as exc:
                if not leader:
                    self.ledger.finish(record, "error", exc.status, "the shared request failed")
                headers = [(k.lower().encode(), v.encode()) for k, v in exc.headers.items()]
                await ex.respond(exc.status, exc.body, headers)
                return
            except asyncio.CancelledError:
                if flight.head.cancelled() and not ex.gone and not ex.interrupted:
                    raise GatewayError(
                        502, "the shared upstream request was cancelled", error_type="api_error"
                    ) from None
                raise
            own = [(b"x-claw-request-id", record.id.encode())]
            if not leader:
                own.append((b"x-claw-singleflight", flight.leader_id.encode()))
                record.backend = head.backend
                record.model = head.model
            await ex.start(200, [h for h in head.headers if h[0] != b"x-claw-request-id"] + own)
            async for chunk in flight.read():
                if not leader:
                    self.ledger.mark_first_token(record)
                await ex.write(chunk)
            await ex.end()
            if not leader:
                record.prompt_tokens, record.completion_tokens = flight.prompt_tokens, flight.completion_tokens
                self.ledger.finish(record, "error" if flight.error else "ok", 200, flight.error)
        finally:
            self.flights.leave(flight)

    async def _produce(self, flight: Flight, call: Call, extra: list[tuple[bytes, bytes]], key: str) -> None:
        """The shared upstream request of a flight; it meters into the leader's record."""
        record = call.record
        try:
            try:
                opened = await self.upstream.open(call)
            except GatewayError as exc:
                self.forward.outcome(call.model, exc)
                self.ledger.finish(record, "error", exc.status, exc.message)
                flight.head.set_exception(FlightError(exc.status, error_body(call.surface, exc), exc.headers))
                return
            headers = self.forward.headers(call, opened, extra)
            flight.head.set_result(FlightHead(headers, opened.backend.name, opened.model))

            async def publish(data: bytes) -> None:
                if data:
                    flight.publish(data)

            if opened.complete:
                await publish(opened.first)
                status, error = ("error", opened.relay.error) if opened.relay.error else ("ok", None)
            else:
                status, error = await self.forward.pump(call, opened, publish)
            flight.prompt_tokens, flight.completion_tokens = opened.relay.usage()
            self.forward.finish(call, opened, status, error)
            flight.finish(error)
        except asyncio.CancelledError:
            self.ledger.finish(record, "cancelled", 499, "every client of the shared request disconnected")
            raise
        finally:
            self.records.discard(record.id)
