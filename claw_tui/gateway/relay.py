"""Relays turn an upstream answer into the bytes of the client's surface, metering it on the way.

A streamed answer goes through `feed` (chunk by chunk) and `end`; a whole answer through `whole`. When the surfaces
match, chunks pass through untouched (no JSON round trip); only a translation between surfaces parses them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

from claw_tui.gateway import ollama_compat as olc
from claw_tui.gateway import openai_compat as oai
from claw_tui.gateway.errors import openai_error_object
from claw_tui.gateway.metering import (
    NdjsonMeter,
    SseMeter,
    apply_llama_timings,
    apply_server_timings,
    embed_prompt_tokens,
    has_answer_content,
    sse_events,
)
from claw_tui.ledger import RequestRecord

NDJSON = b"application/x-ndjson"
SSE = b"text/event-stream"
JSON = b"application/json; charset=utf-8"
TRUNCATED = "the backend ended the stream before its last chunk"


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


class Relay:
    """Base: the client's media type, what was metered, and how to tell the client a stream broke."""

    media_type = JSON
    _first_token_seen = False
    _error: str | None = None
    #: For whole answers with no streamed timing: the server's own prefill end, seconds after upstream start.
    server_first_token_s: float | None = None

    @property
    def first_token_seen(self) -> bool:
        return self._first_token_seen

    @property
    def error(self) -> str | None:
        """Why the answer failed (the backend said so, or the stream broke), None while it has not."""
        return self._error

    def feed(self, data: bytes) -> bytes:
        raise NotImplementedError

    def end(self) -> bytes:
        return b""

    def whole(self, content: bytes) -> bytes:
        return self.feed(content) + self.end()

    def failure(self, message: str) -> bytes:
        return _dumps({"error": message}) + b"\n"

    def apply_to(self, record: RequestRecord) -> None:
        raise NotImplementedError

    def usage(self) -> tuple[int, int]:
        """(prompt tokens, completion tokens) metered so far."""
        return 0, 0

    def progress(self) -> int:
        """Answer chunks relayed so far (about one token each): the ledger's token curve."""
        return 0


class NdjsonRelay(Relay):
    """Ollama surface over an Ollama backend: bytes pass through."""

    def __init__(self, on_first_token: Callable[[], None], stream: bool) -> None:
        self.meter = NdjsonMeter(on_first_token)
        self.stream = stream
        self.media_type = NDJSON if stream else JSON
        self._truncated: str | None = None

    @property
    def first_token_seen(self) -> bool:
        return self.meter.first_token_seen

    @property
    def error(self) -> str | None:
        return self.meter.error or self._truncated

    def feed(self, data: bytes) -> bytes:
        self.meter.feed(data)
        return data

    def progress(self) -> int:
        return self.meter.content_chunks

    def end(self) -> bytes:
        self.meter.close()
        final = self.meter.final
        if final is None and self.meter.error is None:
            # Ollama ends every answer with its `done` chunk: a stream without one was cut short
            self._truncated = f"{TRUNCATED} (no done chunk)"
            return self.failure(self._truncated) if self.stream else b""
        if final is not None and not self.meter.first_token_seen:
            load_ns = final.get("load_duration") or 0
            prompt_ns = final.get("prompt_eval_duration") or 0
            if isinstance(load_ns, (int, float)) and isinstance(prompt_ns, (int, float)):
                self.server_first_token_s = (load_ns + prompt_ns) / 1e9
        return b""

    def apply_to(self, record: RequestRecord) -> None:
        self.meter.apply_to(record)

    def usage(self) -> tuple[int, int]:
        final = self.meter.final or {}
        return int(final.get("prompt_eval_count") or 0), int(final.get("eval_count") or self.meter.content_chunks)


class SseRelay(Relay):
    """OpenAI surface over an OpenAI-compatible backend: events pass through (the usage event only if asked)."""

    media_type = SSE

    def __init__(self, on_first_token: Callable[[], None], include_usage: bool) -> None:
        self.meter = SseMeter(on_first_token, keep_usage_event=include_usage)

    @property
    def first_token_seen(self) -> bool:
        return self.meter.first_token_seen

    @property
    def error(self) -> str | None:
        return self.meter.error

    def feed(self, data: bytes) -> bytes:
        return self.meter.feed(data)

    def progress(self) -> int:
        return self.meter.content_chunks

    def end(self) -> bytes:
        rest = self.meter.rest()
        meter = self.meter
        if meter.error is None and meter.finish_reason is None and not meter.done_seen:
            meter.error = f"{TRUNCATED} (no finish_reason, no [DONE])"
            return rest + sse_error(meter.error)
        return rest

    def failure(self, message: str) -> bytes:
        return sse_error(message)

    def apply_to(self, record: RequestRecord) -> None:
        self.meter.apply_to(record)

    def usage(self) -> tuple[int, int]:
        usage = self.meter.usage or {}
        return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or self.meter.content_chunks)


