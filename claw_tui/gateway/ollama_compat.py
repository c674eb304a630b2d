"""The Ollama surface over an OpenAI-compatible backend (vLLM, llama.cpp server): request translation and the
NDJSON answers Ollama clients expect, with durations measured by claw (the backend reports none)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

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


def openai_options(options) -> dict:
    out: dict = {}
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


def response_format(fmt) -> dict | None:
    if fmt == "json":
        return {"type": "json_object"}
    if isinstance(fmt, dict):
        return {"type": "json_schema", "json_schema": {"name": "response", "schema": fmt}}
    return None


def openai_message(message: dict) -> dict:
    out: dict = {"role": message.get("role", "user")}
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


def chat_request(body: dict, model: str) -> tuple[str, dict]:
    """An Ollama /api/chat body as an OpenAI /v1/chat/completions request (always streamed, with usage)."""
    request = {
        "model": model,
        "messages": [openai_message(m) for m in body.get("messages") or [] if isinstance(m, dict)],
        "stream": True,
        "stream_options": {"include_usage": True},
        **openai_options(body.get("options")),
    }
    fmt = response_format(body.get("format"))
    if fmt:
        request["response_format"] = fmt
    if body.get("tools"):
        request["tools"] = body["tools"]
    return "/v1/chat/completions", request


def generate_request(body: dict, model: str) -> tuple[str, dict]:
    """An Ollama /api/generate body as an OpenAI request: chat completions, or plain completions when raw."""
    options = openai_options(body.get("options"))
    if body.get("raw"):
        return "/v1/completions", {
            "model": model,
            "prompt": body.get("prompt") or "",
            "stream": True,
            "stream_options": {"include_usage": True},
            **options,
        }
    messages = []
    if body.get("system"):
        messages.append({"role": "system", "content": body["system"]})
    messages.append({"role": "user", "content": body.get("prompt") or "", "images": body.get("images") or []})
    path, request = chat_request({"messages": messages, "format": body.get("format")}, model)
    request.update(options)
    return path, request


def embed_request(body: dict, model: str) -> tuple[str, dict]:
    request: dict = {"model": model, "input": body.get("input"), "encoding_format": "float"}
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
    """Builds Ollama chat/generate chunks from OpenAI deltas, and the final chunk with claw's own timings."""

    def __init__(self, model: str, chat: bool, started_ns: int) -> None:
        self.model = model
        self.chat = chat
        self.started_ns = started_ns
        self.first_ns: int | None = None
        self.text: list[str] = []
        self.thinking: list[str] = []
        self.tool_calls: dict[int, dict] = {}
        self.finish_reason: str | None = None
        self.usage: dict | None = None

    def delta(self, obj: dict) -> dict | None:
        """An Ollama chunk for one OpenAI event, or None when it carries no output (tool calls wait for the end)."""
        if obj.get("usage"):
            self.usage = obj["usage"]
        content, thinking = "", ""
        for choice in obj.get("choices") or ():
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
            delta = choice.get("delta") or {}
            content += delta.get("content") or choice.get("text") or ""
            thinking += delta.get("reasoning_content") or delta.get("reasoning") or ""
            for call in delta.get("tool_calls") or ():
                self._add_tool_call(call)
        if not content and not thinking:
            return None
        if self.first_ns is None:
            self.first_ns = time.monotonic_ns()
        self.text.append(content)
        if thinking:
            self.thinking.append(thinking)
        return self._chunk(content, thinking)

    def _add_tool_call(self, call: dict) -> None:
        if self.first_ns is None:
            self.first_ns = time.monotonic_ns()
        slot = self.tool_calls.setdefault(call.get("index", len(self.tool_calls)), {"name": "", "arguments": ""})
        function = call.get("function") or {}
        slot["name"] += function.get("name") or ""
        slot["arguments"] += function.get("arguments") or ""

    def _chunk(self, content: str, thinking: str = "", **extra) -> dict:
        chunk: dict = {"model": self.model, "created_at": now_rfc3339()}
        if self.chat:
            message: dict = {"role": "assistant", "content": content}
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

    def ollama_tool_calls(self) -> list[dict]:
        calls = []
        for _, call in sorted(self.tool_calls.items()):
            try:
                arguments = json.loads(call["arguments"] or "{}")
            except ValueError:
                arguments = {}
            calls.append({"function": {"name": call["name"], "arguments": arguments}})
        return calls

    def tool_chunk(self) -> dict | None:
        if not self.tool_calls or not self.chat:
            return None
        chunk = self._chunk("")
        chunk["message"]["tool_calls"] = self.ollama_tool_calls()
        return chunk

    def final(self, *, whole: bool = False) -> dict:
        end_ns = time.monotonic_ns()
        first = self.first_ns or end_ns
        usage = self.usage or {}
        content = "".join(self.text) if whole else ""
        chunk = self._chunk(content, "".join(self.thinking) if whole else "")
        if whole and self.chat and self.tool_calls:
            chunk["message"]["tool_calls"] = self.ollama_tool_calls()
        del chunk["done"]
        chunk["done_reason"] = DONE_REASONS.get(self.finish_reason or "stop", "stop")
        chunk["done"] = True
        metrics = (
            ("total_duration", end_ns - self.started_ns),
            ("prompt_eval_count", int(usage.get("prompt_tokens") or 0)),
            ("prompt_eval_duration", first - self.started_ns),
            ("eval_count", int(usage.get("completion_tokens") or len(self.text))),
            ("eval_duration", end_ns - first),
        )
        chunk.update((key, value) for key, value in metrics if value)
        return chunk
