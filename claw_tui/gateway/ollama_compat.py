"""The Ollama surface over an OpenAI-compatible backend (vLLM, llama.cpp server): request translation and the
NDJSON answers Ollama clients expect, with durations measured by claw (the backend reports none)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any, TypeGuard

OPTION_FIELDS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "seed": "seed",
    "frequency_penalty": "frequency_penalty",
    "presence_penalty": "presence_penalty",
    "num_predict": "max_tokens",
    "stop": "stop",
}
DONE_REASONS = {"stop": "stop", "length": "length", "tool_calls": "stop", "content_filter": "stop"}


def now_rfc3339() -> str:
    now = time.time_ns()
    stamp = datetime.fromtimestamp(now // 1_000_000_000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{now % 1_000_000_000:09d}Z"


def openai_options(options: object) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not isinstance(options, dict):
        return out
    for src, dst in OPTION_FIELDS.items():
        value = options.get(src)
        if value is None:
            continue
        if src == "num_predict" and (not isinstance(value, int) or value < 0):
            continue
        out[dst] = value
    return out


def response_format(fmt: object) -> dict[str, Any] | None:
    if fmt == "json":
        return {"type": "json_object"}
    if isinstance(fmt, dict):
        return {"type": "json_schema", "json_schema": {"name": "response", "schema": fmt}}
    return None


def openai_message(message: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.get("role", "user")}
    content = message.get("content") or ""
    images = message.get("images") or []
    if images:
        parts = [{"type": "text", "text": content}] if content else []
        parts += [{"type": "image_url", "image_url": {"url": _data_url(image)}} for image in images]
        out["content"] = parts
    else:
        out["content"] = content
    calls = message.get("tool_calls")
    if calls:
        out["tool_calls"] = [
            {
                "id": f"call_{i}",
                "type": "function",
                "function": {
                    "name": (c.get("function") or {}).get("name", ""),
                    "arguments": json.dumps((c.get("function") or {}).get("arguments") or {}),
                },
            }
            for i, c in enumerate(calls)
        ]
    if message.get("role") == "tool":
        out["tool_call_id"] = message.get("tool_call_id") or message.get("tool_name") or "call_0"
    return out


def _data_url(image: str) -> str:
    return image if image.startswith("data:") else f"data:image/png;base64,{image}"


def _streaming(stream: bool) -> dict[str, Any]:
    return {"stream": True, "stream_options": {"include_usage": True}} if stream else {"stream": False}


def chat_request(body: dict[str, Any], model: str, stream: bool = True) -> tuple[str, dict[str, Any]]:
    """An Ollama /api/chat body as an OpenAI /v1/chat/completions request (streamed with usage, or whole)."""
    request = {
        "model": model,
        "messages": [openai_message(m) for m in body.get("messages") or [] if isinstance(m, dict)],
        **_streaming(stream),
        **openai_options(body.get("options")),
    }
    fmt = response_format(body.get("format"))
    if fmt:
        request["response_format"] = fmt
    if body.get("tools"):
        request["tools"] = body["tools"]
    return "/v1/chat/completions", request


def generate_request(body: dict[str, Any], model: str, stream: bool = True) -> tuple[str, dict[str, Any]]:
    """An Ollama /api/generate body as an OpenAI request: chat completions, or plain completions when raw."""
    options = openai_options(body.get("options"))
    if body.get("raw"):
        return "/v1/completions", {"model": model, "prompt": body.get("prompt") or "", **_streaming(stream), **options}
    messages = []
    if body.get("system"):
        messages.append({"role": "system", "content": body["system"]})
    messages.append({"role": "user", "content": body.get("prompt") or "", "images": body.get("images") or []})
    path, request = chat_request({"messages": messages, "format": body.get("format")}, model, stream)
    request.update(options)
    return path, request


def embed_request(body: dict[str, Any], model: str) -> tuple[str, dict[str, Any]]:
    request: dict[str, Any] = {"model": model, "input": body.get("input"), "encoding_format": "float"}
    if isinstance(body.get("dimensions"), int) and body["dimensions"] > 0:
        request["dimensions"] = body["dimensions"]
    return "/v1/embeddings", request


def embed_answer(content: bytes, model: str, elapsed_ns: int) -> tuple[bytes, int]:
    """An OpenAI embeddings answer as Ollama's /api/embed answer, and its prompt tokens."""
    obj = json.loads(content)
    data = sorted(obj.get("data") or [], key=lambda item: item.get("index", 0))
    tokens = int((obj.get("usage") or {}).get("prompt_tokens") or 0)
    answer = {
        "model": model,
        "embeddings": [item.get("embedding") or [] for item in data],
        "total_duration": elapsed_ns,
    }
    if tokens:
        answer["prompt_eval_count"] = tokens
    return json.dumps(answer, separators=(",", ":")).encode(), tokens


