"""Reading tokens and timings out of streams as they pass through, without holding them back."""

from __future__ import annotations

import json
from collections.abc import Callable

from claw_tui.ledger import RequestRecord

NS_PER_MS = 1_000_000


class NdjsonMeter:
    """Meters an Ollama NDJSON stream (or a single JSON object): first token, chunk count, final stats, errors."""

    def __init__(self, on_first_token: Callable[[], None]) -> None:
        self._on_first_token = on_first_token
        self._buffer = b""
        self.first_token_seen = False
        self.content_chunks = 0
        self.final: dict | None = None
        self.error: str | None = None
        self.text_parts: list[str] = []
        self.keep_text = False

    def feed(self, data: bytes) -> None:
        self._buffer += data
        if b"\n" not in self._buffer:
            return
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            self.feed_object_line(line)

    def close(self) -> None:
        if self._buffer.strip():
            self.feed_object_line(self._buffer)
        self._buffer = b""

    def feed_object_line(self, line: bytes) -> None:
        line = line.strip()
        if not line:
            return
        try:
            obj = json.loads(line)
        except ValueError:
            return
        if not isinstance(obj, dict):
            return
        self.feed_object(obj)

    def feed_object(self, obj: dict) -> None:
        if "error" in obj:
            self.error = str(obj["error"])
            return
        text = chunk_text(obj)
        if text:
            self.content_chunks += 1
            if self.keep_text:
                self.text_parts.append(text)
            if not self.first_token_seen:
                self.first_token_seen = True
                self._on_first_token()
        if obj.get("done"):
            self.final = obj

    def apply_to(self, record: RequestRecord) -> None:
        final = self.final
        if final is None:
            record.completion_tokens = self.content_chunks
            return
        record.prompt_tokens = int(final.get("prompt_eval_count") or 0)
        record.completion_tokens = int(final.get("eval_count") or self.content_chunks)
        apply_server_timings(record, final)


def chunk_text(obj: dict) -> str:
    message = obj.get("message")
    if isinstance(message, dict):
        text = message.get("content") or message.get("thinking") or ""
        if not text and message.get("tool_calls"):
            return "<tool_calls>"
        return text if isinstance(text, str) else ""
    response = obj.get("response") or obj.get("thinking")
    return response if isinstance(response, str) else ""


def apply_server_timings(record: RequestRecord, final: dict) -> None:
    def ms(key: str) -> float | None:
        value = final.get(key)
        return value / NS_PER_MS if isinstance(value, (int, float)) and value else None

    record.server_total_ms = ms("total_duration")
    record.server_load_ms = ms("load_duration")
    record.server_prompt_eval_ms = ms("prompt_eval_duration")
    record.server_eval_ms = ms("eval_duration")


class SseMeter:
    """Meters an OpenAI-compatible Server-Sent Events stream: first content delta, usage, errors."""

    def __init__(self, on_first_token: Callable[[], None]) -> None:
        self._on_first_token = on_first_token
        self._buffer = b""
        self.first_token_seen = False
        self.content_chunks = 0
        self.usage: dict | None = None
        self.error: str | None = None
        self.finish_reason: str | None = None

    def feed(self, data: bytes) -> list[bytes]:
        """Feed raw bytes; returns the complete events (each ending with a blank line) seen so far."""
        self._buffer += data
        events: list[bytes] = []
        while True:
            cut = self._buffer.find(b"\n\n")
            if cut < 0:
                return events
            event, self._buffer = self._buffer[: cut + 2], self._buffer[cut + 2 :]
            self._feed_event(event)
            events.append(event)

    def rest(self) -> bytes:
        rest, self._buffer = self._buffer, b""
        return rest

    def _feed_event(self, event: bytes) -> None:
        for line in event.splitlines():
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]" or not payload:
                continue
            try:
                obj = json.loads(payload)
            except ValueError:
                continue
            if isinstance(obj, dict):
                self.feed_object(obj)

    def feed_object(self, obj: dict) -> None:
        if "error" in obj:
            error = obj["error"]
            self.error = error.get("message") if isinstance(error, dict) else str(error)
            return
        if obj.get("usage"):
            self.usage = obj["usage"]
        for choice in obj.get("choices") or []:
            delta = choice.get("delta") or choice.get("message") or {}
            if delta.get("content") or delta.get("tool_calls") or delta.get("reasoning_content"):
                self.content_chunks += 1
                if not self.first_token_seen:
                    self.first_token_seen = True
                    self._on_first_token()
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]

    def apply_to(self, record: RequestRecord) -> None:
        if self.usage:
            record.prompt_tokens = int(self.usage.get("prompt_tokens") or 0)
            record.completion_tokens = int(self.usage.get("completion_tokens") or 0)
        else:
            record.completion_tokens = self.content_chunks
