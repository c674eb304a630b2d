"""Telling a model operation from a request: Ollama loads a model for an empty prompt and unloads it for an empty
prompt with `keep_alive: 0`; claw's own warm-up prompt only exists to get a model loaded. These are recorded as
model events, apart from requests, so that they never count in request latency or J/token."""

from __future__ import annotations

import re
from typing import Any

from claw_tui.records import REQUEST

WARMUP_CLIENT = "warmup"
_GO_DURATION_PART = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|µs|ms|s|m|h)")


def model_operation(surface: str, op: str, body: dict[str, Any], client: str | None) -> str:
    """ "request", or the kind of model operation ("load", "unload", "warmup") this request really is."""
    if client == WARMUP_CLIENT:
        return "warmup"
    if surface != "ollama":
        return REQUEST
    if op == "generate":
        empty = not (body.get("prompt") or body.get("images") or body.get("suffix"))
    elif op == "chat":
        empty = not body.get("messages")
    else:
        return REQUEST
    if not empty:
        return REQUEST
    return "unload" if keep_alive_is_zero(body.get("keep_alive")) else "load"


def keep_alive_is_zero(value: object) -> bool:
    """Does Ollama read this keep_alive as "unload now"? (a number of seconds, or a Go duration string)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return value == 0
    if not isinstance(value, str):
        return False
    text = value.strip()
    if text in ("0", "-0"):
        return True
    parts = _GO_DURATION_PART.findall(text.lstrip("+-"))
    if not parts or "".join(n + u for n, u in parts) != text.lstrip("+-"):
        return False
    return all(float(number) == 0 for number, _ in parts)
