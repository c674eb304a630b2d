"""The OpenAI surface over an Ollama backend: request translation and response shaping (chat and embeddings).

Translating to Ollama's native /api/chat keeps the server's exact timings (load, prefill, decode in ns) that the
OpenAI surface of Ollama would drop.
"""

from __future__ import annotations

import base64
import json
import re
import struct
import time
from datetime import datetime
from typing import Any

FINISH_REASONS = {"stop": "stop", "length": "length", "load": "stop", "unload": "stop"}

_OPTION_FIELDS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "seed": "seed",
    "frequency_penalty": "frequency_penalty",
    "presence_penalty": "presence_penalty",
}


class TranslationError(ValueError):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def to_ollama_chat(body: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI chat-completions request as an Ollama /api/chat request (always streamed upstream)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise TranslationError("'messages' must be a non-empty array", "messages")
    options: dict[str, Any] = {}
    for src, dst in _OPTION_FIELDS.items():
        if body.get(src) is not None:
            options[dst] = body[src]
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None:
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
            raise TranslationError("'max_tokens' must be an integer", "max_tokens")
        options["num_predict"] = max_tokens
    stop = body.get("stop")
    if stop is not None:
        options["stop"] = [stop] if isinstance(stop, str) else list(stop)
    request: dict[str, Any] = {
        "model": body.get("model"),
        "messages": [to_ollama_message(m) for m in messages],
        "stream": True,
        "options": options,
    }
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_object":
        request["format"] = "json"
    elif response_format.get("type") == "json_schema":
        request["format"] = (response_format.get("json_schema") or {}).get("schema", "json")
    if body.get("tools"):
        request["tools"] = body["tools"]
    return request


def to_ollama_message(message: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(message, dict) or "role" not in message:
        raise TranslationError("each message needs a 'role'", "messages")
    content = message.get("content")
    out: dict[str, Any] = {"role": message["role"]}
    if isinstance(content, list):
        texts, images = [], []
        for part in content:
            if part.get("type") == "text":
                texts.append(part.get("text", ""))
            elif part.get("type") == "image_url":
                url = (part.get("image_url") or {}).get("url", "")
                images.append(url.split(",", 1)[-1])
        out["content"] = "\n".join(texts)
        if images:
            out["images"] = images
    else:
        out["content"] = content or ""
    if message.get("tool_calls"):
        out["tool_calls"] = [
            {"function": {"name": c["function"]["name"], "arguments": _arguments(c["function"].get("arguments"))}}
            for c in message["tool_calls"]
        ]
    return out


def _arguments(value: object) -> object:
    """A tool call's arguments as Ollama takes them: the JSON value, not its text."""
    if isinstance(value, str):
        try:
            return json.loads(value or "{}")
        except ValueError:
            return {}
    return value or {}


class ChunkWriter:
    """Builds chat.completion.chunk SSE events from Ollama chat chunks."""

    def __init__(self, completion_id: str, model: str, include_usage: bool) -> None:
        self.id = completion_id
        self.model = model
        self.created = int(time.time())
        self.include_usage = include_usage
        self._sent_role = False
        self.tool_calls: list[dict[str, Any]] = []

    def _event(self, choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> bytes:
        chunk = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "fp_claw",
            "choices": choices,
        }
        if usage is not None:
            chunk["usage"] = usage
        return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"

    def content(self, ollama_chunk: dict[str, Any]) -> bytes | None:
        message = ollama_chunk.get("message") or {}
        delta: dict[str, Any] = {}
        if not self._sent_role:
            delta["role"] = "assistant"
        if message.get("content"):
            delta["content"] = message["content"]
        if message.get("thinking"):
            delta["reasoning_content"] = message["thinking"]
        if message.get("tool_calls"):
            delta["tool_calls"] = openai_tool_calls(message["tool_calls"], start=len(self.tool_calls))
            self.tool_calls.extend(message["tool_calls"])
        if set(delta) <= {"role"}:
            return None
        self._sent_role = True
        return self._event([{"index": 0, "delta": delta, "finish_reason": None}])

    def finish(self, final: dict[str, Any]) -> bytes:
        reason = "tool_calls" if self.tool_calls else FINISH_REASONS.get(final.get("done_reason", "stop"), "stop")
        out = b""
        if not self._sent_role:
            out += self._event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        out += self._event([{"index": 0, "delta": {}, "finish_reason": reason}])
        if self.include_usage:
            out += self._event([], usage(final))
        return out + b"data: [DONE]\n\n"


def usage(final: dict[str, Any]) -> dict[str, Any]:
    prompt = int(final.get("prompt_eval_count") or 0)
    completion = int(final.get("eval_count") or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def openai_tool_calls(calls: list[dict[str, Any]], start: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "index": start + i,
            "id": f"call_{start + i}",
            "type": "function",
            "function": {
                "name": (c.get("function") or {}).get("name", ""),
                "arguments": json.dumps((c.get("function") or {}).get("arguments") or {}),
            },
        }
        for i, c in enumerate(calls)
    ]


def completion_object(
    completion_id: str, model: str, text: str, tool_calls: list[dict[str, Any]], final: dict[str, Any]
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if tool_calls:
        message["tool_calls"] = [{k: v for k, v in c.items() if k != "index"} for c in openai_tool_calls(tool_calls)]
    reason = "tool_calls" if tool_calls else FINISH_REASONS.get(final.get("done_reason", "stop"), "stop")
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_claw",
        "choices": [{"index": 0, "message": message, "finish_reason": reason}],
        "usage": usage(final),
    }


def embed_request(body: dict[str, Any], model: str) -> tuple[str, dict[str, Any]]:
    """An OpenAI /v1/embeddings request as an Ollama /api/embed request."""
    request: dict[str, Any] = {"model": model, "input": body.get("input")}
    if isinstance(body.get("dimensions"), int) and body["dimensions"] > 0:
        request["dimensions"] = body["dimensions"]
    return "/api/embed", request


def embeddings_answer(content: bytes, model: str, encoding_format: str | None) -> tuple[bytes, int]:
    """An Ollama /api/embed answer as an OpenAI embeddings list, and its prompt tokens."""
    obj = json.loads(content)
    tokens = int(obj.get("prompt_eval_count") or 0)
    data = []
    for index, vector in enumerate(obj.get("embeddings") or []):
        embedding = vector
        if encoding_format == "base64":
            embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "embedding": embedding, "index": index})
    answer = {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return json.dumps(answer, separators=(",", ":")).encode(), tokens


def models_list(tags: list[dict[str, Any]]) -> dict[str, Any]:
    data = []
    for tag in tags:
        data.append(
            {
                "id": tag.get("name") or tag.get("model"),
                "object": "model",
                "created": _created(tag.get("modified_at")),
                "owned_by": tag.get("owned_by") or "library",
            }
        )
    return {"object": "list", "data": data}


def _created(modified_at: str | None) -> int:
    """Seconds since the epoch from Ollama's RFC 3339 time (which may carry nanoseconds)."""
    if not modified_at:
        return 0
    without_fraction = re.sub(r"\.\d+", "", modified_at).replace("Z", "+00:00")
    try:
        return int(datetime.fromisoformat(without_fraction).timestamp())
    except ValueError:
        return 0