class OpenAIWholeRelay(Relay):
    """A non-streamed OpenAI answer from an OpenAI-compatible backend, passed through whole."""

    def __init__(self, on_first_token: Callable[[], None]) -> None:
        self._on_first_token = on_first_token
        self._usage: dict[str, Any] = {}
        self._timings: dict[str, Any] | None = None

    def whole(self, content: bytes) -> bytes:
        try:
            obj = json.loads(content)
        except ValueError:
            obj = None
        if not isinstance(obj, dict) or not ("error" in obj or isinstance(obj.get("choices"), list)):
            self._error = "the backend's answer is not a completion (no choices)"
            return content
        if isinstance(obj, dict):
            if "error" in obj:
                error = obj["error"]
                self._error = error.get("message") if isinstance(error, dict) else str(error)
            self._usage = obj.get("usage") or {}
            self._timings = obj.get("timings") if isinstance(obj.get("timings"), dict) else None
            if has_answer_content(obj):
                self._first_token_seen = True
        return content

    def failure(self, message: str) -> bytes:
        return _dumps(openai_error_object(message, "api_error"))

    def apply_to(self, record: RequestRecord) -> None:
        record.prompt_tokens = int(self._usage.get("prompt_tokens") or 0)
        record.completion_tokens = int(self._usage.get("completion_tokens") or 0)
        if self._timings:
            apply_llama_timings(record, self._timings)

    def usage(self) -> tuple[int, int]:
        return int(self._usage.get("prompt_tokens") or 0), int(self._usage.get("completion_tokens") or 0)


class NdjsonToOpenAI(Relay):
    """OpenAI surface over an Ollama backend (upstream always streamed, so TTFT and timings are exact)."""

    def __init__(self, on_first_token: Callable[[], None], writer: oai.ChunkWriter, stream: bool) -> None:
        self.meter = NdjsonMeter(on_first_token)
        self.writer = writer
        self.stream = stream
        self.media_type = SSE if stream else JSON
        self._tail = b""
        self.final: dict[str, Any] | None = None
        self.text: list[str] = []
        self.tool_calls: list[dict[str, Any]] = []
        self._ended = False

    @property
    def first_token_seen(self) -> bool:
        return self.meter.first_token_seen

    def progress(self) -> int:
        return self.meter.content_chunks

    def _objects(self, data: bytes) -> Iterator[dict[str, Any]]:
        data = self._tail + data
        *lines, self._tail = data.split(b"\n")
        for line in lines:
            if line.strip():
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if isinstance(obj, dict):
                    yield obj

    def feed(self, data: bytes) -> bytes:
        self.meter.feed(data)
        out = []
        for obj in self._objects(data):
            out.append(self._convert(obj))
        return b"".join(out)

    def _convert(self, obj: dict[str, Any]) -> bytes:
        if self._ended:
            return b""
        if "error" in obj:
            self._error = str(obj["error"])
            self._ended = True
            return sse_error(self._error) if self.stream else b""
        if obj.get("done"):
            self.final = obj
            self._ended = True
            return self.writer.finish(obj) if self.stream else b""
        message = obj.get("message") or {}
        if message.get("content"):
            self.text.append(message["content"])
        self.tool_calls.extend(message.get("tool_calls") or [])
        if not self.stream:
            return b""
        return self.writer.content(obj) or b""

    def end(self) -> bytes:
        out = b""
        if self._tail.strip():
            out = self.feed(b"\n")
        self.meter.close()
        if self.error is not None:
            return out if self.stream else _dumps(openai_error_object(self.error, "api_error"))
        if self.final is None:
            self._error = f"{TRUNCATED} (no done chunk)"
            return out + self.failure(self._error)
        if self.stream:
            return out
        return _dumps(
            oai.completion_object(self.writer.id, self.writer.model, "".join(self.text), self.tool_calls, self.final)
        )

    def failure(self, message: str) -> bytes:
        return sse_error(message) if self.stream else _dumps(openai_error_object(message, "api_error"))

    def apply_to(self, record: RequestRecord) -> None:
        self.meter.apply_to(record)

    def usage(self) -> tuple[int, int]:
        final = self.meter.final or {}
        return int(final.get("prompt_eval_count") or 0), int(final.get("eval_count") or self.meter.content_chunks)


