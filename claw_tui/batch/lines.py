"""A batch input file: JSONL, one request a line, checked whole before anything is kept.

The OpenAI batch line: `{"custom_id": "...", "method": "POST", "url": "/v1/chat/completions", "body": {...}}`, where
`url` is `/v1/chat/completions` or `/v1/embeddings` (and, for Ollama's own API, `/api/chat`, `/api/generate` or
`/api/embed`: what `claw batch submit` makes). The native form of `claw batch submit FILE --model M` is simpler: each
line is a prompt (plain text), or a JSON object that is an Ollama `/api/chat` body (`messages`) or `/api/generate`
body (`prompt`), optionally with its own `custom_id` and `model`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

OPENAI_ENDPOINTS = ("/v1/chat/completions", "/v1/embeddings")
NATIVE_ENDPOINTS = ("/api/chat", "/api/generate", "/api/embed")
ENDPOINTS = OPENAI_ENDPOINTS + NATIVE_ENDPOINTS
MAX_CUSTOM_ID = 512


class InputError(ValueError):
    """A batch input that cannot be accepted; the message names the line."""


@dataclass(frozen=True, slots=True)
class BatchLine:
    index: int  # 0-based position in the file: output lines follow it
    custom_id: str
    url: str
    body: dict[str, Any]

    @property
    def model(self) -> str:
        return str(self.body.get("model") or "")

    def to_json(self) -> dict[str, Any]:
        return {"custom_id": self.custom_id, "method": "POST", "url": self.url, "body": self.body}


def parse_input(content: bytes, max_lines: int) -> list[BatchLine]:
    """Every line of a batch input file, checked; raises InputError at the first line that is wrong."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"the file is not UTF-8 text (byte {exc.start})") from None
    lines: list[BatchLine] = []
    seen: set[str] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        if len(lines) >= max_lines:
            raise InputError(f"the file has more than {max_lines:,} requests (the limit of [batch] max_lines)")
        line = parse_line(raw, number, len(lines))
        if line.custom_id in seen:
            raise InputError(f"line {number}: custom_id '{line.custom_id}' is used twice (each must be unique)")
        seen.add(line.custom_id)
        lines.append(line)
    if not lines:
        raise InputError("the file holds no requests (one JSON object a line)")
    return lines


def parse_line(raw: str, number: int, index: int) -> BatchLine:
    try:
        item = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InputError(f"line {number}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(item, dict):
        raise InputError(f"line {number}: expected a JSON object with custom_id, method, url and body")
    custom_id = item.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        raise InputError(f"line {number}: custom_id must be a non-empty string")
    if len(custom_id) > MAX_CUSTOM_ID:
        raise InputError(f"line {number}: custom_id is longer than {MAX_CUSTOM_ID} characters")
    if item.get("method", "POST") != "POST":
        raise InputError(f"line {number}: method must be POST")
    url = item.get("url")
    if url not in ENDPOINTS:
        raise InputError(f"line {number}: url must be one of {', '.join(ENDPOINTS)} (got {json.dumps(url)})")
    body = item.get("body")
    if not isinstance(body, dict):
        raise InputError(f"line {number}: body must be a JSON object (the request to {url})")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InputError(f"line {number}: body.model must name a model")
    if url == "/v1/chat/completions" and not isinstance(body.get("messages"), list):
        raise InputError(f"line {number}: body.messages must be an array of messages")
    if url == "/v1/embeddings" and "input" not in body:
        raise InputError(f"line {number}: body.input is missing (the text to embed)")
    return BatchLine(index=index, custom_id=custom_id, url=url, body=body)


def native_lines(text: str, model: str | None) -> list[dict[str, Any]]:
    """The lines of `claw batch submit`'s native form as batch lines for Ollama's own API."""
    out: list[dict[str, Any]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped:
            continue
        if stripped.startswith("{"):
            try:
                body = json.loads(stripped)
            except json.JSONDecodeError as exc:
                raise InputError(f"line {number}: starts with '{{' but is not valid JSON ({exc.msg})") from None
            if not isinstance(body, dict):
                raise InputError(f"line {number}: expected a JSON object")
        else:
            body = {"messages": [{"role": "user", "content": stripped}]}
        body = dict(body)
        custom_id = body.pop("custom_id", None) or f"line-{number}"
        body.setdefault("model", model)
        if not body.get("model"):
            raise InputError(f'line {number}: no model (pass --model, or give the line a "model")')
        if "messages" in body:
            url = "/api/chat"
        elif "prompt" in body:
            url = "/api/generate"
        elif "input" in body:
            url = "/api/embed"
        else:
            raise InputError(f"line {number}: a JSON line needs messages (chat), prompt (generate) or input (embed)")
        if url != "/api/embed":
            body["stream"] = False
        out.append({"custom_id": str(custom_id), "method": "POST", "url": url, "body": body})
    if not out:
        raise InputError("the file holds no prompts")
    return out
