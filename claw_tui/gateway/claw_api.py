"""claw's own endpoints: /metrics and /claw/v1/* (status, requests, summary, backends, governor) — mixed into
Gateway."""

from __future__ import annotations

import asyncio
import json

from claw_tui.gateway.errors import GatewayError
from claw_tui.gateway.exchange import Exchange
from claw_tui.gateway.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE


class ClawEndpoints:
    """Needs from its host: session, ledger, backends, metrics, config and the policy objects."""

    async def prometheus(self, ex: Exchange) -> None:
        body = await asyncio.to_thread(self.metrics.exposition)
        await ex.respond(200, body, media_type=METRICS_CONTENT_TYPE.encode())

    async def claw_status(self, ex: Exchange) -> None:
        status = await asyncio.to_thread(self.session.status_json) if self.session is not None else {}
        status["gateway_policies"] = self.policies_json()
        await ex.respond(200, _dumps(status))

    def policies_json(self) -> dict:
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
        try:
            limit = int(ex.query("limit") or "100")
        except ValueError:
            raise GatewayError(400, "limit must be an integer") from None
        if self.session is not None:
            await asyncio.to_thread(self.session.refresh_telemetry)
        records = self.ledger.records(max(0, min(limit, 10_000)))
        await ex.respond(200, _dumps({"requests": [r.to_json() for r in reversed(records)]}))

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
        await asyncio.to_thread(self.session.refresh_telemetry)
        await ex.respond(200, _dumps(await asyncio.to_thread(self.session.summary_json)))

    async def claw_backends(self, ex: Exchange) -> None:
        await ex.respond(200, _dumps({"backends": [b.to_json() for b in self.backends]}))

    async def claw_governor(self, ex: Exchange) -> None:
        """GET: the governor's status; POST {"enabled": bool, "idle_after_s"?: s, "unload_after_s"?: s}."""
        governor = getattr(self.session, "governor", None)
        if governor is None:
            raise GatewayError(503, "the governor is not running", headers={"Retry-After": "60"})
        if ex.method == "GET":
            await ex.respond(200, _dumps(governor.status_json()))
            return
        body, _ = await self._read_json(ex)
        enabled = body.get("enabled")
        if not isinstance(enabled, bool):
            raise GatewayError(400, 'expected {"enabled": true|false}')
        limits = {}
        for key in ("idle_after_s", "unload_after_s"):
            value = body.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise GatewayError(400, f"{key} must be a number of seconds >= 0")
            limits[key] = float(value)
        await ex.respond(200, _dumps(await governor.set_enabled(enabled, **limits)))


def _dumps(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
