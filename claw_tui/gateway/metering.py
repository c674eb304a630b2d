"""Reading tokens and timings out of answers as they pass through, without holding them back.

Relayed chunks are not parsed: an Ollama content chunk is recognised by its `"done":false`, an OpenAI event by its
framing. Only the lines that carry what the ledger needs (the final statistics, usage, errors) are parsed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from claw_tui.ledger import RequestRecord

NS_PER_MS = 1_000_000
_NOT_DONE = b'"done":false'
_NOT_DONE_SPACED = b'"done": false'


def _loads(line: bytes) -> dict[str, Any] | None:
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


class NdjsonMeter:
    """Meters an Ollama NDJSON stream (or one JSON object): first token, chunk count, final stats, errors."""

    def __init__(self, on_first_token: Callable[[], None]) -> None:
        self._on_first_token = on_first_token
        self._tail = b""
        self.first_token_seen = False
        self.content_chunks = 0
        self.final: dict[str, Any] | None = None
        self.error: str | None = None

    def feed(self, data: bytes) -> None:
        if self._tail:
            data = self._tail + data
        start = 0
        find = data.find
        while True:
            end = find(b"\n", start)
            if end < 0:
                break
            if find(_NOT_DONE, start, end) >= 0 or find(_NOT_DONE_SPACED, start, end) >= 0:
                self._content_chunk()
            elif end > start:
                self._other_line(data[start:end])
            start = end + 1
        self._tail = data[start:] if start < len(data) else b""

    def close(self) -> None:
        """End of the stream: a last line without a newline (a whole non-streamed object) is read now."""
        tail, self._tail = self._tail, b""
        if not tail.strip():
            return
        if _NOT_DONE in tail or _NOT_DONE_SPACED in tail:
            self._content_chunk()
        else:
            self._other_line(tail)

    def _content_chunk(self) -> None:
        self.content_chunks += 1
        if not self.first_token_seen:
            self.first_token_seen = True
            self._on_first_token()

    def _other_line(self, line: bytes) -> None:
        obj = _loads(line)
        if obj is None:
            return
        if "error" in obj:
            self.error = str(obj["error"])
        elif obj.get("done"):
            self.final = obj

    def apply_to(self, record: RequestRecord) -> None:
        final = self.final
        if final is None:
            record.completion_tokens = self.content_chunks
            return
        record.prompt_tokens = int(final.get("prompt_eval_count") or 0)
        record.completion_tokens = int(final.get("eval_count") or self.content_chunks)
        apply_server_timings(record, final)


def apply_server_timings(record: RequestRecord, final: dict[str, Any]) -> None:
    def ms(key: str) -> float | None:
        value = final.get(key)
        return value / NS_PER_MS if isinstance(value, (int, float)) and value else None

    record.server_total_ms = ms("total_duration")
    record.server_load_ms = ms("load_duration")
    record.server_prompt_eval_ms = ms("prompt_eval_duration")
    record.server_eval_ms = ms("eval_duration")


def has_answer_content(obj: dict[str, Any]) -> bool:
    """Does an OpenAI chunk (or completion) carry output: text, reasoning or a tool call?"""
    for choice in obj.get("choices") or ():
        delta = choice.get("delta") or choice.get("message") or {}
        if (
            delta.get("content")
            or delta.get("tool_calls")
            or delta.get("reasoning_content")
            or delta.get("reasoning")
            or choice.get("text")
        ):
            return True
    return False


class SseMeter:
    """Meters an OpenAI-compatible Server-Sent Events stream: first content delta, usage, errors.

    `feed` returns the bytes to relay: whole events only, without the usage-only event when the client did not
    ask for usage (claw always asks upstream, to meter the tokens).
    """

    def __init__(self, on_first_token: Callable[[], None], *, keep_usage_event: bool = True) -> None:
        self._on_first_token = on_first_token
        self._keep_usage_event = keep_usage_event
        self._buffer = b""
        self.first_token_seen = False
        self.content_chunks = 0
        self.usage: dict[str, Any] | None = None
        self.error: str | None = None
        self.finish_reason: str | None = None
        self.timings: dict[str, Any] | None = None  # llama.cpp's server reports its own prompt and decode times
        self.done_seen = False  # the stream's closing `data: [DONE]`

    def feed(self, data: bytes) -> bytes:
        if self._buffer:
            data = self._buffer + data
        cut = data.rfind(b"\n\n")
        if cut < 0:
            self._buffer = data
            return b""
        complete, self._buffer = data[: cut + 2], data[cut + 2 :]
        out = []
        for event in complete.split(b"\n\n")[:-1]:
            if self._event(event):
                out.append(event + b"\n\n")
        return b"".join(out)

    def rest(self) -> bytes:
        rest, self._buffer = self._buffer, b""
        if rest.strip() and self._event(rest.rstrip(b"\n")):
            return rest
        return b""

    def _event(self, event: bytes) -> bool:
        """Meter one event; False to leave it out of the relayed stream."""
        if (
            b'"usage"' in event
            or b'"error"' in event
            or not self.first_token_seen
            or b'"finish_reason":"' in event
            or b'"finish_reason": "' in event  # llama.cpp's server writes spaced JSON
            or b'"timings"' in event
        ):
            obj = _event_json(event)
            if obj is None:
                self.done_seen = self.done_seen or b"[DONE]" in event
                return True
            return self.feed_object(obj)
        if b"[DONE]" in event:
            self.done_seen = True
        elif event.startswith(b"data:"):
            self.content_chunks += 1
        return True

    def feed_object(self, obj: dict[str, Any]) -> bool:
        if "error" in obj:
            error = obj["error"]
            self.error = error.get("message") if isinstance(error, dict) else str(error)
            return True
        if has_answer_content(obj):
            self.content_chunks += 1
            if not self.first_token_seen:
                self.first_token_seen = True
                self._on_first_token()
        for choice in obj.get("choices") or ():
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        if isinstance(obj.get("timings"), dict):
            self.timings = obj["timings"]
        if obj.get("usage"):
            self.usage = obj["usage"]
            if not obj.get("choices") and not self._keep_usage_event:
                return False
        return True

    def apply_to(self, record: RequestRecord) -> None:
        if self.usage:
            record.prompt_tokens = int(self.usage.get("prompt_tokens") or 0)
            record.completion_tokens = int(self.usage.get("completion_tokens") or 0)
        else:
            record.completion_tokens = self.content_chunks
        if self.timings:
            apply_llama_timings(record, self.timings)


def apply_llama_timings(record: RequestRecord, timings: dict[str, Any]) -> None:
    """llama.cpp's `timings` (milliseconds): the prompt's evaluation and the decode, as Ollama's durations."""

    def ms(key: str) -> float | None:
        value = timings.get(key)
        return float(value) if isinstance(value, (int, float)) and value > 0 else None

    record.server_prompt_eval_ms = ms("prompt_ms")
    record.server_eval_ms = ms("predicted_ms")


