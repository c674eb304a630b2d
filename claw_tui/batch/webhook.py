"""The call that tells a submitter its job ended: a JSON POST to the job's `metadata.webhook_url`.

Body: `{"type": "batch.completed" | "batch.failed" | "batch.expired" | "batch.cancelled", "data": <the batch
object>}`. Headers: `X-Claw-Event` (the type), `X-Claw-Timestamp` (seconds), and with `[batch] webhook_secret` set,
`X-Claw-Signature: sha256=<hex>`, the HMAC-SHA256 of `"<timestamp>.<body>"` under that secret. A 2xx answer is
delivered; a network error, a 408, 429 or 5xx is tried again after `webhook_backoff_s`, doubling each time, up to
`webhook_tries` tries in all; any other answer ends the attempts (the receiver refused it).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

log = logging.getLogger(__name__)

TIMEOUT = httpx.Timeout(10.0, connect=5.0)
RETRY_STATUSES = frozenset({408, 429})


def signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: str, timestamp: str, body: bytes, header: str) -> bool:
    """What a receiver does with the signature header (documented in the README)."""
    return hmac.compare_digest(signature(secret, timestamp, body), header)


async def deliver(
    url: str,
    event: str,
    batch: dict[str, Any],
    *,
    secret: str,
    tries: int,
    backoff_s: float,
    on_try: Callable[[dict[str, Any]], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.time,
    transport: httpx.AsyncBaseTransport | None = None,
) -> dict[str, Any]:
    """POST the event until it is delivered or the tries run out; returns the delivery state (also passed to
    `on_try` after each try, so that it can be kept)."""
    body = json.dumps({"type": event, "data": batch}, separators=(",", ":")).encode()
    state = {"url": url, "state": "pending", "tries": 0, "last_status": None, "last_error": None, "delivered_at": None}
    async with httpx.AsyncClient(timeout=TIMEOUT, transport=transport, follow_redirects=False) as client:
        for attempt in range(1, tries + 1):
            timestamp = str(int(clock()))
            headers = {"Content-Type": "application/json", "X-Claw-Event": event, "X-Claw-Timestamp": timestamp}
            if secret:
                headers["X-Claw-Signature"] = signature(secret, timestamp, body)
            retry = True
            try:
                response = await client.post(url, content=body, headers=headers)
                state["last_status"], state["last_error"] = response.status_code, None
                if 200 <= response.status_code < 300:
                    state.update(state="delivered", tries=attempt, delivered_at=clock())
                    _tell(on_try, state)
                    return state
                retry = response.status_code >= 500 or response.status_code in RETRY_STATUSES
                state["last_error"] = f"the receiver answered {response.status_code}"
            except httpx.HTTPError as exc:
                state["last_status"], state["last_error"] = None, f"{type(exc).__name__}: {exc}"
            state["tries"] = attempt
            if not retry or attempt == tries:
                state["state"] = "failed"
                _tell(on_try, state)
                log.warning("webhook %s for %s not delivered: %s", url, batch.get("id"), state["last_error"])
                return state
            _tell(on_try, state)
            await sleep(backoff_s * 2 ** (attempt - 1))
    return state


def _tell(on_try: Callable[[dict[str, Any]], None] | None, state: dict[str, Any]) -> None:
    if on_try is not None:
        on_try(dict(state))