class OpenAIToNdjson(Relay):
    """Ollama surface over an OpenAI-compatible backend: SSE deltas become Ollama chunks; a non-streamed request
    goes upstream whole (every server reports usage in a whole answer) and becomes Ollama's one object."""

    def __init__(
        self, on_first_token: Callable[[], None], model: str, chat: bool, stream: bool, think: object = None
    ) -> None:
        self._on_first_token = on_first_token
        self.writer = olc.OllamaAnswerWriter(model, chat, time.monotonic_ns(), thinking=think is not False)
        self.stream = stream
        self.media_type = NDJSON if stream else JSON
        self._buffer = b""
        self._done = False
        self._finished = False  # the backend said its answer ended (a finish_reason, or [DONE])

    def feed(self, data: bytes) -> bytes:
        self.writer.answering()
        events, self._buffer = sse_events(self._buffer + data)
        out = []
        for obj in events:
            if obj is None:
                self._finished = True
                continue
            if self._done:
                continue
            if "error" in obj:
                error = obj["error"]
                self._error = error.get("message") if isinstance(error, dict) else str(error)
                self._done = True
                if self.stream:
                    out.append(_dumps({"error": self.error}) + b"\n")
                continue
            chunk = self.writer.delta(obj)
            self._finished = self._finished or self.writer.finish_reason is not None
            self._saw_output(chunk)
            if chunk is not None and self.stream:
                out.append(_dumps(chunk) + b"\n")
        return b"".join(out)

    def whole(self, content: bytes) -> bytes:
        self.writer.answering()
        try:
            obj = json.loads(content)
        except ValueError:
            obj = None
        if not isinstance(obj, dict):
            self._error = "the backend's answer is not a JSON object"
            return b""
        if "error" in obj:
            error = obj["error"]
            self._error = error.get("message") if isinstance(error, dict) else str(error)
            return b""
        self._saw_output(self.writer.message(obj))
        self._done = self._finished = True
        return _dumps(self.writer.final(whole=True))

    def _saw_output(self, chunk: dict[str, Any] | None) -> None:
        if (chunk is not None or self.writer.tool_calls) and not self.first_token_seen:
            self._first_token_seen = True
            self._on_first_token()

    def end(self) -> bytes:
        if self.error is None and not self._finished:
            self._error = "the backend ended the answer before its last chunk (no finish_reason, no [DONE])"
            self._done = True
            return self.failure(self._error)
        if self.error is not None:
            return b"" if self.stream else _dumps({"error": self.error})
        self._done = True
        if not self.stream:
            return _dumps(self.writer.final(whole=True))
        out = b""
        tools = self.writer.tool_chunk()
        if tools is not None:
            out += _dumps(tools) + b"\n"
        return out + _dumps(self.writer.final()) + b"\n"

    def failure(self, message: str) -> bytes:
        return _dumps({"error": message}) + (b"\n" if self.stream else b"")

    def progress(self) -> int:
        return self.writer.tokens

    def apply_to(self, record: RequestRecord) -> None:
        record.prompt_tokens, record.completion_tokens = self.usage()
        if self.writer.timings:
            apply_llama_timings(record, self.writer.timings)

    def usage(self) -> tuple[int, int]:
        return self.writer.prompt_tokens(), self.writer.completion_tokens()


class EmbedRelay(Relay):
    """Embeddings, whole: passed through, or converted between the two surfaces."""

    def __init__(self, convert: Callable[[bytes], tuple[bytes, int]] | None, error_shape: str) -> None:
        self._convert = convert
        self._error_shape = error_shape
        self.prompt_tokens = 0

    def whole(self, content: bytes) -> bytes:
        if self._convert is None:
            self.prompt_tokens = embed_prompt_tokens(content)
            return content
        try:
            out, self.prompt_tokens = self._convert(content)
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            self._error = f"unreadable embeddings from the backend: {exc}"
            return self.failure(self._error)
        return out

    def failure(self, message: str) -> bytes:
        if self._error_shape == "openai":
            return _dumps(openai_error_object(message, "api_error"))
        return _dumps({"error": message})

    def apply_to(self, record: RequestRecord) -> None:
        record.prompt_tokens = self.prompt_tokens

    def usage(self) -> tuple[int, int]:
        return self.prompt_tokens, 0


def sse_error(message: str) -> bytes:
    return b"data: " + _dumps(openai_error_object(message, "api_error")) + b"\n\n"


def estimate_first_token(record: RequestRecord, relay: Relay) -> float | None:
    """For a whole answer: when the first token came, from the server's load + prefill time."""
    if relay.server_first_token_s is None or record.t_upstream_start is None:
        return None
    return record.t_upstream_start + relay.server_first_token_s


__all__ = [
    "JSON",
    "NDJSON",
    "SSE",
    "EmbedRelay",
    "NdjsonRelay",
    "NdjsonToOpenAI",
    "OpenAIToNdjson",
    "OpenAIWholeRelay",
    "Relay",
    "SseRelay",
    "apply_server_timings",
    "estimate_first_token",
    "sse_error",
]


def static_answer(surface: str, op: str, model: str, text: str, stream: bool, request_id: str) -> tuple[bytes, bytes]:
    """The degradation ladder's last step: a fixed reply, in the shape the client asked for (media type, body)."""
    if surface == "openai":
        final = {"done_reason": "stop"}
        writer = oai.ChunkWriter(f"chatcmpl-{request_id}", model, include_usage=True)
        if stream:
            body = (writer.content({"message": {"content": text}}) or b"") + writer.finish(final)
            return SSE, body
        return JSON, _dumps(oai.completion_object(writer.id, model, text, [], final))
    answer = olc.OllamaAnswerWriter(model, op == "chat", time.monotonic_ns())
    if stream:
        chunk = answer.delta({"choices": [{"delta": {"content": text}}]})
        return NDJSON, _dumps(chunk) + b"\n" + _dumps(answer.final()) + b"\n"
    answer.delta({"choices": [{"delta": {"content": text}}]})
    return JSON, _dumps(answer.final(whole=True))