def _event_json(event: bytes) -> dict[str, Any] | None:
    for line in event.splitlines():
        if line.startswith(b"data:"):
            payload = line[5:].strip()
            if payload and payload != b"[DONE]":
                return _loads(payload)
    return None


def sse_events(buffer: bytes) -> tuple[list[dict[str, Any] | None], bytes]:
    """Complete events of an SSE buffer as objects (None for `[DONE]`), and what is left over."""
    cut = buffer.rfind(b"\n\n")
    if cut < 0:
        return [], buffer
    events: list[dict[str, Any] | None] = []
    for event in buffer[: cut + 2].split(b"\n\n")[:-1]:
        for line in event.splitlines():
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                events.append(None)
            elif payload:
                obj = _loads(payload)
                if obj is not None:
                    events.append(obj)
    return events, buffer[cut + 2 :]


_PROMPT_EVAL_COUNT = re.compile(rb'"prompt_eval_count"\s*:\s*(\d+)')
_PROMPT_TOKENS = re.compile(rb'"prompt_tokens"\s*:\s*(\d+)')


def embed_prompt_tokens(content: bytes) -> int:
    """Prompt tokens of an embedding answer, found without parsing its (large) vectors."""
    match = _PROMPT_EVAL_COUNT.search(content) or _PROMPT_TOKENS.search(content)
    return int(match.group(1)) if match else 0
