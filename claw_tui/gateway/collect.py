"""Merging a streamed Ollama answer into the one JSON object of a non-streamed answer.

claw reads a non-streamed native request as a stream so that the first-token timeout holds for it as it does for
streams; the client still gets the single object Ollama would have sent: the final chunk's fields and timings with
the text, thinking and tool calls of every chunk joined.
"""

from __future__ import annotations

import json
from typing import Any


def _objects(data: bytes) -> list[object]:
    """Every JSON line, parsed in one call (as one array) when they all parse; line by line otherwise."""
    lines = [line for line in data.split(b"\n") if line.strip()]
    try:
        parsed: list[object] = json.loads(b"[" + b",".join(lines) + b"]")
        return parsed
    except ValueError:
        pass
    objects: list[object] = []
    for line in lines:
        try:
            objects.append(json.loads(line))
        except ValueError:
            continue
    return objects


def merge_ndjson(data: bytes, *, chat: bool) -> dict[str, Any] | None:
    """The non-streamed answer made of an NDJSON stream; None when the stream has no final (`done`) chunk."""
    text: list[str] = []
    thinking: list[str] = []
    tool_calls: list[object] = []
    final: dict[str, Any] | None = None
    for obj in _objects(data):
        if not isinstance(obj, dict):
            continue
        part = obj.get("message") if chat else obj
        if isinstance(part, dict):
            text.append(str(part.get("content" if chat else "response") or ""))
            thinking.append(str(part.get("thinking") or ""))
            calls = part.get("tool_calls")
            if isinstance(calls, list):
                tool_calls.extend(calls)
        if obj.get("done"):
            final = obj
    if final is None:
        return None
    merged = dict(final)
    if chat:
        message = dict(final.get("message") or {})
        message.setdefault("role", "assistant")
        message["content"] = "".join(text)
        if any(thinking):
            message["thinking"] = "".join(thinking)
        if tool_calls:
            message["tool_calls"] = tool_calls
        merged["message"] = message
    else:
        merged["response"] = "".join(text)
        if any(thinking):
            merged["thinking"] = "".join(thinking)
    return merged