class OllamaAnswerWriter:
    """Builds Ollama chat/generate chunks from OpenAI deltas, and the final chunk with Ollama's timings: the
    backend's own where it reports them (llama.cpp's `timings`), else measured by claw."""

    def __init__(self, model: str, chat: bool, started_ns: int, *, thinking: bool = True) -> None:
        self.model = model
        self.chat = chat
        self.started_ns = started_ns
        self.keep_thinking = thinking  # False when the client asked `think: false`
        self.head_ns: int | None = None  # when the backend started answering
        self.first_ns: int | None = None
        self.text: list[str] = []
        self.thinking: list[str] = []
        self.tokens = 0  # output deltas (text, thinking or tool calls) seen: about one token each
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.timings: dict[str, Any] | None = None

    def answering(self) -> None:
        if self.head_ns is None:
            self.head_ns = time.monotonic_ns()

    def delta(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """An Ollama chunk for one OpenAI event, or None when it carries no output (tool calls wait for the end)."""
        self._note(obj)
        content, thinking = "", ""
        for choice in obj.get("choices") or ():
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
            delta = choice.get("delta") or {}
            content += delta.get("content") or choice.get("text") or ""
            thinking += delta.get("reasoning_content") or delta.get("reasoning") or ""
            for call in delta.get("tool_calls") or ():
                self._add_tool_call(call)
        if content or thinking:
            self.tokens += 1
        if not self.keep_thinking:
            thinking = ""
        if not content and not thinking:
            return None
        if self.first_ns is None:
            self.first_ns = time.monotonic_ns()
        self.text.append(content)
        if thinking:
            self.thinking.append(thinking)
        return self._chunk(content, thinking)

    def message(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """A whole OpenAI completion: its text, reasoning and tool calls, as if streamed in one delta."""
        self._note(obj)
        choice = (obj.get("choices") or [{}])[0] or {}
        message = choice.get("message") or {}
        self.finish_reason = choice.get("finish_reason") or "stop"
        for index, call in enumerate(message.get("tool_calls") or ()):
            self._add_tool_call({"index": index, **call})
        delta = {"content": message.get("content") or choice.get("text") or ""}
        delta["reasoning_content"] = message.get("reasoning_content") or message.get("reasoning") or ""
        chunk = self.delta({"choices": [{"delta": delta}]})
        self.tokens = self.completion_tokens()
        return chunk

    def _note(self, obj: dict[str, Any]) -> None:
        if obj.get("usage"):
            self.usage = obj["usage"]
        if isinstance(obj.get("timings"), dict):
            self.timings = obj["timings"]

    def prompt_tokens(self) -> int:
        usage, timings = self.usage or {}, self.timings or {}
        return int(usage.get("prompt_tokens") or timings.get("prompt_n") or 0)

    def completion_tokens(self) -> int:
        usage, timings = self.usage or {}, self.timings or {}
        return int(usage.get("completion_tokens") or timings.get("predicted_n") or self.tokens)

    def _add_tool_call(self, call: dict[str, Any]) -> None:
        if self.first_ns is None:
            self.first_ns = time.monotonic_ns()
        slot = self.tool_calls.setdefault(call.get("index", len(self.tool_calls)), {"name": "", "arguments": ""})
        function = call.get("function") or {}
        slot["name"] += function.get("name") or ""
        arguments = function.get("arguments") or ""
        slot["arguments"] += arguments if isinstance(arguments, str) else json.dumps(arguments)

    def _chunk(self, content: str, thinking: str = "", **extra: Any) -> dict[str, Any]:
        chunk: dict[str, Any] = {"model": self.model, "created_at": now_rfc3339()}
        if self.chat:
            message: dict[str, Any] = {"role": "assistant", "content": content}
            if thinking:
                message["thinking"] = thinking
            chunk["message"] = message
        else:
            chunk["response"] = content
            if thinking:
                chunk["thinking"] = thinking
        chunk.update(extra)
        chunk["done"] = False
        return chunk

    def ollama_tool_calls(self) -> list[dict[str, Any]]:
        calls = []
        for _, call in sorted(self.tool_calls.items()):
            try:
                arguments = json.loads(call["arguments"] or "{}")
            except ValueError:
                arguments = {}
            calls.append({"function": {"name": call["name"], "arguments": arguments}})
        return calls

    def tool_chunk(self) -> dict[str, Any] | None:
        if not self.tool_calls or not self.chat:
            return None
        chunk = self._chunk("")
        chunk["message"]["tool_calls"] = self.ollama_tool_calls()
        return chunk

    def final(self, *, whole: bool = False) -> dict[str, Any]:
        content = "".join(self.text) if whole else ""
        chunk = self._chunk(content, "".join(self.thinking) if whole else "")
        if whole and self.chat and self.tool_calls:
            chunk["message"]["tool_calls"] = self.ollama_tool_calls()
        del chunk["done"]
        chunk["done_reason"] = DONE_REASONS.get(self.finish_reason or "stop", "stop")
        chunk["done"] = True
        chunk.update((key, value) for key, value in self.durations().items() if value)
        return chunk

    def durations(self) -> dict[str, int]:
        """Ollama's final metrics. `load_duration` is the wait until the backend started answering (its queue and
        any load); prefill and decode are the backend's own times when it reports them."""
        end_ns = time.monotonic_ns()
        head = self.head_ns or self.started_ns
        first = self.first_ns or end_ns
        timings = self.timings or {}
        prompt_ms, predicted_ms = timings.get("prompt_ms"), timings.get("predicted_ms")
        return {
            "total_duration": end_ns - self.started_ns,
            "load_duration": max(head - self.started_ns, 1),
            "prompt_eval_count": self.prompt_tokens(),
            "prompt_eval_duration": int(prompt_ms * 1e6) if _number(prompt_ms) else max(first - head, 0),
            "eval_count": self.completion_tokens(),
            "eval_duration": int(predicted_ms * 1e6) if _number(predicted_ms) else max(end_ns - first, 0),
        }


def _number(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
